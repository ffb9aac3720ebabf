//! The run workers: claim queued runs with a lease, execute them with the engine, record every
//! step as it finishes, and mark the run done. A run whose worker died is claimed again when its
//! lease expires and resumes after its last recorded step.

use std::{collections::HashMap, time::Duration};

use async_trait::async_trait;
use flows_engine::{
    Dispatch, ExecError, PreparedFlow, RunInfo, RunStatus, StepRecord, StepSink,
    connector::{ChainRequest, DeliveryRequest},
    executor::{Env, execute},
    ids::new_id,
    secrets::RunSecrets,
};
use sea_orm::Set;
use serde_json::Value;
use tokio::task::JoinSet;

use crate::{
    app::{App, AppState},
    error::Error,
    handoff::{Handed, RunInHand, Slot},
    ingest::{Started, start_run},
    store::{
        deliveries::delivery_json,
        entities::{deliveries, runs},
        now_ms,
        queue::{Claimed, DELIVERIES_CHANNEL},
        runs::step_record,
    },
};

/// How long a claimed run is ours without a heartbeat (default of `--lease-ms`).
pub const LEASE_MS: i64 = 30_000;
/// Fallback poll when no wake-up arrives (a lost `NOTIFY`, a lease that expired elsewhere).
const POLL: Duration = Duration::from_secs(1);
/// Most runs claimed in one statement.
const MAX_CLAIM: usize = 64;

/// Claim and execute runs until shutdown: at most `--workers` at once, and at most the per-flow
/// cap of any one flow, so that a slow flow cannot occupy every worker. Runs this process
/// queued while a worker was free arrive in `handed` without a claim. On shutdown, running
/// runs get the grace period to finish; the rest are handed back to the queue.
pub async fn run_dispatcher(app: AppState, mut handed: Handed) {
    let workers = app.cfg.workers.max(1);
    let lease_ms = app.cfg.reliability.lease_ms;
    let slots = &app.handoff;
    let mut running: JoinSet<()> = JoinSet::new();
    // A run gives its slot back once executed, while its end may still wait for its commit;
    // tasks still waiting so are bounded too, for claims and handovers alike: a process that
    // dies leaves at most this many runs whose last step may run again elsewhere.
    let most_tasks = workers * 2;
    // While a backlog waits, claim again only once several runs have ended, not once per
    // finished run: every claim is a statement (and on SQLite a commit) of its own.
    let batch = (workers / 8).max(1);
    // The last claim took all it could: every slot it asked for, or a flow up to its cap.
    // More runs are probably waiting.
    let mut backlog = false;
    // Runs may wait in the queue: at start, after a wake-up or a poll, and while a claim
    // leaves runs behind (a backlog, or flows at their cap). Otherwise no claim is made: new
    // runs are handed over or wake the dispatcher.
    let mut waiting = true;
    // Look for runs whose lease expired (their process died) in the next claim: at start and
    // then once per poll, since a lease runs for many polls and the search reads every
    // running run.
    let mut expired = true;
    // Leases of other processes expire without telling anyone: look at the queue now and then
    // whatever else happens.
    let mut poll = tokio::time::interval(POLL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let spawn = |running: &mut JoinSet<()>, run: RunInHand, via: &'static str| {
        let app = app.clone();
        let slot = app.handoff.slot(run.run.flow.clone());
        metrics::counter!("hookflow_runs_started_total", "flow" => run.run.flow.clone(), "via" => via)
            .increment(1);
        running.spawn(async move { execute_claimed(&app, run, slot).await });
    };
    loop {
        while let Some(res) = running.try_join_next() {
            reap(res);
        }
        // A run handed over while the tasks are at their bound waits in the channel (leased to
        // this process, its slot taken) until one ends.
        while running.len() < most_tasks {
            let Ok(run) = handed.try_recv() else { break };
            spawn(&mut running, run, "handoff");
        }
        let free = slots.free();
        let mut claimed_all = false;
        let ended = slots.freed_since_claim();
        if waiting && free > 0 && running.len() < most_tasks && (!backlog || ended >= batch) {
            let want = free.min(MAX_CLAIM);
            let mut budget = slots.begin_claim();
            // A flow at its cap keeps its runs in the queue whatever this claim finds.
            let held_back = budget.at_cap();
            match app
                .store
                .claim_runs(&app.worker_id, want as u64, lease_ms, &budget, expired)
                .await
            {
                Ok(claimed) => {
                    expired = false;
                    claimed_all = claimed.len() == want;
                    let mut capped = false;
                    for Claimed { run, first_start } in claimed {
                        // Against the budget the claim was given: runs that gave their slots
                        // back meanwhile do not make a full claim look like a short one.
                        budget.take(&run.flow);
                        capped |= budget.room(&run.flow) == 0;
                        slots.claimed(&run.flow);
                        let run = slots.claimed_run(run, first_start);
                        spawn(&mut running, run, "claim");
                    }
                    backlog = claimed_all || capped;
                    waiting = backlog || held_back;
                    slots.end_claim(!waiting);
                }
                Err(e) => tracing::warn!(error = %e, "could not claim runs"),
            }
        }
        if claimed_all && slots.free() > 0 && running.len() < most_tasks {
            continue; // there may be more waiting
        }
        tokio::select! {
            _ = app.shutdown.cancelled() => break,
            Some(res) = running.join_next(), if !running.is_empty() => reap(res),
            _ = slots.freed.notified() => {}
            Some(run) = handed.recv(), if running.len() < most_tasks => spawn(&mut running, run, "handoff"),
            _ = app.wake_runs.notified() => waiting = true,
            _ = poll.tick() => {
                waiting = true;
                backlog = false;
                expired = true;
            }
        }
    }
    slots.close();
    // Runs handed over but not started are leased to this process: `drain` hands them back.
    handed.close();
    while let Ok(taken) = handed.try_recv() {
        slots.settle(&taken.run.flow);
    }
    drain(&app, running).await;
}

