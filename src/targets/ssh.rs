//! `ssh:[user@]host[:port]`: any machine or VM reachable over ssh (Xen, VMware,
//! cloud guests, a bare-metal box). virtmark copies itself to the remote host and
//! runs `virtmark agent` there, with the ssh session's stdio as the channel.
//!
//! - ssh is the user's own client with the user's config and keys, always with
//!   `BatchMode=yes` (never a password prompt). Extra client options come from
//!   `VIRTMARK_SSH_OPTS` (split on white space, e.g. `-F /path/to/ssh_config`).
//! - One master connection per instance (`ControlMaster`, its socket in the local
//!   scratch); the upload, the agent session, the tunnel and the final removal are
//!   multiplexed over it, so only one handshake is paid.
//! - Remote files: a directory from `mktemp -d` under the remote `$TMPDIR` (or
//!   /tmp) holds the binary and the agent's scratch (the remote host's own
//!   storage). It is removed by the remote shell when the agent exits (which it
//!   does on EOF, once its current sample and `syncfs` are over, so also when
//!   virtmark dies and the connection drops) and again,
//!   explicitly, at teardown. Limit: a remote directory cannot be in the local
//!   ledger, so `virtmark cleanup` can only stop the local ssh processes; if the
//!   remote host itself crashes mid-run, `$TMPDIR/virtmark-agent.*` may remain there.
//! - Peer: network workloads need a peer outside the target. By default a reverse
//!   tunnel (`-R`) makes the local peer (on the host's loopback) reachable on the
//!   remote host's loopback: traffic stays on loopback at both ends, but what is
//!   measured is ssh-tunnelled throughput (encrypted, over one TCP connection),
//!   which the start-up message says. `virtmark run --peer ADDR` names a peer the
//!   remote host reaches directly instead (e.g. `virtmark serve` on another machine).

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::{Driver, Family, Guard, Instance, StartEnv, TargetKind};

/// Where an ssh target is: `[user@]host[:port]`, and an optional peer address
/// the remote host uses instead of the tunnel (`run --peer`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshTarget {
    /// Login name, when given.
    pub user: Option<String>,
    /// Host name or address (IPv6 without brackets).
    pub host: String,
    /// Port, when given.
    pub port: Option<u16>,
    /// Peer address for the agent (`host:port`), instead of the reverse tunnel.
    pub peer: Option<String>,
}

fn safe_word(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with('-')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-%:".contains(c))
}

impl SshTarget {
    /// Parse what follows `ssh:`.
    pub fn parse(spec: &str) -> Result<SshTarget, String> {
        let bad = |why: &str| {
            Err(format!(
                "bad ssh target \"ssh:{spec}\": {why} (expected ssh:[user@]host[:port], e.g. ssh:root@192.0.2.7:2222)"
            ))
        };
        let (user, rest) = match spec.rsplit_once('@') {
            Some((u, r)) => (Some(u.to_string()), r),
            None => (None, spec),
        };
        let (host, port) = if let Some(r) = rest.strip_prefix('[') {
            let Some((h, tail)) = r.split_once(']') else {
                return bad("unclosed [");
            };
            match tail.strip_prefix(':') {
                Some(p) => (h.to_string(), Some(p)),
                None if tail.is_empty() => (h.to_string(), None),
                None => return bad("junk after ]"),
            }
        } else if rest.matches(':').count() > 1 {
            // A bare IPv6 address.
            (rest.to_string(), None)
        } else {
            match rest.split_once(':') {
                Some((h, p)) => (h.to_string(), Some(p)),
                None => (rest.to_string(), None),
            }
        };
        if !safe_word(&host) {
            return bad("the host is missing or holds characters ssh would not take as a host");
        }
        if let Some(u) = &user {
            if !safe_word(u) || u.contains(':') {
                return bad("the user name is empty or holds unusual characters");
            }
        }
        let port = match port {
            Some(p) => match p.parse::<u16>() {
                Ok(n) if n > 0 => Some(n),
                _ => return bad("the port is not a number from 1 to 65535"),
            },
            None => None,
        };
        Ok(SshTarget {
            user,
            host,
            port,
            peer: None,
        })
    }

    /// `[user@]host[:port]` as written.
    pub fn display(&self) -> String {
        let mut s = String::new();
        if let Some(u) = &self.user {
            s.push_str(u);
            s.push('@');
        }
        if self.host.contains(':') {
            s.push_str(&format!("[{}]", self.host));
        } else {
            s.push_str(&self.host);
        }
        if let Some(p) = self.port {
            s.push_str(&format!(":{p}"));
        }
        s
    }

