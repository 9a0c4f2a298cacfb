//! virtmark's cache of prepared VM images (guest initramfs, uncompressed guest
//! kernel): made once, like a container image is pulled once, and then reused,
//! so that preparing them never falls inside a VM's start-up time.
//!
//! Each entry is named by a hash of everything it is made from (paths, sizes,
//! modification times and inode numbers of the source files, plus a layout
//! version), so a new virtmark build or a new kernel gets a new entry. Entries
//! are built aside and renamed into place, so a concurrent start never sees half
//! a file; entries unused for a day are removed when a new one is made.

use std::collections::hash_map::DefaultHasher;
use std::fs::File;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};

/// How long an entry nobody uses is kept.
const KEEP: Duration = Duration::from_secs(24 * 3600);

/// The cache directory: `$VIRTMARK_CACHE`, else `virtmark/` in the user's cache
/// directory (`~/.cache`), else in the temp dir.
pub fn dir() -> PathBuf {
    if let Some(p) = std::env::var_os("VIRTMARK_CACHE") {
        return PathBuf::from(p);
    }
    dirs::cache_dir()
        .unwrap_or_else(std::env::temp_dir)
        .join("virtmark")
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
/// path it is given) when it does not exist yet.
pub fn entry(
    prefix: &str,
    ext: &str,
    key: Key,
    build: impl FnOnce(&Path) -> Result<()>,
) -> Result<PathBuf> {
    entry_in(&dir(), prefix, ext, key, build)
}

fn entry_in(
    dir: &Path,
    prefix: &str,
    ext: &str,
    key: Key,
    build: impl FnOnce(&Path) -> Result<()>,
) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let k = key.0.finish();
    let path = dir.join(format!("{prefix}-{k:016x}.{ext}"));
    if path.is_file() {
        // Touched, so that pruning sees it in use.
        let _ = File::options()
            .append(true)
            .open(&path)
            .and_then(|f| f.set_modified(SystemTime::now()));
        return Ok(path);
    }
    let tmp = dir.join(format!(".{prefix}-{k:016x}.{}.tmp", std::process::id()));
    if let Err(e) = build(&tmp) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, &path)
        .with_context(|| format!("moving {} into place", path.display()))?;
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
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }
}
