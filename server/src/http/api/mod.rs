//! `/api`: the JSON API. Every route needs a bearer token except the OpenAPI document.

use axum::{
    Json, Router,
    routing::{get, post},
};
use serde_json::Value;

use crate::app::AppState;

mod deliveries;
mod diff;
mod flows;
mod runs;
mod secrets;
mod tokens;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/openapi.json", get(openapi))
        .route("/flows", get(flows::list).post(flows::create))
        .route(
            "/flows/{name}",
            get(flows::get).put(flows::put).delete(flows::delete),
        )
        .route("/flows/{name}/versions", get(flows::versions))
        .route("/flows/{name}/versions/{version}", get(flows::version))
        .route("/flows/{name}/run", post(flows::run))
        .route("/validate", post(flows::validate))
        .route("/import", post(flows::import))
        .route("/export", get(flows::export))
        .route("/runs", get(runs::list))
        .route("/runs/{id}", get(runs::get))
        .route("/runs/{id}/retry", post(runs::retry))
        .route("/runs/{id}/replay", post(runs::replay))
        .route("/runs/{id}/diff", get(diff::compare).post(diff::replay))
        .route("/deliveries", get(deliveries::list))
        .route("/deliveries/{id}", get(deliveries::get))
        .route("/deliveries/{id}/redeliver", post(deliveries::redeliver))
        .route("/secrets", get(secrets::list))
        .route(
            "/secrets/{name}",
            axum::routing::put(secrets::put).delete(secrets::delete),
        )
        .route("/inbox/{name}", get(secrets::inbox))
        .route("/tokens", get(tokens::list).post(tokens::create))
        .route("/tokens/{id}", axum::routing::delete(tokens::revoke))
}

async fn openapi() -> Json<Value> {
    Json(serde_json::from_str(include_str!("openapi.json")).expect("openapi.json is valid JSON"))
}
