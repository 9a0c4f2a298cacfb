//! `native`: the agent as a plain child process, the baseline every other target
//! is normalized against.

use std::fs::File;
use std::process::{Child, Command, Stdio};

use anyhow::Context;

use super::{Driver, Instance, StartEnv, Teardown};

/// The native driver.
pub struct Native;

impl Driver for Native {
    fn name(&self) -> &str {
        "native"
    }

    fn available(&self) -> Result<(), String> {
        Ok(())
    }

    fn start(&self, env: &StartEnv) -> anyhow::Result<Instance> {
        std::fs::create_dir_all(&env.scratch)
            .with_context(|| format!("creating scratch directory {}", env.scratch.display()))?;
        let log = File::create(&env.log)
            .with_context(|| format!("creating agent log {}", env.log.display()))?;
        let mut cmd = Command::new(env.exe);
        cmd.arg("agent")
            .arg("--scratch")
            .arg(&env.scratch)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log));
        crate::sys::die_with_parent(&mut cmd);
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting agent {}", env.exe.display()))?;
        let to_agent = child.stdin.take().context("agent stdin")?;
        let from_agent = child.stdout.take().context("agent stdout")?;
        Ok(Instance {
            to_agent: Box::new(to_agent),
            from_agent: Box::new(from_agent),
            peer: env.peer.map(|p| p.to_string()),
            teardown: Box::new(ChildGuard {
                child: Some(child),
                scratch: env.scratch.clone(),
            }),
        })
    }
}

/// Kills and reaps a child agent and removes its scratch directory.
pub struct ChildGuard {
    child: Option<Child>,
    scratch: std::path::PathBuf,
}

impl Teardown for ChildGuard {
    fn teardown(&mut self) -> anyhow::Result<()> {
        if let Some(mut c) = self.child.take() {
            crate::sys::stop_child(&mut c, std::time::Duration::from_secs(2));
        }
        match std::fs::remove_dir_all(&self.scratch) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(e).with_context(|| format!("removing {}", self.scratch.display()))
            }
            _ => Ok(()),
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.teardown();
    }
}
