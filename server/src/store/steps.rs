//! Group commit for what running runs write: step records and the end of a run. Every finished
//! step is written before the steps after it start (a resumed run must not repeat it), and on
//! SQLite with `synchronous=FULL` each commit is an fsync. Runs executing side by side hand
//! these writes to one task that commits whatever has arrived in one transaction and then
//! answers every caller, so a step still proceeds only once its record is durable, but
//! concurrent runs share the fsync. On SQLite that task is the webhook writer's
//! ([`super::writer`]): one turn at the write lock commits new runs and these records together.

use std::{
    collections::HashSet,
    sync::{Arc, OnceLock},
};

use sea_orm::{
    ConnectionTrait, DatabaseBackend, DatabaseConnection, DatabaseTransaction, DbErr,
    FromQueryResult, Statement, TransactionTrait, Value as DbValue,
};
use tokio::sync::{mpsc, oneshot};

use super::{Store, WriteGate, entities::step_runs, raw_sqlite, rows, write_turn};
use crate::error::Error;

/// Most records in one transaction.
pub(crate) const MAX_BATCH: usize = 256;

/// The queue of step records and run ends, taken by a writer that commits them together with
/// its own rows (see [`Store::adopt_step_jobs`]).
pub(crate) type StepJobs = mpsc::Receiver<Job>;

enum Op {
    /// Insert or replace a step record.
    Step(step_runs::ActiveModel),
    /// The end of a run.
    End(RunEnd),
}

/// A run's final state, written if `worker` still holds the run.
pub(crate) struct RunEnd {
    pub id: String,
    pub worker: String,
    pub status: String,
    pub error: Option<String>,
    pub output: Option<String>,
    pub finished_at: i64,
}

/// A step record or run end waiting for its commit.
pub(crate) struct Job {
    op: Op,
    /// Rows affected.
    done: oneshot::Sender<Result<u64, String>>,
}

/// The step writer of a store, started on first use; it ends when the last handle is dropped.
#[derive(Default)]
pub struct StepWriter {
    tx: OnceLock<mpsc::Sender<Job>>,
}

impl StepWriter {
    fn sender(&self, db: &DatabaseConnection, gate: &WriteGate) -> &mpsc::Sender<Job> {
        self.tx.get_or_init(|| {
            let (tx, rx) = channel();
            tokio::spawn(write_alone(rx, db.clone(), gate.clone()));
            tx
        })
    }

    /// The queue, for another task to write from; `None` once this writer has started.
    fn adopt(&self) -> Option<StepJobs> {
        let mut adopted = None;
        self.tx.get_or_init(|| {
            let (tx, rx) = channel();
            adopted = Some(rx);
            tx
        });
        adopted
    }
}

fn channel() -> (mpsc::Sender<Job>, StepJobs) {
    // Bounded: a slow disk holds runs back instead of queueing records in memory.
    mpsc::channel::<Job>(4 * MAX_BATCH)
}

/// Commit what arrives, each batch in a transaction of its own, until every sender is gone.
pub(crate) async fn write_alone(mut rx: StepJobs, db: DatabaseConnection, gate: WriteGate) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        write_in_turn(&db, &gate, &mut batch).await;
    }
}

/// Wait for the write turn, then write `batch` in a transaction of its own.
pub(crate) async fn write_in_turn(db: &DatabaseConnection, gate: &WriteGate, batch: &mut Vec<Job>) {
    let turn = write_turn(db, gate).await;
    write_batch(&turn, batch).await;
}

impl Store {
    /// Insert or replace one step record. `durable`: return once it is committed; otherwise
    /// once it is queued. The writer commits in arrival order, so a queued record is committed
    /// no later than anything its run writes after it (its next durable record, its end).
    pub(crate) async fn write_step_row(
        &self,
        row: step_runs::ActiveModel,
        durable: bool,
    ) -> Result<(), Error> {
        let wait = self.send(Op::Step(row)).await?;
        if durable {
            Self::committed(wait).await?;
        }
        Ok(())
    }

    /// Record the end of a run in the next group commit; `false` once committed if the run
    /// was no longer held by `end.worker` (its lease was lost).
    pub(crate) async fn end_run_grouped(&self, end: RunEnd) -> Result<bool, Error> {
        let wait = self.send(Op::End(end)).await?;
        Ok(Self::committed(wait).await? > 0)
    }

    /// Take the queue of step records and run ends for a writer that commits them in its own
    /// transactions, so that they share its commits; `None` if they are already written
    /// elsewhere. Until the taker drops it, nothing else writes them.
    pub(crate) fn adopt_step_jobs(&self) -> Option<StepJobs> {
        self.step_writer.adopt()
    }

