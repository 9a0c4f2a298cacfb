//! The integer kernels of BYTEmark (nbench): numeric sort, string sort, bitfield,
//! IDEA cipher, Huffman compression and the assignment problem.

use std::hint::black_box;
use std::time::{Duration, Instant};

use super::{check_failed, Bench, Kernel, Rng};
use crate::workloads::WorkloadError;

/// The integer index, in nbench's order.
pub(crate) static KERNELS: &[Kernel] = &[
    Kernel {
        name: "numeric_sort",
        reference: 24.0,
        iteration: "a heap sort of 8111 i32",
        setup: NumSort::boxed,
    },
    Kernel {
        name: "string_sort",
        reference: 12.0,
        iteration: "a heap sort of 4000 strings of 4-80 bytes, then gathering them in order",
        setup: StrSort::boxed,
    },
    Kernel {
        name: "bitfield",
        reference: 27.0,
        iteration: "1000 bit-by-bit runs (clear, set, toggle) of 1-1024 bits over a 512 Kibit map",
        setup: Bitfield::boxed,
    },
    Kernel {
        name: "idea",
        reference: 44.0,
        iteration: "IDEA encryption and decryption of 16 KiB",
        setup: Idea::boxed,
    },
    Kernel {
        name: "huffman",
        reference: 55.0,
        iteration: "building the Huffman code of 16 KiB of text, compressing and expanding it",
        setup: Huffman::boxed,
    },
    Kernel {
        name: "assignment",
        reference: 70.0,
        iteration: "solving a 101x101 assignment problem (Hungarian method)",
        setup: Assignment::boxed,
    },
];

// ---------------------------------------------------------------------------
// Numeric sort

/// nbench's array size.
const NUMSORT_LEN: usize = 8111;

struct NumSort {
    pristine: Vec<i32>,
    work: Vec<i32>,
    sum: i64,
}

impl NumSort {
    fn boxed() -> Box<dyn Bench> {
        let mut rng = Rng::new(13);
        let pristine: Vec<i32> = (0..NUMSORT_LEN).map(|_| rng.next_u64() as i32).collect();
        let sum = pristine.iter().map(|&x| x as i64).sum();
        Box::new(NumSort {
            work: pristine.clone(),
            pristine,
            sum,
        })
    }
}

impl Bench for NumSort {
    fn iteration(&mut self) -> Result<Duration, WorkloadError> {
        self.work.copy_from_slice(&self.pristine);
        let t0 = Instant::now();
        heap_sort(black_box(&mut self.work[..]), |a, b| a < b);
        let t = t0.elapsed();
        let sorted = self.work.windows(2).all(|w| w[0] <= w[1]);
        let sum: i64 = self.work.iter().map(|&x| x as i64).sum();
        if !sorted || sum != self.sum {
            return Err(check_failed(
                "numeric_sort",
                format!("sorted={sorted}, checksum {sum} (expected {})", self.sum),
            ));
        }
        Ok(t)
    }
}

/// Heap sort as nbench writes it: build a max-heap, then repeatedly move the top to
/// the end and sift the new top down.
fn heap_sort<T: Copy>(v: &mut [T], less: impl Fn(&T, &T) -> bool) {
    let n = v.len();
    if n < 2 {
        return;
    }
    for top in (0..n / 2).rev() {
        sift_down(v, top, n, &less);
    }
    for end in (1..n).rev() {
        v.swap(0, end);
        sift_down(v, 0, end, &less);
    }
}

fn sift_down<T: Copy>(v: &mut [T], mut i: usize, n: usize, less: &impl Fn(&T, &T) -> bool) {
    let v = &mut v[..n];
    let x = v[i];
    loop {
        let mut child = 2 * i + 1;
        if child >= n {
            break;
        }
        if child + 1 < n && less(&v[child], &v[child + 1]) {
            child += 1;
        }
        if !less(&x, &v[child]) {
            break;
        }
        v[i] = v[child];
        i = child;
    }
    v[i] = x;
}

// ---------------------------------------------------------------------------
// String sort

const STRSORT_COUNT: usize = 4000;

/// Position of one string in the pool.
#[derive(Clone, Copy)]
struct Span {
    start: u32,
    len: u8,
}

