//! The flow definition (format v1): parsing a JSON document into a [`Flow`], reporting every
//! structural problem with its location. Step configurations stay JSON here; each connector
//! parses its own (see `validate`).

use std::sync::LazyLock;

use regex::Regex;
use serde_json::{Map, Value};

use crate::{
    issue::{Issue, index_path, key_path},
    path::JsonPath,
    template::{Template, TemplateValue},
};

pub const FORMAT_VERSION: u64 = 1;
/// Longest chain of flows started by `webhook_out` from one event.
pub const MAX_CHAIN_DEPTH: u32 = 16;

static NAME_RE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[a-z0-9][a-z0-9_-]{0,63}$").expect("valid regex"));
static SEGMENT_RE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[A-Za-z0-9_-]+$").expect("valid regex"));
static STEP_ID_RE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[A-Za-z0-9_][A-Za-z0-9_-]{0,63}$").expect("valid regex"));

const METHODS: [&str; 7] = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];

/// Whether `name` is a valid flow name (a slug).
pub fn is_flow_name(name: &str) -> bool {
    NAME_RE.is_match(name)
}

/// A parsed flow. `source` keeps the document exactly as given, so export returns what was imported.
#[derive(Debug, Clone)]
pub struct Flow {
    pub name: String,
    pub title: Option<String>,
    pub description: Option<String>,
    pub enabled: bool,
    pub trigger: Trigger,
    pub steps: Vec<Step>,
    pub source: Value,
}

#[derive(Debug, Clone)]
pub enum Trigger {
    Webhook(Box<WebhookTrigger>),
    Manual,
    /// Runs on an interval or a cron pattern (the server's scheduler fires it).
    Schedule(Box<ScheduleTrigger>),
}

impl Trigger {
    pub fn kind(&self) -> &'static str {
        match self {
            Trigger::Webhook(_) => "webhook",
            Trigger::Manual => "manual",
            Trigger::Schedule(_) => "schedule",
        }
    }
}

#[derive(Debug, Clone)]
pub struct WebhookTrigger {
    /// Served at `/hooks/<path>`.
    pub path: String,
    pub methods: Vec<String>,
    /// Verification scheme configuration (`{"scheme": ...}`), checked by the ingress.
    pub verify: Option<Map<String, Value>>,
    pub dedupe: Option<Dedupe>,
    pub respond: Respond,
    /// This flow's body limit, overriding the server's `--max-body-bytes`.
    pub max_body_bytes: Option<usize>,
}

/// The largest body a flow may accept (GitHub's own payload cap).
pub const MAX_BODY_LIMIT: u64 = 25 * 1024 * 1024;

/// `{"type": "schedule", "every_s" | "cron", "poll"?, "emit"?}`: fire on a schedule; optionally
/// call an API (`poll`, an `http` step config) and start one run per new item of its answer.
#[derive(Debug, Clone)]
pub struct ScheduleTrigger {
    pub when: When,
    /// An `http` step configuration; the server prepares it with the http connector.
    pub poll: Option<Map<String, Value>>,
    pub emit: Option<Emit>,
}

#[derive(Debug, Clone)]
pub enum When {
    /// Every so many seconds.
    Every(u64),
    /// A cron pattern (5 fields, or 6 with seconds first), evaluated in UTC.
    Cron(Box<croner::Cron>, String),
}

/// Which parts of the poll answer are items, and what identifies each.
#[derive(Debug, Clone)]
pub struct Emit {
    /// Over the poll output `{status, headers, body}`, e.g. `$.body.orders[*]`.
    pub items: JsonPath,
    /// Over one item, e.g. `$.id`.
    pub key: JsonPath,
}

impl ScheduleTrigger {
    /// The first tick strictly after `after` (ms since the epoch); `None` if a cron pattern never
    /// matches again.
    pub fn next_after(&self, after_ms: i64) -> Option<i64> {
        match &self.when {
            When::Every(s) => Some(after_ms + (*s as i64) * 1000),
            When::Cron(cron, _) => {
                let at = chrono::DateTime::from_timestamp_millis(after_ms)?;
                cron.find_next_occurrence(&at, false)
                    .ok()
                    .map(|t| t.timestamp_millis())
            }
        }
    }

    /// A stable description of when it fires; a change means the schedule was edited.
    pub fn spec(&self) -> String {
        match &self.when {
            When::Every(s) => format!("every {s}s"),
            When::Cron(_, src) => format!("cron {src}"),
        }
    }
}

