//! Turning a request (or a manual payload, a replay, a chained body) into a queued run. For a
//! webhook, the event and its run are committed together before anyone answers 2xx.

use async_trait::async_trait;
use axum::{
    body::Bytes,
    http::{HeaderMap, Method},
};
use flows_engine::{
    PreparedFlow, RunInfo, RunStatus, StepRecord, StepSink,
    executor::{Env, execute},
    ids::new_id,
    secrets::RunSecrets,
};
use sea_orm::Set;
use serde_json::{Map, Value, json};

use crate::{
    app::App,
    error::Error,
    store::{
        entities::{events, runs},
        now_ms, rfc3339,
        runs::step_row,
        to_json_text,
        writer::{Accepted, Ahead, NewRun},
    },
    worker::{StoreDispatch, flow_secrets},
};

/// A request body parsed by its declared content type, and its bytes when they are the JSON
/// text of that value (so they can be stored as they came instead of written out again).
pub fn parse_body<'b>(
    headers: &HeaderMap,
    body: &'b [u8],
) -> Result<(Value, Option<&'b str>), Error> {
    let ct = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if ct == "application/json" || ct.ends_with("+json") {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok((Value::Null, None));
        }
        let value = serde_json::from_slice(body)
            .map_err(|e| Error::BadRequest(format!("the body is not valid JSON: {e}")))?;
        // Parsed, so UTF-8 (JSON admits nothing else); checked all the same.
        return Ok((value, std::str::from_utf8(body).ok()));
    }
    if ct == "application/x-www-form-urlencoded" {
        return Ok((form_object(body), None));
    }
    Ok((
        Value::String(String::from_utf8_lossy(body).into_owned()),
        None,
    ))
}

/// A webhook's trigger document, as the steps see it. Built by hand: `json!` would copy the body
/// and headers through a serializer.
fn trigger_doc(
    method: &str,
    path: &str,
    headers: Value,
    query: Value,
    body: Value,
    received_at: String,
) -> Value {
    Value::Object(Map::from_iter([
        ("method".to_string(), Value::from(method)),
        ("path".to_string(), Value::from(path)),
        ("headers".to_string(), headers),
        ("query".to_string(), query),
        ("body".to_string(), body),
        ("received_at".to_string(), Value::from(received_at)),
        ("source".to_string(), Value::Null),
    ]))
}

/// The stored text of a webhook's trigger document, built from parts already in JSON: the
/// headers and query as stored with the event, and the body as it arrived when it is JSON.
/// Parses to the same document as the trigger the steps see (the tests check it); writing that
/// document out again cost more than anything else a webhook does before its commit.
fn trigger_text(
    method: &str,
    path: &str,
    headers: &str,
    query: &str,
    body: (&Value, Option<&str>),
    received_at: &str,
) -> String {
    let body_text = match body {
        (_, Some(raw)) => std::borrow::Cow::Borrowed(raw),
        (value, None) => std::borrow::Cow::Owned(to_json_text(value)),
    };
    let quoted = |s: &str| to_json_text(&Value::from(s));
    let mut text =
        String::with_capacity(96 + path.len() + headers.len() + query.len() + body_text.len());
    text.push_str("{\"method\":");
    text.push_str(&quoted(method));
    text.push_str(",\"path\":");
    text.push_str(&quoted(path));
    text.push_str(",\"headers\":");
    text.push_str(headers);
    text.push_str(",\"query\":");
    text.push_str(query);
    text.push_str(",\"body\":");
    text.push_str(&body_text);
    text.push_str(",\"received_at\":");
    text.push_str(&quoted(received_at));
    text.push_str(",\"source\":null}");
    text
}

/// Form or query pairs as an object; a repeated key becomes an array.
pub fn form_object(raw: &[u8]) -> Value {
    let mut map = Map::new();
    for (k, v) in url::form_urlencoded::parse(raw) {
        let v = Value::String(v.into_owned());
        match map.get_mut(k.as_ref()) {
            Some(Value::Array(items)) => items.push(v),
            Some(existing) => *existing = Value::Array(vec![existing.take(), v]),
            None => {
                map.insert(k.into_owned(), v);
            }
        }
    }
    Value::Object(map)
}

