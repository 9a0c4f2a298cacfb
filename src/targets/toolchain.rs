//! The host's compiler toolchain inside a target, read-only, so that the
//! `build` workload compiles with the same compiler, headers and make in every
//! target as natively:
//!
//! - containers (OCI runtimes, gVisor, LXC) bind the host's directories;
//! - User-Mode Linux mounts them through hostfs;
//! - a QEMU guest, whose kernel has neither 9p nor a virtiofs daemon here,
//!   mounts a read-only ext4 image of them, built once and kept in the cache.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

/// The host's compiler toolchain as a target sees it (read-only), so that the
/// `build` workload compiles with the same compiler, headers and make inside
/// every target as natively: `/usr` and `/etc/alternatives` (Debian's `cc` is
/// `/usr/bin/cc` → `/etc/alternatives/cc` → `gcc`), plus the top-level
/// directories (`/bin`, `/lib`, `/lib64`, `/sbin`): recreated as the same
/// symbolic links on a merged-/usr host, shown as directories otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostToolchain {
    /// Host directories shown at the same path inside.
    pub dirs: Vec<PathBuf>,
    /// Symbolic links to make in the root: (path inside, link target).
    pub links: Vec<(PathBuf, PathBuf)>,
}

/// `PATH` inside a target that sees the host's toolchain.
pub const TOOLCHAIN_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

impl HostToolchain {
    /// The toolchain of this host.
    pub fn of_host() -> HostToolchain {
        Self::under(Path::new("/"))
    }

    /// The toolchain of the system whose root is `root` (for tests).
    pub fn under(root: &Path) -> HostToolchain {
        let mut dirs = vec![PathBuf::from("/usr")];
        let mut links = Vec::new();
        for top in ["bin", "sbin", "lib", "lib32", "lib64", "libx32"] {
            let p = root.join(top);
            match std::fs::symlink_metadata(&p) {
                Ok(m) if m.file_type().is_symlink() => {
                    if let Ok(target) = std::fs::read_link(&p) {
                        links.push((PathBuf::from("/").join(top), target));
                    }
                }
                Ok(m) if m.is_dir() => dirs.push(PathBuf::from("/").join(top)),
                _ => {}
            }
        }
        if root.join("etc/alternatives").is_dir() {
            dirs.push(PathBuf::from("/etc/alternatives"));
        }
        HostToolchain { dirs, links }
    }

    /// Make the mount points (empty directories) and the links in `root`. A
    /// path the root already holds (an agent library's directory) is left as it
    /// is.
    pub fn prepare_root(&self, root: &Path) -> Result<()> {
        for d in &self.dirs {
            let p = root.join(d.strip_prefix("/").unwrap_or(d));
            std::fs::create_dir_all(&p).with_context(|| format!("creating {}", p.display()))?;
        }
        for (at, target) in &self.links {
            let p = root.join(at.strip_prefix("/").unwrap_or(at));
            if std::fs::symlink_metadata(&p).is_ok() {
                continue;
            }
            std::os::unix::fs::symlink(target, &p)
                .with_context(|| format!("linking {} to {}", p.display(), target.display()))?;
        }
        Ok(())
    }
}

/// Directories of the host's `/usr` that the guest image holds, relative to
/// `/usr`: what `cc` (gcc, its `cc1`, `as`, `ld`), the C library's headers and
/// objects, `make` and `sh` need, and every shared library they load.
const IMAGE_USR_DIRS: &[&str] = &[
    "bin",
    "sbin",
    "include",
    "lib/x86_64-linux-gnu",
    "lib/gcc",
    "lib/bfd-plugins",
    "lib64",
];

/// Where `/etc/alternatives` lies inside the guest image (the guest links
/// `/etc/alternatives` to it).
pub const IMAGE_ALTERNATIVES: &str = ".virtmark-alternatives";

/// Layout version of the image (bumped when [`IMAGE_USR_DIRS`] changes).
const IMAGE_VERSION: u32 = 1;

/// The read-only ext4 image of the host's toolchain for VM guests, built once
/// (about 1.4 GB and half a minute on Debian 12) and kept in the cache until
/// the host's packages change. The guest mounts it at `/usr`.
pub fn guest_image() -> Result<PathBuf> {
    let mut sources: Vec<(PathBuf, String)> = IMAGE_USR_DIRS
        .iter()
        .map(|d| (Path::new("/usr").join(d), d.to_string()))
        .filter(|(p, _)| p.is_dir())
        .collect();
    if !sources.iter().any(|(_, d)| d == "bin") {
        bail!("/usr/bin is missing: no toolchain to show the guest");
    }
    if Path::new("/etc/alternatives").is_dir() {
        sources.push((
            PathBuf::from("/etc/alternatives"),
            IMAGE_ALTERNATIVES.to_string(),
        ));
    }
    // The image changes when a package is installed or removed (dpkg's status
    // file) or, elsewhere, when a source directory's entries change.
    let mut key = super::cache::Key::new(IMAGE_VERSION).with(&sources);
    for (p, _) in &sources {
        key = key.file(p)?;
    }
    if Path::new("/var/lib/dpkg/status").is_file() {
        key = key.file(Path::new("/var/lib/dpkg/status"))?;
    }
    super::cache::entry("toolchain", "ext4", key, |dst| build_image(&sources, dst))
}

/// Bytes the files under `dir` occupy (blocks, not following links).
fn occupied(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let Ok(m) = e.metadata() else { continue };
            total += m.blocks() * 512 + 256;
            if m.is_dir() {
                stack.push(e.path());
            }
        }
    }
    total
}

