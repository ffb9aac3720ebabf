//! The `schedule` trigger: fires scheduled flows on their interval or cron pattern. A tick either
//! starts one run, or calls the source's API (`poll`) and starts one run per new item of the
//! answer (`emit`), each item remembered durably by key so it never starts a second run. This is
//! reconciliation: pull what the webhooks may have missed.
//!
//! Every process runs this loop; a tick is taken with a lease on its `schedules` row, so exactly
//! one process fires it. A process that dies while firing leaves the tick to another after the
//! lease; firing again is harmless, because runs are keyed by tick and by item.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::Duration,
};

use async_trait::async_trait;
use flows_engine::{
    Dispatch, Issue, PreparedFlow, RunInfo, RunStatus, ScheduleTrigger, StepCx, Trigger,
    connector::{ChainRequest, DeliveryRequest},
    ids::new_id,
    issue::join_path,
    secrets::RunSecrets,
};
use sea_orm::Set;
use serde_json::{Value, json};

use crate::{
    app::{App, AppState},
    error::Error,
    store::{
        entities::runs,
        now_ms, rfc3339,
        writer::{Accepted, NewRun},
    },
};

/// Longest sleep between looks at the schedules (flows may change, other processes may fire).
const LOOK_EVERY: Duration = Duration::from_secs(1);
/// A tick being fired is held at least this long between heartbeats.
const MIN_TICK_LEASE_MS: i64 = 30_000;

/// Check a schedule trigger's `poll` (an http step) against the http connector, and its
/// secrets against the stored ones.
pub fn validate(
    app: &App,
    s: &ScheduleTrigger,
    at: &str,
    secret_exists: &dyn Fn(&str) -> bool,
) -> Vec<Issue> {
    let Some(poll) = &s.poll else {
        return Vec::new();
    };
    let at = join_path(at, "trigger.poll");
    let Some(http) = app.registry.get("http") else {
        return vec![Issue::new(at, "the http connector is not available")];
    };
    match http.prepare(poll) {
        Ok(exec) => exec
            .secret_refs()
            .into_iter()
            .filter(|n| !secret_exists(n))
            .map(|n| {
                Issue::new(
                    at.clone(),
                    format!("unknown secret '{n}'; set it first (hookflow secret set {n})"),
                )
            })
            .collect(),
        Err(issues) => issues.into_iter().map(|i| i.under(&at)).collect(),
    }
}

