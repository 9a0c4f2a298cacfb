//! Tool checks shared by the drivers' availability checks: whether a program is
//! installed (on `PATH`, executable) or runs, and which Debian package holds it
//! when not; whether virtmark runs as root.

use std::process::{Command, Stdio};

/// Whether `cmd` is an executable file on `PATH` (or, with a slash, at that path).
pub fn on_path(cmd: &str) -> bool {
    let exec = |f: &std::path::Path| {
        f.is_file()
            && std::fs::metadata(f).is_ok_and(|m| {
                std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o111 != 0
            })
    };
    if cmd.contains('/') {
        return exec(std::path::Path::new(cmd));
    }
    std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| exec(&d.join(cmd))))
}

/// `Ok` when `cmd` is installed; else "`cmd` is not installed (Debian package
/// `package`)".
pub fn need(cmd: &str, package: &str) -> Result<(), String> {
    if on_path(cmd) {
        Ok(())
    } else {
        Err(format!("{cmd} is not installed (Debian package {package})"))
    }
}

/// `Ok` when `cmd --version` succeeds; `Err` names the Debian package when it is
/// not installed, or the failure.
pub fn runs(cmd: &str, package: &str) -> Result<(), String> {
    match Command::new(cmd)
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => Err(format!("`{cmd} --version` failed ({s})")),
        Err(_) => Err(format!("{cmd} is not installed (Debian package {package})")),
    }
}

/// `Ok` as root; else "needs root (`why`)".
pub fn need_root(why: &str) -> Result<(), String> {
    if nix::unistd::geteuid().is_root() {
        Ok(())
    } else {
        Err(format!("needs root ({why})"))
    }
}

/// Wait until a daemon virtmark started (`pid`) is `ready`, polling every 10 ms.
/// When it exits or `deadline` passes first, the error names `name`, why, its log
/// and the log's last line that `is_error` picks (else its last line).
pub fn wait_for_daemon(
    name: &str,
    pid: u32,
    log: &std::path::Path,
    deadline: std::time::Duration,
    ready: impl Fn() -> bool,
    is_error: impl Fn(&str) -> bool,
) -> anyhow::Result<()> {
    let t = std::time::Instant::now();
    loop {
        if ready() {
            return Ok(());
        }
        let alive = std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
            s.rsplit_once(')')
                .is_some_and(|(_, r)| !r.trim_start().starts_with('Z'))
        });
        if !alive || t.elapsed() > deadline {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            let last = text
                .lines()
                .rev()
                .find(|l| is_error(l))
                .or_else(|| text.lines().last())
                .unwrap_or("no output");
            anyhow::bail!(
                "{name} {} ({}): {last}",
                if alive {
                    "did not answer on its socket in time"
                } else {
                    "exited"
                },
                log.display()
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_tool_names_its_package() {
        let e = need("virtmark-no-such-tool", "virtmark-pkg").unwrap_err();
        assert!(e.contains("virtmark-no-such-tool") && e.contains("virtmark-pkg"));
        let e = runs("virtmark-no-such-tool", "virtmark-pkg").unwrap_err();
        assert!(e.contains("Debian package virtmark-pkg"), "{e}");
        assert!(need("sh", "dash").is_ok());
        assert!(on_path("/bin/sh"));
    }
}