/// A run task ended; its slot was given back by the task (or by its drop).
fn reap(res: Result<(), tokio::task::JoinError>) {
    if let Err(e) = res
        && e.is_panic()
    {
        tracing::error!(error = %e, "a run task panicked; the run resumes after its lease");
    }
}

/// Shutdown: give running runs the grace period, then stop them and hand back every run this
/// process still holds, so other processes resume them now rather than after the lease.
async fn drain(app: &App, mut running: JoinSet<()>) {
    let grace = app.cfg.reliability.shutdown_grace;
    if !running.is_empty() {
        tracing::info!(
            runs = running.len(),
            grace_s = grace.as_secs_f64(),
            "waiting for running runs to finish"
        );
    }
    let deadline = tokio::time::Instant::now() + grace;
    while !running.is_empty() {
        tokio::select! {
            _ = running.join_next() => {}
            _ = tokio::time::sleep_until(deadline) => break,
        }
    }
    if !running.is_empty() {
        tracing::warn!(
            runs = running.len(),
            "grace period over; unfinished runs go back to the queue"
        );
        running.abort_all();
        while running.join_next().await.is_some() {}
    }
    match app.store.release_runs_of(&app.worker_id).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(runs = n, "handed runs back to the queue"),
        Err(e) => {
            tracing::error!(error = %e, "could not hand runs back; they resume when their lease expires")
        }
    }
}

/// Extends a lease until dropped (also when the task holding it is aborted).
struct Heartbeat(tokio::task::JoinHandle<()>);

impl Heartbeat {
    fn start(app: &App, run_id: &str) -> Heartbeat {
        let lease_ms = app.cfg.reliability.lease_ms;
        let every = Duration::from_millis((lease_ms / 3).max(10) as u64);
        let store = app.store.clone();
        let (id, worker) = (run_id.to_string(), app.worker_id.clone());
        Heartbeat(tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                match store.heartbeat_run(&id, &worker, lease_ms).await {
                    Ok(true) => {}
                    Ok(false) => return,
                    Err(e) => tracing::warn!(run = %id, error = %e, "lease heartbeat failed"),
                }
            }
        }))
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Execute one claimed run to its end (or until its lease is lost). Its worker slot is given
/// back once it has executed, before its end is committed.
pub async fn execute_claimed(app: &App, taken: RunInHand, slot: Slot) {
    let RunInHand {
        run,
        prior,
        trigger,
    } = taken;
    let id = run.id.clone();
    let heartbeat = Heartbeat::start(app, &id);
    let result = execute_run(app, &run, prior, trigger).await;
    drop(heartbeat);
    drop(slot);
    match result {
        Ok((status, error, output)) => {
            let output = serde_json::to_string(&output).ok();
            match app
                .store
                .finish_run(&id, &app.worker_id, status.as_str(), error, output)
                .await
            {
                Ok(true) => {
                    metrics::counter!("hookflow_runs_total", "flow" => run.flow.clone(), "status" => status.as_str()).increment(1);
                }
                Ok(false) => {
                    tracing::warn!(run = %id, "lost the lease before finishing; another worker owns the run")
                }
                Err(e) => {
                    tracing::error!(run = %id, error = %e, "could not record the end of the run; it will be resumed")
                }
            }
        }
        Err(e) => {
            tracing::error!(run = %id, error = %e, "run interrupted; it will be resumed after its lease expires")
        }
    }
    app.waiters.finished(&id);
}

