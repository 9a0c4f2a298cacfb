//! Replays the fuzzing corpus (`fuzz/corpus/<target>/`, seeds and every input
//! that once crashed a parser) through the same entry points the libFuzzer
//! targets use (`scripts/fuzz.sh`), so a fixed crash stays fixed in every
//! `cargo test`. Also mutates each input a little (a fixed-seed byte mutator),
//! which is no substitute for `scripts/fuzz.sh` but runs everywhere.

use std::path::Path;

fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            let p = e.unwrap().path();
            (p.display().to_string(), std::fs::read(&p).unwrap())
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no corpus in {}", dir.display());
    files
}

/// `input` with a few random bytes changed, inserted, removed or duplicated.
fn mutate(rng: &mut fastrand::Rng, input: &[u8]) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..rng.usize(1..8) {
        let at = rng.usize(0..=v.len());
        match rng.u8(0..5) {
            0 if at < v.len() => v[at] = rng.u8(..),
            1 => v.insert(
                at,
                *b"{}[]\",:0-9e.\\\n ".get(rng.usize(0..16)).unwrap_or(&b'x'),
            ),
            2 if at < v.len() => {
                v.remove(at);
            }
            3 if at < v.len() => {
                let end = (at + rng.usize(1..64)).min(v.len());
                let chunk = v[at..end].to_vec();
                v.splice(at..at, chunk);
            }
            _ => v.truncate(at),
        }
    }
    v
}

fn replay(target: &str, f: fn(&[u8])) {
    let mut rng = fastrand::Rng::with_seed(0x7669_7274);
    for (name, data) in corpus(target) {
        let run = |d: &[u8]| {
            if std::panic::catch_unwind(|| f(d)).is_err() {
                panic!(
                    "{target}: {name} (or a mutation of it) crashes: {:?}",
                    String::from_utf8_lossy(d)
                );
            }
        };
        run(&data);
        for _ in 0..200 {
            run(&mutate(&mut rng, &data));
        }
    }
}

#[test]
fn protocol_corpus() {
    replay("protocol", virtmark::fuzzing::protocol);
}

#[test]
fn plan_corpus() {
    replay("plan", virtmark::fuzzing::plan);
}

#[test]
fn results_corpus() {
    replay("results", virtmark::fuzzing::results);
}

#[test]
fn ledger_corpus() {
    replay("ledger", virtmark::fuzzing::ledger);
}