/// Longest interval accepted: one year.
const MAX_EVERY_S: u64 = 366 * 86_400;

fn parse_schedule(obj: &Map<String, Value>, p: &mut Problems) -> ScheduleTrigger {
    let every = obj.get("every_s");
    let cron = obj.get("cron");
    let when = match (every, cron) {
        (Some(_), Some(_)) => {
            p.add("trigger", "give either every_s or cron, not both");
            When::Every(60)
        }
        (None, None) => {
            p.add(
                "trigger",
                "a schedule needs \"every_s\": <seconds> or \"cron\": \"*/5 * * * *\"",
            );
            When::Every(60)
        }
        (Some(v), None) => match v.as_u64() {
            Some(n) if (1..=MAX_EVERY_S).contains(&n) => When::Every(n),
            _ => {
                p.add(
                    "trigger.every_s",
                    format!("must be a whole number of seconds between 1 and {MAX_EVERY_S}"),
                );
                When::Every(60)
            }
        },
        (None, Some(v)) => {
            let src = v.as_str().unwrap_or_default();
            let parser = croner::parser::CronParser::builder()
                .seconds(croner::parser::Seconds::Optional)
                .build();
            match parser.parse(src) {
                Ok(c) if v.is_string() => When::Cron(Box::new(c), src.to_string()),
                Ok(_) => {
                    p.add("trigger.cron", "must be a string such as \"*/5 * * * *\"");
                    When::Every(60)
                }
                Err(e) => {
                    p.add(
                        "trigger.cron",
                        format!("'{src}' is not a cron pattern ({e}); use 5 fields (minute hour day month weekday), or 6 with seconds first"),
                    );
                    When::Every(60)
                }
            }
        }
    };
    let poll = match obj.get("poll") {
        None | Some(Value::Null) => None,
        Some(Value::Object(m)) => Some(m.clone()),
        Some(_) => {
            p.add(
                "trigger.poll",
                "must be an http step configuration such as {\"url\": \"https://api.example.com/orders\"}",
            );
            None
        }
    };
    let emit = match obj.get("emit") {
        None | Some(Value::Null) => None,
        Some(Value::Object(e)) => {
            unknown_keys(e, "trigger.emit", &["items", "key"], p);
            let mut path = |k: &str, example: &str| match e.get(k) {
                Some(Value::String(s)) => match JsonPath::compile(s) {
                    Ok(jp) => Some(jp),
                    Err(msg) => {
                        p.add(format!("trigger.emit.{k}"), msg);
                        None
                    }
                },
                _ => {
                    p.add(
                        format!("trigger.emit.{k}"),
                        format!("missing; a JSONPath such as \"{example}\""),
                    );
                    None
                }
            };
            let items = path("items", "$.body.orders[*]");
            let key = path("key", "$.id");
            if poll.is_none() {
                p.add(
                    "trigger.emit",
                    "emit needs a poll: the items come from the poll request's answer",
                );
            }
            items.zip(key).map(|(items, key)| Emit { items, key })
        }
        Some(_) => {
            p.add(
                "trigger.emit",
                "must be an object such as {\"items\": \"$.body.orders[*]\", \"key\": \"$.id\"}",
            );
            None
        }
    };
    ScheduleTrigger { when, poll, emit }
}

#[derive(Debug, Clone)]
pub struct Dedupe {
    pub header: String,
    pub window_s: u64,
}