    async fn send(&self, op: Op) -> Result<oneshot::Receiver<Result<u64, String>>, Error> {
        let (done, wait) = oneshot::channel();
        self.step_writer
            .sender(&self.writer_db, &self.write_gate)
            .send(Job { op, done })
            .await
            .map_err(|_| stopped())?;
        Ok(wait)
    }

    async fn committed(wait: oneshot::Receiver<Result<u64, String>>) -> Result<u64, Error> {
        wait.await
            .map_err(|_| stopped())?
            .map_err(|e| Error::Internal(format!("recording the run: {e}")))
    }
}

fn stopped() -> Error {
    Error::Unavailable("the step writer has stopped".into())
}

/// Shared by every clone of a [`Store`].
pub(crate) type SharedStepWriter = Arc<StepWriter>;

/// Write `batch` in a transaction of its own (the caller holds the write turn).
async fn write_batch(db: &DatabaseConnection, batch: &mut Vec<Job>) {
    match write_rows(db, batch.iter().map(|j| &j.op)).await {
        Ok(affected) => committed(batch, affected),
        Err(e) if batch.len() > 1 => {
            // One bad row must not fail its neighbours: retry them one by one.
            tracing::debug!(error = %e, size = batch.len(), "step batch failed; retrying rows singly");
            for job in batch.drain(..) {
                let res = write_rows(db, std::iter::once(&job.op))
                    .await
                    .map(|n| n[0])
                    .map_err(|e| e.to_string());
                answer(job, res);
            }
        }
        Err(e) => {
            for job in batch.drain(..) {
                answer(job, Err(e.to_string()));
            }
        }
    }
}

/// Write `batch` in the caller's transaction; once that commits, [`committed`] answers it.
/// If it fails, the batch is still whole, for [`write_in_turn`].
pub(crate) async fn write_in(txn: &DatabaseTransaction, batch: &[Job]) -> Result<Vec<u64>, DbErr> {
    write_ops(txn, batch.iter().map(|j| &j.op).collect()).await
}

/// Answer every job of a committed batch with the rows it affected.
pub(crate) fn committed(batch: &mut Vec<Job>, affected: Vec<u64>) {
    for (job, n) in batch.drain(..).zip(affected) {
        let _ = job.done.send(Ok(n));
    }
}

/// Tell the caller; a record nobody waits for (not durable) is logged when it failed.
fn answer(job: Job, res: Result<u64, String>) {
    if let Err(Err(e)) = job.done.send(res) {
        tracing::warn!(error = %e, "a step record could not be written; the run page will miss it");
    }
}

/// Rows per multi-row insert: a few fixed sizes, so that SQLite's statement cache keeps every
/// shape prepared instead of compiling a new statement for each batch length.
pub(crate) const CHUNKS: [usize; 4] = [64, 16, 4, 1];

/// `items` split greedily into pieces whose lengths are all in [`CHUNKS`].
pub(crate) fn fixed_chunks<T>(mut items: Vec<T>) -> Vec<Vec<T>> {
    let mut out = Vec::new();
    for size in CHUNKS {
        while items.len() >= size {
            let rest = items.split_off(size);
            out.push(std::mem::replace(&mut items, rest));
        }
    }
    out
}

async fn write_rows<'a>(
    db: &DatabaseConnection,
    ops: impl Iterator<Item = &'a Op>,
) -> Result<Vec<u64>, DbErr> {
    let ops: Vec<&Op> = ops.collect();
    let started = std::time::Instant::now();
    let affected = if db.get_database_backend() == DatabaseBackend::Sqlite {
        raw_sqlite::transaction(db, |txn| write_ops_raw(txn, &ops)).await?
    } else {
        let txn = db.begin().await?;
        let affected = write_ops(&txn, ops).await?;
        txn.commit().await?;
        affected
    };
    crate::metrics::group_commit("steps", affected.len(), started.elapsed());
    Ok(affected)
}

/// Step records first, several rows per statement; then the run ends (each after its own
/// run's records, all in the same transaction). Returns the rows each op affected.
async fn write_ops(txn: &DatabaseTransaction, ops: Vec<&Op>) -> Result<Vec<u64>, DbErr> {
    let rows = step_rows(&ops);
    rows::insert_then(txn, rows, STEP_UPSERT).await?;
    let ends: Vec<&RunEnd> = ops
        .iter()
        .filter_map(|op| match op {
            Op::End(end) => Some(end),
            Op::Step(_) => None,
        })
        .collect();
    let mut ended = HashSet::new();
    for chunk in fixed_chunks(ends) {
        ended.extend(end_runs(txn, &chunk).await?);
    }
    Ok(ops
        .iter()
        .map(|op| match op {
            Op::Step(_) => 1,
            Op::End(end) => u64::from(ended.contains(&end.id)),
        })
        .collect())
}