struct StrSort {
    pool: Vec<u8>,
    pristine: Vec<Span>,
    spans: Vec<Span>,
    out: Vec<u8>,
    byte_sum: u64,
}

impl StrSort {
    fn boxed() -> Box<dyn Bench> {
        let mut rng = Rng::new(17);
        let mut pool = Vec::new();
        let mut pristine = Vec::with_capacity(STRSORT_COUNT);
        for _ in 0..STRSORT_COUNT {
            let len = 4 + rng.below(77) as usize;
            let start = pool.len() as u32;
            // Letters, so that equal prefixes (and longer comparisons) happen.
            pool.extend((0..len).map(|_| b'a' + rng.below(4) as u8));
            pristine.push(Span {
                start,
                len: len as u8,
            });
        }
        let byte_sum = pool.iter().map(|&b| b as u64).sum();
        Box::new(StrSort {
            out: Vec::with_capacity(pool.len()),
            spans: pristine.clone(),
            pool,
            pristine,
            byte_sum,
        })
    }
}

impl Bench for StrSort {
    fn iteration(&mut self) -> Result<Duration, WorkloadError> {
        self.spans.copy_from_slice(&self.pristine);
        self.out.clear();
        let pool = black_box(&self.pool[..]);
        let s = |x: &Span| &pool[x.start as usize..x.start as usize + x.len as usize];
        let t0 = Instant::now();
        heap_sort(&mut self.spans, |a, b| s(a) < s(b));
        for x in &self.spans {
            self.out.extend_from_slice(s(x));
        }
        let t = t0.elapsed();
        black_box(&self.out);
        let sorted = self.spans.windows(2).all(|w| s(&w[0]) <= s(&w[1]));
        let mut pos = 0;
        let mut gathered = true;
        for x in &self.spans {
            let len = x.len as usize;
            gathered &= self.out.get(pos..pos + len) == Some(s(x));
            pos += len;
        }
        let sum: u64 = self.out.iter().map(|&b| b as u64).sum();
        if !sorted || !gathered || pos != self.out.len() || sum != self.byte_sum {
            return Err(check_failed(
                "string_sort",
                format!(
                    "sorted={sorted}, gathered={gathered}, byte sum {sum} (expected {})",
                    self.byte_sum
                ),
            ));
        }
        Ok(t)
    }
}

// ---------------------------------------------------------------------------
// Bitfield

const BITFIELD_WORDS: usize = 8192;
const BITFIELD_BITS: usize = BITFIELD_WORDS * 64;
const BITFIELD_OPS: usize = 1000;

/// One operation: 0 clear, 1 set, 2 toggle a run of `len` bits from `start`.
#[derive(Clone, Copy)]
struct BitOp {
    kind: u8,
    start: usize,
    len: usize,
}

struct Bitfield {
    initial: Vec<u64>,
    map: Vec<u64>,
    ops: Vec<BitOp>,
    expected: Vec<u64>,
}

impl Bitfield {
    fn boxed() -> Box<dyn Bench> {
        let mut rng = Rng::new(19);
        let initial: Vec<u64> = (0..BITFIELD_WORDS).map(|_| rng.next_u64()).collect();
        let ops: Vec<BitOp> = (0..BITFIELD_OPS)
            .map(|i| {
                let start = rng.below(BITFIELD_BITS as u64) as usize;
                let max = (BITFIELD_BITS - start).min(1024);
                BitOp {
                    kind: (i % 3) as u8,
                    start,
                    len: 1 + rng.below(max as u64) as usize,
                }
            })
            .collect();
        let mut expected = initial.clone();
        for op in &ops {
            apply_by_words(&mut expected, *op);
        }
        Box::new(Bitfield {
            map: initial.clone(),
            initial,
            ops,
            expected,
        })
    }
}

impl Bench for Bitfield {
    fn iteration(&mut self) -> Result<Duration, WorkloadError> {
        self.map.copy_from_slice(&self.initial);
        let ops = black_box(&self.ops[..]);
        let t0 = Instant::now();
        for op in ops {
            apply_by_bits(&mut self.map, *op);
        }
        let t = t0.elapsed();
        if self.map != self.expected {
            return Err(check_failed(
                "bitfield",
                "bit map differs from the word-wise computation".into(),
            ));
        }
        Ok(t)
    }
}

