//! Claiming work with leases. A worker takes queued runs (and runs whose lease expired because
//! their worker died) in one statement; on PostgreSQL `FOR UPDATE SKIP LOCKED` lets many
//! processes claim concurrently without taking the same row.

use std::collections::HashMap;

use sea_orm::{ConnectionTrait, FromQueryResult, Statement, Value as DbValue};

use super::{
    Store,
    entities::{deliveries, runs},
    now_ms,
    steps::RunEnd,
};
use crate::error::Error;

/// The predicate of `runs_waiting`, the queue's index, which holds only queued and running runs.
/// A query over the queue states it word for word: SQLite uses a partial index only for a query
/// whose `WHERE` contains the index's own terms (`status = 'queued'` alone does not qualify).
pub(crate) const WAITING: &str = "status IN ('queued', 'running')";

/// `NOTIFY` channel: runs were queued or released.
pub const RUNS_CHANNEL: &str = "hookflow_runs";
/// `NOTIFY` channel: deliveries were queued or released.
pub const DELIVERIES_CHANNEL: &str = "hookflow_deliveries";

/// A run this process now holds.
pub struct Claimed {
    pub run: runs::Model,
    /// Never started before: it has no step records to load.
    pub first_start: bool,
}

/// How many more runs of each flow (or deliveries to each endpoint) this process may take: `cap`
/// minus those it has in hand.
#[derive(Debug, Default, Clone)]
pub struct FlowBudget {
    pub cap: usize,
    pub running: HashMap<String, usize>,
}

impl FlowBudget {
    pub fn new(cap: usize) -> Self {
        Self {
            cap: cap.max(1),
            running: HashMap::new(),
        }
    }

    pub fn room(&self, flow: &str) -> usize {
        self.cap
            .saturating_sub(self.running.get(flow).copied().unwrap_or(0))
    }

    pub fn take(&mut self, flow: &str) {
        *self.running.entry(flow.to_string()).or_default() += 1;
    }

    pub fn put_back(&mut self, flow: &str) {
        if let Some(n) = self.running.get_mut(flow) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.running.remove(flow);
            }
        }
    }

    /// SQL for a claim over `column` (`flow`, `url`): a filter leaving out keys at their cap,
    /// and the room of each key in the ranked window (`ranked.<column>`), `cap` (a placeholder)
    /// for keys not yet running. Values are appended to `values`.
    fn sql(&self, column: &str, cap: &str, values: &mut Vec<DbValue>) -> (String, String) {
        let mut param = |v: DbValue| {
            values.push(v);
            format!("${}", values.len())
        };
        let full: Vec<String> = self.full().map(|f| param(f.to_string().into())).collect();
        let not_full = if full.is_empty() {
            String::new()
        } else {
            format!(" AND {column} NOT IN ({})", full.join(", "))
        };
        let partial: Vec<String> = self
            .partial()
            .map(|(f, room)| {
                format!(
                    " WHEN {} THEN {}",
                    param(f.to_string().into()),
                    param((room as i64).into())
                )
            })
            .collect();
        let room = if partial.is_empty() {
            cap.to_string()
        } else {
            format!("CASE ranked.{column}{} ELSE {cap} END", partial.concat())
        };
        (not_full, room)
    }

    /// Whether any key is at its cap.
    pub fn at_cap(&self) -> bool {
        self.full().next().is_some()
    }

    /// Keys at their cap.
    fn full(&self) -> impl Iterator<Item = &str> {
        self.running
            .keys()
            .filter(|f| self.room(f) == 0)
            .map(String::as_str)
    }

    /// Flows with some runs going and room for more, with that room.
    fn partial(&self) -> impl Iterator<Item = (&str, usize)> {
        self.running
            .keys()
            .map(|f| (f.as_str(), self.room(f)))
            .filter(|(_, room)| *room > 0)
    }
}