#[derive(Debug, Clone)]
pub enum Respond {
    /// Answer 202 as soon as the event and its run are committed.
    Accepted,
    /// Wait for the run and answer with a rendered template.
    Result {
        timeout_ms: u64,
        status: u16,
        headers: Vec<(String, Template)>,
        /// `None`: the last step's output.
        body: Option<TemplateValue>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnError {
    Fail,
    Continue,
}

#[derive(Debug, Clone)]
pub struct Step {
    pub id: String,
    pub kind: String,
    pub title: Option<String>,
    /// `None`: after the step listed before (or the trigger for the first step).
    pub after: Option<Vec<String>>,
    pub on_error: OnError,
    /// Everything else: the connector's own configuration.
    pub config: Map<String, Value>,
}

/// Collects issues while parsing; keeps going after each problem so that all are reported.
#[derive(Default)]
struct Problems(Vec<Issue>);

impl Problems {
    fn add(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(Issue::new(path, message));
    }
}

/// Parse a flow document, reporting every structural problem.
pub fn parse_flow(doc: &Value) -> Result<Flow, Vec<Issue>> {
    match parse_flow_lenient(doc) {
        (Some(flow), issues) if issues.is_empty() => Ok(flow),
        (_, issues) => Err(issues),
    }
}

/// Parse as much as possible: the flow (unless the document is not an object) and every problem,
/// so that later checks can still run and report theirs too.
pub fn parse_flow_lenient(doc: &Value) -> (Option<Flow>, Vec<Issue>) {
    let mut p = Problems::default();
    let Some(obj) = doc.as_object() else {
        return (None, vec![Issue::new("", "a flow must be a JSON object")]);
    };
    for key in obj.keys() {
        if ![
            "hookflow",
            "name",
            "title",
            "description",
            "enabled",
            "trigger",
            "steps",
        ]
        .contains(&key.as_str())
        {
            p.add(key_path("", key), "unknown field (expected one of: hookflow, name, title, description, enabled, trigger, steps)");
        }
    }
    match obj.get("hookflow") {
        Some(v) if v.as_u64() == Some(FORMAT_VERSION) => {}
        Some(v) => p.add(
            "hookflow",
            format!("unsupported format version {v}; this version of hookflow reads format 1"),
        ),
        None => p.add("hookflow", "missing format version; add \"hookflow\": 1"),
    }
    let name = match obj.get("name") {
        Some(Value::String(n)) if is_flow_name(n) => n.clone(),
        Some(Value::String(n)) => {
            p.add("name", format!("'{n}' is not a valid name: use 1-64 lower-case letters, digits, '-' or '_', starting with a letter or digit"));
            n.clone()
        }
        Some(_) => {
            p.add("name", "must be a string");
            String::new()
        }
        None => {
            p.add(
                "name",
                "missing; every flow needs a unique name such as \"shop-orders\"",
            );
            String::new()
        }
    };
    let title = opt_string(obj, "title", "", &mut p);
    let description = opt_string(obj, "description", "", &mut p);
    let enabled = match obj.get("enabled") {
        None => true,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            p.add("enabled", "must be true or false");
            true
        }
    };
    let trigger = match obj.get("trigger") {
        Some(t) => parse_trigger(t, &name, &mut p),
        None => {
            p.add(
                "trigger",
                "missing; use {\"type\": \"webhook\"} or {\"type\": \"manual\"}",
            );
            Trigger::Manual
        }
    };
    let steps = match obj.get("steps") {
        None => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .filter_map(|(i, s)| parse_step(s, &index_path("steps", i), &mut p))
            .collect(),
        Some(_) => {
            p.add("steps", "must be an array of steps");
            Vec::new()
        }
    };
    (
        Some(Flow {
            name,
            title,
            description,
            enabled,
            trigger,
            steps,
            source: doc.clone(),
        }),
        p.0,
    )
}

fn opt_string(obj: &Map<String, Value>, key: &str, at: &str, p: &mut Problems) -> Option<String> {
    match obj.get(key) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => {
            p.add(key_path(at, key), "must be a string");
            None
        }
    }
}

fn unknown_keys(obj: &Map<String, Value>, at: &str, allowed: &[&str], p: &mut Problems) {
    for key in obj.keys() {
        if !allowed.contains(&key.as_str()) {
            p.add(
                key_path(at, key),
                format!("unknown field (expected one of: {})", allowed.join(", ")),
            );
        }
    }
}

fn parse_trigger(v: &Value, flow_name: &str, p: &mut Problems) -> Trigger {
    let Some(obj) = v.as_object() else {
        p.add(
            "trigger",
            "must be an object such as {\"type\": \"webhook\"}",
        );
        return Trigger::Manual;
    };
    match obj.get("type").and_then(Value::as_str) {
        Some("webhook") => {
            unknown_keys(
                obj,
                "trigger",
                &[
                    "type",
                    "path",
                    "methods",
                    "verify",
                    "dedupe",
                    "respond",
                    "max_body_bytes",
                ],
                p,
            );
            Trigger::Webhook(Box::new(parse_webhook(obj, flow_name, p)))
        }
        Some("manual") => {
            unknown_keys(obj, "trigger", &["type"], p);
            Trigger::Manual
        }
        Some("schedule") => {
            unknown_keys(
                obj,
                "trigger",
                &["type", "every_s", "cron", "poll", "emit"],
                p,
            );
            Trigger::Schedule(Box::new(parse_schedule(obj, p)))
        }
        Some(other) => {
            p.add(
                "trigger.type",
                format!("unknown trigger type '{other}' (expected webhook, manual or schedule)"),
            );
            Trigger::Manual
        }
        None => {
            p.add(
                "trigger.type",
                "missing; use \"webhook\", \"manual\" or \"schedule\"",
            );
            Trigger::Manual
        }
    }
}

