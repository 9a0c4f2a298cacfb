//! Proving that a target starts: a test start to the agent's hello, once per
//! host, kernel, tool and virtmark build.
//!
//! A static check (the tool is installed, `/dev/net/tun` exists) cannot see
//! why a start would fail: User-Mode Linux dying at its first system call on a
//! CPU whose XSAVE state it cannot restore, a runtime that cannot create a
//! cgroup here, a guest kernel that hangs under an accelerator. So the drivers
//! whose start depends on more than files on disk (UML, QEMU, gVisor, LXC)
//! prove it: they start a small instance, wait for its agent's hello and tear
//! it down. A target listed as available has answered hello on this machine.
//!
//! A success is kept in virtmark's cache under a key made of the target, the
//! host kernel (release and build), the tools' files and virtmark's own binary,
//! so it is made again when any of them changes. A failure is kept only for the
//! process: whatever made it may be gone at the next try.

use std::collections::HashMap;
use std::io::{BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use anyhow::{Context, Result};

use super::cache::{self, Key};
use super::ledger::Ledger;
use super::{Instance, StartEnv};
use crate::protocol::{self, Request, Response};

/// Layout version of the verdict entries.
const VERSION: u32 = 1;

/// How long a test start may take to answer hello (QEMU TCG boots in 2–4 s;
/// this leaves room for a machine busy with other work).
const DEADLINE: Duration = Duration::from_secs(90);

/// Memory given to a test instance.
const MEMORY: u64 = 256 << 20;

/// `Ok` when `target` has answered hello on this host, with `tools` (programs
/// on `PATH`, or paths) as they are now; else why not. `start` starts one
/// instance. Proven once and cached; see the module documentation.
pub fn proven(
    target: &str,
    tools: &[&str],
    start: impl FnOnce(&StartEnv) -> Result<Instance>,
) -> Result<(), String> {
    static SEEN: OnceLock<Mutex<HashMap<String, Result<(), String>>>> = OnceLock::new();
    let seen = SEEN.get_or_init(Default::default);
    if let Some(v) = seen.lock().unwrap_or_else(|e| e.into_inner()).get(target) {
        return v.clone();
    }
    let verdict = verdict(target, tools, start);
    seen.lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(target.to_string(), verdict.clone());
    verdict
}

fn verdict(
    target: &str,
    tools: &[&str],
    start: impl FnOnce(&StartEnv) -> Result<Instance>,
) -> Result<(), String> {
    let key = key(target, tools).map_err(|e| format!("{e:#}"))?;
    let name = format!("verified-{}", target.replace([':', '/', '@'], "_"));
    let mut failure = None;
    let made = cache::entry(&name, "ok", key, |p| match test_start(target, start) {
        Ok(()) => std::fs::write(p, b"answered hello\n")
            .with_context(|| format!("writing {}", p.display())),
        Err(e) => {
            failure = Some(e);
            anyhow::bail!("not proven")
        }
    });
    match (made, failure) {
        (Ok(_), _) => Ok(()),
        (Err(_), Some(why)) => Err(why),
        (Err(e), None) => Err(format!("cannot record the test start's verdict: {e:#}")),
    }
}

/// What a verdict on `target` depends on: the host kernel (release and build),
/// virtmark's own binary and the files of `tools` (programs on `PATH`, or paths).
pub fn key(target: &str, tools: &[&str]) -> Result<Key> {
    let uts = nix::sys::utsname::uname().context("uname")?;
    let mut key = Key::new(VERSION).with(target).with((
        uts.release().to_string_lossy().into_owned(),
        uts.version().to_string_lossy().into_owned(),
    ));
    let exe = std::env::current_exe().context("locating virtmark's own binary")?;
    key = key.file(&exe)?;
    for t in tools {
        let path = resolve(t).with_context(|| format!("{t} is not installed"))?;
        key = key.file(&path)?;
    }
    Ok(key)
}

/// `tool` as a path: itself when it has a slash, else found on `PATH`.
fn resolve(tool: &str) -> Option<PathBuf> {
    if tool.contains('/') {
        return Some(PathBuf::from(tool)).filter(|p| p.is_file());
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

/// Start an instance in a private directory, wait for hello, tear it down.
fn test_start(
    target: &str,
    start: impl FnOnce(&StartEnv) -> Result<Instance>,
) -> Result<(), String> {
    let (run_id, tag) = test_start_id(target);
    let dir = private_dir(&run_id).map_err(|e| format!("{e:#}"))?;
    let outcome = greet(&run_id, &tag, &dir, start);
    let log = tail(&dir.join("agent.log"));
    let _ = std::fs::remove_dir_all(&dir);
    outcome.map_err(|e| {
        if log.is_empty() {
            format!("a test start failed: {e:#}")
        } else {
            format!("a test start failed: {e:#}; its log ends: {log}")
        }
    })
}

/// The run id of a test start of `target` (`verify-<target>-<tag>`) and its tag.
fn test_start_id(target: &str) -> (String, String) {
    let tag: String = std::iter::repeat_with(fastrand::alphanumeric)
        .take(5)
        .collect::<String>()
        .to_ascii_lowercase();
    let safe = target.replace([':', '/', '@'], "_");
    (format!("verify-{safe}-{tag}"), tag)
}

fn greet(
    run_id: &str,
    tag: &str,
    dir: &Path,
    start: impl FnOnce(&StartEnv) -> Result<Instance>,
) -> Result<()> {
    let ledger = Arc::new(Ledger::create(dir, run_id, Some(dir))?);
    let exe = std::env::current_exe().context("locating virtmark's own binary")?;
    let env = StartEnv {
        exe: &exe,
        scratch: dir.join("scratch"),
        log: dir.join("agent.log"),
        peer: None,
        ledger: ledger.clone(),
        index: 250,
        tag: format!("v{tag}"),
        cpus: 1,
        cpuset: None,
        unlimited: false,
        cpu_share: false,
        memory: MEMORY,
        toolchain: false,
        native_unbounded: false,
    };
    let answered = start(&env).and_then(|mut instance| {
        let r = hello(&mut instance);
        let _ = instance.teardown.teardown();
        r
    });
    let problems = ledger.close_now()?;
    answered?;
    if !problems.is_empty() {
        anyhow::bail!("the test instance left {}", problems.join("; "));
    }
    Ok(())
}

/// Send hello and wait for the answer.
fn hello(instance: &mut Instance) -> Result<()> {
    let from = std::mem::replace(&mut instance.from_agent, Box::new(std::io::empty()));
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut r = protocol::Reader::new(BufReader::new(from));
        let _ = tx.send(r.next_message::<Response>());
    });
    protocol::send(&mut instance.to_agent, &Request::Hello).context("sending hello")?;
    instance.to_agent.flush().context("sending hello")?;
    match rx.recv_timeout(DEADLINE) {
        Ok(Ok(Some(Response::Hello { .. }))) => Ok(()),
        Ok(Ok(Some(other))) => anyhow::bail!("the agent answered hello with {other:?}"),
        Ok(Ok(None)) | Err(mpsc::RecvTimeoutError::Disconnected) => {
            anyhow::bail!("the agent exited before answering hello")
        }
        Ok(Err(e)) => anyhow::bail!("reading the agent's answer: {e}"),
        Err(mpsc::RecvTimeoutError::Timeout) => {
            anyhow::bail!("no hello within {} s", DEADLINE.as_secs())
        }
    }
}

/// A new directory of our own (mode 0700) under the temp directory, named after
/// the test start's run (`virtmark-<run id>-…`): the ledger names it as its
/// scratch root, and `virtmark cleanup` trusts a scratch root only under its
/// run's name, so that what a killed test start leaves is removed (before
/// 2026-12-01 the names differed and cleanup refused it).
fn private_dir(run_id: &str) -> Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    for _ in 0..16 {
        let suffix: String = std::iter::repeat_with(fastrand::alphanumeric)
            .take(12)
            .collect();
        let p = std::env::temp_dir().join(format!("virtmark-{run_id}-{suffix}"));
        match std::fs::DirBuilder::new().mode(0o700).create(&p) {
            Ok(()) => return Ok(p),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e).with_context(|| format!("creating {}", p.display())),
        }
    }
    anyhow::bail!("no free name for a test start directory")
}

