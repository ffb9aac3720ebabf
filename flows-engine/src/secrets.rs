//! Secrets as seen by one run: looked up on demand, and remembered so that every value handed
//! out can be redacted from what the run records.

use std::{collections::HashMap, sync::Mutex};

use base64::prelude::*;
use serde_json::Value;

use crate::template::SecretSource;

/// Where secret values live (the encrypted store, or a map in tests).
pub trait SecretStore: Send + Sync {
    fn get(&self, name: &str) -> Option<String>;
}

impl SecretStore for HashMap<String, String> {
    fn get(&self, name: &str) -> Option<String> {
        HashMap::get(self, name).cloned()
    }
}

/// The secrets one run used. Implements [`SecretSource`] for rendering.
pub struct RunSecrets<'a> {
    store: &'a dyn SecretStore,
    used: Mutex<Vec<(String, String)>>,
}

impl<'a> RunSecrets<'a> {
    pub fn new(store: &'a dyn SecretStore) -> Self {
        Self {
            store,
            used: Mutex::new(Vec::new()),
        }
    }

    /// Replace every occurrence of a used secret (plain, URL-encoded and base64 forms) in `v`.
    pub fn redact(&self, v: &mut Value) {
        let used = self.used.lock().expect("secret list lock");
        if used.is_empty() {
            return;
        }
        redact_value(v, &used);
    }

    pub fn redact_str(&self, s: &str) -> String {
        let used = self.used.lock().expect("secret list lock");
        redact_text(s, &used)
    }
}

impl SecretSource for RunSecrets<'_> {
    fn secret(&self, name: &str) -> Option<String> {
        let value = self.store.get(name)?;
        let mut used = self.used.lock().expect("secret list lock");
        if !value.is_empty() && !used.iter().any(|(n, _)| n == name) {
            used.push((name.to_string(), value.clone()));
        }
        Some(value)
    }
}

fn redact_value(v: &mut Value, used: &[(String, String)]) {
    match v {
        Value::String(s) => {
            let r = redact_text(s, used);
            if r != *s {
                *s = r;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|i| redact_value(i, used)),
        Value::Object(map) => map.values_mut().for_each(|i| redact_value(i, used)),
        _ => {}
    }
}

/// RFC 3986 unreserved characters stay as they are (what the `urlencode` pipe produces).
const URL_UNRESERVED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

fn redact_text(s: &str, used: &[(String, String)]) -> String {
    let mut out = s.to_string();
    for (name, secret) in used {
        let mark = format!("«redacted:{name}»");
        let forms = [
            secret.clone(),
            percent_encoding::utf8_percent_encode(secret, percent_encoding::NON_ALPHANUMERIC)
                .to_string(),
            percent_encoding::utf8_percent_encode(secret, URL_UNRESERVED).to_string(),
            BASE64_STANDARD.encode(secret),
        ];
        for form in forms.iter().filter(|f| f.len() >= 3) {
            if out.contains(form.as_str()) {
                out = out.replace(form.as_str(), &mark);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn redacts_every_form_of_a_used_secret() {
        let store: HashMap<String, String> =
            [("TOKEN".to_string(), "s3cr3t/v@lue".to_string())].into();
        let secrets = RunSecrets::new(&store);
        assert_eq!(secrets.secret("TOKEN").as_deref(), Some("s3cr3t/v@lue"));
        let mut v = json!({"h": "Bearer s3cr3t/v@lue", "q": ["x=s3cr3t%2Fv%40lue"], "b": BASE64_STANDARD.encode("s3cr3t/v@lue")});
        secrets.redact(&mut v);
        assert_eq!(
            v,
            json!({"h": "Bearer «redacted:TOKEN»", "q": ["x=«redacted:TOKEN»"], "b": "«redacted:TOKEN»"})
        );
    }
}