/// Fire due ticks until shutdown.
pub async fn run_scheduler(app: AppState) {
    let mut synced: HashMap<String, String> = HashMap::new();
    loop {
        let wait = match look(&app, &mut synced).await {
            Ok(next) => next
                .map(|at| Duration::from_millis((at - now_ms()).clamp(20, 1000) as u64))
                .unwrap_or(LOOK_EVERY),
            Err(e) => {
                tracing::warn!(error = %e, "scheduler: could not read schedules");
                LOOK_EVERY
            }
        };
        tokio::select! {
            _ = app.shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// Scheduled flows of the catalog: name → (version, flow).
fn scheduled(app: &App) -> HashMap<String, (i64, Arc<PreparedFlow>)> {
    app.catalog
        .names()
        .into_iter()
        .filter_map(|n| {
            let (v, f) = app.catalog.current(&n)?;
            matches!(f.flow.trigger, Trigger::Schedule(_)).then_some((n, (v, f)))
        })
        .collect()
}

/// Sync the schedule rows with the catalog, fire what is due; returns when the next tick is due.
async fn look(app: &App, synced: &mut HashMap<String, String>) -> Result<Option<i64>, Error> {
    let flows = scheduled(app);
    let now = now_ms();
    let names: HashSet<&String> = flows.keys().collect();
    if synced.len() != names.len() || synced.keys().any(|k| !names.contains(k)) {
        app.store
            .drop_schedules_except(&flows.keys().cloned().collect::<Vec<_>>())
            .await?;
        synced.retain(|k, _| names.contains(k));
    }
    for (name, (_, flow)) in &flows {
        let Trigger::Schedule(s) = &flow.flow.trigger else {
            continue;
        };
        let spec = s.spec();
        if synced.get(name) != Some(&spec) {
            let first = s.next_after(now).unwrap_or(i64::MAX);
            app.store.sync_schedule(name, &spec, first).await?;
            synced.insert(name.clone(), spec);
        }
    }
    let mut next_due: Option<i64> = None;
    let rows = app.store.schedules().await?;
    // A row removed by another process (whose flow list was momentarily older) is put back on
    // the next look.
    synced.retain(|name, _| rows.iter().any(|r| &r.flow == name));
    for row in rows {
        let Some((version, flow)) = flows.get(&row.flow) else {
            continue;
        };
        let held = row.lease_until.is_some_and(|l| l >= now);
        if row.next_at > now || held || !flow.flow.enabled {
            if !held && flow.flow.enabled {
                next_due = Some(next_due.map_or(row.next_at, |d| d.min(row.next_at)));
            }
            continue;
        }
        fire_if_ours(app, &row.flow, *version, flow).await?;
    }
    Ok(next_due)
}

/// Take the tick (unless another process did), fire it and schedule the next one.
async fn fire_if_ours(
    app: &App,
    name: &str,
    version: i64,
    flow: &Arc<PreparedFlow>,
) -> Result<(), Error> {
    let Trigger::Schedule(s) = &flow.flow.trigger else {
        return Ok(());
    };
    let lease_ms = app.cfg.reliability.lease_ms.max(MIN_TICK_LEASE_MS);
    let Some(due_at) = app.store.claim_tick(name, &app.worker_id, lease_ms).await? else {
        return Ok(());
    };
    let keep = {
        let (store, name, owner) = (app.store.clone(), name.to_string(), app.worker_id.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis((lease_ms / 3) as u64)).await;
                let _ = store.extend_tick(&name, &owner, lease_ms).await;
            }
        })
    };
    let result = fire(app, name, version, s, due_at).await;
    keep.abort();
    let error = match &result {
        Ok(n) => {
            metrics::counter!("hookflow_schedule_ticks_total", "flow" => name.to_string(), "status" => "ok").increment(1);
            metrics::counter!("hookflow_schedule_runs_total", "flow" => name.to_string())
                .increment(*n as u64);
            tracing::debug!(flow = name, runs = n, "schedule fired");
            None
        }
        Err(e) => {
            metrics::counter!("hookflow_schedule_ticks_total", "flow" => name.to_string(), "status" => "failed").increment(1);
            tracing::warn!(flow = name, error = %e, "schedule tick failed; the next tick tries again");
            Some(e.clone())
        }
    };
    // Missed ticks (the server was down) collapse into this one: the next is after now.
    let now = now_ms();
    let next = s.next_after(now.max(due_at)).unwrap_or(i64::MAX);
    app.store
        .finish_tick(name, &app.worker_id, now, next, error)
        .await
}

/// Fire one tick; returns how many runs it started.
async fn fire(
    app: &App,
    name: &str,
    version: i64,
    s: &ScheduleTrigger,
    due_at: i64,
) -> Result<usize, String> {
    let tick = json!({"scheduled_at": rfc3339(due_at)});
    let Some(poll) = &s.poll else {
        return queue(app, name, version, tick, Key::Tick(due_at)).await;
    };
    let answer = call_poll(app, name, version, poll, due_at).await?;
    let Some(emit) = &s.emit else {
        return queue(app, name, version, answer, Key::Tick(due_at)).await;
    };
    let items = match emit.items.eval(&answer) {
        Value::Array(items) => items,
        Value::Null => Vec::new(),
        one => vec![one],
    };
    let mut started = 0;
    for item in items {
        let key = match emit.key.eval(&item) {
            Value::String(k) if !k.is_empty() => k,
            Value::Number(n) => n.to_string(),
            other => {
                tracing::warn!(flow = name, key = %other, "schedule item without a usable key (a string or number) is skipped");
                continue;
            }
        };
        started += queue(app, name, version, item, Key::Item(key)).await?;
    }
    Ok(started)
}

/// What makes a scheduled run unique: its tick, or the item it was started for.
enum Key {
    Tick(i64),
    Item(String),
}

