//! virtmark's cache of prepared VM images (guest initramfs, uncompressed guest
//! kernel): made once, like a container image is pulled once, and then reused,
//! so that preparing them never falls inside a VM's start-up time.
//!
//! Each entry is named by a hash of everything it is made from (paths, sizes,
//! modification times and inode numbers of the source files, plus a layout
//! version), so a new virtmark build or a new kernel gets a new entry. Entries
//! are built aside and renamed into place, so a concurrent start never sees half
//! a file; entries unused for a day are removed when a new one is made.
//!
//! The cache holds what root boots, so it trusts nothing it did not check: it is
//! a directory of the user's own cache directory (never a shared temp path),
//! mode 0700, owned by the user and writable by nobody else; every entry has a
//! BLAKE3 hash of its content beside it (`<entry>.blake3`), checked once per
//! process before the entry is used, and an entry whose content does not match
//! is made again. Entries are opened without following symbolic links.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashSet;
use std::fs::File;
use std::hash::{Hash, Hasher};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};

/// How long an entry nobody uses is kept.
const KEEP: Duration = Duration::from_secs(24 * 3600);

/// The cache directory: `$VIRTMARK_CACHE`, else `virtmark/` in the user's cache
/// directory (`~/.cache`, `/root/.cache` as root); never the temp dir.
pub fn dir() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("VIRTMARK_CACHE") {
        return Ok(PathBuf::from(p));
    }
    dirs::cache_dir()
        .map(|d| d.join("virtmark"))
        .context("no cache directory: set HOME or VIRTMARK_CACHE")
}

/// Make `dir` (mode 0700) when missing and check that it can be trusted: a
/// directory, not a link, owned by the caller, writable by nobody else.
fn ensure_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    if let Some(parent) = dir.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e).with_context(|| format!("creating cache {}", dir.display())),
    }
    let m = std::fs::symlink_metadata(dir)
        .with_context(|| format!("reading cache {}", dir.display()))?;
    if !m.is_dir() || m.uid() != nix::unistd::geteuid().as_raw() || m.mode() & 0o022 != 0 {
        anyhow::bail!(
            "cache {} is not a directory owned by this user and writable by nobody else; \
             remove it or set VIRTMARK_CACHE to a private directory",
            dir.display()
        );
    }
    Ok(())
}

/// The BLAKE3 hash of the file at `path` (not followed if a link), in hex.
fn content_hash(path: &Path) -> Result<String> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = File::options()
        .read(true)
        .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    if !f.metadata()?.is_file() {
        anyhow::bail!("{} is not a regular file", path.display());
    }
    let mut h = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f
            .read(&mut buf)
            .with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().to_hex().to_string())
}

fn hash_path(entry: &Path) -> PathBuf {
    let mut s = entry.as_os_str().to_os_string();
    s.push(".blake3");
    PathBuf::from(s)
}

/// Entries whose content this process has checked already.
fn verified() -> &'static Mutex<HashSet<PathBuf>> {
    static V: std::sync::OnceLock<Mutex<HashSet<PathBuf>>> = std::sync::OnceLock::new();
    V.get_or_init(|| Mutex::new(HashSet::new()))
}

/// Whether `entry` is a regular file whose content matches the hash beside it
/// (checked once per process).
fn intact(entry: &Path) -> bool {
    if verified()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .contains(entry)
    {
        return true;
    }
    let recorded = std::fs::symlink_metadata(hash_path(entry))
        .ok()
        .filter(|m| m.is_file() && m.len() <= 128)
        .and_then(|_| std::fs::read_to_string(hash_path(entry)).ok());
    let ok = match (recorded, content_hash(entry)) {
        (Some(r), Ok(h)) => r.trim() == h,
        _ => false,
    };
    if ok {
        verified()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(entry.to_path_buf());
    }
    ok
}

/// A key being made from the sources of an entry.
pub struct Key(DefaultHasher);

impl Key {
    /// A key for entries of layout `version` (bumped when the layout changes).
    pub fn new(version: u32) -> Key {
        let mut h = DefaultHasher::new();
        version.hash(&mut h);
        Key(h)
    }

    /// Add the identity of the file `path` (canonical path, size, modification
    /// time, inode).
    pub fn file(mut self, path: &Path) -> Result<Key> {
        use std::os::unix::fs::MetadataExt;
        let p =
            std::fs::canonicalize(path).with_context(|| format!("resolving {}", path.display()))?;
        let m = std::fs::metadata(&p).with_context(|| format!("reading {}", p.display()))?;
        (p, m.len(), m.mtime(), m.mtime_nsec(), m.ino()).hash(&mut self.0);
        Ok(self)
    }

    /// Add any other input.
    pub fn with(mut self, value: impl Hash) -> Key {
        value.hash(&mut self.0);
        self
    }
}

/// The cache entry `<prefix>-<key>.<ext>`, made by `build` (which writes the
/// path it is given) when it does not exist yet or its content does not match
/// its recorded hash.
pub fn entry(
    prefix: &str,
    ext: &str,
    key: Key,
    build: impl FnOnce(&Path) -> Result<()>,
) -> Result<PathBuf> {
    entry_in(&dir()?, prefix, ext, key, build)
}