impl Store {
    fn skip_locked(&self) -> &'static str {
        if self.is_postgres() {
            " FOR UPDATE SKIP LOCKED"
        } else {
            ""
        }
    }

    /// Claim up to `limit` runs for `worker`, leased for `lease_ms`, oldest first, taking at
    /// most `budget.room(flow)` runs of any one flow (the per-flow concurrency limit).
    /// `expired`: also take runs whose lease has expired (their process died). Looking for them
    /// reads every running run, so the dispatcher asks only now and then, not on every claim.
    pub async fn claim_runs(
        &self,
        worker: &str,
        limit: u64,
        lease_ms: i64,
        budget: &FlowBudget,
        expired: bool,
    ) -> Result<Vec<Claimed>, Error> {
        #[derive(FromQueryResult)]
        struct Waiting {
            flow: String,
        }
        // PostgreSQL claims always look for expired leases. Every claim and run end leaves a dead
        // version of the run behind; reading the running runs' heap pages prunes them, and
        // without it the queue's scans read 34 × more index entries (docs/benchmarks.md).
        let expired = expired || self.is_postgres();
        let now = now_ms();
        let turn = self.write_turn().await;
        let flows = Waiting::find_by_statement(self.waiting_flows_stmt(expired, now))
            .all(&*turn)
            .await?;
        let heads: Vec<(&str, usize)> = flows
            .iter()
            .map(|w| (w.flow.as_str(), budget.room(&w.flow).min(limit as usize)))
            .filter(|&(_, room)| room > 0)
            .collect();
        if heads.is_empty() {
            return Ok(Vec::new());
        }
        let stmt = self.claim_runs_stmt(worker, limit, lease_ms, &heads, expired, now);
        let claimed = runs::Model::find_by_statement(stmt).all(&*turn).await?;
        Ok(claimed
            .into_iter()
            .map(|run| Claimed {
                // Only this claim sets `started_at` to its own `now` (it is kept from then on).
                first_start: run.started_at == Some(now),
                run,
            })
            .collect())
    }

    /// The flows that have queued runs (and, with `expired`, runs whose lease expired): one
    /// seek in `runs_waiting` per flow, however long the queue.
    fn waiting_flows_stmt(&self, expired: bool, now: i64) -> Statement {
        let expired = if expired {
            format!(
                " UNION SELECT DISTINCT flow FROM runs WHERE {WAITING} AND status = 'running' AND lease_until < $1"
            )
        } else {
            String::new()
        };
        self.stmt(
            &format!(
                "WITH RECURSIVE waiting (flow) AS (\
                   SELECT (SELECT MIN(flow) FROM runs WHERE {WAITING} AND status = 'queued') \
                   UNION ALL \
                   SELECT (SELECT MIN(flow) FROM runs WHERE {WAITING} AND status = 'queued' AND flow > waiting.flow) \
                   FROM waiting WHERE waiting.flow IS NOT NULL\
                 ) SELECT flow FROM waiting WHERE flow IS NOT NULL{expired}"
            ),
            if expired.is_empty() {
                vec![]
            } else {
                vec![now.into()]
            },
        )
    }

    /// The claim itself: from each flow in `heads`, its oldest ready runs, at most its room
    /// (read in order from `runs_waiting`, so a claim costs what it takes, however long the
    /// queue); of those the oldest `limit`. Reading each flow's head on its own also finds the
    /// runs of a quiet flow behind a long backlog of a busy one.
    fn claim_runs_stmt(
        &self,
        worker: &str,
        limit: u64,
        lease_ms: i64,
        heads: &[(&str, usize)],
        expired: bool,
        now: i64,
    ) -> Statement {
        let mut values: Vec<DbValue> = vec![
            worker.into(),
            (now + lease_ms).into(),
            now.into(),
            (limit as i64).into(),
        ];
        let lock = self.skip_locked();
        let mut branches = Vec::with_capacity(heads.len());
        for &(flow, room) in heads {
            values.push(flow.into());
            values.push((room as i64).into());
            let (f, r) = (values.len() - 1, values.len());
            let queued = format!(
                "SELECT id, available_at FROM runs WHERE {WAITING} AND status = 'queued' AND flow = ${f} \
                 AND available_at <= $3 ORDER BY available_at, id LIMIT ${r}{lock}"
            );
            branches.push(if expired {
                format!(
                    "SELECT * FROM (SELECT * FROM ({queued}) q UNION ALL SELECT * FROM (\
                       SELECT id, available_at FROM runs WHERE {WAITING} AND status = 'running' AND flow = ${f} \
                       AND lease_until < $3 ORDER BY available_at, id LIMIT ${r}{lock}) e \
                     ORDER BY available_at, id LIMIT ${r}) h{f}"
                )
            } else {
                format!("SELECT * FROM ({queued}) h{f}")
            });
        }
        let ready = "((status = 'queued' AND available_at <= $3) OR (status = 'running' AND lease_until < $3))";
        // The chosen runs are checked again by id. On SQLite a `+` keeps these columns from
        // choosing an index: otherwise the check is planned as a walk over every ready run in
        // `runs_waiting`, testing each against the chosen ids.
        // PostgreSQL: the chosen ids as one array, looked up by primary key (an `IN` subquery
        // here is planned as a scan of the whole table once the queue is long).
        let (recheck, id_in, id_in_end) = if self.is_postgres() {
            (ready, "id = ANY(ARRAY", ")")
        } else {
            (
                "((+status = 'queued' AND +available_at <= $3) OR (+status = 'running' AND +lease_until < $3))",
                "id IN ",
                "",
            )
        };
        let sql = format!(
            "UPDATE runs SET status = 'running', worker = $1, lease_until = $2, started_at = COALESCE(started_at, $3) \
             WHERE {recheck} AND {id_in}(SELECT id FROM ({}) heads ORDER BY available_at, id LIMIT $4){id_in_end} \
             RETURNING *",
            branches.join(" UNION ALL ")
        );
        self.stmt(&sql, values)
    }

    /// Extend the leases of every run `worker` holds (one statement for all of them).
    pub async fn heartbeat_runs(&self, worker: &str, lease_ms: i64) -> Result<u64, Error> {
        let stmt = self.stmt(
            &format!("UPDATE runs SET lease_until = $1 WHERE worker = $2 AND {WAITING} AND status = 'running'"),
            vec![(now_ms() + lease_ms).into(), worker.into()],
        );
        let turn = self.write_turn().await;
        Ok(turn.execute_raw(stmt).await?.rows_affected())
    }

    /// Hand every run `worker` still holds back to the queue (graceful shutdown): another
    /// process resumes each after its last recorded step, without waiting for the lease.
    pub async fn release_runs_of(&self, worker: &str) -> Result<u64, Error> {
        let stmt = self.stmt(
            &format!(
                "UPDATE runs SET status = 'queued', worker = NULL, lease_until = NULL \
                 WHERE worker = $1 AND {WAITING} AND status = 'running'"
            ),
            vec![worker.into()],
        );
        let n = self.db.execute_raw(stmt).await?.rows_affected();
        if n > 0 {
            self.notify(RUNS_CHANNEL).await;
        }
        Ok(n)
    }

    /// Extend the leases of deliveries being sent.
    pub async fn heartbeat_deliveries(&self, ids: &[String], lease_ms: i64) -> Result<(), Error> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut values: Vec<DbValue> = vec![(now_ms() + lease_ms).into()];
        let list: Vec<String> = ids
            .iter()
            .map(|id| {
                values.push(id.clone().into());
                format!("${}", values.len())
            })
            .collect();
        let stmt = self.stmt(
            &format!(
                "UPDATE deliveries SET lease_until = $1 WHERE status = 'pending' AND lease_until IS NOT NULL AND id IN ({})",
                list.join(", ")
            ),
            values,
        );
        self.db.execute_raw(stmt).await?;
        Ok(())
    }

    /// Give up the leases of deliveries this process will not send (shutdown).
    pub async fn release_deliveries(&self, ids: &[String]) -> Result<(), Error> {
        for id in ids {
            let stmt = self.stmt(
                "UPDATE deliveries SET lease_until = NULL WHERE id = $1 AND status = 'pending'",
                vec![id.clone().into()],
            );
            self.db.execute_raw(stmt).await?;
        }
        if !ids.is_empty() {
            self.notify(DELIVERIES_CHANNEL).await;
        }
        Ok(())
    }

    /// Wake the workers of every process (PostgreSQL `NOTIFY`); SQLite has one process, which
    /// wakes itself in memory. Best effort: polling covers a lost notification.
    pub async fn notify(&self, channel: &str) {
        if !self.is_postgres() {
            return;
        }
        let stmt = self.stmt("SELECT pg_notify($1, '')", vec![channel.into()]);
        if let Err(e) = self.db.execute_raw(stmt).await {
            tracing::debug!(error = %e, channel, "NOTIFY failed; other processes will poll");
        }
    }

    /// Extend the lease of runs this worker still holds.
    pub async fn heartbeat_run(
        &self,
        id: &str,
        worker: &str,
        lease_ms: i64,
    ) -> Result<bool, Error> {
        let stmt = self.stmt(
            "UPDATE runs SET lease_until = $1 WHERE id = $2 AND worker = $3 AND status = 'running'",
            vec![(now_ms() + lease_ms).into(), id.into(), worker.into()],
        );
        let turn = self.write_turn().await;
        Ok(turn.execute_raw(stmt).await?.rows_affected() > 0)
    }

    /// Hand a claimed run back to the queue (shutdown before it started).
    pub async fn release_run(&self, id: &str, worker: &str) -> Result<(), Error> {
        let stmt = self.stmt(
            "UPDATE runs SET status = 'queued', worker = NULL, lease_until = NULL WHERE id = $1 AND worker = $2 AND status = 'running'",
            vec![id.into(), worker.into()],
        );
        self.db.execute_raw(stmt).await?;
        Ok(())
    }

    /// Record a run's end, if this worker still holds it. `false`: the lease was lost.
    pub async fn finish_run(
        &self,
        id: &str,
        worker: &str,
        status: &str,
        error: Option<String>,
        output: Option<String>,
    ) -> Result<bool, Error> {
        // Group-committed with the step records of other runs (`store::steps`).
        self.end_run_grouped(RunEnd {
            id: id.to_string(),
            worker: worker.to_string(),
            status: status.to_string(),
            error,
            output,
            finished_at: now_ms(),
        })
        .await
    }

    /// Claim up to `limit` deliveries that are due, at most `budget.room(url)` to any one
    /// endpoint, so that a slow receiver cannot hold every sending slot.
    pub async fn claim_deliveries(
        &self,
        limit: u64,
        lease_ms: i64,
        budget: &FlowBudget,
    ) -> Result<Vec<deliveries::Model>, Error> {
        let stmt = self.claim_deliveries_stmt(limit, lease_ms, budget, now_ms());
        let turn = self.write_turn().await;
        Ok(deliveries::Model::find_by_statement(stmt)
            .all(&*turn)
            .await?)
    }

    fn claim_deliveries_stmt(
        &self,
        limit: u64,
        lease_ms: i64,
        budget: &FlowBudget,
        now: i64,
    ) -> Statement {
        let mut values: Vec<DbValue> = vec![
            (now + lease_ms).into(),
            now.into(),
            (limit as i64).into(),
            (limit as i64 * 4 + 16).into(),
            (budget.cap as i64).into(),
        ];
        let (not_full, room) = budget.sql("url", "$5", &mut values);
        let due = "status = 'pending' AND next_attempt_at <= $2 AND (lease_until IS NULL OR lease_until < $2)";
        // As for runs: the check by id must not walk every due delivery on SQLite.
        let recheck = if self.is_postgres() {
            due
        } else {
            "+status = 'pending' AND +next_attempt_at <= $2 AND (+lease_until IS NULL OR +lease_until < $2)"
        };
        let (id_in, id_in_end) = if self.is_postgres() {
            ("id = ANY(ARRAY", ")")
        } else {
            ("id IN ", "")
        };
        let sql = format!(
            "UPDATE deliveries SET lease_until = $1 \
             WHERE id IN (SELECT id FROM deliveries WHERE {recheck} AND {id_in}(\
               SELECT ranked.id FROM (\
                 SELECT head.id, head.url, ROW_NUMBER() OVER (PARTITION BY head.url ORDER BY head.next_attempt_at, head.id) AS rn \
                 FROM (SELECT id, url, next_attempt_at FROM deliveries WHERE {due}{not_full} ORDER BY next_attempt_at, id LIMIT $4) head\
               ) ranked WHERE ranked.rn <= {room}){id_in_end} \
             ORDER BY next_attempt_at, id LIMIT $3{}) RETURNING *",
            self.skip_locked()
        );
        self.stmt(&sql, values)
    }

    /// When the next delivery falls due (for sleeping until then).
    pub async fn next_delivery_due(&self) -> Result<Option<i64>, Error> {
        #[derive(FromQueryResult)]
        struct Due {
            due: Option<i64>,
        }
        let stmt = self.stmt(
            "SELECT MIN(next_attempt_at) AS due FROM deliveries WHERE status = 'pending'",
            vec![],
        );
        Ok(Due::find_by_statement(stmt)
            .one(&self.db)
            .await?
            .and_then(|d| d.due))
    }

    /// Runs waiting in the queue.
    pub async fn queue_depth(&self) -> Result<i64, Error> {
        #[derive(FromQueryResult)]
        struct Count {
            n: i64,
        }
        let stmt = self.stmt(
            &format!("SELECT COUNT(*) AS n FROM runs WHERE {WAITING} AND status = 'queued'"),
            vec![],
        );
        Ok(Count::find_by_statement(stmt)
            .one(&self.db)
            .await?
            .map_or(0, |c| c.n))
    }
}

