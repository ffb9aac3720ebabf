//! The running application: shared state, background tasks, and the HTTP server.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use flows_engine::Registry;
use tokio::{net::TcpListener, sync::Notify, task::JoinSet};
use tokio_util::sync::CancellationToken;

use crate::{
    catalog::Catalog,
    config::ServeArgs,
    handoff::Handoff,
    store::{Store, secrets::MasterKey, writer::Writer},
    waiters::Waiters,
};

/// Everything a handler or worker needs.
pub struct App {
    pub store: Store,
    pub writer: Writer,
    /// Worker slots, shared by the dispatcher and the writer.
    pub handoff: Arc<Handoff>,
    pub catalog: Catalog,
    pub registry: Registry,
    pub key: MasterKey,
    pub cfg: ServeArgs,
    /// Woken when runs are queued.
    pub wake_runs: Arc<Notify>,
    /// Woken when deliveries are queued.
    pub wake_deliveries: Arc<Notify>,
    pub waiters: Waiters,
    /// Client for outbound deliveries.
    pub http: reqwest::Client,
    /// This process's identity in leases.
    pub worker_id: String,
    pub shutdown: CancellationToken,
    /// Login protection: failed attempts per client, and the first-run setup token.
    pub auth: crate::http::session::AuthState,
}

pub type AppState = Arc<App>;

/// A started server: its address and how to stop it.
pub struct Running {
    pub addr: SocketAddr,
    pub app: AppState,
    /// Workers and upkeep; they stop when `shutdown` is cancelled.
    tasks: JoinSet<()>,
    /// The HTTP server, which outlives the workers so that ingress can answer 503 meanwhile.
    http: tokio::task::JoinHandle<()>,
    http_stop: CancellationToken,
}

impl Running {
    /// Shut down gracefully (as on SIGTERM) and wait for everything to end.
    pub async fn stop(self) {
        self.app.shutdown.cancel();
        self.wait().await;
    }

    /// Wait until the server stops. Once `shutdown` is cancelled, webhooks are answered 503 with
    /// `Retry-After` while running steps get the grace period and unfinished runs are handed
    /// back to the queue; then the HTTP server closes.
    pub async fn wait(mut self) {
        self.app.shutdown.cancelled().await;
        while self.tasks.join_next().await.is_some() {}
        self.http_stop.cancel();
        let _ = self.http.await;
    }
}

/// Open the store, import flows, start workers and serve HTTP on `listener`.
pub async fn start(cfg: ServeArgs, listener: TcpListener) -> anyhow::Result<Running> {
    let store = cfg.db.open().await?;
    let key = cfg.db.master_key()?;
    let http_opts = connectors::HttpOptions {
        allow_private_targets: cfg.allow_private_targets,
        ..Default::default()
    };
    let registry = connectors::registry(http_opts.clone());
    let wake_runs = Arc::new(Notify::new());
    let worker_id = flows_engine::ids::new_id("wrk");
    let workers = cfg.workers.max(1);
    let (handoff, handed) = Handoff::new(
        workers,
        cfg.reliability.flow_cap(workers),
        worker_id.clone(),
        cfg.reliability.lease_ms,
    );
    let handoff = Arc::new(handoff);
    let writer = {
        let wake = wake_runs.clone();
        Writer::start(store.clone(), handoff.clone(), move || wake.notify_one())
    };
    let app = Arc::new(App {
        store,
        writer,
        handoff,
        catalog: Catalog::default(),
        registry,
        key,
        wake_runs,
        wake_deliveries: Arc::new(Notify::new()),
        waiters: Waiters::default(),
        http: http_opts.client(),
        worker_id,
        shutdown: CancellationToken::new(),
        auth: Default::default(),
        cfg,
    });
    app.catalog.reload(&app.store, &app.registry).await?;
    for path in app.cfg.import.clone() {
        let report = crate::flows::import_path(&app, &path).await?;
        tracing::info!(path = %path.display(), imported = report.imported.len(), unchanged = report.unchanged.len(), "imported flows");
    }
    crate::metrics::handle();

    let addr = listener.local_addr()?;
    let mut tasks = JoinSet::new();
    tasks.spawn(crate::worker::run_dispatcher(app.clone(), handed));
    tasks.spawn(crate::delivery::run_deliveries(app.clone()));
    tasks.spawn(crate::scheduler::run_scheduler(app.clone()));
    tasks.spawn(crate::retention::run_retention(app.clone()));
    tasks.spawn(crate::wakeups::listen(app.clone()));
    tasks.spawn(refresh_loop(app.clone()));
    let router = crate::http::router(app.clone());
    let http_stop = CancellationToken::new();
    let shutdown = http_stop.clone();
    let http = tokio::spawn(async move {
        let serve = axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move { shutdown.cancelled().await });
        if let Err(e) = serve.await {
            tracing::error!(error = %e, "HTTP server stopped with an error");
        }
    });
    tracing::info!(%addr, "hookflow is listening");
    if app.store.user_count().await? == 0 {
        let token = app.auth.setup_token();
        tracing::info!(
            "no user exists yet: create the first one at http://{addr}/setup?token={token} (this link works once), or with `hookflow user add <name>`"
        );
    }
    Ok(Running {
        addr,
        app,
        tasks,
        http,
        http_stop,
    })
}

