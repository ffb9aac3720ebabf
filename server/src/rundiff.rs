//! Replay with diff: run a past run's trigger again on any saved version of its flow, and compare
//! the two runs step by step (status, error, and every changed JSON path of the output). The API
//! (`/api/runs/{id}/diff`) and the UI both use these.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::Value;

use crate::{app::App, error::Error, ingest::queue_trigger, store::entities::runs};

/// Queue a new run of `run`'s flow at `version` (default: the current one) with the same trigger
/// (request, body, source); returns the new run's id.
pub async fn replay(app: &App, run: &runs::Model, version: Option<i64>) -> Result<String, Error> {
    let version = match version {
        Some(v) => {
            // Loads (and validates) the version, so a missing one is a 404 before anything is queued.
            app.catalog
                .version(&app.store, &app.registry, &run.flow, v)
                .await?;
            v
        }
        None => {
            app.catalog
                .current(&run.flow)
                .ok_or_else(|| Error::NotFound(format!("flow '{}' no longer exists", run.flow)))?
                .0
        }
    };
    let trigger: Value = serde_json::from_str(&run.trigger)?;
    let parent = run.parent_run.clone().zip(run.parent_step.clone());
    queue_trigger(app, &run.flow, version, &trigger, run.depth, parent, None).await
}

/// One side of a step in a diff.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StepSide {
    pub status: String,
    pub output: Value,
    pub error: Option<String>,
}

/// A value that differs between the two runs (`None`: absent on that side).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Change {
    pub path: String,
    pub before: Option<Value>,
    pub after: Option<Value>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StepDiff {
    pub step_id: String,
    pub before: Option<StepSide>,
    pub after: Option<StepSide>,
    /// Output paths that differ, plus `status` and `error` when those differ.
    pub changes: Vec<Change>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunDiff {
    pub flow: String,
    pub before: RunHead,
    pub after: RunHead,
    pub steps: Vec<StepDiff>,
    /// Steps with at least one change.
    pub changed_steps: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunHead {
    pub id: String,
    pub version: i64,
    pub status: String,
}

impl RunHead {
    fn of(r: &runs::Model) -> RunHead {
        RunHead {
            id: r.id.clone(),
            version: r.version,
            status: r.status.clone(),
        }
    }
}

/// The paths where two outputs differ, in document order of `after` then `before`.
pub fn changed_paths(before: &Value, after: &Value) -> Vec<Change> {
    let a: BTreeMap<String, Value> = hookflow_web::json::flatten(before).into_iter().collect();
    let b_list = hookflow_web::json::flatten(after);
    let b: BTreeMap<&str, &Value> = b_list.iter().map(|(p, v)| (p.as_str(), v)).collect();
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    for (path, v) in &b_list {
        seen.insert(path.clone());
        if a.get(path) != Some(v) {
            out.push(Change {
                path: path.clone(),
                before: a.get(path).cloned(),
                after: Some(v.clone()),
            });
        }
    }
    for (path, v) in hookflow_web::json::flatten(before) {
        if !seen.contains(&path) && !b.contains_key(path.as_str()) {
            out.push(Change {
                path,
                before: Some(v),
                after: None,
            });
        }
    }
    out
}

fn side(s: &crate::store::entities::step_runs::Model) -> StepSide {
    StepSide {
        status: s.status.clone(),
        output: s
            .output
            .as_deref()
            .and_then(|t| serde_json::from_str(t).ok())
            .unwrap_or(Value::Null),
        error: s.error.clone(),
    }
}

/// Compare two runs of the same flow, step by step, in the order of the newer run's flow version.
pub async fn diff(app: &App, before: &runs::Model, after: &runs::Model) -> Result<RunDiff, Error> {
    if before.flow != after.flow {
        return Err(Error::BadRequest(format!(
            "runs of different flows ('{}' and '{}') cannot be compared",
            before.flow, after.flow
        )));
    }
    let a_steps = app.store.run_steps(before).await?;
    let b_steps = app.store.run_steps(after).await?;
    let mut order: Vec<String> = Vec::new();
    for r in [after, before] {
        if let Ok(flow) = app
            .catalog
            .version(&app.store, &app.registry, &r.flow, r.version)
            .await
        {
            for s in &flow.flow.steps {
                if !order.contains(&s.id) {
                    order.push(s.id.clone());
                }
            }
        }
    }
    for s in a_steps.iter().chain(&b_steps) {
        if !order.contains(&s.step_id) {
            order.push(s.step_id.clone());
        }
    }
    let mut steps = Vec::new();
    for id in order {
        let a = a_steps.iter().find(|s| s.step_id == id).map(side);
        let b = b_steps.iter().find(|s| s.step_id == id).map(side);
        if a.is_none() && b.is_none() {
            continue;
        }
        let mut changes = Vec::new();
        let status = |s: &Option<StepSide>| s.as_ref().map(|x| Value::String(x.status.clone()));
        if status(&a) != status(&b) {
            changes.push(Change {
                path: "status".into(),
                before: status(&a),
                after: status(&b),
            });
        }
        let error =
            |s: &Option<StepSide>| s.as_ref().and_then(|x| x.error.clone()).map(Value::String);
        if error(&a) != error(&b) {
            changes.push(Change {
                path: "error".into(),
                before: error(&a),
                after: error(&b),
            });
        }
        let out =
            |s: &Option<StepSide>| s.as_ref().map(|x| x.output.clone()).unwrap_or(Value::Null);
        changes.extend(changed_paths(&out(&a), &out(&b)));
        steps.push(StepDiff {
            step_id: id,
            before: a,
            after: b,
            changes,
        });
    }
    let changed_steps = steps.iter().filter(|s| !s.changes.is_empty()).count();
    Ok(RunDiff {
        flow: after.flow.clone(),
        before: RunHead::of(before),
        after: RunHead::of(after),
        steps,
        changed_steps,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn changed_paths_cover_edits_additions_and_removals() {
        let a = json!({"order": 1, "email": "a@x", "items": [1, 2]});
        let b = json!({"order": 1, "email": "A@X", "items": [1], "paid": true});
        let c = changed_paths(&a, &b);
        let paths: Vec<&str> = c.iter().map(|c| c.path.as_str()).collect();
        assert_eq!(paths, ["$.email", "$.paid", "$.items[1]"]);
        assert_eq!(c[2].after, None);
        assert!(changed_paths(&a, &a).is_empty());
    }
}
