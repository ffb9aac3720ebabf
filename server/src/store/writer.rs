//! Group commit: new events and runs that arrive together are written in one transaction, so
//! SQLite pays one fsync for a batch instead of one per webhook. Every caller still waits for
//! the commit that holds its row before answering. A new run that a free worker of this
//! process can take is written already claimed and handed over (see [`crate::handoff`]).

use std::{mem::take, sync::Arc};

use flows_engine::StepRecord;
use sea_orm::{
    ActiveValue, ConnectionTrait, DatabaseTransaction, DbErr, FromQueryResult, Set,
    TransactionTrait, TryIntoModel, Value as DbValue,
};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use super::{
    Store,
    entities::{events, runs, step_runs},
    now_ms, raw_sqlite, rows,
    steps::{self as step_writer, Job as StepJob, StepJobs},
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
        let (tx, rx) = mpsc::channel::<Job>(4 * MAX_BATCH);
        // On SQLite every commit waits its turn for the one write lock and pays an fsync: the
        // step records and run ends of running runs go into this task's transactions too, so a
        // turn commits both instead of each writer committing on its own.
        let steps = if store.is_postgres() {
            None
        } else {
            store.adopt_step_jobs()
        };
        let cx = Cx {
            store,
            handoff,
            queued: Arc::new(queued),
        };
        tokio::spawn(run(cx, rx, steps));
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
    queued: Queued,
}

/// Called after a commit that left new runs in the queue.
type Queued = Arc<dyn Fn() + Send + Sync>;

/// The writer task: commit what arrives until every [`Writer`] is gone, then go on writing
/// the adopted step records (if any) until the store is gone.
async fn run(cx: Cx, mut rx: mpsc::Receiver<Job>, steps: Option<StepJobs>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut out = Outlet::NotYet;
    let Some(mut steps) = steps else {
        while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
            out.write(&cx, &mut batch, &mut Vec::new()).await;
        }
        out.finish().await;
        return;
    };
    let mut records = Vec::with_capacity(step_writer::MAX_BATCH);
    loop {
        tokio::select! {
            n = rx.recv_many(&mut batch, MAX_BATCH) => if n == 0 { break },
            n = steps.recv_many(&mut records, step_writer::MAX_BATCH) => if n == 0 { return },
        }
        // Whatever else is already waiting goes into the same commit.
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        while records.len() < step_writer::MAX_BATCH {
            match steps.try_recv() {
                Ok(job) => records.push(job),
                Err(_) => break,
            }
        }
        out.write(&cx, &mut batch, &mut records).await;
    }
    out.finish().await;
    // No more webhooks: keep writing step records without holding the store.
    let (db, gate) = (cx.store.writer_db.clone(), cx.store.write_gate.clone());
    drop(cx);
    if !records.is_empty() {
        step_writer::write_in_turn(&db, &gate, &mut records).await;
    }
    step_writer::write_alone(steps, db, gate).await;
}

/// Where the writer task's batches go.
enum Outlet {
    /// Decided with the first batch.
    NotYet,
    /// SQLite: to the writer thread, which commits them and answers their senders itself; the
    /// task only hands them over, so the thread goes from one commit to the next without
    /// waiting for this task to wake up in between. Started with the first batch: its
    /// connection and its thread's heap are ≈ 1.2 MiB that a server which takes no webhooks
    /// does not need.
    Thread {
        thread: raw_sqlite::WriterThread,
        batches: mpsc::Sender<Pending>,
    },
    /// SQLite where the thread could not start (a database in memory has no file for a second
    /// connection): the same, on the pooled connection, from this task.
    Pooled,
    /// PostgreSQL: through sea-orm, from this task.
    Postgres,
}

/// Webhooks and step records handed to the writer thread.
struct Pending {
    jobs: Vec<Job>,
    records: Vec<StepJob>,
}

