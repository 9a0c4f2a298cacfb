//! Live progress: which target, which workload, repetition i of R, time left. A
//! bar on a terminal; one plain line per sample otherwise (CI logs).

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use crate::results::SampleRecord;

pub struct Progress {
    bar: Option<ProgressBar>,
    total: std::cell::Cell<u64>,
    done: std::cell::Cell<u64>,
    started: Instant,
    current: std::cell::RefCell<String>,
}

impl Progress {
    pub fn new(total: u64) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let b = ProgressBar::new(total);
            b.set_style(
                ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} eta {eta} {msg}",
                )
                .expect("valid template"),
            );
            b.enable_steady_tick(Duration::from_millis(200));
            b
        });
        Progress {
            bar,
            total: total.into(),
            done: 0.into(),
            started: Instant::now(),
            current: String::new().into(),
        }
    }

    /// Items finished so far.
    pub fn done_count(&self) -> u64 {
        self.done.get()
    }

    /// Change the number of items expected in all (the `auto` repetitions decide
    /// as they go).
    pub fn set_total(&self, total: u64) {
        self.total.set(total);
        if let Some(b) = &self.bar {
            b.set_length(total);
        }
    }

    /// `reps`: the most repetitions planned, shown after the count while it is
    /// not exceeded (native, which runs next to every other target, goes beyond).
    pub fn start_item(&self, target: &str, workload: &str, rep: u32, reps: u32) {
        let msg = if rep < reps {
            format!("{target} · {workload} · rep {}/{reps}", rep + 1)
        } else {
            format!("{target} · {workload} · rep {}", rep + 1)
        };
        if let Some(b) = &self.bar {
            b.set_message(msg.clone());
        }
        *self.current.borrow_mut() = msg;
    }

    pub fn sub(&self, fraction: f64, phase: &str) {
        if let Some(b) = &self.bar {
            b.set_message(format!(
                "{} · {phase} {:.0}%",
                self.current.borrow(),
                fraction * 100.0
            ));
        }
    }

    fn eta(&self) -> String {
        let done = self.done.get();
        if done == 0 {
            return "?".into();
        }
        let per = self.started.elapsed().as_secs_f64() / done as f64;
        let left = per * self.total.get().saturating_sub(done) as f64;
        humantime::format_duration(Duration::from_secs(left.round() as u64)).to_string()
    }

    pub fn finish_item(&self, line: &str) {
        self.done.set(self.done.get() + 1);
        match &self.bar {
            Some(b) => b.inc(1),
            None => eprintln!(
                "[{}/{}] {} — {line} (eta {})",
                self.done.get(),
                self.total.get(),
                self.current.borrow(),
                self.eta()
            ),
        }
    }

    pub fn warn(&self, msg: &str) {
        self.done.set(self.done.get() + 1);
        match &self.bar {
            Some(b) => {
                b.inc(1);
                b.println(format!("warning: {msg}"));
            }
            None => eprintln!("[{}/{}] warning: {msg}", self.done.get(), self.total.get()),
        }
    }

    pub fn done(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

/// One short line about a sample: its headline figure.
pub fn describe(s: &SampleRecord) -> String {
    match s.metrics.first() {
        Some(m) => format!(
            "{} {}{}",
            crate::units::fmt_num(m.value),
            m.unit,
            if s.discarded { " (warm-up)" } else { "" }
        ),
        None => "no metric".into(),
    }
}
