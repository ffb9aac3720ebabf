//! Secrets, encrypted at rest with AES-256-GCM (a fresh nonce per value, stored beside it).

use std::{
    collections::HashMap,
    path::Path,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use aes_gcm::{
    Aes256Gcm, Nonce,
    aead::{Aead, Generate, Key, KeyInit},
};
use sea_orm::{EntityTrait, QueryOrder, Set, sea_query::OnConflict};

use super::{Store, entities::secrets, now_ms};
use crate::error::Error;

/// The master key that encrypts secrets.
#[derive(Clone)]
pub struct MasterKey(Key<Aes256Gcm>);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(«redacted»)")
    }
}

impl MasterKey {
    /// From 64 hex characters (`HOOKFLOW_MASTER_KEY`).
    pub fn from_hex(hex_key: &str) -> Result<MasterKey, String> {
        let bytes = hex::decode(hex_key.trim())
            .map_err(|_| "HOOKFLOW_MASTER_KEY must be 64 hex characters".to_string())?;
        let key = Key::<Aes256Gcm>::try_from(bytes.as_slice()).map_err(|_| {
            format!(
                "HOOKFLOW_MASTER_KEY must be 32 bytes (64 hex characters), got {}",
                bytes.len()
            )
        })?;
        Ok(MasterKey(key))
    }

    /// Read `<dir>/master.key`, creating it (mode 0600) with a random key on first use.
    pub fn load_or_create(dir: &Path) -> Result<MasterKey, String> {
        let path = dir.join("master.key");
        if path.exists() {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| format!("reading {}: {e}", path.display()))?;
            return MasterKey::from_hex(&text).map_err(|e| format!("{}: {e}", path.display()));
        }
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let key = Key::<Aes256Gcm>::generate();
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let mut file = opts
            .open(&path)
            .map_err(|e| format!("creating {}: {e}", path.display()))?;
        std::io::Write::write_all(&mut file, hex::encode(key.as_slice()).as_bytes())
            .map_err(|e| format!("writing {}: {e}", path.display()))?;
        Ok(MasterKey(key))
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(&self.0)
    }
}

/// Decrypted secrets kept in memory, so that verifying a webhook or starting a run does not
/// read and decrypt every secret each time. A change made through this process empties it at
/// once; a change made by another process (the CLI, another server on the same PostgreSQL
/// database) shows after at most [`SECRETS_TTL`].
#[derive(Default)]
pub struct SecretsCache {
    /// Bumped by every local change; a load that overlapped one is not kept.
    generation: AtomicU64,
    entry: Mutex<Option<CachedSecrets>>,
}

struct CachedSecrets {
    loaded: Instant,
    generation: u64,
    /// The master key they were decrypted with.
    key: Vec<u8>,
    values: Arc<HashMap<String, String>>,
}

/// How long secrets read from the database are reused.
pub const SECRETS_TTL: Duration = Duration::from_secs(1);

impl SecretsCache {
    fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        *self.entry.lock().expect("secrets cache lock") = None;
    }

    fn get(&self, key: &MasterKey) -> Option<Arc<HashMap<String, String>>> {
        let entry = self.entry.lock().expect("secrets cache lock");
        let e = entry.as_ref()?;
        (e.loaded.elapsed() < SECRETS_TTL
            && e.generation == self.generation.load(Ordering::SeqCst)
            && e.key == key.0.as_slice())
        .then(|| e.values.clone())
    }
}

/// Secret names are identifiers, so `{{ secrets.NAME }}` can reference them.
pub fn check_secret_name(name: &str) -> Result<(), Error> {
    let ok = name.len() <= 64
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(Error::BadRequest(format!(
            "'{name}' is not a valid secret name: use letters, digits and '_', starting with a letter"
        )))
    }
}

impl Store {
    pub async fn set_secret(&self, key: &MasterKey, name: &str, value: &str) -> Result<(), Error> {
        check_secret_name(name)?;
        let nonce = Nonce::generate();
        // The name is the associated data: a ciphertext moved to another name fails to decrypt.
        let ciphertext = key
            .cipher()
            .encrypt(
                &nonce,
                aes_gcm::aead::Payload {
                    msg: value.as_bytes(),
                    aad: name.as_bytes(),
                },
            )
            .map_err(|_| Error::Internal("encryption failed".into()))?;
        let row = secrets::ActiveModel {
            name: Set(name.to_string()),
            nonce: Set(nonce.to_vec()),
            ciphertext: Set(ciphertext),
            updated_at: Set(now_ms()),
        };
        secrets::Entity::insert(row)
            .on_conflict(
                OnConflict::column(secrets::Column::Name)
                    .update_columns([
                        secrets::Column::Nonce,
                        secrets::Column::Ciphertext,
                        secrets::Column::UpdatedAt,
                    ])
                    .to_owned(),
            )
            .exec(&self.db)
            .await?;
        self.secrets_cache.invalidate();
        Ok(())
    }

    pub async fn delete_secret(&self, name: &str) -> Result<bool, Error> {
        let deleted = secrets::Entity::delete_by_id(name.to_string())
            .exec(&self.db)
            .await?
            .rows_affected
            > 0;
        self.secrets_cache.invalidate();
        Ok(deleted)
    }

    pub async fn secret_names(&self) -> Result<Vec<(String, i64)>, Error> {
        let rows = secrets::Entity::find()
            .order_by_asc(secrets::Column::Name)
            .all(&self.db)
            .await?;
        Ok(rows.into_iter().map(|r| (r.name, r.updated_at)).collect())
    }

    /// Every secret, decrypted (from the in-memory cache when it is fresh). A value that fails
    /// to decrypt (wrong master key) is an error.
    pub async fn load_secrets(&self, key: &MasterKey) -> Result<HashMap<String, String>, Error> {
        if let Some(values) = self.secrets_cache.get(key) {
            return Ok((*values).clone());
        }
        let generation = self.secrets_cache.generation.load(Ordering::SeqCst);
        let values = self.read_secrets(key).await?;
        *self.secrets_cache.entry.lock().expect("secrets cache lock") = Some(CachedSecrets {
            loaded: Instant::now(),
            generation,
            key: key.0.to_vec(),
            values: Arc::new(values.clone()),
        });
        Ok(values)
    }

    /// Every secret, read and decrypted now.
    async fn read_secrets(&self, key: &MasterKey) -> Result<HashMap<String, String>, Error> {
        let rows = secrets::Entity::find().all(&self.db).await?;
        let cipher = key.cipher();
        rows.into_iter()
            .map(|r| {
                let nonce = Nonce::try_from(r.nonce.as_slice()).map_err(|_| Error::Internal(format!("secret '{}' has a bad nonce", r.name)))?;
                let plain = cipher
                    .decrypt(&nonce, aes_gcm::aead::Payload { msg: &r.ciphertext, aad: r.name.as_bytes() })
                    .map_err(|_| Error::Internal(format!("secret '{}' cannot be decrypted: is HOOKFLOW_MASTER_KEY the key it was stored with?", r.name)))?;
                Ok((r.name, String::from_utf8_lossy(&plain).into_owned()))
            })
            .collect()
    }
}
