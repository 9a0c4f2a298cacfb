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
    /// The file system's own mount options (mountinfo's super options:
    /// `rw,discard,…`), empty if unknown.
    pub options: String,
    /// Whether an ext4 file system keeps a journal: `yes`, `none`, or empty when
    /// unknown or not ext4 (from `/sys/fs/ext4/<device>/journal_task`). Without a
    /// journal, ext4 does not reuse an inode freed in the last 5-30 s, and checks
    /// each such inode it passes on every creation: disk workloads that create
    /// files after others removed theirs slow down (docs/workloads.md).
    pub journal: String,
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
        let journal = if self.journal == "none" {
            ", no journal"
        } else {
            ""
        };
        format!(
            "{} on {source} {fstype}{journal} mounted at {} (statfs: {})",
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
    let mut st = from_parts(&path, &mounts, statfs_type);
    if st.fstype == "ext4" {
        st.journal = ext4_journal(&st.source, Path::new("/sys/fs/ext4"));
    }
    st
}

/// `yes` or `none` for the ext4 file system on device `source`, from
/// `<sysfs_ext4>/<device name>/journal_task` (`<none>` without a journal); empty
/// when the device or the file is not there (as in most containers).
fn ext4_journal(source: &str, sysfs_ext4: &Path) -> String {
    // /dev/mapper/x is a link to /dev/dm-N, the name sysfs uses.
    let dev = std::fs::canonicalize(source).unwrap_or_else(|_| PathBuf::from(source));
    let Some(name) = dev.file_name() else {
        return String::new();
    };
    match std::fs::read_to_string(sysfs_ext4.join(name).join("journal_task")) {
        Ok(t) if t.trim() == "<none>" => "none".into(),
        Ok(t) if !t.trim().is_empty() => "yes".into(),
        _ => String::new(),
    }
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
        options: holder.map(|m| m.options.join(",")).unwrap_or_default(),
        journal: String::new(),
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
    fn an_ext4_without_a_journal_is_named() {
        let sys = tempfile::tempdir().expect("tempdir");
        for (dev, task) in [("vda", "<none>\n"), ("vdb", "jbd2/vdb-8\n")] {
            std::fs::create_dir(sys.path().join(dev)).unwrap();
            std::fs::write(sys.path().join(dev).join("journal_task"), task).unwrap();
        }
        assert_eq!(ext4_journal("/dev/vda", sys.path()), "none");
        assert_eq!(ext4_journal("/dev/vdb", sys.path()), "yes");
        assert_eq!(ext4_journal("/dev/vdc", sys.path()), "");
        let m = parse::mountinfo(MOUNTS);
        let mut s = from_parts(Path::new("/var/tmp/x"), &m, "ext2/3/4".into());
        assert_eq!(s.options, "rw,discard");
        s.journal = "none".into();
        assert!(
            s.describe().contains("ext4, no journal"),
            "{}",
            s.describe()
        );
    }

    #[test]
    fn magic_numbers_have_names() {
        assert_eq!(magic_name(0xEF53), "ext2/3/4");
        assert_eq!(magic_name(0x0102_1994), "tmpfs");
        assert_eq!(magic_name(0x1234), "0x1234");
    }
}
