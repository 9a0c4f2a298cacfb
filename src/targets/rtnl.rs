//! In-process network plumbing for the container targets: named network
//! namespaces and a veth pair between them, made with raw rtnetlink messages
//! instead of `ip` invocations. Each `ip` run costs 4–7 ms here (exec of a
//! dynamically linked binary on a loaded 2-core host) and [`super::netns::veth_pair`]
//! needs nine of them; doing the same work in-process takes well under a
//! millisecond plus the kernel's own cost of making two network namespaces.
//!
//! The namespaces are made exactly as `ip netns add` makes them (a bind mount of
//! the namespace file on `/run/netns/NAME`, with `/run/netns` a shared mount), so
//! `ip netns`, the ledger's removal and `virtmark cleanup` treat them alike.

use std::fs::File;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use nix::mount::{mount, MsFlags};
use nix::sched::{unshare, CloneFlags};
use nix::sys::socket::{
    bind, recv, send, socket, AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol,
    SockType,
};

use super::ledger::Resource;
use super::netns::{addresses, VethPair, PREFIX};
use super::Guard;

const NETNS_DIR: &str = "/run/netns";

const RTM_NEWLINK: u16 = 16;
const RTM_GETLINK: u16 = 18;
const RTM_NEWADDR: u16 = 20;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;
const IFLA_IFNAME: u16 = 3;
const IFLA_LINKINFO: u16 = 18;
const IFLA_NET_NS_FD: u16 = 28;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_INFO_DATA: u16 = 2;
const VETH_INFO_PEER: u16 = 1;
const NLA_F_NESTED: u16 = 0x8000;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFF_UP: u32 = 1;
const AF_INET: u8 = 2;

/// A netlink message under construction: header, fixed part, attributes.
struct Msg {
    buf: Vec<u8>,
    nests: Vec<usize>,
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

impl Msg {
    fn new(ty: u16, flags: u16) -> Msg {
        let mut buf = vec![0u8; 16];
        buf[4..6].copy_from_slice(&ty.to_ne_bytes());
        buf[6..8].copy_from_slice(&(flags | NLM_F_REQUEST).to_ne_bytes());
        Msg {
            buf,
            nests: Vec::new(),
        }
    }

    /// `struct ifinfomsg`.
    fn ifinfo(mut self, index: i32, flags: u32, change: u32) -> Msg {
        self.buf.extend_from_slice(&[0, 0, 0, 0]); // family, pad, type
        self.buf.extend_from_slice(&index.to_ne_bytes());
        self.buf.extend_from_slice(&flags.to_ne_bytes());
        self.buf.extend_from_slice(&change.to_ne_bytes());
        self
    }

    fn pad(&mut self) {
        let n = align4(self.buf.len());
        self.buf.resize(n, 0);
    }

    fn attr(mut self, ty: u16, data: &[u8]) -> Msg {
        self.pad();
        let len = (4 + data.len()) as u16;
        self.buf.extend_from_slice(&len.to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(data);
        self
    }

    fn attr_str(self, ty: u16, s: &str) -> Msg {
        let mut d = s.as_bytes().to_vec();
        d.push(0);
        self.attr(ty, &d)
    }

    fn begin(mut self, ty: u16) -> Msg {
        self.pad();
        self.nests.push(self.buf.len());
        self.buf.extend_from_slice(&[0, 0]);
        self.buf
            .extend_from_slice(&(ty | NLA_F_NESTED).to_ne_bytes());
        self
    }

    fn end(mut self) -> Msg {
        self.pad();
        let start = self.nests.pop().expect("balanced nesting");
        let len = (self.buf.len() - start) as u16;
        self.buf[start..start + 2].copy_from_slice(&len.to_ne_bytes());
        self
    }

    fn finish(mut self, seq: u32) -> Vec<u8> {
        self.pad();
        let len = self.buf.len() as u32;
        self.buf[0..4].copy_from_slice(&len.to_ne_bytes());
        self.buf[8..12].copy_from_slice(&seq.to_ne_bytes());
        self.buf
    }
}

/// A route netlink socket bound to the network namespace it was opened in.
struct Rtnl {
    fd: OwnedFd,
    seq: u32,
}

impl Rtnl {
    fn open() -> Result<Rtnl> {
        let fd = socket(
            AddressFamily::Netlink,
            SockType::Raw,
            SockFlag::SOCK_CLOEXEC,
            SockProtocol::NetlinkRoute,
        )
        .context("opening a route netlink socket")?;
        bind(fd.as_raw_fd(), &NetlinkAddr::new(0, 0)).context("binding netlink socket")?;
        Ok(Rtnl { fd, seq: 0 })
    }

