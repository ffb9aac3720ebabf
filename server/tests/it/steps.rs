//! Each step kind, the DAG, filters, chaining and `result` mode, end to end.

use std::time::Duration;

use chrono::DateTime;
use serde_json::json;

use crate::utils::{Sink, flow, start, step, webhook};

#[tokio::test]
async fn http_step_sends_the_rendered_request_and_records_the_response() {
    let srv = start().await;
    let sink = Sink::start().await;
    srv.create_flow(flow("orders", webhook("shop/orders"), json!([
        {"id": "shape", "type": "transform", "output": {"order": "{{ $.trigger.body.id }}", "email": "{{ $.trigger.body.email | lower }}"}},
        {"id": "crm", "type": "http", "method": "POST", "url": sink.url("/notes"),
         "headers": {"X-Order": "{{ $.input.order }}"}, "query": {"source": "hookflow"},
         "auth": {"bearer": "t0ken"},
         "body": {"text": "Order {{ $.input.order }} from {{ $.input.email }}", "order": "{{ $.input.order }}"}}
    ]))).await;
    let run = srv
        .hook_and_wait("shop/orders", json!({"id": 42, "email": "Ana@Example.COM"}))
        .await;
    assert_eq!(run["status"], "succeeded", "{run:#}");
    let got = sink.received_at("/notes");
    assert_eq!(got.len(), 1);
    let req = &got[0];
    assert_eq!(req.method, "POST");
    assert_eq!(req.query.as_deref(), Some("source=hookflow"));
    assert_eq!(req.headers["x-order"], "42");
    assert_eq!(req.headers["authorization"], "Bearer t0ken");
    assert_eq!(
        req.headers["idempotency-key"],
        format!("{}:crm", run["id"].as_str().unwrap())
    );
    assert_eq!(
        req.json(),
        json!({"text": "Order 42 from ana@example.com", "order": 42})
    );
    let crm = step(&run, "crm");
    assert_eq!(crm["output"]["status"], 200);
    assert_eq!(crm["output"]["body"], json!({"ok": true, "path": "/notes"}));
    assert_eq!(
        crm["input"],
        json!({"order": 42, "email": "ana@example.com"})
    );
    assert_eq!(
        step(&run, "shape")["output"],
        json!({"order": 42, "email": "ana@example.com"})
    );
}

#[tokio::test]
async fn independent_steps_run_concurrently() {
    let srv = start().await;
    let sink = Sink::start().await;
    sink.answer("/slow-a", 200, Duration::from_millis(200));
    sink.answer("/slow-b", 200, Duration::from_millis(200));
    srv.create_flow(flow("fan", webhook("fan"), json!([
        {"id": "shape", "type": "transform", "output": {"x": 1}},
        {"id": "a", "type": "http", "url": sink.url("/slow-a"), "after": ["shape"]},
        {"id": "b", "type": "http", "url": sink.url("/slow-b"), "after": ["shape"]},
        {"id": "join", "type": "transform", "after": ["a", "b"], "output": {"a": "{{ $.input.a.status }}", "b": "{{ $.input.b.status }}"}}
    ]))).await;
    let run = srv.hook_and_wait("fan", json!({})).await;
    assert_eq!(run["status"], "succeeded", "{run:#}");
    let span = |id: &str| {
        let s = step(&run, id);
        let start = DateTime::parse_from_rfc3339(s["started_at"].as_str().unwrap())
            .unwrap()
            .timestamp_millis();
        (start, start + s["duration_ms"].as_i64().unwrap())
    };
    let (a0, a1) = span("a");
    let (b0, b1) = span("b");
    assert!(a1 - a0 >= 200 && b1 - b0 >= 200, "each call takes 200 ms");
    // Overlap: each started before the other finished.
    assert!(
        a0 < b1 && b0 < a1,
        "a {a0}..{a1} and b {b0}..{b1} did not overlap"
    );
    let (j0, _) = span("join");
    assert!(
        j0 >= a1.max(b1) - 1,
        "join started before its dependencies finished"
    );
    assert_eq!(step(&run, "join")["output"], json!({"a": 200, "b": 200}));
    assert_eq!(
        step(&run, "join")["input"]["a"]["status"],
        200,
        "several `after` ids give an object keyed by id"
    );
}

