//! `build`: the timed kernel build (`make defconfig; make` of linux-2.6.22.14,
//! Camargos et al. 2008; White & Pilbeam's timed kernel compile).
//!
//! Setup (untimed) generates a kernel-shaped C tree in scratch: a large shared
//! header (type definitions, list helpers, many structures and inline functions that
//! every unit parses, as kernel headers are), one header per subsystem, and source
//! files spread over subsystem directories (`kernel`, `mm`, `fs/ext2`, `net/ipv4`,
//! `drivers/net`, ...) whose functions have loops, structures, lookup tables and
//! switch statements for the optimizer to work on. The build is kbuild-shaped:
//! a top-level Makefile runs a sub-make per directory (sharing make's job server),
//! each compiles its units with `cc -O2 -MD` and links them into `built-in.o` with
//! `cc -r`, and the top level links `vmlinux`.
//!
//! Timed: exactly `make -j<threads>` from a clean tree. Reported: wall time, and the
//! user and system CPU time of make and everything it ran (getrusage
//! `RUSAGE_CHILDREN` deltas; White & Pilbeam found the virtualization cost in the
//! system time). Afterwards (untimed) the program is run once and must print its
//! checksum line for every unit.
//!
//! Parameters: `files` (source files; quick default [`QUICK_FILES`], faithful
//! [`FAITHFUL_FILES`]), `threads` (make jobs; default the CPUs available).

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::resource::{getrusage, UsageWho};
use nix::sys::time::TimeVal;

use super::{Class, Ctx, IoContext, Metric, Outcome, Workload, WorkloadError};

/// Timed kernel-style build.
pub static BUILD: Workload = Workload {
    name: "build",
    stands_for: "kernel build, make defconfig; make (linux-2.6.22.14, Camargos et al.; White & Pilbeam)",
    class: Class::Application,
    metric: "time",
    unit: "s",
    higher_is_better: false,
    needs_peer: false,
    description: "builds a generated kernel-shaped C tree with make -j<cpus> and cc -O2: process creation, file system and compiler CPU",
    available,
    run: run_build,
};

/// Quick tree: about 2.5 s with `make -j2` on the 2-CPU development machine
/// (2.7–3.3 s with other builds running, against 4.0–4.9 s for 28 files).
pub const QUICK_FILES: u64 = 14;
/// About the number of C files `make defconfig; make` compiles in linux-2.6.22 on x86.
pub const FAITHFUL_FILES: u64 = 1800;
/// Subsystem directories the sources are spread over (`init` holds `main.c`).
const DIRS: &[&str] = &[
    "kernel",
    "mm",
    "fs",
    "fs/ext2",
    "net/core",
    "net/ipv4",
    "drivers/net",
    "drivers/block",
    "drivers/char",
    "lib",
    "arch/x86/kernel",
    "block",
    "ipc",
    "crypto",
    "security",
    "sound/core",
];
/// Functions generated per source file, besides its exported entry point.
const FUNCTIONS_PER_FILE: usize = 10;

/// The tools the build needs on `PATH`.
fn available() -> Result<(), String> {
    let missing: Vec<&str> = ["cc", "make"]
        .into_iter()
        .filter(|t| find_on_path(t).is_none())
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} not found on PATH (install a C compiler and make, e.g. Debian's build-essential)",
            missing.join(" and ")
        ))
    }
}

/// The first executable file called `name` in a `PATH` directory.
fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn tv_secs(t: TimeVal) -> f64 {
    t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6
}

fn children_cpu() -> Result<(f64, f64), WorkloadError> {
    let u = getrusage(UsageWho::RUSAGE_CHILDREN).map_err(|e| WorkloadError::Io {
        context: "getrusage(RUSAGE_CHILDREN)".into(),
        source: e.into(),
    })?;
    Ok((tv_secs(u.user_time()), tv_secs(u.system_time())))
}

/// Resolve build's parameters once for every target: the source files of the
/// preset, and `make -j` the CPUs each target gets (not the CPUs it happens to see).
pub(super) fn resolve(preset: super::Preset, p: &mut super::Params, host: &super::Host) {
    p.files.get_or_insert(match preset {
        super::Preset::Quick => QUICK_FILES,
        super::Preset::Faithful => FAITHFUL_FILES,
    });
    p.threads.get_or_insert(host.cpus.max(1) as u32);
}

