//! The real `hookflow` binary as a child process, for tests that kill it (SIGKILL, SIGTERM) or
//! run several on one database.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use hookflow::store::{SqliteSync, Store};
use sea_orm::{FromQueryResult, Statement};
use tokio::process::{Child, Command};

/// An HTTP client for the tests (reqwest here is built without a default TLS provider; this
/// installs the one hookflow uses).
pub fn client() -> reqwest::Client {
    connectors::HttpOptions {
        allow_private_targets: true,
        ..Default::default()
    }
    .client()
}

/// Settings shared by the processes of one test.
#[derive(Clone)]
pub struct ProcConfig {
    pub data_dir: PathBuf,
    pub database_url: Option<String>,
    pub flows: PathBuf,
    pub env: Vec<(String, String)>,
}

impl ProcConfig {
    /// The database every process uses, opened from the test.
    pub async fn store(&self) -> Store {
        let url = self
            .database_url
            .clone()
            .unwrap_or_else(|| Store::sqlite_url(&self.data_dir));
        Store::open(&url, SqliteSync::Full).await.unwrap()
    }
}

pub struct Proc {
    pub url: String,
    child: Child,
}

/// A free loopback port (reserved, then released for the child to take).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Proc {
    /// Start `hookflow serve` and wait until it answers `/readyz`.
    pub async fn start(cfg: &ProcConfig) -> Proc {
        let port = free_port();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_hookflow"));
        cmd.arg("serve")
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--data-dir")
            .arg(&cfg.data_dir)
            .arg("--import")
            .arg(&cfg.flows)
            .arg("--allow-private-targets")
            .env("HOOKFLOW_LOG", "hookflow=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .kill_on_drop(true);
        if let Some(url) = &cfg.database_url {
            cmd.arg("--database-url").arg(url);
        }
        for (k, v) in &cfg.env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("start hookflow");
        let url = format!("http://127.0.0.1:{port}");
        let client = client();
        for _ in 0..600 {
            if let Ok(r) = client.get(format!("{url}/readyz")).send().await
                && r.status() == 200
            {
                return Proc { url, child };
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("hookflow did not become ready at {url}");
    }

    pub fn pid(&self) -> u32 {
        self.child.id().expect("still running")
    }

    /// SIGKILL: no chance to clean up, like a power cut of the process.
    pub async fn kill(mut self) {
        self.child.kill().await.unwrap();
    }

    /// SIGTERM: a graceful stop.
    pub fn terminate(&self) {
        let status = std::process::Command::new("kill")
            .arg("-TERM")
            .arg(self.pid().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Wait for the process to exit; its exit code.
    pub async fn exit_code(mut self) -> Option<i32> {
        tokio::time::timeout(Duration::from_secs(60), self.child.wait())
            .await
            .expect("hookflow exits")
            .unwrap()
            .code()
    }
}

/// Write `flows` as files in a new directory under `dir`.
pub fn write_flows(dir: &Path, flows: &[serde_json::Value]) -> PathBuf {
    let out = dir.join("flows");
    std::fs::create_dir_all(&out).unwrap();
    for f in flows {
        let name = f["name"].as_str().unwrap();
        std::fs::write(out.join(format!("{name}.json")), f.to_string()).unwrap();
    }
    out
}

/// One integer from a query (e.g. a `COUNT(*)`), written with `$1` placeholders.
pub async fn count(store: &Store, sql: &str, values: Vec<sea_orm::Value>) -> i64 {
    #[derive(FromQueryResult)]
    struct N {
        n: i64,
    }
    N::find_by_statement(store.stmt(sql, values))
        .one(&store.db)
        .await
        .unwrap()
        .map_or(0, |r| r.n)
}

/// Rows of two text columns `a`, `b`.
pub async fn pairs(store: &Store, sql: &str) -> Vec<(String, String)> {
    #[derive(FromQueryResult)]
    struct P {
        a: String,
        b: String,
    }
    let stmt = Statement::from_string(store.db.get_database_backend(), sql.to_string());
    P::find_by_statement(stmt)
        .all(&store.db)
        .await
        .unwrap()
        .into_iter()
        .map(|p| (p.a, p.b))
        .collect()
}

/// Wait until no run is queued or running (or panic after `limit`).
pub async fn wait_drained(store: &Store, limit: Duration) {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let open = count(
            store,
            "SELECT COUNT(*) AS n FROM runs WHERE status IN ('queued', 'running')",
            vec![],
        )
        .await
            + count(
                store,
                "SELECT COUNT(*) AS n FROM deliveries WHERE status = 'pending'",
                vec![],
            )
            .await;
        if open == 0 {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{open} runs or deliveries still open"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
