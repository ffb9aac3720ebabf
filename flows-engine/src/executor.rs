//! Runs a prepared flow: walks the step DAG, runs every step whose dependencies are done
//! concurrently, and hands each finished step to a [`StepSink`] before its dependents start, so a
//! resumed run never repeats a finished step.

use std::{fmt, time::Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::{StreamExt, stream::FuturesUnordered};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::{
    connector::{Dispatch, StepCx},
    flow::OnError,
    secrets::RunSecrets,
    validate::PreparedFlow,
};

/// Who this run is.
#[derive(Debug, Clone)]
pub struct RunInfo {
    pub id: String,
    pub flow: String,
    pub version: i64,
    pub attempt: u32,
    /// How many chaining hops led to this run (0 for a run started by a webhook).
    pub depth: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
    Filtered,
    Cancelled,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    Pending,
    Running,
    Succeeded,
    Failed,
    Stopped,
    Skipped,
}

macro_rules! status_names {
    ($t:ty { $($v:ident = $s:literal),* $(,)? }) => {
        impl $t {
            pub const ALL: &'static [$t] = &[$(<$t>::$v),*];
            pub fn as_str(self) -> &'static str {
                match self { $(<$t>::$v => $s),* }
            }
            pub fn parse(s: &str) -> Option<Self> {
                match s { $($s => Some(<$t>::$v),)* _ => None }
            }
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

status_names!(RunStatus { Queued = "queued", Running = "running", Succeeded = "succeeded", Failed = "failed", Filtered = "filtered", Cancelled = "cancelled" });
status_names!(StepStatus { Pending = "pending", Running = "running", Succeeded = "succeeded", Failed = "failed", Stopped = "stopped", Skipped = "skipped" });

impl RunStatus {
    pub fn is_final(self) -> bool {
        !matches!(self, RunStatus::Queued | RunStatus::Running)
    }
}

/// One step execution, as recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    pub step_id: String,
    pub status: StepStatus,
    pub input: Value,
    pub output: Option<Value>,
    pub error: Option<String>,
    pub attempts: u32,
    pub started_at: DateTime<Utc>,
    pub duration_ms: u64,
}

/// Where finished steps go (the database, or a list in tests).
#[async_trait]
pub trait StepSink: Send + Sync {
    async fn record(&self, run: &RunInfo, rec: &StepRecord) -> Result<(), String>;
}

#[derive(Debug, Clone, PartialEq)]
pub struct RunOutcome {
    pub status: RunStatus,
    pub error: Option<String>,
    /// The output of the last step (in document order) that succeeded; the trigger body if none.
    pub output: Value,
    pub records: Vec<StepRecord>,
}

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// A step result could not be recorded; the run must not be marked finished.
    #[error("could not record step '{step}': {error}")]
    Sink { step: String, error: String },
}

/// What a run needs from the outside world.
pub struct Env<'a> {
    pub secrets: &'a RunSecrets<'a>,
    pub dispatch: &'a dyn Dispatch,
    pub sink: &'a dyn StepSink,
}

/// Run `flow` for `trigger`. `prior` holds step records to keep (a resumed or retried run): those
/// steps are not run again.
pub async fn execute(
    flow: &PreparedFlow,
    trigger: &Value,
    run: &RunInfo,
    prior: Vec<StepRecord>,
    env: &Env<'_>,
) -> Result<RunOutcome, ExecError> {
    let steps = &flow.flow.steps;
    let n = steps.len();
    let mut done: Vec<Option<StepRecord>> = vec![None; n];
    for rec in prior {
        if let Some(i) = steps.iter().position(|s| s.id == rec.step_id) {
            done[i] = Some(rec);
        }
    }
    let mut started: Vec<bool> = done.iter().map(Option::is_some).collect();
    let mut failure = first_failure(flow, &done);
    let run_ctx = json!({"id": run.id, "flow": run.flow, "attempt": run.attempt});
    let mut running = FuturesUnordered::new();

    loop {
        // Start (or skip) every step whose dependencies are done; skipping may unblock more.
        let mut progressed = true;
        while progressed && failure.is_none() {
            progressed = false;
            for i in 0..n {
                let deps = &flow.nodes[i].deps;
                if started[i] || !deps.iter().all(|&d| done[d].is_some()) {
                    continue;
                }
                started[i] = true;
                let blocked = deps.iter().any(|&d| {
                    matches!(done[d].as_ref().map(|r| r.status), Some(StepStatus::Stopped | StepStatus::Skipped))
                });
                if blocked {
                    let rec = StepRecord {
                        step_id: steps[i].id.clone(),
                        status: StepStatus::Skipped,
                        input: Value::Null,
                        output: None,
                        error: None,
                        attempts: 0,
                        started_at: Utc::now(),
                        duration_ms: 0,
                    };
                    record(env, run, &rec).await?;
                    done[i] = Some(rec);
                    progressed = true;
                    continue;
                }
                let input = step_input(deps, steps, &done, trigger);
                let ctx = json!({"trigger": trigger, "input": input, "steps": outputs(steps, &done), "run": run_ctx});
                running.push(run_step(flow, i, ctx, run, env));
            }
        }
        let Some((i, rec)) = running.next().await else { break };
        record(env, run, &rec).await?;
        if rec.status == StepStatus::Failed && steps[i].on_error == OnError::Fail && failure.is_none() {
            failure = Some(format!("step '{}' failed: {}", rec.step_id, rec.error.as_deref().unwrap_or("unknown error")));
        }
        done[i] = Some(rec);
    }

    let records: Vec<StepRecord> = done.into_iter().flatten().collect();
    let status = if failure.is_some() {
        RunStatus::Failed
    } else if records.iter().any(|r| r.status == StepStatus::Stopped) {
        RunStatus::Filtered
    } else {
        RunStatus::Succeeded
    };
    let output = steps
        .iter()
        .rev()
        .find_map(|s| records.iter().find(|r| r.step_id == s.id && r.status == StepStatus::Succeeded))
        .and_then(|r| r.output.clone())
        .unwrap_or_else(|| trigger.get("body").cloned().unwrap_or(Value::Null));
    Ok(RunOutcome { status, error: failure, output, records })
}