#[tokio::test]
async fn a_false_filter_skips_downstream_steps_and_the_run_ends_filtered() {
    let srv = start().await;
    let sink = Sink::start().await;
    srv.create_flow(flow(
        "paid",
        webhook("paid"),
        json!([
            {"id": "paid_only", "type": "filter", "condition": {"all": [
                {"path": "$.input.status", "op": "eq", "value": "paid"},
                {"path": "$.input.total", "op": "gt", "value": 10}]}},
            {"id": "notify", "type": "http", "url": sink.url("/paid")},
            {"id": "after_notify", "type": "transform", "output": {"done": true}}
        ]),
    ))
    .await;
    let run = srv
        .hook_and_wait("paid", json!({"status": "pending", "total": 50}))
        .await;
    assert_eq!(run["status"], "filtered", "{run:#}");
    assert_eq!(step(&run, "paid_only")["status"], "stopped");
    assert_eq!(step(&run, "notify")["status"], "skipped");
    assert_eq!(step(&run, "after_notify")["status"], "skipped");
    let run = srv
        .hook_and_wait("paid", json!({"status": "paid", "total": 50}))
        .await;
    assert_eq!(run["status"], "succeeded");
    assert_eq!(
        step(&run, "paid_only")["output"],
        json!({"status": "paid", "total": 50}),
        "a passing filter outputs its input"
    );
    assert_eq!(sink.received_at("/paid").len(), 1);
}