fn run_build(ctx: &Ctx) -> Result<Outcome, WorkloadError> {
    available().map_err(WorkloadError::Unavailable)?;
    let files = ctx
        .params
        .files
        .unwrap_or_else(|| ctx.pick(QUICK_FILES, FAITHFUL_FILES));
    if files == 0 || files > 1_000_000 {
        return Err(WorkloadError::Param(format!(
            "files {files}: give between 1 and 1000000 source files"
        )));
    }
    let jobs = match ctx.params.threads {
        Some(0) => {
            return Err(WorkloadError::Param(
                "threads 0: give at least one job".into(),
            ))
        }
        Some(n) => n as usize,
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    let root = ctx.scratch.join("linux");
    (ctx.progress)(0.0, "generating source tree");
    let tree = tree::generate(&root, files as usize)
        .ctx(|| format!("generating the source tree in {}", root.display()))?;
    // The tree is written: the measured window starts here (the step's barrier).
    ctx.begin_measuring()?;

    let log_path = ctx.scratch.join("build.log");
    let log = fs::File::create(&log_path).ctx(|| format!("creating {}", log_path.display()))?;
    let log_err = log
        .try_clone()
        .ctx(|| format!("duplicating {}", log_path.display()))?;
    let mut cmd = Command::new("make");
    cmd.arg(format!("-j{jobs}"))
        .current_dir(&root)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        // A make above us must not hand its job server or flags down to this build.
        .env_remove("MAKEFLAGS")
        .env_remove("MFLAGS")
        .env_remove("MAKELEVEL")
        .env_remove("MAKEFILES")
        .env("LC_ALL", "C");

    (ctx.progress)(0.0, "building");
    let (user0, sys0) = children_cpu()?;
    let start = Instant::now();
    let status = cmd
        .status()
        .ctx(|| format!("running make -j{jobs} in {}", root.display()))?;
    let secs = start.elapsed().as_secs_f64();
    let (user1, sys1) = children_cpu()?;
    if !status.success() {
        return Err(WorkloadError::Failed(format!(
            "make -j{jobs} failed ({status}); end of {}:\n{}",
            log_path.display(),
            log_tail(&log_path)
        )));
    }
    (ctx.progress)(1.0, "checking the program");
    check_program(&root.join("vmlinux"), tree.units)?;

    Ok(Outcome {
        metrics: vec![
            Metric::lower("time", "s", secs),
            Metric::lower("user_time", "s", (user1 - user0).max(0.0)),
            Metric::lower("sys_time", "s", (sys1 - sys0).max(0.0)),
        ],
        notes: vec![
            format!(
                "{} C files ({} lines with headers) in {} directories, make -j{jobs}, cc -O2",
                tree.units,
                tree.lines,
                DIRS.len() + 1
            ),
            format!(
                "built and ran vmlinux; setup {:.2} s untimed",
                tree.elapsed.as_secs_f64()
            ),
        ],
    })
}

/// The last lines of the build log, for an error message.
fn log_tail(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// Run the built program once (untimed): it must exit successfully and report
/// every unit it linked.
fn check_program(exe: &Path, units: usize) -> Result<(), WorkloadError> {
    let out = Command::new(exe)
        .stdin(Stdio::null())
        .output()
        .ctx(|| format!("running {}", exe.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(WorkloadError::Failed(format!(
            "{} exited with {}: {}",
            exe.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let expected = format!("units {units} checksum ");
    let line = stdout.lines().next().unwrap_or("");
    let sum = line.strip_prefix(&expected).unwrap_or("");
    if sum.len() != 16 || !sum.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(WorkloadError::Failed(format!(
            "{} printed {line:?}, expected \"{expected}<16 hex digits>\"",
            exe.display()
        )));
    }
    Ok(())
}

/// The generated source tree.
pub(crate) mod tree {
    use super::*;

    /// What [`generate`] wrote.
    pub struct Tree {
        /// Source files compiled (including `init/main.c`).
        pub units: usize,
        /// Lines written, headers included.
        pub lines: usize,
        /// Time spent writing the tree.
        pub elapsed: Duration,
    }

    /// SplitMix64 (Steele et al. 2014): the tree is the same for the same size.
    pub(crate) struct Rng(pub u64);

    impl Rng {
        pub(crate) fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }
        pub(crate) fn below(&mut self, n: u64) -> u64 {
            ((self.next() as u128 * n as u128) >> 64) as u64
        }
        fn range(&mut self, lo: u64, hi: u64) -> u64 {
            lo + self.below(hi - lo + 1)
        }
        fn u32(&mut self) -> u32 {
            self.next() as u32
        }
    }

    /// A C identifier for a directory: `drivers/net` → `drivers_net`.
    pub(crate) fn tag(dir: &str) -> String {
        dir.replace('/', "_")
    }

    /// Which directory the `i`-th source file goes to.
    fn dir_of(i: usize) -> usize {
        i % DIRS.len()
    }

    fn write(path: &Path, text: &str, lines: &mut usize) -> std::io::Result<()> {
        *lines += text.lines().count();
        fs::write(path, text)
    }

    /// Write a tree of `files` source files (`init/main.c` included) under `root`.
    pub fn generate(root: &Path, files: usize) -> std::io::Result<Tree> {
        let start = Instant::now();
        let mut rng = Rng(0x6b65_726e_656c + files as u64);
        let mut lines = 0;
        let sources = files.saturating_sub(1).max(1);
        fs::create_dir_all(root.join("include/vm"))?;
        fs::create_dir_all(root.join("include/subsys"))?;
        fs::create_dir_all(root.join("scripts"))?;
        fs::create_dir_all(root.join("init"))?;
        write(
            &root.join("include/vm/kernel.h"),
            &common_header(&mut rng),
            &mut lines,
        )?;
        // Which files each directory holds.
        let mut per_dir: Vec<Vec<usize>> = vec![Vec::new(); DIRS.len()];
        for i in 0..sources {
            per_dir[dir_of(i)].push(i);
        }
        let used: Vec<usize> = (0..DIRS.len())
            .filter(|&d| !per_dir[d].is_empty())
            .collect();
        for &d in &used {
            let dir = DIRS[d];
            fs::create_dir_all(root.join(dir))?;
            write(
                &root.join(format!("include/subsys/{}.h", tag(dir))),
                &dir_header(dir, &per_dir[d], &mut rng),
                &mut lines,
            )?;
            let objs: Vec<String> = per_dir[d]
                .iter()
                .map(|i| format!("{}_{i}.o", base(dir)))
                .collect();
            write(
                &root.join(dir).join("Makefile"),
                &format!("obj-y := {}\n", objs.join(" ")),
                &mut lines,
            )?;
            for &i in &per_dir[d] {
                let other = DIRS[used[rng.below(used.len() as u64) as usize]];
                let text = source(dir, other, i, &mut rng);
                write(
                    &root.join(dir).join(format!("{}_{i}.c", base(dir))),
                    &text,
                    &mut lines,
                )?;
            }
        }
        write(&root.join("init/main.c"), &main_c(&per_dir), &mut lines)?;
        write(
            &root.join("scripts/Makefile.build"),
            MAKEFILE_BUILD,
            &mut lines,
        )?;
        let dirs: Vec<&str> = used.iter().map(|&d| DIRS[d]).collect();
        write(&root.join("Makefile"), &top_makefile(&dirs), &mut lines)?;
        Ok(Tree {
            units: sources + 1,
            lines,
            elapsed: start.elapsed(),
        })
    }

    /// Last path component, used in file names.
    fn base(dir: &str) -> &str {
        dir.rsplit('/').next().unwrap_or(dir)
    }

    const MAKEFILE_BUILD: &str = "\
# Per-directory build, run as: make -C <dir> -f scripts/Makefile.build (kbuild-like)
include Makefile

built-in.o: $(obj-y)
\t$(CC) -r -nostdlib -o $@ $^

%.o: %.c
\t$(CC) $(CFLAGS) -MD -c -o $@ $<

-include $(obj-y:.o=.d)
";

    fn top_makefile(dirs: &[&str]) -> String {
        let mut m = String::new();
        m.push_str("# Generated by virtmark: a kbuild-shaped tree (one sub-make per directory).\n");
        m.push_str("CC := cc\n");
        m.push_str("CFLAGS := -O2 -Wall -fno-strict-aliasing -fno-common -I$(CURDIR)/include\n");
        m.push_str("export CC CFLAGS\n\n");
        let _ = writeln!(m, "DIRS := {}", dirs.join(" "));
        m.push_str("OBJS := $(addsuffix /built-in.o,$(DIRS))\n\n");
        m.push_str(".PHONY: all $(DIRS)\nall: vmlinux\n\n");
        m.push_str("$(DIRS):\n\t$(MAKE) -C $@ -f $(CURDIR)/scripts/Makefile.build built-in.o\n\n");
        m.push_str("init/main.o: init/main.c\n\t$(CC) $(CFLAGS) -MD -c -o $@ $<\n\n");
        m.push_str("vmlinux: init/main.o $(DIRS)\n\t$(CC) -o $@ init/main.o $(OBJS)\n");
        m
    }

    /// The header every unit includes: basic types, list helpers, and many
    /// structures and inline functions, most of which a unit does not use (as with
    /// kernel headers, parsing them is part of every compile).
    fn common_header(rng: &mut Rng) -> String {
        let mut h = String::new();
        h.push_str(
            "#ifndef VM_KERNEL_H\n#define VM_KERNEL_H\n\n\
             #include <stddef.h>\n#include <stdint.h>\n\n\
             typedef uint8_t u8;\ntypedef uint16_t u16;\ntypedef uint32_t u32;\ntypedef uint64_t u64;\n\
             typedef int32_t s32;\ntypedef int64_t s64;\n\n\
             #define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))\n\
             #define min_t(t, a, b) ((t)(a) < (t)(b) ? (t)(a) : (t)(b))\n\
             #define max_t(t, a, b) ((t)(a) > (t)(b) ? (t)(a) : (t)(b))\n\
             #define container_of(p, type, member) ((type *)((char *)(p) - offsetof(type, member)))\n\
             #define likely(x) __builtin_expect(!!(x), 1)\n\
             #define unlikely(x) __builtin_expect(!!(x), 0)\n\n\
             struct list_head { struct list_head *next, *prev; };\n\n\
             static inline void INIT_LIST_HEAD(struct list_head *l) { l->next = l; l->prev = l; }\n\
             static inline void __list_add(struct list_head *n, struct list_head *prev, struct list_head *next)\n\
             {\n\tnext->prev = n;\n\tn->next = next;\n\tn->prev = prev;\n\tprev->next = n;\n}\n\
             static inline void list_add_tail(struct list_head *n, struct list_head *head)\n\
             {\n\t__list_add(n, head->prev, head);\n}\n\
             static inline void list_del(struct list_head *e)\n\
             {\n\te->next->prev = e->prev;\n\te->prev->next = e->next;\n\te->next = e;\n\te->prev = e;\n}\n\
             static inline int list_empty(const struct list_head *h) { return h->next == h; }\n\n\
             static inline u32 rol32(u32 w, unsigned s) { return (w << (s & 31)) | (w >> ((32 - s) & 31)); }\n\
             static inline u64 rol64(u64 w, unsigned s) { return (w << (s & 63)) | (w >> ((64 - s) & 63)); }\n\
             static inline u32 hash_32(u32 v, unsigned bits) { return (v * 0x61C88647u) >> (32 - bits); }\n\
             static inline u64 mix64(u64 z)\n{\n\tz = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;\n\
             \tz = (z ^ (z >> 27)) * 0x94d049bb133111ebull;\n\treturn z ^ (z >> 31);\n}\n\n",
        );
        // Many subsystem structures and helpers, like the kernel's shared headers.
        for s in 0..120 {
            let _ = writeln!(h, "struct vm_obj{s} {{");
            for f in 0..rng.range(4, 12) {
                let ty = ["u8", "u16", "u32", "u64", "s32", "s64"][rng.below(6) as usize];
                let _ = writeln!(h, "\t{ty} f{f};");
            }
            h.push_str("\tstruct list_head link;\n\tvoid *priv;\n};\n\n");
            let c = rng.u32() | 1;
            let _ = writeln!(
                h,
                "static inline u64 vm_obj{s}_key(const struct vm_obj{s} *o)\n{{\n\
                 \tu64 k = (u64)o->f0 * {c}u;\n\tk ^= (u64)o->f1 << {sh};\n\
                 \treturn list_empty(&o->link) ? k : mix64(k);\n}}\n",
                sh = rng.range(1, 31)
            );
            let _ = writeln!(
                h,
                "u64 vm_obj{s}_register(struct vm_obj{s} *o, u32 flags);\n\
                 void vm_obj{s}_release(struct vm_obj{s} *o);\n"
            );
        }
        h.push_str("#endif\n");
        h
    }

    fn dir_header(dir: &str, files: &[usize], rng: &mut Rng) -> String {
        let t = tag(dir);
        let up = t.to_ascii_uppercase();
        let mut h =
            format!("#ifndef SUBSYS_{up}_H\n#define SUBSYS_{up}_H\n\n#include <vm/kernel.h>\n\n");
        let _ = writeln!(
            h,
            "struct {t}_state {{\n\tu32 mode;\n\tu32 count;\n\tu64 acc;\n\tu16 hist[16];\n\tstruct list_head queue;\n}};\n"
        );
        let (a, b) = (rng.u32() | 1, rng.range(3, 29));
        let _ = writeln!(
            h,
            "static inline u64 {t}_fold(const struct {t}_state *s, u64 x)\n{{\n\
             \tu64 v = x ^ s->acc;\n\tfor (u32 i = 0; i < 16; i++)\n\
             \t\tv = rol64(v + s->hist[i] * {a}ull, {b});\n\treturn v ^ s->mode;\n}}\n"
        );
        for &i in files {
            let _ = writeln!(h, "u64 {t}_{i}_run(u64 seed);");
        }
        h.push_str("\n#endif\n");
        h
    }

    /// One source file: a file-local record type and table, `FUNCTIONS_PER_FILE`
    /// static functions drawn from several shapes, and the exported entry point.
    fn source(dir: &str, other: &str, i: usize, rng: &mut Rng) -> String {
        let t = tag(dir);
        let o = tag(other);
        let mut c = String::with_capacity(16 << 10);
        let _ = writeln!(
            c,
            "/* {dir}/{}_{i}.c: generated by virtmark */\n\
             #include <vm/kernel.h>\n#include <subsys/{t}.h>\n#include <subsys/{o}.h>\n\n\
             #define NR_ITEMS {}\n\n\
             struct item {{\n\tu32 key;\n\tu32 flags;\n\tu64 value;\n\tu16 hist[8];\n\tstruct list_head link;\n}};\n\n\
             static struct item items[NR_ITEMS];\nstatic struct {o}_state peer_state;\n",
            base(dir),
            rng.range(32, 96)
        );
        c.push_str("static const u32 table[64] = {\n");
        for _ in 0..8 {
            c.push('\t');
            for col in 0..8 {
                let _ = write!(c, "0x{:08x}u,", rng.u32());
                c.push(if col == 7 { '\n' } else { ' ' });
            }
        }
        c.push_str("};\n\n");
        // Functions: each takes and returns a u64 so the entry can chain them.
        let mut names = Vec::new();
        for f in 0..FUNCTIONS_PER_FILE {
            let name = format!("step{f}");
            let k1 = rng.u32() | 1;
            let k2 = rng.next() | 1;
            let s1 = rng.range(1, 31);
            let s2 = rng.range(1, 63);
            match rng.below(6) {
                0 => {
                    // Byte hash over a buffer (FNV-like).
                    let _ = writeln!(
                        c,
                        "static u64 {name}(u64 x)\n{{\n\tu8 buf[32];\n\tu32 h = 0x811c9dc5u ^ (u32)x;\n\
                         \tfor (u32 i = 0; i < sizeof(buf); i++)\n\t\tbuf[i] = (u8)(x >> ((i * {s1}u) & 63)) ^ (u8)table[i & 63];\n\
                         \tfor (u32 r = 0; r < 4; r++)\n\t\tfor (u32 i = 0; i < sizeof(buf); i++) {{\n\
                         \t\t\th ^= buf[i];\n\t\t\th *= 0x01000193u;\n\t\t\th = rol32(h, {s1});\n\t\t}}\n\
                         \treturn x ^ ((u64)h << 32) ^ h;\n}}\n"
                    );
                }
                1 => {
                    // State machine with a switch.
                    let _ = writeln!(
                        c,
                        "static u64 {name}(u64 x)\n{{\n\tu32 state = (u32)x & 7;\n\
                         \tfor (u32 n = 0; n < 24; n++) {{\n\t\tswitch (state) {{\n\
                         \t\tcase 0: x += 0x{k2:016x}ull; state = 3; break;\n\
                         \t\tcase 1: x ^= x >> {s2}; state = (u32)x & 7; break;\n\
                         \t\tcase 2: x *= 0x{k2:016x}ull; state = 5; break;\n\
                         \t\tcase 3: x = rol64(x, {s1}); state = 1; break;\n\
                         \t\tcase 4: x -= table[x & 63]; state = 6; break;\n\
                         \t\tcase 5: x ^= (u64)table[(x >> 7) & 63] << 17; state = 2 + (x & 1); break;\n\
                         \t\tcase 6: x = x * 5 + {k1}u; state = 0; break;\n\
                         \t\tdefault: x = ~x ^ {k1}u; state = 4; break;\n\t\t}}\n\t}}\n\treturn x;\n}}\n"
                    );
                }
                2 => {
                    // Fill and insertion-sort the record array.
                    let _ = writeln!(
                        c,
                        "static u64 {name}(u64 x)\n{{\n\tu64 sum = 0;\n\
                         \tfor (u32 i = 0; i < NR_ITEMS; i++) {{\n\t\tstruct item *it = &items[i];\n\
                         \t\tit->key = (u32)mix64(x + i) ^ table[i & 63];\n\t\tit->flags = i & 3;\n\
                         \t\tit->value = x * (i + 1u);\n\t\tfor (u32 j = 0; j < 8; j++)\n\
                         \t\t\tit->hist[j] = (u16)(it->key >> (j * 2));\n\t\tINIT_LIST_HEAD(&it->link);\n\t}}\n\
                         \tfor (u32 i = 1; i < NR_ITEMS; i++) {{\n\t\tstruct item tmp = items[i];\n\t\tu32 j = i;\n\
                         \t\twhile (j > 0 && items[j - 1].key > tmp.key) {{\n\t\t\titems[j] = items[j - 1];\n\t\t\tj--;\n\t\t}}\n\
                         \t\titems[j] = tmp;\n\t}}\n\
                         \tfor (u32 i = 0; i < NR_ITEMS; i++)\n\t\tsum = sum * {k1}u + items[i].key + items[i].hist[i & 7];\n\
                         \treturn x ^ sum;\n}}\n"
                    );
                }
                3 => {
                    // Linked-list building and walking through container_of.
                    let _ = writeln!(
                        c,
                        "static u64 {name}(u64 x)\n{{\n\tstruct list_head head;\n\tstruct list_head *p;\n\tu64 acc = x;\n\
                         \tINIT_LIST_HEAD(&head);\n\tfor (u32 i = 0; i < NR_ITEMS; i++) {{\n\
                         \t\titems[i].key = (u32)(x >> (i & 31)) + i * {k1}u;\n\t\titems[i].value = i;\n\
                         \t\tINIT_LIST_HEAD(&items[i].link);\n\t\tif (items[i].key & 1)\n\t\t\tlist_add_tail(&items[i].link, &head);\n\t}}\n\
                         \tfor (p = head.next; p != &head; p = p->next) {{\n\
                         \t\tstruct item *it = container_of(p, struct item, link);\n\
                         \t\tacc = rol64(acc ^ it->key, {s1}) + it->value;\n\t}}\n\
                         \twhile (!list_empty(&head))\n\t\tlist_del(head.next);\n\treturn acc;\n}}\n"
                    );
                }
                4 => {
                    // Bit manipulation over a small matrix.
                    let _ = writeln!(
                        c,
                        "static u64 {name}(u64 x)\n{{\n\tu32 m[8][8];\n\tu64 acc = 0;\n\
                         \tfor (u32 i = 0; i < 8; i++)\n\t\tfor (u32 j = 0; j < 8; j++)\n\
                         \t\t\tm[i][j] = table[(i * 8 + j) & 63] ^ (u32)(x >> (i + j));\n\
                         \tfor (u32 r = 0; r < 3; r++)\n\t\tfor (u32 i = 0; i < 8; i++)\n\t\t\tfor (u32 j = 0; j < 8; j++) {{\n\
                         \t\t\t\tu32 v = m[i][j];\n\t\t\t\tv = (v & 1) ? v * 3 + 1 : v >> 1;\n\
                         \t\t\t\tm[j][i] ^= rol32(v, {s1});\n\t\t\t\tacc += hash_32(v, 16);\n\t\t\t}}\n\
                         \treturn x + acc * 0x{k2:016x}ull;\n}}\n"
                    );
                }
                _ => {
                    // Uses the subsystem's and another subsystem's headers.
                    let _ = writeln!(
                        c,
                        "static u64 {name}(u64 x)\n{{\n\tstruct {t}_state own;\n\
                         \town.mode = (u32)x & 3;\n\town.count = 0;\n\town.acc = x;\n\
                         \tfor (u32 i = 0; i < 16; i++)\n\t\town.hist[i] = (u16)table[(x + i) & 63];\n\
                         \tINIT_LIST_HEAD(&own.queue);\n\
                         \tpeer_state.mode = own.mode ^ 1;\n\tpeer_state.acc = x * {k1}u;\n\
                         \tfor (u32 i = 0; i < 16; i++)\n\t\tpeer_state.hist[i] = own.hist[15 - i];\n\
                         \tINIT_LIST_HEAD(&peer_state.queue);\n\
                         \treturn {t}_fold(&own, x) ^ {o}_fold(&peer_state, x >> {s2});\n}}\n"
                    );
                }
            }
            names.push(name);
        }
        let _ = writeln!(c, "u64 {t}_{i}_run(u64 seed)\n{{\n\tu64 x = seed;");
        for name in &names {
            let _ = writeln!(c, "\tx = {name}(x);");
        }
        c.push_str("\treturn x ^ peer_state.acc;\n}\n");
        c
    }

    fn main_c(per_dir: &[Vec<usize>]) -> String {
        let mut c = String::from("/* init/main.c: generated by virtmark */\n#include <stdio.h>\n");
        for (d, files) in per_dir.iter().enumerate() {
            if !files.is_empty() {
                let _ = writeln!(c, "#include <subsys/{}.h>", tag(DIRS[d]));
            }
        }
        c.push_str("\nint main(void)\n{\n\tu64 sum = 0x2622u;\n\tunsigned units = 1;\n");
        for (d, files) in per_dir.iter().enumerate() {
            for &i in files {
                let _ = writeln!(
                    c,
                    "\tsum = mix64(sum ^ {}_{i}_run(sum));\n\tunits++;",
                    tag(DIRS[d])
                );
            }
        }
        c.push_str("\tprintf(\"units %u checksum %016llx\\n\", units, (unsigned long long)sum);\n\treturn 0;\n}\n");
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workloads::{testing::run_briefly, Params};

    #[test]
    fn tags_and_paths() {
        assert_eq!(tree::tag("drivers/net"), "drivers_net");
        assert_eq!(tree::tag("mm"), "mm");
        assert!(find_on_path("definitely-not-a-tool-virtmark").is_none());
    }

    #[test]
    fn tree_is_deterministic_and_complete() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let ta = tree::generate(a.path(), 20).unwrap();
        tree::generate(b.path(), 20).unwrap();
        assert_eq!(ta.units, 20);
        let main_a = fs::read_to_string(a.path().join("init/main.c")).unwrap();
        assert_eq!(
            main_a,
            fs::read_to_string(b.path().join("init/main.c")).unwrap()
        );
        assert_eq!(main_a.matches("_run(sum)").count(), 19);
        let src = fs::read_to_string(a.path().join("drivers/net/net_6.c")).unwrap();
        assert_eq!(
            src,
            fs::read_to_string(b.path().join("drivers/net/net_6.c")).unwrap()
        );
        assert!(src.contains("#include <subsys/drivers_net.h>"));
        assert!(a.path().join("Makefile").is_file());
        assert!(a.path().join("scripts/Makefile.build").is_file());
    }

    #[test]
    fn build_runs_briefly() {
        if let Err(why) = available() {
            eprintln!("skipping build_runs_briefly: {why}");
            return;
        }
        let params = Params {
            files: Some(6),
            ..Params::default()
        };
        let out = run_briefly(&BUILD, params, None);
        assert!(out.notes[0].starts_with("6 C files"), "{:?}", out.notes);
    }
}
