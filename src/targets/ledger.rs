//! The ledger: every resource a run creates (network namespaces, links, cgroups,
//! mounts, directories, child processes) is written to `ledger.jsonl` in the run
//! directory *before* it is created, and marked released after it is removed. So a
//! crash or `kill -9` leaves nothing that `virtmark cleanup` cannot find and remove.
//!
//! Each record is one `write(2)` to a file opened for appending, without
//! `fsync`: what the ledger guards against is virtmark dying (a panic, Ctrl-C,
//! `kill -9`), after which the kernel still holds every byte written. A machine
//! crash takes namespaces, links, cgroups, mounts and processes with it; only
//! scratch files would outlive it, all under one `virtmark-<run>` directory of
//! the temporary directory.
//! (A flush per record cost 0.1–0.4 ms here, five of them per container start.)
//!
//! Active ledgers are registered under [`registry_dir`] (one file per run naming
//! its ledger and the owning process), which is what `virtmark cleanup` scans.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// A resource a run creates.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Resource {
    /// A named network namespace (`ip netns`, bind mount under /run/netns).
    Netns {
        /// Name under /run/netns.
        name: String,
    },
    /// A network link in the root namespace (veth, tap). Links inside a namespace
    /// go away with it and need no entry.
    Link {
        /// Interface name.
        name: String,
    },
    /// A cgroup directory (v1 or v2); its processes are killed before rmdir.
    Cgroup {
        /// Absolute path under /sys/fs/cgroup.
        path: PathBuf,
    },
    /// A mount point, unmounted lazily.
    Mount {
        /// Mount point.
        path: PathBuf,
    },
    /// A directory or file tree (scratch, bundle, image), removed recursively.
    Dir {
        /// Path.
        path: PathBuf,
    },
    /// A child process (agent, peer, VM, container runtime).
    Process {
        /// Process id.
        pid: i32,
        /// Its start time (field 22 of /proc/PID/stat), to avoid killing a reused pid.
        start_time: u64,
    },
    /// A container known to a runtime by name (crun, runc, runsc, lxc, docker),
    /// or a libvirt domain (`virsh`).
    Container {
        /// Runtime command (`crun`, `runc`, `runsc`, `lxc`, `docker`, `virsh`).
        runtime: String,
        /// Container name or id.
        id: String,
        /// Runtime state root (`--root`), when not the default; for `docker`,
        /// the directory holding the socket (`docker.sock`) of the daemon
        /// virtmark started; for `virsh`, the directory holding the socket
        /// ([`LIBVIRT_SOCKET`]) of the libvirtd virtmark started.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        root: Option<PathBuf>,
    },
}

#[derive(Debug, Serialize, Deserialize)]
struct Entry {
    op: Op,
    #[serde(flatten)]
    res: Resource,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Op {
    Create,
    Release,
}

/// Where active ledgers are registered: `/run/virtmark` as root, else
/// `$XDG_RUNTIME_DIR/virtmark` or the temp dir (a directory that someone else
/// made first there is refused by `virtmark cleanup`, see [`cleanup_all`]).
pub fn registry_dir() -> PathBuf {
    if let Some(p) = std::env::var_os("VIRTMARK_REGISTRY") {
        return PathBuf::from(p);
    }
    if nix::unistd::geteuid().is_root() {
        return PathBuf::from("/run/virtmark");
    }
    std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
        .join("virtmark")
}

#[derive(Debug, Serialize, Deserialize)]
struct Registration {
    ledger: PathBuf,
    pid: i32,
    start_time: u64,
    /// The run's private scratch root: `Dir` and `Mount` entries must lie under it
    /// (or under virtmark's cache).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    scratch_root: Option<PathBuf>,
}

/// What the entries of one run's ledger may touch: paths under the run's own
/// scratch root or virtmark's cache, names with virtmark's prefix.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    /// The run's scratch root (`<tmp>/virtmark-<run>-<random>`), when it checked out.
    pub scratch_root: Option<PathBuf>,
    /// virtmark's cache directory, when it checked out.
    pub cache_root: Option<PathBuf>,
}

/// An open ledger; cheap to share (`&Ledger` is `Sync`).
pub struct Ledger {
    path: PathBuf,
    file: Mutex<File>,
    registration: PathBuf,
    scope: Scope,
}

/// Start time of a process (clock ticks since boot), `None` when it is gone.
pub fn process_start_time(pid: i32) -> Option<u64> {
    if pid <= 0 {
        return None;
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Create a new file for writing, mode 0600, refusing an existing path or a
/// symbolic link (`O_EXCL | O_NOFOLLOW`).
pub fn create_private_file(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc_nofollow())
        .open(path)
}

fn libc_nofollow() -> i32 {
    nix::fcntl::OFlag::O_NOFOLLOW.bits()
}

/// `<parent>/<prefix><12 random letters and digits>`: a name nobody can guess
/// in advance (about 71 bits), as `mkdtemp(3)` makes. The letters come from the
/// kernel's random source, not from a generator seeded by the clock, which two
/// processes (or a local user who knows when a run starts) could share.
pub fn unguessable(parent: &Path, prefix: &str) -> PathBuf {
    const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut bytes = [0u8; 12];
    if !os_random(&mut bytes) {
        // No /dev/urandom (a bare chroot): the process's generator, still
        // refused by `create_private_dir` if the name was taken.
        bytes.iter_mut().for_each(|b| *b = fastrand::u8(..));
    }
    let name: String = bytes
        .iter()
        .map(|b| char::from(ALNUM[usize::from(*b) % ALNUM.len()]))
        .collect();
    parent.join(format!("{prefix}{name}"))
}

/// Fill `buf` from the kernel's random source; false when it cannot be read.
fn os_random(buf: &mut [u8]) -> bool {
    use std::io::Read;
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(buf))
        .is_ok()
}

/// Make the directory `path` with mode 0700, refusing a path that already
/// exists (a directory, or a symbolic link someone put there); its parent must
/// exist.
pub fn create_private_dir(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new().mode(0o700).create(path)
}

