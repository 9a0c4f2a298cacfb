//! A minimal initramfs for QEMU guests: an uncompressed `newc` cpio archive (the
//! kernel accepts it as is, and unpacking it costs less under TCG than
//! decompressing) holding the agent at `/virtmark` with its libraries, the kernel
//! modules the guest needs under `/lib/modules/virtmark/` with an `order` file
//! (dependency order, from the kernel's `modules.dep`), `/dev/console` and the
//! empty directories the guest init mounts on.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

/// Where the modules live inside the initramfs.
pub const MODULE_DIR: &str = "/lib/modules/virtmark";

/// Writes a `newc` (SVR4, no CRC) cpio archive.
pub struct CpioWriter<W: Write> {
    out: W,
    ino: u32,
    written: u64,
    dirs: HashSet<String>,
}

const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFCHR: u32 = 0o020000;

impl<W: Write> CpioWriter<W> {
    /// A writer on `out`.
    pub fn new(out: W) -> Self {
        CpioWriter {
            out,
            ino: 0,
            written: 0,
            dirs: HashSet::new(),
        }
    }

    fn pad(&mut self) -> io::Result<()> {
        let n = (4 - (self.written % 4) as usize) % 4;
        self.put(&[0u8; 3][..n])
    }

    fn put(&mut self, b: &[u8]) -> io::Result<()> {
        self.out.write_all(b)?;
        self.written += b.len() as u64;
        Ok(())
    }

    fn header(&mut self, name: &str, mode: u32, size: u64, rdev: (u32, u32)) -> io::Result<()> {
        if size > u64::from(u32::MAX) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{name}: too large for a newc archive"),
            ));
        }
        self.ino += 1;
        let nlink = if mode & S_IFDIR != 0 { 2 } else { 1 };
        let fields = [
            self.ino,
            mode,
            0,
            0,
            nlink,
            0,
            size as u32,
            0,
            0,
            rdev.0,
            rdev.1,
            name.len() as u32 + 1,
            0,
        ];
        let mut h = String::with_capacity(110);
        h.push_str("070701");
        for f in fields {
            h.push_str(&format!("{f:08x}"));
        }
        self.put(h.as_bytes())?;
        self.put(name.as_bytes())?;
        self.put(&[0])?;
        self.pad()
    }

    /// A directory (and its parents, once each). `path` is relative, no leading `/`.
    pub fn dir(&mut self, path: &str) -> io::Result<()> {
        let path = path.trim_matches('/');
        if path.is_empty() || self.dirs.contains(path) {
            return Ok(());
        }
        if let Some((parent, _)) = path.rsplit_once('/') {
            self.dir(parent)?;
        }
        self.dirs.insert(path.to_string());
        self.header(path, S_IFDIR | 0o755, 0, (0, 0))
    }

    /// A regular file with `mode` permission bits and the content read from `data`.
    pub fn file(
        &mut self,
        path: &str,
        mode: u32,
        size: u64,
        data: &mut impl Read,
    ) -> io::Result<()> {
        let path = path.trim_start_matches('/');
        if let Some((parent, _)) = path.rsplit_once('/') {
            self.dir(parent)?;
        }
        self.header(path, S_IFREG | (mode & 0o7777), size, (0, 0))?;
        let n = io::copy(&mut data.take(size), &mut self.out)?;
        if n != size {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{path}: shorter than its size"),
            ));
        }
        self.written += n;
        self.pad()
    }

    /// A character device node.
    pub fn char_dev(&mut self, path: &str, mode: u32, major: u32, minor: u32) -> io::Result<()> {
        let path = path.trim_start_matches('/');
        if let Some((parent, _)) = path.rsplit_once('/') {
            self.dir(parent)?;
        }
        self.header(path, S_IFCHR | (mode & 0o7777), 0, (major, minor))
    }

    /// Write the trailer and hand back the output.
    pub fn finish(mut self) -> io::Result<W> {
        self.header("TRAILER!!!", 0, 0, (0, 0))?;
        // The kernel reads archives in 512-byte blocks; pad like cpio(1) does.
        let n = (512 - (self.written % 512) as usize) % 512;
        self.put(&vec![0u8; n])?;
        self.out.flush()?;
        Ok(self.out)
    }
}

