//! Liveness, readiness and metrics.

use axum::{
    Json,
    extract::State,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use serde_json::json;

use crate::{app::AppState, error::Error, http::auth::bearer};

pub async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// Ready when the database answers and the process is not shutting down.
pub async fn readyz(State(app): State<AppState>) -> Result<Json<serde_json::Value>, Error> {
    if app.shutdown.is_cancelled() {
        return Err(Error::Unavailable("shutting down".into()));
    }
    app.store
        .ping()
        .await
        .map_err(|e| Error::Unavailable(format!("database unavailable: {e}")))?;
    Ok(Json(json!({"status": "ready"})))
}

pub async fn metrics(State(app): State<AppState>, headers: axum::http::HeaderMap) -> Response {
    if !app.cfg.public_metrics {
        let allowed = match bearer(&headers) {
            Some(t) => app.store.check_token(t).await.unwrap_or(false),
            None => false,
        };
        if !allowed {
            return Error::Unauthorized("metrics need an API token".into()).into_response();
        }
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        crate::metrics::handle().render(),
    )
        .into_response()
}

pub async fn not_found() -> (StatusCode, Json<serde_json::Value>) {
    (
        StatusCode::NOT_FOUND,
        Json(json!({"error": "no such endpoint; see /api/openapi.json"})),
    )
}