impl Outlet {
    /// Write `batch` and `records` (both left empty) and answer their senders.
    async fn write(&mut self, cx: &Cx, batch: &mut Vec<Job>, records: &mut Vec<StepJob>) {
        if let Outlet::NotYet = self {
            *self = Outlet::start(cx).await;
        }
        match self {
            Outlet::Thread { batches, .. } => {
                let pending = Pending {
                    jobs: take(batch),
                    records: take(records),
                };
                // If the thread has stopped, the senders dropped with `pending` are told.
                let _ = batches.send(pending).await;
            }
            Outlet::Pooled => {
                let sh = Shared::of(cx);
                let turn = cx.store.write_turn().await;
                let written = raw_sqlite::with_connection(&turn, |txn| {
                    write_batch_sqlite(txn, &sh, batch, records)
                })
                .await;
                if let Err(e) = written {
                    fail(batch, &e);
                    step_writer::failed(records, &e.to_string());
                }
            }
            Outlet::Postgres | Outlet::NotYet => write_batch(cx, batch, records).await,
        }
    }

    async fn start(cx: &Cx) -> Outlet {
        if cx.store.is_postgres() {
            return Outlet::Postgres;
        }
        let Some(thread) = raw_sqlite::WriterThread::start(&cx.store.writer_db).await else {
            return Outlet::Pooled;
        };
        // A few batches in hand: the thread merges whatever waits into its next commit.
        let (batches, rx) = mpsc::channel(64);
        let sh = Shared::of(cx);
        let gate = cx.store.write_gate.clone();
        let started = thread.spawn(move |txn| serve_batches(txn, rx, &sh, &gate));
        match started {
            Ok(()) => Outlet::Thread { thread, batches },
            Err(_) => Outlet::Pooled,
        }
    }

    /// Wait until the thread has written every batch handed to it.
    async fn finish(self) {
        if let Outlet::Thread { thread, batches } = self {
            drop(batches);
            let _ = thread.run(|_| ()).await;
        }
    }
}

/// What the writer thread shares with the task.
struct Shared {
    handoff: Arc<Handoff>,
    queued: Queued,
}

impl Shared {
    fn of(cx: &Cx) -> Shared {
        Shared {
            handoff: cx.handoff.clone(),
            queued: cx.queued.clone(),
        }
    }
}

/// The writer thread's loop: take what has been handed over, merge whatever else waits, take
/// the process's write turn and write it all in one commit; until the task lets go.
fn serve_batches(
    txn: &mut raw_sqlite::Txn,
    mut rx: mpsc::Receiver<Pending>,
    sh: &Shared,
    gate: &super::WriteGate,
) {
    while let Some(Pending {
        mut jobs,
        mut records,
    }) = rx.blocking_recv()
    {
        while jobs.len() < MAX_BATCH && records.len() < step_writer::MAX_BATCH {
            match rx.try_recv() {
                Ok(more) => {
                    jobs.extend(more.jobs);
                    records.extend(more.records);
                }
                Err(_) => break,
            }
        }
        let mut turns = gate.blocking_lock();
        *turns += 1;
        write_batch_sqlite(txn, sh, &mut jobs, &mut records);
    }
}

/// [`write_batch`] on SQLite, on a connection of the caller's.
fn write_batch_sqlite(
    txn: &mut raw_sqlite::Txn,
    sh: &Shared,
    batch: &mut Vec<Job>,
    records: &mut Vec<StepJob>,
) {
    if batch.is_empty() {
        step_writer::write_alone_raw(txn, records);
        return;
    }
    let e = match insert_all_sqlite(txn, sh, batch, records) {
        Ok(results) => return answer(batch, results),
        Err(e) => e,
    };
    if !records.is_empty() {
        tracing::debug!(error = %e, "combined commit failed; writing step records on their own");
        step_writer::write_alone_raw(txn, records);
    } else if batch.len() == 1 {
        return fail(batch, &e);
    }
    tracing::debug!(error = %e, size = batch.len(), "batch insert failed; retrying rows singly");
    for job in take(batch) {
        let mut one = vec![job];
        let res = insert_all_sqlite(txn, sh, &mut one, &mut Vec::new());
        match res {
            Ok(results) => answer(&mut one, results),
            Err(e) => fail(&mut one, &e),
        }
    }
}

