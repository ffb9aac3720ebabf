//! Runs: list with filters and a cursor, detail with steps, retry and replay.

use axum::{
    Json,
    extract::{Path, Query, State},
    http::StatusCode,
};
use flows_engine::{RunStatus, ids::is_id};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{
    app::{App, AppState},
    error::Error,
    http::ApiAuth,
    ingest::queue_trigger,
    store::{
        entities::runs,
        runs::{RunFilter, run_summary, step_json},
    },
};

#[derive(Deserialize)]
pub struct ListQuery {
    flow: Option<String>,
    status: Option<String>,
    limit: Option<u64>,
    cursor: Option<String>,
}

pub async fn list(
    State(app): State<AppState>,
    _: ApiAuth,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, Error> {
    if let Some(s) = &q.status
        && RunStatus::parse(s).is_none()
    {
        let all: Vec<&str> = RunStatus::ALL.iter().map(|s| s.as_str()).collect();
        return Err(Error::BadRequest(format!(
            "unknown status '{s}' (expected one of {})",
            all.join(", ")
        )));
    }
    let limit = q.limit.unwrap_or(50).clamp(1, 500);
    let filter = RunFilter {
        flow: q.flow,
        status: q.status,
        cursor: q.cursor,
        limit: limit + 1,
    };
    let mut rows = app.store.list_runs(&filter).await?;
    let next_cursor = if rows.len() as u64 > limit {
        rows.truncate(limit as usize);
        rows.last().map(|r| r.id.clone())
    } else {
        None
    };
    Ok(Json(
        json!({"runs": rows.iter().map(run_summary).collect::<Vec<_>>(), "next_cursor": next_cursor}),
    ))
}

async fn find(app: &App, id: &str) -> Result<runs::Model, Error> {
    let missing = || Error::NotFound(format!("no run '{id}'"));
    if !is_id("run", id) {
        return Err(missing());
    }
    app.store.get_run(id).await?.ok_or_else(missing)
}

/// A run with its trigger, steps (in the flow's order) and chained child runs.
pub async fn run_detail(app: &App, run: runs::Model) -> Result<Value, Error> {
    let mut steps = app.store.run_steps(&run).await?;
    if let Ok(flow) = app
        .catalog
        .version(&app.store, &app.registry, &run.flow, run.version)
        .await
    {
        let order = |id: &str| {
            flow.flow
                .steps
                .iter()
                .position(|s| s.id == id)
                .unwrap_or(usize::MAX)
        };
        steps.sort_by_key(|s| order(&s.step_id));
    }
    let children = app.store.child_runs(&run.id).await?;
    let mut detail = run_summary(&run);
    detail["trigger"] = serde_json::from_str(&run.trigger)?;
    detail["output"] = run
        .output
        .as_deref()
        .and_then(|o| serde_json::from_str(o).ok())
        .unwrap_or(Value::Null);
    detail["steps"] = steps.iter().map(step_json).collect();
    detail["children"] = children
        .iter()
        .map(|c| json!({"id": c.id, "flow": c.flow, "status": c.status, "step": c.parent_step}))
        .collect();
    Ok(detail)
}

pub async fn get(
    State(app): State<AppState>,
    _: ApiAuth,
    Path(id): Path<String>,
) -> Result<Json<Value>, Error> {
    let run = find(&app, &id).await?;
    Ok(Json(run_detail(&app, run).await?))
}

/// A new attempt of a failed run, from its first failed step; earlier outputs are kept.
pub async fn retry(
    State(app): State<AppState>,
    _: ApiAuth,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Value>), Error> {
    let run = find(&app, &id).await?;
    let Some(updated) = app.store.retry_run(&run.id).await? else {
        return Err(Error::Conflict(format!(
            "run '{id}' is {}; only failed runs can be retried",
            run.status
        )));
    };
    app.wake_runs.notify_one();
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"run_id": updated.id, "attempt": updated.attempt})),
    ))
}

/// A new run of the flow's current version with the same trigger.
pub async fn replay(
    State(app): State<AppState>,
    _: ApiAuth,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Value>), Error> {
    let run = find(&app, &id).await?;
    let (version, _) = app
        .catalog
        .current(&run.flow)
        .ok_or_else(|| Error::NotFound(format!("flow '{}' no longer exists", run.flow)))?;
    let trigger: Value = serde_json::from_str(&run.trigger)?;
    let parent = run.parent_run.clone().zip(run.parent_step.clone());
    let new_id = queue_trigger(&app, &run.flow, version, &trigger, run.depth, parent, None).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"run_id": new_id, "replay_of": run.id})),
    ))
}
