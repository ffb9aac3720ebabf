//! API tokens: create (shown once), list (names only), revoke.

use axum::{
    Json,
    body::Bytes,
    extract::{Path, State},
    http::StatusCode,
};
use serde_json::{Value, json};

use super::flows::json_body;
use crate::{app::AppState, error::Error, http::ApiAuth, store::rfc3339};

pub async fn list(State(app): State<AppState>, _: ApiAuth) -> Result<Json<Value>, Error> {
    let tokens: Vec<Value> = app
        .store
        .list_tokens()
        .await?
        .into_iter()
        .map(|t| json!({"id": t.id, "name": t.name, "created_at": rfc3339(t.created_at)}))
        .collect();
    Ok(Json(json!({"tokens": tokens})))
}

pub async fn create(
    State(app): State<AppState>,
    _: ApiAuth,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), Error> {
    let name = json_body(&body)?
        .get("name")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|n| !n.is_empty() && n.len() <= 64)
        .map(str::to_string)
        .ok_or_else(|| Error::BadRequest("send {\"name\": \"...\"} (1-64 characters)".into()))?;
    let token = app.store.create_token(&name).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"name": name, "token": token})),
    ))
}

pub async fn revoke(
    State(app): State<AppState>,
    _: ApiAuth,
    Path(id): Path<String>,
) -> Result<StatusCode, Error> {
    if app.store.revoke_token(&id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(Error::NotFound(format!("no token '{id}'")))
    }
}