/// Modules `wanted` (by name, `-` and `_` alike) and everything they depend on,
/// in an order that loads each after its dependencies, from `modules.dep` text.
/// Returns (name, path relative to the module directory). Names not found as
/// modules are assumed built in (listed in `builtin`) or are an error.
pub fn module_order(
    dep_text: &str,
    builtin: &str,
    wanted: &[&str],
) -> Result<Vec<(String, String)>> {
    let norm = |s: &str| s.replace('-', "_");
    let name_of = |path: &str| {
        let file = path.rsplit('/').next().unwrap_or(path);
        norm(file.split(".ko").next().unwrap_or(file))
    };
    let mut deps: HashMap<String, (String, Vec<String>)> = HashMap::new();
    for line in dep_text.lines() {
        let Some((m, ds)) = line.split_once(':') else {
            continue;
        };
        let m = m.trim();
        deps.insert(
            name_of(m),
            (m.to_string(), ds.split_whitespace().map(&name_of).collect()),
        );
    }
    let builtin: HashSet<String> = builtin.lines().map(|l| name_of(l.trim())).collect();
    let mut out = Vec::new();
    let mut done = HashSet::new();
    fn visit(
        name: &str,
        deps: &HashMap<String, (String, Vec<String>)>,
        builtin: &HashSet<String>,
        done: &mut HashSet<String>,
        out: &mut Vec<(String, String)>,
        depth: usize,
    ) -> Result<()> {
        if done.contains(name) {
            return Ok(());
        }
        if depth > 64 {
            bail!("module dependency loop at {name}");
        }
        match deps.get(name) {
            Some((path, ds)) => {
                for d in ds {
                    visit(d, deps, builtin, done, out, depth + 1)?;
                }
                done.insert(name.to_string());
                out.push((name.to_string(), path.clone()));
            }
            None if builtin.contains(name) => {
                done.insert(name.to_string());
            }
            None => bail!("kernel module {name} is neither a module nor built in"),
        }
        Ok(())
    }
    for w in wanted {
        visit(&norm(w), &deps, &builtin, &mut done, &mut out, 0)?;
    }
    Ok(out)
}

/// The virtio modules a QEMU guest needs (console, block, network over PCI).
pub const VIRTIO_MODULES: &[&str] = &[
    "virtio_pci",
    "virtio_console",
    "virtio_blk",
    "virtio_net",
    "ext4",
];