/// [`insert_all`] on SQLite.
fn insert_all_sqlite(
    txn: &mut raw_sqlite::Txn,
    sh: &Shared,
    items: &mut [Job],
    records: &mut Vec<StepJob>,
) -> Result<Vec<Accepted>, DbErr> {
    let started = std::time::Instant::now();
    let (results, plan, affected) =
        txn.within(|t| write_sqlite(t, sh.handoff.clone(), items, records))?;
    after_commit(sh, items, records, plan, affected, started);
    Ok(results)
}

/// Answer each job of a committed batch.
fn answer(batch: &mut Vec<Job>, results: Vec<Accepted>) {
    for (job, res) in batch.drain(..).zip(results) {
        let _ = job.done.send(Ok(res));
    }
}

/// Fail each job of a batch with `e`.
fn fail(batch: &mut Vec<Job>, e: &DbErr) {
    for job in batch.drain(..) {
        let _ = job.done.send(Err(e.to_string()));
    }
}

/// Commit `batch` and `records` (step records and run ends) together. If that fails, the
/// records are written on their own first (they are older), then the webhooks as before.
async fn write_batch(cx: &Cx, batch: &mut Vec<Job>, records: &mut Vec<StepJob>) {
    if batch.is_empty() {
        step_writer::write_in_turn(&cx.store.writer_db, &cx.store.write_gate, records).await;
        return;
    }
    let e = match insert_all(cx, batch, records).await {
        Ok(results) => return answer(batch, results),
        Err(e) => e,
    };
    // A webhook that failed alone fails; otherwise each is tried again on its own, so that one
    // bad row does not fail its neighbours.
    if !records.is_empty() {
        tracing::debug!(error = %e, "combined commit failed; writing step records on their own");
        step_writer::write_in_turn(&cx.store.writer_db, &cx.store.write_gate, records).await;
    } else if batch.len() == 1 {
        return fail(batch, &e);
    }
    tracing::debug!(error = %e, size = batch.len(), "batch insert failed; retrying rows singly");
    for job in take(batch) {
        let mut one = vec![job];
        match insert_all(cx, &mut one, &mut Vec::new()).await {
            Ok(results) => answer(&mut one, results),
            Err(e) => fail(&mut one, &e),
        }
    }
}

/// Write `items` in one transaction (PostgreSQL); after the commit, hand over the runs
/// reserved for this process's workers and wake the workers for the rest.
async fn insert_all(
    cx: &Cx,
    items: &mut [Job],
    records: &mut Vec<StepJob>,
) -> Result<Vec<Accepted>, DbErr> {
    let turn = cx.store.write_turn().await;
    let started = std::time::Instant::now();
    let (results, plan, affected) = write_postgres(cx, &turn, items, records).await?;
    drop(turn);
    after_commit(&Shared::of(cx), items, records, plan, affected, started);
    Ok(results)
}

/// After the commit of `items` and `records`: count it, answer the records, hand over the runs
/// reserved for this process's workers, park the triggers of the queued ones and wake the
/// workers for them.
fn after_commit(
    sh: &Shared,
    items: &mut [Job],
    records: &mut Vec<StepJob>,
    mut plan: Plan,
    affected: Vec<u64>,
    started: std::time::Instant,
) {
    let took = started.elapsed();
    crate::metrics::group_commit("webhooks", items.len(), took);
    if !records.is_empty() {
        crate::metrics::group_commit("steps", records.len(), took);
        step_writer::committed(records, affected);
    }
    for (i, run) in take(&mut plan.handed.runs) {
        let (prior, trigger) = match items[i].item.ahead.take() {
            Some(a) => (a.records, Some(a.trigger)),
            None => (Vec::new(), None),
        };
        match run.try_into_model() {
            Ok(run) => sh.handoff.deliver(RunInHand {
                run,
                prior: Some(prior),
                trigger,
            }),
            // Unreachable (every column is set); the run is leased to this process and is
            // claimed again when the lease expires.
            Err(e) => tracing::error!(error = %e, "could not hand over a run"),
        }
    }
    for &i in &plan.parked {
        let item = &mut items[i].item;
        if let Some(ahead) = item.ahead.take() {
            sh.handoff.park(active_string(&item.run.id), ahead.trigger);
        }
    }
    if plan.queued {
        (sh.queued)();
    }
}

