//! The HTTP surface: webhook ingress, the JSON API, the request inspector, health and metrics.
//! Handlers are thin: extract, call one function, map the result.

use axum::{
    Json, Router,
    extract::DefaultBodyLimit,
    http::header,
    response::{IntoResponse, Response},
    routing::{any, get},
};
use serde_json::json;

use crate::app::AppState;

mod api;
pub mod auth;
mod health;
mod hooks;
mod inbox;
mod login;
pub mod session;

pub use auth::ApiAuth;

pub fn router(app: AppState) -> Router {
    // Ingress reads its body with its own limit; this only guards the other routes.
    let api_limit = DefaultBodyLimit::max(16 * 1024 * 1024);
    let api = api::router().layer(api_limit);
    Router::new()
        .route("/hooks/{*path}", any(hooks::receive))
        .route(
            "/inbox/{name}",
            any(inbox::capture).layer(DefaultBodyLimit::max(app.cfg.max_body_bytes)),
        )
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .nest("/api", api)
        .route("/assets/{*path}", get(crate::ui::asset))
        .route("/login", get(login::login_page).post(login::login))
        .route("/setup", get(login::setup_page).post(login::setup))
        .merge(ui_routes(app.clone()))
        .fallback(health::not_found)
        .layer(axum::middleware::map_response(json_errors))
        .layer(axum::middleware::map_response(
            crate::ui::html_security_headers,
        ))
        .with_state(app)
}

/// Browser routes: each state-changing request passes the CSRF guard.
fn ui_routes(app: AppState) -> Router<AppState> {
    Router::new()
        .route("/logout", axum::routing::post(login::logout))
        .merge(crate::ui::router())
        .route_layer(axum::middleware::from_fn_with_state(
            app.clone(),
            session::csrf_guard,
        ))
        // Outside the CSRF guard, so that its refusals are pages (or htmx messages) too.
        .layer(axum::middleware::from_fn_with_state(
            app,
            crate::ui::html_errors,
        ))
}

/// Every error answer is JSON `{"error": ...}`, including the plain-text rejections of axum's
/// extractors (bad path or query parameters, oversized bodies).
async fn json_errors(resp: Response) -> Response {
    let failed = resp.status().is_client_error() || resp.status().is_server_error();
    let plain = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .is_none_or(|v| v.as_bytes().starts_with(b"text/plain"));
    if !failed || !plain {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let bytes = axum::body::to_bytes(body, 64 * 1024)
        .await
        .unwrap_or_default();
    let message = String::from_utf8_lossy(&bytes).trim().to_string();
    let message = if message.is_empty() {
        parts
            .status
            .canonical_reason()
            .unwrap_or("error")
            .to_string()
    } else {
        message
    };
    let mut out = (parts.status, Json(json!({"error": message}))).into_response();
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            out.headers_mut().insert(name.clone(), value.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    /// Building the router panics on bad route syntax; this makes that a test failure.
    #[tokio::test]
    async fn router_builds() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = crate::config::ServeArgs::for_data_dir(dir.path().to_path_buf());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let running = crate::app::start(cfg, listener).await.unwrap();
        running.stop().await;
    }
}
