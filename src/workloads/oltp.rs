//! `oltp`: SysBench 0.4 OLTP read/write (`sysbench --test=oltp run`, 10,000
//! transactions on MySQL/InnoDB; Camargos et al. 2008) on an embedded SQLite database.
//!
//! Prepare (untimed) creates sysbench's `sbtest` table with its index on `k` and
//! fills it as sysbench 0.4 does (`k = 0`, `c = ' '`, a fixed `pad`). Each timed
//! transaction is sysbench's classic "complex" read/write mix, with prepared
//! statements: 10 point selects, one simple, sum, order and distinct range of 100
//! rows, one index update, one non-index update, and a delete plus insert of the same
//! id, between `BEGIN` and `COMMIT`. Ids are uniform over the table (sysbench 0.4's
//! default is its "special" skewed distribution; uniform is the documented choice
//! here). Durability matches InnoDB's default flush at commit: WAL journal with
//! `synchronous=FULL`, so every commit reaches storage; `fsync = false` selects
//! `synchronous=NORMAL` (commits reach the OS only).
//!
//! Parameters: `rows` (default 10,000, sysbench 0.4's `oltp-table-size`),
//! `transactions` (fixed count instead of the duration; faithful: 10,000), `threads`
//! (default 1, each with its own connection), `fsync` (default true).

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use rusqlite::{params, Connection, ErrorCode};

use super::{Class, Ctx, Metric, Outcome, Workload, WorkloadError};

/// SysBench OLTP read/write on SQLite.
pub static OLTP: Workload = Workload {
    name: "oltp",
    stands_for: "SysBench 0.4 OLTP read/write on MySQL (Camargos et al.)",
    class: Class::Application,
    metric: "transactions",
    unit: "tx/s",
    higher_is_better: true,
    needs_peer: false,
    description: "sysbench's OLTP transaction mix (point selects, ranges, updates, delete+insert) on an embedded SQLite database committed to disk",
    available: super::always,
    run: run_oltp,
};

/// sysbench 0.4's default `oltp-table-size`.
const DEFAULT_ROWS: u64 = 10_000;
/// The study's run: `sysbench --test=oltp --max-requests=10000`.
const FAITHFUL_TRANSACTIONS: u64 = 10_000;
/// sysbench's `oltp-range-size`.
const RANGE: i64 = 100;
/// Statements per transaction as sysbench counts them: 14 reads, 4 writes and
/// 2 others (`BEGIN`, `COMMIT`).
const QUERIES_PER_TX: u64 = 20;
/// How long a connection waits for another one's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// Give up after this many transactions had to be retried.
const MAX_RETRIES: u64 = 10_000;
/// sysbench 0.4's `pad` values, for prepared rows and for re-inserted rows.
const PREPARE_PAD: &str = "qqqqqqqqqqwwwwwwwwwweeeeeeeeeerrrrrrrrrrtttttttttt";
const INSERT_PAD: &str = "aaaaaaaaaaffffffffffrrrrrrrrrreeeeeeeeeeyyyyyyyyyy";

fn sql_err(context: impl std::fmt::Display) -> impl FnOnce(rusqlite::Error) -> WorkloadError {
    move |e| WorkloadError::Failed(format!("{context}: {e}"))
}

