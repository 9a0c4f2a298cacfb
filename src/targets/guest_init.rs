//! `virtmark agent --init`: the agent as the guest's init (PID 1) inside a VM
//! (UML or QEMU). It mounts /proc, /sys and /dev, loads the kernel modules the
//! initramfs carries, configures eth0, mounts the scratch disk, then serves the
//! agent protocol on the channel device and powers the guest off when the host
//! says `shutdown` or closes the channel.
//!
//! Everything it needs comes from the kernel command line (`virtmark.*=` words):
//! - `virtmark.probe=1`: power off at once (KVM probe, bare boot timing);
//! - `virtmark.modules=DIR`: load `DIR/<name>.ko` for each line of `DIR/order`;
//! - `virtmark.nomod=A,B`: but not these (the network's, when there is no NIC);
//! - `virtmark.ip=A.B.C.D/N`: address of eth0;
//! - `virtmark.disk=/dev/X`: ext4 scratch disk, mounted at /scratch;
//! - `virtmark.toolchain=/dev/X` or `hostfs:DIR,…`: the host's toolchain,
//!   read-only (see [`super::toolchain`]);
//! - `virtmark.chan=/dev/X` or `virtmark.chan=port:NAME` (a virtio-serial port
//!   found by name): the agent channel;
//! - `virtmark.off=reboot`: leave by reboot(2) instead of power-off (QEMU with
//!   `-no-reboot` exits on either; power-off needs ACPI).

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::BufReader;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::mount::{mount, MsFlags};

/// Where the scratch disk is mounted in the guest.
pub const SCRATCH: &str = "/scratch";

/// Run as PID 1 of a guest. Never returns: the guest powers off.
pub fn run() -> ! {
    let mut how = "poweroff".to_string();
    if let Err(e) = init(&mut how) {
        eprintln!("virtmark init: {e:#}");
    }
    nix::unistd::sync();
    let _ = nix::mount::umount2(SCRATCH, nix::mount::MntFlags::MNT_DETACH);
    let cmd = if how == "reboot" {
        nix::sys::reboot::RebootMode::RB_AUTOBOOT
    } else {
        nix::sys::reboot::RebootMode::RB_POWER_OFF
    };
    let _ = nix::sys::reboot::reboot(cmd);
    // reboot(2) failed (not PID 1?): leave; the kernel panics and the VM stops.
    std::process::exit(1)
}

/// Say on the console how far the guest got, with the time since boot.
fn mark(what: &str) {
    let up: f64 = std::fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0);
    eprintln!("virtmark init: {what} at {up:.3} s");
}

fn init(how: &mut String) -> Result<()> {
    mount_basics();
    mark("started");
    let cmdline = std::fs::read_to_string("/proc/cmdline").context("reading /proc/cmdline")?;
    let opts = options(&cmdline);
    if let Some(h) = opts.get("off") {
        *how = h.clone();
    }
    if opts.get("probe").is_some_and(|v| v == "1") {
        return Ok(());
    }
    if let Some(dir) = opts.get("modules") {
        let skip: Vec<&str> = opts
            .get("nomod")
            .map(|l| l.split(',').collect())
            .unwrap_or_default();
        load_modules(Path::new(dir), &skip)?;
        mark("modules loaded");
    }
    up("lo", None)?;
    if let Some(ip) = opts.get("ip") {
        let (addr, prefix) = parse_cidr(ip)?;
        up("eth0", Some((addr, prefix)))?;
    }
    let scratch = match opts.get("disk") {
        Some(disk) => {
            let dev = wait_for(disk, Duration::from_secs(5))?;
            std::fs::create_dir_all(SCRATCH).ok();
            // noinit_itable: no background zeroing of inode tables during measurements.
            mount(
                Some(dev.as_str()),
                SCRATCH,
                Some("ext4"),
                MsFlags::empty(),
                Some("noinit_itable"),
            )
            .with_context(|| format!("mounting {dev} on {SCRATCH}"))?;
            SCRATCH.to_string()
        }
        None => "/tmp".to_string(),
    };
    if let Some(spec) = opts.get("toolchain") {
        let spec = if spec.starts_with("/dev/") {
            wait_for(spec, Duration::from_secs(5))?
        } else {
            spec.clone()
        };
        super::toolchain::mount_in_guest(&spec)?;
        // The kernel gives init no PATH; the build workload looks `cc` up in it.
        std::env::set_var("PATH", super::toolchain::TOOLCHAIN_PATH);
        mark("toolchain mounted");
    }
    let chan = opts
        .get("chan")
        .context("no virtmark.chan= on the kernel command line")?;
    let path = channel_path(chan, Duration::from_secs(5))?;
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening agent channel {path}"))?;
    // A tty channel (UML's serial line) must pass bytes untouched: no echo, no
    // newline translation.
    if let Ok(mut t) = nix::sys::termios::tcgetattr(&f) {
        nix::sys::termios::cfmakeraw(&mut t);
        nix::sys::termios::tcsetattr(&f, nix::sys::termios::SetArg::TCSANOW, &t)
            .context("making the channel raw")?;
    }
    let out = f.try_clone().context("duplicating the channel")?;
    mark("serving");
    crate::agent::serve(BufReader::new(f), out, Path::new(&scratch)).context("agent channel")?;
    Ok(())
}

