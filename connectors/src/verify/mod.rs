//! Inbound webhook verification (SPEC §1.2, a webhook trigger's `verify`): the config is checked
//! once when the flow is saved, then each request is checked on its raw body bytes, before
//! anything is parsed or stored.
//!
//! Every comparison is constant time on decoded bytes. Error messages say what is wrong with the
//! request but never quote the secret or the expected signature.

mod crypto;
mod prepare;
mod schemes;
#[cfg(test)]
mod tests;

use std::fmt;

use flows_engine::{
    Issue,
    template::{RenderError, SecretSource, Template},
};
use reqwest::header::HeaderMap;
use serde_json::{Map, Value};

/// A webhook trigger's `verify` config, prepared once when the flow is saved.
#[derive(Debug, Clone)]
pub struct Verifier {
    kind: Kind,
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum VerifyError {
    /// → HTTP 401. Says what is wrong (missing header, bad signature, stale timestamp), never the
    /// expected value or the secret.
    #[error("{0}")]
    Unauthorized(String),
    /// → HTTP 400: a malformed header that can never verify (a `webhook-id` or timestamp with a
    /// '.', a non-integer timestamp, a header over 4 KiB, more than 8 signatures, a repeated
    /// header).
    #[error("{0}")]
    Malformed(String),
    /// → HTTP 500 for the operator: the secret could not be rendered (e.g. it is not set). Names
    /// the secret, never its value.
    #[error("{0}")]
    Config(String),
}

#[derive(Debug, Clone)]
enum Kind {
    None,
    Basic {
        username: Cred,
        password: Cred,
    },
    ApiKey {
        header: String,
        value: Cred,
    },
    Hmac {
        secrets: Vec<Cred>,
        header: String,
        algorithm: crypto::Algorithm,
        encoding: crypto::Encoding,
        prefix: String,
    },
    Github {
        secrets: Vec<Cred>,
    },
    Stripe {
        secrets: Vec<Cred>,
        tolerance_s: u64,
    },
    Shopify {
        secrets: Vec<Cred>,
    },
    Slack {
        secrets: Vec<Cred>,
        tolerance_s: u64,
    },
    StandardWebhooks {
        secrets: Vec<Cred>,
        tolerance_s: u64,
    },
}

impl Verifier {
    /// `config` is the trigger's `verify` object, e.g.
    /// `{"scheme": "github", "secret": "{{ secrets.GH }}"}`.
    ///
    /// Err: every problem, each `Issue.path` relative to the verify object (`scheme`, `secret`,
    /// `secret[1]`, `algorithm`, ...; empty for the object itself).
    pub fn prepare(config: &Map<String, Value>) -> Result<Verifier, Vec<Issue>> {
        prepare::prepare(config).map(|kind| Verifier { kind })
    }

    pub fn scheme(&self) -> &'static str {
        match self.kind {
            Kind::None => "none",
            Kind::Basic { .. } => "basic",
            Kind::ApiKey { .. } => "api_key",
            Kind::Hmac { .. } => "hmac",
            Kind::Github { .. } => "github",
            Kind::Stripe { .. } => "stripe",
            Kind::Shopify { .. } => "shopify",
            Kind::Slack { .. } => "slack",
            Kind::StandardWebhooks { .. } => "standard_webhooks",
        }
    }