fn run_oltp(ctx: &Ctx) -> Result<Outcome, WorkloadError> {
    let p = ctx.params;
    let rows = p.rows.unwrap_or(DEFAULT_ROWS);
    if rows < RANGE as u64 || rows > i64::MAX as u64 {
        return Err(WorkloadError::Param(format!(
            "rows {rows}: the table needs at least {RANGE} rows (one range)"
        )));
    }
    let transactions = p
        .transactions
        .or_else(|| ctx.pick(None, Some(FAITHFUL_TRANSACTIONS)));
    if transactions == Some(0) {
        return Err(WorkloadError::Param(
            "transactions 0: give at least one".into(),
        ));
    }
    let threads = p.threads.unwrap_or(1);
    if threads == 0 {
        return Err(WorkloadError::Param("threads 0: give at least one".into()));
    }
    let fsync = p.fsync.unwrap_or(true);
    let synchronous = if fsync { "FULL" } else { "NORMAL" };
    let db = ctx.scratch.join("sbtest.db");

    (ctx.progress)(0.0, "preparing table");
    prepare(&db, rows, synchronous)?;

    let cfg = RunCfg {
        db: &db,
        rows: rows as i64,
        synchronous,
        deadline: ctx.duration,
        transactions,
    };
    let claimed = AtomicU64::new(0);
    let done = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let barrier = Barrier::new(threads as usize + 1);
    let mut begun = Ok(());
    let results: Vec<Result<Worker, WorkloadError>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (cfg, claimed, done, stop, barrier) = (&cfg, &claimed, &done, &stop, &barrier);
                s.spawn(move || worker(cfg, t, claimed, done, stop, barrier))
            })
            .collect();
        // The table is made and every thread is connected: wait at the step's
        // barrier (if any) before releasing the workers into the measured window.
        begun = ctx.begin_measuring();
        if begun.is_err() {
            stop.store(true, Ordering::Relaxed);
        }
        barrier.wait();
        let start = Instant::now();
        while !handles.iter().all(|h| h.is_finished()) {
            let fraction = match transactions {
                Some(n) => done.load(Ordering::Relaxed) as f64 / n as f64,
                None => start.elapsed().as_secs_f64() / ctx.duration.as_secs_f64(),
            };
            (ctx.progress)(fraction, "running transactions");
            std::thread::sleep(Duration::from_millis(20));
        }
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(WorkloadError::Failed("a worker thread panicked".into()))
                })
            })
            .collect()
    });
    begun?;
    let workers = results.into_iter().collect::<Result<Vec<_>, _>>()?;

    let start = workers.iter().map(|w| w.start).min();
    let end = workers.iter().map(|w| w.end).max();
    let (Some(start), Some(end)) = (start, end) else {
        return Err(WorkloadError::Failed("no worker ran".into()));
    };
    let secs = end.duration_since(start).as_secs_f64();
    let mut latencies: Vec<f64> = workers
        .iter()
        .flat_map(|w| w.latencies_ms.iter().copied())
        .collect();
    let count = latencies.len() as u64;
    if count == 0 || secs <= 0.0 {
        return Err(WorkloadError::Failed("no transaction completed".into()));
    }
    let retries: u64 = workers.iter().map(|w| w.retries).sum();
    let p95 = percentile(&mut latencies, 95.0);

    // The delete+insert pairs keep every id: check the table is whole (untimed).
    let conn = Connection::open(&db).map_err(sql_err(format!("reopening {}", db.display())))?;
    let left: i64 = conn
        .query_row("SELECT COUNT(*) FROM sbtest", [], |r| r.get(0))
        .map_err(sql_err("counting rows after the run"))?;
    if left != rows as i64 {
        return Err(WorkloadError::Failed(format!(
            "sbtest has {left} rows after the run, expected {rows}"
        )));
    }

    Ok(Outcome {
        metrics: vec![
            Metric::higher("transactions", "tx/s", count as f64 / secs),
            Metric::higher(
                "queries",
                "q/s",
                (count * QUERIES_PER_TX) as f64 / secs,
            ),
            Metric::lower("p95_latency", "ms", p95),
        ],
        notes: vec![
            format!(
                "{count} transactions in {secs:.2} s, {rows} rows, {threads} thread(s), {retries} retried"
            ),
            format!("SQLite WAL, synchronous={synchronous}, BEGIN IMMEDIATE, uniform ids"),
        ],
    })
}

