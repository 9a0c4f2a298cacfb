//! Deterministic, kernel-like file trees and ISO-like files that the peer serves for
//! the rsync workloads, generated in memory once per peer process and kept in a
//! small cache so that no client ever waits for generation inside its timing.
//!
//! Shape of a tree (after a Linux 2.6 source tree, 23,741 files / 294 MB in
//! Camargos et al.): about one directory per 17 files, nested up to 7 deep;
//! file sizes log-normal (median about 4 KiB, a long tail of files of hundreds of
//! KiB), scaled so that the total is exactly the requested byte count; 2% of the
//! files executable. Data is pseudo-random (incompressible, never zero).

use std::sync::{Arc, Mutex};

use super::{FRAME_DIR, FRAME_FILE};

/// What to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spec {
    /// A tree of `files` files holding `bytes` bytes in all.
    Tree {
        /// Number of files.
        files: u64,
        /// Total bytes.
        bytes: u64,
        /// Generator seed.
        seed: u64,
    },
    /// One file, `image.iso`.
    File {
        /// Its size.
        bytes: u64,
        /// Generator seed.
        seed: u64,
    },
}

/// One directory or file of a tree.
#[derive(Debug, Clone)]
pub struct Entry {
    /// [`FRAME_DIR`] or [`FRAME_FILE`].
    pub kind: u8,
    /// Relative path, `/`-separated.
    pub path: String,
    /// Permission bits.
    pub mode: u32,
    /// Offset of the data in the tree's buffer.
    offset: usize,
    /// Data length (0 for directories).
    len: usize,
    /// CRC-32 of the data.
    pub crc: u32,
}

/// A generated tree: entries in sending order (each directory before its contents)
/// and one buffer holding every file's data back to back.
#[derive(Debug)]
pub struct Tree {
    entries: Vec<Entry>,
    data: Vec<u8>,
    files: u64,
    dirs: u64,
}

impl Tree {
    /// Entries in sending order.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }
    /// The data of one entry.
    pub fn data(&self, e: &Entry) -> &[u8] {
        &self.data[e.offset..e.offset + e.len]
    }
    /// Number of files.
    pub fn files(&self) -> u64 {
        self.files
    }
    /// Number of directories.
    pub fn dirs(&self) -> u64 {
        self.dirs
    }
    /// Total data bytes.
    pub fn total_bytes(&self) -> u64 {
        self.data.len() as u64
    }
    /// Read one byte of every page of the data, so that sending it does not pay for
    /// pages the machine let go cold. On a guest of a nested hypervisor (kvm_pvm),
    /// reading 128 MiB left untouched for half a second took about 200 ms, against
    /// 9 ms right after a pass: without this, the sender's state, not the copy, would
    /// decide an rsync sample.
    pub fn warm(&self) -> u64 {
        self.data.iter().step_by(4096).fold(0u64, |acc, &b| {
            acc.wrapping_add(u64::from(std::hint::black_box(b)))
        })
    }
}

const TOP: &[&str] = &[
    "arch", "block", "crypto", "drivers", "fs", "include", "init", "ipc", "kernel", "lib", "mm",
    "net", "samples", "scripts", "security", "sound", "tools", "usr", "virt", "firmware",
];
const EXT: &[&str] = &["c", "c", "c", "h", "h", "S", "txt", "rst", "sh", "dts"];
const MAX_DEPTH: u32 = 7;

/// Generate `spec` (deterministic for a given spec).
pub fn generate(spec: Spec) -> Tree {
    match spec {
        Spec::File { bytes, seed } => {
            let mut rng = fastrand::Rng::with_seed(seed);
            let mut data = vec![0u8; bytes as usize];
            rng.fill(&mut data);
            let crc = crc32fast::hash(&data);
            Tree {
                entries: vec![Entry {
                    kind: FRAME_FILE,
                    path: "image.iso".into(),
                    mode: 0o644,
                    offset: 0,
                    len: data.len(),
                    crc,
                }],
                data,
                files: 1,
                dirs: 0,
            }
        }
        Spec::Tree { files, bytes, seed } => generate_tree(files as usize, bytes, seed),
    }
}

