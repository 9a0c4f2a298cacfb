//! Everything the agent needs to run in an empty root file system: the virtmark
//! binary, its ELF interpreter and the shared libraries it links (found with
//! `ldd`). OCI bundles, LXC containers and initramfs images are built from it.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

/// Whether the ELF executable `exe` names a program interpreter (`PT_INTERP`),
/// i.e. is dynamically linked. `None` when it is not a 64-bit little-endian ELF.
pub fn has_interpreter(exe: &Path) -> Result<Option<bool>> {
    const HEAD: u64 = 64 << 10;
    use std::io::Read;
    // The program headers follow the ELF header in any linker's output.
    let mut data = Vec::new();
    std::fs::File::open(exe)
        .and_then(|f| f.take(HEAD).read_to_end(&mut data))
        .with_context(|| format!("reading {}", exe.display()))?;
    Ok(
        super::elf::segments(&data)
            .map(|segs| segs.iter().any(|s| s.kind == super::elf::PT_INTERP)),
    )
}

/// Files the agent binary `exe` needs at run time, as absolute host paths
/// (the binary first, then its interpreter and libraries). A static binary (as
/// virtmark is built, see `.cargo/config.toml`) needs nothing else, which is
/// known without running `ldd` (a few milliseconds of every container start).
pub fn agent_closure(exe: &Path) -> Result<Vec<PathBuf>> {
    if has_interpreter(exe)? == Some(false) {
        return Ok(vec![exe.to_path_buf()]);
    }
    let out = Command::new("ldd")
        .arg(exe)
        .output()
        .context("running ldd to find the agent's libraries")?;
    if !out.status.success() {
        // A static binary: nothing else needed.
        if String::from_utf8_lossy(&out.stdout).contains("not a dynamic executable")
            || String::from_utf8_lossy(&out.stderr).contains("not a dynamic executable")
        {
            return Ok(vec![exe.to_path_buf()]);
        }
        bail!(
            "ldd {}: {}",
            exe.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let mut files = vec![exe.to_path_buf()];
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or
        // "/lib64/ld-linux-x86-64.so.2 (0x...)"; linux-vdso has no file.
        let path = match line.split_once("=>") {
            Some((_, rhs)) => rhs.split_whitespace().next(),
            None => line.split_whitespace().next(),
        };
        if let Some(p) = path.filter(|p| p.starts_with('/')) {
            files.push(PathBuf::from(p));
        }
    }
    Ok(files)
}

/// Copy `files` into `root` at the same paths (resolving symlinks to their
/// targets' content, and recreating /lib64 → usr layouts as plain directories).
pub fn copy_into(root: &Path, files: &[PathBuf]) -> Result<()> {
    for f in files {
        let rel = f.strip_prefix("/").unwrap_or(f);
        let dst = root.join(rel);
        if let Some(parent) = dst.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::copy(f, &dst)
            .with_context(|| format!("copying {} into {}", f.display(), root.display()))?;
    }
    Ok(())
}

/// Build a minimal root file system in `root` holding the agent at `/virtmark`
/// plus its libraries, and the empty directories a container runtime expects.
/// Returns the agent's path inside the root (`/virtmark`).
pub fn build_agent_root(exe: &Path, root: &Path) -> Result<PathBuf> {
    let files = agent_closure(exe)?;
    std::fs::create_dir_all(root).with_context(|| format!("creating {}", root.display()))?;
    copy_into(root, &files[1..])?;
    std::fs::copy(exe, root.join("virtmark"))
        .with_context(|| format!("copying the agent into {}", root.display()))?;
    skeleton(root)?;
    Ok(PathBuf::from("/virtmark"))
}

/// The directories a container runtime expects in a root (mount points).
pub const SKELETON: &[&str] = &["proc", "sys", "dev", "tmp", "scratch", "etc", "run"];

/// Create [`SKELETON`] in `root`.
pub fn skeleton(root: &Path) -> Result<()> {
    for d in SKELETON {
        std::fs::create_dir_all(root.join(d))
            .with_context(|| format!("creating {}", root.join(d).display()))?;
    }
    Ok(())
}

/// Build the agent's root file system in `root`: hard links to the agent binary
/// and its libraries when they are on the same file system (cheap, and the root
/// is mounted read-only), else copies ([`build_agent_root`]).
pub fn link_agent_root(exe: &Path, root: &Path) -> Result<()> {
    let files = agent_closure(exe)?;
    let mut linked = true;
    for (i, f) in files.iter().enumerate() {
        let src = std::fs::canonicalize(f).with_context(|| format!("resolving {}", f.display()))?;
        let dst = if i == 0 {
            root.join("virtmark")
        } else {
            root.join(f.strip_prefix("/").unwrap_or(f))
        };
        if let Some(parent) = dst.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        if std::fs::hard_link(&src, &dst).is_err() {
            linked = false;
            break;
        }
    }
    if !linked {
        std::fs::remove_dir_all(root).ok();
        std::fs::create_dir_all(root).with_context(|| format!("creating {}", root.display()))?;
        build_agent_root(exe, root)?;
        return Ok(());
    }
    skeleton(root)
}

/// Build a root in `root` whose agent and libraries are bind-mounted read-only
/// by the runtime (no copy; the container cannot write the host's files): the
/// directories a container needs and an empty mount point for each of `files`
/// (the agent's closure, binary first, which goes to `/virtmark`). A file whose
/// path a runtime's mount entry cannot hold (white space) is copied instead.
/// Returns the (host path, path in the root) pairs to bind.
pub fn mount_point_root(files: &[PathBuf], root: &Path) -> Result<Vec<(PathBuf, PathBuf)>> {
    skeleton(root)?;
    let mut binds = Vec::new();
    for (i, f) in files.iter().enumerate() {
        let inside = if i == 0 {
            PathBuf::from("virtmark")
        } else {
            f.strip_prefix("/").unwrap_or(f).to_path_buf()
        };
        let dst = root.join(&inside);
        if let Some(parent) = dst.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        let plain = |p: &Path| {
            p.to_str()
                .is_some_and(|s| !s.chars().any(char::is_whitespace))
        };
        if plain(f) && plain(&inside) {
            std::fs::File::create(&dst)
                .with_context(|| format!("creating mount point {}", dst.display()))?;
            binds.push((f.clone(), inside));
        } else {
            std::fs::copy(f, &dst)
                .with_context(|| format!("copying {} into {}", f.display(), root.display()))?;
        }
    }
    Ok(binds)
}

/// [`agent_closure`], found once per binary per process.
pub fn cached_closure(exe: &Path) -> Result<Vec<PathBuf>> {
    use std::sync::{Mutex, OnceLock};
    type Closure = (PathBuf, Vec<PathBuf>);
    static CACHE: OnceLock<Mutex<Option<Closure>>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(None));
    let mut c = cache.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((p, files)) = c.as_ref() {
        if p == exe {
            return Ok(files.clone());
        }
    }
    let files = agent_closure(exe)?;
    *c = Some((exe.to_path_buf(), files.clone()));
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dynamic_binary_needs_libc_and_the_interpreter() {
        let exe = Path::new("/bin/true");
        assert_eq!(has_interpreter(exe).unwrap(), Some(true));
        let files = agent_closure(exe).unwrap();
        assert_eq!(files[0], exe);
        for lib in ["libc.so", "ld-linux"] {
            assert!(
                files.iter().any(|f| f.to_string_lossy().contains(lib)),
                "{lib} missing from {files:?}"
            );
        }
    }

    #[test]
    fn virtmark_is_static_and_needs_nothing_else() {
        let exe = std::env::current_exe().unwrap();
        assert_eq!(has_interpreter(&exe).unwrap(), Some(false));
        assert_eq!(agent_closure(&exe).unwrap(), vec![exe]);
    }

    #[test]
    fn a_file_that_is_not_elf_is_not_judged() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("script");
        std::fs::write(&f, "#!/bin/sh\n").unwrap();
        assert_eq!(has_interpreter(&f).unwrap(), None);
    }
}
