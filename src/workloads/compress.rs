//! `compress`: `bzip2 -9` of a 433 MB ISO image (Camargos et al. 2008).
//!
//! The input is a corpus generated in memory before the clock starts, deterministic
//! from a fixed seed, that compresses like a mix of real files: English-like prose
//! (Zipf-distributed words), server logs, machine code and already-compressed
//! segments. The timed region is exactly what `bzip2 -9 file` does: compress at
//! level 9 (900 kB blocks, default work factor) in one thread with the real libbz2
//! and write the `.bz2` file to the target's storage. The input is read from memory:
//! writing 433 MB to the disk first would make setup longer than the timed region,
//! and the study's ISO was page-cached by the preceding `dd` copy anyway.

use std::fs::File;
use std::io::Write;
use std::time::Instant;

use bzip2::write::BzEncoder;
use bzip2::Compression;

use super::{Class, Ctx, IoContext, Metric, Outcome, Workload, WorkloadError};

/// `bzip2 -9` of a large mixed-content file.
pub static COMPRESS: Workload = Workload {
    name: "compress",
    stands_for: "bzip2 -9 of a 433 MB ISO (Camargos et al.)",
    class: Class::Application,
    metric: "time",
    unit: "s",
    higher_is_better: false,
    needs_peer: false,
    description: "compresses a generated mixed-content corpus (text, logs, code, compressed data) with libbz2 at level 9 into a file: single-thread CPU and memory",
    available: super::always,
    run: run_compress,
};

/// Quick corpus size: one `bzip2 -9` of it takes about 0.2 s on the development
/// machine (libbz2 compresses this corpus at about 10 MB/s there), three of its
/// 900 kB blocks. It was 16 MiB (1.5 s) until 2026-12-01: on a host whose speed
/// moves for a second or two at a time, many short samples give a ratio a narrower
/// interval than a few long ones in the same time (see `QUICK_SHORT_DURATION`).
const QUICK_SIZE: u64 = 2 << 20;
/// The study's ISO image: 433 MB.
const FAITHFUL_SIZE: u64 = 433_000_000;
/// Seed of the corpus generator: every execution compresses the same bytes.
const SEED: u64 = 0x5eed_b21b_2008;
/// Bytes handed to the encoder per call (bzip2 itself reads 5000 bytes at a time;
/// larger calls only save calls into libbz2, which buffers a whole block anyway).
const CHUNK: usize = 64 << 10;

/// Resolve compress's corpus size once for every target.
pub(super) fn resolve(preset: super::Preset, p: &mut super::Params) {
    p.size.get_or_insert(crate::units::ByteSize(match preset {
        super::Preset::Quick => QUICK_SIZE,
        super::Preset::Faithful => FAITHFUL_SIZE,
    }));
}

fn run_compress(ctx: &Ctx) -> Result<Outcome, WorkloadError> {
    let size = ctx
        .params
        .size
        .map(|s| s.bytes())
        .unwrap_or_else(|| ctx.pick(QUICK_SIZE, FAITHFUL_SIZE));
    let size = usize::try_from(size)
        .map_err(|_| WorkloadError::Param(format!("size {size} B does not fit in memory")))?;
    (ctx.progress)(0.0, "generating corpus");
    let gen_start = Instant::now();
    let corpus = corpus::generate(size, SEED);
    let gen_s = gen_start.elapsed().as_secs_f64();
    // The corpus is made: the measured window starts here (the step's barrier).
    ctx.begin_measuring()?;

    let path = ctx.scratch.join("corpus.iso.bz2");
    (ctx.progress)(0.0, "compressing");
    let start = Instant::now();
    let file = File::create(&path).ctx(|| format!("creating {}", path.display()))?;
    let mut enc = BzEncoder::new(file, Compression::best());
    let chunks = corpus.len().div_ceil(CHUNK).max(1);
    for (i, chunk) in corpus.chunks(CHUNK).enumerate() {
        enc.write_all(chunk)
            .ctx(|| format!("writing {}", path.display()))?;
        if i % 64 == 0 {
            (ctx.progress)(i as f64 / chunks as f64, "compressing");
        }
    }
    let file = enc
        .finish()
        .ctx(|| format!("finishing {}", path.display()))?;
    // bzip2 closes the output without fsync; so do we.
    drop(file);
    let secs = start.elapsed().as_secs_f64();

    let out_bytes = std::fs::metadata(&path)
        .ctx(|| format!("reading the size of {}", path.display()))?
        .len();
    if out_bytes == 0 {
        return Err(WorkloadError::Failed(format!(
            "{} is empty after compression",
            path.display()
        )));
    }
    (ctx.progress)(1.0, "checking");
    verify(&path, &corpus)?;
    Ok(Outcome {
        metrics: vec![
            Metric::lower("time", "s", secs),
            Metric::higher("throughput", "MB/s", size as f64 / secs / 1e6),
            Metric::higher("ratio", "x", size as f64 / out_bytes as f64),
        ],
        notes: vec![
            format!("corpus {size} B generated in {gen_s:.2} s (seed {SEED:#x}), read from memory"),
            format!("libbz2 level 9, one thread, {out_bytes} B written to a file in scratch"),
            "checked: the file decompresses to the corpus (outside the timed region)".into(),
        ],
    })
}

