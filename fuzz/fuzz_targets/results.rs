//! `results.json` loading (and the statistics derived from its samples).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| virtmark::fuzzing::results(data));