impl Ledger {
    /// Create `ledger.jsonl` in `run_dir` and register it as active, with the
    /// run's scratch root (the only place its `Dir` entries may point into,
    /// besides the cache).
    pub fn create(run_dir: &Path, run_id: &str, scratch_root: Option<&Path>) -> Result<Ledger> {
        use std::os::unix::fs::DirBuilderExt;
        let path = run_dir.join("ledger.jsonl");
        let file = create_private_file(&path)
            .with_context(|| format!("creating ledger {}", path.display()))?;
        let reg_dir = registry_dir();
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&reg_dir)
            .with_context(|| format!("creating ledger registry {}", reg_dir.display()))?;
        // A registry someone else made (the shared temp dir, for a non-root user)
        // is not used: cleanup would refuse it anyway.
        trusted(&reg_dir).map_err(|r| anyhow::anyhow!("ledger registry: {r}"))?;
        let registration = reg_dir.join(format!("{run_id}.json"));
        let me = std::process::id() as i32;
        let reg = Registration {
            ledger: std::fs::canonicalize(&path).unwrap_or(path.clone()),
            pid: me,
            start_time: process_start_time(me).unwrap_or(0),
            scratch_root: scratch_root.map(Path::to_path_buf),
        };
        create_private_file(&registration)
            .and_then(|mut f| f.write_all(&serde_json::to_vec(&reg)?))
            .with_context(|| format!("registering ledger {}", registration.display()))?;
        Ok(Ledger {
            path,
            file: Mutex::new(file),
            registration,
            scope: Scope {
                scratch_root: scratch_root.map(Path::to_path_buf),
                cache_root: super::cache::dir().ok(),
            },
        })
    }

    /// The ledger file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn append(&self, op: Op, res: &Resource) -> Result<()> {
        let mut line = serde_json::to_string(&Entry {
            op,
            res: res.clone(),
        })?;
        line.push('\n');
        let mut f = self.file.lock().unwrap_or_else(|e| e.into_inner());
        f.write_all(line.as_bytes())
            .with_context(|| format!("writing ledger {}", self.path.display()))
    }

    /// Record a resource before creating it.
    pub fn record(&self, res: &Resource) -> Result<()> {
        self.append(Op::Create, res)
    }

    /// Record several resources before creating them, with one write.
    pub fn record_all(&self, res: &[Resource]) -> Result<()> {
        let mut text = String::new();
        for r in res {
            text.push_str(&serde_json::to_string(&Entry {
                op: Op::Create,
                res: r.clone(),
            })?);
            text.push('\n');
        }
        let mut f = self.file.lock().unwrap_or_else(|e| e.into_inner());
        f.write_all(text.as_bytes())
            .with_context(|| format!("writing ledger {}", self.path.display()))
    }

    /// Record a child process right after spawning it.
    pub fn record_process(&self, pid: u32) -> Result<Resource> {
        let res = Resource::Process {
            pid: pid as i32,
            start_time: process_start_time(pid as i32).unwrap_or(0),
        };
        self.record(&res)?;
        Ok(res)
    }

    /// Mark a resource removed.
    pub fn release(&self, res: &Resource) -> Result<()> {
        self.append(Op::Release, res)
    }

    /// Remove a resource this process made and holds (see [`remove`]) and mark
    /// it released. What comes back from disk goes through [`cleanup_ledger`].
    pub fn remove(&self, res: &Resource) -> Result<()> {
        remove(res)?;
        self.release(res)
    }

    /// Remove everything still recorded (newest first) and unregister.
    pub fn close(self) -> Result<Vec<String>> {
        self.close_now()
    }

    /// Remove everything still recorded and unregister, leaving the ledger usable
    /// for the record (what `close` does, through a shared reference). Returns
    /// what could not be removed and what was refused.
    pub fn close_now(&self) -> Result<Vec<String>> {
        let _guard = self.file.lock().unwrap_or_else(|e| e.into_inner());
        let out = cleanup_ledger(&self.path, &self.scope)?;
        let _ = std::fs::remove_file(&self.registration);
        Ok(out
            .problems
            .into_iter()
            .chain(out.refused.into_iter().map(|r| format!("{r} (refused)")))
            .collect())
    }
}

/// Longest ledger line read; a longer one is not virtmark's and is skipped.
pub const MAX_LEDGER_LINE: usize = 64 * 1024;
/// Largest ledger read (a run records a few hundred lines).
pub const MAX_LEDGER_BYTES: u64 = 64 << 20;

/// Resources recorded and not released in ledger text, in creation order.
/// Lines that do not parse (a torn last line after a crash) are skipped.
pub fn parse(text: &str) -> Vec<Resource> {
    let mut live: Vec<Resource> = Vec::new();
    for line in text.lines() {
        if line.len() > MAX_LEDGER_LINE {
            continue;
        }
        let Ok(e) = serde_json::from_str::<Entry>(line) else {
            continue;
        };
        match e.op {
            Op::Create => live.push(e.res),
            Op::Release => {
                if let Some(i) = live.iter().rposition(|r| *r == e.res) {
                    live.remove(i);
                }
            }
        }
    }
    live
}

/// Resources recorded and not released, in creation order.
pub fn outstanding(ledger: &Path) -> Result<Vec<Resource>> {
    use std::io::Read;
    let f = File::open(ledger).with_context(|| format!("reading ledger {}", ledger.display()))?;
    let mut bytes = Vec::new();
    f.take(MAX_LEDGER_BYTES)
        .read_to_end(&mut bytes)
        .with_context(|| format!("reading ledger {}", ledger.display()))?;
    Ok(parse(&String::from_utf8_lossy(&bytes)))
}

/// Why a ledger entry, registration or ledger was not acted on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// A path that is not under the run's scratch root or virtmark's cache.
    #[error("{0}: not under the run's scratch directory or virtmark's cache")]
    Outside(PathBuf),
    /// A path with `..`, `.` or not absolute.
    #[error("{0}: not a plain absolute path")]
    NotPlain(PathBuf),
    /// A symbolic link on the way to a path.
    #[error("{0}: a symbolic link on the way")]
    Symlink(PathBuf),
    /// A name without virtmark's prefix or with characters virtmark never uses.
    #[error("{kind} {name:?}: not a name virtmark gives")]
    Name {
        /// What it names.
        kind: &'static str,
        /// The name.
        name: String,
    },
    /// A cgroup virtmark did not make.
    #[error("cgroup {0}: not one of virtmark's (a virtmark-* directory under /sys/fs/cgroup)")]
    Cgroup(PathBuf),
    /// A container runtime that is not a known program on `PATH`.
    #[error("runtime {0:?}: not one of crun, runc, runsc, lxc, docker, virsh found on PATH")]
    Runtime(String),
    /// A runtime program that others may write to.
    #[error("runtime {0}: writable by others or not owned by root or the caller")]
    RuntimeUnsafe(PathBuf),
    /// A pid whose process is another one now.
    #[error("process {pid}: the pid belongs to another process now (started at {now}, recorded {recorded})")]
    PidReused {
        /// Pid.
        pid: i32,
        /// Recorded start time.
        recorded: u64,
        /// Start time of the process holding the pid now.
        now: u64,
    },
    /// A process that is not virtmark, a VM or a runtime it starts.
    #[error("process {pid}: {command:?} is not a program virtmark starts")]
    Foreign {
        /// Pid.
        pid: i32,
        /// Its command line.
        command: String,
    },
    /// A file that the caller does not own or that others may write.
    #[error("{0}: not owned by the user running cleanup, or writable by others")]
    Untrusted(PathBuf),
}

