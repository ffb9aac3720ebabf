//! Runs a prepared flow: walks the step DAG, runs every step whose dependencies are done
//! concurrently, and hands each finished step to a [`StepSink`] before its dependents start, so a
//! resumed run never repeats a finished step.

use std::{fmt, sync::OnceLock, time::Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::{StreamExt, stream::FuturesUnordered};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::{
    connector::{Dispatch, StepCx},
    context::{Ctx, Parts},
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
    /// Record a finished step. `durable`: return only once the record is committed (the step
    /// had effects outside the run, see [`StepExec::has_effects`](crate::StepExec::has_effects)).
    /// Otherwise the record may be committed later, but no later than the next durable record
    /// or the end of the run.
    async fn record(&self, run: &RunInfo, rec: &StepRecord, durable: bool) -> Result<(), String>;
}

#[derive(Debug, Clone, PartialEq)]
pub struct RunOutcome {
    pub status: RunStatus,
    pub error: Option<String>,
    /// The output of the last step (in document order) that succeeded; the trigger body if none.
    pub output: Value,
    pub records: Vec<StepRecord>,
    /// `false`: steps with effects were held back ([`Env::pure_only`]) and the run goes on in a
    /// later `execute` with these records; `status` is then `Running`.
    pub complete: bool,
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
    /// Start only steps without effects (transform, filter), which can run before the run is
    /// even stored: a step with effects is held back, and so is everything after it.
    pub pure_only: bool,
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
    let mut held_back = false;
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
                let blocked = deps.iter().any(|&d| {
                    matches!(
                        done[d].as_ref().map(|r| r.status),
                        Some(StepStatus::Stopped | StepStatus::Skipped)
                    )
                });
                if env.pure_only && !blocked && flow.nodes[i].exec.has_effects() {
                    held_back = true;
                    continue;
                }
                started[i] = true;
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
                    record(env, run, &rec, false).await?;
                    done[i] = Some(rec);
                    progressed = true;
                    continue;
                }
                let input = step_input(deps, steps, &done, trigger);
                let outputs = outputs(steps, &done);
                let start = StepStart {
                    trigger,
                    input,
                    outputs,
                    run_ctx: &run_ctx,
                };
                running.push(run_step(flow, i, start, run, env));
            }
        }
        let Some((i, rec)) = running.next().await else {
            break;
        };
        // A step with effects is committed before anything after it starts; when nothing
        // does (the run's last step), the end of the run commits it.
        let last = running.is_empty() && started.iter().all(|&s| s);
        record(env, run, &rec, flow.nodes[i].exec.has_effects() && !last).await?;
        if rec.status == StepStatus::Failed
            && steps[i].on_error == OnError::Fail
            && failure.is_none()
        {
            failure = Some(format!(
                "step '{}' failed: {}",
                rec.step_id,
                rec.error.as_deref().unwrap_or("unknown error")
            ));
        }
        done[i] = Some(rec);
    }

    let records: Vec<StepRecord> = done.into_iter().flatten().collect();
    let complete = failure.is_some() || !held_back;
    let status = if !complete {
        RunStatus::Running
    } else if failure.is_some() {
        RunStatus::Failed
    } else if records.iter().any(|r| r.status == StepStatus::Stopped) {
        RunStatus::Filtered
    } else {
        RunStatus::Succeeded
    };
    let output = steps
        .iter()
        .rev()
        .find_map(|s| {
            records
                .iter()
                .find(|r| r.step_id == s.id && r.status == StepStatus::Succeeded)
        })
        .and_then(|r| r.output.clone())
        .unwrap_or_else(|| trigger.get("body").cloned().unwrap_or(Value::Null));
    Ok(RunOutcome {
        status,
        error: failure,
        output,
        records,
        complete,
    })
}

async fn record(
    env: &Env<'_>,
    run: &RunInfo,
    rec: &StepRecord,
    durable: bool,
) -> Result<(), ExecError> {
    env.sink
        .record(run, rec, durable)
        .await
        .map_err(|error| ExecError::Sink {
            step: rec.step_id.clone(),
            error,
        })
}

/// A failure already among the kept records (a run resumed after it failed but before it was
/// marked so).
fn first_failure(flow: &PreparedFlow, done: &[Option<StepRecord>]) -> Option<String> {
    done.iter().enumerate().find_map(|(i, r)| match r {
        Some(r)
            if r.status == StepStatus::Failed && flow.flow.steps[i].on_error == OnError::Fail =>
        {
            Some(format!(
                "step '{}' failed: {}",
                r.step_id,
                r.error.as_deref().unwrap_or("unknown error")
            ))
        }
        _ => None,
    })
}

/// What a step starts with: its input and the outputs before it, and the run's trigger and
/// identity, borrowed (see [`crate::context`]).
struct StepStart<'a> {
    trigger: &'a Value,
    input: Value,
    outputs: Value,
    run_ctx: &'a Value,
}

