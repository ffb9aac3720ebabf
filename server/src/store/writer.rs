//! Group commit: new events and runs that arrive together are written in one transaction, so
//! SQLite pays one fsync for a batch instead of one per webhook. Every caller still waits for
//! the commit that holds its row before answering. A new run that a free worker of this
//! process can take is written already claimed and handed over (see [`crate::handoff`]).

use std::sync::Arc;

use flows_engine::StepRecord;
use sea_orm::{
    ActiveValue, ConnectionTrait, DatabaseTransaction, DbErr, FromQueryResult, Set,
    TransactionTrait, TryIntoModel,
};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use super::{
    Store,
    entities::{events, runs, step_runs},
    now_ms, rows,
};
use crate::{
    error::Error,
    handoff::{Handoff, RunInHand},
};

/// A run to queue, with the inbound event that started it (if any).
pub struct NewRun {
    pub event: Option<events::ActiveModel>,
    pub run: runs::ActiveModel,
    /// A delivery id to dedupe on, and when its window ends (ms).
    pub dedupe: Option<(String, i64)>,
    /// Steps that already ran as the run was accepted (see `ingest`): their records, written
    /// with the run, and what the worker it may be handed to needs of them.
    pub ahead: Option<Ahead>,
}

/// Steps run ahead of the queue.
pub struct Ahead {
    pub rows: Vec<step_runs::ActiveModel>,
    pub records: Vec<StepRecord>,
    pub trigger: Value,
}

/// What became of a submitted run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Accepted {
    Queued,
    /// The same delivery id was seen within its window: nothing was queued.
    Duplicate {
        run_id: String,
    },
}

struct Job {
    item: NewRun,
    /// A schedule item key: the run is queued only if the flow has not seen this item before.
    seen: Option<String>,
    done: oneshot::Sender<Result<Accepted, String>>,
}

/// Handle to the writer task.
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Job>,
}

/// Most rows in one transaction; bounds commit latency under a burst.
const MAX_BATCH: usize = 512;

impl Writer {
    /// Start the writer task. `queued` is called after a commit that queued runs (to wake the
    /// workers); runs that `handoff` takes go straight to this process's workers instead.
    pub fn start(
        store: Store,
        handoff: Arc<Handoff>,
        queued: impl Fn() + Send + Sync + 'static,
    ) -> Writer {
        // Bounded: when the database falls behind, callers wait here instead of piling up memory.
        let (tx, mut rx) = mpsc::channel::<Job>(4 * MAX_BATCH);
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(MAX_BATCH);
            let cx = Cx {
                store,
                handoff,
                queued: Box::new(queued),
            };
            while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
                write_batch(&cx, &mut batch).await;
            }
        });
        Writer { tx }
    }

    /// Queue `item` and wait until it is committed.
    pub async fn submit(&self, item: NewRun) -> Result<Accepted, Error> {
        self.send(item, None).await
    }

    /// Queue `item` unless its flow already emitted the schedule item `key` (remembered in the
    /// same transaction, so each item starts exactly one run).
    pub async fn submit_item(&self, item: NewRun, key: String) -> Result<Accepted, Error> {
        self.send(item, Some(key)).await
    }

    async fn send(&self, item: NewRun, seen: Option<String>) -> Result<Accepted, Error> {
        let (done, wait) = oneshot::channel();
        self.tx
            .send(Job { item, seen, done })
            .await
            .map_err(|_| Error::Unavailable("the writer has stopped".into()))?;
        match wait.await {
            Ok(Ok(a)) => Ok(a),
            Ok(Err(e)) => Err(Error::Unavailable(format!(
                "could not store the event: {e}"
            ))),
            Err(_) => Err(Error::Unavailable("the writer has stopped".into())),
        }
    }
}

/// What the writer task works with.
struct Cx {
    store: Store,
    handoff: Arc<Handoff>,
    queued: Box<dyn Fn() + Send + Sync>,
}