fn generate_tree(files: usize, bytes: u64, seed: u64) -> Tree {
    let mut rng = fastrand::Rng::with_seed(seed);
    // Directories: index 0 is the root (not sent); each new one hangs under an
    // earlier one, so parents always precede children.
    let ndirs = (files / 17).max(1);
    let mut dirs: Vec<(String, u32)> = vec![(String::new(), 0)];
    for i in 0..ndirs {
        // The first directories are the top-level ones, as in a kernel tree; the
        // rest hang under a random earlier directory that is not too deep.
        let (parent, name) = match TOP.get(i) {
            Some(top) => (0, top.to_string()),
            None => {
                let parent = loop {
                    let p = rng.usize(..dirs.len());
                    if dirs[p].1 < MAX_DEPTH {
                        break p;
                    }
                };
                (parent, format!("{}-{i}", TOP[rng.usize(..TOP.len())]))
            }
        };
        let path = if dirs[parent].0.is_empty() {
            name
        } else {
            format!("{}/{name}", dirs[parent].0)
        };
        let depth = dirs[parent].1 + 1;
        dirs.push((path, depth));
    }
    // File sizes: log-normal raw weights, then scaled to the exact total.
    let weights: Vec<f64> = (0..files)
        .map(|_| {
            // Box-Muller; 1 - f64() is in (0, 1].
            let u1 = 1.0 - rng.f64();
            let u2 = rng.f64();
            let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
            (8.3 + 1.4 * z).exp()
        })
        .collect();
    let sizes = scale_to_total(&weights, bytes);
    // Assign files to directories, then group them by directory.
    let mut placed: Vec<(usize, usize)> =
        (0..files).map(|f| (rng.usize(..dirs.len()), f)).collect();
    placed.sort_unstable();
    let mut data = vec![0u8; bytes as usize];
    rng.fill(&mut data);
    let mut entries = Vec::with_capacity(files + ndirs);
    let mut offsets = Vec::with_capacity(files);
    let mut off = 0usize;
    for &s in &sizes {
        offsets.push(off);
        off += s as usize;
    }
    let mut next = 0;
    for (d, (dpath, _)) in dirs.iter().enumerate() {
        if d > 0 {
            entries.push(Entry {
                kind: FRAME_DIR,
                path: dpath.clone(),
                mode: 0o755,
                offset: 0,
                len: 0,
                crc: 0,
            });
        }
        while next < placed.len() && placed[next].0 == d {
            let f = placed[next].1;
            next += 1;
            let name = format!("f{f}.{}", EXT[f % EXT.len()]);
            let path = if dpath.is_empty() {
                name
            } else {
                format!("{dpath}/{name}")
            };
            let (offset, len) = (offsets[f], sizes[f] as usize);
            entries.push(Entry {
                kind: FRAME_FILE,
                path,
                mode: if f % 50 == 7 { 0o755 } else { 0o644 },
                offset,
                len,
                crc: crc32fast::hash(&data[offset..offset + len]),
            });
        }
    }
    Tree {
        entries,
        data,
        files: files as u64,
        dirs: ndirs as u64,
    }
}

/// Integer sizes proportional to `weights` that add up to exactly `total`
/// (largest-remainder rounding).
pub fn scale_to_total(weights: &[f64], total: u64) -> Vec<u64> {
    if weights.is_empty() {
        return Vec::new();
    }
    let sum: f64 = weights.iter().sum();
    let exact: Vec<f64> = weights.iter().map(|w| w / sum * total as f64).collect();
    let mut sizes: Vec<u64> = exact.iter().map(|x| x.floor() as u64).collect();
    let assigned: u64 = sizes.iter().sum();
    let mut left = total.saturating_sub(assigned);
    let mut order: Vec<usize> = (0..weights.len()).collect();
    order.sort_by(|&a, &b| {
        let ra = exact[a] - exact[a].floor();
        let rb = exact[b] - exact[b].floor();
        rb.total_cmp(&ra)
    });
    let mut i = 0;
    while left > 0 {
        sizes[order[i % order.len()]] += 1;
        left -= 1;
        i += 1;
    }
    sizes
}

