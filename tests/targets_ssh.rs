//! The `ssh:` target for real, against an sshd this test starts on 127.0.0.1 (a
//! free port) with a generated host key and client key in a temp dir; the client
//! options reach virtmark through `VIRTMARK_SSH_OPTS="-F <temp ssh_config>"`.
//! The remote `$TMPDIR` is a temp dir (sshd's `SetEnv`), so the test sees what
//! the agent left on the "remote" side. Only loopback is ever contacted.
//! Skips (with the reason) only where sshd/ssh or root is missing.

mod common;

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command as StdCommand, Stdio};
use std::time::{Duration, Instant};

use common::{alive, created, results_json, Sandbox};
use virtmark::targets::ledger::Resource;

/// An sshd on 127.0.0.1, killed on drop.
struct Sshd {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Sshd {
    fn ssh_config(&self) -> PathBuf {
        self.dir.path().join("ssh_config")
    }
    fn remote_tmp(&self) -> PathBuf {
        self.dir.path().join("remote-tmp")
    }
    fn opts(&self) -> String {
        format!("-F {}", self.ssh_config().display())
    }
}

fn keygen(path: &Path) {
    let st = StdCommand::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", ""])
        .arg("-f")
        .arg(path)
        .status()
        .expect("ssh-keygen");
    assert!(st.success());
}

fn start_sshd() -> Result<Sshd, String> {
    if !nix::unistd::geteuid().is_root() {
        return Err("needs root (sshd)".into());
    }
    let sshd = Path::new("/usr/sbin/sshd");
    if !sshd.exists() {
        return Err("/usr/sbin/sshd is not installed (Debian package openssh-server)".into());
    }
    if StdCommand::new("ssh").arg("-V").output().is_err() {
        return Err("ssh is not installed (Debian package openssh-client)".into());
    }
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let d = dir.path();
    keygen(&d.join("host_key"));
    keygen(&d.join("client_key"));
    std::fs::copy(d.join("client_key.pub"), d.join("authorized_keys")).unwrap();
    std::fs::create_dir(d.join("remote-tmp")).unwrap();
    // A free port: bind, note, release.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    std::fs::write(
        d.join("sshd_config"),
        format!(
            "ListenAddress 127.0.0.1\nPort {port}\nHostKey {h}\nAuthorizedKeysFile {a}\n\
             PermitRootLogin prohibit-password\nPasswordAuthentication no\n\
             KbdInteractiveAuthentication no\nUsePAM no\nUseDNS no\nStrictModes no\nPidFile none\n\
             AllowTcpForwarding yes\nSetEnv TMPDIR={t}\n",
            h = d.join("host_key").display(),
            a = d.join("authorized_keys").display(),
            t = d.join("remote-tmp").display(),
        ),
    )
    .unwrap();
    std::fs::write(
        d.join("ssh_config"),
        format!(
            "Host *\n  IdentityFile {k}\n  IdentitiesOnly yes\n  StrictHostKeyChecking no\n  \
             UserKnownHostsFile /dev/null\n  LogLevel ERROR\n",
            k = d.join("client_key").display()
        ),
    )
    .unwrap();
    // Privilege separation directory sshd insists on.
    let _ = std::fs::create_dir_all("/run/sshd");
    let child = StdCommand::new(sshd)
        .args(["-D", "-e", "-f"])
        .arg(d.join("sshd_config"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(d.join("sshd.log")).unwrap())
        .spawn()
        .map_err(|e| format!("starting sshd: {e}"))?;
    let s = Sshd { child, port, dir };
    let t0 = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if t0.elapsed() > Duration::from_secs(10) {
            let log = std::fs::read_to_string(s.dir.path().join("sshd.log")).unwrap_or_default();
            panic!("sshd did not listen on {port}: {log}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(s)
}

fn assert_local_gone(ledger: &Path) {
    let res = created(ledger);
    assert!(
        res.iter().any(|r| matches!(r, Resource::Process { .. })),
        "no ssh process in the ledger: {res:?}"
    );
    for r in &res {
        match r {
            Resource::Dir { path } => assert!(!path.exists(), "{} remains", path.display()),
            Resource::Process { pid, start_time } => {
                assert!(!alive(*pid, *start_time), "process {pid} remains")
            }
            other => panic!("unexpected resource for ssh: {other:?}"),
        }
    }
}

fn remote_leftovers(s: &Sshd) -> Vec<PathBuf> {
    std::fs::read_dir(s.remote_tmp())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect()
}

#[test]
fn ssh_target_runs_dd_zero_and_removes_remote_files() {
    if common::skip_allowed("ssh") {
        return;
    }
    let s =
        start_sshd().unwrap_or_else(|why| panic!("an sshd on loopback is expected here: {why}"));
    let sb = Sandbox::new();
    let target = format!("ssh:root@127.0.0.1:{}", s.port);
    let out = sb
        .cmd(&[
            "run",
            "-t",
            &target,
            "-w",
            "dd-zero",
            "--reps",
            "2",
            "--duration",
            "200ms",
            "--out",
            "out",
        ])
        .env("VIRTMARK_SSH_OPTS", s.opts())
        .env("VIRTMARK_REGISTRY", sb.path().join("registry"))
        .timeout(Duration::from_secs(120))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = sb.run_dir("out");
    let r = results_json(&dir);
    let samples = r["samples"].as_array().unwrap();
    assert_eq!(samples.len(), 2, "{r:#}");
    assert!(samples.iter().all(|x| x["target"] == target.as_str()));
    assert!(samples[1]["metrics"]
        .as_array()
        .is_some_and(|m| !m.is_empty()));
    let t = &r["targets"][0];
    // The "remote" host is this one: its fingerprint is the host's.
    let host = &r["host"]["verdict"];
    assert_eq!(&t["fingerprint"]["verdict"], host, "{t:#}");
    assert!(t["startup_s"].as_f64().unwrap() > 0.0);
    assert!(
        remote_leftovers(&s).is_empty(),
        "remote files remain: {:?}",
        remote_leftovers(&s)
    );
    assert_local_gone(&dir.join("ledger.jsonl"));
}

#[test]
fn a_refusing_host_is_a_one_line_error_with_exit_2() {
    if common::skip_allowed("ssh") {
        return;
    }
    common::require_tool("ssh", "openssh-client");
    // A port with nothing listening on loopback.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let sb = Sandbox::new();
    let target = format!("ssh:root@127.0.0.1:{port}");
    let out = sb
        .cmd(&["run", "-t", &target, "-w", "dd-zero", "--out", "out"])
        .env(
            "VIRTMARK_SSH_OPTS",
            "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null",
        )
        .env("VIRTMARK_REGISTRY", sb.path().join("registry"))
        .timeout(Duration::from_secs(60))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
    assert!(err.contains("Connection refused"), "{err}");
    // Nothing was created.
    assert!(!sb.path().join("out").exists());
}

#[test]
fn sigkill_mid_run_leaves_nothing_remote_and_cleanup_the_rest() {
    if common::skip_allowed("ssh") {
        return;
    }
    let s =
        start_sshd().unwrap_or_else(|why| panic!("an sshd on loopback is expected here: {why}"));
    let sb = Sandbox::new();
    let reg = sb.path().join("registry");
    let target = format!("ssh:root@127.0.0.1:{}", s.port);
    let mut child = sb
        .background_run(&target, "dd-zero", "20", "1s")
        .env("VIRTMARK_REGISTRY", &reg)
        .env("VIRTMARK_SSH_OPTS", s.opts())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    // Wait until the agent runs remotely (its directory exists) and a sample is due.
    while remote_leftovers(&s).is_empty() {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "the agent never started"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(1500));
    child.kill().unwrap();
    child.wait().unwrap();
    let out = sb
        .cmd(&["cleanup"])
        .env("VIRTMARK_REGISTRY", &reg)
        .timeout(Duration::from_secs(60))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The remote shell removes the directory once the agent sees EOF, which is
    // after its current step: the sample, and the `syncfs` before it and at its
    // end. A `syncfs` waits for the whole file system's writeback, several seconds
    // while other tests write (3-7 s here with a `dd` of 3 GB going on), so the
    // wait is generous; a directory the shell never removes still fails.
    let t1 = Instant::now();
    while !remote_leftovers(&s).is_empty() {
        assert!(
            t1.elapsed() < Duration::from_secs(60),
            "remote files remain after SIGKILL: {:?}",
            remote_leftovers(&s)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let dir = std::fs::read_dir(sb.path().join("out"))
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .path();
    assert_local_gone(&dir.join("ledger.jsonl"));
}