    /// `ssh` with the common options, `extra` options, the host, then `remote`.
    fn command(&self, extra: &[&str], remote: &[&str]) -> Command {
        let mut cmd = Command::new("ssh");
        cmd.args([
            "-o",
            "BatchMode=yes",
            "-o",
            "ConnectTimeout=15",
            "-o",
            "ServerAliveInterval=15",
            "-e",
            "none",
            "-T",
        ]);
        if let Some(p) = self.port {
            cmd.arg("-p").arg(p.to_string());
        }
        if let Some(u) = &self.user {
            cmd.arg("-l").arg(u);
        }
        if let Some(opts) = std::env::var_os("VIRTMARK_SSH_OPTS") {
            cmd.args(opts.to_string_lossy().split_whitespace());
        }
        cmd.args(extra).arg(&self.host);
        if !remote.is_empty() {
            cmd.arg("--").args(remote);
        }
        cmd.stdin(Stdio::null());
        cmd
    }
}

/// The ssh driver for one target.
pub struct Ssh(pub SshTarget);

/// The last meaningful line ssh wrote to standard error: its reason.
fn reason(stderr: &str) -> String {
    stderr
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty() && !l.starts_with("Warning: Permanently added"))
        .unwrap_or("ssh exited without saying why")
        .to_string()
}