/// nbench's way: one bit at a time.
fn apply_by_bits(map: &mut [u64], op: BitOp) {
    let bits = op.start..op.start + op.len;
    match op.kind {
        0 => bits.for_each(|b| map[b >> 6] &= !(1u64 << (b & 63))),
        1 => bits.for_each(|b| map[b >> 6] |= 1u64 << (b & 63)),
        _ => bits.for_each(|b| map[b >> 6] ^= 1u64 << (b & 63)),
    }
}

/// The independent check: whole words under masks.
fn apply_by_words(map: &mut [u64], op: BitOp) {
    let mut b = op.start;
    let end = op.start + op.len;
    while b < end {
        let word = b >> 6;
        let lo = b & 63;
        let hi = (end - (word << 6)).min(64);
        let mask = if hi - lo == 64 {
            u64::MAX
        } else {
            ((1u64 << (hi - lo)) - 1) << lo
        };
        match op.kind {
            0 => map[word] &= !mask,
            1 => map[word] |= mask,
            _ => map[word] ^= mask,
        }
        b = (word << 6) + hi;
    }
}

// ---------------------------------------------------------------------------
// IDEA

const IDEA_BYTES: usize = 16 * 1024;
const IDEA_ROUNDS: usize = 8;
const IDEA_SUBKEYS: usize = 6 * IDEA_ROUNDS + 4;

struct Idea {
    enc: [u16; IDEA_SUBKEYS],
    dec: [u16; IDEA_SUBKEYS],
    plain: Vec<u16>,
    crypt: Vec<u16>,
    back: Vec<u16>,
}

impl Idea {
    fn boxed() -> Box<dyn Bench> {
        let mut rng = Rng::new(23);
        let key = (rng.next_u64() as u128) << 64 | rng.next_u64() as u128;
        let enc = idea_encrypt_key(key);
        let dec = idea_decrypt_key(&enc);
        let plain: Vec<u16> = (0..IDEA_BYTES / 2).map(|_| rng.next_u64() as u16).collect();
        Box::new(Idea {
            enc,
            dec,
            crypt: vec![0; plain.len()],
            back: vec![0; plain.len()],
            plain,
        })
    }
}

impl Bench for Idea {
    fn iteration(&mut self) -> Result<Duration, WorkloadError> {
        let (enc, dec) = (black_box(&self.enc), black_box(&self.dec));
        let t0 = Instant::now();
        idea_cipher(&self.plain, &mut self.crypt, enc);
        idea_cipher(&self.crypt, &mut self.back, dec);
        let t = t0.elapsed();
        if self.back != self.plain || self.crypt == self.plain {
            return Err(check_failed(
                "idea",
                "decrypting the ciphertext did not give the plaintext back".into(),
            ));
        }
        Ok(t)
    }
}

/// Multiplication modulo 2¹⁶+1, where 0 stands for 2¹⁶.
fn idea_mul(a: u16, b: u16) -> u16 {
    if a == 0 {
        return 1u16.wrapping_sub(b);
    }
    if b == 0 {
        return 1u16.wrapping_sub(a);
    }
    let p = a as u32 * b as u32;
    let (lo, hi) = (p & 0xffff, p >> 16);
    lo.wrapping_sub(hi).wrapping_add((lo < hi) as u32) as u16
}

/// Multiplicative inverse modulo 2¹⁶+1 (x^(p-2)); 0 (2¹⁶) and 1 are their own.
fn idea_inv(x: u16) -> u16 {
    if x <= 1 {
        return x;
    }
    let p = 65537u64;
    let (mut base, mut exp, mut acc) = (x as u64, p - 2, 1u64);
    while exp > 0 {
        if exp & 1 == 1 {
            acc = acc * base % p;
        }
        base = base * base % p;
        exp >>= 1;
    }
    acc as u16
}

/// The 52 encryption subkeys: the 128-bit key cut into 16-bit pieces, rotated left
/// by 25 bits after every eight.
fn idea_encrypt_key(key: u128) -> [u16; IDEA_SUBKEYS] {
    let mut z = [0u16; IDEA_SUBKEYS];
    let mut k = key;
    for (i, slot) in z.iter_mut().enumerate() {
        if i > 0 && i % 8 == 0 {
            k = k.rotate_left(25);
        }
        *slot = (k >> (112 - 16 * (i % 8))) as u16;
    }
    z
}