/// An inbound webhook request, after routing and size checks.
pub struct Inbound {
    pub method: Method,
    pub path: String,
    pub headers: HeaderMap,
    pub query: Option<String>,
    pub body: Bytes,
}

/// Queue a run of `flow` (at `version`) for an inbound request, once the event and the run are
/// committed. `dedupe`: the request's delivery id and its window; a repeat within the window
/// queues nothing and answers with the first run.
pub async fn accept_webhook(
    app: &App,
    prepared: &PreparedFlow,
    version: i64,
    req: Inbound,
    dedupe: Option<(String, std::time::Duration)>,
) -> Result<(String, Accepted), Error> {
    let flow = prepared.name();
    let (body, raw_json) = parse_body(&req.headers, &req.body)?;
    let now = now_ms();
    let received_at = rfc3339(now);
    let headers = connectors::http::header_object(&req.headers);
    let query = form_object(req.query.as_deref().unwrap_or("").as_bytes());
    let (headers_text, query_text) = (to_json_text(&headers), to_json_text(&query));
    let text = trigger_text(
        req.method.as_str(),
        &req.path,
        &headers_text,
        &query_text,
        (&body, raw_json),
        &received_at,
    );
    let trigger = trigger_doc(
        req.method.as_str(),
        &req.path,
        headers,
        query,
        body,
        received_at,
    );
    // A JSON request is stored once, in its run's trigger: method, path, headers and query as
    // the event would hold them, the body byte for byte, the time to the millisecond; the
    // delivery id is among the headers. Only a body the trigger cannot hold exactly (a form,
    // text, bytes that are not UTF-8) keeps its raw bytes in an event row beside the run.
    let event_id = raw_json.is_none().then(|| new_id("evt"));
    let event = event_id.clone().map(|id| events::ActiveModel {
        id: Set(id),
        flow: Set(flow.to_string()),
        method: Set(req.method.to_string()),
        path: Set(req.path),
        headers: Set(headers_text),
        query: Set(query_text),
        body: Set(req.body.to_vec()),
        received_at: Set(now),
        dedupe_key: Set(dedupe.as_ref().map(|(k, _)| k.clone())),
    });
    let (id, mut run) = new_run(flow, version, text, 0, None, None);
    run.event_id = Set(event_id);
    let mut ahead = run_ahead(app, prepared, version, &id, &mut run, trigger, now).await;
    let ended = ahead.ended;
    if ended.is_some() {
        // A run that ended here is neither handed to a worker nor parked for one: what a
        // worker would need of it (the parsed trigger, the records' documents) is freed here,
        // on the thread that allocated it, not by the writer after the commit.
        ahead.steps.records = Vec::new();
        ahead.steps.trigger = Value::Null;
    }
    let dedupe = dedupe.map(|(key, window)| (key, now + window.as_millis() as i64));
    let accepted = app
        .writer
        .submit(NewRun {
            event,
            run,
            dedupe,
            ahead: Some(ahead.steps),
        })
        .await?;
    if let (Accepted::Queued, Some(status)) = (&accepted, ended) {
        metrics::counter!("hookflow_runs_started_total", "flow" => flow.to_string(), "via" => "ingest").increment(1);
        metrics::counter!("hookflow_runs_total", "flow" => flow.to_string(), "status" => status.as_str()).increment(1);
    }
    Ok((id, accepted))
}

/// What running ahead of the queue did.
struct RanAhead {
    steps: Ahead,
    /// The run ended there, with this status.
    ended: Option<RunStatus>,
}

