//! Secrets, encrypted at rest with AES-256-GCM (a fresh nonce per value, stored beside it).

use std::{collections::HashMap, path::Path};

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
        Ok(())
    }

    pub async fn delete_secret(&self, name: &str) -> Result<bool, Error> {
        Ok(secrets::Entity::delete_by_id(name.to_string())
            .exec(&self.db)
            .await?
            .rows_affected
            > 0)
    }

    pub async fn secret_names(&self) -> Result<Vec<(String, i64)>, Error> {
        let rows = secrets::Entity::find()
            .order_by_asc(secrets::Column::Name)
            .all(&self.db)
            .await?;
        Ok(rows.into_iter().map(|r| (r.name, r.updated_at)).collect())
    }

    /// Every secret, decrypted. A value that fails to decrypt (wrong master key) is an error.
    pub async fn load_secrets(&self, key: &MasterKey) -> Result<HashMap<String, String>, Error> {
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
