//! The `schedule` trigger: ticks, poll + emit of new items by key, validation, and the
//! webhook + reconciliation example processing each order once.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{Json, Router, extract::State, routing::get};
use serde_json::{Value, json};

use crate::{
    procs::count,
    utils::{TestServer, flow, start, start_with},
};

/// A stand-in for a source's API: `GET /orders` answers `{"orders": [...]}`.
struct Api {
    url: String,
    orders: Arc<Mutex<Vec<Value>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Api {
    async fn start(orders: Vec<Value>) -> Api {
        let orders = Arc::new(Mutex::new(orders));
        let app = Router::new()
            .route(
                "/orders",
                get(|State(o): State<Arc<Mutex<Vec<Value>>>>| async move {
                    Json(json!({"orders": *o.lock().unwrap()}))
                }),
            )
            .with_state(orders.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/orders", listener.local_addr().unwrap());
        let task = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Api { url, orders, task }
    }
}

impl Drop for Api {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn runs_of(srv: &TestServer, flow: &str) -> Vec<Value> {
    let (_, list) = srv.get(&format!("/api/runs?flow={flow}&limit=100")).await;
    list.get("runs")
        .or(Some(&list))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

async fn wait_runs(srv: &TestServer, flow: &str, n: usize) -> Vec<Value> {
    for _ in 0..400 {
        let runs = runs_of(srv, flow).await;
        if runs.len() >= n
            && runs
                .iter()
                .all(|r| !["queued", "running"].contains(&r["status"].as_str().unwrap_or("")))
        {
            return runs;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("flow {flow} did not get {n} finished runs");
}

/// Wait until the schedule of `flow` has fired `more` more times.
async fn wait_ticks(srv: &TestServer, flow: &str, more: usize) {
    let store = &srv.app().store;
    let fired = || async {
        store
            .schedules()
            .await
            .unwrap()
            .into_iter()
            .find(|s| s.flow == flow)
            .and_then(|s| s.last_fired_at)
    };
    let mut seen = fired().await;
    let mut n = 0;
    for _ in 0..400 {
        let now = fired().await;
        if now != seen {
            seen = now;
            n += 1;
            if n >= more {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the schedule of {flow} stopped firing");
}

#[tokio::test]
async fn an_interval_schedule_starts_one_run_per_tick() {
    let srv = start().await;
    srv.create_flow(flow(
        "every",
        json!({"type": "schedule", "every_s": 1}),
        json!([{"id": "t", "type": "transform", "output": {"at": "{{ $.trigger.body.scheduled_at }}", "how": "{{ $.trigger.method }}"}}]),
    ))
    .await;
    let runs = wait_runs(&srv, "every", 2).await;
    let (_, detail) = srv
        .get(&format!("/api/runs/{}", runs[0]["id"].as_str().unwrap()))
        .await;
    assert_eq!(detail["steps"][0]["output"]["how"], "SCHEDULE");
    let mut ticks = Vec::new();
    for r in &runs {
        let (_, d) = srv
            .get(&format!("/api/runs/{}", r["id"].as_str().unwrap()))
            .await;
        ticks.push(d["steps"][0]["output"]["at"].as_str().unwrap().to_string());
    }
    let distinct: std::collections::HashSet<_> = ticks.iter().collect();
    assert_eq!(distinct.len(), ticks.len(), "one run per tick: {ticks:?}");
}

#[tokio::test]
async fn poll_and_emit_start_one_run_per_new_item() {
    let api = Api::start(vec![
        json!({"id": 1, "total": 10}),
        json!({"id": "two", "total": 20}),
    ])
    .await;
    let srv = start().await;
    srv.create_flow(flow(
        "reconcile",
        json!({"type": "schedule", "every_s": 1, "poll": {"url": api.url}, "emit": {"items": "$.body.orders[*]", "key": "$.id"}}),
        json!([{"id": "t", "type": "transform", "output": "{{ $.trigger.body }}"}]),
    ))
    .await;
    wait_runs(&srv, "reconcile", 2).await;
    api.orders
        .lock()
        .unwrap()
        .push(json!({"id": 3, "total": 30}));
    wait_runs(&srv, "reconcile", 3).await;
    // Later polls see the same three orders: nothing new starts.
    wait_ticks(&srv, "reconcile", 2).await;
    let runs = wait_runs(&srv, "reconcile", 3).await;
    assert_eq!(runs.len(), 3, "each item started exactly one run");
    assert_eq!(
        srv.app()
            .store
            .schedule_item_count("reconcile")
            .await
            .unwrap(),
        3
    );
    let mut totals = Vec::new();
    for r in &runs {
        let (_, d) = srv
            .get(&format!("/api/runs/{}", r["id"].as_str().unwrap()))
            .await;
        totals.push(d["steps"][0]["output"]["total"].as_i64().unwrap());
    }
    totals.sort();
    assert_eq!(totals, [10, 20, 30]);
}

#[tokio::test]
async fn schedule_configs_are_validated_with_locations() {
    let srv = start().await;
    let (status, body) = srv
        .post(
            "/api/flows",
            flow(
                "bad",
                json!({"type": "schedule", "cron": "*/5 * * *", "poll": {"url": "ftp://x", "retry": {"tries": 2}},
                       "emit": {"items": "$.body[*]"}}),
                json!([]),
            ),
        )
        .await;
    assert_eq!(status, 422, "{body:#}");
    let text = body["issues"].to_string();
    for want in ["trigger.cron", "trigger.emit.key"] {
        assert!(text.contains(want), "no issue at {want}: {body:#}");
    }
    // The poll request is checked as an http step.
    let (status, body) = srv
        .post(
            "/api/flows",
            flow(
                "badpoll",
                json!({"type": "schedule", "every_s": 60, "poll": {"url": "ftp://x", "retry": {"tries": 2}}}),
                json!([]),
            ),
        )
        .await;
    assert_eq!(status, 422, "{body:#}");
    assert!(
        body["issues"][0]["path"]
            .as_str()
            .unwrap()
            .starts_with("trigger.poll"),
        "{body:#}"
    );
    let (status, body) = srv
        .post(
            "/api/flows",
            flow(
                "cron",
                json!({"type": "schedule", "cron": "0 3 * * *", "poll": {"url": "http://127.0.0.1:1/x", "headers": {"Authorization": "Bearer {{ secrets.NOPE }}"}}}),
                json!([]),
            ),
        )
        .await;
    assert_eq!(status, 422);
    assert!(
        body.to_string().contains("unknown secret 'NOPE'"),
        "{body:#}"
    );
}

/// The example pair: an order that came by webhook and is later found by the reconciliation
/// poll is fulfilled once; an order whose webhook was missed is fulfilled by reconciliation.
#[tokio::test]
async fn webhook_and_reconciliation_process_each_order_once() {
    let api = Api::start(Vec::new()).await;
    let srv = start_with(|c| c.allow_private_targets = true).await;
    let read = |name: &str| -> Value {
        let path = format!(
            "{}/../examples/flows/{name}.json",
            env!("CARGO_MANIFEST_DIR")
        );
        let text = std::fs::read_to_string(path).unwrap();
        // The examples talk to 127.0.0.1:8080; here the server and the shop API are elsewhere.
        serde_json::from_str(&text.replace("http://127.0.0.1:8080", &srv.url)).unwrap()
    };
    let mut reconcile = read("shop-orders-reconcile");
    reconcile["trigger"]["every_s"] = json!(1);
    reconcile["trigger"]["poll"]["url"] = json!(api.url);
    srv.create_flow(read("shop-orders")).await;
    srv.create_flow(reconcile).await;

    // Order 1 arrives by webhook.
    let order1 = json!({"id": 1, "email": "A@example.com", "total": "5", "items": []});
    let resp = srv
        .client
        .post(format!("{}/hooks/shop/orders", srv.url))
        .header("X-Shop-Order-Id", "1")
        .json(&order1)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    // The shop's API lists order 1 and order 2, whose webhook never came.
    *api.orders.lock().unwrap() = vec![
        order1,
        json!({"id": 2, "email": "b@example.com", "total": "7", "items": []}),
    ];
    wait_runs(&srv, "shop-orders-reconcile", 2).await;
    wait_ticks(&srv, "shop-orders-reconcile", 2).await;
    let runs = wait_runs(&srv, "shop-orders", 2).await;
    assert_eq!(runs.len(), 2, "each order processed once: {runs:#?}");
    let store = &srv.app().store;
    let fulfilled = count(
        store,
        "SELECT COUNT(*) AS n FROM inbox_requests WHERE inbox = 'fulfilment'",
        vec![],
    )
    .await;
    assert_eq!(fulfilled, 2, "the warehouse got each order once");
    assert_eq!(runs_of(&srv, "shop-orders-reconcile").await.len(), 2);
}