/// What a batch writes once its keys are claimed, and what becomes of its new runs.
struct Plan {
    events: Vec<events::ActiveModel>,
    runs: Vec<runs::ActiveModel>,
    /// Records of steps run ahead, for runs that ended as they were accepted and for runs
    /// handed over with them; a queued run leaves them out and its claimer computes those
    /// steps again (cheaper than reading their records back).
    steps: Vec<step_runs::ActiveModel>,
    handed: Handed,
    /// New runs left in the queue: their parsed triggers wait in `handoff` for the claim.
    parked: Vec<usize>,
    /// Some new run waits in the queue.
    queued: bool,
}

/// Runs reserved for this process's workers, written already claimed; given back to the
/// handover if the batch is not committed.
struct Handed {
    handoff: Arc<Handoff>,
    runs: Vec<(usize, runs::ActiveModel)>,
}

impl Drop for Handed {
    fn drop(&mut self) {
        for (_, run) in &self.runs {
            self.handoff.settle(active_str(&run.flow));
        }
    }
}

/// The rows of the items that queue a run (`results`), each new run claimed for a worker of
/// this process if one is free.
fn plan(handoff: Arc<Handoff>, items: &[Job], results: &[Accepted]) -> Plan {
    let now = now_ms();
    let fresh = (0..items.len()).filter(|&i| results[i] == Accepted::Queued);
    let mut plan = Plan {
        events: Vec::new(),
        runs: Vec::with_capacity(items.len()),
        steps: Vec::new(),
        handed: Handed {
            handoff: handoff.clone(),
            runs: Vec::new(),
        },
        parked: Vec::new(),
        queued: false,
    };
    for i in fresh {
        let item = &items[i].item;
        plan.events.extend(item.event.clone());
        let mut run = item.run.clone();
        let mut keep_steps = true;
        if active_str(&run.status) == "queued" {
            if ready(&run, now) && handoff.reserve(active_str(&run.flow)) {
                run.status = Set("running".into());
                run.worker = Set(Some(handoff.worker.clone()));
                run.lease_until = Set(Some(now + handoff.lease_ms));
                run.started_at = Set(Some(now));
                plan.handed.runs.push((i, run.clone()));
            } else {
                plan.queued = true;
                keep_steps = false;
                plan.parked.push(i);
            }
        }
        if let (true, Some(ahead)) = (keep_steps, &item.ahead) {
            plan.steps.extend(ahead.rows.iter().cloned());
        }
        plan.runs.push(run);
    }
    plan
}

type Written = (Vec<Accepted>, Plan, Vec<u64>);