/// `sysbench --test=oltp prepare`: the table, its rows and the index on `k`.
fn prepare(db: &Path, rows: u64, synchronous: &str) -> Result<(), WorkloadError> {
    let conn = Connection::open(db).map_err(sql_err(format!("creating {}", db.display())))?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(sql_err("setting journal_mode=WAL"))?;
    conn.pragma_update(None, "synchronous", synchronous)
        .map_err(sql_err("setting synchronous"))?;
    conn.execute_batch(
        "CREATE TABLE sbtest (
            id INTEGER PRIMARY KEY,
            k INTEGER NOT NULL DEFAULT 0,
            c CHAR(120) NOT NULL DEFAULT '',
            pad CHAR(60) NOT NULL DEFAULT ''
        );
        CREATE INDEX k ON sbtest(k);",
    )
    .map_err(sql_err("creating table sbtest"))?;
    conn.execute_batch("BEGIN")
        .map_err(sql_err("beginning the load"))?;
    {
        let mut ins = conn
            .prepare("INSERT INTO sbtest (id, k, c, pad) VALUES (?1, 0, ' ', ?2)")
            .map_err(sql_err("preparing the load"))?;
        for id in 1..=rows as i64 {
            ins.execute(params![id, PREPARE_PAD])
                .map_err(sql_err("loading rows"))?;
        }
    }
    conn.execute_batch("COMMIT")
        .map_err(sql_err("committing the load"))?;
    // Start the run from an empty WAL, as a freshly prepared MySQL has a clean log.
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .map_err(sql_err("checkpointing after the load"))?;
    Ok(())
}

struct RunCfg<'a> {
    db: &'a Path,
    rows: i64,
    synchronous: &'a str,
    deadline: Duration,
    transactions: Option<u64>,
}

struct Worker {
    start: Instant,
    end: Instant,
    latencies_ms: Vec<f64>,
    retries: u64,
}

/// Open this thread's connection and statements, wait for the others, then run
/// transactions until the deadline or until the shared count is used up.
fn worker(
    cfg: &RunCfg,
    thread: u32,
    claimed: &AtomicU64,
    done: &AtomicU64,
    stop: &AtomicBool,
    barrier: &Barrier,
) -> Result<Worker, WorkloadError> {
    let setup = open(cfg);
    // Every thread reaches the barrier, even after a failed setup, so none waits forever.
    barrier.wait();
    let conn = match setup {
        Ok(c) => c,
        Err(e) => {
            stop.store(true, Ordering::Relaxed);
            return Err(e);
        }
    };
    let mut st = Statements::new(&conn).inspect_err(|_| stop.store(true, Ordering::Relaxed))?;
    let mut rng = fastrand::Rng::with_seed(0x01d7_2008_u64.wrapping_add(u64::from(thread)));
    let mut c_value = String::with_capacity(120);
    let mut latencies_ms = Vec::with_capacity(cfg.transactions.map_or(1 << 16, |n| n as usize));
    let mut retries = 0u64;
    let start = Instant::now();
    loop {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        match cfg.transactions {
            Some(n) => {
                if claimed.fetch_add(1, Ordering::Relaxed) >= n {
                    break;
                }
            }
            None => {
                if start.elapsed() >= cfg.deadline {
                    break;
                }
            }
        }
        let t0 = Instant::now();
        loop {
            match st.transaction(&mut rng, cfg.rows, &mut c_value) {
                Ok(()) => break,
                Err(e) if is_busy(&e) => {
                    // sysbench retries a transaction that hit a deadlock; so do we.
                    let _ = conn.execute_batch("ROLLBACK");
                    retries += 1;
                    if retries > MAX_RETRIES {
                        stop.store(true, Ordering::Relaxed);
                        return Err(WorkloadError::Failed(format!(
                            "thread {thread}: gave up after {retries} lock conflicts: {e}"
                        )));
                    }
                }
                Err(e) => {
                    stop.store(true, Ordering::Relaxed);
                    let _ = conn.execute_batch("ROLLBACK");
                    return Err(WorkloadError::Failed(format!(
                        "thread {thread}: transaction failed: {e}"
                    )));
                }
            }
        }
        latencies_ms.push(t0.elapsed().as_secs_f64() * 1e3);
        done.fetch_add(1, Ordering::Relaxed);
    }
    Ok(Worker {
        start,
        end: Instant::now(),
        latencies_ms,
        retries,
    })
}