fn parse_webhook(obj: &Map<String, Value>, flow_name: &str, p: &mut Problems) -> WebhookTrigger {
    let path = match obj.get("path") {
        None => flow_name.to_string(),
        Some(Value::String(s)) => {
            let s = s.trim_matches('/');
            if s.is_empty() || s.len() > 200 || !s.split('/').all(|seg| SEGMENT_RE.is_match(seg)) {
                p.add("trigger.path", format!("'{s}' is not a valid path: use segments of letters, digits, '-' or '_' separated by '/', e.g. \"shop/orders\""));
            }
            s.to_string()
        }
        Some(_) => {
            p.add("trigger.path", "must be a string such as \"shop/orders\"");
            String::new()
        }
    };
    let methods = match obj.get("methods") {
        None => vec!["POST".to_string()],
        Some(Value::Array(items)) if !items.is_empty() => items
            .iter()
            .enumerate()
            .filter_map(|(i, m)| match m.as_str().map(str::to_ascii_uppercase) {
                Some(m) if METHODS.contains(&m.as_str()) => Some(m),
                _ => {
                    p.add(
                        index_path("trigger.methods", i),
                        format!(
                            "{m} is not an HTTP method (expected one of {})",
                            METHODS.join(", ")
                        ),
                    );
                    None
                }
            })
            .collect(),
        Some(_) => {
            p.add(
                "trigger.methods",
                "must be a non-empty array such as [\"POST\"]",
            );
            Vec::new()
        }
    };
    let verify = match obj.get("verify") {
        None | Some(Value::Null) => None,
        Some(Value::Object(v)) => Some(v.clone()),
        Some(_) => {
            p.add(
                "trigger.verify",
                "must be an object such as {\"scheme\": \"github\", \"secret\": \"...\"}",
            );
            None
        }
    };
    let dedupe = match obj.get("dedupe") {
        None | Some(Value::Null) => None,
        Some(Value::Object(d)) => {
            unknown_keys(d, "trigger.dedupe", &["header", "window_s"], p);
            let header = match d.get("header").and_then(Value::as_str) {
                Some(h) if !h.is_empty() => h.to_ascii_lowercase(),
                _ => {
                    p.add(
                        "trigger.dedupe.header",
                        "missing; name the header that carries the delivery id",
                    );
                    String::new()
                }
            };
            let window_s = match d.get("window_s") {
                None => 86_400,
                Some(w) => w.as_u64().unwrap_or_else(|| {
                    p.add(
                        "trigger.dedupe.window_s",
                        "must be a whole number of seconds",
                    );
                    86_400
                }),
            };
            Some(Dedupe { header, window_s })
        }
        Some(_) => {
            p.add(
                "trigger.dedupe",
                "must be an object such as {\"header\": \"X-Delivery-Id\"}",
            );
            None
        }
    };
    let respond = match obj.get("respond") {
        None | Some(Value::Null) => Respond::Accepted,
        Some(r) => parse_respond(r, p),
    };
    let max_body_bytes = match obj.get("max_body_bytes") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_u64() {
            Some(n) if (1..=MAX_BODY_LIMIT).contains(&n) => Some(n as usize),
            _ => {
                p.add(
                    "trigger.max_body_bytes",
                    format!("must be a number of bytes between 1 and {MAX_BODY_LIMIT} (25 MiB)"),
                );
                None
            }
        },
    };
    WebhookTrigger {
        path,
        methods,
        verify,
        dedupe,
        respond,
        max_body_bytes,
    }
}

