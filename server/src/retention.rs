//! Retention: delete finished runs (with their steps, events and deliveries) by age and by count
//! per flow, drop step payloads that `--save-steps` says not to keep, and forget expired dedupe
//! keys and old inbox requests. Work is done in small batches, each its own short transaction,
//! so that pruning never holds the database (and with it webhook ingress) for long.

use std::time::{Duration, Instant};

use sea_orm::{ConnectionTrait, FromQueryResult, TransactionTrait, Value as DbValue};
use tokio_util::sync::CancellationToken;

use crate::{
    app::{App, AppState},
    config::SaveSteps,
    error::Error,
    store::{Store, now_ms},
};

/// Rows per transaction: short enough that a webhook waiting behind one is not kept long.
const BATCH: usize = 200;
/// The shortest pause between batches.
const BREATHE: Duration = Duration::from_millis(2);

/// Payloads stay this long after a run ends: a caller waiting for the result (`respond: result`,
/// `?wait=true`) reads them right then.
const PAYLOAD_GRACE_MS: i64 = 5_000;
/// Requests kept per inbox.
const INBOX_KEEP: u64 = 1_000;

/// Pause after a batch that started at `began`, as long as it took: retention then takes at most
/// about half of the database's time, and the writers waiting for their turn get it in between,
/// while a pass still keeps up with a sustained load (a fixed 20-ms pause capped it below the
/// rate this machine ingests at). False once the process is shutting down, where a pass stops
/// (what is left goes in a later pass): shutdown must not wait for a pass of minutes.
async fn breathe(stop: &CancellationToken, began: Instant) -> bool {
    let pause = began.elapsed().clamp(BREATHE, Duration::from_secs(1));
    tokio::select! {
        _ = stop.cancelled() => false,
        _ = tokio::time::sleep(pause) => true,
    }
}

/// What one pass removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Pruned {
    pub runs: u64,
    pub payloads: u64,
    pub dedupe_keys: u64,
    pub inbox: u64,
}

