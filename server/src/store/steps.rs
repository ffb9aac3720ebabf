//! Group commit for what running runs write: step records and the end of a run. Every finished
//! step is written before the steps after it start (a resumed run must not repeat it), and on
//! SQLite with `synchronous=FULL` each commit is an fsync. Runs executing side by side hand
//! these writes to one task that commits whatever has arrived in one transaction and then
//! answers every caller, so a step still proceeds only once its record is durable, but
//! concurrent runs share the fsync.

use std::sync::{Arc, OnceLock};

use sea_orm::{
    ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, Statement, TransactionTrait,
    sea_query::OnConflict,
};
use tokio::sync::{mpsc, oneshot};

use super::{Store, entities::step_runs};
use crate::error::Error;

/// Most records in one transaction.
const MAX_BATCH: usize = 256;

enum Op {
    /// Insert or replace a step record.
    Step(step_runs::ActiveModel),
    /// A single-row statement (the end of a run).
    Exec(Statement),
}

struct Job {
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
    fn sender(&self, db: &DatabaseConnection) -> &mpsc::Sender<Job> {
        self.tx.get_or_init(|| {
            // Bounded: a slow disk holds runs back instead of queueing records in memory.
            let (tx, mut rx) = mpsc::channel::<Job>(4 * MAX_BATCH);
            let db = db.clone();
            tokio::spawn(async move {
                let mut batch = Vec::with_capacity(MAX_BATCH);
                while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
                    write_batch(&db, &mut batch).await;
                }
            });
            tx
        })
    }
}

impl Store {
    /// Insert or replace one step record; returns once it is committed.
    pub(crate) async fn write_step_row(&self, row: step_runs::ActiveModel) -> Result<(), Error> {
        self.grouped(Op::Step(row)).await.map(|_| ())
    }

    /// Execute a write statement in the next group commit; returns the rows it affected once
    /// committed.
    pub(crate) async fn exec_grouped(&self, stmt: Statement) -> Result<u64, Error> {
        self.grouped(Op::Exec(stmt)).await
    }

    async fn grouped(&self, op: Op) -> Result<u64, Error> {
        let (done, wait) = oneshot::channel();
        let stopped = || Error::Unavailable("the step writer has stopped".into());
        self.step_writer
            .sender(&self.db)
            .send(Job { op, done })
            .await
            .map_err(|_| stopped())?;
        wait.await
            .map_err(|_| stopped())?
            .map_err(|e| Error::Internal(format!("recording the run: {e}")))
    }
}

/// Shared by every clone of a [`Store`].
pub(crate) type SharedStepWriter = Arc<StepWriter>;

async fn write_batch(db: &DatabaseConnection, batch: &mut Vec<Job>) {
    match write_rows(db, batch.iter().map(|j| &j.op)).await {
        Ok(affected) => {
            for (job, n) in batch.drain(..).zip(affected) {
                let _ = job.done.send(Ok(n));
            }
        }
        Err(e) if batch.len() > 1 => {
            // One bad row must not fail its neighbours: retry them one by one.
            tracing::debug!(error = %e, size = batch.len(), "step batch failed; retrying rows singly");
            for job in batch.drain(..) {
                let res = write_rows(db, std::iter::once(&job.op))
                    .await
                    .map(|n| n[0])
                    .map_err(|e| e.to_string());
                let _ = job.done.send(res);
            }
        }
        Err(e) => {
            for job in batch.drain(..) {
                let _ = job.done.send(Err(e.to_string()));
            }
        }
    }
}

async fn write_rows<'a>(
    db: &DatabaseConnection,
    ops: impl Iterator<Item = &'a Op>,
) -> Result<Vec<u64>, DbErr> {
    let txn = db.begin().await?;
    let mut affected = Vec::new();
    for op in ops {
        let n = match op {
            Op::Step(row) => {
                step_runs::Entity::insert(row.clone())
                    .on_conflict(
                        OnConflict::columns([step_runs::Column::RunId, step_runs::Column::StepId])
                            .update_columns([
                                step_runs::Column::Status,
                                step_runs::Column::Input,
                                step_runs::Column::Output,
                                step_runs::Column::Error,
                                step_runs::Column::Attempts,
                                step_runs::Column::StartedAt,
                                step_runs::Column::DurationMs,
                            ])
                            .to_owned(),
                    )
                    .exec_without_returning(&txn)
                    .await?
            }
            Op::Exec(stmt) => txn.execute_raw(stmt.clone()).await?.rows_affected(),
        };
        affected.push(n);
    }
    txn.commit().await?;
    Ok(affected)
}
