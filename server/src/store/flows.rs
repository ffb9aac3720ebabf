//! Flows and their versions: every save that changes a flow is a new version.

use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, Set};
use serde_json::Value;

use super::{
    Store,
    entities::{flow_versions, flows},
    now_ms,
};
use crate::error::Error;

/// The outcome of a save.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Saved {
    pub version: i64,
    /// `false` when the definition was identical to the current version (nothing written).
    pub changed: bool,
    pub created: bool,
}

impl Store {
    pub async fn list_flows(&self) -> Result<Vec<flows::Model>, Error> {
        Ok(flows::Entity::find()
            .order_by_asc(flows::Column::Name)
            .all(&self.db)
            .await?)
    }

    pub async fn get_flow(&self, name: &str) -> Result<Option<flows::Model>, Error> {
        Ok(flows::Entity::find_by_id(name.to_string())
            .one(&self.db)
            .await?)
    }

    pub async fn flow_version(
        &self,
        name: &str,
        version: i64,
    ) -> Result<Option<flow_versions::Model>, Error> {
        Ok(
            flow_versions::Entity::find_by_id((name.to_string(), version))
                .one(&self.db)
                .await?,
        )
    }

    pub async fn flow_versions(&self, name: &str) -> Result<Vec<flow_versions::Model>, Error> {
        Ok(flow_versions::Entity::find()
            .filter(flow_versions::Column::Flow.eq(name))
            .order_by_desc(flow_versions::Column::Version)
            .all(&self.db)
            .await?)
    }

    /// Store `definition` as the flow's new current version, unless it is unchanged.
    pub async fn save_flow(
        &self,
        name: &str,
        definition: &Value,
        title: Option<String>,
        enabled: bool,
    ) -> Result<Saved, Error> {
        let text = serde_json::to_string(definition)?;
        let txn = self.begin_write().await?;
        let now = now_ms();
        let current = flows::Entity::find_by_id(name.to_string())
            .one(&txn)
            .await?;
        let saved = match current {
            Some(cur) if cur.definition == text => Saved {
                version: cur.version,
                changed: false,
                created: false,
            },
            Some(cur) => {
                let version = cur.version + 1;
                let mut row: flows::ActiveModel = cur.into();
                row.title = Set(title);
                row.enabled = Set(enabled);
                row.version = Set(version);
                row.definition = Set(text.clone());
                row.updated_at = Set(now);
                row.update(&txn).await?;
                Saved {
                    version,
                    changed: true,
                    created: false,
                }
            }
            None => {
                // A deleted flow's versions stay; a re-created flow continues its numbering.
                let last = flow_versions::Entity::find()
                    .filter(flow_versions::Column::Flow.eq(name))
                    .order_by_desc(flow_versions::Column::Version)
                    .one(&txn)
                    .await?
                    .map_or(0, |v| v.version);
                flows::ActiveModel {
                    name: Set(name.to_string()),
                    title: Set(title),
                    enabled: Set(enabled),
                    version: Set(last + 1),
                    definition: Set(text.clone()),
                    created_at: Set(now),
                    updated_at: Set(now),
                }
                .insert(&txn)
                .await?;
                Saved {
                    version: last + 1,
                    changed: true,
                    created: true,
                }
            }
        };
        if saved.changed {
            flow_versions::ActiveModel {
                flow: Set(name.to_string()),
                version: Set(saved.version),
                definition: Set(text),
                created_at: Set(now),
            }
            .insert(&txn)
            .await?;
        }
        txn.commit().await?;
        Ok(saved)
    }

    pub async fn delete_flow(&self, name: &str) -> Result<bool, Error> {
        let res = flows::Entity::delete_by_id(name.to_string())
            .exec(&self.db)
            .await?;
        Ok(res.rows_affected > 0)
    }
}
