// Records the git revision virtmark is built from, for the provenance of every run,
// and builds the two C programs embedded in the binary: the FP-state mediator that
// User-Mode Linux is started with (src/targets/uml/fpshim.c, a shared object) and
// the `fork` probe's dynamically linked forking process (src/probes/fork_loop.c).
use std::path::PathBuf;
use std::process::Command;

fn main() {
    compile_c(
        "src/targets/uml/fpshim.c",
        "uml_fpshim.so",
        &["-shared", "-fPIC"],
        &["-ldl"],
    );
    compile_c("src/probes/fork_loop.c", "fork_loop", &[], &[]);
    let rev = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    let dirty = Command::new("git")
        .args(["status", "--porcelain", "--untracked-files=no"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .is_some_and(|o| !o.stdout.is_empty());
    let rev = if dirty && rev != "unknown" {
        format!("{rev}-dirty")
    } else {
        rev
    };
    println!("cargo:rustc-env=VIRTMARK_GIT_REVISION={rev}");
    for p in [".git/HEAD", ".git/index"] {
        if std::path::Path::new(p).exists() {
            println!("cargo:rerun-if-changed={p}");
        }
    }
}

/// Compile the C file `src` into `$OUT_DIR/<out>` with the C compiler (`$CC`, else
/// `cc`; rusqlite's bundled SQLite needs one already), warnings as errors.
fn compile_c(src: &str, out: &str, flags: &[&str], libs: &[&str]) {
    println!("cargo:rerun-if-changed={src}");
    println!("cargo:rerun-if-env-changed=CC");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR")).join(out);
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let status = Command::new(&cc)
        .args(["-O2", "-Wall", "-Wextra", "-Werror"])
        .args(flags)
        .arg("-o")
        .arg(&out)
        .arg(src)
        .args(libs)
        .status()
        .unwrap_or_else(|e| panic!("running the C compiler {cc:?} for {src}: {e}"));
    assert!(status.success(), "{cc} failed to compile {src}");
}