/// The batch on SQLite, through its C API (see `raw_sqlite`): keys, new rows, then the records
/// of running runs, whose runs were committed long before.
fn write_sqlite(
    txn: &mut raw_sqlite::Txn,
    handoff: Arc<Handoff>,
    items: &[Job],
    records: &[StepJob],
) -> Result<Written, DbErr> {
    let mut results = Vec::with_capacity(items.len());
    for Job { item, seen, .. } in items {
        let mut res = match &item.dedupe {
            Some((key, expires_at)) => {
                let values = claim_values(item, key, *expires_at);
                if txn.execute(&super::sqlite_placeholders(CLAIM_KEY), &values)? > 0 {
                    Accepted::Queued
                } else {
                    duplicate(txn.query_text(&super::sqlite_placeholders(KEY_OWNER), &values[..2])?)
                }
            }
            None => Accepted::Queued,
        };
        if let (Accepted::Queued, Some(key)) = (&res, seen) {
            let values = item_values(item, key);
            if txn.execute(&super::sqlite_placeholders(REMEMBER_ITEM), &values)? == 0 {
                res = duplicate(
                    txn.query_text(&super::sqlite_placeholders(ITEM_OWNER), &values[..2])?,
                );
            }
        }
        results.push(res);
    }
    let mut plan = plan(handoff, items, &results);
    txn.insert(&rows::values(std::mem::take(&mut plan.events))?, "")?;
    txn.insert(&rows::values(std::mem::take(&mut plan.runs))?, "")?;
    txn.insert(&rows::values(std::mem::take(&mut plan.steps))?, "")?;
    let affected = step_writer::write_in_raw(txn, records)?;
    Ok((results, plan, affected))
}

/// The batch on PostgreSQL, in a transaction through sea-orm.
async fn write_postgres(
    cx: &Cx,
    db: &sea_orm::DatabaseConnection,
    items: &[Job],
    records: &[StepJob],
) -> Result<Written, DbErr> {
    let store = &cx.store;
    let txn = db.begin().await?;
    let mut results = Vec::with_capacity(items.len());
    for Job { item, seen, .. } in items {
        let mut res = match &item.dedupe {
            Some((key, expires_at)) => {
                let values = claim_values(item, key, *expires_at);
                let owner = store.stmt(KEY_OWNER, values[..2].to_vec());
                if txn
                    .execute_raw(store.stmt(CLAIM_KEY, values))
                    .await?
                    .rows_affected()
                    > 0
                {
                    Accepted::Queued
                } else {
                    duplicate(owner_of(&txn, owner).await?)
                }
            }
            None => Accepted::Queued,
        };
        if let (Accepted::Queued, Some(key)) = (&res, seen) {
            let values = item_values(item, key);
            let owner = store.stmt(ITEM_OWNER, values[..2].to_vec());
            if txn
                .execute_raw(store.stmt(REMEMBER_ITEM, values))
                .await?
                .rows_affected()
                == 0
            {
                res = duplicate(owner_of(&txn, owner).await?);
            }
        }
        results.push(res);
    }
    let mut plan = plan(cx.handoff.clone(), items, &results);
    rows::insert(&txn, std::mem::take(&mut plan.events)).await?;
    let runs = std::mem::take(&mut plan.runs);
    if !runs.is_empty() {
        rows::insert(&txn, runs).await?;
        if plan.queued {
            // Delivered to every listening process when (and only if) this commits.
            txn.execute_raw(store.stmt(
                "SELECT pg_notify($1, '')",
                vec![super::queue::RUNS_CHANNEL.into()],
            ))
            .await?;
        }
    }
    rows::insert(&txn, std::mem::take(&mut plan.steps)).await?;
    let affected = if records.is_empty() {
        Vec::new()
    } else {
        step_writer::write_in(&txn, records).await?
    };
    txn.commit().await?;
    Ok((results, plan, affected))
}

/// A new run that may start now (not one held back until later).
fn ready(run: &runs::ActiveModel, now: i64) -> bool {
    matches!(&run.available_at, ActiveValue::Set(at) if *at <= now)
}

/// Take a delivery's dedupe key for its run, unless a live one exists: the primary key
/// decides, in the same transaction as the run, so concurrent copies of one delivery start
/// exactly one run. Values: [`claim_values`].
const CLAIM_KEY: &str = "INSERT INTO dedupe_keys (flow, key, run_id, expires_at) \
    VALUES ($1, $2, $3, $4) ON CONFLICT (flow, key) DO UPDATE SET run_id = excluded.run_id, \
    expires_at = excluded.expires_at WHERE dedupe_keys.expires_at < $5";