/// Queue one run (once per tick or per item); 1 if it was started now, 0 if it already was.
async fn queue(
    app: &App,
    flow: &str,
    version: i64,
    body: Value,
    key: Key,
) -> Result<usize, String> {
    let now = now_ms();
    let trigger = json!({
        "method": "SCHEDULE", "path": null, "headers": {}, "query": {},
        "body": body, "received_at": rfc3339(now), "source": null,
    });
    let tick_key = match &key {
        Key::Tick(at) => Some(format!("schedule:{flow}:{at}")),
        Key::Item(_) => None,
    };
    if let Some(k) = &tick_key
        && app
            .store
            .find_run_by_key(k)
            .await
            .map_err(|e| e.to_string())?
            .is_some()
    {
        return Ok(0);
    }
    let run = runs::ActiveModel {
        id: Set(new_id("run")),
        flow: Set(flow.to_string()),
        version: Set(version),
        event_id: Set(None),
        status: Set(RunStatus::Queued.as_str().to_string()),
        attempt: Set(1),
        trigger: Set(trigger.to_string()),
        parent_run: Set(None),
        parent_step: Set(None),
        depth: Set(0),
        idempotency_key: Set(tick_key),
        error: Set(None),
        output: Set(None),
        worker: Set(None),
        lease_until: Set(None),
        available_at: Set(now),
        created_at: Set(now),
        started_at: Set(None),
        finished_at: Set(None),
    };
    let new = NewRun {
        event: None,
        run,
        dedupe: None,
        ahead: None,
    };
    let accepted = match key {
        Key::Tick(_) => app.writer.submit(new).await,
        Key::Item(k) => app.writer.submit_item(new, k).await,
    }
    .map_err(|e| e.to_string())?;
    Ok(usize::from(accepted == Accepted::Queued))
}

/// Call the poll request; its output is `{status, headers, body}`.
async fn call_poll(
    app: &App,
    flow: &str,
    version: i64,
    poll: &serde_json::Map<String, Value>,
    due_at: i64,
) -> Result<Value, String> {
    let http = app
        .registry
        .get("http")
        .ok_or("the http connector is not available")?;
    let exec = http.prepare(poll).map_err(|issues| {
        let list: Vec<String> = issues.iter().map(ToString::to_string).collect();
        format!("poll is not a valid http step: {}", list.join("; "))
    })?;
    let secrets: HashMap<String, String> = if exec.secret_refs().is_empty() {
        HashMap::new()
    } else {
        app.store
            .load_secrets(&app.key)
            .await
            .map_err(|e| e.to_string())?
    };
    let secrets = RunSecrets::new(&secrets);
    let run = RunInfo {
        id: format!("tick_{flow}_{due_at}"),
        flow: flow.to_string(),
        version,
        attempt: 1,
        depth: 0,
    };
    let ctx = json!({
        "trigger": {"method": "SCHEDULE", "body": {"scheduled_at": rfc3339(due_at)}, "received_at": rfc3339(now_ms())},
        "input": {"scheduled_at": rfc3339(due_at)}, "steps": {},
        "run": {"id": run.id, "flow": flow, "attempt": 1},
    });
    let cx = StepCx {
        ctx: (&ctx).into(),
        secrets: &secrets,
        run: &run,
        step_id: "poll",
        dispatch: &NoDispatch,
    };
    match exec.run(&cx).await {
        Ok(out) => {
            let mut answer = out.output;
            secrets.redact(&mut answer);
            Ok(answer)
        }
        Err(f) => Err(format!("poll failed: {}", secrets.redact_str(&f.error))),
    }
}

/// A poll request is a plain http step: it never chains or delivers.
struct NoDispatch;

#[async_trait]
impl Dispatch for NoDispatch {
    async fn chain(&self, _: ChainRequest) -> Result<String, String> {
        Err("a poll request cannot chain".into())
    }
    async fn deliver(&self, _: DeliveryRequest) -> Result<String, String> {
        Err("a poll request cannot deliver".into())
    }
    async fn await_delivery(&self, _: &str) -> Result<Value, String> {
        Err("a poll request cannot deliver".into())
    }
}
