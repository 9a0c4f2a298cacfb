//! The ledger parser and the checks cleanup makes on every entry.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| virtmark::fuzzing::ledger(data));