/// Run the engine on a claimed run. Problems that are the flow's fault end the run `failed`;
/// problems of the store leave it to be resumed.
async fn execute_run(
    app: &App,
    run: &runs::Model,
    prior: Option<Vec<StepRecord>>,
    trigger: Option<Value>,
) -> Result<(RunStatus, Option<String>, Value), Error> {
    let flow = match app
        .catalog
        .version(&app.store, &app.registry, &run.flow, run.version)
        .await
    {
        Ok(f) => f,
        Err(Error::NotFound(msg)) => return Ok((RunStatus::Failed, Some(msg), Value::Null)),
        Err(e) => return Err(e),
    };
    let trigger: Value = match trigger {
        Some(t) => t,
        None => serde_json::from_str(&run.trigger)?,
    };
    let prior = match prior {
        Some(p) => p,
        None => app
            .store
            .run_steps(run)
            .await?
            .iter()
            // A finished step whose payloads were not saved (`--save-steps`) cannot feed the
            // steps after it, so it runs again.
            .filter(|s| !(s.status == "succeeded" && s.output.is_none()))
            .filter_map(step_record)
            .collect(),
    };
    let secrets = flow_secrets(app, &flow).await?;
    let run_secrets = RunSecrets::new(&secrets);
    let info = RunInfo {
        id: run.id.clone(),
        flow: run.flow.clone(),
        version: run.version,
        attempt: run.attempt as u32,
        depth: run.depth as u32,
    };
    let dispatch = StoreDispatch { app };
    let sink = StoreSink { app };
    let env = Env {
        secrets: &run_secrets,
        dispatch: &dispatch,
        sink: &sink,
        pure_only: false,
    };
    match execute(&flow, &trigger, &info, prior, &env).await {
        Ok(outcome) => {
            let mut output = outcome.output;
            run_secrets.redact(&mut output);
            Ok((outcome.status, outcome.error, output))
        }
        Err(ExecError::Sink { step, error }) => {
            Err(Error::Internal(format!("recording step '{step}': {error}")))
        }
    }
}

/// The decrypted secrets a run of `flow` needs (none if it references none).
pub async fn flow_secrets(
    app: &App,
    flow: &PreparedFlow,
) -> Result<HashMap<String, String>, Error> {
    if flow.secret_refs().is_empty() {
        Ok(HashMap::new())
    } else {
        app.store.load_secrets(&app.key).await
    }
}

struct StoreSink<'a> {
    app: &'a App,
}

#[async_trait]
impl StepSink for StoreSink<'_> {
    async fn record(&self, run: &RunInfo, rec: &StepRecord, durable: bool) -> Result<(), String> {
        self.app
            .store
            .record_step(&run.id, rec, durable)
            .await
            .map_err(|e| e.to_string())
    }
}

/// Chaining and deliveries, written durably before the step that asked for them completes.
pub struct StoreDispatch<'a> {
    pub app: &'a App,
}

#[async_trait]
impl Dispatch for StoreDispatch<'_> {
    async fn chain(&self, req: ChainRequest) -> Result<String, String> {
        let app = self.app;
        // A resumed step finds the run it already queued.
        if let Some(existing) = app
            .store
            .find_run_by_key(&req.key)
            .await
            .map_err(|e| e.to_string())?
        {
            return Ok(existing.id);
        }
        let (version, _) = app
            .catalog
            .current(&req.flow)
            .ok_or_else(|| format!("flow '{}' does not exist", req.flow))?;
        let parent = Some((
            req.source
                .get("run_id")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            req.source
                .get("step")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
        ));
        let started = Started {
            body: req.body,
            source: req.source,
            depth: req.depth as i32,
            parent,
            key: Some(req.key.clone()),
            method: "POST",
        };
        match start_run(app, &req.flow, version, started).await {
            Ok(id) => Ok(id),
            // Lost a race with another attempt of the same step: theirs stands.
            Err(e) => match app.store.find_run_by_key(&req.key).await {
                Ok(Some(existing)) => Ok(existing.id),
                _ => Err(e.to_string()),
            },
        }
    }

    async fn deliver(&self, req: DeliveryRequest) -> Result<String, String> {
        let now = now_ms();
        let first_delay = self
            .app
            .cfg
            .delivery_schedule
            .0
            .first()
            .map_or(0, |d| d.as_millis() as i64);
        let row = deliveries::ActiveModel {
            id: Set(new_id("msg")),
            run_id: Set(req.run_id),
            step_id: Set(req.step_id),
            url: Set(req.url),
            body: Set(crate::store::to_json_text(&req.body)),
            secret: Set(req.secret),
            status: Set("pending".into()),
            attempts: Set(0),
            next_attempt_at: Set(now + first_delay),
            lease_until: Set(None),
            last_status: Set(None),
            last_error: Set(None),
            idempotency_key: Set(req.key.clone()),
            created_at: Set(now),
            updated_at: Set(now),
        };
        let id = self
            .app
            .store
            .insert_delivery(row, &req.key)
            .await
            .map_err(|e| e.to_string())?;
        self.app.wake_deliveries.notify_one();
        self.app.store.notify(DELIVERIES_CHANNEL).await;
        Ok(id)
    }

    async fn await_delivery(&self, delivery_id: &str) -> Result<Value, String> {
        // On shutdown the wait goes on through the grace period; after it the run is handed
        // back and the step waits again wherever the run resumes.
        loop {
            let d = self
                .app
                .store
                .get_delivery(delivery_id)
                .await
                .map_err(|e| e.to_string())?;
            let d = d.ok_or_else(|| format!("delivery {delivery_id} vanished"))?;
            if d.status != "pending" {
                return Ok(delivery_json(&d));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}