async fn record(env: &Env<'_>, run: &RunInfo, rec: &StepRecord) -> Result<(), ExecError> {
    env.sink.record(run, rec).await.map_err(|error| ExecError::Sink { step: rec.step_id.clone(), error })
}

/// A failure already among the kept records (a run resumed after it failed but before it was
/// marked so).
fn first_failure(flow: &PreparedFlow, done: &[Option<StepRecord>]) -> Option<String> {
    done.iter().enumerate().find_map(|(i, r)| match r {
        Some(r) if r.status == StepStatus::Failed && flow.flow.steps[i].on_error == OnError::Fail => {
            Some(format!("step '{}' failed: {}", r.step_id, r.error.as_deref().unwrap_or("unknown error")))
        }
        _ => None,
    })
}

async fn run_step(flow: &PreparedFlow, i: usize, ctx: Value, run: &RunInfo, env: &Env<'_>) -> (usize, StepRecord) {
    let step = &flow.flow.steps[i];
    let started_at = Utc::now();
    let clock = Instant::now();
    let cx = StepCx { ctx: &ctx, secrets: env.secrets, run, step_id: &step.id, dispatch: env.dispatch };
    let result = flow.nodes[i].exec.run(&cx).await;
    let duration_ms = clock.elapsed().as_millis() as u64;
    let mut input = ctx.get("input").cloned().unwrap_or(Value::Null);
    let (status, mut output, error, attempts) = match result {
        Ok(o) if o.proceed => (StepStatus::Succeeded, Some(o.output), None, o.attempts),
        Ok(o) => (StepStatus::Stopped, Some(o.output), None, o.attempts),
        Err(f) => {
            let error = env.secrets.redact_str(&f.error);
            let output = match step.on_error {
                OnError::Continue => Some(json!({"error": error})),
                OnError::Fail => f.output,
            };
            (StepStatus::Failed, output, Some(error), f.attempts)
        }
    };
    env.secrets.redact(&mut input);
    if let Some(o) = output.as_mut() {
        env.secrets.redact(o);
    }
    metrics::histogram!("hookflow_step_duration_seconds", "type" => step.kind.clone(), "status" => status.as_str())
        .record(duration_ms as f64 / 1000.0);
    (i, StepRecord { step_id: step.id.clone(), status, input, output, error, attempts, started_at, duration_ms })
}

/// The input of a step: the output of its one dependency, an object keyed by id for several,
/// the trigger body for none.
fn step_input(deps: &[usize], steps: &[crate::flow::Step], done: &[Option<StepRecord>], trigger: &Value) -> Value {
    let out = |d: usize| done[d].as_ref().and_then(|r| r.output.clone()).unwrap_or(Value::Null);
    match deps {
        [] => trigger.get("body").cloned().unwrap_or(Value::Null),
        [d] => out(*d),
        many => Value::Object(many.iter().map(|&d| (steps[d].id.clone(), out(d))).collect()),
    }
}

fn outputs(steps: &[crate::flow::Step], done: &[Option<StepRecord>]) -> Value {
    let map: Map<String, Value> = done
        .iter()
        .enumerate()
        .filter_map(|(i, r)| Some((steps[i].id.clone(), r.as_ref()?.output.clone()?)))
        .collect();
    Value::Object(map)
}