    /// Send `msg`, return the first answer's payload after the header; an
    /// `NLMSG_ERROR` with a non-zero code is an error.
    fn call(&mut self, msg: Msg, what: &str) -> Result<Vec<u8>> {
        self.seq += 1;
        let bytes = msg.finish(self.seq);
        send(self.fd.as_raw_fd(), &bytes, MsgFlags::empty())
            .with_context(|| format!("netlink: {what}"))?;
        let mut buf = vec![0u8; 8192];
        loop {
            let n = recv(self.fd.as_raw_fd(), &mut buf, MsgFlags::empty())
                .with_context(|| format!("netlink: {what}"))?;
            let mut off = 0;
            while off + 16 <= n {
                let len = u32::from_ne_bytes(buf[off..off + 4].try_into()?) as usize;
                let ty = u16::from_ne_bytes(buf[off + 4..off + 6].try_into()?);
                let seq = u32::from_ne_bytes(buf[off + 8..off + 12].try_into()?);
                if len < 16 || off + len > n {
                    bail!("netlink: {what}: malformed answer");
                }
                if seq == self.seq {
                    let body = &buf[off + 16..off + len];
                    if ty == NLMSG_ERROR {
                        let code = i32::from_ne_bytes(body[0..4].try_into()?);
                        if code != 0 {
                            bail!(
                                "netlink: {what}: {}",
                                nix::errno::Errno::from_raw(-code).desc()
                            );
                        }
                    }
                    return Ok(body.to_vec());
                }
                off += align4(len);
            }
        }
    }

    fn index_of(&mut self, name: &str) -> Result<i32> {
        let body = self.call(
            Msg::new(RTM_GETLINK, 0)
                .ifinfo(0, 0, 0)
                .attr_str(IFLA_IFNAME, name),
            &format!("looking up {name}"),
        )?;
        if body.len() < 16 {
            bail!("netlink: no link {name}");
        }
        Ok(i32::from_ne_bytes(body[4..8].try_into()?))
    }

    fn set_up(&mut self, index: i32) -> Result<()> {
        self.call(
            Msg::new(RTM_NEWLINK, NLM_F_ACK).ifinfo(index, IFF_UP, IFF_UP),
            "setting a link up",
        )
        .map(drop)
    }

    fn add_addr(&mut self, index: i32, ip: Ipv4Addr, prefix: u8) -> Result<()> {
        let mut m = Msg::new(RTM_NEWADDR, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL);
        // struct ifaddrmsg: family, prefixlen, flags, scope, index.
        m.buf.extend_from_slice(&[AF_INET, prefix, 0, 0]);
        m.buf.extend_from_slice(&(index as u32).to_ne_bytes());
        let m = m
            .attr(IFA_LOCAL, &ip.octets())
            .attr(IFA_ADDRESS, &ip.octets());
        self.call(m, &format!("adding address {ip}/{prefix}"))
            .map(drop)
    }