/// Decryption subkeys: inverses of the encryption ones in reverse round order.
fn idea_decrypt_key(z: &[u16; IDEA_SUBKEYS]) -> [u16; IDEA_SUBKEYS] {
    let mut d = [0u16; IDEA_SUBKEYS];
    for r in 0..=IDEA_ROUNDS {
        let e = 6 * (IDEA_ROUNDS - r); // start of the matching encryption group
        let o = 6 * r;
        d[o] = idea_inv(z[e]);
        // The middle additive keys swap places, except in the first and last groups.
        let (k1, k2) = if r == 0 || r == IDEA_ROUNDS {
            (z[e + 1], z[e + 2])
        } else {
            (z[e + 2], z[e + 1])
        };
        d[o + 1] = k1.wrapping_neg();
        d[o + 2] = k2.wrapping_neg();
        d[o + 3] = idea_inv(z[e + 3]);
        if r < IDEA_ROUNDS {
            d[o + 4] = z[e - 2];
            d[o + 5] = z[e - 1];
        }
    }
    d
}

fn idea_block(x: [u16; 4], z: &[u16; IDEA_SUBKEYS]) -> [u16; 4] {
    let [mut x1, mut x2, mut x3, mut x4] = x;
    for k in z[..6 * IDEA_ROUNDS].chunks_exact(6) {
        x1 = idea_mul(x1, k[0]);
        x2 = x2.wrapping_add(k[1]);
        x3 = x3.wrapping_add(k[2]);
        x4 = idea_mul(x4, k[3]);
        let mut t0 = idea_mul(x1 ^ x3, k[4]);
        let t1 = idea_mul((x2 ^ x4).wrapping_add(t0), k[5]);
        t0 = t0.wrapping_add(t1);
        x1 ^= t1;
        x4 ^= t0;
        let t = x2 ^ t0;
        x2 = x3 ^ t1;
        x3 = t;
    }
    let k = &z[6 * IDEA_ROUNDS..];
    [
        idea_mul(x1, k[0]),
        x3.wrapping_add(k[1]),
        x2.wrapping_add(k[2]),
        idea_mul(x4, k[3]),
    ]
}

fn idea_cipher(input: &[u16], output: &mut [u16], z: &[u16; IDEA_SUBKEYS]) {
    for (i, o) in input.chunks_exact(4).zip(output.chunks_exact_mut(4)) {
        o.copy_from_slice(&idea_block([i[0], i[1], i[2], i[3]], z));
    }
}

// ---------------------------------------------------------------------------
// Huffman

const HUFFMAN_BYTES: usize = 16 * 1024;

struct Huffman {
    text: Vec<u8>,
    packed: Vec<u8>,
    back: Vec<u8>,
}

impl Huffman {
    fn boxed() -> Box<dyn Bench> {
        // nbench makes its text from a small word list, so byte frequencies are skewed.
        const WORDS: &[&str] = &[
            "the",
            "of",
            "and",
            "to",
            "a",
            "in",
            "virtual",
            "machine",
            "kernel",
            "page",
            "table",
            "memory",
            "hypervisor",
            "guest",
            "host",
            "is",
            "that",
            "for",
            "it",
            "with",
            "as",
            "on",
            "by",
            "interrupt",
            "exit",
            "cost",
            "benchmark",
            "Linux",
        ];
        const PUNCT: &[u8] = b".,;:!?\n";
        let mut rng = Rng::new(29);
        let mut text = Vec::with_capacity(HUFFMAN_BYTES + 16);
        while text.len() < HUFFMAN_BYTES {
            text.extend_from_slice(WORDS[rng.below(WORDS.len() as u64) as usize].as_bytes());
            if rng.below(8) == 0 {
                text.push(PUNCT[rng.below(PUNCT.len() as u64) as usize]);
            }
            text.push(b' ');
        }
        text.truncate(HUFFMAN_BYTES);
        Box::new(Huffman {
            packed: Vec::with_capacity(HUFFMAN_BYTES),
            back: Vec::with_capacity(HUFFMAN_BYTES),
            text,
        })
    }
}

