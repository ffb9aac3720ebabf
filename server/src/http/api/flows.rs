//! Flows: CRUD (each save is a new version), versions, manual runs, validation, import/export.

use std::time::Duration;

use axum::{
    Json,
    body::Bytes,
    extract::{Path, Query, State},
    http::StatusCode,
    response::{IntoResponse, Response},
};
use flows_engine::{Trigger, flow::is_flow_name};
use serde::Deserialize;
use serde_json::{Value, json};

use super::runs::run_detail;
use crate::{
    app::AppState,
    error::Error,
    flows::{self, OnConflict},
    http::ApiAuth,
    ingest::{Started, start_run},
    store::rfc3339,
};

/// A JSON request body, with a clear 400 when it is not JSON.
pub(super) fn json_body(body: &Bytes) -> Result<Value, Error> {
    if body.is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_slice(body)
        .map_err(|e| Error::BadRequest(format!("the request body is not valid JSON: {e}")))
}

fn checked_name(name: &str) -> Result<(), Error> {
    if is_flow_name(name) {
        Ok(())
    } else {
        Err(Error::NotFound(format!("no flow named '{name}'")))
    }
}

pub async fn list(State(app): State<AppState>, _: ApiAuth) -> Result<Json<Value>, Error> {
    let rows = app.store.list_flows().await?;
    let flows: Vec<Value> = rows
        .iter()
        .map(|f| {
            let trigger = match app.catalog.current(&f.name).map(|(_, p)| p.flow.trigger.clone()) {
                Some(Trigger::Webhook(w)) => json!({"type": "webhook", "path": w.path, "url_path": format!("/hooks/{}", w.path), "methods": w.methods}),
                Some(t) => json!({"type": t.kind()}),
                None => Value::Null,
            };
            json!({"name": f.name, "title": f.title, "enabled": f.enabled, "version": f.version, "trigger": trigger, "updated_at": rfc3339(f.updated_at)})
        })
        .collect();
    Ok(Json(json!({"flows": flows})))
}

pub async fn get(
    State(app): State<AppState>,
    _: ApiAuth,
    Path(name): Path<String>,
) -> Result<Json<Value>, Error> {
    checked_name(&name)?;
    let f = app
        .store
        .get_flow(&name)
        .await?
        .ok_or_else(|| Error::NotFound(format!("no flow named '{name}'")))?;
    Ok(Json(serde_json::from_str(&f.definition)?))
}

pub async fn create(
    State(app): State<AppState>,
    _: ApiAuth,
    body: Bytes,
) -> Result<Response, Error> {
    let doc = json_body(&body)?;
    if let Some(name) = doc.get("name").and_then(Value::as_str)
        && app.store.get_flow(name).await?.is_some()
    {
        return Err(Error::Conflict(format!(
            "flow '{name}' already exists; PUT /api/flows/{name} saves a new version"
        )));
    }
    let name = doc
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let saved = flows::save(&app, doc, None).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"name": name, "version": saved.version})),
    )
        .into_response())
}

pub async fn put(
    State(app): State<AppState>,
    _: ApiAuth,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, Error> {
    checked_name(&name)?;
    let mut doc = json_body(&body)?;
    if let Some(obj) = doc.as_object_mut() {
        obj.entry("name")
            .or_insert_with(|| Value::String(name.clone()));
    }
    let saved = flows::save(&app, doc, Some(&name)).await?;
    let status = if saved.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(json!({"name": name, "version": saved.version, "changed": saved.changed})),
    )
        .into_response())
}

pub async fn delete(
    State(app): State<AppState>,
    _: ApiAuth,
    Path(name): Path<String>,
) -> Result<StatusCode, Error> {
    checked_name(&name)?;
    if !app.store.delete_flow(&name).await? {
        return Err(Error::NotFound(format!("no flow named '{name}'")));
    }
    app.catalog.reload(&app.store, &app.registry).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn versions(
    State(app): State<AppState>,
    _: ApiAuth,
    Path(name): Path<String>,
) -> Result<Json<Value>, Error> {
    checked_name(&name)?;
    let current = app.store.get_flow(&name).await?.map(|f| f.version);
    let rows = app.store.flow_versions(&name).await?;
    if rows.is_empty() {
        return Err(Error::NotFound(format!("no flow named '{name}'")));
    }
    let versions: Vec<Value> = rows
        .iter()
        .map(|v| json!({"version": v.version, "created_at": rfc3339(v.created_at), "current": Some(v.version) == current}))
        .collect();
    Ok(Json(json!({"flow": name, "versions": versions})))
}

pub async fn version(
    State(app): State<AppState>,
    _: ApiAuth,
    Path((name, version)): Path<(String, i64)>,
) -> Result<Json<Value>, Error> {
    let v = app
        .store
        .flow_version(&name, version)
        .await?
        .ok_or_else(|| Error::NotFound(format!("flow '{name}' has no version {version}")))?;
    Ok(Json(serde_json::from_str(&v.definition)?))
}

#[derive(Deserialize)]
pub struct RunQuery {
    #[serde(default)]
    wait: bool,
    /// Longest wait with `wait=true`, in milliseconds.
    timeout_ms: Option<u64>,
}

/// Start a run by hand; the request body is the trigger body.
pub async fn run(
    State(app): State<AppState>,
    _: ApiAuth,
    Path(name): Path<String>,
    Query(q): Query<RunQuery>,
    body: Bytes,
) -> Result<Response, Error> {
    checked_name(&name)?;
    let (version, _) = app
        .catalog
        .current(&name)
        .ok_or_else(|| Error::NotFound(format!("no flow named '{name}'")))?;
    let payload = json_body(&body)?;
    let run_id = start_run(&app, &name, version, Started::manual(payload)).await?;
    if q.wait {
        let timeout = Duration::from_millis(q.timeout_ms.unwrap_or(30_000).min(300_000));
        if let Some(run) = app.waiters.wait(&app.store, &run_id, timeout).await? {
            return Ok(Json(run_detail(&app, run).await?).into_response());
        }
    }
    Ok((StatusCode::ACCEPTED, Json(json!({"run_id": run_id}))).into_response())
}

/// Validate without saving: 200 with `{"valid": true}` or 422 with every problem.
pub async fn validate(
    State(app): State<AppState>,
    _: ApiAuth,
    body: Bytes,
) -> Result<Json<Value>, Error> {
    let docs = flows::split_import(json_body(&body)?)?;
    flows::validate_set(&app, &docs).await?;
    Ok(Json(json!({"valid": true})))
}

#[derive(Deserialize)]
pub struct ImportQuery {
    #[serde(default)]
    on_conflict: OnConflict,
}

pub async fn import(
    State(app): State<AppState>,
    _: ApiAuth,
    Query(q): Query<ImportQuery>,
    body: Bytes,
) -> Result<Json<Value>, Error> {
    let report = flows::import(&app, json_body(&body)?, q.on_conflict).await?;
    Ok(Json(serde_json::to_value(report)?))
}

pub async fn export(State(app): State<AppState>, _: ApiAuth) -> Result<Json<Value>, Error> {
    Ok(Json(flows::export_all(&app.store).await?))
}
