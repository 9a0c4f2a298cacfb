//! `libvirt` and `libvirt:<domain>` for real: a private libvirtd in namespaces
//! of virtmark's running a transient QEMU domain that boots virtmark's kernel
//! and initramfs; one workload end to end with a positive result, a network
//! workload over the tap, and nothing of the run left behind — after a normal
//! run, and after SIGKILL of virtmark plus `virtmark cleanup` (daemon, QEMU,
//! domain, network namespace, cgroups, sockets, images). `libvirt:<domain>`
//! against a domain the test defines and starts itself in a daemon of its own.

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use virtmark::targets::ledger::Ledger;
use virtmark::targets::{initramfs, libvirt, netns, qemu, Guard};

/// Whether a host libvirt directory exists now (the private daemon's `/run`
/// is its own, so it must never create the host's `/run/libvirt`).
fn host_run_libvirt() -> bool {
    Path::new("/run/libvirt").exists()
}

#[test]
fn libvirt_runs_cpu_int_and_leaves_nothing() {
    if common::skip_or_require("libvirt") {
        return;
    }
    let before = host_run_libvirt();
    let r = common::one_workload_leaves_nothing("libvirt", "cpu-int", Duration::from_secs(120));
    // The guest: 2 GiB, as the studies gave theirs, seen from inside.
    let fp = &r["targets"][0]["fingerprint"];
    let mem = fp["memory"]["total"].as_u64().unwrap_or(0);
    assert!(mem > 1 << 30 && mem <= 2 << 30, "{fp:#}");
    assert!(
        before || !host_run_libvirt(),
        "a private libvirtd wrote /run/libvirt"
    );
}

#[test]
fn libvirt_reaches_the_peer_over_its_tap() {
    if common::skip_or_require("libvirt") {
        return;
    }
    common::one_workload_leaves_nothing("libvirt", "net-rr", Duration::from_secs(120));
}

#[test]
fn libvirt_killed_then_cleaned_up() {
    if common::skip_or_require("libvirt") {
        return;
    }
    // Killed once the domain is recorded (during `virsh create` or the boot):
    // the daemon dies with virtmark, QEMU outlives it until cleanup.
    common::killed_then_cleaned_up("libvirt", "\"runtime\":\"virsh\"", Duration::from_secs(90));
}

/// A daemon, a persistent domain booting virtmark's kernel and initramfs with
/// the agent as init on its `virtmark` channel, removed on drop.
struct UserDomain {
    uri: String,
    name: String,
    guard: Option<Guard>,
    ledger: Arc<Ledger>,
    _dir: tempfile::TempDir,
}

impl UserDomain {
    fn start() -> UserDomain {
        let dir = tempfile::Builder::new()
            .prefix("virtmark-lvtest")
            .tempdir_in("/var/tmp")
            .expect("a test directory");
        let base = dir.path().to_path_buf();
        let tag: String = std::iter::repeat_with(fastrand::lowercase)
            .take(5)
            .collect();
        let ledger = Arc::new(
            Ledger::create(&base, &format!("lvtest-{tag}"), Some(&base)).expect("a ledger"),
        );
        let mut guard = Guard::new(ledger.clone());
        let ns = format!("virtmark-lvt{tag}");
        netns::create_netns(&mut guard, &ns).expect("a network namespace");
        let d = libvirt::start_daemon(
            &mut guard,
            &base,
            &ns,
            &format!("lvt{tag}"),
            0,
            &base.join("libvirtd.log"),
        )
        .expect("a libvirtd of the test's own");
        let k = qemu::kernel().expect("the guest kernel");
        let exe = assert_cmd::cargo::cargo_bin("virtmark");
        let initrd = initramfs::cached(
            &exe,
            &initramfs::module_root_for(&k),
            initramfs::VIRTIO_MODULES,
        )
        .expect("virtmark's initramfs");
        let image = base.join("scratch.img");
        qemu::scratch_image(&mut guard, &image, 1 << 30).expect("a scratch image");
        let name = format!("virtmark-test-{tag}");
        let cmdline = qemu::kernel_cmdline(&k, None, false);
        let xml = libvirt::domain_xml(&libvirt::DomainSpec {
            name: &name,
            kvm: false,
            cpus: 1,
            cpuset: None,
            memory_mib: 512,
            kernel: &k,
            initrd: &initrd,
            cmdline: &cmdline,
            firmware: None,
            scratch_image: &image,
            toolchain_image: None,
            console: &base.join("console.log"),
            channel: &base.join("chan.sock"),
            tap: None,
        });
        let xml_path = base.join("domain.xml");
        std::fs::write(&xml_path, xml).expect("domain XML");
        let ud = UserDomain {
            uri: d.uri,
            name,
            guard: Some(guard),
            ledger,
            _dir: dir,
        };
        ud.virsh(&["define", &xml_path.to_string_lossy()]);
        ud.virsh(&["start", &ud.name]);
        ud
    }

    fn virsh(&self, args: &[&str]) -> String {
        let out = Command::new("virsh")
            .args(["-q", "-c", &self.uri])
            .args(args)
            .output()
            .expect("virsh runs");
        assert!(
            out.status.success(),
            "virsh {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for UserDomain {
    fn drop(&mut self) {
        for args in [["destroy", &self.name], ["undefine", &self.name]] {
            let _ = Command::new("virsh")
                .args(["-q", "-c", &self.uri])
                .args(args)
                .output();
        }
        if let Some(mut g) = self.guard.take() {
            let _ = virtmark::targets::Teardown::teardown(&mut g);
        }
        let left = self.ledger.close_now().unwrap_or_default();
        if !std::thread::panicking() {
            assert!(left.is_empty(), "the test's daemon left {left:?}");
        }
    }
}

#[test]
fn libvirt_domain_reached_over_its_channel() {
    if common::skip_allowed("libvirt:<domain>") {
        return;
    }
    common::require_root();
    common::require_tool("libvirtd", "libvirt-daemon-system");
    let ud = UserDomain::start();
    // Only this test reads it: the other tests of this file run `libvirt`.
    std::env::set_var("VIRTMARK_LIBVIRT_URI", &ud.uri);
    let target = format!("libvirt:{}", ud.name);
    common::require_target(&target);
    common::one_workload_leaves_nothing(&target, "cpu-int", Duration::from_secs(120));
    // The agent was the guest's init: it powered the guest off at the end, and
    // the domain is still defined (virtmark never undefines a user's domain).
    let t = std::time::Instant::now();
    loop {
        let state = ud.virsh(&["domstate", &ud.name]);
        if state.trim() == "shut off" {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(10), "domain is {state}");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(ud.virsh(&["list", "--all", "--name"]).contains(&ud.name));
}
