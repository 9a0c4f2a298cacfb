//! Everything the fingerprint reads from the system goes through [`Source`], so that
//! detection can be tested against constructed environments (a UML guest, a gVisor
//! sandbox, a container in a VM) without being in one.

use super::cpuid;

/// Read-only access to the environment. Every method answers "nothing" rather than
/// failing: an unreadable file just leaves a field empty.
pub trait Source {
    /// Contents of a file (lossy UTF-8), or `None` if it cannot be read.
    fn read(&self, path: &str) -> Option<String>;
    /// Whether a path exists (any kind of file).
    fn exists(&self, path: &str) -> bool;
    /// Target of a symbolic link (e.g. `/proc/self/ns/pid` → `pid:[4026531836]`).
    fn read_link(&self, path: &str) -> Option<String>;
    /// Registers `[eax, ebx, ecx, edx]` of CPUID `leaf`; `None` off x86-64.
    fn cpuid(&self, leaf: u32) -> Option<[u32; 4]>;
    /// The kernel log (`dmesg`); only asked for when gVisor is suspected.
    fn kernel_log(&self) -> Option<String>;
    /// A variable of this process's environment.
    fn env_var(&self, name: &str) -> Option<String>;
    /// CPUs this process may run on (scheduler affinity).
    fn affinity_cpus(&self) -> Option<usize>;
    /// What the standard library thinks we may use (affinity and cgroup quota).
    fn available_parallelism(&self) -> usize;
    /// Host name.
    fn hostname(&self) -> Option<String>;
}

/// The real system this process runs on.
pub struct Host;

impl Source for Host {
    fn read(&self, path: &str) -> Option<String> {
        std::fs::read(path)
            .ok()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
    }

    fn exists(&self, path: &str) -> bool {
        std::fs::symlink_metadata(path).is_ok()
    }

    fn read_link(&self, path: &str) -> Option<String> {
        std::fs::read_link(path)
            .ok()
            .map(|p| p.to_string_lossy().into_owned())
    }

    fn cpuid(&self, leaf: u32) -> Option<[u32; 4]> {
        cpuid::raw(leaf)
    }

    fn kernel_log(&self) -> Option<String> {
        read_kernel_log()
    }

    fn env_var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }

    fn affinity_cpus(&self) -> Option<usize> {
        let set = nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0)).ok()?;
        Some(
            (0..nix::sched::CpuSet::count())
                .filter(|&i| set.is_set(i).unwrap_or(false))
                .count(),
        )
    }

    fn available_parallelism(&self) -> usize {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    }

    fn hostname(&self) -> Option<String> {
        nix::unistd::gethostname()
            .ok()
            .map(|h| h.to_string_lossy().into_owned())
    }
}

/// `syslog(SYSLOG_ACTION_READ_ALL)`: what `dmesg` prints. Needs no privilege under
/// gVisor (whose log starts "Starting gVisor..."); elsewhere it may be refused.
fn read_kernel_log() -> Option<String> {
    const SYSLOG_ACTION_READ_ALL: nix::libc::c_int = 3;
    const LEN: usize = 64 * 1024;
    let mut buf = vec![0u8; LEN];
    // SAFETY: `buf` is a live, exclusively borrowed allocation of `LEN` bytes and the
    // kernel writes at most `len` bytes into it; `LEN` fits in a c_int.
    let n = unsafe {
        nix::libc::klogctl(
            SYSLOG_ACTION_READ_ALL,
            buf.as_mut_ptr().cast::<nix::libc::c_char>(),
            LEN as nix::libc::c_int,
        )
    };
    let n = usize::try_from(n).ok()?;
    buf.truncate(n.min(LEN));
    Some(String::from_utf8_lossy(&buf).into_owned())
}

/// A constructed environment for tests: files, links and CPUID leaves in maps.
#[cfg(test)]
#[derive(Default)]
pub struct Fake {
    pub files: std::collections::HashMap<String, String>,
    pub links: std::collections::HashMap<String, String>,
    pub dirs: Vec<String>,
    pub leaves: std::collections::HashMap<u32, [u32; 4]>,
    pub log: Option<String>,
    pub env: std::collections::HashMap<String, String>,
    pub affinity: Option<usize>,
}

#[cfg(test)]
impl Fake {
    pub fn file(mut self, path: &str, text: &str) -> Self {
        self.files.insert(path.into(), text.into());
        self
    }
    pub fn dir(mut self, path: &str) -> Self {
        self.dirs.push(path.into());
        self
    }
    pub fn link(mut self, path: &str, target: &str) -> Self {
        self.links.insert(path.into(), target.into());
        self
    }
    /// Hypervisor bit set and leaf 0x40000000 answering `sig`.
    pub fn hypervisor(mut self, sig: &[u8; 12]) -> Self {
        let word = |i: usize| u32::from_le_bytes([sig[i], sig[i + 1], sig[i + 2], sig[i + 3]]);
        self.leaves.insert(1, [0, 0, 1 << 31, 0]);
        self.leaves
            .insert(0x4000_0000, [0x4000_0001, word(0), word(4), word(8)]);
        self
    }
}

#[cfg(test)]
impl Source for Fake {
    fn read(&self, path: &str) -> Option<String> {
        self.files.get(path).cloned()
    }
    fn exists(&self, path: &str) -> bool {
        self.files.contains_key(path)
            || self.links.contains_key(path)
            || self.dirs.iter().any(|d| d == path)
    }
    fn read_link(&self, path: &str) -> Option<String> {
        self.links.get(path).cloned()
    }
    fn cpuid(&self, leaf: u32) -> Option<[u32; 4]> {
        Some(self.leaves.get(&leaf).copied().unwrap_or_default())
    }
    fn kernel_log(&self) -> Option<String> {
        self.log.clone()
    }
    fn env_var(&self, name: &str) -> Option<String> {
        self.env.get(name).cloned()
    }
    fn affinity_cpus(&self) -> Option<usize> {
        self.affinity
    }
    fn available_parallelism(&self) -> usize {
        self.affinity.unwrap_or(1)
    }
    fn hostname(&self) -> Option<String> {
        Some("fake".into())
    }
}