/// Run the steps that reach nothing outside the run (transform, filter) now, before the run is
/// stored, when the flow has no other steps or a worker is free to take the run. A run that
/// ends there (a filter said no, a flow of transforms) is stored finished with their records
/// and never waits for a worker nor writes again. Otherwise the first step with effects, and
/// all after it, are left to a worker: handed over, it starts from these records (committed
/// with the run); queued after all, its claimer computes them again. Steps without effects
/// give the same result wherever they run, so recovery does not change.
async fn run_ahead(
    app: &App,
    flow: &PreparedFlow,
    version: i64,
    id: &str,
    run: &mut runs::ActiveModel,
    trigger: Value,
    now: i64,
) -> RanAhead {
    let pure_start = flow
        .nodes
        .iter()
        .any(|n| n.deps.is_empty() && !n.exec.has_effects());
    // A run that goes on to a step with effects benefits only when it is handed over: queued,
    // its claimer would compute these steps again.
    let all_pure = flow.nodes.iter().all(|n| !n.exec.has_effects());
    let mut steps = Ahead {
        rows: Vec::new(),
        records: Vec::new(),
        trigger,
    };
    if !pure_start || !(all_pure || app.handoff.would_take(flow.name())) {
        return RanAhead { steps, ended: None };
    }
    // Whatever goes wrong here is left to the worker, which meets it again and records it:
    // the webhook is accepted all the same.
    let secrets = match flow_secrets(app, flow).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(flow = flow.name(), error = %e, "could not run steps ahead; a worker runs them");
            return RanAhead { steps, ended: None };
        }
    };
    let run_secrets = RunSecrets::new(&secrets);
    let info = RunInfo {
        id: id.to_string(),
        flow: flow.name().to_string(),
        version,
        attempt: 1,
        depth: 0,
    };
    let env = Env {
        secrets: &run_secrets,
        dispatch: &StoreDispatch { app },
        sink: &InMemory,
        pure_only: true,
    };
    // Keeping records in memory cannot fail.
    let Ok(outcome) = execute(flow, &steps.trigger, &info, Vec::new(), &env).await else {
        return RanAhead { steps, ended: None };
    };
    let body = steps.trigger.get("body");
    steps.rows = outcome
        .records
        .iter()
        .map(|r| step_row(id, r, body))
        .collect();
    let ended = outcome.complete.then_some(outcome.status);
    if ended.is_some() {
        run.started_at = Set(Some(now));
        let mut output = outcome.output;
        run_secrets.redact(&mut output);
        run.status = Set(outcome.status.as_str().to_string());
        run.error = Set(outcome.error);
        run.output = Set(serde_json::to_string(&output).ok());
        run.finished_at = Set(Some(now_ms()));
    }
    steps.records = outcome.records;
    RanAhead { steps, ended }
}

/// Steps run ahead of the queue are kept in the outcome and written with the run.
struct InMemory;

#[async_trait]
impl StepSink for InMemory {
    async fn record(&self, _: &RunInfo, _: &StepRecord, _: bool) -> Result<(), String> {
        Ok(())
    }
}

/// A run started without a request: manual, replayed, or chained from another flow.
pub struct Started {
    pub body: Value,
    pub source: Value,
    pub depth: i32,
    pub parent: Option<(String, String)>,
    pub key: Option<String>,
    pub method: &'static str,
}

impl Started {
    pub fn manual(body: Value) -> Self {
        Self {
            body,
            source: Value::Null,
            depth: 0,
            parent: None,
            key: None,
            method: "POST",
        }
    }
}

/// Queue a run of `flow` with a synthetic trigger; returns the run id once committed.
pub async fn start_run(app: &App, flow: &str, version: i64, s: Started) -> Result<String, Error> {
    let trigger = json!({
        "method": s.method, "path": null, "headers": {}, "query": {},
        "body": s.body, "received_at": rfc3339(now_ms()), "source": s.source,
    });
    queue_trigger(app, flow, version, &trigger, s.depth, s.parent, s.key).await
}