/// Make the image at `dst`: the source directories are bound into an empty
/// staging tree inside a private mount namespace (`unshare`), so the bindings
/// vanish with it whatever happens, and `mkfs.ext4 -d` copies that tree.
fn build_image(sources: &[(PathBuf, String)], dst: &Path) -> Result<()> {
    let staging = dst.with_extension("staging");
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir(&staging).with_context(|| format!("creating {}", staging.display()))?;
    let result = (|| {
        let mut script = String::from("set -e\n");
        let mut bytes: u64 = 0;
        for (src, rel) in sources {
            let at = staging.join(rel);
            std::fs::create_dir_all(&at).with_context(|| format!("creating {}", at.display()))?;
            bytes += occupied(src);
            script.push_str(&format!(
                "mount --bind -o ro {} {}\n",
                shell_quote(src),
                shell_quote(&at)
            ));
        }
        // Room for ext4's own structures, and a margin.
        let size = (bytes + bytes / 4 + (128 << 20)).div_ceil(1 << 20) << 20;
        let f =
            std::fs::File::create(dst).with_context(|| format!("creating {}", dst.display()))?;
        f.set_len(size)
            .with_context(|| format!("sizing {}", dst.display()))?;
        drop(f);
        script.push_str(&format!(
            "exec mkfs.ext4 -q -F -L toolchain -O ^has_journal \
             -E lazy_itable_init=1,nodiscard -d {} {}\n",
            shell_quote(&staging),
            shell_quote(dst)
        ));
        let out = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c", &script])
            .output()
            .context("running unshare and mkfs.ext4 to build the toolchain image")?;
        if !out.status.success() {
            bail!(
                "building the toolchain image failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    })();
    let _ = std::fs::remove_dir_all(&staging);
    result
}

fn shell_quote(p: &Path) -> String {
    format!("'{}'", p.to_string_lossy().replace('\'', r"'\''"))
}

/// The `virtmark.toolchain=` kernel argument for a User-Mode Linux guest.
pub fn hostfs_arg(t: &HostToolchain) -> String {
    let dirs: Vec<String> = t.dirs.iter().map(|d| d.display().to_string()).collect();
    format!("virtmark.toolchain=hostfs:{}", dirs.join(","))
}

/// In a guest: mount the toolchain given by `virtmark.toolchain=` and make
/// the links a merged-/usr system has. `spec` is `hostfs:DIR,DIR…` (User-Mode
/// Linux: the host's directories, whose mount points and links the root
/// already holds) or a block device holding [`guest_image`] (QEMU).
pub fn mount_in_guest(spec: &str) -> Result<()> {
    use nix::mount::{mount, MsFlags};
    if let Some(dirs) = spec.strip_prefix("hostfs:") {
        for d in dirs.split(',').filter(|d| d.starts_with('/')) {
            mount(Some("none"), d, Some("hostfs"), MsFlags::MS_RDONLY, Some(d))
                .with_context(|| format!("mounting the host's {d} (hostfs)"))?;
        }
        return Ok(());
    }
    std::fs::create_dir_all("/usr").context("creating /usr")?;
    mount(
        Some(spec),
        "/usr",
        Some("ext4"),
        MsFlags::MS_RDONLY,
        None::<&str>,
    )
    .with_context(|| format!("mounting the toolchain image {spec} on /usr"))?;
    for (link, target) in [
        ("/bin", "usr/bin"),
        ("/sbin", "usr/sbin"),
        ("/lib", "usr/lib"),
        ("/lib64", "usr/lib64"),
    ] {
        let usr_dir = Path::new("/").join(target);
        match std::fs::symlink_metadata(link) {
            Err(_) => std::os::unix::fs::symlink(target, link)
                .with_context(|| format!("linking {link}"))?,
            // A directory of the initramfs (/lib holds the guest's modules):
            // link each entry of the image's directory into it instead.
            Ok(m) if m.is_dir() => {
                let Ok(rd) = std::fs::read_dir(&usr_dir) else {
                    continue;
                };
                for e in rd.flatten() {
                    let at = Path::new(link).join(e.file_name());
                    if std::fs::symlink_metadata(&at).is_err() {
                        std::os::unix::fs::symlink(e.path(), &at)
                            .with_context(|| format!("linking {}", at.display()))?;
                    }
                }
            }
            Ok(_) => {}
        }
    }
    std::fs::create_dir_all("/etc").context("creating /etc")?;
    let alt = Path::new("/usr").join(IMAGE_ALTERNATIVES);
    if alt.is_dir() && std::fs::symlink_metadata("/etc/alternatives").is_err() {
        std::os::unix::fs::symlink(&alt, "/etc/alternatives")
            .context("linking /etc/alternatives")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_merged_usr_host_gives_links_and_a_split_one_gives_directories() {
        let host = tempfile::tempdir().unwrap();
        let h = host.path();
        std::fs::create_dir_all(h.join("usr/bin")).unwrap();
        std::fs::create_dir_all(h.join("etc/alternatives")).unwrap();
        std::os::unix::fs::symlink("usr/bin", h.join("bin")).unwrap();
        std::fs::create_dir(h.join("lib")).unwrap();
        let t = HostToolchain::under(h);
        assert_eq!(
            t.dirs,
            vec![
                PathBuf::from("/usr"),
                PathBuf::from("/lib"),
                PathBuf::from("/etc/alternatives")
            ]
        );
        assert_eq!(
            t.links,
            vec![(PathBuf::from("/bin"), PathBuf::from("usr/bin"))]
        );
        let root = tempfile::tempdir().unwrap();
        t.prepare_root(root.path()).unwrap();
        assert!(root.path().join("usr").is_dir());
        assert!(root.path().join("etc/alternatives").is_dir());
        assert_eq!(
            std::fs::read_link(root.path().join("bin")).unwrap(),
            PathBuf::from("usr/bin")
        );
        // Twice is fine (a root reused).
        t.prepare_root(root.path()).unwrap();
    }
}
