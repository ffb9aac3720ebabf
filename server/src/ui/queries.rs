//! Read models the UI needs beyond what the API shows: run counts per flow, inbox summaries,
//! recent captures. Plain queries over the store, kept out of the handlers.

use std::collections::HashMap;

use sea_orm::{ConnectionTrait, EntityTrait, QueryOrder, QuerySelect, Value as DbValue};

use crate::{
    error::Error,
    store::{Store, entities::inbox_requests},
};

impl Store {
    /// Runs created since `since_ms`, per flow: (succeeded, failed).
    pub async fn run_counts_since(
        &self,
        since_ms: i64,
    ) -> Result<HashMap<String, (i64, i64)>, Error> {
        let stmt = self.stmt(
            "SELECT flow, status, COUNT(*) AS n FROM runs WHERE created_at >= $1 AND status IN ('succeeded', 'failed') GROUP BY flow, status",
            vec![DbValue::from(since_ms)],
        );
        let mut out: HashMap<String, (i64, i64)> = HashMap::new();
        for row in self.db.query_all_raw(stmt).await? {
            let flow: String = row.try_get("", "flow")?;
            let status: String = row.try_get("", "status")?;
            let n: i64 = row.try_get("", "n")?;
            let e = out.entry(flow).or_default();
            if status == "succeeded" {
                e.0 += n;
            } else {
                e.1 += n;
            }
        }
        Ok(out)
    }

    /// Every inbox with its request count and newest capture time, newest first.
    pub async fn inbox_summaries(&self) -> Result<Vec<(String, i64, i64)>, Error> {
        let stmt = self.stmt(
            "SELECT inbox, COUNT(*) AS n, MAX(received_at) AS last FROM inbox_requests GROUP BY inbox ORDER BY last DESC",
            vec![],
        );
        let mut out = Vec::new();
        for row in self.db.query_all_raw(stmt).await? {
            out.push((
                row.try_get("", "inbox")?,
                row.try_get("", "n")?,
                row.try_get("", "last")?,
            ));
        }
        Ok(out)
    }

    /// The newest captured requests of any inbox.
    pub async fn recent_inbox(&self, limit: u64) -> Result<Vec<inbox_requests::Model>, Error> {
        Ok(inbox_requests::Entity::find()
            .order_by_desc(inbox_requests::Column::Id)
            .limit(limit)
            .all(&self.db)
            .await?)
    }

    pub async fn inbox_request(&self, id: &str) -> Result<Option<inbox_requests::Model>, Error> {
        Ok(inbox_requests::Entity::find_by_id(id.to_string())
            .one(&self.db)
            .await?)
    }
}
