//! What storage a directory is on: the mount that holds it (from
//! `/proc/self/mountinfo`: mount point, file-system type, source device) and the
//! file-system type `statfs(2)` reports for it. The agent records this for its
//! scratch directory, so that a report says which device and file system each
//! target's disk workloads wrote to, and the orchestrator refuses a scratch that
//! lives in memory (tmpfs, ramfs), where a disk workload would measure memory.

use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::parse;

/// The storage a directory is on.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Storage {
    /// The directory asked about (made absolute).
    pub path: String,
    /// Mount point of the mount that holds it (`/`, `/scratch`), empty if unknown.
    pub mount_point: String,
    /// File-system type from mountinfo (`ext4`, `9p`, `overlay`, `tmpfs`).
    pub fstype: String,
    /// Mount source: the device (`/dev/vda`) or what the file system names.
    pub source: String,
    /// File-system type by `statfs(2)`'s magic number (`ext4`, `tmpfs`, `v9fs`…),
    /// or the magic number in hex when it is not one we know.
    pub statfs_type: String,
}

impl Storage {
    /// Whether the directory is on a file system held in memory (tmpfs, ramfs).
    pub fn in_memory(&self) -> bool {
        const MEMORY: [&str; 2] = ["tmpfs", "ramfs"];
        MEMORY.contains(&self.statfs_type.as_str()) || MEMORY.contains(&self.fstype.as_str())
    }

    /// One line: `/dev/vda ext4 at / (statfs: ext4)`.
    pub fn describe(&self) -> String {
        let source = if self.source.is_empty() {
            "unknown device"
        } else {
            &self.source
        };
        let fstype = if self.fstype.is_empty() {
            "unknown file system"
        } else {
            &self.fstype
        };
        format!(
            "{} on {source} {fstype} mounted at {} (statfs: {})",
            self.path,
            if self.mount_point.is_empty() {
                "?"
            } else {
                &self.mount_point
            },
            if self.statfs_type.is_empty() {
                "?"
            } else {
                &self.statfs_type
            }
        )
    }
}

/// The storage `dir` is on, as this process sees it.
pub fn of(dir: &Path) -> Storage {
    let path = std::fs::canonicalize(dir).unwrap_or_else(|_| absolute(dir));
    let mounts =
        parse::mountinfo(&std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default());
    let statfs_type = match nix::sys::statfs::statfs(&path) {
        Ok(st) => magic_name(st.filesystem_type().0),
        Err(_) => String::new(),
    };
    from_parts(&path, &mounts, statfs_type)
}

fn absolute(dir: &Path) -> PathBuf {
    if dir.is_absolute() {
        dir.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|c| c.join(dir))
            .unwrap_or_else(|_| dir.to_path_buf())
    }
}

/// The mount holding `path`: the last-mounted one among those whose mount point is
/// the longest whole-component prefix of `path`.
fn from_parts(path: &Path, mounts: &[parse::Mount], statfs_type: String) -> Storage {
    let depth = |p: &Path| {
        p.components()
            .filter(|c| matches!(c, Component::Normal(_)))
            .count()
    };
    let holder = mounts
        .iter()
        .filter(|m| path.starts_with(Path::new(&m.point)))
        .enumerate()
        .max_by_key(|(i, m)| (depth(Path::new(&m.point)), *i))
        .map(|(_, m)| m);
    Storage {
        path: path.display().to_string(),
        mount_point: holder.map(|m| m.point.clone()).unwrap_or_default(),
        fstype: holder.map(|m| m.fstype.clone()).unwrap_or_default(),
        source: holder.map(|m| m.source.clone()).unwrap_or_default(),
        statfs_type,
    }
}

/// Names of the `statfs` magic numbers (linux/magic.h) a scratch may be on.
fn magic_name(magic: i64) -> String {
    let name = match magic as u32 {
        0xEF53 => "ext2/3/4",
        0x5846_5342 => "xfs",
        0x9123_683E => "btrfs",
        0x0102_1994 => "tmpfs",
        0x8584_58F6 => "ramfs",
        0x794C_7630 => "overlay",
        0x0102_1997 => "v9fs",
        0x6969 => "nfs",
        0xF2F5_2010 => "f2fs",
        0x2FC1_2FC1 => "zfs",
        0x6573_5546 => "fuse",
        0x6264_6576 => "sysfs",
        0x9FA0 => "proc",
        _ => return format!("{magic:#x}"),
    };
    name.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTS: &str = "\
22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw,discard
30 22 0:25 / /tmp rw,nosuid shared:5 - tmpfs tmpfs rw
31 22 0:26 / /var/tmpx rw shared:6 - tmpfs tmpfs rw
40 22 0:40 / /scratch rw - 9p none rw,trans=fd
";

    #[test]
    fn the_deepest_mount_holding_the_path_wins() {
        let m = parse::mountinfo(MOUNTS);
        let s = from_parts(
            Path::new("/var/tmp/virtmark-1/native"),
            &m,
            "ext2/3/4".into(),
        );
        assert_eq!((s.mount_point.as_str(), s.fstype.as_str()), ("/", "ext4"));
        assert_eq!(s.source, "/dev/vda");
        assert!(!s.in_memory());
        let t = from_parts(Path::new("/tmp/x"), &m, "tmpfs".into());
        assert_eq!(t.mount_point, "/tmp");
        assert!(t.in_memory());
        let g = from_parts(Path::new("/scratch/fileio-1"), &m, "v9fs".into());
        assert_eq!((g.fstype.as_str(), g.source.as_str()), ("9p", "none"));
        assert!(g.describe().contains("9p"), "{}", g.describe());
    }

    #[test]
    fn statfs_of_a_real_directory_names_its_type() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = of(dir.path());
        assert!(!s.statfs_type.is_empty(), "{s:?}");
        assert!(!s.mount_point.is_empty(), "{s:?}");
    }

    #[test]
    fn magic_numbers_have_names() {
        assert_eq!(magic_name(0xEF53), "ext2/3/4");
        assert_eq!(magic_name(0x0102_1994), "tmpfs");
        assert_eq!(magic_name(0x1234), "0x1234");
    }
}
