//! The request inspector: whatever is sent to `/inbox/<name>` is kept for looking at.

use sea_orm::{
    ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set,
};
use serde_json::{Value, json};

use super::{Store, entities::inbox_requests, now_ms, rfc3339};
use crate::error::Error;

pub struct Captured {
    pub inbox: String,
    pub method: String,
    pub path: String,
    pub query: Value,
    pub headers: Value,
    pub body: String,
}

impl Store {
    pub async fn record_inbox(&self, c: Captured) -> Result<String, Error> {
        let id = flows_engine::ids::new_id("req");
        inbox_requests::ActiveModel {
            id: Set(id.clone()),
            inbox: Set(c.inbox),
            method: Set(c.method),
            path: Set(c.path),
            query: Set(c.query.to_string()),
            headers: Set(c.headers.to_string()),
            body: Set(c.body),
            received_at: Set(now_ms()),
        }
        .insert(&self.db)
        .await?;
        Ok(id)
    }

    /// The newest requests of one inbox first, as JSON (a JSON body is parsed back).
    pub async fn list_inbox(&self, inbox: &str, limit: u64) -> Result<Vec<Value>, Error> {
        let rows = inbox_requests::Entity::find()
            .filter(inbox_requests::Column::Inbox.eq(inbox))
            .order_by_desc(inbox_requests::Column::Id)
            .limit(limit)
            .all(&self.db)
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| {
                let body = serde_json::from_str(&r.body).unwrap_or(Value::String(r.body));
                json!({
                    "id": r.id, "inbox": r.inbox, "method": r.method, "path": r.path,
                    "query": serde_json::from_str::<Value>(&r.query).unwrap_or_default(),
                    "headers": serde_json::from_str::<Value>(&r.headers).unwrap_or_default(),
                    "body": body, "received_at": rfc3339(r.received_at),
                })
            })
            .collect())
    }
}