/// The run that holds a dedupe key (flow, key).
const KEY_OWNER: &str = "SELECT run_id FROM dedupe_keys WHERE flow = $1 AND key = $2";

/// Remember a schedule item for the run's flow, unless it was already seen. Values:
/// [`item_values`].
const REMEMBER_ITEM: &str = "INSERT INTO schedule_items (flow, key, run_id, seen_at) \
    VALUES ($1, $2, $3, $4) ON CONFLICT (flow, key) DO NOTHING";

/// The first run of a schedule item (flow, key).
const ITEM_OWNER: &str = "SELECT run_id FROM schedule_items WHERE flow = $1 AND key = $2";

fn claim_values(item: &NewRun, key: &str, expires_at: i64) -> Vec<DbValue> {
    vec![
        active_string(&item.run.flow).into(),
        key.into(),
        active_string(&item.run.id).into(),
        expires_at.into(),
        now_ms().into(),
    ]
}

fn item_values(item: &NewRun, key: &str) -> Vec<DbValue> {
    vec![
        active_string(&item.run.flow).into(),
        key.into(),
        active_string(&item.run.id).into(),
        now_ms().into(),
    ]
}

/// A key or item already taken, by the run `owner` (empty if it has gone since).
fn duplicate(owner: Option<String>) -> Accepted {
    Accepted::Duplicate {
        run_id: owner.unwrap_or_default(),
    }
}