/// What cleaning one ledger did.
#[derive(Debug, Default)]
pub struct LedgerCleanup {
    /// Resources that could not be removed.
    pub problems: Vec<String>,
    /// Entries refused and left alone.
    pub refused: Vec<Refused>,
}

/// Remove every outstanding resource of a ledger that `scope` allows, newest
/// first, marking each released. Entries that fail [`check`] are refused and
/// never acted on.
pub fn cleanup_ledger(ledger: &Path, scope: &Scope) -> Result<LedgerCleanup> {
    let live = outstanding(ledger)?;
    let mut f = OpenOptions::new()
        .append(true)
        .custom_flags_nofollow()
        .open(ledger)
        .with_context(|| format!("opening ledger {}", ledger.display()))?;
    let mut out = LedgerCleanup::default();
    for res in live.iter().rev() {
        let checked = match check(res, scope) {
            Ok(c) => c,
            Err(r) => {
                out.refused.push(r);
                continue;
            }
        };
        match remove_checked(res, &checked) {
            Ok(()) => {
                let mut line = serde_json::to_string(&Entry {
                    op: Op::Release,
                    res: res.clone(),
                })?;
                line.push('\n');
                f.write_all(line.as_bytes())?;
            }
            Err(e) => out.problems.push(format!("{res:?}: {e:#}")),
        }
    }
    f.sync_data()?;
    Ok(out)
}

trait NoFollow {
    fn custom_flags_nofollow(&mut self) -> &mut Self;
}

impl NoFollow for OpenOptions {
    fn custom_flags_nofollow(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        self.custom_flags(libc_nofollow())
    }
}

/// What `virtmark cleanup` did.
#[derive(Debug, Default)]
pub struct CleanupReport {
    /// Ledgers of dead runs that were cleaned.
    pub ledgers: Vec<PathBuf>,
    /// Ledgers skipped because their run is still alive.
    pub alive: Vec<PathBuf>,
    /// Resources that could not be removed.
    pub problems: Vec<String>,
    /// Entries, registrations and ledgers refused (never acted on), and why.
    pub refused: Vec<String>,
}

/// Whether `path` (not followed if a link) is owned by the caller and not
/// writable by group or others; a directory also must not be a symbolic link.
fn trusted(path: &Path) -> Result<std::fs::Metadata, Refused> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::symlink_metadata(path).map_err(|_| Refused::Untrusted(path.into()))?;
    if m.file_type().is_symlink() {
        return Err(Refused::Symlink(path.into()));
    }
    if m.uid() != nix::unistd::geteuid().as_raw() || m.mode() & 0o022 != 0 {
        return Err(Refused::Untrusted(path.into()));
    }
    Ok(m)
}

/// The scratch root a registration names, when it is the run's own: an
/// absolute `virtmark-<run>-…` directory, no link, owned by the caller and
/// writable by nobody else.
fn trusted_scratch_root(run_id: &str, root: &Path) -> Result<PathBuf, Refused> {
    plain(root)?;
    let name = root
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if !name.starts_with(&format!("virtmark-{run_id}")) {
        return Err(Refused::Name {
            kind: "scratch directory",
            name,
        });
    }
    if let Some(parent) = root.parent() {
        no_links_below(Path::new("/"), parent)?;
    }
    match std::fs::symlink_metadata(root) {
        // Gone already: nothing under it to remove, and nothing to refuse.
        Err(_) => Ok(root.to_path_buf()),
        Ok(_) => trusted(root).map(|_| root.to_path_buf()),
    }
}

/// Clean every registered ledger whose owning process is gone (all of them when
/// `force`). A registration or ledger not owned by the caller, or writable by
/// others, is refused; so is every entry [`check`] refuses.
pub fn cleanup_all(force: bool) -> Result<CleanupReport> {
    cleanup_registry(&registry_dir(), force)
}

/// [`cleanup_all`] for the registry `dir`.
pub fn cleanup_registry(dir: &Path, force: bool) -> Result<CleanupReport> {
    cleanup_registered(dir, force, None)
}

/// Clean the ledger of run `run_id` only, when it is registered and its run is
/// gone (what `virtmark run --resume` does before it continues the run).
pub fn cleanup_run(run_id: &str) -> Result<CleanupReport> {
    cleanup_registered(&registry_dir(), false, Some(run_id))
}