fn parse_respond(v: &Value, p: &mut Problems) -> Respond {
    let at = "trigger.respond";
    let Some(obj) = v.as_object() else {
        p.add(at, "must be an object such as {\"mode\": \"accepted\"}");
        return Respond::Accepted;
    };
    match obj.get("mode").and_then(Value::as_str) {
        None | Some("accepted") => {
            unknown_keys(obj, at, &["mode"], p);
            Respond::Accepted
        }
        Some("result") => {
            unknown_keys(
                obj,
                at,
                &["mode", "timeout_ms", "status", "headers", "body"],
                p,
            );
            let timeout_ms = match obj.get("timeout_ms") {
                None => 10_000,
                Some(t) => match t.as_u64() {
                    Some(t) if (1..=300_000).contains(&t) => t,
                    _ => {
                        p.add(
                            "trigger.respond.timeout_ms",
                            "must be a number of milliseconds between 1 and 300000",
                        );
                        10_000
                    }
                },
            };
            let status = match obj.get("status") {
                None => 200,
                Some(s) => match s.as_u64() {
                    Some(s) if (200..=599).contains(&s) => s as u16,
                    _ => {
                        p.add(
                            "trigger.respond.status",
                            "must be an HTTP status between 200 and 599",
                        );
                        200
                    }
                },
            };
            let mut headers = Vec::new();
            match obj.get("headers") {
                None => {}
                Some(Value::Object(h)) => {
                    for (k, v) in h {
                        let hp = key_path("trigger.respond.headers", k);
                        match v.as_str().map(Template::compile) {
                            Some(Ok(t)) => headers.push((k.clone(), t)),
                            Some(Err(e)) => p.add(hp, e),
                            None => p.add(hp, "must be a string"),
                        }
                    }
                }
                Some(_) => p.add(
                    "trigger.respond.headers",
                    "must be an object of header names to values",
                ),
            }
            let body = match obj.get("body") {
                None => None,
                Some(b) => match TemplateValue::compile(b) {
                    Ok(t) => Some(t),
                    Err(issues) => {
                        p.0.extend(issues.into_iter().map(|i| i.under("trigger.respond.body")));
                        None
                    }
                },
            };
            let secret_use = headers
                .iter()
                .flat_map(|(_, t)| t.secret_refs())
                .chain(body.iter().flat_map(|b| b.secret_refs()))
                .next();
            if let Some(name) = secret_use {
                p.add(
                    "trigger.respond",
                    format!("secrets cannot be used in a response (secrets.{name}): they would be sent to the caller"),
                );
            }
            Respond::Result {
                timeout_ms,
                status,
                headers,
                body,
            }
        }
        Some(other) => {
            p.add(
                "trigger.respond.mode",
                format!("unknown mode '{other}' (expected accepted or result)"),
            );
            Respond::Accepted
        }
    }
}

