//! The agent protocol decoder: any bytes, as one line and as a stream.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| virtmark::fuzzing::protocol(data));
