//! Configuration: every flag is also a `HOOKFLOW_*` environment variable.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::Args;

use crate::store::{SqliteSync, Store, secrets::MasterKey};

/// Runs executed at once by one process. They are tasks waiting on I/O most of the time
/// (requests, commits), so many are cheap; more in flight also means larger group commits.
/// Enough that a busy flow's runs go straight to a worker rather than through the queue
/// (docs/decisions.md, "256 workers by default").
pub const DEFAULT_WORKERS: usize = 256;

/// Where data lives.
#[derive(Debug, Clone, Args)]
pub struct DbArgs {
    /// Database URL: `sqlite://<file>` or `postgres://user@host/db`. Default: SQLite in the data directory.
    #[arg(long, env = "HOOKFLOW_DATABASE_URL")]
    pub database_url: Option<String>,
    /// Directory for the SQLite database and the generated master key.
    #[arg(long, env = "HOOKFLOW_DATA_DIR", default_value = "hookflow-data")]
    pub data_dir: PathBuf,
    /// SQLite durability: `full` fsyncs every commit (an acknowledged webhook survives a power
    /// cut); `normal` survives a process crash only, and is faster.
    #[arg(
        long,
        env = "HOOKFLOW_SQLITE_SYNCHRONOUS",
        value_enum,
        default_value = "full"
    )]
    pub sqlite_synchronous: SqliteSync,
}

impl DbArgs {
    pub fn url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| Store::sqlite_url(&self.data_dir))
    }

    /// Open (creating the data directory for SQLite) and migrate.
    pub async fn open(&self) -> anyhow::Result<Store> {
        let url = self.url();
        if url.starts_with("sqlite:") && self.database_url.is_none() {
            std::fs::create_dir_all(&self.data_dir).map_err(|e| {
                anyhow::anyhow!(
                    "cannot create data directory {}: {e}",
                    self.data_dir.display()
                )
            })?;
        }
        Store::open(&url, self.sqlite_synchronous)
            .await
            .map_err(|e| anyhow::anyhow!("cannot open database {}: {e}", redact_url(&url)))
    }

    /// `HOOKFLOW_MASTER_KEY`, else the key file in the data directory (created on first use).
    pub fn master_key(&self) -> anyhow::Result<MasterKey> {
        match std::env::var("HOOKFLOW_MASTER_KEY") {
            Ok(hex) if !hex.is_empty() => MasterKey::from_hex(&hex).map_err(anyhow::Error::msg),
            _ => MasterKey::load_or_create(&self.data_dir).map_err(anyhow::Error::msg),
        }
    }
}

/// A URL with its password hidden, for messages.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}

/// `hookflow serve` settings.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "HOOKFLOW_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub db: DbArgs,
    /// Runs executed at once by this process.
    #[arg(long, env = "HOOKFLOW_WORKERS", default_value_t = DEFAULT_WORKERS)]
    pub workers: usize,
    /// Flow files or directories to import at start (existing flows are replaced when changed).
    #[arg(long, env = "HOOKFLOW_IMPORT", value_delimiter = ',')]
    pub import: Vec<PathBuf>,
    /// Let http steps and deliveries reach loopback and private addresses.
    #[arg(long, env = "HOOKFLOW_ALLOW_PRIVATE_TARGETS")]
    pub allow_private_targets: bool,
    /// Largest webhook body accepted, in bytes.
    #[arg(long, env = "HOOKFLOW_MAX_BODY_BYTES", default_value_t = 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Delays before each delivery attempt, comma-separated (`0s,5s,5m,30m,2h,5h,10h,10h`).
    #[arg(long, env = "HOOKFLOW_DELIVERY_SCHEDULE", default_value = "0s,5s,5m,30m,2h,5h,10h,10h", value_parser = parse_schedule)]
    pub delivery_schedule: Schedule,
    /// Serve `/metrics` without a token.
    #[arg(long, env = "HOOKFLOW_PUBLIC_METRICS", default_value_t = true, action = clap::ArgAction::Set)]
    pub public_metrics: bool,
    #[command(flatten)]
    pub reliability: ReliabilityArgs,
}