async fn run_step(
    flow: &PreparedFlow,
    i: usize,
    start: StepStart<'_>,
    run: &RunInfo,
    env: &Env<'_>,
) -> (usize, StepRecord) {
    let step = &flow.flow.steps[i];
    let started_at = Utc::now();
    let clock = Instant::now();
    let whole = OnceLock::new();
    let cx = StepCx {
        ctx: Ctx::Parts(Parts {
            trigger: start.trigger,
            input: &start.input,
            steps: &start.outputs,
            run: start.run_ctx,
            whole: &whole,
        }),
        secrets: env.secrets,
        run,
        step_id: &step.id,
        dispatch: env.dispatch,
    };
    let result = flow.nodes[i].exec.run(&cx).await;
    let duration_ms = clock.elapsed().as_millis() as u64;
    let mut input = start.input;
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
    (
        i,
        StepRecord {
            step_id: step.id.clone(),
            status,
            input,
            output,
            error,
            attempts,
            started_at,
            duration_ms,
        },
    )
}

/// The input of a step: the output of its one dependency, an object keyed by id for several,
/// the trigger body for none.
fn step_input(
    deps: &[usize],
    steps: &[crate::flow::Step],
    done: &[Option<StepRecord>],
    trigger: &Value,
) -> Value {
    let out = |d: usize| {
        done[d]
            .as_ref()
            .and_then(|r| r.output.clone())
            .unwrap_or(Value::Null)
    };
    match deps {
        [] => trigger.get("body").cloned().unwrap_or(Value::Null),
        [d] => out(*d),
        many => Value::Object(
            many.iter()
                .map(|&d| (steps[d].id.clone(), out(d)))
                .collect(),
        ),
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

#[cfg(test)]
mod tests {
    use std::{
        collections::HashMap,
        sync::{Arc, Mutex},
        time::Duration,
    };

    use serde_json::Map;

    use super::*;
    use crate::{
        connector::{
            ChainRequest, Connector, DeliveryRequest, Registry, StepCx, StepExec, StepFailure,
            StepOutcome,
        },
        issue::Issue,
        validate::{ValidateCx, prepare},
    };

    /// Test step: sleeps `ms`, then fails when `fail` is set, stops when `stop` is set, else
    /// outputs `{"id", "input"}`; without effects outside the run when `pure` is set. Counts its
    /// invocations.
    #[derive(Debug)]
    struct Probe {
        ms: u64,
        fail: bool,
        stop: bool,
        pure: bool,
        calls: Arc<Mutex<Vec<String>>>,
    }

    #[async_trait]
    impl StepExec for Probe {
        async fn run(&self, cx: &StepCx<'_>) -> Result<StepOutcome, StepFailure> {
            self.calls.lock().unwrap().push(cx.step_id.to_string());
            tokio::time::sleep(Duration::from_millis(self.ms)).await;
            if self.fail {
                return Err(StepFailure::new("boom"));
            }
            let output = json!({"id": cx.step_id, "input": cx.ctx.input()});
            Ok(StepOutcome {
                output,
                attempts: 1,
                proceed: !self.stop,
            })
        }
        fn summary(&self) -> String {
            "probe".into()
        }
        fn secret_refs(&self) -> Vec<String> {
            Vec::new()
        }
        fn has_effects(&self) -> bool {
            !self.pure
        }
    }

    struct ProbeConnector(Arc<Mutex<Vec<String>>>);

    impl Connector for ProbeConnector {
        fn kind(&self) -> &'static str {
            "probe"
        }
        fn describe(&self) -> &'static str {
            "test"
        }
        fn prepare(&self, c: &Map<String, Value>) -> Result<Arc<dyn StepExec>, Vec<Issue>> {
            let flag = |k: &str| c.get(k).and_then(Value::as_bool).unwrap_or(false);
            Ok(Arc::new(Probe {
                ms: c.get("ms").and_then(Value::as_u64).unwrap_or(0),
                fail: flag("fail"),
                stop: flag("stop"),
                pure: flag("pure"),
                calls: self.0.clone(),
            }))
        }
    }

    struct NoDispatch;

    #[async_trait]
    impl Dispatch for NoDispatch {
        async fn chain(&self, _: ChainRequest) -> Result<String, String> {
            Err("no chaining in tests".into())
        }
        async fn deliver(&self, _: DeliveryRequest) -> Result<String, String> {
            Err("no deliveries in tests".into())
        }
        async fn await_delivery(&self, _: &str) -> Result<Value, String> {
            Err("no deliveries in tests".into())
        }
    }

    /// Records in order, and the ids of those asked to be durable.
    #[derive(Default)]
    struct Recorded(Mutex<Vec<StepRecord>>, Mutex<Vec<String>>);

    #[async_trait]
    impl StepSink for Recorded {
        async fn record(&self, _: &RunInfo, rec: &StepRecord, durable: bool) -> Result<(), String> {
            self.0.lock().unwrap().push(rec.clone());
            if durable {
                self.1.lock().unwrap().push(rec.step_id.clone());
            }
            Ok(())
        }
    }

    struct Harness {
        calls: Arc<Mutex<Vec<String>>>,
        /// Steps whose records the last run asked to be durable.
        durable: Mutex<Vec<String>>,
        registry: Registry,
    }

    impl Harness {
        fn new() -> Self {
            let calls = Arc::new(Mutex::new(Vec::new()));
            let mut registry = Registry::new();
            registry.register(Arc::new(ProbeConnector(calls.clone())));
            Self {
                calls,
                durable: Mutex::default(),
                registry,
            }
        }

        async fn run(&self, steps: Value, prior: Vec<StepRecord>) -> (RunOutcome, Vec<StepRecord>) {
            self.run_with(steps, prior, false).await
        }

        async fn run_with(
            &self,
            steps: Value,
            prior: Vec<StepRecord>,
            pure_only: bool,
        ) -> (RunOutcome, Vec<StepRecord>) {
            let doc =
                json!({"hookflow": 1, "name": "t", "trigger": {"type": "manual"}, "steps": steps});
            let flow = prepare(
                &doc,
                &ValidateCx {
                    registry: &self.registry,
                    secret_exists: None,
                },
            )
            .unwrap();
            let store: HashMap<String, String> = HashMap::new();
            let secrets = RunSecrets::new(&store);
            let sink = Recorded::default();
            let env = Env {
                secrets: &secrets,
                dispatch: &NoDispatch,
                sink: &sink,
                pure_only,
            };
            let run = RunInfo {
                id: "run_1".into(),
                flow: "t".into(),
                version: 1,
                attempt: 1,
                depth: 0,
            };
            let trigger = json!({"body": {"n": 1}});
            let out = execute(&flow, &trigger, &run, prior, &env).await.unwrap();
            *self.durable.lock().unwrap() = sink.1.into_inner().unwrap();
            (out, sink.0.into_inner().unwrap())
        }

        fn calls(&self) -> Vec<String> {
            self.calls.lock().unwrap().clone()
        }
    }

    fn rec<'a>(records: &'a [StepRecord], id: &str) -> &'a StepRecord {
        records.iter().find(|r| r.step_id == id).unwrap()
    }

    #[tokio::test]
    async fn pure_only_runs_the_steps_without_effects_and_leaves_the_rest_to_a_later_run() {
        let h = Harness::new();
        let steps = json!([
            {"id": "shape", "type": "probe", "pure": true},
            {"id": "call", "type": "probe"},
            {"id": "after_call", "type": "probe", "pure": true},
            {"id": "side", "type": "probe", "pure": true, "after": []}
        ]);
        let (first, recs) = h.run_with(steps.clone(), vec![], true).await;
        assert!(!first.complete);
        assert_eq!(first.status, RunStatus::Running);
        let mut ran = h.calls();
        ran.sort();
        assert_eq!(ran, ["shape", "side"]);
        assert_eq!(recs.len(), 2);
        // Resumed from those records, only the held-back steps run.
        let (rest, _) = h.run(steps, first.records).await;
        assert!(rest.complete);
        assert_eq!(rest.status, RunStatus::Succeeded);
        assert_eq!(h.calls()[2..], ["call", "after_call"]);
        assert_eq!(rec(&rest.records, "after_call").input["id"], "call");
    }

    #[tokio::test]
    async fn pure_only_ends_a_run_that_never_reaches_a_step_with_effects() {
        for (flag, status) in [
            ("stop", RunStatus::Filtered),
            ("fail", RunStatus::Failed),
            ("pure", RunStatus::Succeeded),
        ] {
            let h = Harness::new();
            let mut first = json!({"id": "first", "type": "probe", "pure": true});
            first[flag] = json!(true);
            let call = if flag == "pure" {
                json!({"id": "call", "type": "probe", "pure": true})
            } else {
                json!({"id": "call", "type": "probe"})
            };
            let (out, _) = h.run_with(json!([first, call]), vec![], true).await;
            assert!(out.complete, "{flag}");
            assert_eq!(out.status, status, "{flag}");
            assert!(!h.calls().contains(&"call".to_string()) || flag == "pure");
        }
    }

    #[tokio::test]
    async fn independent_steps_overlap_and_joins_wait_for_all() {
        let h = Harness::new();
        let (out, recs) = h
            .run(
                json!([
                    {"id": "a", "type": "probe", "ms": 200, "after": []},
                    {"id": "b", "type": "probe", "ms": 200, "after": []},
                    {"id": "join", "type": "probe", "after": ["a", "b"]}
                ]),
                vec![],
            )
            .await;
        assert_eq!(out.status, RunStatus::Succeeded);
        let (a, b, join) = (rec(&recs, "a"), rec(&recs, "b"), rec(&recs, "join"));
        assert!(
            b.started_at < a.started_at + chrono::Duration::milliseconds(a.duration_ms as i64),
            "a and b overlap"
        );
        assert_eq!(
            join.input,
            json!({"a": {"id": "a", "input": {"n": 1}}, "b": {"id": "b", "input": {"n": 1}}})
        );
        assert_eq!(
            out.output["id"], "join",
            "the run's output is the last step's"
        );
        // Finished steps are recorded before their dependents start.
        assert_eq!(recs.last().unwrap().step_id, "join");
    }

    #[tokio::test]
    async fn a_stop_skips_everything_downstream_only() {
        let h = Harness::new();
        let (out, recs) = h
            .run(
                json!([
                    {"id": "gate", "type": "probe", "stop": true},
                    {"id": "after_gate", "type": "probe"},
                    {"id": "deeper", "type": "probe"},
                    {"id": "side", "type": "probe", "after": []}
                ]),
                vec![],
            )
            .await;
        assert_eq!(out.status, RunStatus::Filtered);
        assert_eq!(rec(&recs, "gate").status, StepStatus::Stopped);
        assert_eq!(rec(&recs, "after_gate").status, StepStatus::Skipped);
        assert_eq!(rec(&recs, "deeper").status, StepStatus::Skipped);
        assert_eq!(rec(&recs, "side").status, StepStatus::Succeeded);
        let mut calls = h.calls();
        calls.sort();
        assert_eq!(calls, ["gate", "side"]);
    }

    #[tokio::test]
    async fn a_failure_stops_new_steps_unless_on_error_continue() {
        let h = Harness::new();
        let (out, recs) = h.run(json!([{"id": "bad", "type": "probe", "fail": true}, {"id": "next", "type": "probe"}]), vec![]).await;
        assert_eq!(out.status, RunStatus::Failed);
        assert_eq!(out.error.as_deref(), Some("step 'bad' failed: boom"));
        assert_eq!(recs.len(), 1, "nothing after the failure runs");

        let (out, recs) = h
            .run(json!([{"id": "bad", "type": "probe", "fail": true, "on_error": "continue"}, {"id": "next", "type": "probe"}]), vec![])
            .await;
        assert_eq!(out.status, RunStatus::Succeeded);
        assert_eq!(rec(&recs, "bad").output, Some(json!({"error": "boom"})));
        assert_eq!(rec(&recs, "next").input, json!({"error": "boom"}));
    }

    #[tokio::test]
    async fn prior_records_are_kept_and_not_run_again() {
        let h = Harness::new();
        let prior = vec![StepRecord {
            step_id: "first".into(),
            status: StepStatus::Succeeded,
            input: json!({"n": 1}),
            output: Some(json!({"kept": true})),
            error: None,
            attempts: 1,
            started_at: Utc::now(),
            duration_ms: 5,
        }];
        let (out, recs) = h
            .run(
                json!([{"id": "first", "type": "probe"}, {"id": "second", "type": "probe"}]),
                prior,
            )
            .await;
        assert_eq!(out.status, RunStatus::Succeeded);
        assert_eq!(h.calls(), ["second"]);
        assert_eq!(recs.len(), 1, "only the new step is recorded");
        assert_eq!(rec(&recs, "second").input, json!({"kept": true}));
        assert_eq!(out.records.len(), 2);
    }

    #[tokio::test]
    async fn only_steps_with_effects_wait_for_a_durable_record() {
        let h = Harness::new();
        let (out, recs) = h
            .run(
                json!([
                    {"id": "shape", "type": "probe", "pure": true},
                    {"id": "call", "type": "probe"},
                    {"id": "gate", "type": "probe", "pure": true, "stop": true},
                    {"id": "after_gate", "type": "probe"}
                ]),
                vec![],
            )
            .await;
        assert_eq!(out.status, RunStatus::Filtered);
        assert_eq!(recs.len(), 4, "every step is recorded");
        assert_eq!(*h.durable.lock().unwrap(), ["call"]);

        // The run's last step is committed with the end of the run.
        let (out, _) = h
            .run(
                json!([
                    {"id": "call", "type": "probe"},
                    {"id": "side", "type": "probe", "after": [], "ms": 50},
                    {"id": "last_call", "type": "probe"}
                ]),
                vec![],
            )
            .await;
        assert_eq!(out.status, RunStatus::Succeeded);
        assert_eq!(*h.durable.lock().unwrap(), ["call", "side"]);
    }
}
