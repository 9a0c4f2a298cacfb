use clap::Parser;

fn main() {
    // What the fork-exec probe executes: exit at once, before any parsing.
    if std::env::args_os().nth(1).as_deref()
        == Some(std::ffi::OsStr::new(virtmark::probes::EXEC_MODE))
    {
        return;
    }
    // Where the fork-exec probe runs: a freshly executed, small process.
    let args: Vec<_> = std::env::args_os().skip(1).collect();
    if args.first().map(|a| a.as_os_str())
        == Some(std::ffi::OsStr::new(virtmark::probes::CHILD_MODE))
    {
        std::process::exit(virtmark::probes::child_main(&args[1..]));
    }
    let cli = virtmark::cli::Cli::parse();
    if let Err(err) = virtmark::cli::run(cli) {
        // A closed pipe (`virtmark history | head`) is not an error worth a message.
        if err.chain().any(|e| {
            e.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
        }) {
            std::process::exit(0);
        }
        eprintln!("virtmark: error: {err:#}");
        std::process::exit(virtmark::error::exit_code(&err));
    }
}
