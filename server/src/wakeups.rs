//! Cross-process wake-ups on PostgreSQL: `LISTEN` for the `NOTIFY`s that every process sends
//! when it queues or releases runs and deliveries, and wake the local workers. Polling stays as
//! the fallback for a notification lost while the listening connection was down.

use std::time::Duration;

use sea_orm::sqlx::postgres::PgListener;

use crate::{
    app::AppState,
    store::queue::{DELIVERIES_CHANNEL, RUNS_CHANNEL},
};

/// Listen until shutdown; a no-op on SQLite (one process, woken in memory).
pub async fn listen(app: AppState) {
    if !app.store.is_postgres() {
        return;
    }
    let url = app.cfg.db.url();
    loop {
        let mut listener = match connect(&url).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "cannot LISTEN for wake-ups; polling until it works");
                tokio::select! {
                    _ = app.shutdown.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(5)) => continue,
                }
            }
        };
        loop {
            let note = tokio::select! {
                _ = app.shutdown.cancelled() => return,
                n = listener.try_recv() => n,
            };
            match note {
                Ok(Some(n)) => match n.channel() {
                    RUNS_CHANNEL => app.wake_runs.notify_one(),
                    DELIVERIES_CHANNEL => app.wake_deliveries.notify_one(),
                    _ => {}
                },
                // The connection dropped and notifications may have been missed: look now.
                Ok(None) => {
                    app.wake_runs.notify_one();
                    app.wake_deliveries.notify_one();
                }
                Err(e) => {
                    tracing::warn!(error = %e, "lost the LISTEN connection; reconnecting");
                    break;
                }
            }
        }
    }
}

async fn connect(url: &str) -> Result<PgListener, sea_orm::sqlx::Error> {
    let mut l = PgListener::connect(url).await?;
    l.listen_all([RUNS_CHANNEL, DELIVERIES_CHANNEL]).await?;
    Ok(l)
}