/// The last meaningful lines of a log, on one line.
fn tail(path: &Path) -> String {
    let Ok(text) = std::fs::read(path) else {
        return String::new();
    };
    let text = String::from_utf8_lossy(&text);
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("[<") && !l.starts_with("Stack:"))
        .collect();
    // A kernel panic says why a few lines above its last ones.
    let from = lines
        .iter()
        .position(|l| l.contains("failed") || l.contains("panic") || l.contains("error"))
        .unwrap_or(lines.len().saturating_sub(3));
    let picked = &lines[from..lines.len().min(from + 3)];
    let mut s = picked.join(" | ");
    if s.len() > 400 {
        let mut cut = 400;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_tail_names_the_failure_line() {
        let d = std::env::temp_dir().join(format!("virtmark-tail-{}", std::process::id()));
        std::fs::write(
            &d,
            "Run /virtmark as init process\nuserspace - ptrace set fp regs failed, errno = 14\n\
             Kernel panic - not syncing: Attempted to kill init!\n [<6002c0dd>] x\n",
        )
        .unwrap();
        let t = tail(&d);
        std::fs::remove_file(&d).unwrap();
        assert!(
            t.starts_with("userspace - ptrace set fp regs failed"),
            "{t}"
        );
        assert!(t.contains("Attempted to kill init"), "{t}");
        assert!(!t.contains("[<"), "{t}");
    }

    #[test]
    fn a_test_start_directory_is_named_after_its_run() {
        // `virtmark cleanup` trusts a scratch root only under its run's name
        // (`ledger::a_killed_test_start_leaves_nothing_after_cleanup`).
        let (run_id, tag) = test_start_id("qemu:tcg");
        assert!(run_id.starts_with("verify-qemu_tcg-") && run_id.ends_with(&tag));
        let dir = private_dir(&run_id).unwrap();
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        std::fs::remove_dir(&dir).unwrap();
        assert!(name.starts_with(&format!("virtmark-{run_id}-")), "{name}");
    }

    #[test]
    fn a_missing_tool_is_named() {
        let e = key("uml", &["virtmark-no-such-tool"]).err().unwrap();
        assert!(format!("{e:#}").contains("virtmark-no-such-tool"));
    }
}
