//! API tokens: shown once at creation, stored only as a SHA-256 hash.

use rand::RngCore;
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, Set};
use sha2::{Digest, Sha256};

use super::{Store, entities::api_tokens, now_ms};
use crate::error::Error;

fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

impl Store {
    /// Create a token named `name`; returns the token (the only time it is visible).
    pub async fn create_token(&self, name: &str) -> Result<String, Error> {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        let token = format!("hf_{}", hex::encode(bytes));
        api_tokens::ActiveModel {
            id: Set(flows_engine::ids::new_id("tok")),
            name: Set(name.to_string()),
            token_hash: Set(hash(&token)),
            created_at: Set(now_ms()),
            last_used_at: Set(None),
        }
        .insert(&self.db)
        .await?;
        Ok(token)
    }

    /// Whether `token` is a live API token. The lookup is by hash, so the comparison never
    /// touches the secret itself.
    pub async fn check_token(&self, token: &str) -> Result<bool, Error> {
        Ok(api_tokens::Entity::find()
            .filter(api_tokens::Column::TokenHash.eq(hash(token)))
            .one(&self.db)
            .await?
            .is_some())
    }
}
