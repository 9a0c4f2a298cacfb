//! The agent's side of stressors: each runs as a child process in its own process
//! group (`virtmark stress KIND --params JSON`), so that stopping it kills every
//! process it forked; it gets SIGKILL when the agent dies, and the fork bomb's
//! children when the stressor dies, so nothing outlives the instance.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

use crate::protocol::Response;
use crate::stressors::{StressParams, StressReport, KINDS};

/// Running stressors by request id.
#[derive(Default)]
pub(super) struct Stressors {
    running: BTreeMap<u64, Child>,
}

impl Stressors {
    pub(super) fn start(
        &mut self,
        id: u64,
        kind: &str,
        mut params: StressParams,
        scratch_root: &Path,
    ) -> Response {
        let error = |kind_: &str, message: String| Response::Error {
            id: Some(id),
            kind: kind_.into(),
            message,
        };
        if !KINDS.contains(&kind) {
            return error(
                "bad_request",
                format!("unknown stressor {kind:?} (known: {})", KINDS.join(", ")),
            );
        }
        if self.running.contains_key(&id) {
            return error("bad_request", format!("stressor {id} already runs"));
        }
        if params.dir.is_none() {
            params.dir = Some(scratch_root.join(format!("stress-{}-{id}", std::process::id())));
        }
        let exe = match std::env::current_exe() {
            Ok(e) => e,
            Err(e) => return error("io", format!("locating virtmark: {e}")),
        };
        let json = serde_json::to_string(&params).expect("params serialize");
        let mut cmd = Command::new(exe);
        cmd.args(["stress", kind, "--params", &json])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        // Its own process group (stopping it kills whatever it forked), and
        // killed if the agent dies: a stressor never outlives its instance.
        crate::sys::die_with_parent(&mut cmd);
        match cmd.spawn() {
            Ok(child) => {
                let pid = child.id();
                self.running.insert(id, child);
                Response::StressorStarted { id, pid }
            }
            Err(e) => error("io", format!("starting stressor {kind}: {e}")),
        }
    }

    pub(super) fn stop(&mut self, id: u64) -> Response {
        let Some(child) = self.running.remove(&id) else {
            return Response::Error {
                id: Some(id),
                kind: "bad_request".into(),
                message: format!("no stressor {id} runs"),
            };
        };
        let (report, status) = finish(child);
        Response::StressorStopped { id, report, status }
    }

    pub(super) fn stop_all(&mut self) {
        for (_, c) in std::mem::take(&mut self.running) {
            finish(c);
        }
    }
}

/// SIGTERM the stressor (it reports and exits), then SIGKILL its whole group.
fn finish(mut child: Child) -> (Option<StressReport>, String) {
    let pgid = Pid::from_raw(child.id() as i32);
    let _ = nix::sys::signal::kill(pgid, Signal::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(5);
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break Some(st),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            _ => break None,
        }
    };
    // Whatever it forked (the fork bomb's children) goes with the group.
    let _ = killpg(pgid, Signal::SIGKILL);
    let status = status.or_else(|| child.wait().ok());
    let mut text = String::new();
    if let Some(mut o) = child.stdout.take() {
        let _ = o.read_to_string(&mut text);
    }
    let report = text
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str::<StressReport>(l).ok());
    let status = match status {
        Some(st) => match (st.code(), st.signal()) {
            (Some(c), _) => format!("exit status {c}"),
            (None, Some(9)) => "killed by signal 9 (the OOM killer or a limit)".into(),
            (None, Some(s)) => format!("killed by signal {s}"),
            _ => "ended".into(),
        },
        None => "unknown".into(),
    };
    (report, status)
}