/// `hookflow serve`: run until SIGINT/SIGTERM.
pub async fn run(cfg: ServeArgs) -> anyhow::Result<()> {
    let listener = TcpListener::bind(cfg.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", cfg.listen))?;
    let running = start(cfg, listener).await?;
    let shutdown = running.app.shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down: finishing running steps (a second signal stops at once)");
        shutdown.cancel();
        // An operator who asks twice does not want to wait for the grace period; leases
        // cover whatever was running.
        wait_for_signal().await;
        tracing::warn!("second signal: exiting now; unfinished runs resume after their lease");
        std::process::exit(1);
    });
    running.wait().await;
    Ok(())
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// Periodic upkeep: pick up flow changes made by other processes, publish the queue depth.
async fn refresh_loop(app: AppState) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            _ = app.shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        if let Err(e) = app.catalog.reload(&app.store, &app.registry).await {
            tracing::warn!(error = %e, "could not refresh flows");
        }
        match app.store.queue_depth().await {
            Ok(n) => metrics::gauge!("hookflow_queue_depth").set(n as f64),
            Err(e) => tracing::warn!(error = %e, "could not read the queue depth"),
        }
    }
}

/// The application without its HTTP server and background workers, for one-shot commands.
pub async fn open_offline(
    db: crate::config::DbArgs,
    allow_private_targets: bool,
) -> anyhow::Result<AppState> {
    let mut cfg = ServeArgs::for_data_dir(db.data_dir.clone());
    cfg.db = db;
    cfg.allow_private_targets = allow_private_targets;
    let store = cfg.db.open().await?;
    let key = cfg.db.master_key()?;
    let http_opts = connectors::HttpOptions {
        allow_private_targets,
        ..Default::default()
    };
    let wake_runs = Arc::new(Notify::new());
    let worker_id = flows_engine::ids::new_id("cli");
    // One-shot commands run no dispatcher, so no claim ever opens the handover: every run
    // they start is queued for a server.
    let (handoff, _) = Handoff::new(1, 1, worker_id.clone(), 0);
    let handoff = Arc::new(handoff);
    let app = Arc::new(App {
        writer: Writer::start(store.clone(), handoff.clone(), || {}),
        handoff,
        store,
        catalog: Catalog::default(),
        registry: connectors::registry(http_opts.clone()),
        key,
        wake_runs,
        wake_deliveries: Arc::new(Notify::new()),
        waiters: Waiters::default(),
        http: http_opts.client(),
        worker_id,
        shutdown: CancellationToken::new(),
        auth: Default::default(),
        cfg,
    });
    app.catalog.reload(&app.store, &app.registry).await?;
    Ok(app)
}