/// Most bytes the cache keeps (older entries are dropped beyond it).
const CACHE_BYTES: u64 = 1 << 30;

static CACHE: Mutex<Vec<(Spec, Arc<Tree>)>> = Mutex::new(Vec::new());

/// The tree for `spec`, generated on first use. Concurrent clients asking for the
/// same tree wait for one generation.
pub fn cached(spec: Spec) -> Arc<Tree> {
    let mut cache = match CACHE.lock() {
        Ok(c) => c,
        Err(poisoned) => poisoned.into_inner(),
    };
    if let Some(i) = cache.iter().position(|(s, _)| *s == spec) {
        let hit = cache.remove(i);
        let t = Arc::clone(&hit.1);
        cache.push(hit);
        return t;
    }
    let t = Arc::new(generate(spec));
    cache.push((spec, Arc::clone(&t)));
    while cache.len() > 1 && cache.iter().map(|(_, t)| t.total_bytes()).sum::<u64>() > CACHE_BYTES {
        cache.remove(0);
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scaling_hits_the_total_exactly() {
        assert_eq!(scale_to_total(&[1.0, 1.0, 2.0], 8), vec![2, 2, 4]);
        assert_eq!(scale_to_total(&[1.0, 1.0, 1.0], 10).iter().sum::<u64>(), 10);
        assert_eq!(scale_to_total(&[1.0, 3.0], 0), vec![0, 0]);
        assert!(scale_to_total(&[], 5).is_empty());
    }

    #[test]
    fn trees_are_deterministic_and_well_formed() {
        let spec = Spec::Tree {
            files: 500,
            bytes: 3_000_000,
            seed: 3,
        };
        let a = generate(spec);
        let b = generate(spec);
        assert_eq!(a.files(), 500);
        assert_eq!(a.total_bytes(), 3_000_000);
        let files: Vec<&Entry> = a
            .entries()
            .iter()
            .filter(|e| e.kind == FRAME_FILE)
            .collect();
        assert_eq!(files.len(), 500);
        assert_eq!(files.iter().map(|e| e.len as u64).sum::<u64>(), 3_000_000);
        for (x, y) in a.entries().iter().zip(b.entries()) {
            assert_eq!((&x.path, x.crc, x.len), (&y.path, y.crc, y.len));
        }
        // Every file's directory was sent before it.
        let mut seen = std::collections::HashSet::new();
        seen.insert(String::new());
        for e in a.entries() {
            let parent = e.path.rsplit_once('/').map(|(p, _)| p).unwrap_or("");
            assert!(seen.contains(parent), "{} before its directory", e.path);
            if e.kind == FRAME_DIR {
                seen.insert(e.path.clone());
            }
        }
        // Many small files and a tail of large ones.
        let mut sizes: Vec<usize> = files.iter().map(|e| e.len).collect();
        sizes.sort_unstable();
        assert!(sizes[sizes.len() / 2] < 6_000 * 2);
        assert!(sizes[sizes.len() - 1] > 10 * sizes[sizes.len() / 2]);
    }

    #[test]
    fn warming_reads_every_page() {
        let t = generate(Spec::File {
            bytes: 3 * 4096 + 1,
            seed: 7,
        });
        let want: u64 = [0, 4096, 8192, 12288]
            .iter()
            .map(|&i| u64::from(t.data[i]))
            .sum();
        assert_eq!(t.warm(), want);
    }

    #[test]
    fn file_spec_is_one_file_with_its_crc() {
        let t = generate(Spec::File {
            bytes: 1000,
            seed: 9,
        });
        assert_eq!(t.entries().len(), 1);
        let e = &t.entries()[0];
        assert_eq!(e.crc, crc32fast::hash(t.data(e)));
        assert!(t.data(e).iter().any(|&b| b != 0));
    }
}