async fn owner_of(
    txn: &DatabaseTransaction,
    stmt: sea_orm::Statement,
) -> Result<Option<String>, DbErr> {
    #[derive(FromQueryResult)]
    struct Owner {
        run_id: String,
    }
    Ok(Owner::find_by_statement(stmt)
        .one(txn)
        .await?
        .map(|o| o.run_id))
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use sea_orm::{ConnectionTrait, NotSet, Statement};

    use super::*;
    use crate::store::testing::temp_store;

    fn new_run(id: &str) -> NewRun {
        let run = runs::ActiveModel {
            id: Set(id.into()),
            flow: Set("f".into()),
            version: Set(1),
            event_id: Set(None),
            status: Set("queued".into()),
            attempt: Set(1),
            trigger: Set("{}".into()),
            parent_run: Set(None),
            parent_step: Set(None),
            depth: Set(0),
            idempotency_key: Set(None),
            error: Set(None),
            output: Set(None),
            worker: Set(None),
            lease_until: Set(None),
            available_at: Set(0),
            created_at: Set(0),
            started_at: Set(None),
            finished_at: Set(None),
        };
        NewRun {
            event: None,
            run,
            dedupe: None,
            ahead: None,
        }
    }

    fn step(run_id: &str) -> step_runs::ActiveModel {
        step_runs::ActiveModel {
            run_id: Set(run_id.into()),
            step_id: Set("s".into()),
            status: Set("succeeded".into()),
            input: Set(None),
            output: Set(None),
            error: Set(None),
            attempts: Set(1),
            started_at: Set(0),
            duration_ms: Set(0),
        }
    }

    async fn count(store: &Store, sql: &str) -> i64 {
        let stmt = Statement::from_string(store.backend(), sql.to_string());
        let row = store.db.query_one_raw(stmt).await.unwrap().unwrap();
        row.try_get_by_index::<i64>(0).unwrap()
    }

    /// A writer whose handover is closed: every run it writes is queued.
    fn writer(store: &Store) -> Writer {
        let (handoff, _) = Handoff::new(4, 4, "wrk_test".into(), 30_000);
        Writer::start(store.clone(), Arc::new(handoff), || {})
    }

    /// While this test holds the write turn, the writer takes `run_1` and waits for the turn;
    /// then `record` and `run_2` arrive. Returns, once the turn is released, what became of
    /// each: `run_1`, the record, `run_2`.
    async fn behind_a_held_turn(
        store: &Store,
        writer: &Writer,
        record: step_runs::ActiveModel,
    ) -> (
        Result<Accepted, Error>,
        Result<(), Error>,
        Result<Accepted, Error>,
    ) {
        let turn = store.write_turn().await;
        let submit = |id: &'static str| {
            let w = writer.clone();
            tokio::spawn(async move { w.submit(new_run(id)).await })
        };
        let first = submit("run_1");
        tokio::time::sleep(Duration::from_millis(50)).await;
        let s = store.clone();
        let record = tokio::spawn(async move { s.write_step_row(record, true).await });
        let second = submit("run_2");
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop(turn);
        (
            first.await.unwrap(),
            record.await.unwrap(),
            second.await.unwrap(),
        )
    }

    /// Where the writer thread could not start, the batches go through the pooled connection,
    /// with the same answers: a new run, then a duplicate of its delivery.
    #[tokio::test]
    async fn without_its_thread_the_writer_writes_through_the_pool() {
        let (_dir, store) = temp_store().await;
        let (handoff, _) = Handoff::new(4, 4, "wrk_test".into(), 30_000);
        let cx = Cx {
            store: store.clone(),
            handoff: Arc::new(handoff),
            queued: Arc::new(|| {}),
        };
        let mut out = Outlet::Pooled;
        let mut answers = Vec::new();
        for id in ["run_1", "run_2"] {
            let (done, answer) = oneshot::channel();
            let item = NewRun {
                dedupe: Some(("delivery-1".into(), i64::MAX)),
                ..new_run(id)
            };
            let mut batch = vec![Job {
                item,
                seen: None,
                done,
            }];
            out.write(&cx, &mut batch, &mut Vec::new()).await;
            assert!(batch.is_empty());
            answers.push(answer.await.unwrap().unwrap());
        }
        assert_eq!(
            answers,
            [
                Accepted::Queued,
                Accepted::Duplicate {
                    run_id: "run_1".into()
                }
            ]
        );
        assert_eq!(count(&store, "SELECT COUNT(*) FROM runs").await, 1);
    }

    /// On SQLite, step records and run ends that wait while new webhooks are being written go
    /// into the next webhooks' transaction instead of one of their own.
    #[tokio::test]
    async fn step_records_share_the_commit_of_new_runs() {
        let (_dir, store) = temp_store().await;
        let writer = writer(&store);
        let before = store.write_turns().await;
        let (first, record, second) = behind_a_held_turn(&store, &writer, step("run_1")).await;
        assert_eq!(first.unwrap(), Accepted::Queued);
        record.unwrap();
        assert_eq!(second.unwrap(), Accepted::Queued);
        assert_eq!(
            store.write_turns().await - before,
            3,
            "the held turn, the first run's commit, then the record with the second run"
        );
        assert_eq!(count(&store, "SELECT COUNT(*) FROM runs").await, 2);
        assert_eq!(count(&store, "SELECT COUNT(*) FROM step_runs").await, 1);
    }

    /// A record that cannot be written fails alone: the webhook committed with it is written
    /// again on its own, and later records still go through.
    #[tokio::test]
    async fn a_bad_record_does_not_fail_the_runs_it_shared_a_commit_with() {
        let (_dir, store) = temp_store().await;
        let writer = writer(&store);
        // No status: the record cannot be written.
        let bad = step_runs::ActiveModel {
            status: NotSet,
            ..step("run_1")
        };
        let (first, record, second) = behind_a_held_turn(&store, &writer, bad).await;
        assert_eq!(first.unwrap(), Accepted::Queued);
        let err = record.unwrap_err().to_string();
        assert!(err.contains("status is not set"), "{err}");
        assert_eq!(second.unwrap(), Accepted::Queued);
        store.write_step_row(step("run_2"), true).await.unwrap();
        assert_eq!(count(&store, "SELECT COUNT(*) FROM runs").await, 2);
        assert_eq!(count(&store, "SELECT COUNT(*) FROM step_runs").await, 1);
    }
}
