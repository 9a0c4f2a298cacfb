//! `native`: the agent as a plain child process, the baseline every other target
//! is normalized against. It runs in a cgroup with the same CPU and memory envelope
//! as every target (`cpus`: a CFS quota and the first CPUs of the cpuset when fewer
//! than the host's; `memory`), so that a ratio compares the layer, not the machine
//! size — unless `--native-unbounded`, or where cgroups cannot be made (not root),
//! which it says on standard error and the fingerprint's cgroup limits record.

use anyhow::Context;

use super::cgroup::{self, Limits};
use super::{Driver, Family, Guard, Instance, StartEnv, TargetKind};

/// The native driver.
pub struct Native;

/// Its names.
pub const FAMILY: Family = Family {
    names: &["native"],
    not_default: &[],
    make: |n| (n == "native").then(|| Ok(Box::new(Native) as Box<dyn Driver>)),
};

impl Driver for Native {
    fn name(&self) -> &str {
        "native"
    }

    fn class(&self) -> &'static str {
        "none (baseline)"
    }

    fn kind(&self) -> TargetKind {
        TargetKind::Native
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
        if !env.native_unbounded {
            match cgroup::check_available() {
                Ok(()) => {
                    let cg = cgroup::create(&mut guard, &env.tag, &Limits::of(env))?;
                    let procs = cg.procs_files()?;
                    use std::os::unix::process::CommandExt;
                    // SAFETY: runs between fork and exec in the single-threaded child;
                    // it only writes the child's pid to files opened before the fork
                    // and allocates nothing.
                    unsafe {
                        cmd.pre_exec(move || cgroup::join_all(&procs));
                    }
                }
                Err(why) => eprintln!(
                    "virtmark: native runs without the targets' CPU and memory envelope: {why}"
                ),
            }
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("starting agent {}", env.exe.display()))?;
        Instance::of_child(guard, child, env.peer.map(|p| p.to_string()))
    }
}