fn mount_basics() {
    for (src, dst, fs) in [
        ("proc", "/proc", "proc"),
        ("sysfs", "/sys", "sysfs"),
        ("devtmpfs", "/dev", "devtmpfs"),
    ] {
        let _ = std::fs::create_dir_all(dst);
        // EBUSY when the kernel mounted it already (UML's devtmpfs automount).
        let _ = mount(Some(src), dst, Some(fs), MsFlags::empty(), None::<&str>);
    }
    // /tmp on a read-only root.
    let _ = mount(
        Some("tmpfs"),
        "/tmp",
        Some("tmpfs"),
        MsFlags::empty(),
        None::<&str>,
    );
}

/// `virtmark.KEY=VALUE` words of a kernel command line.
pub fn options(cmdline: &str) -> HashMap<String, String> {
    cmdline
        .split_whitespace()
        .take_while(|w| *w != "--")
        .filter_map(|w| w.strip_prefix("virtmark."))
        .filter_map(|w| w.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// `10.213.1.2/30` → (address, prefix).
pub fn parse_cidr(s: &str) -> Result<(Ipv4Addr, u8)> {
    let (a, p) = s.split_once('/').unwrap_or((s, "32"));
    let addr: Ipv4Addr = a.parse().with_context(|| format!("bad address {s:?}"))?;
    let prefix: u8 = p.parse().with_context(|| format!("bad prefix {s:?}"))?;
    if prefix > 32 {
        bail!("bad prefix {s:?}");
    }
    Ok((addr, prefix))
}

/// Netmask of a prefix length.
pub fn netmask(prefix: u8) -> Ipv4Addr {
    let bits = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix))
    };
    Ipv4Addr::from(bits)
}

fn load_modules(dir: &Path, skip: &[&str]) -> Result<()> {
    let order = std::fs::read_to_string(dir.join("order"))
        .with_context(|| format!("reading {}/order", dir.display()))?;
    for name in order
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !skip.contains(l))
    {
        let p = dir.join(format!("{name}.ko"));
        let f = File::open(&p).with_context(|| format!("opening {}", p.display()))?;
        match nix::kmod::finit_module(&f, c"", nix::kmod::ModuleInitFlags::empty()) {
            Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
            Err(e) => return Err(e).with_context(|| format!("loading module {name}")),
        }
    }
    Ok(())
}