/// [`write_batch`] on SQLite's C API, on the caller's connection: the batch in one
/// transaction, or if that fails each record in one of its own.
pub(crate) fn write_alone_raw(txn: &mut raw_sqlite::Txn, batch: &mut Vec<Job>) {
    if batch.is_empty() {
        return;
    }
    let started = std::time::Instant::now();
    match txn.within(|t| write_in_raw(t, batch)) {
        Ok(affected) => {
            crate::metrics::group_commit("steps", affected.len(), started.elapsed());
            committed(batch, affected);
        }
        Err(e) if batch.len() > 1 => {
            tracing::debug!(error = %e, size = batch.len(), "step batch failed; retrying rows singly");
            for job in batch.drain(..) {
                let res = txn
                    .within(|t| write_ops_raw(t, &[&job.op]))
                    .map(|n| n[0])
                    .map_err(|e| e.to_string());
                answer(job, res);
            }
        }
        Err(e) => failed(batch, &e.to_string()),
    }
}

/// Fail every job of `batch` with `error`.
pub(crate) fn failed(batch: &mut Vec<Job>, error: &str) {
    for job in batch.drain(..) {
        answer(job, Err(error.to_string()));
    }
}

/// The step records among `ops`.
fn step_rows(ops: &[&Op]) -> Vec<step_runs::ActiveModel> {
    ops.iter()
        .filter_map(|op| match op {
            Op::Step(row) => Some(row.clone()),
            Op::End(_) => None,
        })
        .collect()
}

/// [`write_in`] in a transaction on SQLite's C API.
pub(crate) fn write_in_raw(txn: &mut raw_sqlite::Txn, batch: &[Job]) -> Result<Vec<u64>, DbErr> {
    let ops: Vec<&Op> = batch.iter().map(|j| &j.op).collect();
    write_ops_raw(txn, &ops)
}

/// [`write_ops`] on SQLite's C API: the records, then each run's end on its own.
fn write_ops_raw(txn: &mut raw_sqlite::Txn, ops: &[&Op]) -> Result<Vec<u64>, DbErr> {
    let rows = step_rows(ops);
    txn.insert(&rows::values(rows)?, STEP_UPSERT)?;
    let mut affected = Vec::with_capacity(ops.len());
    for op in ops {
        affected.push(match op {
            Op::Step(_) => 1,
            Op::End(end) => txn.execute(
                END_RUN,
                &[
                    end.status.clone().into(),
                    end.error.clone().into(),
                    end.output.clone().into(),
                    end.finished_at.into(),
                    end.id.clone().into(),
                    end.worker.clone().into(),
                ],
            )?,
        });
    }
    Ok(affected)
}

/// The end of one run, written if its worker still holds it (SQLite).
const END_RUN: &str = "UPDATE runs SET status = ?1, error = ?2, output = ?3, finished_at = ?4, \
    lease_until = NULL WHERE id = ?5 AND worker = ?6 AND status = 'running'";

/// A step record replaces an earlier one of the same step (a step run again on resume).
const STEP_UPSERT: &str = " ON CONFLICT (\"run_id\", \"step_id\") DO UPDATE SET \
    \"status\" = excluded.\"status\", \"input\" = excluded.\"input\", \
    \"output\" = excluded.\"output\", \"error\" = excluded.\"error\", \
    \"attempts\" = excluded.\"attempts\", \"started_at\" = excluded.\"started_at\", \
    \"duration_ms\" = excluded.\"duration_ms\"";

/// Write the ends of several runs in one statement; returns the ids of the runs still held by
/// their workers, which are the ones written.
async fn end_runs(txn: &DatabaseTransaction, ends: &[&RunEnd]) -> Result<Vec<String>, DbErr> {
    #[derive(FromQueryResult)]
    struct Ended {
        id: String,
    }
    let stmt = end_runs_stmt(txn.get_database_backend(), ends);
    Ok(Ended::find_by_statement(stmt)
        .all(txn)
        .await?
        .into_iter()
        .map(|e| e.id)
        .collect())
}