/// Build the guest initramfs at `dst`: the agent `exe` (at `/virtmark`) with its
/// libraries, and `modules` (plus dependencies) from `module_root`
/// (`/lib/modules/<version>`). Returns the module load order.
pub fn build(exe: &Path, module_root: &Path, modules: &[&str], dst: &Path) -> Result<Vec<String>> {
    let dep = std::fs::read_to_string(module_root.join("modules.dep"))
        .with_context(|| format!("reading {}/modules.dep", module_root.display()))?;
    let builtin = std::fs::read_to_string(module_root.join("modules.builtin")).unwrap_or_default();
    let order = module_order(&dep, &builtin, modules)?;

    let f = File::create(dst).with_context(|| format!("creating {}", dst.display()))?;
    let mut w = CpioWriter::new(BufWriter::with_capacity(1 << 20, f));
    let ctx = || format!("writing {}", dst.display());
    for d in ["dev", "proc", "sys", "tmp", "scratch", "run"] {
        w.dir(d).with_context(ctx)?;
    }
    w.char_dev("dev/console", 0o600, 5, 1).with_context(ctx)?;
    let add = |w: &mut CpioWriter<_>, src: &Path, at: &str| -> Result<()> {
        let mut f = File::open(src).with_context(|| format!("opening {}", src.display()))?;
        let meta = f.metadata()?;
        use std::os::unix::fs::PermissionsExt;
        w.file(at, meta.permissions().mode(), meta.len(), &mut f)
            .with_context(ctx)
    };
    let closure = super::rootfs::agent_closure(exe)?;
    // The agent without debug information (~7× smaller): the guest kernel
    // unpacks every byte of the archive at boot, slowly under TCG.
    let stripped = dst.with_extension("agent");
    let agent = match Command::new("strip")
        .arg("-o")
        .arg(&stripped)
        .arg(exe)
        .stderr(Stdio::null())
        .status()
    {
        Ok(st) if st.success() => stripped.as_path(),
        _ => exe,
    };
    add(&mut w, agent, "virtmark")?;
    for lib in &closure[1..] {
        add(&mut w, lib, &lib.to_string_lossy())?;
    }
    let mut names = Vec::new();
    for (name, rel) in &order {
        let src = module_root.join(rel);
        if rel.ends_with(".ko") {
            // Without the appended signature: checking it (RSA) costs ~100 ms a
            // module under TCG. The kernel does not enforce signatures
            // (CONFIG_MODULE_SIG_FORCE unset); it loads and notes the taint.
            let bytes =
                std::fs::read(&src).with_context(|| format!("reading {}", src.display()))?;
            let body = strip_module_signature(&bytes);
            w.file(
                &format!("{MODULE_DIR}/{name}.ko"),
                0o644,
                body.len() as u64,
                &mut &body[..],
            )
            .with_context(ctx)?;
        } else {
            bail!(
                "{}: compressed modules are not supported; the guest loads plain .ko files",
                src.display()
            );
        }
        names.push(name.clone());
    }
    let list = names.join("\n") + "\n";
    w.file(
        &format!("{MODULE_DIR}/order"),
        0o644,
        list.len() as u64,
        &mut list.as_bytes(),
    )
    .with_context(ctx)?;
    w.finish().with_context(ctx)?;
    let _ = std::fs::remove_file(&stripped);
    Ok(names)
}

/// A kernel module without its appended signature (`<sig><struct
/// module_signature, 12 bytes, big-endian signature length last>~Module signature
/// appended~\n`); unsigned modules are returned whole.
pub fn strip_module_signature(ko: &[u8]) -> &[u8] {
    const MAGIC: &[u8] = b"~Module signature appended~\n";
    let Some(rest) = ko.strip_suffix(MAGIC) else {
        return ko;
    };
    if rest.len() < 12 {
        return ko;
    }
    let info = &rest[rest.len() - 12..];
    let sig_len = u32::from_be_bytes([info[8], info[9], info[10], info[11]]) as usize;
    match (rest.len() - 12).checked_sub(sig_len) {
        Some(end) => &ko[..end],
        None => ko,
    }
}

/// The guest initramfs for the agent `exe` and `modules` of `module_root`, made
/// by [`build`] once and then taken from virtmark's [`cache`](super::cache)
/// (stripping the agent, reading the modules and writing ~10 MB would otherwise
/// fall inside every VM's start-up time).
pub fn cached(exe: &Path, module_root: &Path, modules: &[&str]) -> Result<PathBuf> {
    let key = super::cache::Key::new(1)
        .file(exe)?
        .file(&module_root.join("modules.dep"))?
        .with(modules);
    super::cache::entry("initramfs", "cpio", key, |dst| {
        build(exe, module_root, modules, dst).map(|_| ())
    })
}

