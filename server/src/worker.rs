//! The run workers: claim queued runs with a lease, execute them with the engine, record every
//! step as it finishes, and mark the run done. A run whose worker died is claimed again when its
//! lease expires and resumes after its last recorded step.

use std::{collections::HashMap, sync::Arc, time::Duration};

use async_trait::async_trait;
use flows_engine::{
    Dispatch, ExecError, RunInfo, RunStatus, StepRecord, StepSink,
    connector::{ChainRequest, DeliveryRequest},
    executor::{Env, execute},
    ids::new_id,
    secrets::RunSecrets,
};
use sea_orm::Set;
use serde_json::Value;
use tokio::sync::Semaphore;

use crate::{
    app::{App, AppState},
    error::Error,
    ingest::{Started, start_run},
    store::{
        deliveries::delivery_json,
        entities::{deliveries, runs},
        now_ms,
        runs::step_record,
    },
};

/// How long a claimed run is ours without a heartbeat.
pub const LEASE_MS: i64 = 30_000;
const HEARTBEAT: Duration = Duration::from_secs(10);
/// Fallback poll when no wake-up arrives (e.g. work queued by another process).
const POLL: Duration = Duration::from_secs(1);

/// Claim and execute runs until shutdown; at most `workers` at once.
pub async fn run_dispatcher(app: AppState) {
    let slots = Arc::new(Semaphore::new(app.cfg.workers.max(1)));
    let mut running = tokio::task::JoinSet::new();
    loop {
        let first = tokio::select! {
            _ = app.shutdown.cancelled() => break,
            p = slots.clone().acquire_owned() => p.expect("semaphore open"),
        };
        let want = 1 + slots.available_permits() as u64;
        let claimed = match app
            .store
            .claim_runs(&app.worker_id, want.min(64), LEASE_MS)
            .await
        {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "could not claim runs");
                Vec::new()
            }
        };
        if claimed.is_empty() {
            drop(first);
            tokio::select! {
                _ = app.shutdown.cancelled() => break,
                _ = app.wake_runs.notified() => {}
                _ = tokio::time::sleep(POLL) => {}
            }
            continue;
        }
        let mut permits = vec![first];
        for _ in 1..claimed.len() {
            permits.push(
                slots
                    .clone()
                    .try_acquire_owned()
                    .expect("counted free slots"),
            );
        }
        for (run, permit) in claimed.into_iter().zip(permits) {
            let app = app.clone();
            running.spawn(async move {
                execute_claimed(&app, run).await;
                drop(permit);
            });
        }
        // Reap finished tasks so the set does not grow.
        while running.try_join_next().is_some() {}
    }
    // Let running steps finish; their runs are recorded as usual.
    while running.join_next().await.is_some() {}
}

/// Execute one claimed run to its end (or until its lease is lost).
pub async fn execute_claimed(app: &App, run: runs::Model) {
    let id = run.id.clone();
    let heartbeat = {
        let store = app.store.clone();
        let (id, worker) = (id.clone(), app.worker_id.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(HEARTBEAT).await;
                match store.heartbeat_run(&id, &worker, LEASE_MS).await {
                    Ok(true) => {}
                    Ok(false) => return,
                    Err(e) => tracing::warn!(run = %id, error = %e, "lease heartbeat failed"),
                }
            }
        })
    };
    let result = execute_run(app, &run).await;
    heartbeat.abort();
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
    let trigger: Value = serde_json::from_str(&run.trigger)?;
    let prior: Vec<StepRecord> = app
        .store
        .run_steps(&run.id)
        .await?
        .iter()
        .filter_map(step_record)
        .collect();
    let secrets: HashMap<String, String> = if flow.secret_refs().is_empty() {
        HashMap::new()
    } else {
        app.store.load_secrets(&app.key).await?
    };
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

struct StoreSink<'a> {
    app: &'a App,
}

#[async_trait]
impl StepSink for StoreSink<'_> {
    async fn record(&self, run: &RunInfo, rec: &StepRecord) -> Result<(), String> {
        self.app
            .store
            .record_step(&run.id, rec)
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
            body: Set(req.body.to_string()),
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
        Ok(id)
    }

    async fn await_delivery(&self, delivery_id: &str) -> Result<Value, String> {
        loop {
            if self.app.shutdown.is_cancelled() {
                return Err(format!(
                    "stopped waiting for delivery {delivery_id}: hookflow is shutting down; retry the run to wait again"
                ));
            }
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