fn end_runs_stmt(backend: DatabaseBackend, ends: &[&RunEnd]) -> Statement {
    let mut values: Vec<DbValue> = Vec::with_capacity(ends.len() * 6);
    let mut rows = Vec::with_capacity(ends.len());
    for end in ends {
        let n = values.len();
        rows.push(match backend {
            DatabaseBackend::Postgres => format!(
                "(${}, ${}, ${}, ${}, ${}, ${}::bigint)",
                n + 1,
                n + 2,
                n + 3,
                n + 4,
                n + 5,
                n + 6
            ),
            _ => "(?, ?, ?, ?, ?, ?)".to_string(),
        });
        values.extend([
            end.id.clone().into(),
            end.worker.clone().into(),
            end.status.clone().into(),
            end.error.clone().into(),
            end.output.clone().into(),
            end.finished_at.into(),
        ]);
    }
    // Each run is found by its primary key. On PostgreSQL the check of its status is written so
    // that no index can serve it: otherwise it was planned as a scan of every running run in
    // `runs_waiting` (with the dead entries every claim and run end leave there until
    // vacuum) joined to these ids, reading up to 65 index entries per run it ended.
    let running = match backend {
        DatabaseBackend::Postgres => "runs.status || '' = 'running'",
        _ => "runs.status = 'running'",
    };
    let sql = format!(
        "WITH v (id, worker, status, error, output, finished_at) AS (VALUES {}) \
         UPDATE runs SET status = v.status, error = v.error, output = v.output, \
         finished_at = v.finished_at, lease_until = NULL \
         FROM v WHERE runs.id = v.id AND runs.worker = v.worker AND {running} \
         RETURNING runs.id",
        rows.join(", ")
    );
    Statement::from_sql_and_values(backend, sql, values)
}

#[cfg(test)]
mod tests {
    use sea_orm::{ActiveValue::Set, EntityTrait};

    use super::*;
    use crate::store::testing::{plan, temp_store};

    /// Run ends find each run by its primary key, never by walking the running runs.
    #[tokio::test]
    async fn run_ends_look_runs_up_by_id() {
        let (_dir, store) = temp_store().await;
        let end = |id: &str| RunEnd {
            id: id.into(),
            worker: "wrk_t".into(),
            status: "succeeded".into(),
            error: None,
            output: None,
            finished_at: 1,
        };
        let (a, b) = (end("run_a"), end("run_b"));
        let lines = plan(&store, end_runs_stmt(store.backend(), &[&a, &b])).await;
        assert!(
            lines
                .iter()
                .any(|l| l.contains("SEARCH runs USING INDEX sqlite_autoindex_runs_1 (id=?)")),
            "{lines:#?}"
        );
        assert!(
            !lines.iter().any(|l| l.contains("runs_waiting")),
            "{lines:#?}"
        );
        let pg = end_runs_stmt(DatabaseBackend::Postgres, &[&a]).sql;
        assert!(pg.contains("runs.status || '' = 'running'"), "{pg}");
    }

    /// A step run again (on resume) replaces its earlier record, in one multi-row statement
    /// with other records.
    #[tokio::test]
    async fn a_record_replaces_the_earlier_record_of_its_step() {
        let (_dir, store) = temp_store().await;
        let row = |step: &str, status: &str| step_runs::ActiveModel {
            run_id: Set("run_1".into()),
            step_id: Set(step.into()),
            status: Set(status.into()),
            input: Set(Some("{}".into())),
            output: Set(None),
            error: Set(Some(format!("{step} {status}"))),
            attempts: Set(1),
            started_at: Set(0),
            duration_ms: Set(0),
        };
        store
            .write_step_row(row("a", "failed"), true)
            .await
            .unwrap();
        let (first, second) = tokio::join!(
            store.write_step_row(row("a", "succeeded"), true),
            store.write_step_row(row("b", "succeeded"), true)
        );
        first.unwrap();
        second.unwrap();
        let mut rows = step_runs::Entity::find().all(&store.db).await.unwrap();
        rows.sort_by(|x, y| x.step_id.cmp(&y.step_id));
        let seen: Vec<(&str, &str, Option<&str>)> = rows
            .iter()
            .map(|r| (r.step_id.as_str(), r.status.as_str(), r.error.as_deref()))
            .collect();
        assert_eq!(
            seen,
            [
                ("a", "succeeded", Some("a succeeded")),
                ("b", "succeeded", Some("b succeeded"))
            ]
        );
    }

    #[test]
    fn fixed_chunks_cover_everything_in_order_with_few_shapes() {
        for n in [0, 1, 3, 4, 5, 17, 64, 100, 256] {
            let chunks = fixed_chunks((0..n).collect::<Vec<usize>>());
            assert!(chunks.iter().all(|c| CHUNKS.contains(&c.len())), "n = {n}");
            assert_eq!(chunks.concat(), (0..n).collect::<Vec<_>>());
        }
        let lens: Vec<usize> = fixed_chunks(vec![(); 89]).iter().map(Vec::len).collect();
        assert_eq!(lens, [64, 16, 4, 4, 1]);
    }
}