/// The kernel modules directory for a kernel image `/boot/vmlinuz-<v>`.
pub fn module_root_for(kernel: &Path) -> PathBuf {
    let v = kernel
        .file_name()
        .map(|n| {
            n.to_string_lossy()
                .trim_start_matches("vmlinuz-")
                .to_string()
        })
        .unwrap_or_default();
    PathBuf::from("/lib/modules").join(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newc_entries_are_aligned_and_end_with_a_trailer() {
        let mut w = CpioWriter::new(Vec::new());
        w.file("a/b", 0o755, 3, &mut &b"xyz"[..]).unwrap();
        let out = w.finish().unwrap();
        // dir "a", file "a/b", trailer.
        let text = String::from_utf8_lossy(&out);
        assert_eq!(text.matches("070701").count(), 3);
        assert_eq!(out.len() % 512, 0);
        // First header: ino 1, mode dir 0755, name size 2 ("a\0").
        assert_eq!(&out[6..14], b"00000001");
        assert_eq!(&out[14..22], b"000041ed");
        assert_eq!(&out[94..102], b"00000002");
        // 110-byte header + "a\0" = 112: already aligned; second header follows.
        assert_eq!(&out[112..118], b"070701");
        // File size field of the second header.
        assert_eq!(&out[112 + 54..112 + 62], b"00000003");
        // Name "a/b\0" (4) after the 110-byte header → 114, padded to 116; data.
        assert_eq!(&out[112 + 116..112 + 119], b"xyz");
        assert!(text.contains("TRAILER!!!"));
    }

    #[test]
    fn the_archive_lists_back_with_cpio() {
        if std::process::Command::new("cpio")
            .arg("--version")
            .output()
            .is_err()
        {
            eprintln!("cpio not installed; skipping");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.cpio");
        let mut w = CpioWriter::new(File::create(&p).unwrap());
        w.file("lib/x/y.so", 0o644, 5, &mut &b"hello"[..]).unwrap();
        w.char_dev("dev/console", 0o600, 5, 1).unwrap();
        w.finish().unwrap();
        let out = std::process::Command::new("cpio")
            .args(["-t", "--quiet", "-F"])
            .arg(&p)
            .output()
            .unwrap();
        let list = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let names: Vec<&str> = list.lines().collect();
        assert_eq!(names, ["lib", "lib/x", "lib/x/y.so", "dev", "dev/console"]);
    }

    #[test]
    fn module_signatures_are_cut_off() {
        let mut ko = b"ELFBODY".to_vec();
        ko.extend_from_slice(b"SIGNATURE");
        ko.extend_from_slice(&[0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 9]);
        ko.extend_from_slice(b"~Module signature appended~\n");
        assert_eq!(strip_module_signature(&ko), b"ELFBODY");
        assert_eq!(strip_module_signature(b"ELFBODY"), b"ELFBODY");
        let real = std::path::Path::new("/lib/modules")
            .read_dir()
            .ok()
            .and_then(|mut d| d.next())
            .and_then(|e| e.ok())
            .map(|e| e.path().join("kernel/drivers/virtio/virtio.ko"));
        if let Some(p) = real.filter(|p| p.is_file()) {
            let b = std::fs::read(&p).unwrap();
            let s = strip_module_signature(&b);
            assert!(s.len() < b.len() && s.starts_with(b"\x7fELF"));
        }
    }

    #[test]
    fn modules_come_after_their_dependencies() {
        let dep = "kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko kernel/drivers/virtio/virtio_ring.ko kernel/drivers/virtio/virtio.ko\n\
kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko\n\
kernel/net/core/failover.ko:\n\
kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko\n\
kernel/drivers/virtio/virtio_ring.ko:\n";
        let o = module_order(dep, "kernel/fs/ext4/ext4.ko\n", &["virtio-net", "ext4"]).unwrap();
        let names: Vec<&str> = o.iter().map(|(n, _)| n.as_str()).collect();
        let pos = |n: &str| names.iter().position(|x| *x == n).unwrap();
        assert_eq!(names.len(), 5, "{names:?}");
        assert!(pos("failover") < pos("net_failover"));
        assert!(pos("net_failover") < pos("virtio_net"));
        assert!(pos("virtio_ring") < pos("virtio"));
        assert!(pos("virtio") < pos("virtio_net"));
        assert!(module_order(dep, "", &["nope"]).is_err());
    }
}
