//! Test harness: the real server on an ephemeral port against a fresh database (a temporary
//! SQLite file, or a fresh PostgreSQL database when `HOOKFLOW_TEST_POSTGRES` is set), and a
//! local HTTP sink standing in for outside systems.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, Method, StatusCode, Uri},
    response::IntoResponse,
};
use hookflow::{ServeArgs, app::Running};
use reqwest::Client;
use serde_json::{Value, json};
use tempfile::TempDir;

pub struct TestServer {
    pub url: String,
    pub token: String,
    pub client: Client,
    pub data_dir: TempDir,
    pub database_url: Option<String>,
    running: Option<Running>,
}

/// A database URL for one test: a new PostgreSQL database when `HOOKFLOW_TEST_POSTGRES` names a
/// server (e.g. `postgres://postgres@127.0.0.1:5432`), else `None` (SQLite in the data dir).
pub async fn test_database() -> Option<String> {
    let base = std::env::var("HOOKFLOW_TEST_POSTGRES")
        .ok()
        .filter(|s| !s.is_empty())?;
    let name = format!("hf_{}", uuid_like());
    let admin = sea_orm::Database::connect(format!("{base}/postgres"))
        .await
        .expect("connect to PostgreSQL");
    sea_orm::ConnectionTrait::execute_unprepared(&admin, &format!("CREATE DATABASE {name}"))
        .await
        .expect("create test database");
    Some(format!("{base}/{name}"))
}

fn uuid_like() -> String {
    flows_engine::ids::new_id("t").replace("t_", "")
}

pub async fn start() -> TestServer {
    start_with(|_| {}).await
}

pub async fn start_with(configure: impl FnOnce(&mut ServeArgs)) -> TestServer {
    let data_dir = tempfile::tempdir().unwrap();
    let database_url = test_database().await;
    boot(data_dir, database_url, configure).await
}

async fn boot(
    data_dir: TempDir,
    database_url: Option<String>,
    configure: impl FnOnce(&mut ServeArgs),
) -> TestServer {
    let mut cfg = ServeArgs::for_data_dir(data_dir.path().to_path_buf());
    cfg.db.database_url = database_url.clone();
    cfg.allow_private_targets = true;
    configure(&mut cfg);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let running = hookflow::start(cfg, listener).await.expect("server starts");
    let token = running.app.store.create_token("test").await.unwrap();
    TestServer {
        url: format!("http://{}", running.addr),
        token,
        client: Client::new(),
        data_dir,
        database_url,
        running: Some(running),
    }
}

impl TestServer {
    /// Stop and start again on the same database (what survives a restart).
    pub async fn restart(mut self, configure: impl FnOnce(&mut ServeArgs)) -> TestServer {
        self.running.take().unwrap().stop().await;
        boot(self.data_dir, self.database_url, configure).await
    }

    pub fn app(&self) -> &hookflow::app::AppState {
        &self.running.as_ref().unwrap().app
    }

    async fn send(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut req = self
            .client
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.send(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.send(Method::POST, path, Some(body)).await
    }

    pub async fn put(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.send(Method::PUT, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> (StatusCode, Value) {
        self.send(Method::DELETE, path, None).await
    }

    /// Save a flow through the API; panics with the problems when it is refused.
    pub async fn create_flow(&self, doc: Value) {
        let (status, body) = self.post("/api/flows", doc).await;
        assert_eq!(status, StatusCode::CREATED, "flow refused: {body:#}");
    }

    /// POST a JSON webhook (no token: ingress is public).
    pub async fn hook(&self, path: &str, body: Value) -> (StatusCode, Value) {
        let resp = self
            .client
            .post(format!("{}/hooks/{path}", self.url))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = resp.status();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// Wait for a run to reach a final status; returns its detail.
    pub async fn wait_run(&self, id: &str) -> Value {
        for _ in 0..400 {
            let (status, run) = self.get(&format!("/api/runs/{id}")).await;
            assert_eq!(status, StatusCode::OK, "{run}");
            if !["queued", "running"].contains(&run["status"].as_str().unwrap()) {
                return run;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("run {id} did not finish");
    }

    /// Send a webhook and wait for the run it started.
    pub async fn hook_and_wait(&self, path: &str, body: Value) -> Value {
        let (status, resp) = self.hook(path, body).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{resp}");
        self.wait_run(resp["run_id"].as_str().unwrap()).await
    }
}

/// The step of a run detail with the given id.
pub fn step<'a>(run: &'a Value, id: &str) -> &'a Value {
    run["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step_id"] == id)
        .unwrap_or_else(|| panic!("no step {id} in {run:#}"))
}

/// One request the sink received.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Received {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

#[derive(Clone, Default)]
struct SinkState {
    received: Arc<Mutex<Vec<Received>>>,
    /// path → (status, delay) answers; default 200 immediately.
    rules: Arc<Mutex<Vec<(String, u16, Duration)>>>,
}

/// A local HTTP receiver that records every request.
pub struct Sink {
    pub addr: SocketAddr,
    state: SinkState,
    task: tokio::task::JoinHandle<()>,
}

impl Sink {
    pub async fn start() -> Sink {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        Sink::on(listener).await
    }

    pub async fn on(listener: tokio::net::TcpListener) -> Sink {
        let state = SinkState::default();
        let app = Router::new().fallback(record).with_state(state.clone());
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Sink { addr, state, task }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Answer requests to `path` with `status` after `delay`.
    pub fn answer(&self, path: &str, status: u16, delay: Duration) {
        self.state
            .rules
            .lock()
            .unwrap()
            .push((path.to_string(), status, delay));
    }

    pub fn clear_rules(&self) {
        self.state.rules.lock().unwrap().clear();
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.received.lock().unwrap().clone()
    }

    pub fn received_at(&self, path: &str) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| r.path == path)
            .collect()
    }

    /// Wait until at least `n` requests reached `path`.
    pub async fn wait_for(&self, path: &str, n: usize, timeout: Duration) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let got = self.received_at(path);
            if got.len() >= n || tokio::time::Instant::now() > deadline {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn record(
    State(s): State<SinkState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    let path = uri.path().to_string();
    s.received.lock().unwrap().push(Received {
        method: method.to_string(),
        path: path.clone(),
        query: uri.query().map(str::to_string),
        headers,
        body,
    });
    let rule = s
        .rules
        .lock()
        .unwrap()
        .iter()
        .find(|(p, ..)| *p == path)
        .map(|(_, st, d)| (*st, *d));
    let (status, delay) = rule.unwrap_or((200, Duration::ZERO));
    tokio::time::sleep(delay).await;
    (
        StatusCode::from_u16(status).unwrap(),
        [("content-type", "application/json")],
        json!({"ok": status < 400, "path": path}).to_string(),
    )
}

/// A minimal flow document.
pub fn flow(name: &str, trigger: Value, steps: Value) -> Value {
    json!({"hookflow": 1, "name": name, "trigger": trigger, "steps": steps})
}

pub fn webhook(path: &str) -> Value {
    json!({"type": "webhook", "path": path})
}