/// Run `cmd` to completion with a time limit; returns (success, stdout, stderr).
fn run_with_timeout(
    mut cmd: Command,
    input: Option<&[u8]>,
    limit: Duration,
) -> Result<(bool, String, String)> {
    cmd.stdin(if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    crate::sys::die_with_parent(&mut cmd);
    let mut child = cmd
        .spawn()
        .context("running ssh (Debian package openssh-client)")?;
    let mut out = child.stdout.take().context("ssh stdout")?;
    let mut err = child.stderr.take().context("ssh stderr")?;
    let t_out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let t_err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    if let (Some(data), Some(mut stdin)) = (input, child.stdin.take()) {
        // A failed write shows up as the command's failure below.
        let _ = stdin.write_all(data);
    }
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(st) = child.try_wait()? {
            break Some(st);
        }
        if Instant::now() > deadline {
            crate::sys::stop_child(&mut child, Duration::from_millis(200));
            break None;
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let out = t_out.join().unwrap_or_default();
    let mut err = t_err.join().unwrap_or_default();
    if status.is_none() {
        err.push_str(&format!("\nno answer within {} s", limit.as_secs()));
    }
    Ok((status.is_some_and(|s| s.success()), out, err))
}

/// What the remote side must look like to run this binary.
fn local_uname() -> String {
    let arch = match std::env::consts::ARCH {
        "x86" => "i686",
        a => a,
    };
    format!("Linux {arch}")
}

/// Its names: `ssh:` followed by a host.
pub const FAMILY: Family = Family {
    names: &["ssh:<host>"],
    not_default: &[],
    make: |n| {
        let spec = n.strip_prefix("ssh:")?;
        Some(SshTarget::parse(spec).map(|t| Box::new(Ssh(t)) as Box<dyn Driver>))
    },
};

impl Driver for Ssh {
    fn name(&self) -> &str {
        "ssh"
    }

    fn class(&self) -> &'static str {
        "whatever the remote host is (see its fingerprint)"
    }

    fn kind(&self) -> TargetKind {
        TargetKind::Ssh(self.0.clone())
    }

    fn available(&self) -> Result<(), String> {
        if Command::new("ssh")
            .arg("-V")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_err()
        {
            return Err("the ssh client is not installed (Debian package openssh-client)".into());
        }
        let t = &self.0;
        let cmd = t.command(&[], &["uname", "-sm"]);
        let (ok, out, err) = run_with_timeout(cmd, None, Duration::from_secs(30))
            .map_err(|e| format!("{}: {e:#}", t.display()))?;
        if !ok {
            return Err(format!(
                "cannot reach {} over ssh: {}",
                t.display(),
                reason(&err)
            ));
        }
        let want = local_uname();
        if out.trim() != want {
            return Err(format!(
                "{} runs {:?}; this virtmark binary needs {want:?}",
                t.display(),
                out.trim()
            ));
        }
        Ok(())
    }

    fn start(&self, env: &StartEnv) -> Result<Instance> {
        let t = &self.0;
        if env.cpuset.is_some() {
            anyhow::bail!(
                "ssh:{}: cannot pin (scale --pin): the remote host's CPUs are not this host's to give",
                t.host
            );
        }
        if env.unlimited {
            anyhow::bail!(
                "ssh:{}: cannot lift limits (--no-limits): the remote side's limits are not virtmark's",
                t.host
            );
        }
        let mut guard = Guard::new(env.ledger.clone());
        guard.set_grace(Duration::from_secs(1));
        let scratch = &env.scratch;
        guard.create_dir(scratch)?;
        let ctl = scratch.join("ctl");
        let ctl_s = ctl.to_string_lossy().to_string();
        let log = Arc::new(Mutex::new(
            std::fs::File::create(&env.log)
                .with_context(|| format!("creating agent log {}", env.log.display()))?,
        ));

        // 1. The master connection: authentication happens here, once.
        let mut cmd = t.command(&["-M", "-S", &ctl_s, "-o", "ControlPersist=no", "-N"], &[]);
        cmd.stdout(Stdio::null()).stderr(Stdio::piped());
        crate::sys::die_with_parent(&mut cmd);
        let mut master = cmd
            .spawn()
            .context("starting ssh (Debian package openssh-client)")?;
        let err = master.stderr.take().context("ssh stderr")?;
        let said = Arc::new(Mutex::new(String::new()));
        {
            let (log, said) = (log.clone(), said.clone());
            std::thread::spawn(move || {
                for line in BufReader::new(err).lines().map_while(Result::ok) {
                    if let Ok(mut l) = log.lock() {
                        let _ = writeln!(l, "ssh: {line}");
                    }
                    if let Ok(mut s) = said.lock() {
                        s.push_str(&line);
                        s.push('\n');
                    }
                }
            });
        }
        let master_pid = master.id();
        let ready = wait_for_socket(&mut master, &ctl, Duration::from_secs(30));
        guard.adopt(master)?;
        if let Err(why) = ready {
            // Give the reader a moment to collect ssh's last words.
            std::thread::sleep(Duration::from_millis(50));
            let text = said.lock().map(|s| s.clone()).unwrap_or_default();
            bail!(
                "cannot connect to {} over ssh (pid {master_pid}): {}",
                t.display(),
                if text.trim().is_empty() {
                    why
                } else {
                    reason(&text)
                }
            );
        }
        let mux = ["-S", ctl_s.as_str(), "-o", "ControlMaster=no"];

        // 2. Upload the agent into a fresh remote directory.
        let binary = std::fs::read(env.exe)
            .with_context(|| format!("reading the agent {}", env.exe.display()))?;
        let script = "umask 077; d=$(mktemp -d \"${TMPDIR:-/tmp}/virtmark-agent.XXXXXX\") && cat > \"$d/virtmark\" && chmod 700 \"$d/virtmark\" && mkdir \"$d/scratch\" && echo \"$d\"";
        let (ok, out, err) = run_with_timeout(
            t.command(&mux, &["sh", "-c", &sh_quote(script)]),
            Some(&binary),
            Duration::from_secs(300),
        )?;
        let dir = out.trim().to_string();
        if !dir.is_empty() && is_plain_path(&dir) {
            guard.hold(RemoteDir {
                target: t.clone(),
                ctl: ctl_s.clone(),
                dir: dir.clone(),
            });
        }
        if !ok || !is_plain_path(&dir) {
            bail!(
                "copying the agent to {}: {}",
                t.display(),
                reason(&format!("{err}\n{out}"))
            );
        }

        // 3. The peer: the user's, or the local one through a reverse tunnel.
        let peer = match (env.peer, &t.peer) {
            (None, _) => None,
            (Some(_), Some(p)) => Some(p.clone()),
            (Some(local), None) => {
                let spec = format!("0:{local}");
                let (ok, out, err) = run_with_timeout(
                    t.command(&["-S", &ctl_s, "-O", "forward", "-R", &spec], &[]),
                    None,
                    Duration::from_secs(30),
                )?;
                let port: Option<u16> = out.trim().parse().ok();
                match (ok, port) {
                    (true, Some(p)) => {
                        eprintln!(
                            "virtmark: ssh:{}: network workloads reach the peer through an ssh reverse tunnel: they measure ssh-tunnelled throughput",
                            t.display()
                        );
                        Some(format!("127.0.0.1:{p}"))
                    }
                    _ => bail!(
                        "opening a reverse tunnel from {} to the peer: {}",
                        t.display(),
                        reason(&err)
                    ),
                }
            }
        };

        // 4. The agent, whose stdio is the session's; the remote shell removes
        // the directory when the agent exits (on EOF when the connection drops).
        let run = format!(
            "\"{dir}/virtmark\" agent --scratch \"{dir}/scratch\"; rc=$?; rm -rf \"{dir}\"; exit $rc"
        );
        let mut cmd = t.command(&mux, &["sh", "-c", &sh_quote(&run)]);
        let errlog = log
            .lock()
            .map_err(|_| anyhow::anyhow!("agent log lock poisoned"))?
            .try_clone()
            .context("agent log")?;
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(errlog));
        crate::sys::die_with_parent(&mut cmd);
        let child = cmd.spawn().context("starting the remote agent over ssh")?;
        Instance::of_child(guard, child, peer)
    }
}

