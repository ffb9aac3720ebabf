//! Users (argon2id password hashes) and their sessions (stored by the hash of the session id,
//! so a database read does not hand out live sessions).

use argon2::{Argon2, PasswordHash, PasswordHasher, PasswordVerifier};
use rand::RngCore;
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, Set};
use sha2::{Digest, Sha256};

use super::{
    Store,
    entities::{api_tokens, sessions, users},
    now_ms,
};
use crate::error::Error;

/// How long a UI session lasts without logging in again.
pub const SESSION_MS: i64 = 12 * 3600 * 1000;

/// A random 256-bit value as hex (session ids, CSRF tokens, setup tokens).
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

/// Usernames: 1-64 letters, digits, '.', '-', '_' or '@'.
pub fn check_username(name: &str) -> Result<(), Error> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-@".contains(c));
    if ok {
        Ok(())
    } else {
        Err(Error::BadRequest(
            "a username is 1-64 letters, digits, '.', '-', '_' or '@'".into(),
        ))
    }
}

/// Passwords: at least 10 characters, at most 1024 (argon2 work is bounded).
pub fn check_password(pw: &str) -> Result<(), Error> {
    match pw.chars().count() {
        n if n < 10 => Err(Error::BadRequest(
            "the password must have at least 10 characters".into(),
        )),
        n if n > 1024 => Err(Error::BadRequest(
            "the password must have at most 1024 characters".into(),
        )),
        _ => Ok(()),
    }
}

/// A live session.
#[derive(Debug, Clone)]
pub struct Session {
    pub username: String,
    pub csrf: String,
}

/// An API token as listed (never the token itself).
#[derive(Debug, Clone, serde::Serialize)]
pub struct TokenInfo {
    pub id: String,
    pub name: String,
    pub created_at: i64,
}

impl Store {
    pub async fn user_count(&self) -> Result<u64, Error> {
        Ok(users::Entity::find().count(&self.db).await?)
    }

    /// Create or replace a user's password.
    pub async fn set_user(&self, username: &str, password: &str) -> Result<(), Error> {
        check_username(username)?;
        check_password(password)?;
        let password = password.to_string();
        // Hashing is deliberately slow; keep it off the async workers.
        let hash = tokio::task::spawn_blocking(move || {
            Argon2::default()
                .hash_password(password.as_bytes())
                .map(|h| h.to_string())
        })
        .await
        .map_err(|e| Error::Internal(e.to_string()))?
        .map_err(|e| Error::Internal(format!("hashing the password: {e}")))?;
        let existing = users::Entity::find_by_id(username.to_string())
            .one(&self.db)
            .await?;
        match existing {
            Some(u) => {
                let mut row: users::ActiveModel = u.into();
                row.password_hash = Set(hash);
                row.update(&self.db).await?;
            }
            None => {
                users::ActiveModel {
                    username: Set(username.to_string()),
                    password_hash: Set(hash),
                    created_at: Set(now_ms()),
                }
                .insert(&self.db)
                .await?;
            }
        }
        Ok(())
    }

    /// Whether `password` is the user's. Unknown users cost the same argon2 work as known ones,
    /// so timing does not reveal which usernames exist.
    pub async fn check_user(&self, username: &str, password: &str) -> Result<bool, Error> {
        static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        let user = users::Entity::find_by_id(username.to_string())
            .one(&self.db)
            .await?;
        let known = user.is_some();
        let stored = user.map(|u| u.password_hash);
        let password = password.to_string();
        let ok = tokio::task::spawn_blocking(move || {
            let phc = stored.unwrap_or_else(|| {
                DUMMY
                    .get_or_init(|| {
                        Argon2::default()
                            .hash_password(random_token().as_bytes())
                            .map(|h| h.to_string())
                            .unwrap_or_default()
                    })
                    .clone()
            });
            PasswordHash::new(&phc).is_ok_and(|h| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &h)
                    .is_ok()
            })
        })
        .await
        .map_err(|e| Error::Internal(e.to_string()))?;
        Ok(ok && known)
    }

    /// Start a session; returns its id (for the cookie) and CSRF token.
    pub async fn create_session(&self, username: &str) -> Result<(String, Session), Error> {
        let id = random_token();
        let csrf = random_token();
        let now = now_ms();
        sessions::ActiveModel {
            id_hash: Set(sha256_hex(&id)),
            username: Set(username.to_string()),
            csrf: Set(csrf.clone()),
            created_at: Set(now),
            expires_at: Set(now + SESSION_MS),
        }
        .insert(&self.db)
        .await?;
        Ok((
            id,
            Session {
                username: username.to_string(),
                csrf,
            },
        ))
    }

    pub async fn get_session(&self, id: &str) -> Result<Option<Session>, Error> {
        let row = sessions::Entity::find_by_id(sha256_hex(id))
            .one(&self.db)
            .await?;
        Ok(row.filter(|s| s.expires_at > now_ms()).map(|s| Session {
            username: s.username,
            csrf: s.csrf,
        }))
    }

    pub async fn delete_session(&self, id: &str) -> Result<(), Error> {
        sessions::Entity::delete_by_id(sha256_hex(id))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    pub async fn list_tokens(&self) -> Result<Vec<TokenInfo>, Error> {
        let rows = api_tokens::Entity::find().all(&self.db).await?;
        let mut list: Vec<TokenInfo> = rows
            .into_iter()
            .map(|t| TokenInfo {
                id: t.id,
                name: t.name,
                created_at: t.created_at,
            })
            .collect();
        list.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(list)
    }

    pub async fn revoke_token(&self, id: &str) -> Result<bool, Error> {
        Ok(api_tokens::Entity::delete_many()
            .filter(api_tokens::Column::Id.eq(id))
            .exec(&self.db)
            .await?
            .rows_affected
            > 0)
    }
}
