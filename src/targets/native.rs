//! `native`: the agent as a plain child process, the baseline every other target
//! is normalized against.

use anyhow::Context;

use super::{Driver, Guard, Instance, StartEnv};

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
        let mut guard = Guard::new(env.ledger.clone());
        guard.create_dir(&env.scratch)?;
        let mut cmd = env.host_agent_command()?;
        if let Some(cpus) = &env.cpuset {
            crate::sys::pin_to(&mut cmd, cpus)?;
        }
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting agent {}", env.exe.display()))?;
        let to_agent = child.stdin.take().context("agent stdin")?;
        let from_agent = child.stdout.take().context("agent stdout")?;
        guard.adopt(child)?;
        Ok(Instance {
            to_agent: Box::new(to_agent),
            from_agent: Box::new(from_agent),
            peer: env.peer.map(|p| p.to_string()),
            teardown: Box::new(guard),
        })
    }
}
