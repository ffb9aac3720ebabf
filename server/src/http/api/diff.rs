//! Replay with diff in the API: `POST /api/runs/{id}/diff?version=N` replays a run's trigger on a
//! saved version (default: current) and, once the new run finishes, answers with the per-step
//! diff; `GET /api/runs/{id}/diff?with=<run>` compares two existing runs.

use std::time::Duration;

use axum::{
    Json,
    extract::{Path, Query, State},
    http::StatusCode,
    response::{IntoResponse, Response},
};
use flows_engine::ids::is_id;
use serde::Deserialize;
use serde_json::json;

use crate::{app::AppState, error::Error, http::ApiAuth, rundiff, store::entities::runs};

async fn find(app: &crate::app::App, id: &str) -> Result<runs::Model, Error> {
    let missing = || Error::NotFound(format!("no run '{id}'"));
    if !is_id("run", id) {
        return Err(missing());
    }
    app.store.get_run(id).await?.ok_or_else(missing)
}

#[derive(Deserialize)]
pub struct CompareQuery {
    with: String,
}

pub async fn compare(
    State(app): State<AppState>,
    _: ApiAuth,
    Path(id): Path<String>,
    Query(q): Query<CompareQuery>,
) -> Result<Json<rundiff::RunDiff>, Error> {
    let before = find(&app, &id).await?;
    let after = find(&app, &q.with).await?;
    Ok(Json(rundiff::diff(&app, &before, &after).await?))
}

#[derive(Deserialize)]
pub struct ReplayQuery {
    version: Option<i64>,
    /// Longest wait for the replay to finish, in milliseconds (default 30 s, at most 5 min).
    timeout_ms: Option<u64>,
}

pub async fn replay(
    State(app): State<AppState>,
    _: ApiAuth,
    Path(id): Path<String>,
    Query(q): Query<ReplayQuery>,
) -> Result<Response, Error> {
    let before = find(&app, &id).await?;
    let new_id = rundiff::replay(&app, &before, q.version).await?;
    app.wake_runs.notify_one();
    let timeout = Duration::from_millis(q.timeout_ms.unwrap_or(30_000).min(300_000));
    match app.waiters.wait(&app.store, &new_id, timeout).await? {
        Some(after) => {
            let diff = rundiff::diff(&app, &before, &after).await?;
            Ok(
                Json(json!({"replay_of": before.id, "run_id": new_id, "diff": diff}))
                    .into_response(),
            )
        }
        None => Ok((
            StatusCode::ACCEPTED,
            Json(json!({"replay_of": before.id, "run_id": new_id, "diff": null})),
        )
            .into_response()),
    }
}