/// Decompress the `.bz2` file at `path` and compare it with `corpus`, as `bzip2 -t`
/// followed by a comparison would: a compressor that wrote garbage, or a layer that
/// lost part of the file, fails the sample instead of flattering it.
fn verify(path: &std::path::Path, corpus: &[u8]) -> Result<(), WorkloadError> {
    use std::io::Read;
    let file = File::open(path).ctx(|| format!("opening {} to check it", path.display()))?;
    let mut dec = bzip2::read::BzDecoder::new(std::io::BufReader::with_capacity(CHUNK, file));
    let mut buf = vec![0u8; CHUNK];
    let mut at = 0usize;
    loop {
        let n = dec
            .read(&mut buf)
            .ctx(|| format!("decompressing {} to check it", path.display()))?;
        if n == 0 {
            break;
        }
        let expected = corpus.get(at..at + n);
        if expected != Some(&buf[..n]) {
            return Err(WorkloadError::Failed(format!(
                "{} does not decompress to the corpus: it differs within bytes {at}..{}",
                path.display(),
                at + n
            )));
        }
        at += n;
    }
    if at != corpus.len() {
        return Err(WorkloadError::Failed(format!(
            "{} decompresses to {at} B, the corpus has {} B",
            path.display(),
            corpus.len()
        )));
    }
    Ok(())
}