/// Wait until the master's control socket exists (authenticated) or it exits.
fn wait_for_socket(master: &mut Child, ctl: &Path, limit: Duration) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    loop {
        if ctl.exists() {
            return Ok(());
        }
        match master.try_wait() {
            Ok(Some(st)) => return Err(format!("ssh exited ({st})")),
            Ok(None) => {}
            Err(e) => return Err(format!("waiting for ssh: {e}")),
        }
        if Instant::now() > deadline {
            return Err(format!("no connection within {} s", limit.as_secs()));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Quote a string for a POSIX shell (the remote login shell passes it to `sh -c`).
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// A path `mktemp -d` printed: absolute, no characters needing quotes.
fn is_plain_path(p: &str) -> bool {
    p.starts_with('/')
        && !p.contains("..")
        && p.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-".contains(c))
}

/// The remote directory (binary + scratch), removed over the master connection
/// when dropped (in teardown, before the master is stopped).
struct RemoteDir {
    target: SshTarget,
    ctl: String,
    dir: String,
}

impl Drop for RemoteDir {
    fn drop(&mut self) {
        let cmd = self.target.command(
            &["-S", &self.ctl, "-o", "ControlMaster=no"],
            &["rm", "-rf", &self.dir],
        );
        match run_with_timeout(cmd, None, Duration::from_secs(20)) {
            Ok((true, _, _)) => {}
            Ok((false, _, err)) => eprintln!(
                "virtmark: warning: could not remove {} on {}: {}",
                self.dir,
                self.target.display(),
                reason(&err)
            ),
            Err(e) => eprintln!(
                "virtmark: warning: could not remove {} on {}: {e:#}",
                self.dir,
                self.target.display()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> SshTarget {
        SshTarget::parse(s).unwrap()
    }

    #[test]
    fn parses_user_host_and_port() {
        let t = p("root@127.0.0.1:2222");
        assert_eq!(t.user.as_deref(), Some("root"));
        assert_eq!(t.host, "127.0.0.1");
        assert_eq!(t.port, Some(2222));
        assert_eq!(t.display(), "root@127.0.0.1:2222");
        let t = p("box.example");
        assert_eq!(
            (t.user, t.host.as_str(), t.port),
            (None, "box.example", None)
        );
        let t = p("me@[::1]:22");
        assert_eq!((t.host.as_str(), t.port), ("::1", Some(22)));
        assert_eq!(t.display(), "me@[::1]:22");
        assert_eq!(p("fe80::1").host, "fe80::1");
    }

    #[test]
    fn refuses_option_injection_and_junk() {
        for bad in [
            "",
            "-oProxyCommand=x",
            "root@",
            "a b",
            "h:0",
            "h:99999",
            "[::1",
            "u;x@h",
        ] {
            assert!(SshTarget::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn reason_is_the_last_line_without_known_hosts_noise() {
        let e = "Warning: Permanently added '[127.0.0.1]:2' (ED25519) to the list of known hosts.\nssh: connect to host 127.0.0.1 port 2: Connection refused\n";
        assert_eq!(
            reason(e),
            "ssh: connect to host 127.0.0.1 port 2: Connection refused"
        );
        assert_eq!(reason(""), "ssh exited without saying why");
    }

    #[test]
    fn quoting_and_paths() {
        assert_eq!(sh_quote("a'b"), "'a'\\''b'");
        assert!(is_plain_path("/tmp/virtmark-agent.Ab12_x"));
        assert!(!is_plain_path("/tmp/x y"));
        assert!(!is_plain_path("tmp/x"));
        assert!(!is_plain_path("/tmp/../etc"));
    }
}