fn cleanup_registered(dir: &Path, force: bool, only: Option<&str>) -> Result<CleanupReport> {
    let mut report = CleanupReport::default();
    if std::fs::symlink_metadata(dir).is_err() {
        return Ok(report);
    }
    if let Err(r) = trusted(dir) {
        report.refused.push(format!("ledger registry: {r}"));
        return Ok(report);
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(report);
    };
    let cache_root = super::cache::dir().ok();
    for e in entries.flatten() {
        let p = e.path();
        let Some(run_id) = p
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".json"))
            .map(String::from)
        else {
            continue;
        };
        if only.is_some_and(|o| o != run_id) {
            continue;
        }
        if let Err(r) = trusted(&p) {
            report.refused.push(format!("registration: {r}"));
            continue;
        }
        let text = match OpenOptions::new()
            .read(true)
            .custom_flags_nofollow()
            .open(&p)
            .and_then(|f| {
                use std::io::Read;
                let mut v = Vec::new();
                f.take(64 * 1024).read_to_end(&mut v).map(|_| v)
            }) {
            Ok(t) => t,
            Err(_) => continue,
        };
        let Ok(reg) = serde_json::from_slice::<Registration>(&text) else {
            report
                .refused
                .push(format!("registration {}: not a registration", p.display()));
            continue;
        };
        let alive = process_start_time(reg.pid).is_some_and(|t| t == reg.start_time)
            && reg.pid != std::process::id() as i32;
        if alive && !force {
            report.alive.push(reg.ledger);
            continue;
        }
        if std::fs::symlink_metadata(&reg.ledger).is_ok() {
            let ledger_ok = plain(&reg.ledger).and_then(|_| {
                trusted(&reg.ledger)?;
                match reg.ledger.parent() {
                    Some(parent) => trusted(parent).map(|_| ()),
                    None => Err(Refused::NotPlain(reg.ledger.clone())),
                }
            });
            if let Err(r) = ledger_ok {
                report
                    .refused
                    .push(format!("ledger of run {run_id}: {r}; left alone"));
                continue;
            }
            let root = reg
                .scratch_root
                .clone()
                .unwrap_or_else(|| std::env::temp_dir().join(format!("virtmark-{run_id}")));
            let scratch_root = match trusted_scratch_root(&run_id, &root) {
                Ok(r) => Some(r),
                Err(r) => {
                    report.refused.push(format!("run {run_id}: {r}"));
                    None
                }
            };
            let scope = Scope {
                scratch_root,
                cache_root: cache_root.clone(),
            };
            let out = cleanup_ledger(&reg.ledger, &scope)?;
            // A test start keeps its ledger in its own scratch root
            // (`targets::verify`): once every entry is handled, the root goes too.
            if let Some(root) = &scope.scratch_root {
                let own = reg.ledger.parent() == Some(root.as_path());
                if own && out.problems.is_empty() && out.refused.is_empty() {
                    if let Err(e) = std::fs::remove_dir_all(root) {
                        report
                            .problems
                            .push(format!("run {run_id}: removing {}: {e}", root.display()));
                    }
                }
            }
            report.problems.extend(out.problems);
            report.refused.extend(
                out.refused
                    .into_iter()
                    .map(|r| format!("run {run_id}: {r}")),
            );
        }
        let _ = std::fs::remove_file(&p);
        report.ledgers.push(reg.ledger);
    }
    Ok(report)
}

/// What [`check`] found out about an entry: the programs to run for it.
#[derive(Debug, Default)]
pub struct Checked {
    /// Absolute paths of the programs to run (a runtime, `lxc-stop`, `lxc-destroy`).
    programs: Vec<PathBuf>,
    /// Nothing to do: the resource is gone.
    gone: bool,
}

/// A path that is absolute and has no `.` or `..` component.
fn plain(path: &Path) -> Result<(), Refused> {
    use std::path::Component;
    let ok = path.is_absolute()
        && path
            .components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
    if ok {
        Ok(())
    } else {
        Err(Refused::NotPlain(path.into()))
    }
}

/// No symbolic link from `base` (exclusive) down to `path`'s parent (inclusive);
/// `path` itself may be a link (removing a link removes only the link). Parts
/// that do not exist end the walk: nothing below them exists either.
fn no_links_below(base: &Path, path: &Path) -> Result<(), Refused> {
    let Ok(rel) = path.strip_prefix(base) else {
        return Err(Refused::Outside(path.into()));
    };
    let mut at = base.to_path_buf();
    let comps: Vec<_> = rel.components().collect();
    for c in comps.iter().take(comps.len().saturating_sub(1)) {
        at.push(c);
        match std::fs::symlink_metadata(&at) {
            Ok(m) if m.file_type().is_symlink() => return Err(Refused::Symlink(at)),
            Ok(_) => {}
            Err(_) => return Ok(()),
        }
    }
    Ok(())
}

/// A path under the run's scratch root (or the root itself) or strictly under
/// virtmark's cache, with no link on the way.
fn check_path(path: &Path, scope: &Scope) -> Result<(), Refused> {
    plain(path)?;
    if let Some(root) = &scope.scratch_root {
        if path.starts_with(root) {
            if let Ok(m) = std::fs::symlink_metadata(root) {
                if m.file_type().is_symlink() {
                    return Err(Refused::Symlink(root.clone()));
                }
            }
            return no_links_below(root, path);
        }
    }
    if let Some(cache) = &scope.cache_root {
        if path.starts_with(cache) && path != cache.as_path() {
            trusted(cache)?;
            return no_links_below(cache, path);
        }
    }
    Err(Refused::Outside(path.into()))
}

/// A name virtmark gives: its prefix, at most `max` bytes of `[A-Za-z0-9._-]`.
fn check_name(
    kind: &'static str,
    name: &str,
    prefixes: &[&str],
    max: usize,
) -> Result<(), Refused> {
    let ok = prefixes.iter().any(|p| name.starts_with(p))
        && name.len() <= max
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(Refused::Name {
            kind,
            name: name.into(),
        })
    }
}

/// Where the cgroup file systems are mounted.
const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// The runtimes a `container` entry may name.
/// The socket of a Docker daemon virtmark starts, in its `Container` root.
pub const DOCKER_SOCKET: &str = "docker.sock";

/// The socket of a libvirtd virtmark starts, in the `root` of a `virsh`
/// `Container` (a domain of that daemon).
pub const LIBVIRT_SOCKET: &str = "libvirt-sock";

const RUNTIMES: &[&str] = &["crun", "runc", "runsc", "lxc", "docker", "virsh"];

/// `program` found on `PATH` (a name, never a path), as an absolute path to a
/// file owned by root or the caller and writable by nobody else.
fn on_path(program: &str) -> Result<PathBuf, Refused> {
    use std::os::unix::fs::MetadataExt;
    if program.contains('/') || program.is_empty() {
        return Err(Refused::Runtime(program.into()));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        if !dir.is_absolute() {
            continue;
        }
        let p = dir.join(program);
        let Ok(m) = std::fs::metadata(&p) else {
            continue;
        };
        if !m.is_file() || m.mode() & 0o111 == 0 {
            continue;
        }
        let me = nix::unistd::geteuid().as_raw();
        if (m.uid() != 0 && m.uid() != me) || m.mode() & 0o022 != 0 {
            return Err(Refused::RuntimeUnsafe(p));
        }
        return Ok(p);
    }
    Err(Refused::Runtime(program.into()))
}