impl Store {
    /// Claim one specific queued run (a one-shot `hookflow run`), leaving the rest of the queue alone.
    pub async fn claim_run(
        &self,
        id: &str,
        worker: &str,
        lease_ms: i64,
    ) -> Result<Option<runs::Model>, Error> {
        let now = now_ms();
        let stmt = self.stmt(
            "UPDATE runs SET status = 'running', worker = $1, lease_until = $2, started_at = COALESCE(started_at, $3) \
             WHERE id = $4 AND status = 'queued' RETURNING *",
            vec![worker.into(), (now + lease_ms).into(), now.into(), id.into()],
        );
        Ok(runs::Model::find_by_statement(stmt).one(&self.db).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::{plan, temp_store};

    /// A claim reads the head of each flow's queue through the index, in order, and then finds
    /// the chosen rows by id; nothing walks the queue, which made a claim cost as much as the
    /// queue was long.
    #[tokio::test]
    async fn claims_read_only_the_head_of_the_queue() {
        let (_dir, store) = temp_store().await;
        let budget = FlowBudget::new(4);
        let heads = [("busy", 2), ("quiet", 4)];
        for (expired, reads) in [(true, 4), (false, 2)] {
            let runs = plan(
                &store,
                store.claim_runs_stmt("wrk_t", 8, 30_000, &heads, expired, now_ms()),
            )
            .await;
            let ordered = runs
                .iter()
                .filter(|l| l.contains("runs_waiting (status=? AND flow=?"))
                .count();
            assert_eq!(ordered, reads, "each flow's heads only:\n{runs:#?}");
            assert!(
                runs.iter()
                    .any(|l| l.contains("SEARCH runs USING INDEX sqlite_autoindex_runs_1 (id=?)")),
                "{runs:#?}"
            );
            assert!(!runs.iter().any(|l| l.contains("SCAN runs")), "{runs:#?}");
            // Only runs already chosen are sorted (at most each flow's room), never a queue:
            // the heads to merge across flows, and with `expired` each flow's two heads.
            let sorts = runs.iter().filter(|l| l.contains("TEMP B-TREE")).count();
            assert_eq!(
                sorts,
                1 + usize::from(expired) * 2 * heads.len(),
                "{runs:#?}"
            );
            let flows = plan(&store, store.waiting_flows_stmt(expired, now_ms())).await;
            assert!(
                flows
                    .iter()
                    .any(|l| l.contains("COVERING INDEX runs_waiting (status=? AND flow>?)")),
                "one seek per waiting flow:\n{flows:#?}"
            );
            assert!(!flows.iter().any(|l| l.contains("SCAN runs")), "{flows:#?}");
        }
        let mut budget = budget;
        budget.take("busy");
        let deliveries = plan(
            &store,
            store.claim_deliveries_stmt(8, 30_000, &budget, now_ms()),
        )
        .await;
        let by_due = deliveries
            .iter()
            .filter(|l| l.contains("deliveries_due"))
            .count();
        assert_eq!(by_due, 1, "the head only:\n{deliveries:#?}");
    }

    /// A run whose lease expired is taken only by a claim that looks for expired leases; a
    /// queued run by any claim.
    #[tokio::test]
    async fn expired_leases_are_taken_when_asked_for() {
        let (_dir, store) = temp_store().await;
        for (id, status, lease) in [
            ("run_dead", "running", Some(1)),
            ("run_live", "running", Some(i64::MAX)),
            ("run_new", "queued", None),
        ] {
            let stmt = store.stmt(
                "INSERT INTO runs (id, flow, version, status, attempt, trigger, depth, worker, \
                 lease_until, available_at, created_at) VALUES ($1, 'f', 1, $2, 1, '{}', 0, 'wrk_gone', $3, 0, 0)",
                vec![id.into(), status.into(), lease.into()],
            );
            store.db.execute_raw(stmt).await.unwrap();
        }
        let budget = FlowBudget::new(8);
        let ids = |claimed: Vec<Claimed>| {
            let mut ids: Vec<String> = claimed.into_iter().map(|c| c.run.id).collect();
            ids.sort();
            ids
        };
        let first = store
            .claim_runs("wrk_t", 8, 30_000, &budget, false)
            .await
            .unwrap();
        assert_eq!(ids(first), ["run_new"]);
        let second = store
            .claim_runs("wrk_t", 8, 30_000, &budget, true)
            .await
            .unwrap();
        assert_eq!(ids(second), ["run_dead"]);
    }

    async fn insert_runs(store: &Store, flow: &str, n: usize, at: i64) -> Vec<String> {
        let mut ids = Vec::new();
        for _ in 0..n {
            let id = flows_engine::ids::new_id("run");
            let stmt = store.stmt(
                "INSERT INTO runs (id, flow, version, status, attempt, trigger, depth, \
                 available_at, created_at) VALUES ($1, $2, 1, 'queued', 1, '{}', 0, $3, 0)",
                vec![id.clone().into(), flow.into(), at.into()],
            );
            store.db.execute_raw(stmt).await.unwrap();
            ids.push(id);
        }
        ids
    }

    /// A flow at the head of the queue with a long backlog and little room does not hide the
    /// runs of another flow behind it; each flow gets at most its room, oldest first.
    #[tokio::test]
    async fn a_long_backlog_does_not_hide_other_flows() {
        let (_dir, store) = temp_store().await;
        let busy = insert_runs(&store, "busy", 300, 1).await;
        let quiet = insert_runs(&store, "quiet", 2, 2).await;
        let mut budget = FlowBudget::new(4);
        for _ in 0..3 {
            budget.take("busy");
        }
        let claimed = store
            .claim_runs("wrk_t", 8, 30_000, &budget, false)
            .await
            .unwrap();
        let ids: Vec<&str> = claimed.iter().map(|c| c.run.id.as_str()).collect();
        assert_eq!(
            ids,
            [busy[0].as_str(), quiet[0].as_str(), quiet[1].as_str()]
        );
        // At most `limit`, the oldest first, across flows.
        let budget = FlowBudget::new(8);
        let claimed = store
            .claim_runs("wrk_t", 3, 30_000, &budget, false)
            .await
            .unwrap();
        let ids: Vec<&str> = claimed.iter().map(|c| c.run.id.as_str()).collect();
        assert_eq!(ids, &busy[1..4]);
    }
}
