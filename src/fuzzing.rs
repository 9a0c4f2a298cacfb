//! Entry points for fuzzing the parsers that read outside input: the agent
//! protocol, plans, `results.json` and ledgers. Each takes any bytes and must
//! neither panic nor hang; where a parse succeeds, what it gives must survive a
//! round trip. Used by the libFuzzer targets in `fuzz/` (`scripts/fuzz.sh`) and
//! replayed over the stored corpus by `tests/fuzz_corpus.rs`.

use std::io::BufReader;
use std::path::Path;

use crate::protocol::{self, Request, Response};

/// The agent protocol: one line decoded as a request and as an answer, and the
/// bytes read as a stream through the bounded reader.
pub fn protocol(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(req) = protocol::decode::<Request>(&text) {
        let again = protocol::decode::<Request>(&protocol::encode(&req));
        assert_eq!(
            again.as_ref(),
            Ok(&req),
            "a request changed on a round trip"
        );
    }
    if let Ok(resp) = protocol::decode::<Response>(&text) {
        let again = protocol::decode::<Response>(&protocol::encode(&resp));
        assert!(
            again.is_ok(),
            "an answer did not survive a round trip: {again:?}"
        );
    }
    // A stream, with a small buffer and a small line limit, so that long lines
    // are cut across buffer refills.
    let mut r = BufReader::with_capacity(7, data);
    let mut buf = Vec::new();
    let mut lines = 0;
    loop {
        match protocol::read_bounded_line(&mut r, &mut buf, 64) {
            Ok(false) => break,
            Ok(true) => assert!(buf.len() <= 64 && !buf.contains(&b'\n')),
            Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::InvalidData),
        }
        lines += 1;
        assert!(lines <= data.len() + 1, "the reader does not advance");
    }
    let mut reader = protocol::Reader::new(BufReader::with_capacity(16, data));
    let mut n = 0;
    while let Ok(Some(_)) | Err(_) = reader.next_message::<Response>() {
        n += 1;
        if n > data.len() + 1 {
            panic!("the message reader does not advance");
        }
    }
}

/// A plan: parsed and checked; a plan that parses must print and parse again
/// to the same plan.
pub fn plan(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(plan) = crate::plan::Plan::from_toml(text, "fuzz.toml") {
        let again = crate::plan::Plan::from_toml(&plan.to_toml(), "again.toml")
            .expect("a valid plan prints as a valid plan");
        assert_eq!(again, plan, "a plan changed on a round trip");
    }
}

/// A `results.json`: loaded, and when it loads, its statistics derived and its
/// Markdown report written.
pub fn results(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(run) = crate::report::load::parse_results_json(text, "results.json") {
        let _ = crate::results::derive_results(&run.samples);
        let _ = crate::report::markdown(&run);
    }
}

/// A ledger: parsed, each outstanding entry round-tripped and checked against
/// a scope the way cleanup checks it (read-only: nothing is removed).
pub fn ledger(data: &[u8]) {
    use crate::targets::ledger::{self, Resource, Scope};
    let text = String::from_utf8_lossy(data);
    let scope = Scope {
        scratch_root: Some(Path::new("/nonexistent/virtmark-fuzz-root").to_path_buf()),
        cache_root: None,
    };
    for res in ledger::parse(&text) {
        let json = serde_json::to_string(&res).expect("a resource serializes");
        let again: Resource = serde_json::from_str(&json).expect("a resource parses back");
        assert_eq!(again, res);
        if let Ok(()) = ledger::check(&res, &scope).map(|_| ()) {
            // Anything accepted lies where virtmark puts things.
            match &res {
                Resource::Dir { path } | Resource::Mount { path } => {
                    assert!(
                        path.starts_with("/nonexistent/virtmark-fuzz-root"),
                        "{res:?}"
                    )
                }
                Resource::Cgroup { path } => assert!(path.starts_with("/sys/fs/cgroup")),
                Resource::Netns { name } => assert!(name.starts_with("virtmark-")),
                Resource::Link { name } => assert!(name.len() <= 15),
                _ => {}
            }
        }
    }
}
