//! Webhook ingress answers: 202, and every error with a JSON body.

use serde_json::{Value, json};

use crate::{
    procs::count,
    utils::{flow, start},
};

#[tokio::test]
async fn ingress_errors_are_clear_json() {
    let srv = start_with_limit().await;
    srv.create_flow(json!({"hookflow": 1, "name": "in", "trigger": {"type": "webhook", "path": "in/orders", "methods": ["POST", "PUT"]}, "steps": []})).await;
    srv.create_flow(json!({"hookflow": 1, "name": "off", "enabled": false, "trigger": {"type": "webhook"}, "steps": []})).await;
    let url = |p: &str| format!("{}/hooks/{p}", srv.url);
    let c = &srv.client;

    let r = c
        .post(url("nowhere"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert!(
        r.json::<Value>().await.unwrap()["error"]
            .as_str()
            .unwrap()
            .contains("/hooks/nowhere")
    );

    let r = c.get(url("in/orders")).send().await.unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "POST, PUT");
    assert!(r.json::<Value>().await.unwrap()["error"].is_string());

    let r = c
        .post(url("in/orders"))
        .header("content-type", "application/json")
        .body("{\"a\":")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(
        r.json::<Value>().await.unwrap()["error"]
            .as_str()
            .unwrap()
            .contains("not valid JSON")
    );

    let deep = "[".repeat(500) + &"]".repeat(500);
    let r = c
        .post(url("in/orders"))
        .header("content-type", "application/json")
        .body(deep)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "deep nesting is refused, not a crash");

    let big = vec![b'x'; 2048];
    let r = c.post(url("in/orders")).body(big).send().await.unwrap();
    assert_eq!(r.status(), 413);
    assert!(
        r.json::<Value>().await.unwrap()["error"]
            .as_str()
            .unwrap()
            .contains("1024")
    );

    let r = c.post(url("off")).json(&json!({})).send().await.unwrap();
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));
    assert!(
        r.json::<Value>().await.unwrap()["error"]
            .as_str()
            .unwrap()
            .contains("disabled")
    );

    // Accepted bodies: JSON, form-encoded (an object) and plain text (a string).
    let r = c
        .put(url("in/orders"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("a=1&b=x&b=y")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let run = srv
        .wait_run(r.json::<Value>().await.unwrap()["run_id"].as_str().unwrap())
        .await;
    assert_eq!(run["trigger"]["body"], json!({"a": "1", "b": ["x", "y"]}));
    assert_eq!(run["trigger"]["method"], "PUT");
    assert_eq!(run["trigger"]["path"], "in/orders");

    let r = c
        .post(format!("{}?debug=1", url("in/orders")))
        .header("X-Custom", "Yes")
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let run = srv
        .wait_run(r.json::<Value>().await.unwrap()["run_id"].as_str().unwrap())
        .await;
    assert_eq!(run["trigger"]["body"], "hello");
    assert_eq!(run["trigger"]["query"], json!({"debug": "1"}));
    assert_eq!(
        run["trigger"]["headers"]["x-custom"], "Yes",
        "header names are lower-case"
    );
    assert!(
        run["trigger"]["received_at"]
            .as_str()
            .unwrap()
            .ends_with('Z')
    );
}

async fn start_with_limit() -> crate::utils::TestServer {
    crate::utils::start_with(|c| c.max_body_bytes = 1024).await
}

#[tokio::test]
async fn health_metrics_and_landing_page() {
    let srv = start().await;
    srv.create_flow(flow(
        "m",
        json!({"type": "webhook"}),
        json!([{"id": "t", "type": "transform", "output": 1}]),
    ))
    .await;
    srv.hook_and_wait("m", json!({})).await;
    let get = |p: &str| srv.client.get(format!("{}{p}", srv.url)).send();
    assert_eq!(get("/healthz").await.unwrap().status(), 200);
    assert_eq!(
        get("/readyz").await.unwrap().json::<Value>().await.unwrap()["status"],
        "ready"
    );
    let text = get("/metrics").await.unwrap().text().await.unwrap();
    for name in [
        "hookflow_webhooks_received_total",
        "hookflow_runs_total",
        "hookflow_step_duration_seconds",
        "hookflow_group_commits_total{writer=\"webhooks\"}",
        "hookflow_group_commit_seconds_bucket",
    ] {
        assert!(text.contains(name), "{name} missing from /metrics:\n{text}");
    }
    assert!(text.contains("flow=\"m\""));
    // `/` is the web UI, which sends a browser without a session to the login page.
    let page = get("/").await.unwrap();
    assert_eq!(page.url().path(), "/login");
    assert!(page.text().await.unwrap().contains("Log in to hookflow"));
    let openapi = get("/api/openapi.json")
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert!(openapi["openapi"].as_str().unwrap().starts_with("3."));
}

#[tokio::test]
async fn the_inbox_records_any_request() {
    let srv = start().await;
    let r = srv
        .client
        .put(format!("{}/inbox/crm?x=1", srv.url))
        .header("X-Test", "1")
        .json(&json!({"note": "hi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (status, body) = srv.get("/api/inbox/crm").await;
    assert_eq!(status, 200);
    let req = &body["requests"][0];
    assert_eq!(req["method"], "PUT");
    assert_eq!(req["body"], json!({"note": "hi"}));
    assert_eq!(req["query"], json!({"x": "1"}));
    assert_eq!(req["headers"]["x-test"], "1");
    let r = srv
        .client
        .post(format!("{}/inbox/bad%20name", srv.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

/// A JSON request is stored once, in its run's trigger, byte for byte; a body the trigger cannot
/// hold exactly (a form, bytes that are not UTF-8) keeps its raw bytes in an event row.
#[tokio::test]
async fn a_json_request_is_stored_once_and_other_bodies_keep_their_bytes() {
    let srv = start().await;
    srv.create_flow(json!({"hookflow": 1, "name": "once", "trigger": {"type": "webhook", "path": "once"}, "steps": []})).await;
    let store = &srv.app().store;
    let url = format!("{}/hooks/once", srv.url);
    let post = |ct: &'static str, body: &'static [u8]| {
        let (c, url) = (srv.client.clone(), url.clone());
        async move {
            let r = c
                .post(url)
                .header("content-type", ct)
                .header("webhook-id", "msg_1")
                .body(body)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 202);
            r.json::<Value>().await.unwrap()["run_id"]
                .as_str()
                .unwrap()
                .to_string()
        }
    };
    let events = |run: String| async move {
        count(
            store,
            "SELECT COUNT(*) AS n FROM events e JOIN runs r ON r.event_id = e.id WHERE r.id = $1",
            vec![run.into()],
        )
        .await
    };

    // Spacing and key order as sent: the stored trigger holds the body's own text.
    let raw: &[u8] = "{\"z\": 1,  \"a\": [2.50, \"é\"]}".as_bytes();
    let run = post("application/json", raw).await;
    let shown = srv.wait_run(&run).await;
    assert_eq!(shown["trigger"]["body"], json!({"z": 1, "a": [2.5, "é"]}));
    assert_eq!(shown["trigger"]["headers"]["webhook-id"], "msg_1");
    let text = std::str::from_utf8(raw).unwrap();
    let n = count(
        store,
        "SELECT COUNT(*) AS n FROM runs WHERE id = $1 AND event_id IS NULL AND trigger LIKE $2",
        vec![run.clone().into(), format!("%\"body\":{text},%").into()],
    )
    .await;
    assert_eq!(n, 1, "the run's trigger holds the body as it came");
    assert_eq!(events(run).await, 0, "no second copy of a JSON request");

    for (ct, raw) in [
        (
            "application/x-www-form-urlencoded",
            &b"b=%22x%22&a=1&a=2"[..],
        ),
        ("application/octet-stream", &b"\xff\x00 not utf-8"[..]),
    ] {
        let run = post(ct, raw).await;
        srv.wait_run(&run).await;
        assert_eq!(events(run.clone()).await, 1, "{ct}: an event row");
        let same = count(
            store,
            "SELECT COUNT(*) AS n FROM events e JOIN runs r ON r.event_id = e.id WHERE r.id = $1 AND e.body = $2",
            vec![run.into(), raw.to_vec().into()],
        )
        .await;
        assert_eq!(same, 1, "{ct}: the event holds the bytes as they came");
    }
}
