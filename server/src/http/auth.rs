//! API authentication: `Authorization: Bearer <token>`, checked against the stored hashes.

use axum::{extract::FromRequestParts, http::request::Parts};

use crate::{app::AppState, error::Error};

/// Present in a handler's arguments: the request carried a valid API token.
pub struct ApiAuth;

impl FromRequestParts<AppState> for ApiAuth {
    type Rejection = Error;

    async fn from_request_parts(
        parts: &mut Parts,
        app: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let token = bearer(&parts.headers)
            .ok_or_else(|| Error::Unauthorized("send an API token: Authorization: Bearer <token> (create one with `hookflow token create <name>`)".into()))?;
        if app.store.check_token(token).await? {
            Ok(ApiAuth)
        } else {
            Err(Error::Unauthorized("the API token is not valid".into()))
        }
    }
}

/// The bearer token of a request, if it has one.
pub fn bearer(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
}