/// Queue a run for an existing trigger document (replay keeps the original request).
pub async fn queue_trigger(
    app: &App,
    flow: &str,
    version: i64,
    trigger: &Value,
    depth: i32,
    parent: Option<(String, String)>,
    key: Option<String>,
) -> Result<String, Error> {
    let (id, run) = new_run(flow, version, to_json_text(trigger), depth, parent, key);
    app.writer
        .submit(NewRun {
            event: None,
            run,
            dedupe: None,
            ahead: None,
        })
        .await?;
    Ok(id)
}

/// A new queued run with its trigger (stored text), and its id.
fn new_run(
    flow: &str,
    version: i64,
    trigger: String,
    depth: i32,
    parent: Option<(String, String)>,
    key: Option<String>,
) -> (String, runs::ActiveModel) {
    let now = now_ms();
    let (parent_run, parent_step) = parent.unzip();
    let id = new_id("run");
    let run = runs::ActiveModel {
        id: Set(id.clone()),
        flow: Set(flow.to_string()),
        version: Set(version),
        event_id: Set(None),
        status: Set(RunStatus::Queued.as_str().to_string()),
        attempt: Set(1),
        trigger: Set(trigger),
        parent_run: Set(parent_run),
        parent_step: Set(parent_step),
        depth: Set(depth),
        idempotency_key: Set(key),
        error: Set(None),
        output: Set(None),
        worker: Set(None),
        lease_until: Set(None),
        available_at: Set(now),
        created_at: Set(now),
        started_at: Set(None),
        finished_at: Set(None),
    };
    (id, run)
}

#[cfg(test)]
mod tests {
    use axum::http::{HeaderValue, header::CONTENT_TYPE};

    use super::*;

    /// The stored text of a trigger reads back as the document the steps ran on, for every kind
    /// of body, whether the body's own bytes were stored or it was written out.
    #[test]
    fn stored_trigger_text_reads_back_as_the_trigger() {
        let cases: [(&str, &[u8]); 9] = [
            (
                "application/json",
                br#"{"id": 1, "b": [true, null, 2.5], "s": "a\"b\u00e9\n"}"#,
            ),
            (
                "application/json; charset=utf-8",
                b"  [1, {\"z\": {}, \"a\": []}]\n",
            ),
            (
                "application/cloudevents+json",
                "\"caf\u{e9} \u{1f600}\"".as_bytes(),
            ),
            ("application/json", b"12345678901234567890"),
            ("application/json", b"{\"dup\": 1, \"dup\": 2}"),
            ("application/json", b" \n "),
            ("application/x-www-form-urlencoded", b"a=1&a=2&b=%22x%22"),
            ("text/plain", b"plain \"text\" \\ with\tcontrol"),
            ("", b"\xff not utf-8"),
        ];
        for (ct, raw) in cases {
            let mut headers = HeaderMap::new();
            headers.insert(CONTENT_TYPE, HeaderValue::from_str(ct).unwrap());
            headers.insert("x-quote", HeaderValue::from_static("say \"hi\""));
            let (body, raw_json) = parse_body(&headers, raw).unwrap();
            let (headers, query) = (
                connectors::http::header_object(&headers),
                form_object(b"q=%E2%9C%93&n=1"),
            );
            let text = trigger_text(
                "POST",
                "shop/\"orders\"",
                &to_json_text(&headers),
                &to_json_text(&query),
                (&body, raw_json),
                "2026-01-02T03:04:05.678Z",
            );
            let doc = trigger_doc(
                "POST",
                "shop/\"orders\"",
                headers,
                query,
                body,
                "2026-01-02T03:04:05.678Z".into(),
            );
            let stored: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(stored, doc, "{ct}: {text}");
            assert_eq!(
                stored.as_object().unwrap().keys().collect::<Vec<_>>(),
                doc.as_object().unwrap().keys().collect::<Vec<_>>()
            );
            assert_eq!(
                raw_json.is_some(),
                ct.contains("json") && !raw.trim_ascii().is_empty()
            );
        }
    }
}
