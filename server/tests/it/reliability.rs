//! Crash recovery and graceful shutdown of the real binary, leases, per-flow limits, retention.

use std::{
    collections::{HashMap, HashSet},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use sea_orm::ConnectionTrait;
use serde_json::{Value, json};

use crate::{
    procs::{Proc, ProcConfig, count, pairs, wait_drained, write_flows},
    utils::{Sink, flow, start_with, test_database, webhook},
};

/// A receiver that holds every request to `/held` until it is opened (and answers others at
/// once), so tests can look at what happens while a receiver is slow without timing anything.
struct Gate {
    base: String,
    held: Arc<std::sync::atomic::AtomicUsize>,
    open: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Gate {
    async fn start() -> Gate {
        let held = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (open, rx) = tokio::sync::watch::channel(false);
        let h = held.clone();
        let app = axum::Router::new()
            .route(
                "/held",
                axum::routing::any(move || {
                    let (h, mut rx) = (h.clone(), rx.clone());
                    async move {
                        h.fetch_add(1, Ordering::SeqCst);
                        let _ = rx.wait_for(|open| *open).await;
                        "ok"
                    }
                }),
            )
            .fallback(|| async { "ok" });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Gate {
            base,
            held,
            open,
            task,
        }
    }

    fn held(&self) -> usize {
        self.held.load(Ordering::SeqCst)
    }

    /// Wait until at least `n` requests are being held.
    async fn wait_held(&self, n: usize) {
        for _ in 0..1500 {
            if self.held() >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("only {} requests reached the gate", self.held());
    }

    fn open(&self) {
        self.open.send_replace(true);
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Requests at `path` by their `Idempotency-Key` (`<run>:<step>`, sent by http steps).
fn by_key(sink: &Sink, path: &str) -> HashMap<String, usize> {
    let mut out = HashMap::new();
    for r in sink.received_at(path) {
        let key = r.headers["idempotency-key"].to_str().unwrap().to_string();
        *out.entry(key).or_default() += 1;
    }
    out
}

/// SIGKILL mid-stream, restart: every acknowledged webhook reaches the sink, steps that had
/// finished are not run again, and only steps in flight at the kill are repeated.
#[tokio::test]
async fn sigkill_mid_stream_loses_no_acknowledged_webhook() {
    let sink = Sink::start().await;
    // Step b is slow, so at the kill many runs have finished a and are inside b.
    sink.answer("/b", 200, Duration::from_millis(1500));
    let dir = tempfile::tempdir().unwrap();
    let flows = write_flows(
        dir.path(),
        &[flow(
            "stream",
            webhook("stream"),
            json!([
                {"id": "a", "type": "http", "url": sink.url("/a"), "body": {"event": "{{ $.trigger.body.id }}"}},
                {"id": "b", "type": "http", "url": sink.url("/b"), "body": {"event": "{{ $.trigger.body.id }}"}},
                {"id": "out", "type": "webhook_out", "url": sink.url("/out"), "body": {"event": "{{ $.trigger.body.id }}"}}
            ]),
        )],
    );
    let cfg = ProcConfig {
        data_dir: dir.path().join("data"),
        database_url: test_database().await,
        flows,
        env: vec![
            ("HOOKFLOW_LEASE_MS".into(), "1500".into()),
            ("HOOKFLOW_WORKERS".into(), "16".into()),
            (
                "HOOKFLOW_DELIVERY_SCHEDULE".into(),
                "0s,200ms,200ms,200ms,200ms,200ms".into(),
            ),
        ],
    };
    let proc = Proc::start(&cfg).await;

    // Stream webhooks from 8 senders until the process dies; keep the ids that got a 2xx.
    let acked = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let dead = Arc::new(AtomicBool::new(false));
    let mut senders = Vec::new();
    for s in 0..8 {
        let (url, acked, dead) = (proc.url.clone(), acked.clone(), dead.clone());
        senders.push(tokio::spawn(async move {
            let client = crate::procs::client();
            for i in 0..1000 {
                if dead.load(Ordering::Relaxed) {
                    return;
                }
                let id = format!("e{s}-{i}");
                let resp = client
                    .post(format!("{url}/hooks/stream"))
                    .json(&json!({"id": id}))
                    .send()
                    .await;
                match resp {
                    Ok(r) if r.status().is_success() => acked.lock().unwrap().push(id),
                    Ok(r) => panic!("unexpected answer {}", r.status()),
                    Err(_) => return, // the process is gone
                }
            }
        }));
    }
    // Kill once many runs are inside the slow step.
    sink.wait_for("/b", 24, Duration::from_secs(60)).await;
    proc.kill().await;
    dead.store(true, Ordering::Relaxed);
    for s in senders {
        s.await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let acked: Vec<String> = acked.lock().unwrap().clone();
    assert!(
        acked.len() >= 24,
        "the stream was under way: {} acknowledged",
        acked.len()
    );

    // What had happened at the kill: sink requests, and the steps recorded as finished.
    let before: HashMap<&str, HashMap<String, usize>> = ["/a", "/b"]
        .into_iter()
        .map(|p| (p, by_key(&sink, p)))
        .collect();
    let store = cfg.store().await;
    let finished: HashSet<String> = pairs(
        &store,
        "SELECT run_id AS a, step_id AS b FROM step_runs WHERE status = 'succeeded'",
    )
    .await
    .into_iter()
    .map(|(run, step)| format!("{run}:{step}"))
    .collect();
    let interrupted = count(
        &store,
        "SELECT COUNT(*) AS n FROM runs WHERE status = 'running'",
        vec![],
    )
    .await;
    assert!(interrupted > 0, "some runs were cut off mid-way");

    sink.clear_rules();
    let proc = Proc::start(&cfg).await;
    wait_drained(&store, Duration::from_secs(120)).await;

    // Every acknowledged webhook reached the sink.
    let out: Vec<String> = sink
        .received_at("/out")
        .iter()
        .map(|r| r.json()["event"].as_str().unwrap().to_string())
        .collect();
    let delivered: HashSet<&String> = out.iter().collect();
    let lost: Vec<&String> = acked.iter().filter(|id| !delivered.contains(id)).collect();
    assert!(
        lost.is_empty(),
        "acknowledged but never delivered: {lost:?}"
    );
    let runs = count(
        &store,
        "SELECT COUNT(*) AS n FROM runs WHERE status = 'succeeded'",
        vec![],
    )
    .await;
    assert_eq!(
        runs,
        count(&store, "SELECT COUNT(*) AS n FROM runs", vec![]).await,
        "every run succeeded"
    );

    // Finished steps were not run again; repeats are only of steps in flight at the kill.
    let mut repeated = 0;
    for path in ["/a", "/b"] {
        let after = by_key(&sink, path);
        for (key, n) in &after {
            let was = before[path].get(key).copied().unwrap_or(0);
            if finished.contains(key) {
                assert_eq!(*n, was, "{key} had finished before the kill but ran again");
            }
            if *n > 1 {
                assert!(!finished.contains(key));
                repeated += n - 1;
            }
        }
    }
    let resumed = before["/a"]
        .keys()
        .filter(|k| finished.contains(*k))
        .count();
    let out_dupes = out.len() - delivered.len();
    eprintln!(
        "crash recovery: {} acknowledged, {interrupted} runs interrupted, {resumed} finished steps kept, \
         {repeated} step executions repeated (in flight at the kill), {out_dupes} duplicate deliveries",
        acked.len()
    );
    assert!(
        repeated as i64 <= 2 * interrupted,
        "repeats are bounded by what was in flight"
    );
    proc.kill().await;
}

/// SIGTERM: webhooks get 503 + Retry-After while the running step finishes within the grace
/// period; runs not started stay queued for others; the exit code is 0.
#[tokio::test]
async fn sigterm_lets_running_steps_finish_and_exits_zero() {
    // The step is held at the gate until the test has seen the server refuse new webhooks,
    // so the step is certainly running when SIGTERM arrives, however loaded the machine is.
    let gate = Gate::start().await;
    let dir = tempfile::tempdir().unwrap();
    let flows = write_flows(
        dir.path(),
        &[flow(
            "slow",
            webhook("slow"),
            json!([{"id": "call", "type": "http", "url": format!("{}/held", gate.base), "body": {"n": "{{ $.trigger.body.n }}"}}]),
        )],
    );
    let cfg = ProcConfig {
        data_dir: dir.path().join("data"),
        database_url: test_database().await,
        flows,
        env: vec![
            ("HOOKFLOW_WORKERS".into(), "1".into()),
            ("HOOKFLOW_SHUTDOWN_GRACE".into(), "60s".into()),
        ],
    };
    let proc = Proc::start(&cfg).await;
    let client = crate::procs::client();
    for n in 0..3 {
        let r = client
            .post(format!("{}/hooks/slow", proc.url))
            .json(&json!({"n": n}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
    }
    gate.wait_held(1).await;
    proc.terminate();
    // While the step finishes, ingress refuses politely.
    let mut refused = None;
    for _ in 0..500 {
        let r = client
            .post(format!("{}/hooks/slow", proc.url))
            .json(&json!({"n": 99}))
            .send()
            .await
            .unwrap();
        if r.status() == 503 {
            refused = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let refused = refused.expect("ingress answers 503 while shutting down");
    assert!(refused.headers().contains_key("retry-after"));
    gate.open();
    assert_eq!(proc.exit_code().await, Some(0));

    let store = cfg.store().await;
    let succeeded = count(
        &store,
        "SELECT COUNT(*) AS n FROM runs WHERE status = 'succeeded'",
        vec![],
    )
    .await;
    assert_eq!(
        succeeded, 1,
        "the running step finished within the grace period"
    );
    assert_eq!(
        count(
            &store,
            "SELECT COUNT(*) AS n FROM runs WHERE status = 'running'",
            vec![]
        )
        .await,
        0
    );
    assert!(
        count(
            &store,
            "SELECT COUNT(*) AS n FROM runs WHERE status = 'queued' AND worker IS NULL",
            vec![]
        )
        .await
            >= 2
    );
}

/// A step longer than the grace period: its run is handed back at once (not after the lease),
/// and the next process resumes it.
#[tokio::test]
async fn runs_still_going_after_the_grace_period_are_handed_back() {
    let sink = Sink::start().await;
    sink.answer("/slow", 200, Duration::from_secs(3));
    let srv = start_with(|c| {
        c.reliability.shutdown_grace = Duration::from_millis(200);
        c.reliability.lease_ms = 600_000;
    })
    .await;
    srv.create_flow(flow(
        "held",
        webhook("held"),
        json!([
            {"id": "first", "type": "transform", "output": {"n": 1}},
            {"id": "call", "type": "http", "url": sink.url("/slow")}
        ]),
    ))
    .await;
    let (_, resp) = srv.hook("held", json!({})).await;
    let run_id = resp["run_id"].as_str().unwrap().to_string();
    sink.wait_for("/slow", 1, Duration::from_secs(30)).await;
    let store = srv.app().store.clone();
    let srv = srv.restart(|c| c.reliability.lease_ms = 600_000).await;
    let run = store.get_run(&run_id).await.unwrap().unwrap();
    assert!(
        run.status == "queued" || run.worker.as_deref() == Some(srv.app().worker_id.as_str()),
        "handed back, not left leased to the stopped process: {run:?}"
    );
    sink.clear_rules();
    let done = srv.wait_run(&run_id).await;
    assert_eq!(done["status"], "succeeded");
    assert_eq!(
        sink.received_at("/slow").len(),
        2,
        "the interrupted call ran again"
    );
    // `first` had finished: kept, not run again (its record is from before the restart).
    let first = crate::utils::step(&done, "first");
    assert_eq!(first["status"], "succeeded");
}

/// One slow flow cannot take every worker: with a per-flow cap, another flow's runs run while
/// the slow flow's runs are stuck and more of them wait.
#[tokio::test]
async fn a_slow_flow_does_not_starve_the_others() {
    let gate = Gate::start().await;
    let srv = start_with(|c| {
        c.workers = 4;
        c.reliability.flow_concurrency = Some(2);
    })
    .await;
    let held = format!("{}/held", gate.base);
    srv.create_flow(flow(
        "slow",
        webhook("slow"),
        json!([{"id": "call", "type": "http", "url": held, "timeout_ms": 60000}]),
    ))
    .await;
    srv.create_flow(flow(
        "fast",
        webhook("fast"),
        json!([{"id": "t", "type": "transform", "output": {"ok": true}}]),
    ))
    .await;
    let mut slow = Vec::new();
    for _ in 0..16 {
        slow.push(
            srv.hook("slow", json!({})).await.1["run_id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    gate.wait_held(2).await;
    // Without the cap all four workers would now be stuck in the slow flow.
    for _ in 0..4 {
        let run = srv.hook_and_wait("fast", json!({})).await;
        assert_eq!(run["status"], "succeeded");
    }
    assert_eq!(
        gate.held(),
        2,
        "the slow flow holds no more workers than its cap"
    );
    assert_eq!(runs_with_status(&srv, "slow", "running").await, 2);
    gate.open();
    for id in &slow {
        assert_eq!(srv.wait_run(id).await["status"], "succeeded");
    }
}

/// A slow receiver cannot hold every delivery slot: another endpoint's delivery goes out while
/// the slow one still has a backlog.
#[tokio::test]
async fn a_slow_receiver_does_not_hold_every_delivery_slot() {
    let gate = Gate::start().await;
    let srv = start_with(|_| {}).await;
    srv.create_flow(flow(
        "to-slow",
        webhook("to-slow"),
        json!([{"id": "out", "type": "webhook_out", "url": format!("{}/held", gate.base)}]),
    ))
    .await;
    let sink = Sink::start().await;
    srv.create_flow(flow(
        "to-fast",
        webhook("to-fast"),
        json!([{"id": "out", "type": "webhook_out", "url": sink.url("/fast")}]),
    ))
    .await;
    for i in 0..24 {
        srv.hook_and_wait("to-slow", json!({"i": i})).await;
    }
    gate.wait_held(4).await;
    srv.hook_and_wait("to-fast", json!({})).await;
    // Without a per-endpoint cap, 16 held deliveries would fill every sending slot.
    let fast = sink.wait_for("/fast", 1, Duration::from_secs(30)).await;
    assert_eq!(fast.len(), 1, "the other endpoint got its delivery");
    assert_eq!(gate.held(), 4, "deliveries to the slow endpoint at once");
    gate.open();
}

/// Retention: count per flow, age, payloads of successful runs, expired dedupe keys.
#[tokio::test]
async fn retention_prunes_by_count_age_and_payload_policy() {
    let srv = start_with(|c| {
        c.reliability.retain_runs = 3;
        c.reliability.save_steps = hookflow::config::SaveSteps::Errors;
        c.reliability.retention_interval = Duration::from_millis(100);
    })
    .await;
    srv.create_flow(flow(
        "keep",
        webhook("keep"),
        json!([{"id": "t", "type": "transform", "output": {"v": "{{ $.trigger.body.v }}"}}]),
    ))
    .await;
    srv.create_flow(flow("bad", webhook("bad"), json!([
        {"id": "t", "type": "transform", "output": {"v": 1}},
        {"id": "f", "type": "http", "url": "http://127.0.0.1:1/nothing", "retry": {"max_attempts": 1}}
    ]))).await;
    let mut ids = Vec::new();
    for v in 0..6 {
        ids.push(
            srv.hook_and_wait("keep", json!({"v": v})).await["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    let failed = srv.hook_and_wait("bad", json!({})).await;
    assert_eq!(failed["status"], "failed");
    let store = srv.app().store.clone();
    // An old run of another flow goes by age.
    let old = srv.hook_and_wait("bad", json!({"old": true})).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    store
        .db
        .execute_raw(store.stmt(
            "UPDATE runs SET finished_at = $1 WHERE id = $2",
            vec![
                (hookflow::store::now_ms() - 40 * 86_400_000).into(),
                old.clone().into(),
            ],
        ))
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let left = count(
            &store,
            "SELECT COUNT(*) AS n FROM runs WHERE flow = 'keep'",
            vec![],
        )
        .await;
        let old_gone = store.get_run(&old).await.unwrap().is_none();
        let stripped = count(&store, "SELECT COUNT(*) AS n FROM step_runs s JOIN runs r ON r.id = s.run_id WHERE r.flow = 'keep' AND s.output IS NULL", vec![]).await;
        if left == 3 && old_gone && stripped == 3 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "left {left}, old gone {old_gone}, stripped {stripped}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The newest three are kept, with their steps but without payloads.
    for id in &ids[..3] {
        assert!(store.get_run(id).await.unwrap().is_none(), "{id} pruned");
    }
    let (_, kept) = srv.get(&format!("/api/runs/{}", ids[5])).await;
    assert_eq!(kept["steps"][0]["status"], "succeeded");
    assert_eq!(kept["steps"][0]["output"], Value::Null);
    // The failed run keeps its payloads (save = errors), so it can be retried from them.
    let (_, f) = srv
        .get(&format!("/api/runs/{}", failed["id"].as_str().unwrap()))
        .await;
    assert_eq!(f["steps"][0]["output"], json!({"v": 1}));
}

/// How many runs of `flow` are in `status`.
async fn runs_with_status(srv: &crate::utils::TestServer, flow: &str, status: &str) -> i64 {
    let sql = "SELECT COUNT(*) AS n FROM runs WHERE flow = $1 AND status = $2";
    count(&srv.app().store, sql, vec![flow.into(), status.into()]).await
}

/// `hookflow_runs_started_total` for `flow` and `via` (`ingest`, `handoff` or `claim`).
async fn started(srv: &crate::utils::TestServer, flow: &str, via: &str) -> u64 {
    metric(
        srv,
        "hookflow_runs_started_total",
        &[format!("flow=\"{flow}\""), format!("via=\"{via}\"")],
    )
    .await
}

/// Each group commit is counted in `/metrics` with its rows and its time, per writer: new
/// webhooks (`webhooks`) and the step records and run ends of runs a worker executes (`steps`).
/// The counters are shared by every server in this process, so only growth is compared.
#[tokio::test]
async fn group_commits_are_counted_with_their_rows_and_time() {
    let sink = Sink::start().await;
    let srv = start_with(|_| {}).await;
    srv.create_flow(flow(
        "commits-ingest",
        webhook("commits-ingest"),
        json!([{"id": "t", "type": "transform", "output": {"n": "{{ $.trigger.body.n }}"}}]),
    ))
    .await;
    srv.create_flow(flow(
        "commits-steps",
        webhook("commits-steps"),
        json!([{"id": "send", "type": "http", "url": sink.url("/c")}]),
    ))
    .await;
    let read = |name: &'static str, writer: &'static str| {
        let srv = &srv;
        async move { metric(srv, name, &[format!("writer=\"{writer}\"")]).await }
    };
    let rows_before = read("hookflow_group_commit_rows_total", "webhooks").await;
    let commits_before = read("hookflow_group_commits_total", "webhooks").await;
    let timed_before = read("hookflow_group_commit_seconds_count", "webhooks").await;
    let steps_before = read("hookflow_group_commits_total", "steps").await;
    let n = 24;
    let sends = (0..n).map(|i| srv.hook("commits-ingest", json!({"n": i})));
    for (status, body) in futures::future::join_all(sends).await {
        assert_eq!(status, 202, "{body}");
    }
    let rows = read("hookflow_group_commit_rows_total", "webhooks").await - rows_before;
    let commits = read("hookflow_group_commits_total", "webhooks").await - commits_before;
    let timed = read("hookflow_group_commit_seconds_count", "webhooks").await - timed_before;
    assert!(rows >= n, "{rows} rows counted for {n} accepted webhooks");
    assert!(
        (1..=rows).contains(&commits),
        "{commits} commits of {rows} rows"
    );
    assert!(timed >= 1, "no commit time recorded");
    let run = srv.hook_and_wait("commits-steps", json!({})).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    let steps = read("hookflow_group_commits_total", "steps").await - steps_before;
    assert!(steps >= 1, "the run's step record and end were not counted");
}

/// Wait until a new run of `flow` would be handed over. Handovers open when a claim finds the
/// queue empty: right after start, or after a backlog, that claim may still be under way (on
/// PostgreSQL a first claim can take a while), and a run accepted meanwhile is queued and
/// claimed instead, which is correct but not what a test of the handover looks at.
async fn handover_open(srv: &crate::utils::TestServer, flow: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !srv.app().handoff.would_take(flow) {
        assert!(
            std::time::Instant::now() < deadline,
            "the handover did not open within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The sum of the series of `name` in `/metrics` that carry every one of `labels`.
async fn metric(srv: &crate::utils::TestServer, name: &str, labels: &[String]) -> u64 {
    let text = srv
        .client
        .get(format!("{}/metrics", srv.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let prefix = format!("{name}{{");
    text.lines()
        .filter(|l| l.starts_with(&prefix) && labels.iter().all(|x| l.contains(x.as_str())))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// A run queued while a worker is free goes straight to it, without a claim; runs that arrive
/// while every worker is busy wait in the queue and start in the order they came.
#[tokio::test]
async fn new_runs_go_straight_to_a_free_worker_and_queue_in_order_when_none_is() {
    let gate = Gate::start().await;
    let sink = Sink::start().await;
    let srv = start_with(|c| c.workers = 1).await;
    srv.create_flow(flow(
        "handoff-order",
        webhook("handoff-order"),
        json!([
            {"id": "started", "type": "http", "url": sink.url("/started"), "body": {"n": "{{ $.trigger.body.n }}"}},
            {"id": "held", "type": "http", "url": format!("{}/held", gate.base), "timeout_ms": 60000}
        ]),
    ))
    .await;
    // An idle server: the first run is handed to the free worker.
    handover_open(&srv, "handoff-order").await;
    let first = srv.hook("handoff-order", json!({"n": 0})).await.1["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    gate.wait_held(1).await;
    assert_eq!(started(&srv, "handoff-order", "handoff").await, 1);
    assert_eq!(started(&srv, "handoff-order", "claim").await, 0);
    // The only worker is busy: these wait in the queue.
    let mut ids = vec![first];
    for n in 1..4 {
        let (status, body) = srv.hook("handoff-order", json!({"n": n})).await;
        assert_eq!(status, 202, "{body}");
        ids.push(body["run_id"].as_str().unwrap().to_string());
    }
    assert_eq!(runs_with_status(&srv, "handoff-order", "queued").await, 3);
    gate.open();
    for id in &ids {
        assert_eq!(srv.wait_run(id).await["status"], "succeeded");
    }
    let order: Vec<i64> = sink
        .received_at("/started")
        .iter()
        .map(|r| {
            let n = &r.json()["n"];
            n.as_i64()
                .or_else(|| n.as_str()?.parse().ok())
                .unwrap_or(-1)
        })
        .collect();
    assert_eq!(order, [0, 1, 2, 3], "queued runs start in arrival order");
    assert_eq!(started(&srv, "handoff-order", "claim").await, 3);
    // Idle again, with an empty queue: the next run skips it once more.
    handover_open(&srv, "handoff-order").await;
    let run = srv.hook_and_wait("handoff-order", json!({"n": 4})).await;
    assert_eq!(run["status"], "succeeded");
    assert_eq!(started(&srv, "handoff-order", "handoff").await, 2);
}

/// Steps without effects (transform, filter) run as the webhook is accepted: even with the only
/// worker busy, a flow of such steps has already ended when the 202 comes. A flow that goes on
/// to an HTTP call runs them ahead only when a worker is free: a run its filter stops ends at
/// once, a run that goes on is handed over with their records and they do not run again; with
/// no worker free, the run is queued as it is.
#[tokio::test]
async fn steps_without_effects_run_as_the_webhook_is_accepted() {
    let gate = Gate::start().await;
    let sink = Sink::start().await;
    let srv = start_with(|c| c.workers = 1).await;
    srv.create_flow(flow(
        "busy",
        webhook("busy"),
        json!([{"id": "held", "type": "http", "url": format!("{}/held", gate.base), "timeout_ms": 60000}]),
    ))
    .await;
    srv.create_flow(flow(
        "shape-only",
        webhook("shape-only"),
        json!([{"id": "shape", "type": "transform", "output": {"n": "{{ $.trigger.body.n | number }}"}}]),
    ))
    .await;
    srv.create_flow(flow(
        "paid-call",
        webhook("paid-call"),
        json!([
            {"id": "shape", "type": "transform", "output": {"n": "{{ $.trigger.body.n }}", "paid": "{{ $.trigger.body.paid }}"}},
            {"id": "paid", "type": "filter", "condition": {"path": "$.input.paid", "op": "eq", "value": "yes"}},
            {"id": "send", "type": "http", "url": sink.url("/paid"), "body": "{{ $.input }}"}
        ]),
    ))
    .await;
    srv.hook("busy", json!({})).await;
    gate.wait_held(1).await;

    let id = |body: &Value| body["run_id"].as_str().unwrap().to_string();
    let (status, body) = srv.hook("shape-only", json!({"n": "7"})).await;
    assert_eq!(status, 202, "{body}");
    let (_, run) = srv.get(&format!("/api/runs/{}", id(&body))).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["output"], json!({"n": 7}), "{run}");
    assert_eq!(run["steps"][0]["status"], "succeeded", "{run}");

    assert_eq!(started(&srv, "shape-only", "ingest").await, 1);

    // A flow that goes on to an HTTP call, with no worker free: queued as it is.
    let (_, body) = srv.hook("paid-call", json!({"n": 2, "paid": "yes"})).await;
    let queued_id = id(&body);
    let (_, waiting) = srv.get(&format!("/api/runs/{queued_id}")).await;
    assert_eq!(waiting["status"], "queued", "{waiting}");
    gate.open();
    let done = srv.wait_run(&queued_id).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(started(&srv, "paid-call", "claim").await, 1);
    assert_eq!(
        sink.received_at("/paid")[0].json(),
        json!({"n": 2, "paid": "yes"})
    );

    // A worker is free (once the finished run has given its slot back)...
    for _ in 0..200 {
        if srv.app().handoff.would_take("paid-call") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    // ...so a run its filter stops ends as it is accepted...
    let (_, body) = srv.hook("paid-call", json!({"n": 1, "paid": "no"})).await;
    let (_, unpaid) = srv.get(&format!("/api/runs/{}", id(&body))).await;
    assert_eq!(unpaid["status"], "filtered", "{unpaid}");
    assert_eq!(unpaid["steps"].as_array().unwrap().len(), 3, "{unpaid}");
    assert_eq!(started(&srv, "paid-call", "ingest").await, 1);
    // ...and one that goes on is handed over with the records of the steps that already ran.
    let before = transforms_run(&srv).await;
    let handed = srv
        .hook_and_wait("paid-call", json!({"n": 3, "paid": "yes"}))
        .await;
    assert_eq!(handed["status"], "succeeded", "{handed}");
    assert_eq!(started(&srv, "paid-call", "handoff").await, 1);
    assert_eq!(
        transforms_run(&srv).await - before,
        1,
        "the transform ran once"
    );
    let sent = sink.received_at("/paid");
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[1].json(), json!({"n": 3, "paid": "yes"}));
}

/// How many transform steps this process has run.
async fn transforms_run(srv: &crate::utils::TestServer) -> u64 {
    let transform = ["type=\"transform\"".to_string()];
    metric(srv, "hookflow_step_duration_seconds_count", &transform).await
}
