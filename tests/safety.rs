//! `virtmark cleanup` as root trusts nothing: ledgers crafted to point at a
//! foreign directory, `/`, `..`, a foreign network interface (a tap: this
//! kernel has no dummy driver), a foreign cgroup,
//! a runtime script outside `PATH` and a reused pid, registered for a dead run,
//! are refused and reported, every one of those things left as it was, while
//! the run's real leftovers (its scratch, its virtmark process, its link) go.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::Sandbox;
use virtmark::targets::ledger::{process_start_time, Resource};

fn line(res: &Resource) -> String {
    let mut v = serde_json::to_value(res).unwrap();
    v["op"] = "create".into();
    format!("{v}\n")
}

/// Removes what the test made, also when it fails half-way.
struct Undo(Vec<std::path::PathBuf>);

impl Drop for Undo {
    fn drop(&mut self) {
        for p in &self.0 {
            if let Ok(procs) = std::fs::read_to_string(p.join("cgroup.procs")) {
                for pid in procs.lines().filter_map(|l| l.trim().parse().ok()) {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
                let _ = std::fs::remove_dir(p);
            } else {
                let _ = std::fs::remove_dir_all(p);
            }
        }
    }
}

fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test needs root (cgroups, network namespaces)"
    );
}

#[test]
fn cleanup_refuses_crafted_ledgers_and_removes_real_leftovers() {
    require_root();
    let sb = Sandbox::new();
    let reg = sb.path().join("registry");
    std::fs::create_dir(&reg).unwrap();
    let run_id = format!("20990101-000000-{:04x}", std::process::id() & 0xffff);

    // The run's real leftovers: its scratch root with a file, a virtmark peer.
    let root = std::env::temp_dir().join(format!("virtmark-{run_id}-crafted1"));
    virtmark::targets::ledger::create_private_dir(&root).unwrap();
    std::fs::write(root.join("data"), "x").unwrap();
    let mut peer = Command::new(assert_cmd::cargo::cargo_bin("virtmark"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let peer_pid = peer.id() as i32;
    std::thread::sleep(std::time::Duration::from_millis(200));
    let peer_start = process_start_time(peer_pid).unwrap();

    // Things that are not the run's.
    let foreign = sb.path().join("foreign");
    std::fs::create_dir(&foreign).unwrap();
    std::fs::write(foreign.join("keep"), "keep").unwrap();
    let pwned = sb.path().join("pwned");
    let script = sb.path().join("crun");
    std::fs::write(&script, format!("#!/bin/sh\ntouch {}\n", pwned.display())).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let cgroup = Path::new("/sys/fs/cgroup/pids").join(format!("foreign-{run_id}"));
    std::fs::create_dir(&cgroup).unwrap();
    let _undo = Undo(vec![cgroup.clone(), root.clone()]);
    let mut in_cgroup = Command::new("sleep").arg("60").spawn().unwrap();
    std::fs::write(cgroup.join("cgroup.procs"), in_cgroup.id().to_string()).unwrap();
    let mut reused = Command::new("sleep").arg("60").spawn().unwrap();
    let reused_pid = reused.id() as i32;
    let reused_start = process_start_time(reused_pid).unwrap();

    let entries = [
        Resource::Dir { path: root.clone() },
        Resource::Dir {
            path: root.join("data"),
        },
        Resource::Process {
            pid: peer_pid,
            start_time: peer_start,
        },
        Resource::Link {
            name: "vmkcraft0".into(),
        },
        Resource::Dir {
            path: foreign.clone(),
        },
        Resource::Dir { path: "/".into() },
        Resource::Dir {
            path: root.join("../..").join(foreign.strip_prefix("/").unwrap()),
        },
        Resource::Link {
            name: "foreign0".into(),
        },
        Resource::Cgroup {
            path: cgroup.clone(),
        },
        Resource::Container {
            runtime: script.display().to_string(),
            id: "virtmark-x".into(),
            root: None,
        },
        Resource::Process {
            pid: reused_pid,
            start_time: reused_start - 1,
        },
        Resource::Process {
            pid: in_cgroup.id() as i32,
            start_time: process_start_time(in_cgroup.id() as i32).unwrap(),
        },
    ];
    let run_dir = sb.path().join("out").join(&run_id);
    std::fs::create_dir_all(&run_dir).unwrap();
    let ledger = run_dir.join("ledger.jsonl");
    std::fs::write(&ledger, entries.iter().map(line).collect::<String>()).unwrap();
    let registration = serde_json::json!({
        "ledger": ledger,
        "pid": i32::MAX,
        "start_time": 1,
        "scratch_root": root,
    });
    std::fs::write(reg.join(format!("{run_id}.json")), registration.to_string()).unwrap();

    // Interfaces only in a network namespace of the test's own.
    let exe = assert_cmd::cargo::cargo_bin("virtmark");
    let script_text = format!(
        "ip tuntap add dev foreign0 mode tap && ip tuntap add dev vmkcraft0 mode tap && \
         {} cleanup; echo \"exit=$?\"; \
         ip -o link show foreign0 >/dev/null 2>&1 && echo foreign0-present; \
         ip -o link show vmkcraft0 >/dev/null 2>&1 && echo vmkcraft0-present; true",
        exe.display()
    );
    let out = Command::new("unshare")
        .args(["--net", "sh", "-c", &script_text])
        .env("VIRTMARK_REGISTRY", &reg)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    eprintln!("{stdout}\n{stderr}");

    // Untouched, each with its reason.
    assert!(
        foreign.join("keep").exists(),
        "the foreign directory was removed"
    );
    assert!(stdout.contains("foreign0-present"), "foreign link removed");
    assert!(cgroup.is_dir(), "the foreign cgroup was removed");
    let alive = |c: &mut std::process::Child| c.try_wait().unwrap().is_none();
    assert!(
        alive(&mut in_cgroup),
        "the process in the foreign cgroup was killed"
    );
    assert!(
        alive(&mut reused),
        "the process holding a reused pid was killed"
    );
    assert!(!pwned.exists(), "the runtime script was run");
    for why in [
        &format!("{}: not under the run's scratch", foreign.display()),
        "/: not under the run's scratch",
        "not a plain absolute path",
        "link \"foreign0\": not a name virtmark gives",
        &format!("cgroup {}: not one of virtmark's", cgroup.display()),
        "not one of crun, runc, runsc, lxc, docker, virsh found on PATH",
        &format!("process {reused_pid}: the pid belongs to another process now"),
        "\"sleep 60\" is not a program virtmark starts",
    ] {
        assert!(stdout.contains(why), "no refusal {why:?} in:\n{stdout}");
    }
    assert_eq!(stdout.matches("refused run").count(), 8, "{stdout}");
    // The real leftovers are gone.
    assert!(!root.exists(), "the run's scratch remains");
    assert!(
        !stdout.contains("vmkcraft0-present"),
        "the run's link remains"
    );
    assert!(
        peer.try_wait().unwrap().is_some(),
        "the run's peer still runs"
    );
    assert!(stdout.contains("exit=0"), "{stdout}\n{stderr}");

    for mut c in [in_cgroup, reused] {
        let _ = c.kill();
        let _ = c.wait();
    }
}