#[tokio::test]
async fn webhook_out_chains_to_other_flows_with_the_source_set() {
    let srv = start().await;
    let sink = Sink::start().await;
    srv.create_flow(flow("invoice", json!({"type": "manual"}), json!([
        {"id": "send", "type": "http", "url": sink.url("/invoice"), "body": {"order": "{{ $.input.order }}", "from": "{{ $.trigger.source.flow }}"}}
    ]))).await;
    srv.create_flow(flow(
        "mail",
        json!({"type": "manual"}),
        json!([
            {"id": "send", "type": "http", "url": sink.url("/mail"), "body": "{{ $.input }}"}
        ]),
    ))
    .await;
    srv.create_flow(flow(
        "status",
        webhook("status"),
        json!([
            {"id": "shape", "type": "transform", "output": {"order": "{{ $.trigger.body.id }}"}},
            {"id": "fan", "type": "webhook_out", "flows": ["invoice", "mail"]}
        ]),
    ))
    .await;
    let parent = srv.hook_and_wait("status", json!({"id": 7})).await;
    assert_eq!(parent["status"], "succeeded", "{parent:#}");
    let runs = step(&parent, "fan")["output"]["runs"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(runs.len(), 2);
    for r in &runs {
        let child = srv.wait_run(r["run_id"].as_str().unwrap()).await;
        assert_eq!(child["status"], "succeeded", "{child:#}");
        assert_eq!(
            child["trigger"]["source"],
            json!({"flow": "status", "run_id": parent["id"], "step": "fan"})
        );
        assert_eq!(child["trigger"]["body"], json!({"order": 7}));
        assert_eq!(child["parent"]["run_id"], parent["id"]);
    }
    assert_eq!(
        sink.wait_for("/invoice", 1, Duration::from_secs(5)).await[0].json(),
        json!({"order": 7, "from": "status"})
    );
    assert_eq!(
        sink.wait_for("/mail", 1, Duration::from_secs(5)).await[0].json(),
        json!({"order": 7})
    );
    let (_, detail) = srv
        .get(&format!("/api/runs/{}", parent["id"].as_str().unwrap()))
        .await;
    assert_eq!(detail["children"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn chains_that_loop_are_refused_and_depth_is_bounded() {
    let srv = start().await;
    srv.create_flow(flow(
        "a",
        json!({"type": "manual"}),
        json!([{"id": "x", "type": "transform", "output": 1}]),
    ))
    .await;
    srv.create_flow(flow(
        "b",
        json!({"type": "manual"}),
        json!([{"id": "go", "type": "webhook_out", "flow": "a"}]),
    ))
    .await;
    let (status, body) = srv
        .put(
            "/api/flows/a",
            flow(
                "a",
                json!({"type": "manual"}),
                json!([{"id": "go", "type": "webhook_out", "flow": "b"}]),
            ),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["issues"][0]["message"]
            .as_str()
            .unwrap()
            .contains("cycle"),
        "{body}"
    );
}

#[tokio::test]
async fn result_mode_answers_with_the_rendered_run_output() {
    let srv = start().await;
    srv.create_flow(json!({"hookflow": 1, "name": "quote", "trigger": {"type": "webhook", "path": "quote",
        "respond": {"mode": "result", "status": 201, "headers": {"X-Quote": "{{ $.steps.price.amount }}"},
                    "body": {"quote": "{{ $.input }}", "for": "{{ $.trigger.body.customer }}"}}},
        "steps": [{"id": "price", "type": "transform", "output": {"amount": "{{ $.trigger.body.qty | number }}", "currency": "EUR"}}]})).await;
    let resp = srv
        .client
        .post(format!("{}/hooks/quote", srv.url))
        .json(&json!({"qty": "3", "customer": "acme"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    assert_eq!(resp.headers()["x-quote"], "3");
    assert!(resp.headers().contains_key("x-hookflow-run-id"));
    assert_eq!(
        resp.json::<serde_json::Value>().await.unwrap(),
        json!({"quote": {"amount": 3, "currency": "EUR"}, "for": "acme"})
    );
}

#[tokio::test]
async fn result_mode_reports_a_failed_run_as_500_and_a_slow_one_as_202() {
    let srv = start().await;
    let sink = Sink::start().await;
    sink.answer("/down", 503, Duration::ZERO);
    sink.answer("/slow", 200, Duration::from_millis(600));
    srv.create_flow(json!({"hookflow": 1, "name": "api", "trigger": {"type": "webhook", "respond": {"mode": "result"}},
        "steps": [{"id": "call", "type": "http", "url": sink.url("/down"), "retry": {"max_attempts": 1}}]})).await;
    srv.create_flow(json!({"hookflow": 1, "name": "slow", "trigger": {"type": "webhook", "respond": {"mode": "result", "timeout_ms": 100}},
        "steps": [{"id": "call", "type": "http", "url": sink.url("/slow")}]})).await;
    let (status, body) = srv.hook("api", json!({})).await;
    assert_eq!(status, 500, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("answered 503"),
        "{body}"
    );
    let (status, body) = srv.hook("slow", json!({})).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(
        srv.wait_run(body["run_id"].as_str().unwrap()).await["status"],
        "succeeded"
    );
}

#[tokio::test]
async fn on_error_continue_keeps_the_run_going_with_the_error_as_output() {
    let srv = start().await;
    let sink = Sink::start().await;
    sink.answer("/broken", 500, Duration::ZERO);
    srv.create_flow(flow("tolerant", webhook("tolerant"), json!([
        {"id": "call", "type": "http", "url": sink.url("/broken"), "on_error": "continue", "retry": {"max_attempts": 2, "initial_ms": 10}},
        {"id": "next", "type": "transform", "output": {"saw": "{{ $.input.error }}"}}
    ]))).await;
    let run = srv.hook_and_wait("tolerant", json!({})).await;
    assert_eq!(run["status"], "succeeded", "{run:#}");
    let call = step(&run, "call");
    assert_eq!(call["status"], "failed");
    assert_eq!(call["attempts"], 2, "5xx is retried");
    assert!(
        step(&run, "next")["output"]["saw"]
            .as_str()
            .unwrap()
            .contains("answered 500")
    );
    assert_eq!(sink.received_at("/broken").len(), 2);
}

#[tokio::test]
async fn http_retries_429_and_keeps_the_last_response_when_it_gives_up() {
    let srv = start().await;
    let sink = Sink::start().await;
    sink.answer("/limited", 429, Duration::ZERO);
    srv.create_flow(flow("limited", webhook("limited"), json!([
        {"id": "call", "type": "http", "url": sink.url("/limited"), "retry": {"max_attempts": 3, "initial_ms": 10, "max_ms": 50}}
    ]))).await;
    let run = srv.hook_and_wait("limited", json!({})).await;
    assert_eq!(run["status"], "failed");
    assert_eq!(step(&run, "call")["attempts"], 3);
    assert_eq!(
        step(&run, "call")["output"]["status"],
        429,
        "the last response is kept"
    );
    assert!(
        run["error"]
            .as_str()
            .unwrap()
            .contains("step 'call' failed"),
        "{run:#}"
    );
}
