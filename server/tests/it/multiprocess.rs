//! Several `hookflow serve` processes on one PostgreSQL database share the work: every webhook
//! is executed once, a killed process's runs are taken over after their lease, and a schedule
//! tick fires in one process only.
//!
//! Runs only with `HOOKFLOW_TEST_POSTGRES`. `HOOKFLOW_MP_EVENTS` sets the number of webhooks
//! (default 2 000); the 10 000 figure of the reliability bar is the benchmark form:
//! `HOOKFLOW_MP_EVENTS=10000 HOOKFLOW_TEST_POSTGRES=postgres://postgres@127.0.0.1:5432 \
//!  cargo test --release -p hookflow --test it multiprocess -- --nocapture`

use std::{
    collections::{HashMap, HashSet},
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use serde_json::{Value, json};

use crate::{
    procs::{Proc, ProcConfig, count, pairs, wait_drained, write_flows},
    utils::{Sink, flow, test_database},
};

/// Workers per process.
const WORKERS: usize = 8;

#[tokio::test]
async fn processes_on_one_database_share_the_work_and_survive_a_kill() {
    let Some(database_url) = test_database().await else {
        eprintln!("multiprocess: skipped (set HOOKFLOW_TEST_POSTGRES to run it)");
        return;
    };
    let events: usize = std::env::var("HOOKFLOW_MP_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000);
    let sink = Sink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let flows = write_flows(
        dir.path(),
        &[
            flow(
                "mp",
                // A webhook sent again because its answer was lost (the process died after the
                // commit) is a duplicate, not a second run: senders retry with the same id.
                json!({"type": "webhook", "path": "mp", "dedupe": {"header": "X-Event-Id"}}),
                json!([{"id": "call", "type": "http", "url": sink.url("/x"), "body": {"event": "{{ $.trigger.body.id }}"}}]),
            ),
            flow(
                "tick",
                json!({"type": "schedule", "every_s": 1}),
                json!([{"id": "t", "type": "transform", "output": "{{ $.trigger.body }}"}]),
            ),
        ],
    );
    let cfg = ProcConfig {
        data_dir: dir.path().join("data"),
        database_url: Some(database_url),
        flows,
        env: vec![
            ("HOOKFLOW_LEASE_MS".into(), "1500".into()),
            ("HOOKFLOW_WORKERS".into(), WORKERS.to_string()),
        ],
    };
    let mut procs = Vec::new();
    for _ in 0..3 {
        procs.push(Proc::start(&cfg).await);
    }
    let urls: Arc<Mutex<Vec<String>>> =
        Arc::new(Mutex::new(procs.iter().map(|p| p.url.clone()).collect()));
    let victim_url = procs[2].url.clone();

    // Senders spread the webhooks over the processes; a refused connection (the killed
    // process) moves the same webhook to the next one. Each id is acknowledged once.
    let started = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let acked = Arc::new(AtomicUsize::new(0));
    let mut senders = Vec::new();
    for s in 0..24 {
        let (urls, next, acked) = (urls.clone(), next.clone(), acked.clone());
        senders.push(tokio::spawn(async move {
            let client = crate::procs::client();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= events {
                    return;
                }
                let mut target = i + s;
                loop {
                    let url = {
                        let u = urls.lock().unwrap();
                        u[target % u.len()].clone()
                    };
                    match client
                        .post(format!("{url}/hooks/mp"))
                        .header("X-Event-Id", format!("ev{i}"))
                        .json(&json!({"id": format!("ev{i}")}))
                        .send()
                        .await
                    {
                        // 200: a duplicate of an earlier attempt whose answer was lost.
                        Ok(r) if r.status() == 202 || r.status() == 200 => break,
                        Ok(r) => panic!("unexpected answer {}", r.status()),
                        Err(_) => target += 1,
                    }
                }
                acked.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    // Kill one process a third of the way through, while it has runs in hand.
    while acked.load(Ordering::Relaxed) < events / 3 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    urls.lock().unwrap().retain(|u| *u != victim_url);
    procs.pop().unwrap().kill().await;
    for s in senders {
        s.await.unwrap();
    }
    let ingest = started.elapsed();
    let store = cfg.store().await;
    wait_drained(&store, Duration::from_secs(180)).await;
    let total = started.elapsed();

    // One run per webhook, each finished, each executed; repeats only for the killed process's
    // runs that were in flight: executing, or executed with their last step's record still
    // waiting for the commit of the run's end (at most twice its worker count).
    let runs = count(
        &store,
        "SELECT COUNT(*) AS n FROM runs WHERE flow = 'mp'",
        vec![],
    )
    .await;
    assert_eq!(runs as usize, events, "one run per acknowledged webhook");
    let succeeded = count(
        &store,
        "SELECT COUNT(*) AS n FROM runs WHERE flow = 'mp' AND status = 'succeeded'",
        vec![],
    )
    .await;
    assert_eq!(succeeded, runs);
    let mut per_key: HashMap<String, usize> = HashMap::new();
    for r in sink.received_at("/x") {
        *per_key
            .entry(r.headers["idempotency-key"].to_str().unwrap().to_string())
            .or_default() += 1;
    }
    assert_eq!(per_key.len(), events, "every run called the sink");
    let repeats: usize = per_key.values().map(|n| n - 1).sum();
    assert!(
        repeats <= 2 * WORKERS,
        "{repeats} repeated executions; only the killed process's in-flight runs may repeat"
    );
    let by_worker = pairs(&store, "SELECT worker AS a, CAST(COUNT(*) AS TEXT) AS b FROM runs WHERE flow = 'mp' GROUP BY worker").await;
    assert!(by_worker.len() >= 2, "work was shared: {by_worker:?}");

    // The schedule fired each tick once, across all processes.
    let ticks: Vec<Value> = pairs(
        &store,
        "SELECT id AS a, trigger AS b FROM runs WHERE flow = 'tick'",
    )
    .await
    .into_iter()
    .map(|(_, t)| serde_json::from_str::<Value>(&t).unwrap()["body"]["scheduled_at"].clone())
    .collect();
    let distinct: HashSet<String> = ticks.iter().map(Value::to_string).collect();
    assert_eq!(distinct.len(), ticks.len(), "a tick fired twice: {ticks:?}");
    assert!(!ticks.is_empty());

    eprintln!(
        "multiprocess: {events} webhooks over 3 processes (one killed at a third): ingress {:.1} s ({:.0}/s), all executed after {:.1} s; \
         {repeats} repeated executions; runs by final worker {by_worker:?}; {} schedule ticks, none twice",
        ingest.as_secs_f64(),
        events as f64 / ingest.as_secs_f64(),
        total.as_secs_f64(),
        ticks.len()
    );
    for p in procs {
        p.kill().await;
    }
}