/// The generated input: deterministic, fast to make, compressing like real files.
pub(crate) mod corpus {
    /// Small, fast, deterministic generator (SplitMix64, Steele et al. 2014).
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }
        /// Uniform in `0..n` (`n` > 0), by multiply-shift.
        fn below(&mut self, n: u64) -> u64 {
            ((self.next() as u128 * n as u128) >> 64) as u64
        }
        fn range(&mut self, lo: u64, hi: u64) -> u64 {
            lo + self.below(hi - lo + 1)
        }
    }

    /// Most common English words, most frequent first: the head of the Zipf list.
    const COMMON: &[&str] = &[
        "the",
        "of",
        "and",
        "to",
        "a",
        "in",
        "is",
        "that",
        "for",
        "it",
        "as",
        "was",
        "with",
        "be",
        "by",
        "on",
        "not",
        "he",
        "this",
        "are",
        "or",
        "his",
        "from",
        "at",
        "which",
        "but",
        "have",
        "an",
        "had",
        "they",
        "you",
        "were",
        "their",
        "one",
        "all",
        "we",
        "can",
        "her",
        "has",
        "there",
        "been",
        "if",
        "more",
        "when",
        "will",
        "would",
        "who",
        "so",
        "no",
        "she",
        "other",
        "its",
        "may",
        "these",
        "what",
        "them",
        "than",
        "some",
        "him",
        "time",
        "into",
        "only",
        "do",
        "could",
        "new",
        "about",
        "two",
        "then",
        "my",
        "first",
        "any",
        "like",
        "our",
        "over",
        "such",
        "me",
        "out",
        "should",
        "made",
        "system",
        "between",
        "after",
        "each",
        "most",
        "also",
        "did",
        "many",
        "before",
        "must",
        "through",
        "years",
        "where",
        "much",
        "your",
        "way",
        "well",
        "down",
        "work",
        "used",
        "because",
        "very",
        "same",
        "server",
        "state",
        "memory",
        "people",
        "under",
        "world",
        "number",
        "file",
        "data",
        "process",
        "still",
        "found",
        "even",
        "long",
        "here",
        "both",
        "life",
        "those",
        "great",
        "without",
        "another",
        "while",
        "kernel",
        "machine",
        "during",
        "however",
        "might",
        "since",
        "small",
        "large",
        "against",
        "performance",
        "network",
        "virtual",
        "guest",
        "host",
        "disk",
        "page",
        "device",
        "driver",
        "thread",
        "value",
        "result",
        "table",
        "level",
        "case",
        "point",
        "group",
        "problem",
        "fact",
        "place",
        "part",
        "general",
        "order",
        "given",
        "number",
        "means",
        "within",
        "several",
        "different",
        "possible",
        "public",
        "second",
        "early",
        "little",
    ];
    /// Syllables for the long tail of rarer words.
    const SYLLABLES: &[&str] = &[
        "al", "an", "ar", "at", "ble", "ca", "con", "de", "di", "en", "er", "es", "ex", "for",
        "ic", "in", "ing", "ion", "is", "it", "la", "le", "li", "ma", "men", "ment", "mi", "na",
        "ne", "ness", "ni", "no", "or", "per", "pro", "ra", "re", "ri", "ro", "sa", "se", "si",
        "sta", "ta", "te", "ter", "ti", "tion", "to", "tra", "tu", "un", "ver", "vi", "ly", "ous",
        "ture", "com", "dis", "ful",
    ];
    /// Distinct words in the vocabulary (English prose uses a few thousand often).
    const VOCABULARY: usize = 6000;
    /// Resolution of the quantized Zipf table.
    const ZIPF_SLOTS: usize = 1 << 16;

    struct Text {
        words: Vec<Vec<u8>>,
        /// `zipf[u]` is the rank drawn for a uniform 16-bit `u`.
        zipf: Vec<u16>,
        column: usize,
        previous: u64,
        sentence_left: u64,
        paragraph_left: u64,
    }

    impl Text {
        fn new(rng: &mut Rng) -> Text {
            let mut words: Vec<Vec<u8>> = COMMON.iter().map(|w| w.as_bytes().to_vec()).collect();
            while words.len() < VOCABULARY {
                let mut w = Vec::new();
                for _ in 0..rng.range(2, 4) {
                    w.extend_from_slice(
                        SYLLABLES[rng.below(SYLLABLES.len() as u64) as usize].as_bytes(),
                    );
                }
                words.push(w);
            }
            // Zipf's law with exponent 1: p(rank r) ∝ 1 / (r + 1).
            let h: f64 = (1..=VOCABULARY).map(|r| 1.0 / r as f64).sum();
            let mut zipf = Vec::with_capacity(ZIPF_SLOTS);
            let mut cumulative = 0.0;
            for rank in 0..VOCABULARY {
                cumulative += 1.0 / ((rank + 1) as f64 * h);
                let upto = ((cumulative * ZIPF_SLOTS as f64).round() as usize).min(ZIPF_SLOTS);
                while zipf.len() < upto {
                    zipf.push(rank as u16);
                }
            }
            zipf.resize(ZIPF_SLOTS, (VOCABULARY - 1) as u16);
            Text {
                words,
                zipf,
                column: 0,
                previous: 0,
                sentence_left: 0,
                paragraph_left: 0,
            }
        }

        /// Append prose until `out` holds `end` bytes, wrapped at 72 columns.
        fn fill(&mut self, rng: &mut Rng, out: &mut Vec<u8>, end: usize) {
            while out.len() < end {
                let r = rng.next();
                // A third of the words follow from the previous one (one of four
                // fixed successors among the 200 most common words), like the
                // recurring phrases of real prose; the rest are drawn by Zipf's law.
                let rank = if (r >> 40) % 3 == 0 {
                    (self.previous.wrapping_mul(2_654_435_761) + ((r >> 44) & 3)) % 200
                } else {
                    u64::from(self.zipf[(r & 0xffff) as usize])
                };
                self.previous = rank;
                let word = &self.words[rank as usize];
                if self.column + word.len() >= 72 {
                    out.push(b'\n');
                    self.column = 0;
                } else if self.column > 0 {
                    out.push(b' ');
                    self.column += 1;
                }
                let start = out.len();
                out.extend_from_slice(word);
                self.column += word.len();
                if self.sentence_left == 0 {
                    out[start] = out[start].to_ascii_uppercase();
                    self.sentence_left = 4 + (r >> 16) % 20;
                }
                self.sentence_left -= 1;
                if self.sentence_left == 0 {
                    out.push(b'.');
                    self.column += 1;
                    if self.paragraph_left == 0 {
                        self.paragraph_left = 3 + (r >> 24) % 6;
                    }
                    self.paragraph_left -= 1;
                    if self.paragraph_left == 0 {
                        out.extend_from_slice(b"\n\n");
                        self.column = 0;
                    }
                } else if (r >> 32) % 12 == 0 {
                    out.push(b',');
                    self.column += 1;
                }
            }
        }
    }

    fn push_num(out: &mut Vec<u8>, mut n: u64, width: usize) {
        let mut digits = [b'0'; 20];
        let mut i = digits.len();
        loop {
            i -= 1;
            digits[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        let len = digits.len() - i;
        for _ in len..width {
            out.push(b'0');
        }
        out.extend_from_slice(&digits[i..]);
    }

    /// Days since 1970-01-01 to (year, month, day), proleptic Gregorian
    /// (H. Hinnant, "chrono-compatible low-level date algorithms", `civil_from_days`).
    pub(crate) fn civil_from_days(z: i64) -> (i64, u32, u32) {
        let z = z + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let y = yoe + era * 400 + i64::from(m <= 2);
        (y, m, d)
    }

    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    const PATHS: &[&str] = &[
        "/",
        "/index.html",
        "/static/css/site.css",
        "/static/js/app.js",
        "/api/v1/items",
        "/api/v1/users",
        "/images/logo.png",
        "/search",
        "/login",
        "/feed.xml",
    ];
    const AGENTS: &[&str] = &[
        "Mozilla/5.0 (X11; Linux x86_64; rv:115.0) Gecko/20100101 Firefox/115.0",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko)",
        "curl/7.88.1",
        "Wget/1.21.3",
    ];
    const DAEMONS: &[(&str, &str)] = &[
        ("sshd", "Accepted publickey for deploy from"),
        ("sshd", "Connection closed by"),
        (
            "CRON",
            "pam_unix(cron:session): session opened for user root by",
        ),
        ("kernel", "IN=eth0 OUT= MAC=52:54:00:12:34:56 SRC="),
        ("postfix/smtpd", "connect from unknown"),
    ];
    /// IPv4 documentation ranges (RFC 5737): never a real host.
    const NETS: &[&str] = &["192.0.2.", "198.51.100.", "203.0.113."];

    struct Logs {
        /// Milliseconds since the epoch.
        clock_ms: u64,
    }

    impl Logs {
        fn ip(rng: &mut Rng, out: &mut Vec<u8>) {
            out.extend_from_slice(NETS[rng.below(NETS.len() as u64) as usize].as_bytes());
            push_num(out, rng.range(1, 254), 0);
        }

        fn fill(&mut self, rng: &mut Rng, out: &mut Vec<u8>, end: usize) {
            while out.len() < end {
                self.clock_ms += rng.below(1500);
                let secs = self.clock_ms / 1000;
                let (y, mo, d) = civil_from_days((secs / 86_400) as i64);
                let sod = secs % 86_400;
                if rng.below(2) == 0 {
                    // Web server access log (combined format).
                    Self::ip(rng, out);
                    out.extend_from_slice(b" - - [");
                    push_num(out, u64::from(d), 2);
                    out.push(b'/');
                    out.extend_from_slice(MONTHS[mo as usize - 1].as_bytes());
                    out.push(b'/');
                    push_num(out, y as u64, 4);
                    out.push(b':');
                    push_num(out, sod / 3600, 2);
                    out.push(b':');
                    push_num(out, sod / 60 % 60, 2);
                    out.push(b':');
                    push_num(out, sod % 60, 2);
                    out.extend_from_slice(b" +0000] \"GET ");
                    out.extend_from_slice(PATHS[rng.below(PATHS.len() as u64) as usize].as_bytes());
                    if rng.below(3) == 0 {
                        out.extend_from_slice(b"?id=");
                        push_num(out, rng.below(100_000), 0);
                    }
                    out.extend_from_slice(b" HTTP/1.1\" ");
                    let status = [200, 200, 200, 200, 304, 404, 301, 500];
                    push_num(out, status[rng.below(status.len() as u64) as usize], 0);
                    out.push(b' ');
                    push_num(out, rng.below(60_000), 0);
                    out.extend_from_slice(b" \"-\" \"");
                    out.extend_from_slice(
                        AGENTS[rng.below(AGENTS.len() as u64) as usize].as_bytes(),
                    );
                    out.extend_from_slice(b"\"\n");
                } else {
                    // Syslog in ISO 8601.
                    push_num(out, y as u64, 4);
                    out.push(b'-');
                    push_num(out, u64::from(mo), 2);
                    out.push(b'-');
                    push_num(out, u64::from(d), 2);
                    out.push(b'T');
                    push_num(out, sod / 3600, 2);
                    out.push(b':');
                    push_num(out, sod / 60 % 60, 2);
                    out.push(b':');
                    push_num(out, sod % 60, 2);
                    out.push(b'.');
                    push_num(out, self.clock_ms % 1000, 3);
                    out.extend_from_slice(b"Z web-");
                    push_num(out, rng.range(1, 12), 2);
                    out.push(b' ');
                    let (daemon, text) = DAEMONS[rng.below(DAEMONS.len() as u64) as usize];
                    out.extend_from_slice(daemon.as_bytes());
                    out.push(b'[');
                    push_num(out, rng.range(300, 65_000), 0);
                    out.extend_from_slice(b"]: ");
                    out.extend_from_slice(text.as_bytes());
                    out.push(b' ');
                    Self::ip(rng, out);
                    out.extend_from_slice(b" port ");
                    push_num(out, rng.range(1024, 65_535), 0);
                    out.push(b'\n');
                }
            }
        }
    }

    /// Append x86-64-like machine code: functions of common instruction shapes with
    /// random registers, displacements and call targets, padded to 16 bytes.
    fn code(rng: &mut Rng, out: &mut Vec<u8>, end: usize) {
        while out.len() < end {
            out.extend_from_slice(&[0x55, 0x48, 0x89, 0xe5]); // push rbp; mov rbp, rsp
            for _ in 0..rng.range(4, 40) {
                let r = rng.next();
                let modrm = 0x40 | ((r >> 8) as u8 & 0x3f);
                let disp = (r >> 16) as u8 & 0xf8;
                match r % 8 {
                    0 => out.extend_from_slice(&[0x48, 0x8b, modrm, disp]), // mov r64, [r+d8]
                    1 => out.extend_from_slice(&[0x48, 0x89, modrm, disp]), // mov [r+d8], r64
                    2 => {
                        out.push(0xe8); // call rel32
                        out.extend_from_slice(&((r >> 32) as u32 & 0x000f_fff0).to_le_bytes());
                    }
                    3 => out.extend_from_slice(&[0x48, 0x83, 0xc0 | (modrm & 7), disp >> 3]), // add r64, imm8
                    4 => out.extend_from_slice(&[0x85, 0xc0 | (modrm & 0x3f)]), // test
                    5 => out.extend_from_slice(&[0x74 + (modrm & 1), disp >> 2]), // je/jne rel8
                    6 => out.extend_from_slice(&[0x8b, modrm, disp]),           // mov r32, [r+d8]
                    _ => out.extend_from_slice(&[0x31, 0xc0 | (modrm & 0x3f)]), // xor r32, r32
                }
            }
            out.extend_from_slice(&[0x5d, 0xc3]); // pop rbp; ret
            while out.len() % 16 != 0 {
                out.push(0xcc);
            }
        }
    }

    /// Append bytes that look already compressed (uniformly random).
    fn noise(rng: &mut Rng, out: &mut Vec<u8>, end: usize) {
        while out.len() + 8 <= end {
            out.extend_from_slice(&rng.next().to_le_bytes());
        }
        while out.len() < end {
            out.push(rng.next() as u8);
        }
    }

    /// Append a table of little-endian records (ids, offsets, small counters), like
    /// the data sections and file-system metadata of an image.
    fn records(rng: &mut Rng, out: &mut Vec<u8>, end: usize) {
        let mut id = rng.below(1 << 20) as u32;
        let mut offset = rng.below(1 << 30) as u32;
        while out.len() < end {
            let r = rng.next();
            id = id.wrapping_add(1);
            offset = offset.wrapping_add(((r & 7) as u32 + 1) << 9);
            out.extend_from_slice(&id.to_le_bytes());
            out.extend_from_slice(&offset.to_le_bytes());
            let kind = [0x81a4u16, 0x81a4, 0x81ed, 0x41ed][(r >> 8) as usize & 3];
            out.extend_from_slice(&kind.to_le_bytes());
            out.extend_from_slice(&((r >> 16) as u16 % 64).to_le_bytes());
        }
    }

    /// `size` bytes of mixed content, the same for the same `seed`. Segments of
    /// 16–256 KiB are drawn with these shares of the total: prose 50%, logs 22%,
    /// machine code 12%, already-compressed data 6%, binary records 10%.
    pub fn generate(size: usize, seed: u64) -> Vec<u8> {
        let mut rng = Rng(seed);
        let mut text = Text::new(&mut rng);
        let mut logs = Logs {
            // 2023-11-14T22:13:20Z
            clock_ms: 1_700_000_000_000,
        };
        let mut out = Vec::with_capacity(size + 1024);
        while out.len() < size {
            let end = (out.len() + rng.range(16 << 10, 256 << 10) as usize).min(size);
            match rng.below(100) {
                0..=49 => text.fill(&mut rng, &mut out, end),
                50..=71 => logs.fill(&mut rng, &mut out, end),
                72..=83 => code(&mut rng, &mut out, end),
                84..=89 => noise(&mut rng, &mut out, end),
                _ => records(&mut rng, &mut out, end),
            }
        }
        out.truncate(size);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::units::ByteSize;
    use crate::workloads::{testing::run_briefly, Params};
    use std::io::Read;

    #[test]
    fn civil_from_days_matches_known_dates() {
        assert_eq!(corpus::civil_from_days(0), (1970, 1, 1));
        // 2000-03-01 is day 11017; 2023-11-14 is day 19675.
        assert_eq!(corpus::civil_from_days(11_017), (2000, 3, 1));
        assert_eq!(corpus::civil_from_days(19_675), (2023, 11, 14));
        assert_eq!(corpus::civil_from_days(-1), (1969, 12, 31));
    }

    #[test]
    fn corpus_is_deterministic_sized_and_mixed() {
        let a = corpus::generate(1 << 20, 7);
        let b = corpus::generate(1 << 20, 7);
        assert_eq!(a.len(), 1 << 20);
        assert_eq!(a, b);
        assert_ne!(a, corpus::generate(1 << 20, 8));
        let zeros = a.iter().filter(|&&b| b == 0).count();
        assert!(zeros < a.len() / 10, "{zeros} zero bytes");
        let text = a.windows(5).filter(|w| w == b" the ").count();
        assert!(text > 100, "only {text} occurrences of \" the \"");
    }

    #[test]
    fn corpus_round_trips_through_bzip2_and_compresses_like_real_files() {
        let data = corpus::generate(2 << 20, SEED);
        let mut enc = BzEncoder::new(Vec::new(), Compression::best());
        enc.write_all(&data).unwrap();
        let packed = enc.finish().unwrap();
        let ratio = data.len() as f64 / packed.len() as f64;
        assert!((2.8..4.5).contains(&ratio), "ratio {ratio:.2}");
        let mut back = Vec::new();
        bzip2::read::BzDecoder::new(&packed[..])
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, data);
    }

    /// Writes the corpus to `$VIRTMARK_DUMP_CORPUS` (size `$VIRTMARK_DUMP_SIZE` bytes,
    /// default the quick size) so `scripts/bench-peers.d/compress.sh` can time the
    /// `bzip2` tool on exactly the bytes the workload compresses.
    #[test]
    #[ignore = "run by scripts/bench-peers.d/compress.sh"]
    fn dump_corpus() {
        let Some(path) = std::env::var_os("VIRTMARK_DUMP_CORPUS") else {
            eprintln!("VIRTMARK_DUMP_CORPUS is not set: nothing to write");
            return;
        };
        let size = std::env::var("VIRTMARK_DUMP_SIZE")
            .ok()
            .map(|s| s.parse().expect("VIRTMARK_DUMP_SIZE: a number of bytes"))
            .unwrap_or(QUICK_SIZE as usize);
        std::fs::write(path, corpus::generate(size, SEED)).expect("writing the corpus");
    }

    #[test]
    fn compress_runs_briefly() {
        let params = Params {
            size: Some(ByteSize::kib(256)),
            ..Params::default()
        };
        let out = run_briefly(&COMPRESS, params, None);
        let ratio = out.metrics.iter().find(|m| m.name == "ratio").unwrap();
        assert!(ratio.value > 1.5, "ratio {}", ratio.value);
    }
}