/// Prune every `--retention-interval` until shutdown.
pub async fn run_retention(app: AppState) {
    let mut watermark = 0;
    let every = app.cfg.reliability.retention_interval;
    loop {
        tokio::select! {
            _ = app.shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        match prune(&app, &mut watermark).await {
            Ok(p) => {
                for (what, n) in [
                    ("runs", p.runs),
                    ("payloads", p.payloads),
                    ("dedupe_keys", p.dedupe_keys),
                    ("inbox", p.inbox),
                ] {
                    if n > 0 {
                        metrics::counter!("hookflow_retention_deleted_total", "what" => what)
                            .increment(n);
                    }
                }
                if p != Pruned::default() {
                    tracing::info!(
                        runs = p.runs,
                        payloads = p.payloads,
                        dedupe_keys = p.dedupe_keys,
                        inbox = p.inbox,
                        "retention pass"
                    );
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "retention pass failed; trying again next interval")
            }
        }
    }
}

/// One pass. `watermark`: runs finished up to here have had their payloads handled.
pub async fn prune(app: &App, watermark: &mut i64) -> Result<Pruned, Error> {
    let r = &app.cfg.reliability;
    let (store, stop) = (&app.store, &app.shutdown);
    let now = now_ms();
    let mut p = Pruned::default();
    if r.save_steps != SaveSteps::All {
        p.payloads =
            drop_payloads(store, r.save_steps, watermark, now - PAYLOAD_GRACE_MS, stop).await?;
    }
    if r.retain_days > 0 {
        let cutoff = now - (r.retain_days as i64) * 86_400_000;
        loop {
            let began = Instant::now();
            let ids = ids(
                store,
                &format!("SELECT id FROM runs WHERE finished_at < $1 AND {DONE} LIMIT {BATCH}"),
                vec![cutoff.into()],
            )
            .await?;
            p.runs += delete_runs(store, &ids).await?;
            if ids.len() < BATCH || !breathe(stop, began).await {
                break;
            }
        }
        p.inbox += delete_batches(
            store,
            "inbox_requests",
            "id",
            "SELECT id FROM inbox_requests WHERE received_at < $1",
            vec![cutoff.into()],
            stop,
        )
        .await?;
    }
    if r.retain_runs > 0 {
        for flow in ids(store, "SELECT DISTINCT flow AS id FROM runs", vec![]).await? {
            p.runs += prune_flow(store, &flow, r.retain_runs, BATCH, stop).await?;
        }
    }
    p.dedupe_keys = delete_batches(
        store,
        "dedupe_keys",
        "flow || ' ' || key",
        "SELECT flow || ' ' || key AS id FROM dedupe_keys WHERE expires_at < $1",
        vec![now.into()],
        stop,
    )
    .await?;
    for inbox in ids(
        store,
        "SELECT DISTINCT inbox AS id FROM inbox_requests",
        vec![],
    )
    .await?
    {
        let sql = format!(
            "SELECT id FROM inbox_requests WHERE inbox = $1 ORDER BY id DESC LIMIT {BATCH} OFFSET {INBOX_KEEP}"
        );
        let old = ids(store, &sql, vec![inbox.into()]).await?;
        p.inbox += delete_ids(store, "inbox_requests", "id", &old).await?;
    }
    Ok(p)
}

/// Delete the finished runs of `flow` beyond its newest `keep`, `batch` at a time. The newest
/// run that goes is found once; the runs up to it then go oldest first, each batch starting
/// after the last id of the one before (ids grow with time). Taking every batch with
/// `OFFSET keep` instead walked the `keep` runs that stay, each with its delivery check, once
/// per batch: under a sustained load at the limit that was ≈ 20 rows read per row deleted.
async fn prune_flow(
    store: &Store,
    flow: &str,
    keep: u64,
    batch: usize,
    stop: &CancellationToken,
) -> Result<u64, Error> {
    let cut = ids(
        store,
        &format!(
            "SELECT id FROM runs WHERE flow = $1 AND finished_at IS NOT NULL AND {DONE} \
             ORDER BY id DESC LIMIT 1 OFFSET $2"
        ),
        vec![flow.into(), (keep as i64).into()],
    )
    .await?;
    let Some(cut) = cut.into_iter().next() else {
        return Ok(0);
    };
    let mut after = String::new();
    let mut n = 0;
    loop {
        let began = Instant::now();
        let found = ids(
            store,
            &prune_batch_sql(batch),
            vec![flow.into(), after.into(), cut.clone().into()],
        )
        .await?;
        n += delete_runs(store, &found).await?;
        match found.last() {
            Some(last) if found.len() == batch && breathe(stop, began).await => {
                after = last.clone()
            }
            _ => return Ok(n),
        }
    }
}

/// The next batch of a flow's runs that go by count: after `$2`, up to the cut `$3`.
fn prune_batch_sql(batch: usize) -> String {
    format!(
        "SELECT id FROM runs WHERE flow = $1 AND id > $2 AND id <= $3 \
         AND finished_at IS NOT NULL AND {DONE} ORDER BY id LIMIT {batch}"
    )
}

/// A run that may go: finished, and no delivery of it still waiting to be sent.
const DONE: &str = "status NOT IN ('queued', 'running') \
    AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.run_id = runs.id AND d.status = 'pending')";

#[derive(FromQueryResult)]
struct Id {
    id: String,
}

async fn ids(store: &Store, sql: &str, values: Vec<DbValue>) -> Result<Vec<String>, Error> {
    Ok(Id::find_by_statement(store.stmt(sql, values))
        .all(&store.db)
        .await?
        .into_iter()
        .map(|i| i.id)
        .collect())
}

/// `$1, $2, ...` for `n` values after `offset` others.
fn placeholders(offset: usize, n: usize) -> String {
    (1..=n)
        .map(|i| format!("${}", i + offset))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Delete runs and everything that belongs to them, in one transaction.
async fn delete_runs(store: &Store, ids: &[String]) -> Result<u64, Error> {
    if ids.is_empty() {
        return Ok(0);
    }
    let list = placeholders(0, ids.len());
    let values: Vec<DbValue> = ids.iter().map(|i| i.clone().into()).collect();
    let turn = store.write_turn().await;
    let txn = turn.begin().await?;
    for sql in [
        format!("DELETE FROM step_runs WHERE run_id IN ({list})"),
        format!(
            "DELETE FROM delivery_attempts WHERE delivery_id IN (SELECT id FROM deliveries WHERE run_id IN ({list}))"
        ),
        format!("DELETE FROM deliveries WHERE run_id IN ({list})"),
        format!("DELETE FROM events WHERE id IN (SELECT event_id FROM runs WHERE id IN ({list}))"),
    ] {
        txn.execute_raw(store.stmt(&sql, values.clone())).await?;
    }
    let n = txn
        .execute_raw(store.stmt(&format!("DELETE FROM runs WHERE id IN ({list})"), values))
        .await?
        .rows_affected();
    txn.commit().await?;
    Ok(n)
}

async fn delete_ids(
    store: &Store,
    table: &str,
    id_expr: &str,
    ids: &[String],
) -> Result<u64, Error> {
    if ids.is_empty() {
        return Ok(0);
    }
    let sql = format!(
        "DELETE FROM {table} WHERE {id_expr} IN ({})",
        placeholders(0, ids.len())
    );
    let values = ids.iter().map(|i| i.clone().into()).collect();
    Ok(store
        .db
        .execute_raw(store.stmt(&sql, values))
        .await?
        .rows_affected())
}

/// Delete what `select` (which yields `id`) finds, a batch at a time.
async fn delete_batches(
    store: &Store,
    table: &str,
    id_expr: &str,
    select: &str,
    values: Vec<DbValue>,
    stop: &CancellationToken,
) -> Result<u64, Error> {
    let mut n = 0;
    loop {
        let began = Instant::now();
        let found = ids(store, &format!("{select} LIMIT {BATCH}"), values.clone()).await?;
        n += delete_ids(store, table, id_expr, &found).await?;
        if found.len() < BATCH || !breathe(stop, began).await {
            return Ok(n);
        }
    }
}

/// Drop the step inputs and outputs (and the run output) of runs finished before `until` that
/// the policy does not keep. Steps of a run whose payloads are gone run again if it is retried.
async fn drop_payloads(
    store: &Store,
    policy: SaveSteps,
    watermark: &mut i64,
    until: i64,
    stop: &CancellationToken,
) -> Result<u64, Error> {
    #[derive(FromQueryResult)]
    struct Finished {
        id: String,
        status: String,
        finished_at: i64,
    }
    let mut n = 0;
    loop {
        let began = Instant::now();
        let stmt = store.stmt(
            &format!(
                "SELECT id, status, finished_at FROM runs WHERE finished_at > $1 AND finished_at <= $2 \
                 AND status NOT IN ('queued', 'running') ORDER BY finished_at LIMIT {BATCH}"
            ),
            vec![(*watermark).into(), until.into()],
        );
        let rows = Finished::find_by_statement(stmt).all(&store.db).await?;
        let Some(last) = rows.last() else {
            return Ok(n);
        };
        *watermark = last.finished_at;
        let strip: Vec<String> = rows
            .iter()
            .filter(|r| policy == SaveSteps::None || r.status != "failed")
            .map(|r| r.id.clone())
            .collect();
        if !strip.is_empty() {
            let list = placeholders(0, strip.len());
            let values: Vec<DbValue> = strip.iter().map(|i| i.clone().into()).collect();
            let turn = store.write_turn().await;
            let txn = turn.begin().await?;
            n += txn
                .execute_raw(store.stmt(
                    &format!("UPDATE step_runs SET input = NULL, output = NULL WHERE run_id IN ({list}) AND (input IS NOT NULL OR output IS NOT NULL)"),
                    values.clone(),
                ))
                .await?
                .rows_affected();
            txn.execute_raw(store.stmt(
                &format!("UPDATE runs SET output = NULL WHERE id IN ({list})"),
                values,
            ))
            .await?;
            txn.commit().await?;
        }
        if rows.len() < BATCH || !breathe(stop, began).await {
            return Ok(n);
        }
    }
}

#[cfg(test)]
mod tests {
    use sea_orm::ConnectionTrait;

    use super::*;
    use crate::store::testing::{plan, temp_store};

    /// Count-based pruning keeps a flow's newest finished runs, leaves runs still running or
    /// with a delivery waiting (wherever they sit among the old ones) and other flows alone,
    /// and reads each batch as a range of the flow's index instead of skipping the runs kept.
    #[tokio::test]
    async fn pruning_by_count_keeps_the_newest_and_walks_each_run_once() {
        let (_dir, store) = temp_store().await;
        let mut sql = String::new();
        for i in 1..=15 {
            let (flow, status, finished) = match i {
                2 => ("f", "running", "NULL"),
                11 | 12 => ("f", "queued", "NULL"),
                13.. => ("g", "succeeded", "1"),
                _ => ("f", "succeeded", "1"),
            };
            sql.push_str(&format!(
                "INSERT INTO runs (id, flow, version, status, attempt, trigger, depth, \
                 available_at, created_at, finished_at) \
                 VALUES ('run_{i:02}', '{flow}', 1, '{status}', 1, '{{}}', 0, 0, 0, {finished});"
            ));
        }
        sql.push_str(
            "INSERT INTO deliveries (id, run_id, step_id, url, body, status, attempts, \
             next_attempt_at, idempotency_key, created_at, updated_at) \
             VALUES ('dlv_1', 'run_03', 's', 'http://127.0.0.1:1/', '{}', 'pending', 0, 0, 'k', 0, 0);\
             INSERT INTO step_runs (run_id, step_id, status, attempts, started_at, duration_ms) \
             VALUES ('run_01', 's', 'succeeded', 1, 0, 0);",
        );
        store.db.execute_unprepared(&sql).await.unwrap();

        // Shutting down, a pass stops after the batch in hand.
        let stop = CancellationToken::new();
        stop.cancel();
        assert_eq!(prune_flow(&store, "f", 3, 2, &stop).await.unwrap(), 2);
        let stop = CancellationToken::new();
        assert_eq!(prune_flow(&store, "f", 3, 2, &stop).await.unwrap(), 3);
        let left = ids(&store, "SELECT id FROM runs ORDER BY id", vec![])
            .await
            .unwrap();
        let want: Vec<String> = [2, 3, 8, 9, 10, 11, 12, 13, 14, 15]
            .iter()
            .map(|i| format!("run_{i:02}"))
            .collect();
        assert_eq!(left, want);
        let steps = ids(&store, "SELECT run_id AS id FROM step_runs", vec![])
            .await
            .unwrap();
        assert!(steps.is_empty(), "{steps:?}");
        // Nothing more to do: the next pass deletes nothing.
        assert_eq!(prune_flow(&store, "f", 3, 2, &stop).await.unwrap(), 0);

        let batch = store.stmt(
            &prune_batch_sql(2),
            vec!["f".into(), "".into(), "run_99".into()],
        );
        let plan = plan(&store, batch).await;
        assert!(
            plan.iter()
                .any(|l| l.contains("runs_flow (flow=? AND id>? AND id<?)")),
            "{plan:?}"
        );
    }
}