/// Programs a recorded process may be: virtmark itself (agent, peer), the VMs
/// and the container runtimes it starts.
fn virtmark_program(name: &str) -> bool {
    let own = std::env::current_exe()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()));
    let name = name.trim_end_matches(" (deleted)");
    own.as_deref() == Some(name)
        || name == "virtmark"
        || name.starts_with("qemu-system-")
        || name == "linux"
        || name.starts_with("linux.")
        || name.starts_with("vmlinux")
        || name.starts_with("runsc")
        || name == "crun"
        || name == "runc"
        || name.starts_with("lxc-")
        || name == "init.lxc"
        || name == "ssh"
        || name == "docker"
        || name == "dockerd"
        || name == "systemd-nspawn"
        || name == "libvirtd"
}

/// Whether the process has ended and waits to be reaped.
fn zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(')')
            .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
    })
}

fn basename(s: &str) -> &str {
    s.rsplit('/').next().unwrap_or(s)
}

/// Check one ledger entry against the run's `scope` before anything is done
/// with it. `Err` says why it is refused; it must then be left alone.
pub fn check(res: &Resource, scope: &Scope) -> Result<Checked, Refused> {
    let mut c = Checked::default();
    match res {
        Resource::Dir { path } | Resource::Mount { path } => check_path(path, scope)?,
        Resource::Netns { name } => check_name("network namespace", name, &["virtmark-"], 64)?,
        Resource::Link { name } => check_name("link", name, &["vmk", "virtmark"], 15)?,
        Resource::Cgroup { path } => {
            plain(path)?;
            let named = path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("virtmark-"));
            if !path.starts_with(CGROUP_ROOT) || !named {
                return Err(Refused::Cgroup(path.clone()));
            }
            no_links_below(Path::new(CGROUP_ROOT), path)?;
            if let Ok(m) = std::fs::symlink_metadata(path) {
                if m.file_type().is_symlink() {
                    return Err(Refused::Symlink(path.clone()));
                }
            }
        }
        Resource::Container { runtime, id, root } => {
            if !RUNTIMES.contains(&runtime.as_str()) {
                return Err(Refused::Runtime(runtime.clone()));
            }
            check_name("container", id, &["virtmark-"], 128)?;
            if let Some(r) = root {
                check_path(r, scope)?;
            }
            if runtime == "lxc" {
                c.programs.push(on_path("lxc-stop")?);
                c.programs.push(on_path("lxc-destroy")?);
            } else {
                c.programs.push(on_path(runtime)?);
            }
        }
        Resource::Process { pid, start_time } => {
            if *pid <= 1 || *pid == std::process::id() as i32 {
                return Err(Refused::Foreign {
                    pid: *pid,
                    command: "(not a child's pid)".into(),
                });
            }
            match process_start_time(*pid) {
                None => c.gone = true,
                Some(now) if now != *start_time => {
                    return Err(Refused::PidReused {
                        pid: *pid,
                        recorded: *start_time,
                        now,
                    })
                }
                Some(_) if zombie(*pid) => c.gone = true,
                // Our child caught exiting (killed with its run): its memory and
                // executable are already released, not yet a zombie. It is ours
                // by its start time; wait for it to finish dying.
                Some(_) if exiting_for_good(*pid, *start_time) => c.gone = true,
                Some(_) => {
                    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                    let args: Vec<String> = cmdline
                        .split(|b| *b == 0)
                        .filter(|a| !a.is_empty())
                        .map(|a| String::from_utf8_lossy(a).into_owned())
                        .collect();
                    let exe = std::fs::read_link(format!("/proc/{pid}/exe"))
                        .ok()
                        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()));
                    let argv0 = args.first().map(|a| basename(a).to_string());
                    let ours = exe.as_deref().is_some_and(virtmark_program)
                        || argv0.as_deref().is_some_and(virtmark_program);
                    if !ours {
                        return Err(Refused::Foreign {
                            pid: *pid,
                            command: args.join(" "),
                        });
                    }
                }
            }
        }
    }
    Ok(c)
}

/// Whether `pid` (started at `start_time`) has no command line and no
/// executable left, as a process in the middle of exiting, and is gone or a
/// zombie within a second. A live process never loses both.
fn exiting_for_good(pid: i32, start_time: u64) -> bool {
    let released = || {
        std::fs::read(format!("/proc/{pid}/cmdline")).map_or(true, |c| c.is_empty())
            && std::fs::read_link(format!("/proc/{pid}/exe")).is_err()
    };
    if !released() {
        return false;
    }
    for _ in 0..50 {
        match process_start_time(pid) {
            None => return true,
            Some(now) if now != start_time => return false,
            Some(_) if zombie(pid) => return true,
            Some(_) => std::thread::sleep(std::time::Duration::from_millis(20)),
        }
    }
    false
}

fn run_quiet(cmd: &str, args: &[&str]) -> Result<bool> {
    let st = std::process::Command::new(cmd)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .with_context(|| format!("running {cmd}"))?;
    Ok(st.success())
}

