//! Run records, retry (from the failed step), replay, paging, and durability across a restart.

use std::time::Duration;

use serde_json::json;

use crate::utils::{Sink, flow, start, step, webhook};

#[tokio::test]
async fn retry_resumes_from_the_failed_step_keeping_earlier_outputs() {
    let srv = start().await;
    let sink = Sink::start().await;
    sink.answer("/second", 500, Duration::ZERO);
    srv.create_flow(flow("two", webhook("two"), json!([
        {"id": "first", "type": "http", "url": sink.url("/first")},
        {"id": "second", "type": "http", "url": sink.url("/second"), "retry": {"max_attempts": 1}},
        {"id": "third", "type": "transform", "output": {"ok": true}}
    ]))).await;
    let run = srv.hook_and_wait("two", json!({"n": 1})).await;
    assert_eq!(run["status"], "failed", "{run:#}");
    assert_eq!(run["attempt"], 1);
    assert_eq!(step(&run, "second")["status"], "failed");
    let id = run["id"].as_str().unwrap();

    let (status, body) = srv
        .post(&format!("/api/runs/{id}/replay"), json!(null))
        .await;
    assert_eq!(status, 202, "{body}");
    let (status, body) = srv
        .post(&format!("/api/runs/{id}/retry"), json!(null))
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["attempt"], 2);
    // Still failing: a second retry attempt fails again.
    let again = srv.wait_run(id).await;
    assert_eq!(again["status"], "failed");
    sink.clear_rules();
    let (status, _) = srv
        .post(&format!("/api/runs/{id}/retry"), json!(null))
        .await;
    assert_eq!(status, 202);
    let done = srv.wait_run(id).await;
    assert_eq!(done["status"], "succeeded", "{done:#}");
    assert_eq!(done["attempt"], 3);
    assert_eq!(step(&done, "third")["output"], json!({"ok": true}));
    // `first` ran once for the original run and once for the replay, never for the retries.
    assert_eq!(sink.received_at("/first").len(), 2);
    let (status, body) = srv
        .post(&format!("/api/runs/{id}/retry"), json!(null))
        .await;
    assert_eq!(status, 409, "only failed runs can be retried: {body}");
}

#[tokio::test]
async fn replay_starts_a_new_run_with_the_same_trigger_on_the_current_version() {
    let srv = start().await;
    srv.create_flow(flow("echo", webhook("echo"), json!([{"id": "v", "type": "transform", "output": {"v": 1, "got": "{{ $.trigger.body.x }}"}}]))).await;
    let first = srv.hook_and_wait("echo", json!({"x": "hello"})).await;
    let (status, _) = srv.put("/api/flows/echo", flow("echo", webhook("echo"), json!([{"id": "v", "type": "transform", "output": {"v": 2, "got": "{{ $.trigger.body.x }}"}}]))).await;
    assert_eq!(status, 200);
    let (status, body) = srv
        .post(
            &format!("/api/runs/{}/replay", first["id"].as_str().unwrap()),
            json!(null),
        )
        .await;
    assert_eq!(status, 202);
    let replay = srv.wait_run(body["run_id"].as_str().unwrap()).await;
    assert_ne!(replay["id"], first["id"]);
    assert_eq!(replay["version"], 2);
    assert_eq!(replay["trigger"]["body"], json!({"x": "hello"}));
    assert_eq!(
        step(&replay, "v")["output"],
        json!({"v": 2, "got": "hello"})
    );
}

#[tokio::test]
async fn run_list_filters_and_pages_newest_first() {
    let srv = start().await;
    srv.create_flow(flow("a", webhook("a"), json!([{"id": "f", "type": "filter", "condition": {"path": "$.input.ok", "op": "eq", "value": true}}]))).await;
    srv.create_flow(flow("b", webhook("b"), json!([]))).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(
            srv.hook_and_wait("a", json!({"ok": i % 2 == 0})).await["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    srv.hook_and_wait("b", json!({})).await;
    let (_, page1) = srv.get("/api/runs?flow=a&limit=2").await;
    let got: Vec<&str> = page1["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(got, [ids[4].as_str(), ids[3].as_str()]);
    let cursor = page1["next_cursor"].as_str().unwrap();
    let (_, page2) = srv
        .get(&format!("/api/runs?flow=a&limit=2&cursor={cursor}"))
        .await;
    let got: Vec<&str> = page2["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(got, [ids[2].as_str(), ids[1].as_str()]);
    let (_, filtered) = srv.get("/api/runs?flow=a&status=filtered").await;
    assert_eq!(filtered["runs"].as_array().unwrap().len(), 2);
    let (status, body) = srv.get("/api/runs?status=bogus").await;
    assert_eq!(status, 400, "{body}");
    let (status, _) = srv.get("/api/runs/run_nope").await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn accepted_webhooks_and_their_runs_survive_a_restart() {
    let srv = start().await;
    let sink = Sink::start().await;
    srv.create_flow(flow(
        "keep",
        webhook("keep"),
        json!([{"id": "send", "type": "http", "url": sink.url("/kept"), "body": "{{ $.input }}"}]),
    ))
    .await;
    let mut ids = Vec::new();
    for i in 0..20 {
        let (status, body) = srv.hook("keep", json!({"i": i})).await;
        assert_eq!(status, 202);
        ids.push(body["run_id"].as_str().unwrap().to_string());
    }
    let srv = srv.restart(|_| {}).await;
    for id in &ids {
        assert_eq!(srv.wait_run(id).await["status"], "succeeded");
    }
    let got = sink.wait_for("/kept", 20, Duration::from_secs(10)).await;
    let mut seen: Vec<i64> = got
        .iter()
        .map(|r| r.json()["i"].as_i64().unwrap())
        .collect();
    seen.sort();
    seen.dedup();
    assert_eq!(
        seen,
        (0..20).collect::<Vec<_>>(),
        "every acknowledged event reached the sink"
    );
}

#[tokio::test]
async fn manual_runs_can_wait_for_the_result() {
    let srv = start().await;
    srv.create_flow(flow("calc", json!({"type": "manual"}), json!([{"id": "t", "type": "transform", "output": {"twice": ["{{ $.input.x }}", "{{ $.input.x }}"]}}]))).await;
    let (status, run) = srv
        .post("/api/flows/calc/run?wait=true", json!({"x": 5}))
        .await;
    assert_eq!(status, 200, "{run}");
    assert_eq!(run["status"], "succeeded");
    assert_eq!(run["output"], json!({"twice": [5, 5]}));
    let (status, body) = srv.post("/api/flows/calc/run", json!({"x": 1})).await;
    assert_eq!(status, 202);
    assert!(body["run_id"].as_str().unwrap().starts_with("run_"));
    let (status, _) = srv.post("/api/flows/nope/run", json!({})).await;
    assert_eq!(status, 404);
}