fn wait_for(path: &str, limit: Duration) -> Result<String> {
    let t = Instant::now();
    while !Path::new(path).exists() {
        if t.elapsed() > limit {
            bail!("{path} did not appear within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(path.to_string())
}

/// The device of the agent channel: a path, or `port:NAME` for the virtio-serial
/// port of that name (its /dev node is named after the sysfs entry).
fn channel_path(chan: &str, limit: Duration) -> Result<String> {
    let Some(name) = chan.strip_prefix("port:") else {
        return wait_for(chan, limit);
    };
    let t = Instant::now();
    loop {
        if let Ok(rd) = std::fs::read_dir("/sys/class/virtio-ports") {
            for e in rd.flatten() {
                let n = std::fs::read_to_string(e.path().join("name")).unwrap_or_default();
                if n.trim() == name {
                    let dev = format!("/dev/{}", e.file_name().to_string_lossy());
                    return wait_for(&dev, limit);
                }
            }
        }
        if t.elapsed() > limit {
            bail!("no virtio-serial port named {name:?} within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Bring an interface up, with an IPv4 address when given (waits for it to appear).
fn up(ifname: &str, addr: Option<(Ipv4Addr, u8)>) -> Result<()> {
    let t = Instant::now();
    while !Path::new("/sys/class/net").join(ifname).exists() {
        if t.elapsed() > Duration::from_secs(5) {
            bail!("network interface {ifname} did not appear");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let sock = nix::sys::socket::socket(
        nix::sys::socket::AddressFamily::Inet,
        nix::sys::socket::SockType::Datagram,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        None,
    )
    .context("socket for interface configuration")?;
    let fd = sock.as_raw_fd();
    if let Some((a, prefix)) = addr {
        for (req, ip) in [
            (nix::libc::SIOCSIFADDR, a),
            (nix::libc::SIOCSIFNETMASK, netmask(prefix)),
        ] {
            let mut ifr = ifreq(ifname);
            let sin = nix::libc::sockaddr_in {
                sin_family: nix::libc::AF_INET as nix::libc::sa_family_t,
                sin_port: 0,
                sin_addr: nix::libc::in_addr {
                    s_addr: u32::from(ip).to_be(),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: ifr_ifru is a union large enough for a sockaddr (16 bytes);
            // sockaddr_in has the same size and layout as sockaddr.
            unsafe {
                std::ptr::write(
                    std::ptr::addr_of_mut!(ifr.ifr_ifru.ifru_addr).cast::<nix::libc::sockaddr_in>(),
                    sin,
                );
            }
            // SAFETY: fd is an open socket and ifr a valid, initialized ifreq that
            // lives across the call.
            let r = unsafe { nix::libc::ioctl(fd, req as _, &mut ifr) };
            if r < 0 {
                return Err(std::io::Error::last_os_error())
                    .with_context(|| format!("setting {ip} on {ifname}"));
            }
        }
    }
    let mut ifr = ifreq(ifname);
    // SAFETY: as above; SIOCGIFFLAGS fills ifru_flags.
    let r = unsafe { nix::libc::ioctl(fd, nix::libc::SIOCGIFFLAGS as _, &mut ifr) };
    if r < 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("reading flags of {ifname}"));
    }
    // SAFETY: SIOCGIFFLAGS just wrote ifru_flags, so reading it is defined.
    unsafe {
        ifr.ifr_ifru.ifru_flags |= (nix::libc::IFF_UP | nix::libc::IFF_RUNNING) as i16;
    }
    // SAFETY: as above; SIOCSIFFLAGS reads ifru_flags.
    let r = unsafe { nix::libc::ioctl(fd, nix::libc::SIOCSIFFLAGS as _, &mut ifr) };
    if r < 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("bringing {ifname} up"));
    }
    Ok(())
}

fn ifreq(name: &str) -> nix::libc::ifreq {
    // SAFETY: ifreq is plain old data (a name array and a union of integers and
    // sockaddrs), for which all-zero bytes are a valid value.
    let mut ifr: nix::libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in ifr
        .ifr_name
        .iter_mut()
        .zip(name.bytes().take(nix::libc::IFNAMSIZ - 1))
    {
        *d = s as nix::libc::c_char;
    }
    ifr
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_the_virtmark_words_before_the_init_arguments() {
        let o = options(
            "console=ttyS0 quiet virtmark.ip=10.213.3.2/30 virtmark.chan=port:virtmark -- agent virtmark.x=1",
        );
        assert_eq!(o.len(), 2);
        assert_eq!(o["ip"], "10.213.3.2/30");
        assert_eq!(o["chan"], "port:virtmark");
    }

    #[test]
    fn cidr_and_netmask() {
        assert_eq!(
            parse_cidr("10.213.3.2/30").unwrap(),
            (Ipv4Addr::new(10, 213, 3, 2), 30)
        );
        assert!(parse_cidr("10.213.3.2/33").is_err());
        assert_eq!(netmask(30), Ipv4Addr::new(255, 255, 255, 252));
        assert_eq!(netmask(24), Ipv4Addr::new(255, 255, 255, 0));
        assert_eq!(netmask(0), Ipv4Addr::new(0, 0, 0, 0));
        assert_eq!(netmask(32), Ipv4Addr::new(255, 255, 255, 255));
    }
}