    /// A veth pair: `name` here, `peer` in the namespace `peer_ns`.
    fn add_veth(&mut self, name: &str, peer: &str, peer_ns: &File) -> Result<()> {
        let m = Msg::new(RTM_NEWLINK, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL)
            .ifinfo(0, 0, 0)
            .attr_str(IFLA_IFNAME, name)
            .begin(IFLA_LINKINFO)
            .attr_str(IFLA_INFO_KIND, "veth")
            .begin(IFLA_INFO_DATA)
            .begin(VETH_INFO_PEER)
            .ifinfo(0, 0, 0)
            .attr_str(IFLA_IFNAME, peer)
            .attr(IFLA_NET_NS_FD, &peer_ns.as_raw_fd().to_ne_bytes())
            .end()
            .end()
            .end();
        self.call(m, &format!("creating veth pair {name}/{peer}"))
            .map(drop)
    }
}

/// Make `/run/netns` a shared mount point, as `ip netns add` does, so the
/// namespace bind mounts propagate into mount namespaces made later.
fn prepare_netns_dir() -> Result<()> {
    std::fs::create_dir_all(NETNS_DIR).with_context(|| format!("creating {NETNS_DIR}"))?;
    let shared = MsFlags::MS_SHARED | MsFlags::MS_REC;
    match mount(None::<&str>, NETNS_DIR, Some("none"), shared, None::<&str>) {
        Ok(()) => Ok(()),
        Err(nix::errno::Errno::EINVAL) => {
            mount(
                Some(NETNS_DIR),
                NETNS_DIR,
                Some("none"),
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            )
            .with_context(|| format!("bind-mounting {NETNS_DIR} on itself"))?;
            mount(None::<&str>, NETNS_DIR, Some("none"), shared, None::<&str>)
                .with_context(|| format!("making {NETNS_DIR} shared"))
        }
        Err(e) => Err(e).with_context(|| format!("making {NETNS_DIR} shared")),
    }
}

/// Move the calling thread into a new network namespace and name it `name`.
/// Only for a thread of its own (the caller's namespace changes).
fn new_named_netns(name: &str) -> Result<PathBuf> {
    let path = Path::new(NETNS_DIR).join(name);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .with_context(|| format!("creating {}", path.display()))?;
    unshare(CloneFlags::CLONE_NEWNET).context("unshare(CLONE_NEWNET)")?;
    mount(
        Some("/proc/thread-self/ns/net"),
        &path,
        Some("none"),
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .with_context(|| format!("binding the network namespace on {}", path.display()))?;
    Ok(path)
}

/// Like [`super::netns::veth_pair`] (same names, addresses and ledger entries),
/// but made in-process with rtnetlink: `virtmark-<tag>-p` (peer) and
/// `virtmark-<tag>-t` (target) joined by `vmkp0` ↔ `eth0`, loopback up in both.
pub fn veth_pair(guard: &mut Guard, tag: &str, index: u8) -> Result<VethPair> {
    let peer_ns = format!("virtmark-{tag}-p");
    let target_ns = format!("virtmark-{tag}-t");
    let (pip, tip) = addresses(index);
    let (pif, tif) = ("vmkp0", "eth0");
    prepare_netns_dir()?;
    for name in [&target_ns, &peer_ns] {
        let res = Resource::Netns { name: name.clone() };
        // Recorded first; made below by the worker thread.
        guard.create(res, || Ok(()))?;
    }
    let (t, p) = (target_ns.clone(), peer_ns.clone());
    // A thread of its own: it changes network namespace on the way.
    std::thread::spawn(move || -> Result<()> {
        new_named_netns(&t)?;
        let mut tn = Rtnl::open()?;
        tn.set_up(1)?;
        let peer_path = new_named_netns(&p)?;
        let mut pn = Rtnl::open()?;
        pn.set_up(1)?;
        let peer_file =
            File::open(&peer_path).with_context(|| format!("opening {}", peer_path.display()))?;
        tn.add_veth(tif, pif, &peer_file)?;
        let ti = tn.index_of(tif)?;
        tn.add_addr(ti, tip, PREFIX)?;
        tn.set_up(ti)?;
        let pi = pn.index_of(pif)?;
        pn.add_addr(pi, pip, PREFIX)?;
        pn.set_up(pi)?;
        Ok(())
    })
    .join()
    .map_err(|_| anyhow::anyhow!("the network set-up thread panicked"))??;
    Ok(VethPair {
        peer_ns,
        target_ns,
        peer_ip: pip,
        target_ip: tip,
        target_if: tif.into(),
    })
}

/// Open a named network namespace, for `setns`.
pub fn open_netns(name: &str) -> Result<File> {
    let p = Path::new(NETNS_DIR).join(name);
    File::open(&p).with_context(|| format!("opening network namespace {}", p.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_aligned_and_nested_lengths_are_right() {
        let m = Msg::new(RTM_NEWLINK, NLM_F_ACK)
            .ifinfo(0, 0, 0)
            .attr_str(IFLA_IFNAME, "eth0")
            .begin(IFLA_LINKINFO)
            .attr_str(IFLA_INFO_KIND, "veth")
            .end()
            .finish(7);
        // 16 header + 16 ifinfomsg + 12 (4 + "eth0\0" padded) + 4 nest + 12 ("veth\0").
        assert_eq!(m.len(), 16 + 16 + 12 + 16);
        assert_eq!(u32::from_ne_bytes(m[0..4].try_into().unwrap()), 60);
        assert_eq!(u32::from_ne_bytes(m[8..12].try_into().unwrap()), 7);
        let nest_len = u16::from_ne_bytes(m[44..46].try_into().unwrap());
        assert_eq!(nest_len, 16);
        let nest_ty = u16::from_ne_bytes(m[46..48].try_into().unwrap());
        assert_eq!(nest_ty, IFLA_LINKINFO | NLA_F_NESTED);
    }
}