fn open(cfg: &RunCfg) -> Result<Connection, WorkloadError> {
    let conn =
        Connection::open(cfg.db).map_err(sql_err(format!("opening {}", cfg.db.display())))?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(sql_err("setting busy_timeout"))?;
    conn.pragma_update(None, "synchronous", cfg.synchronous)
        .map_err(sql_err("setting synchronous"))?;
    Ok(conn)
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
    )
}

/// sysbench 0.4's OLTP statements, prepared once per connection.
struct Statements<'c> {
    begin: rusqlite::Statement<'c>,
    commit: rusqlite::Statement<'c>,
    point: rusqlite::Statement<'c>,
    simple_range: rusqlite::Statement<'c>,
    sum_range: rusqlite::Statement<'c>,
    order_range: rusqlite::Statement<'c>,
    distinct_range: rusqlite::Statement<'c>,
    index_update: rusqlite::Statement<'c>,
    non_index_update: rusqlite::Statement<'c>,
    delete: rusqlite::Statement<'c>,
    insert: rusqlite::Statement<'c>,
}

impl<'c> Statements<'c> {
    fn new(conn: &'c Connection) -> Result<Self, WorkloadError> {
        let prep = |sql: &str| {
            conn.prepare(sql)
                .map_err(sql_err(format!("preparing {sql:?}")))
        };
        Ok(Statements {
            // IMMEDIATE takes the write lock up front: with several connections a
            // deferred transaction would fail, not wait, when upgrading to write.
            begin: prep("BEGIN IMMEDIATE")?,
            commit: prep("COMMIT")?,
            point: prep("SELECT c FROM sbtest WHERE id=?1")?,
            simple_range: prep("SELECT c FROM sbtest WHERE id BETWEEN ?1 AND ?2")?,
            sum_range: prep("SELECT SUM(k) FROM sbtest WHERE id BETWEEN ?1 AND ?2")?,
            order_range: prep("SELECT c FROM sbtest WHERE id BETWEEN ?1 AND ?2 ORDER BY c")?,
            distinct_range: prep(
                "SELECT DISTINCT c FROM sbtest WHERE id BETWEEN ?1 AND ?2 ORDER BY c",
            )?,
            index_update: prep("UPDATE sbtest SET k=k+1 WHERE id=?1")?,
            non_index_update: prep("UPDATE sbtest SET c=?1 WHERE id=?2")?,
            delete: prep("DELETE FROM sbtest WHERE id=?1")?,
            insert: prep("INSERT INTO sbtest (id, k, c, pad) VALUES (?1, 0, ' ', ?2)")?,
        })
    }

    /// Read every row of a prepared query, as a client fetching results does.
    fn fetch(
        stmt: &mut rusqlite::Statement<'_>,
        p: impl rusqlite::Params,
    ) -> rusqlite::Result<u64> {
        let mut rows = stmt.query(p)?;
        let mut bytes = 0u64;
        while let Some(row) = rows.next()? {
            bytes += match row.get_ref(0)? {
                rusqlite::types::ValueRef::Text(t) => t.len() as u64,
                _ => 8,
            };
        }
        Ok(bytes)
    }