/// Leases, shutdown, per-flow limits and retention.
#[derive(Debug, Clone, Args)]
pub struct ReliabilityArgs {
    /// How long a claimed run or delivery stays ours without a heartbeat, in milliseconds. A
    /// process that dies leaves its work to others after this long. Short values are for tests.
    #[arg(long, env = "HOOKFLOW_LEASE_MS", default_value_t = crate::worker::LEASE_MS, hide = true)]
    pub lease_ms: i64,
    /// On SIGTERM: how long running steps may take to finish before their runs are handed back
    /// to the queue for other processes (`30s`, `2m`).
    #[arg(long, env = "HOOKFLOW_SHUTDOWN_GRACE", default_value = "30s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,
    /// Most runs of one flow this process executes at once, so that one slow or busy flow
    /// cannot take every worker. Default: three quarters of `--workers` (at least 1).
    #[arg(long, env = "HOOKFLOW_FLOW_CONCURRENCY")]
    pub flow_concurrency: Option<usize>,
    /// Delete finished runs (with their steps, events and deliveries) older than this many days;
    /// 0 keeps them forever.
    #[arg(long, env = "HOOKFLOW_RETAIN_DAYS", default_value_t = 30)]
    pub retain_days: u64,
    /// Keep at most this many finished runs per flow (the newest); 0 means no limit.
    #[arg(long, env = "HOOKFLOW_RETAIN_RUNS", default_value_t = 10_000)]
    pub retain_runs: u64,
    /// Which finished runs keep their step inputs and outputs: `all`, `errors` (failed runs
    /// only) or `none`. Statuses, errors and timings are always kept.
    #[arg(long, env = "HOOKFLOW_SAVE_STEPS", value_enum, default_value = "all")]
    pub save_steps: SaveSteps,
    /// How often retention runs (`1m`).
    #[arg(long, env = "HOOKFLOW_RETENTION_INTERVAL", default_value = "1m", value_parser = parse_duration, hide = true)]
    pub retention_interval: Duration,
}

/// Which finished runs keep their step payloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SaveSteps {
    All,
    Errors,
    None,
}

impl ReliabilityArgs {
    /// The per-flow cap for a process with `workers` workers.
    pub fn flow_cap(&self, workers: usize) -> usize {
        self.flow_concurrency
            .unwrap_or(workers.max(1) * 3 / 4)
            .clamp(1, workers.max(1))
    }
}

impl Default for ReliabilityArgs {
    fn default() -> Self {
        Self {
            lease_ms: crate::worker::LEASE_MS,
            shutdown_grace: Duration::from_secs(30),
            flow_concurrency: None,
            retain_days: 30,
            retain_runs: 10_000,
            save_steps: SaveSteps::All,
            retention_interval: Duration::from_secs(60),
        }
    }
}

/// A delivery retry schedule: the wait before each attempt.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule(pub Vec<Duration>);

pub fn parse_schedule(s: &str) -> Result<Schedule, String> {
    let delays = s
        .split(',')
        .map(|p| parse_duration(p.trim()))
        .collect::<Result<Vec<_>, _>>()?;
    if delays.is_empty() || delays.len() > 50 {
        return Err("give between 1 and 50 delays".into());
    }
    Ok(Schedule(delays))
}

/// `250ms`, `5s`, `5m`, `2h`, `1d`, or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("'{s}' is not a duration (e.g. 500ms, 5s, 5m, 2h)"))?;
    Ok(match unit {
        "ms" => Duration::from_millis(n),
        "" | "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n * 60),
        "h" => Duration::from_secs(n * 3600),
        "d" => Duration::from_secs(n * 86_400),
        _ => {
            return Err(format!(
                "'{s}': unknown unit '{unit}' (use ms, s, m, h or d)"
            ));
        }
    })
}

impl ServeArgs {
    /// Settings for tests and embedding: defaults, SQLite in `data_dir`.
    pub fn for_data_dir(data_dir: PathBuf) -> ServeArgs {
        ServeArgs {
            listen: "127.0.0.1:0".parse().expect("valid address"),
            db: DbArgs {
                database_url: None,
                data_dir,
                sqlite_synchronous: SqliteSync::Full,
            },
            workers: DEFAULT_WORKERS,
            import: Vec::new(),
            allow_private_targets: false,
            max_body_bytes: 1024 * 1024,
            delivery_schedule: parse_schedule("0s,5s,5m,30m,2h,5h,10h,10h")
                .expect("valid schedule"),
            public_metrics: true,
            reliability: ReliabilityArgs::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_durations_and_schedules() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("7").unwrap(), Duration::from_secs(7));
        assert!(parse_duration("5y").is_err());
        assert_eq!(
            parse_schedule("0s, 5s").unwrap().0,
            vec![Duration::ZERO, Duration::from_secs(5)]
        );
    }

    #[test]
    fn hides_database_passwords() {
        assert_eq!(redact_url("postgres://u:pw@h/db"), "postgres://u:***@h/db");
    }
}