    /// Secret names referenced by the config's templates, in order, each once.
    pub fn secret_refs(&self) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for cred in self.creds() {
            for name in cred.template.secret_refs() {
                if !names.iter().any(|n| n == name) {
                    names.push(name.to_string());
                }
            }
        }
        names
    }

    /// The header whose value identifies a delivery for dedupe when the flow sets none.
    pub fn default_dedupe_header(&self) -> Option<&'static str> {
        match self.kind {
            Kind::StandardWebhooks { .. } => Some("webhook-id"),
            _ => None,
        }
    }

    /// Check one request. `now` is the current Unix time in seconds.
    pub fn verify(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        secrets: &dyn SecretSource,
        now: i64,
    ) -> Result<(), VerifyError> {
        // Secrets are rendered first, so a misconfigured trigger reports itself (500) whatever
        // the request looks like.
        match &self.kind {
            Kind::None => Ok(()),
            Kind::Basic { username, password } => {
                let user = username.render(secrets)?;
                if user.contains(':') {
                    return Err(VerifyError::Config(format!(
                        "verify.username{} must not contain ':'",
                        username.names()
                    )));
                }
                schemes::basic(headers, &user, &password.render(secrets)?)
            }
            Kind::ApiKey { header, value } => {
                schemes::api_key(headers, header, &value.render(secrets)?)
            }
            Kind::Hmac {
                secrets: keys,
                header,
                algorithm,
                encoding,
                prefix,
            } => schemes::hmac(
                headers,
                body,
                &render_all(keys, secrets)?,
                header,
                *algorithm,
                *encoding,
                prefix,
            ),
            Kind::Github { secrets: keys } => {
                schemes::github(headers, body, &render_all(keys, secrets)?)
            }
            Kind::Stripe {
                secrets: keys,
                tolerance_s,
            } => schemes::stripe(
                headers,
                body,
                &render_all(keys, secrets)?,
                now,
                *tolerance_s,
            ),
            Kind::Shopify { secrets: keys } => {
                schemes::shopify(headers, body, &render_all(keys, secrets)?)
            }
            Kind::Slack {
                secrets: keys,
                tolerance_s,
            } => schemes::slack(
                headers,
                body,
                &render_all(keys, secrets)?,
                now,
                *tolerance_s,
            ),
            Kind::StandardWebhooks {
                secrets: keys,
                tolerance_s,
            } => {
                let keys = keys
                    .iter()
                    .map(|cred| {
                        let value = cred.render(secrets)?;
                        schemes::standard_key(&value).map_err(|problem| {
                            VerifyError::Config(format!(
                                "verify.{}{} {problem}",
                                cred.at,
                                cred.names()
                            ))
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                schemes::standard_webhooks(headers, body, &keys, now, *tolerance_s)
            }
        }
    }

    fn creds(&self) -> Vec<&Cred> {
        match &self.kind {
            Kind::None => Vec::new(),
            Kind::Basic { username, password } => vec![username, password],
            Kind::ApiKey { value, .. } => vec![value],
            Kind::Hmac { secrets, .. }
            | Kind::Github { secrets }
            | Kind::Stripe { secrets, .. }
            | Kind::Shopify { secrets }
            | Kind::Slack { secrets, .. }
            | Kind::StandardWebhooks { secrets, .. } => secrets.iter().collect(),
        }
    }
}

fn render_all(creds: &[Cred], secrets: &dyn SecretSource) -> Result<Vec<String>, VerifyError> {
    creds.iter().map(|c| c.render(secrets)).collect()
}

/// A credential field (`secret`, `password`, `value`, ...): a template that may only reference
/// secrets. Its Debug output never shows the template text, which may be a literal secret.
#[derive(Clone)]
struct Cred {
    /// Location in the verify object, e.g. `secret[1]`.
    at: String,
    template: Template,
}

impl fmt::Debug for Cred {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cred")
            .field("at", &self.at)
            .field("secrets", &self.template.secret_refs())
            .finish_non_exhaustive()
    }
}

impl Cred {
    fn render(&self, secrets: &dyn SecretSource) -> Result<String, VerifyError> {
        let value = self
            .template
            .render_string(&Value::Null, secrets)
            .map_err(|e| match e {
                RenderError::MissingSecret(name) => {
                    VerifyError::Config(format!("verify.{}: secret '{name}' is not set", self.at))
                }
                // Render messages name the expression, never a secret's value.
                other => VerifyError::Config(format!("verify.{}: {other}", self.at)),
            })?;
        if value.is_empty() {
            return Err(VerifyError::Config(format!(
                "verify.{}{} is empty",
                self.at,
                self.names()
            )));
        }
        Ok(value)
    }

    /// ` (secret 'A', 'B')` for messages, or nothing for a literal.
    fn names(&self) -> String {
        let refs = self.template.secret_refs();
        if refs.is_empty() {
            return String::new();
        }
        let quoted: Vec<String> = refs.iter().map(|n| format!("'{n}'")).collect();
        format!(" (secret {})", quoted.join(", "))
    }
}
