//! Outbound deliveries (the outbox) and their attempts.

use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    Set, TransactionTrait,
};
use serde_json::{Value, json};

use super::{
    Store,
    entities::{deliveries, delivery_attempts},
    now_ms, rfc3339,
};
use crate::error::Error;

pub fn delivery_json(d: &deliveries::Model) -> Value {
    json!({
        "id": d.id, "run_id": d.run_id, "step_id": d.step_id, "url": d.url, "status": d.status,
        "attempts": d.attempts,
        "next_attempt_at": (d.status == "pending").then(|| rfc3339(d.next_attempt_at)),
        "response_status": d.last_status, "error": d.last_error,
        "created_at": rfc3339(d.created_at), "updated_at": rfc3339(d.updated_at),
    })
}

pub fn attempt_json(a: &delivery_attempts::Model) -> Value {
    json!({
        "attempt": a.attempt, "response_status": a.response_status, "response_body": a.response_body,
        "error": a.error, "duration_ms": a.duration_ms, "at": rfc3339(a.at),
    })
}

/// The result of one delivery attempt.
pub struct AttemptResult {
    pub response_status: Option<i32>,
    pub response_body: Option<String>,
    pub error: Option<String>,
    pub duration_ms: i64,
    /// `None`: no more attempts (succeeded or gave up); else when to try again.
    pub next_attempt_at: Option<i64>,
    pub succeeded: bool,
}

impl Store {
    /// Insert a delivery unless one with the same idempotency key exists; returns its id.
    pub async fn insert_delivery(
        &self,
        row: deliveries::ActiveModel,
        key: &str,
    ) -> Result<String, Error> {
        if let Some(d) = self.find_delivery_by_key(key).await? {
            // A retried run asks again for a delivery that gave up: send it again.
            if d.status == "failed" {
                self.redeliver(&d.id).await?;
            }
            return Ok(d.id);
        }
        let inserted = {
            let turn = self.write_turn().await;
            row.insert(&*turn).await
        };
        match inserted {
            Ok(d) => Ok(d.id),
            Err(e) => match self.find_delivery_by_key(key).await? {
                Some(d) => Ok(d.id),
                None => Err(e.into()),
            },
        }
    }

    async fn find_delivery_by_key(&self, key: &str) -> Result<Option<deliveries::Model>, Error> {
        Ok(deliveries::Entity::find()
            .filter(deliveries::Column::IdempotencyKey.eq(key))
            .one(&self.db)
            .await?)
    }

    pub async fn get_delivery(&self, id: &str) -> Result<Option<deliveries::Model>, Error> {
        Ok(deliveries::Entity::find_by_id(id.to_string())
            .one(&self.db)
            .await?)
    }

    pub async fn list_deliveries(
        &self,
        status: Option<&str>,
        run: Option<&str>,
        limit: u64,
    ) -> Result<Vec<deliveries::Model>, Error> {
        let mut cond = Condition::all();
        if let Some(s) = status {
            cond = cond.add(deliveries::Column::Status.eq(s));
        }
        if let Some(r) = run {
            cond = cond.add(deliveries::Column::RunId.eq(r));
        }
        Ok(deliveries::Entity::find()
            .filter(cond)
            .order_by_desc(deliveries::Column::Id)
            .limit(limit)
            .all(&self.db)
            .await?)
    }

    pub async fn delivery_attempts(
        &self,
        id: &str,
    ) -> Result<Vec<delivery_attempts::Model>, Error> {
        Ok(delivery_attempts::Entity::find()
            .filter(delivery_attempts::Column::DeliveryId.eq(id))
            .order_by_asc(delivery_attempts::Column::At)
            .all(&self.db)
            .await?)
    }

    /// Record an attempt and move the delivery on (due again, succeeded or failed).
    pub async fn record_delivery_attempt(
        &self,
        d: &deliveries::Model,
        r: AttemptResult,
    ) -> Result<(), Error> {
        let now = now_ms();
        let attempt = d.attempts + 1;
        let turn = self.write_turn().await;
        let txn = turn.begin().await?;
        delivery_attempts::ActiveModel {
            id: Set(flows_engine::ids::new_id("att")),
            delivery_id: Set(d.id.clone()),
            attempt: Set(attempt),
            response_status: Set(r.response_status),
            response_body: Set(r.response_body),
            error: Set(r.error.clone()),
            duration_ms: Set(r.duration_ms),
            at: Set(now),
        }
        .insert(&txn)
        .await?;
        let mut row: deliveries::ActiveModel = d.clone().into();
        row.attempts = Set(attempt);
        row.last_status = Set(r.response_status);
        row.last_error = Set(r.error);
        row.lease_until = Set(None);
        row.updated_at = Set(now);
        match (r.succeeded, r.next_attempt_at) {
            (true, _) => row.status = Set("succeeded".into()),
            (false, Some(at)) => row.next_attempt_at = Set(at),
            (false, None) => row.status = Set("failed".into()),
        }
        row.update(&txn).await?;
        txn.commit().await?;
        Ok(())
    }

    /// Queue a delivery again now, with a fresh retry schedule. `None` if unknown.
    pub async fn redeliver(&self, id: &str) -> Result<Option<deliveries::Model>, Error> {
        let Some(d) = self.get_delivery(id).await? else {
            return Ok(None);
        };
        if d.status == "pending" {
            return Err(Error::Conflict(format!(
                "delivery '{id}' is still pending; it will be attempted on its schedule"
            )));
        }
        let mut row: deliveries::ActiveModel = d.into();
        row.status = Set("pending".into());
        row.attempts = Set(0);
        row.next_attempt_at = Set(now_ms());
        row.lease_until = Set(None);
        row.updated_at = Set(now_ms());
        Ok(Some(row.update(&self.db).await?))
    }
}