impl Bench for Huffman {
    fn iteration(&mut self) -> Result<Duration, WorkloadError> {
        let text = black_box(&self.text[..]);
        let t0 = Instant::now();
        let tree = HuffTree::build(text);
        let bits = tree.compress(text, &mut self.packed);
        tree.expand(&self.packed, bits, text.len(), &mut self.back);
        let t = t0.elapsed();
        if self.back != self.text || bits >= 8 * text.len() {
            return Err(check_failed(
                "huffman",
                format!(
                    "expanded text differs or did not shrink ({bits} bits for {} bytes)",
                    text.len()
                ),
            ));
        }
        Ok(t)
    }
}

/// A Huffman tree in nbench's layout: 256 leaves then internal nodes, built by
/// repeatedly joining the two lightest parentless nodes found by a linear scan.
struct HuffTree {
    /// Children of node `256 + i`.
    children: Vec<[u16; 2]>,
    /// Code of each byte, most significant bit first, and its length.
    codes: [(u64, u8); 256],
    root: u16,
}

impl HuffTree {
    fn build(text: &[u8]) -> Self {
        let mut weight = [0u64; 512];
        for &b in text {
            weight[b as usize] += 1;
        }
        let mut parent = [u16::MAX; 512];
        let mut alive: Vec<u16> = (0..256u16).filter(|&i| weight[i as usize] > 0).collect();
        let mut children: Vec<[u16; 2]> = Vec::with_capacity(256);
        if alive.len() == 1 {
            // A single symbol still needs a one-bit code.
            alive.push(if alive[0] == 0 { 1 } else { 0 });
        }
        while alive.len() > 1 {
            let mut pick = [0usize; 2];
            for p in pick.iter_mut() {
                let mut best = 0;
                for (j, &n) in alive.iter().enumerate() {
                    if weight[n as usize] < weight[alive[best] as usize] {
                        best = j;
                    }
                }
                *p = alive.swap_remove(best) as usize;
            }
            let node = 256 + children.len();
            weight[node] = weight[pick[0]] + weight[pick[1]];
            parent[pick[0]] = node as u16;
            parent[pick[1]] = node as u16;
            children.push([pick[0] as u16, pick[1] as u16]);
            alive.push(node as u16);
        }
        let root = alive[0];
        let mut codes = [(0u64, 0u8); 256];
        for (sym, code) in codes.iter_mut().enumerate() {
            if parent[sym] == u16::MAX {
                continue;
            }
            // Walk up to the root, collecting bits from the least significant end.
            let (mut node, mut bits, mut len) = (sym, 0u64, 0u8);
            while node as u16 != root {
                let p = parent[node] as usize;
                bits |= ((children[p - 256][1] as usize == node) as u64) << len;
                len += 1;
                node = p;
            }
            *code = (bits, len);
        }
        HuffTree {
            children,
            codes,
            root,
        }
    }

    /// Append the codes of `text` to `out`, bit by bit; returns the number of bits.
    fn compress(&self, text: &[u8], out: &mut Vec<u8>) -> usize {
        out.clear();
        let mut nbits = 0usize;
        let mut acc = 0u8;
        for &b in text {
            let (code, len) = self.codes[b as usize];
            for i in (0..len).rev() {
                acc = acc << 1 | ((code >> i) & 1) as u8;
                nbits += 1;
                if nbits % 8 == 0 {
                    out.push(acc);
                    acc = 0;
                }
            }
        }
        if nbits % 8 != 0 {
            out.push(acc << (8 - nbits % 8));
        }
        nbits
    }