async fn write_batch(cx: &Cx, batch: &mut Vec<Job>) {
    let mut items: Vec<(&mut NewRun, Option<&str>)> = batch
        .iter_mut()
        .map(|j| (&mut j.item, j.seen.as_deref()))
        .collect();
    match insert_all(cx, &mut items).await {
        Ok(results) => {
            for (job, res) in batch.drain(..).zip(results) {
                let _ = job.done.send(Ok(res));
            }
        }
        Err(e) if batch.len() > 1 => {
            // One bad row must not fail its neighbours: retry them one by one.
            tracing::debug!(error = %e, size = batch.len(), "batch insert failed; retrying rows singly");
            for mut job in batch.drain(..) {
                let res = insert_all(cx, &mut [(&mut job.item, job.seen.as_deref())])
                    .await
                    .map(|mut r| r.remove(0))
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

/// Write `items` in one transaction; after the commit, hand over the runs reserved for this
/// process's workers and wake the workers for the rest.
async fn insert_all(
    cx: &Cx,
    items: &mut [(&mut NewRun, Option<&str>)],
) -> Result<Vec<Accepted>, DbErr> {
    let store = &cx.store;
    let turn = store.write_turn().await;
    let started = std::time::Instant::now();
    let txn = turn.begin().await?;
    let mut results = Vec::with_capacity(items.len());
    for (item, seen) in items.iter() {
        let mut res = match &item.dedupe {
            Some((key, expires_at)) => claim_key(store, &txn, item, key, *expires_at).await?,
            None => Accepted::Queued,
        };
        if let (Accepted::Queued, Some(key)) = (&res, seen) {
            res = remember_item(store, &txn, item, key).await?;
        }
        results.push(res);
    }
    // Indices of the items that queue a run (not duplicates).
    let fresh: Vec<usize> = (0..items.len())
        .filter(|&i| results[i] == Accepted::Queued)
        .collect();
    let evs: Vec<events::ActiveModel> = fresh
        .iter()
        .filter_map(|&i| items[i].0.event.clone())
        .collect();
    rows::insert(&txn, evs).await?;
    let now = now_ms();
    let mut rs: Vec<runs::ActiveModel> = Vec::with_capacity(fresh.len());
    let mut handed: Vec<(usize, runs::ActiveModel)> = Vec::new();
    // New runs left in the queue: their parsed triggers wait in `handoff` for the claim.
    let mut parked: Vec<usize> = Vec::new();
    let mut queued = false;
    let handoff = &cx.handoff;
    // Records of steps run ahead are written for runs that ended as they were accepted and for
    // runs handed over with them; a queued run leaves them out and its claimer computes those
    // steps again (cheaper than reading their records back).
    let mut steps: Vec<step_runs::ActiveModel> = Vec::new();
    for &i in &fresh {
        let mut run = items[i].0.run.clone();
        let mut keep_steps = true;
        if active_str(&run.status) == "queued" {
            if ready(&run, now) && handoff.reserve(active_str(&run.flow)) {
                run.status = Set("running".into());
                run.worker = Set(Some(handoff.worker.clone()));
                run.lease_until = Set(Some(now + handoff.lease_ms));
                run.started_at = Set(Some(now));
                handed.push((i, run.clone()));
            } else {
                queued = true;
                keep_steps = false;
                parked.push(i);
            }
        }
        if let (true, Some(ahead)) = (keep_steps, &items[i].0.ahead) {
            steps.extend(ahead.rows.iter().cloned());
        }
        rs.push(run);
    }
    let written = match write_runs(store, &txn, rs, queued).await {
        Ok(()) => rows::insert(&txn, steps).await,
        Err(e) => Err(e),
    };
    let written = match written {
        Ok(()) => txn.commit().await,
        Err(e) => Err(e),
    };
    if let Err(e) = written {
        for (_, run) in &handed {
            handoff.settle(active_str(&run.flow));
        }
        return Err(e);
    }
    crate::metrics::group_commit("webhooks", items.len(), started.elapsed());
    for (i, run) in handed {
        let (prior, trigger) = match items[i].0.ahead.take() {
            Some(a) => (a.records, Some(a.trigger)),
            None => (Vec::new(), None),
        };
        match run.try_into_model() {
            Ok(run) => handoff.deliver(RunInHand {
                run,
                prior: Some(prior),
                trigger,
            }),
            // Unreachable (every column is set); the run is leased to this process and is
            // claimed again when the lease expires.
            Err(e) => tracing::error!(error = %e, "could not hand over a run"),
        }
    }
    for i in parked {
        let item = &mut *items[i].0;
        if let Some(ahead) = item.ahead.take() {
            handoff.park(active_string(&item.run.id), ahead.trigger);
        }
    }
    if queued {
        (cx.queued)();
    }
    Ok(results)
}

/// A new run that may start now (not one held back until later).
fn ready(run: &runs::ActiveModel, now: i64) -> bool {
    matches!(&run.available_at, ActiveValue::Set(at) if *at <= now)
}

/// Insert the new runs; `queued`: some wait in the queue, so other processes are told.
async fn write_runs(
    store: &Store,
    txn: &DatabaseTransaction,
    rs: Vec<runs::ActiveModel>,
    queued: bool,
) -> Result<(), DbErr> {
    if !rs.is_empty() {
        rows::insert(txn, rs).await?;
        if queued && store.is_postgres() {
            // Delivered to every listening process when (and only if) this commits.
            txn.execute_raw(store.stmt(
                "SELECT pg_notify($1, '')",
                vec![super::queue::RUNS_CHANNEL.into()],
            ))
            .await?;
        }
    }
    Ok(())
}

/// Take the dedupe key for this run, unless a live one exists: the primary key decides, in the
/// same transaction as the run, so concurrent copies of one delivery start exactly one run.
async fn claim_key(
    store: &Store,
    txn: &DatabaseTransaction,
    item: &NewRun,
    key: &str,
    expires_at: i64,
) -> Result<Accepted, DbErr> {
    let flow = active_string(&item.run.flow);
    let run_id = active_string(&item.run.id);
    let stmt = store.stmt(
        "INSERT INTO dedupe_keys (flow, key, run_id, expires_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (flow, key) DO UPDATE SET run_id = excluded.run_id, expires_at = excluded.expires_at \
         WHERE dedupe_keys.expires_at < $5",
        vec![flow.clone().into(), key.into(), run_id.into(), expires_at.into(), now_ms().into()],
    );
    if txn.execute_raw(stmt).await?.rows_affected() > 0 {
        return Ok(Accepted::Queued);
    }
    #[derive(FromQueryResult)]
    struct Existing {
        run_id: String,
    }
    let stmt = store.stmt(
        "SELECT run_id FROM dedupe_keys WHERE flow = $1 AND key = $2",
        vec![flow.into(), key.into()],
    );
    let existing = Existing::find_by_statement(stmt).one(txn).await?;
    Ok(Accepted::Duplicate {
        run_id: existing.map(|e| e.run_id).unwrap_or_default(),
    })
}

/// Remember a schedule item for the run's flow; `Duplicate` (with the first run) if already seen.
async fn remember_item(
    store: &Store,
    txn: &DatabaseTransaction,
    item: &NewRun,
    key: &str,
) -> Result<Accepted, DbErr> {
    let flow = active_string(&item.run.flow);
    let stmt = store.stmt(
        "INSERT INTO schedule_items (flow, key, run_id, seen_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (flow, key) DO NOTHING",
        vec![
            flow.clone().into(),
            key.into(),
            active_string(&item.run.id).into(),
            now_ms().into(),
        ],
    );
    if txn.execute_raw(stmt).await?.rows_affected() > 0 {
        return Ok(Accepted::Queued);
    }
    #[derive(FromQueryResult)]
    struct Existing {
        run_id: String,
    }
    let stmt = store.stmt(
        "SELECT run_id FROM schedule_items WHERE flow = $1 AND key = $2",
        vec![flow.into(), key.into()],
    );
    let existing = Existing::find_by_statement(stmt).one(txn).await?;
    Ok(Accepted::Duplicate {
        run_id: existing.map(|e| e.run_id).unwrap_or_default(),
    })
}

fn active_string(v: &ActiveValue<String>) -> String {
    active_str(v).to_string()
}

fn active_str(v: &ActiveValue<String>) -> &str {
    match v {
        ActiveValue::Set(s) | ActiveValue::Unchanged(s) => s,
        ActiveValue::NotSet => "",
    }
}