    /// One sysbench OLTP read/write transaction.
    fn transaction(
        &mut self,
        rng: &mut fastrand::Rng,
        rows: i64,
        c_value: &mut String,
    ) -> rusqlite::Result<()> {
        self.begin.execute([])?;
        for _ in 0..10 {
            Self::fetch(&mut self.point, [rng.i64(1..=rows)])?;
        }
        let from = rng.i64(1..=rows - RANGE + 1);
        Self::fetch(&mut self.simple_range, [from, from + RANGE - 1])?;
        let from = rng.i64(1..=rows - RANGE + 1);
        Self::fetch(&mut self.sum_range, [from, from + RANGE - 1])?;
        let from = rng.i64(1..=rows - RANGE + 1);
        Self::fetch(&mut self.order_range, [from, from + RANGE - 1])?;
        let from = rng.i64(1..=rows - RANGE + 1);
        Self::fetch(&mut self.distinct_range, [from, from + RANGE - 1])?;
        self.index_update.execute([rng.i64(1..=rows)])?;
        random_c(rng, c_value);
        self.non_index_update
            .execute(params![c_value.as_str(), rng.i64(1..=rows)])?;
        let id = rng.i64(1..=rows);
        self.delete.execute([id])?;
        self.insert.execute(params![id, INSERT_PAD])?;
        self.commit.execute([])?;
        Ok(())
    }
}

/// A `c` value like sysbench's: ten groups of eleven random digits joined by `-`
/// (119 characters).
fn random_c(rng: &mut fastrand::Rng, out: &mut String) {
    out.clear();
    for group in 0..10 {
        if group > 0 {
            out.push('-');
        }
        for _ in 0..11 {
            out.push(rng.digit(10));
        }
    }
}

/// Nearest-rank percentile `p` (0–100] of `values`; sorts them in place.
fn percentile(values: &mut [f64], p: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let rank = (p / 100.0 * values.len() as f64).ceil() as usize;
    values[rank.clamp(1, values.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workloads::{testing::run_briefly, Params};

    #[test]
    fn percentile_is_nearest_rank() {
        let mut v: Vec<f64> = (1..=20).rev().map(f64::from).collect();
        assert_eq!(percentile(&mut v, 95.0), 19.0);
        assert_eq!(percentile(&mut v, 50.0), 10.0);
        assert_eq!(percentile(&mut v, 100.0), 20.0);
        assert_eq!(percentile(&mut [7.0], 95.0), 7.0);
        assert!(percentile(&mut [], 95.0).is_nan());
    }

    #[test]
    fn random_c_has_sysbench_shape() {
        let mut rng = fastrand::Rng::with_seed(1);
        let mut c = String::new();
        random_c(&mut rng, &mut c);
        assert_eq!(c.len(), 119);
        assert_eq!(c.matches('-').count(), 9);
        assert!(c
            .split('-')
            .all(|g| g.len() == 11 && g.bytes().all(|b| b.is_ascii_digit())));
    }

    #[test]
    fn oltp_runs_a_fixed_number_of_transactions() {
        let params = Params {
            rows: Some(500),
            transactions: Some(50),
            fsync: Some(false),
            ..Params::default()
        };
        let out = run_briefly(&OLTP, params, None);
        assert!(
            out.notes[0].starts_with("50 transactions"),
            "{:?}",
            out.notes
        );
        let tx = out.metrics[0].value;
        let q = out.metrics[1].value;
        assert!((q / tx - 20.0).abs() < 1e-9);
    }

    #[test]
    fn oltp_runs_for_a_duration_with_threads() {
        let params = Params {
            rows: Some(1000),
            threads: Some(3),
            ..Params::default()
        };
        run_briefly(&OLTP, params, None);
    }

    #[test]
    fn oltp_rejects_a_table_smaller_than_a_range() {
        let dir = tempfile::tempdir().unwrap();
        let params = Params {
            rows: Some(10),
            ..Params::default()
        };
        let ctx = crate::workloads::Ctx {
            preset: crate::workloads::Preset::Quick,
            duration: Duration::from_millis(10),
            params: &params,
            scratch: dir.path(),
            peer: None,
            progress: &|_, _| {},
            begin: &|| Ok(()),
        };
        assert!(matches!(run_oltp(&ctx), Err(WorkloadError::Param(_))));
    }
}
