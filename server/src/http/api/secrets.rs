//! Secret names (values are write-only), and inbox captures.

use axum::{
    Json,
    body::Bytes,
    extract::{Path, Query, State},
    http::StatusCode,
};
use serde::Deserialize;
use serde_json::{Value, json};

use super::flows::json_body;
use crate::{app::AppState, error::Error, http::ApiAuth, store::rfc3339};

fn checked_name(name: &str) -> Result<(), Error> {
    crate::store::secrets::check_secret_name(name)
}

pub async fn list(State(app): State<AppState>, _: ApiAuth) -> Result<Json<Value>, Error> {
    let names: Vec<Value> = app
        .store
        .secret_names()
        .await?
        .into_iter()
        .map(|(n, at)| json!({"name": n, "updated_at": rfc3339(at)}))
        .collect();
    Ok(Json(json!({"secrets": names})))
}

pub async fn put(
    State(app): State<AppState>,
    _: ApiAuth,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<StatusCode, Error> {
    checked_name(&name)?;
    let value = json_body(&body)?
        .get("value")
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| Error::BadRequest("send {\"value\": \"...\"}".into()))?;
    app.store.set_secret(&app.key, &name, &value).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn delete(
    State(app): State<AppState>,
    _: ApiAuth,
    Path(name): Path<String>,
) -> Result<StatusCode, Error> {
    checked_name(&name)?;
    if app.store.delete_secret(&name).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(Error::NotFound(format!("no secret '{name}'")))
    }
}

#[derive(Deserialize)]
pub struct InboxQuery {
    limit: Option<u64>,
}

pub async fn inbox(
    State(app): State<AppState>,
    _: ApiAuth,
    Path(name): Path<String>,
    Query(q): Query<InboxQuery>,
) -> Result<Json<Value>, Error> {
    let requests = app
        .store
        .list_inbox(&name, q.limit.unwrap_or(50).clamp(1, 500))
        .await?;
    Ok(Json(json!({"inbox": name, "requests": requests})))
}
