//! The scratch trees of finished samples, removed when the agent ends.
//!
//! Removing a sample's many small files right after it makes the next samples
//! slower, and by a varying amount, on an ext4 without a journal (this machine's
//! root file system): there, a new inode is never one freed in the last 60 s
//! (360 s while its inode-table block is dirty), and `recently_deleted()` checks
//! every such free inode it passes on each creation. Measured here: 2,000 files created
//! in 0.07 s, or in 0.7 s (openat 237 µs each, half the time in
//! `recently_deleted`) right after 2,000 others were removed; rsync-tree alone
//! 0.33-0.38 s, alternated with dbench 0.58-0.71 s. So a sample's large files
//! (the disk space) go at once, its small files and directories when the agent
//! ends, or once they add up to [`KEEP_MAX`].

use std::path::{Path, PathBuf};

/// Files this large are removed at once: few inodes, most of the space.
const LARGE: u64 = 1 << 20;
/// Small files kept past this many bytes are all removed at once.
const KEEP_MAX: u64 = 1 << 30;

/// Finished samples' scratch directories, holding only their small files.
#[derive(Debug, Default)]
pub struct Leftovers {
    dirs: Vec<PathBuf>,
    bytes: u64,
}

impl Leftovers {
    /// Retire the scratch directory `dir` of a finished sample: its large files
    /// are removed now, the rest when the agent ends (or once too much is kept).
    pub fn retire(&mut self, dir: &Path) {
        self.bytes += remove_large(dir);
        self.dirs.push(dir.to_path_buf());
        if self.bytes > KEEP_MAX {
            self.clear();
        }
    }

    /// Remove every retired directory.
    pub fn clear(&mut self) {
        for d in self.dirs.drain(..) {
            let _ = std::fs::remove_dir_all(&d);
        }
        self.bytes = 0;
    }
}

impl Drop for Leftovers {
    fn drop(&mut self) {
        self.clear();
    }
}

/// Remove the regular files of at least [`LARGE`] bytes under `dir` (symbolic
/// links are not followed); the bytes of the files left.
fn remove_large(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut kept = 0;
    for e in entries.flatten() {
        let Ok(kind) = e.file_type() else { continue };
        let path = e.path();
        if kind.is_dir() {
            kept += remove_large(&path);
        } else if kind.is_file() {
            let len = e.metadata().map(|m| m.len()).unwrap_or(0);
            if len >= LARGE {
                let _ = std::fs::remove_file(&path);
            } else {
                kept += len;
            }
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_files_go_at_once_small_ones_when_cleared() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("sample-1");
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("big"), vec![0u8; LARGE as usize]).unwrap();
        std::fs::write(dir.join("sub/small"), b"tiny").unwrap();
        let mut l = Leftovers::default();
        l.retire(&dir);
        assert!(!dir.join("big").exists());
        assert!(dir.join("sub/small").exists());
        assert_eq!(l.bytes, 4);
        l.clear();
        assert!(!dir.exists());
    }

    #[test]
    fn too_much_kept_is_removed_at_once() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("sample-1");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("small"), b"tiny").unwrap();
        let mut l = Leftovers::default();
        l.bytes = KEEP_MAX;
        l.retire(&dir);
        assert!(!dir.exists());
        assert!(l.dirs.is_empty());
    }

    #[test]
    fn dropped_leftovers_are_removed() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("sample-1");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("small"), b"tiny").unwrap();
        drop({
            let mut l = Leftovers::default();
            l.retire(&dir);
            l
        });
        assert!(!dir.exists());
    }
}
