//! `/inbox/<name>`: records any request, so flows can be tried without an outside system.

use axum::{
    Json,
    body::Bytes,
    extract::{Path, RawQuery, State},
    http::{HeaderMap, Method, StatusCode},
};
use serde_json::{Value, json};

use crate::{app::AppState, error::Error, ingest::form_object, store::inbox::Captured};

const NAME_MAX: usize = 64;

pub async fn capture(
    State(app): State<AppState>,
    Path(name): Path<String>,
    method: Method,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), Error> {
    if name.is_empty()
        || name.len() > NAME_MAX
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(Error::BadRequest(
            "inbox names are 1-64 letters, digits, '-' or '_'".into(),
        ));
    }
    if body.len() > app.cfg.max_body_bytes {
        return Err(Error::PayloadTooLarge(format!(
            "the body is larger than {} bytes",
            app.cfg.max_body_bytes
        )));
    }
    let id = app
        .store
        .record_inbox(Captured {
            inbox: name.clone(),
            method: method.to_string(),
            path: format!("/inbox/{name}"),
            query: form_object(query.as_deref().unwrap_or("").as_bytes()),
            headers: connectors::http::header_object(&headers),
            body: String::from_utf8_lossy(&body).into_owned(),
        })
        .await?;
    Ok((StatusCode::OK, Json(json!({"ok": true, "id": id}))))
}
