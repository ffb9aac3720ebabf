//! Checking a `verify` object when the flow is saved: every problem, with its location.

use flows_engine::{
    Issue,
    issue::{index_path, key_path},
    template::Template,
};
use reqwest::header::HeaderName;
use serde_json::{Map, Value};

use super::{
    Cred, Kind,
    crypto::{Algorithm, Encoding},
    schemes::standard_key,
};
use crate::config::Compiler;

/// Every scheme and the fields it takes (besides `scheme`).
const SCHEMES: &[(&str, &[&str])] = &[
    ("none", &[]),
    ("basic", &["username", "password"]),
    ("api_key", &["header", "value"]),
    (
        "hmac",
        &["secret", "header", "algorithm", "encoding", "prefix"],
    ),
    ("github", &["secret"]),
    ("stripe", &["secret", "tolerance_s"]),
    ("shopify", &["secret"]),
    ("slack", &["secret", "tolerance_s"]),
    ("standard_webhooks", &["secret", "tolerance_s"]),
];

const DEFAULT_TOLERANCE_S: u64 = 300;
const MAX_TOLERANCE_S: u64 = 86_400;

pub(super) fn prepare(config: &Map<String, Value>) -> Result<Kind, Vec<Issue>> {
    let valid = || {
        SCHEMES
            .iter()
            .map(|(name, _)| *name)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let scheme = match config.get("scheme") {
        Some(Value::String(s)) => s.as_str(),
        Some(_) => {
            return Err(vec![Issue::new(
                "scheme",
                format!("must be a string, one of: {}", valid()),
            )]);
        }
        None => {
            return Err(vec![Issue::new(
                "scheme",
                format!("is required, one of: {}", valid()),
            )]);
        }
    };
    let Some(&(scheme, allowed)) = SCHEMES.iter().find(|(name, _)| *name == scheme) else {
        return Err(vec![Issue::new(
            "scheme",
            format!("unknown scheme '{scheme}'; use one of: {}", valid()),
        )]);
    };
    let mut f = Fields {
        config,
        scheme,
        c: Compiler::default(),
    };
    for key in config
        .keys()
        .filter(|k| *k != "scheme" && !allowed.contains(&k.as_str()))
    {
        let message = if allowed.is_empty() {
            format!("unknown field: scheme '{scheme}' takes no other fields")
        } else {
            format!(
                "unknown field for scheme '{scheme}'; its fields are: {}",
                allowed.join(", ")
            )
        };
        f.c.issues.push(Issue::new(key_path("", key), message));
    }
    let kind = match scheme {
        "none" => Kind::None,
        "basic" => {
            let username = f.cred("username");
            if username.template.is_literal() && username.template.source().contains(':') {
                f.issue(
                    "username",
                    "must not contain ':' (it separates username and password)",
                );
            }
            Kind::Basic {
                username,
                password: f.cred("password"),
            }
        }
        "api_key" => Kind::ApiKey {
            header: f.header(),
            value: f.cred("value"),
        },
        "hmac" => Kind::Hmac {
            secrets: f.secrets(),
            header: f.header(),
            algorithm: f
                .choice("algorithm", Algorithm::NAMES)
                .and_then(Algorithm::from_name)
                .unwrap_or(Algorithm::Sha256),
            encoding: f
                .choice("encoding", Encoding::NAMES)
                .and_then(Encoding::from_name)
                .unwrap_or(Encoding::Hex),
            prefix: f.prefix(),
        },
        "github" => Kind::Github {
            secrets: f.secrets(),
        },
        "stripe" => Kind::Stripe {
            secrets: f.secrets(),
            tolerance_s: f.tolerance(),
        },
        "shopify" => Kind::Shopify {
            secrets: f.secrets(),
        },
        "slack" => Kind::Slack {
            secrets: f.secrets(),
            tolerance_s: f.tolerance(),
        },
        "standard_webhooks" => {
            let secrets = f.secrets();
            for cred in &secrets {
                if cred.template.is_literal()
                    && let Err(problem) = standard_key(cred.template.source())
                {
                    f.issue(&cred.at, problem);
                }
            }
            Kind::StandardWebhooks {
                secrets,
                tolerance_s: f.tolerance(),
            }
        }
        other => unreachable!("scheme '{other}' is listed in SCHEMES but not handled"),
    };
    f.c.finish(kind)
}

struct Fields<'a> {
    config: &'a Map<String, Value>,
    scheme: &'static str,
    c: Compiler,
}

