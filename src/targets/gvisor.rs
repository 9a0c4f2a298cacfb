//! `gvisor`: `runsc` runs the same kind of bundle as the OCI targets (see
//! [`super::oci`]). The sandbox joins virtmark's target network namespace named
//! by the spec, so the agent's traffic stays inside virtmark's namespaces. The
//! network mode is `host` (gVisor's hostinet: socket calls served by the kernel
//! stack of that namespace), not gVisor's own netstack: the packaged runsc
//! (2022-12-19) decides whether it sits in the root network namespace by the
//! existence of /proc/sys/net/core/rmem_default, which every namespace has on
//! this 6.x kernel, and so refuses `--network=sandbox` in any namespace. The platform is ptrace (the KVM platform hangs on this host's
//! nested KVM; systrap does not exist in the packaged runsc). `runsc run` with a
//! bundle rather than `runsc do`: `do` shares the host's root file system
//! (overlaid), while a bundle gives the sandbox its own root and only the
//! instance's scratch directory, like the other containers.

use std::process::Command;

use anyhow::Result;

use super::oci::{self, SpecFlavor};
use super::{cgroup, netns, tools, Driver, Family, Guard, Instance, StartEnv};

/// The gVisor driver.
pub struct Gvisor;

/// Its names.
pub const FAMILY: Family = Family {
    names: &["gvisor"],
    not_default: &[],
    make: |n| (n == "gvisor").then(|| Ok(Box::new(Gvisor) as Box<dyn Driver>)),
};

/// The platform used.
pub const PLATFORM: &str = "ptrace";

impl Driver for Gvisor {
    fn name(&self) -> &str {
        "gvisor"
    }

    fn class(&self) -> &'static str {
        "application kernel (sandbox)"
    }

    fn available(&self) -> Result<(), String> {
        tools::runs("runsc", "runsc")?;
        netns::check_available()?;
        cgroup::check_available()?;
        super::verify::proven(self.name(), &["runsc"], |env| self.start(env))
    }

    fn start(&self, env: &StartEnv) -> Result<Instance> {
        let mut guard = Guard::new(env.ledger.clone());
        let b = oci::prepare(&mut guard, env, "virtmark-gvisor", &SpecFlavor::Gvisor)?;
        let mut cmd = Command::new("runsc");
        cmd.arg("--root")
            .arg(&b.state)
            .arg(format!("--platform={PLATFORM}"))
            .arg("--network=host")
            .arg("run")
            .arg("--bundle")
            .arg(&b.dir)
            .arg(&b.id)
            .current_dir(&b.dir);
        let child = oci::spawn_runtime(&mut guard, env, cmd, "runsc", &b, Vec::new(), Vec::new())?;
        oci::finish(guard, child, b.peer)
    }
}
