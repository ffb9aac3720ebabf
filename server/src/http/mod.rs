//! The HTTP surface: webhook ingress, the JSON API, the request inspector, health and metrics.
//! Handlers are thin: extract, call one function, map the result.

use axum::{
    Router,
    extract::DefaultBodyLimit,
    routing::{any, get},
};

use crate::app::AppState;

mod api;
pub mod auth;
mod health;
mod hooks;
mod inbox;

pub use auth::ApiAuth;

pub fn router(app: AppState) -> Router {
    // Ingress reads its body with its own limit; this only guards the other routes.
    let api_limit = DefaultBodyLimit::max(16 * 1024 * 1024);
    let api = api::router().layer(api_limit);
    Router::new()
        .route("/hooks/{*path}", any(hooks::receive))
        .route("/inbox/{name}", any(inbox::capture))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .nest("/api", api)
        .route("/", get(health::index))
        .fallback(health::not_found)
        .with_state(app)
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