fn parse_step(v: &Value, at: &str, p: &mut Problems) -> Option<Step> {
    let Some(obj) = v.as_object() else {
        p.add(
            at,
            "a step must be an object with at least \"id\" and \"type\"",
        );
        // A placeholder keeps later steps at their document index.
        return Some(Step {
            id: String::new(),
            kind: String::new(),
            title: None,
            after: None,
            on_error: OnError::Fail,
            config: Map::new(),
        });
    };
    let id = match obj.get("id") {
        Some(Value::String(id)) if STEP_ID_RE.is_match(id) => id.clone(),
        Some(Value::String(id)) => {
            p.add(
                key_path(at, "id"),
                format!("'{id}' is not a valid step id: use 1-64 letters, digits, '-' or '_'"),
            );
            id.clone()
        }
        _ => {
            p.add(
                key_path(at, "id"),
                "missing; every step needs a unique id such as \"shape\"",
            );
            String::new()
        }
    };
    let kind = match obj.get("type") {
        Some(Value::String(t)) => t.clone(),
        _ => {
            p.add(
                key_path(at, "type"),
                "missing; use http, transform, filter or webhook_out",
            );
            String::new()
        }
    };
    let title = opt_string(obj, "title", at, p);
    let after = match obj.get("after") {
        None | Some(Value::Null) => None,
        Some(Value::Array(items)) => Some(
            items
                .iter()
                .enumerate()
                .filter_map(|(i, a)| match a.as_str() {
                    Some(s) => Some(s.to_string()),
                    None => {
                        p.add(
                            index_path(&key_path(at, "after"), i),
                            "must be a step id (a string)",
                        );
                        None
                    }
                })
                .collect(),
        ),
        Some(_) => {
            p.add(
                key_path(at, "after"),
                "must be an array of step ids, e.g. [\"shape\"]",
            );
            None
        }
    };
    let on_error = match obj.get("on_error").map(|v| v.as_str()) {
        None | Some(Some("fail")) => OnError::Fail,
        Some(Some("continue")) => OnError::Continue,
        Some(_) => {
            p.add(key_path(at, "on_error"), "must be \"fail\" or \"continue\"");
            OnError::Fail
        }
    };
    let config = obj
        .iter()
        .filter(|(k, _)| !["id", "type", "title", "after", "on_error"].contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Some(Step {
        id,
        kind,
        title,
        after,
        on_error,
        config,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn issues(doc: Value) -> Vec<String> {
        parse_flow(&doc)
            .err()
            .unwrap_or_default()
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn parses_a_minimal_flow_with_defaults() {
        let f = parse_flow(
            &json!({"hookflow": 1, "name": "a", "trigger": {"type": "webhook"}, "steps": []}),
        )
        .unwrap();
        let Trigger::Webhook(w) = &f.trigger else {
            panic!()
        };
        assert_eq!(w.path, "a");
        assert_eq!(w.methods, ["POST"]);
        assert!(matches!(w.respond, Respond::Accepted));
        assert!(f.enabled);
    }

    #[test]
    fn reports_every_structural_problem_with_its_location() {
        let got = issues(json!({
            "hookflow": 2, "name": "Bad Name", "extra": 1,
            "trigger": {"type": "webhook", "methods": ["FETCH"], "respond": {"mode": "later"}},
            "steps": [{"id": "a", "type": "transform", "after": "x"}, {"type": "http", "on_error": "ignore"}]
        }));
        for want in [
            "extra: unknown field",
            "hookflow: unsupported format version 2",
            "name: 'Bad Name' is not a valid name",
            "trigger.methods[0]: \"FETCH\" is not an HTTP method",
            "trigger.respond.mode: unknown mode 'later'",
            "steps[0].after: must be an array",
            "steps[1].id: missing",
            "steps[1].on_error: must be \"fail\" or \"continue\"",
        ] {
            assert!(
                got.iter().any(|g| g.starts_with(want)),
                "missing {want:?} in {got:#?}"
            );
        }
    }

    #[test]
    fn parses_schedules_and_reports_their_problems() {
        let f = parse_flow(&json!({"hookflow": 1, "name": "a", "trigger": {"type": "schedule", "cron": "*/5 * * * *",
            "poll": {"url": "http://x"}, "emit": {"items": "$.body.orders[*]", "key": "$.id"}}}))
        .unwrap();
        let Trigger::Schedule(s) = &f.trigger else {
            panic!()
        };
        assert_eq!(s.spec(), "cron */5 * * * *");
        // 2026-01-01T00:01:00Z → the next five-minute mark.
        let t = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:01:00Z")
            .unwrap()
            .timestamp_millis();
        assert_eq!(s.next_after(t), Some(t + 4 * 60_000));
        let every = parse_flow(
            &json!({"hookflow": 1, "name": "a", "trigger": {"type": "schedule", "every_s": 30}}),
        )
        .unwrap();
        let Trigger::Schedule(e) = &every.trigger else {
            panic!()
        };
        assert_eq!(e.next_after(1_000), Some(31_000));

        let got = issues(
            json!({"hookflow": 1, "name": "a", "trigger": {"type": "schedule", "cron": "61 * * * *",
            "emit": {"items": "body", "extra": 1}}}),
        );
        for want in [
            "trigger.cron: '61 * * * *' is not a cron pattern",
            "trigger.emit.extra: unknown field",
            "trigger.emit.items: a JSONPath must start with '$'",
            "trigger.emit.key: missing",
            "trigger.emit: emit needs a poll",
        ] {
            assert!(
                got.iter().any(|g| g.starts_with(want)),
                "missing {want:?} in {got:#?}"
            );
        }
        let got = issues(
            json!({"hookflow": 1, "name": "a", "trigger": {"type": "schedule", "every_s": 0}}),
        );
        assert!(
            got[0].starts_with("trigger.every_s: must be a whole number"),
            "{got:?}"
        );
        let got = issues(json!({"hookflow": 1, "name": "a", "trigger": {"type": "schedule"}}));
        assert!(got[0].starts_with("trigger: a schedule needs"), "{got:?}");
    }

    #[test]
    fn step_config_keeps_connector_fields() {
        let f = parse_flow(
            &json!({"hookflow": 1, "name": "a", "trigger": {"type": "manual"},
            "steps": [{"id": "s", "type": "http", "url": "http://x", "on_error": "continue"}]}),
        )
        .unwrap();
        assert_eq!(f.steps[0].config.keys().collect::<Vec<_>>(), ["url"]);
        assert_eq!(f.steps[0].on_error, OnError::Continue);
    }
}
