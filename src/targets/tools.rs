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