fn entry_in(
    dir: &Path,
    prefix: &str,
    ext: &str,
    key: Key,
    build: impl FnOnce(&Path) -> Result<()>,
) -> Result<PathBuf> {
    ensure_dir(dir)?;
    let k = key.0.finish();
    let path = dir.join(format!("{prefix}-{k:016x}.{ext}"));
    if std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_file()) && intact(&path) {
        // Touched, so that pruning sees it in use.
        let _ = File::options()
            .append(true)
            .open(&path)
            .and_then(|f| f.set_modified(SystemTime::now()));
        return Ok(path);
    }
    let tmp = super::ledger::unguessable(dir, &format!(".{prefix}-{k:016x}."));
    let made = build(&tmp).and_then(|()| {
        let hash = content_hash(&tmp)?;
        let hash_tmp = hash_path(&tmp);
        std::fs::write(&hash_tmp, &hash)
            .with_context(|| format!("writing {}", hash_tmp.display()))?;
        std::fs::rename(&hash_tmp, hash_path(&path))
            .with_context(|| format!("moving {} into place", hash_path(&path).display()))?;
        std::fs::rename(&tmp, &path)
            .with_context(|| format!("moving {} into place", path.display()))
    });
    if let Err(e) = made {
        let _ = std::fs::remove_file(&tmp);
        let _ = std::fs::remove_file(hash_path(&tmp));
        return Err(e);
    }
    verified()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(path.clone());
    prune(dir, prefix, ext, &path);
    Ok(path)
}

/// Remove entries `<prefix>-*.<ext>` other than `keep` unused for [`KEEP`].
fn prune(dir: &Path, prefix: &str, ext: &str, keep: &Path) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let ours = name.starts_with(&format!("{prefix}-")) && name.ends_with(&format!(".{ext}"));
        let unused = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > KEEP);
        if ours && unused && e.path() != keep {
            let _ = std::fs::remove_file(e.path());
            let _ = std::fs::remove_file(hash_path(&e.path()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_is_built_once_and_renamed_into_place() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("src");
        std::fs::write(&src, "a").unwrap();
        let mut builds = 0;
        let mut make = |k: Key| {
            entry_in(d.path(), "thing", "bin", k, |p| {
                builds += 1;
                std::fs::write(p, "built").context("writing")
            })
            .unwrap()
        };
        let a = make(Key::new(1).file(&src).unwrap().with("x"));
        let b = make(Key::new(1).file(&src).unwrap().with("x"));
        assert_eq!(a, b);
        assert_eq!(std::fs::read_to_string(&a).unwrap(), "built");
        // Another input, another entry; a failed build leaves nothing.
        let c = make(Key::new(1).file(&src).unwrap().with("y"));
        assert_ne!(a, c);
        assert_eq!(builds, 2);
        let failed = entry_in(d.path(), "thing", "bin", Key::new(2), |p| {
            std::fs::write(p, "half").unwrap();
            anyhow::bail!("no")
        });
        assert!(failed.is_err());
        let names: Vec<String> = std::fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("thing") || n.starts_with(".thing"))
            .filter(|n| !n.ends_with(".blake3"))
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }

    #[test]
    fn an_entry_whose_content_changed_is_made_again() {
        let d = tempfile::tempdir().unwrap();
        let cache = d.path().join("cache");
        let mut builds = 0;
        let mut make = || {
            entry_in(&cache, "img", "bin", Key::new(7), |p| {
                builds += 1;
                std::fs::write(p, "good").context("writing")
            })
            .unwrap()
        };
        let a = make();
        // Tampered with behind the process's back (and forgotten as checked).
        std::fs::write(&a, "evil").unwrap();
        verified().lock().unwrap().clear();
        let b = make();
        assert_eq!(a, b);
        assert_eq!(std::fs::read_to_string(&b).unwrap(), "good");
        assert_eq!(builds, 2);
    }

    #[test]
    fn an_entry_that_is_a_symlink_is_never_used() {
        let d = tempfile::tempdir().unwrap();
        let cache = d.path().join("cache");
        let elsewhere = d.path().join("elsewhere");
        std::fs::write(&elsewhere, "planted").unwrap();
        let k = Key::new(9);
        let name = format!("lnk-{:016x}.bin", Key::new(9).0.finish());
        std::fs::create_dir(&cache).unwrap();
        std::os::unix::fs::symlink(&elsewhere, cache.join(&name)).unwrap();
        let p = entry_in(&cache, "lnk", "bin", k, |p| {
            std::fs::write(p, "built").context("writing")
        })
        .unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "built");
        assert!(!std::fs::symlink_metadata(&p)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(std::fs::read_to_string(&elsewhere).unwrap(), "planted");
    }

    #[test]
    fn a_cache_directory_others_may_write_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let cache = d.path().join("cache");
        std::fs::create_dir(&cache).unwrap();
        std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = entry_in(&cache, "x", "bin", Key::new(1), |p| {
            std::fs::write(p, "b").context("writing")
        })
        .unwrap_err();
        assert!(
            format!("{err:#}").contains("writable by nobody else"),
            "{err:#}"
        );
    }
}