impl Fields<'_> {
    fn issue(&mut self, at: &str, message: impl Into<String>) {
        self.c.issues.push(Issue::new(at, message));
    }

    fn required(&mut self, name: &str) {
        let scheme = self.scheme;
        self.issue(name, format!("is required for scheme '{scheme}'"));
    }

    /// A required credential template (`username`, `password`, `value`).
    fn cred(&mut self, name: &str) -> Cred {
        match self.config.get(name) {
            Some(Value::String(s)) => self.compile(name.to_string(), s),
            Some(_) => {
                self.issue(name, "must be a string");
                placeholder(name)
            }
            None => {
                self.required(name);
                placeholder(name)
            }
        }
    }

    /// `secret`: one template, or several (all accepted, for a rotation).
    fn secrets(&mut self) -> Vec<Cred> {
        match self.config.get("secret") {
            Some(Value::String(s)) => vec![self.compile("secret".to_string(), s)],
            Some(Value::Array(items)) if !items.is_empty() => items
                .iter()
                .enumerate()
                .map(|(i, item)| {
                    let at = index_path("secret", i);
                    match item {
                        Value::String(s) => self.compile(at, s),
                        _ => {
                            self.issue(&at, "must be a string");
                            placeholder(&at)
                        }
                    }
                })
                .collect(),
            Some(Value::Array(_)) => {
                self.issue("secret", "list at least one secret");
                Vec::new()
            }
            Some(_) => {
                self.issue(
                    "secret",
                    "must be a string, or an array of strings to accept several during a rotation",
                );
                Vec::new()
            }
            None => {
                self.required("secret");
                Vec::new()
            }
        }
    }

    fn compile(&mut self, at: String, src: &str) -> Cred {
        let template = self.c.template(&at, src);
        if !template.paths().is_empty() {
            self.issue(
                &at,
                "a verify config has no run context: use literal text or {{ secrets.NAME }}",
            );
        } else if src.is_empty() {
            self.issue(&at, "must not be empty");
        }
        Cred { at, template }
    }

    /// `header`: a literal header name.
    fn header(&mut self) -> String {
        match self.config.get("header") {
            Some(Value::String(s)) => {
                if HeaderName::from_bytes(s.as_bytes()).is_err() {
                    self.issue("header", format!("'{s}' is not a valid header name"));
                }
                s.clone()
            }
            Some(_) => {
                self.issue("header", "must be a string (a header name)");
                String::new()
            }
            None => {
                self.required("header");
                String::new()
            }
        }
    }

    /// An optional field with fixed values; the first is the default.
    fn choice(&mut self, name: &str, options: &'static [&'static str]) -> Option<&'static str> {
        let expected = options.join(", ");
        match self.config.get(name) {
            None => options.first().copied(),
            Some(Value::String(s)) => {
                let found = options.iter().find(|o| **o == s).copied();
                if found.is_none() {
                    self.issue(
                        name,
                        format!("unknown {name} '{s}'; use one of: {expected}"),
                    );
                }
                found
            }
            Some(_) => {
                self.issue(name, format!("must be a string, one of: {expected}"));
                None
            }
        }
    }

    fn prefix(&mut self) -> String {
        match self.config.get("prefix") {
            None => String::new(),
            Some(Value::String(s)) => s.clone(),
            Some(_) => {
                self.issue("prefix", "must be a string, e.g. \"sha256=\"");
                String::new()
            }
        }
    }

    fn tolerance(&mut self) -> u64 {
        match self.config.get("tolerance_s") {
            None => DEFAULT_TOLERANCE_S,
            Some(v) => match v.as_u64() {
                Some(s) if (1..=MAX_TOLERANCE_S).contains(&s) => s,
                _ => {
                    self.issue(
                        "tolerance_s",
                        format!("must be a whole number of seconds from 1 to {MAX_TOLERANCE_S}"),
                    );
                    DEFAULT_TOLERANCE_S
                }
            },
        }
    }
}

/// Stands in for a field that has a problem; the problem is already an issue, so `prepare` fails.
fn placeholder(at: &str) -> Cred {
    Cred {
        at: at.to_string(),
        template: Template::compile("").expect("the empty template compiles"),
    }
}
