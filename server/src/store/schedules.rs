//! Schedule state: when each scheduled flow is next due, and a lease so that among many
//! processes on one database exactly one fires a given tick.

use sea_orm::{ConnectionTrait, FromQueryResult};

use super::{Store, now_ms};
use crate::error::Error;

/// One scheduled flow's row.
#[derive(Debug, Clone, FromQueryResult)]
pub struct ScheduleRow {
    pub flow: String,
    pub spec: String,
    pub next_at: i64,
    pub lease_until: Option<i64>,
    pub last_fired_at: Option<i64>,
    pub last_error: Option<String>,
}

impl Store {
    /// Make sure `flow` has a row for `spec`; a new or changed schedule is next due at `next_at`.
    pub async fn sync_schedule(&self, flow: &str, spec: &str, next_at: i64) -> Result<(), Error> {
        let stmt = self.stmt(
            "INSERT INTO schedules (flow, spec, next_at, updated_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (flow) DO UPDATE SET spec = excluded.spec, next_at = excluded.next_at, updated_at = excluded.updated_at \
             WHERE schedules.spec <> excluded.spec",
            vec![flow.into(), spec.into(), next_at.into(), now_ms().into()],
        );
        self.db.execute_raw(stmt).await?;
        Ok(())
    }

    /// Forget schedules of flows that are gone or no longer scheduled.
    pub async fn drop_schedules_except(&self, keep: &[String]) -> Result<(), Error> {
        let mut values = Vec::with_capacity(keep.len());
        let list: Vec<String> = keep
            .iter()
            .map(|f| {
                values.push(f.clone().into());
                format!("${}", values.len())
            })
            .collect();
        let sql = if list.is_empty() {
            "DELETE FROM schedules".to_string()
        } else {
            format!(
                "DELETE FROM schedules WHERE flow NOT IN ({})",
                list.join(", ")
            )
        };
        self.db.execute_raw(self.stmt(&sql, values)).await?;
        Ok(())
    }

    pub async fn schedules(&self) -> Result<Vec<ScheduleRow>, Error> {
        let stmt = self.stmt(
            "SELECT flow, spec, next_at, lease_until, last_fired_at, last_error FROM schedules ORDER BY flow",
            vec![],
        );
        Ok(ScheduleRow::find_by_statement(stmt).all(&self.db).await?)
    }

    /// Take `flow`'s due tick for `owner`: the tick's time if this process is to fire it, `None`
    /// if it is not due or another process holds it. A single conditional `UPDATE`, so two
    /// processes cannot both win.
    pub async fn claim_tick(
        &self,
        flow: &str,
        owner: &str,
        lease_ms: i64,
    ) -> Result<Option<i64>, Error> {
        #[derive(FromQueryResult)]
        struct Due {
            next_at: i64,
        }
        let now = now_ms();
        let stmt = self.stmt(
            "UPDATE schedules SET owner = $1, lease_until = $2 \
             WHERE flow = $3 AND next_at <= $4 AND (lease_until IS NULL OR lease_until < $4) RETURNING next_at",
            vec![owner.into(), (now + lease_ms).into(), flow.into(), now.into()],
        );
        Ok(Due::find_by_statement(stmt)
            .one(&self.db)
            .await?
            .map(|d| d.next_at))
    }

    /// Keep holding a tick that is still being fired.
    pub async fn extend_tick(&self, flow: &str, owner: &str, lease_ms: i64) -> Result<(), Error> {
        let stmt = self.stmt(
            "UPDATE schedules SET lease_until = $1 WHERE flow = $2 AND owner = $3",
            vec![(now_ms() + lease_ms).into(), flow.into(), owner.into()],
        );
        self.db.execute_raw(stmt).await?;
        Ok(())
    }

    /// The tick is done: record how it went and when the next one is due.
    pub async fn finish_tick(
        &self,
        flow: &str,
        owner: &str,
        fired_at: i64,
        next_at: i64,
        error: Option<String>,
    ) -> Result<(), Error> {
        let stmt = self.stmt(
            "UPDATE schedules SET next_at = $1, owner = NULL, lease_until = NULL, last_fired_at = $2, last_error = $3, updated_at = $4 \
             WHERE flow = $5 AND owner = $6",
            vec![
                next_at.into(),
                fired_at.into(),
                error.into(),
                now_ms().into(),
                flow.into(),
                owner.into(),
            ],
        );
        self.db.execute_raw(stmt).await?;
        Ok(())
    }

    /// Items a schedule has emitted so far.
    pub async fn schedule_item_count(&self, flow: &str) -> Result<i64, Error> {
        #[derive(FromQueryResult)]
        struct Count {
            n: i64,
        }
        let stmt = self.stmt(
            "SELECT COUNT(*) AS n FROM schedule_items WHERE flow = $1",
            vec![flow.into()],
        );
        Ok(Count::find_by_statement(stmt)
            .one(&self.db)
            .await?
            .map_or(0, |c| c.n))
    }
}
