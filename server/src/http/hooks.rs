//! `/hooks/<path>`: webhook ingress. Route from memory, check method, state and size, verify
//! the raw bytes, dedupe, then commit the event and its run before answering; `respond: result`
//! waits for the run.

use std::{collections::HashMap, time::Duration};

use axum::{
    Json,
    body::Body,
    extract::{Path, RawQuery, State},
    http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header},
    response::{IntoResponse, Response},
};
use connectors::verify::{Verifier, VerifyError};
use flows_engine::{Respond, Trigger, WebhookTrigger, secrets::RunSecrets, template::NoSecrets};
use serde_json::{Map, Value, json};

use crate::{
    app::AppState,
    catalog::Served,
    error::Error,
    ingest::{Inbound, accept_webhook},
    store::{runs::step_record, writer::Accepted},
};

pub async fn receive(
    State(app): State<AppState>,
    Path(path): Path<String>,
    method: Method,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    // Routed once: the answer and its metric's label come from the same catalog snapshot.
    let served = app.catalog.route(&path);
    let flow = served
        .as_ref()
        .map_or_else(|| "-".to_string(), |s| s.flow.name().to_string());
    let resp = match handle(&app, served, path, method, query, headers, body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    metrics::counter!("hookflow_webhooks_received_total", "flow" => flow, "status" => resp.status().as_u16().to_string())
        .increment(1);
    resp
}

async fn handle(
    app: &AppState,
    served: Option<Served>,
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
    let served =
        served.ok_or_else(|| Error::NotFound(format!("no flow listens at /hooks/{path}")))?;
    let flow = &served.flow;
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
    let limit = hook.max_body_bytes.unwrap_or(app.cfg.max_body_bytes);
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
    // Verify the raw bytes before anything parses them; a failure starts nothing.
    if let Some(verifier) = &served.verifier {
        verify(app, verifier, &headers, &body).await?;
    }
    let dedupe = dedupe_key(hook, served.verifier.as_deref(), &headers)?;
    let inbound = Inbound {
        method,
        path,
        headers,
        query,
        body,
    };
    let (run_id, accepted) = accept_webhook(app, flow, served.version, inbound, dedupe).await?;
    if let Accepted::Duplicate { run_id } = accepted {
        return Ok((
            StatusCode::OK,
            Json(json!({"duplicate": true, "run_id": run_id})),
        )
            .into_response());
    }
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
                .run_steps(&run)
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

async fn verify(
    app: &AppState,
    verifier: &Verifier,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), Error> {
    let secrets: HashMap<String, String> = if verifier.secret_refs().is_empty() {
        HashMap::new()
    } else {
        app.store.load_secrets(&app.key).await?
    };
    let source = RunSecrets::new(&secrets);
    match verifier.verify(headers, body, &source, chrono::Utc::now().timestamp()) {
        Ok(()) => Ok(()),
        Err(VerifyError::Unauthorized(why)) => Err(Error::Unauthorized(format!(
            "webhook verification failed: {why}"
        ))),
        Err(VerifyError::Malformed(why)) => Err(Error::BadRequest(format!(
            "webhook verification failed: {why}"
        ))),
        Err(VerifyError::Config(why)) => {
            // The sender cannot fix this; the operator can. Say so without naming secrets.
            tracing::error!(scheme = verifier.scheme(), problem = %why, "webhook verification is misconfigured");
            Err(Error::Unavailable("this webhook's verification is misconfigured; the operator can see why in the server log".into()))
        }
    }
}

/// The delivery id to dedupe on: the flow's `dedupe.header`, else the scheme's default
/// (`webhook-id` for Standard Webhooks). A configured header that is missing is a 400.
fn dedupe_key(
    hook: &WebhookTrigger,
    verifier: Option<&Verifier>,
    headers: &HeaderMap,
) -> Result<Option<(String, Duration)>, Error> {
    const MAX_KEY: usize = 256;
    let (header, window) = match (
        &hook.dedupe,
        verifier.and_then(Verifier::default_dedupe_header),
    ) {
        (Some(d), _) => (d.header.as_str(), Duration::from_secs(d.window_s)),
        (None, Some(h)) => (h, Duration::from_secs(86_400)),
        (None, None) => return Ok(None),
    };
    let value = headers
        .get(header)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| {
            Error::BadRequest(format!(
                "missing header {header}, which identifies the delivery for deduplication"
            ))
        })?;
    if value.len() > MAX_KEY {
        return Err(Error::BadRequest(format!(
            "header {header} is longer than {MAX_KEY} bytes"
        )));
    }
    Ok(Some((value.to_string(), window)))
}
