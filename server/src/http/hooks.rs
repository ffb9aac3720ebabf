//! `/hooks/<path>`: webhook ingress. Route from memory, check method, state and size, then
//! commit the event and its run before answering; `respond: result` waits for the run.

use std::time::Duration;

use axum::{
    Json,
    body::Body,
    extract::{Path, RawQuery, State},
    http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header},
    response::{IntoResponse, Response},
};
use flows_engine::{Respond, Trigger, template::NoSecrets};
use serde_json::{Map, Value, json};

use crate::{
    app::AppState,
    error::Error,
    ingest::{Inbound, accept_webhook},
    store::runs::step_record,
};

pub async fn receive(
    State(app): State<AppState>,
    Path(path): Path<String>,
    method: Method,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let flow = app.catalog.route(&path).map(|(_, f)| f.name().to_string());
    let resp = match handle(&app, path, method, query, headers, body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    metrics::counter!("hookflow_webhooks_received_total", "flow" => flow.unwrap_or_else(|| "-".into()), "status" => resp.status().as_u16().to_string())
        .increment(1);
    resp
}

async fn handle(
    app: &AppState,
    path: String,
    method: Method,
    query: Option<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Error> {
    if app.shutdown.is_cancelled() {
        return Err(Error::Unavailable(
            "hookflow is shutting down; retry shortly".into(),
        ));
    }
    let (version, flow) = app
        .catalog
        .route(&path)
        .ok_or_else(|| Error::NotFound(format!("no flow listens at /hooks/{path}")))?;
    let Trigger::Webhook(hook) = &flow.flow.trigger else {
        return Err(Error::NotFound(format!("no flow listens at /hooks/{path}")));
    };
    if !hook.methods.iter().any(|m| m == method.as_str()) {
        return Err(Error::MethodNotAllowed(
            format!("/hooks/{path} accepts {}", hook.methods.join(", ")),
            hook.methods.clone(),
        ));
    }
    if !flow.flow.enabled {
        return Err(Error::Unavailable(format!(
            "flow '{}' is disabled",
            flow.name()
        )));
    }
    let limit = app.cfg.max_body_bytes;
    let too_large = || {
        Error::PayloadTooLarge(format!(
            "the body is larger than the limit of {limit} bytes"
        ))
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(too_large());
    }
    let body = axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| too_large())?;
    let inbound = Inbound {
        method,
        path,
        headers,
        query,
        body,
    };
    let run_id = accept_webhook(app, flow.name(), version, inbound).await?;
    match &hook.respond {
        Respond::Accepted => {
            Ok((StatusCode::ACCEPTED, Json(json!({"run_id": run_id}))).into_response())
        }
        Respond::Result {
            timeout_ms,
            status,
            headers,
            body,
        } => {
            let Some(run) = app
                .waiters
                .wait(&app.store, &run_id, Duration::from_millis(*timeout_ms))
                .await?
            else {
                return Ok((StatusCode::ACCEPTED, Json(json!({"run_id": run_id}))).into_response());
            };
            if run.status == "failed" {
                let error = run.error.unwrap_or_else(|| "the run failed".into());
                return Ok((
                    StatusCode::INTERNAL_SERVER_ERROR,
                    Json(json!({"error": error, "run_id": run_id})),
                )
                    .into_response());
            }
            let output: Value = run
                .output
                .as_deref()
                .and_then(|o| serde_json::from_str(o).ok())
                .unwrap_or(Value::Null);
            let mut steps = Map::new();
            for s in app
                .store
                .run_steps(&run_id)
                .await?
                .iter()
                .filter_map(step_record)
            {
                steps.insert(s.step_id, s.output.unwrap_or(Value::Null));
            }
            let trigger: Value = serde_json::from_str(&run.trigger)?;
            let ctx = json!({"trigger": trigger, "input": output, "steps": steps, "run": {"id": run_id, "flow": run.flow, "attempt": run.attempt}});
            let rendered = match body {
                None => output,
                Some(t) => t
                    .render(&ctx, &NoSecrets)
                    .map_err(|e| Error::Internal(format!("rendering the response: {e}")))?,
            };
            let code = StatusCode::from_u16(*status).unwrap_or(StatusCode::OK);
            let mut resp = (code, Json(rendered)).into_response();
            for (name, t) in headers {
                let value = t
                    .render_string(&ctx, &NoSecrets)
                    .map_err(|e| Error::Internal(format!("rendering header {name}: {e}")))?;
                if let (Ok(n), Ok(v)) = (
                    HeaderName::try_from(name.as_str()),
                    HeaderValue::from_str(&value),
                ) {
                    resp.headers_mut().insert(n, v);
                }
            }
            resp.headers_mut().insert(
                "x-hookflow-run-id",
                HeaderValue::from_str(&run_id).expect("ids are ASCII"),
            );
            Ok(resp)
        }
    }
}