fn kill_cgroup_procs(path: &Path) {
    for _ in 0..50 {
        let procs = std::fs::read_to_string(path.join("cgroup.procs")).unwrap_or_default();
        let pids: Vec<i32> = procs
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect();
        if pids.is_empty() {
            return;
        }
        // cgroup v2 can kill the whole tree at once.
        let _ = std::fs::write(path.join("cgroup.kill"), "1");
        for pid in pids {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn remove_cgroup(path: &Path) -> Result<()> {
    if !path.exists() {
        return Ok(());
    }
    // Children first.
    if let Ok(rd) = std::fs::read_dir(path) {
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_cgroup(&e.path())?;
            }
        }
    }
    kill_cgroup_procs(path);
    let mut last = None;
    for _ in 0..100 {
        match std::fs::remove_dir(path) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => last = Some(e),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(last.expect("set in loop")).with_context(|| format!("removing cgroup {}", path.display()))
}

/// Remove one resource this process made and holds; succeeds when it is
/// already gone. Entries read back from a ledger go through [`check`] first
/// ([`cleanup_ledger`]).
pub fn remove(res: &Resource) -> Result<()> {
    let mut c = Checked::default();
    if let Resource::Container { runtime, .. } = res {
        if runtime == "lxc" {
            c.programs = vec!["lxc-stop".into(), "lxc-destroy".into()];
        } else {
            c.programs = vec![runtime.into()];
        }
    }
    remove_checked(res, &c)
}

fn remove_checked(res: &Resource, checked: &Checked) -> Result<()> {
    if checked.gone {
        return Ok(());
    }
    let program = |i: usize| -> Result<&str> {
        checked
            .programs
            .get(i)
            .and_then(|p| p.to_str())
            .context("no program to run for this container")
    };
    match res {
        Resource::Process { pid, start_time } => {
            if process_start_time(*pid) == Some(*start_time) {
                let p = nix::unistd::Pid::from_raw(*pid);
                let _ = nix::sys::signal::kill(p, nix::sys::signal::Signal::SIGKILL);
                for _ in 0..100 {
                    if process_start_time(*pid) != Some(*start_time) {
                        break;
                    }
                    // Reap it if it is our child; otherwise wait for its parent to.
                    let _ = nix::sys::wait::waitpid(p, Some(nix::sys::wait::WaitPidFlag::WNOHANG));
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
            Ok(())
        }
        Resource::Container { runtime, id, root } => {
            let mut args: Vec<String> = Vec::new();
            if runtime == "lxc" {
                // `root` is the container's lxcpath (`-P`) when not the default.
                let mut base: Vec<String> = Vec::new();
                if let Some(r) = root {
                    base.extend(["-P".into(), r.display().to_string()]);
                }
                base.extend(["-n".into(), id.clone()]);
                let mut stop: Vec<&str> = vec!["-k"];
                stop.extend(base.iter().map(String::as_str));
                let destroy: Vec<&str> = base.iter().map(String::as_str).collect();
                let _ = run_quiet(program(0)?, &stop);
                let _ = run_quiet(program(1)?, &destroy);
                if let Some(r) = root {
                    let _ = std::fs::remove_dir_all(r.join(id));
                }
                return Ok(());
            }
            if runtime == "docker" {
                // Asked of the daemon virtmark started (its socket in `root`);
                // when that daemon is gone, so is the container.
                let Some(r) = root else {
                    return Ok(());
                };
                let sock = r.join(DOCKER_SOCKET);
                if sock.exists() {
                    let host = format!("unix://{}", sock.display());
                    let _ = run_quiet(program(0)?, &["-H", &host, "rm", "-f", id]);
                }
                return Ok(());
            }
            if runtime == "virsh" {
                // A domain of the libvirtd virtmark started (its socket in
                // `root`); when that daemon is gone, its QEMU is stopped
                // through its own entry and its cgroup.
                let Some(r) = root else {
                    return Ok(());
                };
                let sock = r.join(LIBVIRT_SOCKET);
                if sock.exists() {
                    let uri = format!("qemu:///system?socket={}", sock.display());
                    let _ = run_quiet(program(0)?, &["-q", "-c", &uri, "destroy", id]);
                }
                return Ok(());
            }
            if let Some(r) = root {
                args.push("--root".into());
                args.push(r.display().to_string());
            }
            let mut kill = args.clone();
            kill.extend(["kill".into(), id.clone(), "KILL".into()]);
            let mut del = args.clone();
            del.extend(["delete".into(), "--force".into(), id.clone()]);
            let k: Vec<&str> = kill.iter().map(String::as_str).collect();
            let d: Vec<&str> = del.iter().map(String::as_str).collect();
            let _ = run_quiet(program(0)?, &k);
            let _ = run_quiet(program(0)?, &d);
            if let Some(r) = root {
                let _ = std::fs::remove_dir_all(r.join(id));
            }
            Ok(())
        }
        Resource::Mount { path } => {
            match nix::mount::umount2(path, nix::mount::MntFlags::MNT_DETACH) {
                Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => Ok(()),
                Err(e) => Err(e).with_context(|| format!("unmounting {}", path.display())),
            }
        }
        Resource::Netns { name } => {
            let p = Path::new("/run/netns").join(name);
            if p.exists() && !run_quiet("ip", &["netns", "delete", name])? {
                let _ = nix::mount::umount2(&p, nix::mount::MntFlags::MNT_DETACH);
                std::fs::remove_file(&p)
                    .with_context(|| format!("removing network namespace {name}"))?;
            }
            Ok(())
        }
        Resource::Link { name } => {
            // Asked of the network namespace itself, not of /sys/class/net (which
            // shows the namespace of whoever mounted /sys); failing means gone.
            run_quiet("ip", &["link", "delete", name])?;
            Ok(())
        }
        Resource::Cgroup { path } => remove_cgroup(path),
        Resource::Dir { path } => match std::fs::remove_dir_all(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                // A file rather than a directory.
                match std::fs::remove_file(path) {
                    Ok(()) => Ok(()),
                    Err(_) => Err(e).with_context(|| format!("removing {}", path.display())),
                }
            }
            _ => Ok(()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outstanding_replays_creates_and_releases() {
        let dir = tempfile::tempdir().unwrap();
        std::env::set_var("VIRTMARK_REGISTRY", dir.path().join("reg"));
        let l = Ledger::create(dir.path(), "t1", Some(dir.path())).unwrap();
        let a = Resource::Dir {
            path: dir.path().join("a"),
        };
        let b = Resource::Dir {
            path: dir.path().join("b"),
        };
        l.record(&a).unwrap();
        std::fs::create_dir(dir.path().join("a")).unwrap();
        l.record(&b).unwrap();
        std::fs::create_dir_all(dir.path().join("b/c")).unwrap();
        l.remove(&a).unwrap();
        assert_eq!(outstanding(l.path()).unwrap(), vec![b.clone()]);
        // A torn line is skipped.
        OpenOptions::new()
            .append(true)
            .open(l.path())
            .unwrap()
            .write_all(b"{\"op\":\"cre")
            .unwrap();
        assert_eq!(outstanding(l.path()).unwrap(), vec![b]);
        let problems = l.close().unwrap();
        assert!(problems.is_empty(), "{problems:?}");
        assert!(!dir.path().join("b").exists());
        assert!(!dir.path().join("a").exists());
    }

    /// A dead run's registration in `reg` for the ledger `text`, with the
    /// scratch root `root`; returns the ledger path.
    fn register_dead(reg: &Path, run_dir: &Path, run_id: &str, root: &Path, text: &str) -> PathBuf {
        std::fs::create_dir_all(run_dir).unwrap();
        let ledger = run_dir.join("ledger.jsonl");
        std::fs::write(&ledger, text).unwrap();
        std::fs::create_dir_all(reg).unwrap();
        let r = Registration {
            ledger: ledger.clone(),
            // No process has pid i32::MAX: the run is dead.
            pid: i32::MAX,
            start_time: 1,
            scratch_root: Some(root.to_path_buf()),
        };
        std::fs::write(
            reg.join(format!("{run_id}.json")),
            serde_json::to_vec(&r).unwrap(),
        )
        .unwrap();
        ledger
    }

    fn line(res: &Resource) -> String {
        format!(
            "{}\n",
            serde_json::to_string(&Entry {
                op: Op::Create,
                res: res.clone()
            })
            .unwrap()
        )
    }

    fn scope_of(root: &Path) -> Scope {
        Scope {
            scratch_root: Some(root.to_path_buf()),
            cache_root: None,
        }
    }

    #[test]
    fn paths_outside_the_run_s_scratch_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("virtmark-r1-abc");
        create_private_dir(&root).unwrap();
        let sc = scope_of(&root);
        for bad in [
            "/",
            "/etc",
            "relative/path",
            &format!("{}/../victim", root.display()),
        ] {
            let res = Resource::Dir { path: bad.into() };
            assert!(check(&res, &sc).is_err(), "{bad} accepted");
            let res = Resource::Mount { path: bad.into() };
            assert!(check(&res, &sc).is_err(), "mount {bad} accepted");
        }
        // A link inside the root leading out: the walk below it is refused.
        let victim = d.path().join("victim");
        std::fs::create_dir_all(victim.join("sub")).unwrap();
        std::os::unix::fs::symlink(&victim, root.join("link")).unwrap();
        let through = Resource::Dir {
            path: root.join("link/sub"),
        };
        assert!(matches!(check(&through, &sc), Err(Refused::Symlink(_))));
        // The root itself and paths under it are fine; removing the link itself
        // removes only the link.
        let link = Resource::Dir {
            path: root.join("link"),
        };
        let c = check(&link, &sc).unwrap();
        remove_checked(&link, &c).unwrap();
        assert!(victim.join("sub").is_dir());
        assert!(check(&Resource::Dir { path: root.clone() }, &sc).is_ok());
        // No scratch root known: nothing is under it.
        let none = Scope::default();
        assert!(matches!(
            check(
                &Resource::Dir {
                    path: root.join("x")
                },
                &none
            ),
            Err(Refused::Outside(_))
        ));
    }

    #[test]
    fn names_without_virtmark_s_prefix_are_refused() {
        let sc = Scope::default();
        for bad in [
            "../../etc/passwd",
            "eth0",
            "virtmark-../x",
            "",
            "virtmark-a/b",
        ] {
            assert!(
                check(&Resource::Netns { name: bad.into() }, &sc).is_err(),
                "netns {bad:?}"
            );
        }
        for bad in [
            "eth0",
            "lo",
            "foreign0",
            "vmk/../x",
            "vmk-name-far-too-long",
        ] {
            assert!(
                check(&Resource::Link { name: bad.into() }, &sc).is_err(),
                "link {bad:?}"
            );
        }
        assert!(check(
            &Resource::Netns {
                name: "virtmark-ab12ns0-p".into()
            },
            &sc
        )
        .is_ok());
        assert!(check(
            &Resource::Link {
                name: "vmktap0".into()
            },
            &sc
        )
        .is_ok());
    }

    #[test]
    fn foreign_cgroups_are_refused() {
        let sc = Scope::default();
        for bad in [
            "/sys/fs/cgroup",
            "/sys/fs/cgroup/system.slice",
            "/sys/fs/cgroup/user.slice/foreign",
            "/sys/fs/cgroup/virtmark-x/../system.slice",
            "/tmp/virtmark-x",
            "/sys/fs/cgroupx/virtmark-x",
        ] {
            assert!(
                check(&Resource::Cgroup { path: bad.into() }, &sc).is_err(),
                "cgroup {bad}"
            );
        }
        assert!(check(
            &Resource::Cgroup {
                path: "/sys/fs/cgroup/virtmark-ab12ns0".into()
            },
            &sc
        )
        .is_ok());
    }

    #[test]
    fn runtimes_must_be_known_programs_on_path() {
        let d = tempfile::tempdir().unwrap();
        let sc = scope_of(d.path());
        let script = d.path().join("crun");
        std::fs::write(&script, "#!/bin/sh\ntouch /tmp/pwned\n").unwrap();
        for rt in [script.display().to_string(), "sh".into(), "./crun".into()] {
            let res = Resource::Container {
                runtime: rt.clone(),
                id: "virtmark-x".into(),
                root: None,
            };
            assert!(
                matches!(check(&res, &sc), Err(Refused::Runtime(_))),
                "runtime {rt}"
            );
        }
        // A known runtime, but a foreign container id or a state root elsewhere.
        let foreign_id = Resource::Container {
            runtime: "crun".into(),
            id: "production-db".into(),
            root: None,
        };
        assert!(check(&foreign_id, &sc).is_err());
        let foreign_root = Resource::Container {
            runtime: "crun".into(),
            id: "virtmark-x".into(),
            root: Some("/run/crun".into()),
        };
        assert!(check(&foreign_root, &sc).is_err());
    }

    #[test]
    fn reused_and_foreign_pids_are_refused() {
        let sc = Scope::default();
        let mut sleeper = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = sleeper.id() as i32;
        let t = process_start_time(pid).unwrap();
        let reused = Resource::Process {
            pid,
            start_time: t.wrapping_sub(1),
        };
        assert!(matches!(
            check(&reused, &sc),
            Err(Refused::PidReused { .. })
        ));
        let foreign = Resource::Process { pid, start_time: t };
        assert!(matches!(check(&foreign, &sc), Err(Refused::Foreign { .. })));
        for pid in [-1, 0, 1, std::process::id() as i32] {
            let res = Resource::Process { pid, start_time: 0 };
            assert!(check(&res, &sc).is_err(), "pid {pid}");
        }
        assert!(process_start_time(pid) == Some(t), "sleep was left alone");
        sleeper.kill().unwrap();
        sleeper.wait().unwrap();
        // Gone: nothing to do, nothing refused.
        assert!(check(&foreign, &sc).unwrap().gone);
    }

    #[test]
    fn cleanup_removes_what_the_run_made_and_refuses_the_rest() {
        let d = tempfile::tempdir().unwrap();
        let reg = d.path().join("reg");
        let root = d.path().join("virtmark-r2-abc");
        create_private_dir(&root).unwrap();
        std::fs::create_dir(root.join("native")).unwrap();
        let foreign = d.path().join("foreign");
        std::fs::create_dir(&foreign).unwrap();
        std::fs::write(foreign.join("keep"), "x").unwrap();
        let mut text = String::new();
        for res in [
            Resource::Dir { path: root.clone() },
            Resource::Dir {
                path: root.join("native"),
            },
            Resource::Dir {
                path: foreign.clone(),
            },
            Resource::Dir { path: "/".into() },
            Resource::Dir {
                path: root.join("../foreign"),
            },
        ] {
            text.push_str(&line(&res));
        }
        register_dead(&reg, &d.path().join("out/r2"), "r2", &root, &text);
        let r = cleanup_registry(&reg, false).unwrap();
        assert!(!root.exists(), "the run's scratch is removed");
        assert!(foreign.join("keep").exists(), "the foreign directory stays");
        assert_eq!(r.refused.len(), 3, "{:#?}", r.refused);
        assert!(r.problems.is_empty(), "{:#?}", r.problems);
        assert_eq!(r.ledgers.len(), 1);
    }

    #[test]
    fn a_killed_test_start_leaves_nothing_after_cleanup() {
        let d = tempfile::tempdir().unwrap();
        let reg = d.path().join("reg");
        // As `targets::verify` lays a test start out: its ledger in its own
        // directory, which is its scratch root too, named after its run.
        let root = d.path().join("virtmark-verify-qemu_tcg-ab12c-XyZ");
        create_private_dir(&root).unwrap();
        let scratch = root.join("scratch");
        std::fs::create_dir(&scratch).unwrap();
        std::fs::write(scratch.join("scratch.img"), b"disk").unwrap();
        let text = line(&Resource::Dir {
            path: scratch.clone(),
        });
        register_dead(&reg, &root, "verify-qemu_tcg-ab12c", &root, &text);
        let r = cleanup_registry(&reg, false).unwrap();
        assert!(r.refused.is_empty() && r.problems.is_empty(), "{r:#?}");
        assert!(!root.exists(), "the test start's directory is removed");
    }

    #[test]
    fn a_scratch_root_of_another_run_is_not_trusted() {
        let d = tempfile::tempdir().unwrap();
        let reg = d.path().join("reg");
        // The registration claims another run's scratch root.
        let other = d.path().join("virtmark-other-abc");
        create_private_dir(&other).unwrap();
        let text = line(&Resource::Dir {
            path: other.clone(),
        });
        register_dead(&reg, &d.path().join("out/r3"), "r3", &other, &text);
        let r = cleanup_registry(&reg, false).unwrap();
        assert!(other.exists());
        assert_eq!(r.refused.len(), 2, "{:#?}", r.refused);
    }

    #[test]
    fn registrations_and_ledgers_others_may_write_are_refused() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let reg = d.path().join("reg");
        let root = d.path().join("virtmark-r4-abc");
        create_private_dir(&root).unwrap();
        let text = line(&Resource::Dir { path: root.clone() });
        let ledger = register_dead(&reg, &d.path().join("out/r4"), "r4", &root, &text);
        std::fs::set_permissions(&ledger, std::fs::Permissions::from_mode(0o666)).unwrap();
        let r = cleanup_registry(&reg, false).unwrap();
        assert!(root.exists(), "a ledger others may write is not acted on");
        assert_eq!(r.refused.len(), 1, "{:#?}", r.refused);
        // The registration itself writable by others.
        std::fs::set_permissions(&ledger, std::fs::Permissions::from_mode(0o644)).unwrap();
        let regfile = reg.join("r4.json");
        std::fs::set_permissions(&regfile, std::fs::Permissions::from_mode(0o666)).unwrap();
        let r = cleanup_registry(&reg, false).unwrap();
        assert!(root.exists());
        assert!(r.refused[0].starts_with("registration"), "{:#?}", r.refused);
        // The registry directory writable by others: nothing in it is read.
        std::fs::set_permissions(&regfile, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::set_permissions(&reg, std::fs::Permissions::from_mode(0o777)).unwrap();
        let r = cleanup_registry(&reg, false).unwrap();
        assert!(root.exists());
        assert!(
            r.refused[0].starts_with("ledger registry"),
            "{:#?}",
            r.refused
        );
        // Trusted again: cleaned.
        std::fs::set_permissions(&reg, std::fs::Permissions::from_mode(0o700)).unwrap();
        let r = cleanup_registry(&reg, false).unwrap();
        assert!(!root.exists(), "{r:#?}");
    }

    #[test]
    fn private_dirs_refuse_existing_paths_and_links() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let p = unguessable(d.path(), "virtmark-x-");
        assert!(p
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("virtmark-x-"));
        assert_ne!(p, unguessable(d.path(), "virtmark-x-"));
        let names: std::collections::BTreeSet<String> = (0..1000)
            .map(|_| {
                let q = unguessable(d.path(), "");
                let n = q.file_name().unwrap().to_string_lossy().into_owned();
                assert!(n.len() == 12 && n.bytes().all(|b| b.is_ascii_alphanumeric()));
                n
            })
            .collect();
        assert_eq!(names.len(), 1000, "names repeat");
        create_private_dir(&p).unwrap();
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o700
        );
        assert!(create_private_dir(&p).is_err());
        let target = d.path().join("target");
        std::fs::create_dir(&target).unwrap();
        let link = d.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(create_private_dir(&link).is_err());
        // Files: a planted link is never followed.
        let victim = d.path().join("victim");
        std::fs::write(&victim, "keep").unwrap();
        let planted = d.path().join("planted");
        std::os::unix::fs::symlink(&victim, &planted).unwrap();
        assert!(create_private_file(&planted).is_err());
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
    }

    #[test]
    fn process_start_time_parses_names_with_spaces() {
        let me = std::process::id() as i32;
        assert!(process_start_time(me).is_some());
        assert_eq!(process_start_time(i32::MAX), None);
    }
}