    /// Decode `count` symbols by walking the tree bit by bit.
    fn expand(&self, packed: &[u8], nbits: usize, count: usize, out: &mut Vec<u8>) {
        out.clear();
        let mut node = self.root as usize;
        for i in 0..nbits {
            let bit = (packed[i / 8] >> (7 - i % 8)) & 1;
            node = self.children[node - 256][bit as usize] as usize;
            if node < 256 {
                out.push(node as u8);
                if out.len() == count {
                    return;
                }
                node = self.root as usize;
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Assignment

/// nbench's matrix order.
const ASSIGN_N: usize = 101;

struct Assignment {
    cost: Vec<i64>,
}

impl Assignment {
    fn boxed() -> Box<dyn Bench> {
        let mut rng = Rng::new(31);
        let cost = (0..ASSIGN_N * ASSIGN_N)
            .map(|_| rng.below(5000) as i64)
            .collect();
        Box::new(Assignment { cost })
    }
}

impl Bench for Assignment {
    fn iteration(&mut self) -> Result<Duration, WorkloadError> {
        let cost = black_box(&self.cost[..]);
        let t0 = Instant::now();
        let sol = hungarian(cost, ASSIGN_N);
        let t = t0.elapsed();
        certify(cost, ASSIGN_N, &sol).map_err(|e| check_failed("assignment", e))?;
        Ok(t)
    }
}

/// A solved assignment: `row_of_col[j]` is the row assigned to column j, with the
/// dual potentials that prove it optimal.
struct Solution {
    col_of_row: Vec<usize>,
    u: Vec<i64>,
    v: Vec<i64>,
}

/// Minimum-cost perfect assignment of an n×n row-major matrix: the Hungarian method
/// with potentials and shortest augmenting paths (Kuhn 1955, Munkres 1957; O(n³)).
fn hungarian(cost: &[i64], n: usize) -> Solution {
    const INF: i64 = i64::MAX / 4;
    // 1-based with a virtual column 0, as in the classic formulation.
    let mut u = vec![0i64; n + 1];
    let mut v = vec![0i64; n + 1];
    let mut row_of = vec![0usize; n + 1]; // row assigned to column j (0 = none)
    let mut way = vec![0usize; n + 1];
    let mut minv = vec![INF; n + 1];
    let mut used = vec![false; n + 1];
    for i in 1..=n {
        row_of[0] = i;
        let mut j0 = 0;
        minv.fill(INF);
        used.fill(false);
        loop {
            used[j0] = true;
            let i0 = row_of[j0];
            let row = &cost[(i0 - 1) * n..i0 * n];
            let mut delta = INF;
            let mut j1 = 0;
            for j in 1..=n {
                if !used[j] {
                    let cur = row[j - 1] - u[i0] - v[j];
                    if cur < minv[j] {
                        minv[j] = cur;
                        way[j] = j0;
                    }
                    if minv[j] < delta {
                        delta = minv[j];
                        j1 = j;
                    }
                }
            }
            for j in 0..=n {
                if used[j] {
                    u[row_of[j]] += delta;
                    v[j] -= delta;
                } else {
                    minv[j] -= delta;
                }
            }
            j0 = j1;
            if row_of[j0] == 0 {
                break;
            }
        }
        loop {
            let j1 = way[j0];
            row_of[j0] = row_of[j1];
            j0 = j1;
            if j0 == 0 {
                break;
            }
        }
    }
    let mut col_of_row = vec![0usize; n];
    for j in 1..=n {
        col_of_row[row_of[j] - 1] = j - 1;
    }
    Solution {
        col_of_row,
        u: u[1..].to_vec(),
        v: v[1..].to_vec(),
    }
}

/// Check optimality by linear-programming duality: the assignment is a permutation,
/// the potentials are feasible (u_i + v_j ≤ c_ij everywhere) and the assignment's
/// cost equals Σu + Σv.
fn certify(cost: &[i64], n: usize, s: &Solution) -> Result<(), String> {
    let mut seen = vec![false; n];
    for &j in &s.col_of_row {
        if j >= n || std::mem::replace(&mut seen[j], true) {
            return Err("the assignment is not a permutation".into());
        }
    }
    for i in 0..n {
        for j in 0..n {
            if s.u[i] + s.v[j] > cost[i * n + j] {
                return Err(format!("potentials infeasible at ({i}, {j})"));
            }
        }
    }
    let primal: i64 = (0..n).map(|i| cost[i * n + s.col_of_row[i]]).sum();
    let dual: i64 = s.u.iter().sum::<i64>() + s.v.iter().sum::<i64>();
    if primal != dual {
        return Err(format!("cost {primal} differs from the dual bound {dual}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heap_sort_sorts() {
        let mut v = vec![5, -1, 3, 3, 0, 9, -7, 2];
        heap_sort(&mut v, |a, b| a < b);
        assert_eq!(v, [-7, -1, 0, 2, 3, 3, 5, 9]);
        let mut one = vec![1];
        heap_sort(&mut one, |a, b| a < b);
        assert_eq!(one, [1]);
    }

    #[test]
    fn bit_and_word_bitfield_agree() {
        let mut a = vec![0u64; 4];
        let mut b = vec![0u64; 4];
        for op in [
            BitOp {
                kind: 1,
                start: 3,
                len: 130,
            },
            BitOp {
                kind: 2,
                start: 60,
                len: 10,
            },
            BitOp {
                kind: 0,
                start: 64,
                len: 64,
            },
            BitOp {
                kind: 2,
                start: 0,
                len: 256,
            },
        ] {
            apply_by_bits(&mut a, op);
            apply_by_words(&mut b, op);
        }
        assert_eq!(a, b);
        // Bits 3..133 set, 60..70 toggled, 64..128 cleared, then everything toggled.
        assert_eq!(b[0], !((u64::MAX << 3) & !(0xf << 60)));
    }

    #[test]
    fn idea_mul_is_modular_with_zero_as_65536() {
        assert_eq!(idea_mul(2, 3), 6);
        assert_eq!(idea_mul(0, 0), 1); // 65536² ≡ 1 (mod 65537)
        assert_eq!(idea_mul(0, 2), 65535); // 65536·2 ≡ -2
        assert_eq!(idea_mul(256, 256), 0); // 65536
        for x in [1u16, 2, 3, 255, 40000, 65535, 0] {
            assert_eq!(idea_mul(x, idea_inv(x)), 1, "inverse of {x}");
        }
    }

    #[test]
    fn idea_matches_the_published_test_vector() {
        // Lai & Massey's example: key 0001 0002 ... 0008, plaintext 0000 0001 0002 0003.
        let key = (1..=8u128).fold(0u128, |k, w| k << 16 | w);
        let z = idea_encrypt_key(key);
        let c = idea_block([0, 1, 2, 3], &z);
        assert_eq!(c, [0x11fb, 0xed2b, 0x0198, 0x6de5]);
        assert_eq!(idea_block(c, &idea_decrypt_key(&z)), [0, 1, 2, 3]);
    }

    #[test]
    fn huffman_round_trips_and_codes_frequent_bytes_shorter() {
        let text = b"aaaaaaaabbbbccd".to_vec();
        let tree = HuffTree::build(&text);
        assert_eq!(tree.codes[b'a' as usize].1, 1);
        assert_eq!(tree.codes[b'b' as usize].1, 2);
        let mut packed = Vec::new();
        let bits = tree.compress(&text, &mut packed);
        assert_eq!(bits, 8 + 4 * 2 + 2 * 3 + 3);
        let mut back = Vec::new();
        tree.expand(&packed, bits, text.len(), &mut back);
        assert_eq!(back, text);
        let single = b"zzzz".to_vec();
        let tree = HuffTree::build(&single);
        let bits = tree.compress(&single, &mut packed);
        tree.expand(&packed, bits, single.len(), &mut back);
        assert_eq!(back, single);
    }

    #[test]
    fn hungarian_finds_the_brute_force_optimum() {
        let mut rng = Rng::new(5);
        for n in 1..=6 {
            let cost: Vec<i64> = (0..n * n).map(|_| rng.below(50) as i64).collect();
            let sol = hungarian(&cost, n);
            certify(&cost, n, &sol).unwrap();
            let got: i64 = (0..n).map(|i| cost[i * n + sol.col_of_row[i]]).sum();
            let mut perm: Vec<usize> = (0..n).collect();
            let mut best = i64::MAX;
            permutations(&mut perm, 0, &mut |p| {
                best = best.min((0..n).map(|i| cost[i * n + p[i]]).sum());
            });
            assert_eq!(got, best, "n={n}");
        }
    }

    fn permutations(p: &mut Vec<usize>, k: usize, f: &mut impl FnMut(&[usize])) {
        if k == p.len() {
            f(p);
            return;
        }
        for i in k..p.len() {
            p.swap(k, i);
            permutations(p, k + 1, f);
            p.swap(k, i);
        }
    }

    #[test]
    fn certify_rejects_a_suboptimal_assignment() {
        let cost = vec![1, 10, 10, 1];
        let mut sol = hungarian(&cost, 2);
        assert_eq!(sol.col_of_row, [0, 1]);
        sol.col_of_row = vec![1, 0];
        assert!(certify(&cost, 2, &sol).is_err());
    }
}
