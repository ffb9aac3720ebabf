//! Claiming work with leases. A worker takes queued runs (and runs whose lease expired because
//! their worker died) in one statement; on PostgreSQL `FOR UPDATE SKIP LOCKED` lets many
//! processes claim concurrently without taking the same row.

use sea_orm::{ConnectionTrait, FromQueryResult};

use super::{
    Store,
    entities::{deliveries, runs},
    now_ms,
};
use crate::error::Error;

impl Store {
    fn skip_locked(&self) -> &'static str {
        if self.is_postgres() {
            " FOR UPDATE SKIP LOCKED"
        } else {
            ""
        }
    }

    /// Claim up to `limit` runs for `worker`, leased for `lease_ms`.
    pub async fn claim_runs(
        &self,
        worker: &str,
        limit: u64,
        lease_ms: i64,
    ) -> Result<Vec<runs::Model>, Error> {
        let now = now_ms();
        let sql = format!(
            "UPDATE runs SET status = 'running', worker = $1, lease_until = $2, started_at = COALESCE(started_at, $3) \
             WHERE id IN (SELECT id FROM runs \
               WHERE (status = 'queued' AND available_at <= $3) OR (status = 'running' AND lease_until < $3) \
               ORDER BY available_at, id LIMIT $4{}) RETURNING *",
            self.skip_locked()
        );
        let stmt = self.stmt(
            &sql,
            vec![
                worker.into(),
                (now + lease_ms).into(),
                now.into(),
                (limit as i64).into(),
            ],
        );
        Ok(runs::Model::find_by_statement(stmt).all(&self.db).await?)
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
        Ok(self.db.execute_raw(stmt).await?.rows_affected() > 0)
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
        let stmt = self.stmt(
            "UPDATE runs SET status = $1, error = $2, output = $3, finished_at = $4, lease_until = NULL \
             WHERE id = $5 AND worker = $6 AND status = 'running'",
            vec![status.into(), error.into(), output.into(), now_ms().into(), id.into(), worker.into()],
        );
        Ok(self.db.execute_raw(stmt).await?.rows_affected() > 0)
    }

    /// Claim up to `limit` deliveries that are due.
    pub async fn claim_deliveries(
        &self,
        limit: u64,
        lease_ms: i64,
    ) -> Result<Vec<deliveries::Model>, Error> {
        let now = now_ms();
        let sql = format!(
            "UPDATE deliveries SET lease_until = $1 \
             WHERE id IN (SELECT id FROM deliveries \
               WHERE status = 'pending' AND next_attempt_at <= $2 AND (lease_until IS NULL OR lease_until < $2) \
               ORDER BY next_attempt_at, id LIMIT $3{}) RETURNING *",
            self.skip_locked()
        );
        let stmt = self.stmt(
            &sql,
            vec![(now + lease_ms).into(), now.into(), (limit as i64).into()],
        );
        Ok(deliveries::Model::find_by_statement(stmt)
            .all(&self.db)
            .await?)
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
            "SELECT COUNT(*) AS n FROM runs WHERE status = 'queued'",
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
