//! Outbound deliveries: list, detail with attempts, manual redelivery.

use axum::{
    Json,
    extract::{Path, Query, State},
    http::StatusCode,
};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{
    app::AppState,
    error::Error,
    http::ApiAuth,
    store::deliveries::{attempt_json, delivery_json},
};

#[derive(Deserialize)]
pub struct ListQuery {
    status: Option<String>,
    run: Option<String>,
    limit: Option<u64>,
}

pub async fn list(
    State(app): State<AppState>,
    _: ApiAuth,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, Error> {
    let rows = app
        .store
        .list_deliveries(
            q.status.as_deref(),
            q.run.as_deref(),
            q.limit.unwrap_or(50).clamp(1, 500),
        )
        .await?;
    Ok(Json(
        json!({"deliveries": rows.iter().map(delivery_json).collect::<Vec<_>>()}),
    ))
}

pub async fn get(
    State(app): State<AppState>,
    _: ApiAuth,
    Path(id): Path<String>,
) -> Result<Json<Value>, Error> {
    let d = app
        .store
        .get_delivery(&id)
        .await?
        .ok_or_else(|| Error::NotFound(format!("no delivery '{id}'")))?;
    let attempts = app.store.delivery_attempts(&id).await?;
    let mut v = delivery_json(&d);
    v["body"] = serde_json::from_str(&d.body).unwrap_or(Value::String(d.body.clone()));
    v["attempt_log"] = attempts.iter().map(attempt_json).collect();
    Ok(Json(v))
}

pub async fn redeliver(
    State(app): State<AppState>,
    _: ApiAuth,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Value>), Error> {
    let d = app
        .store
        .redeliver(&id)
        .await?
        .ok_or_else(|| Error::NotFound(format!("no delivery '{id}'")))?;
    app.wake_deliveries.notify_one();
    Ok((StatusCode::ACCEPTED, Json(delivery_json(&d))))
}
