//! Step and trigger forms: from a stored step (JSON) to form fields, from posted fields back to
//! what the user typed (to re-render it with errors, nothing lost), and from posted fields to the
//! step JSON that the shared validator checks. Fields that are left empty are left out of the
//! document, so saved flows stay as terse as hand-written ones.

use hookflow_web::views::{Choice, Cond, Errors, FieldError, Kv, StepForm, TriggerForm};
use serde_json::{Map, Value, json};

/// Posted form fields, in order (repeated names such as header rows stay paired).
pub type Pairs = Vec<(String, String)>;

pub fn get<'a>(p: &'a Pairs, key: &str) -> &'a str {
    p.iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .unwrap_or("")
}

pub fn all<'a>(p: &'a Pairs, key: &str) -> Vec<&'a str> {
    p.iter()
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .collect()
}

fn text(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

fn pretty(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => String::new(),
        Some(v) => serde_json::to_string_pretty(v).unwrap_or_default(),
    }
}

/// A template field's value: JSON when it reads as JSON, else (for something that is clearly
/// not meant as JSON, like `{{ $.input }}` or `Order {{ … }}`) the text itself as a string.
fn template_value(s: &str) -> Result<Option<Value>, String> {
    let t = s.trim();
    if t.is_empty() {
        return Ok(None);
    }
    match serde_json::from_str::<Value>(t) {
        Ok(v) => Ok(Some(v)),
        Err(_)
            if t.starts_with("{{")
                || !(t.starts_with('{') || t.starts_with('[') || t.starts_with('"')) =>
        {
            Ok(Some(Value::String(t.to_string())))
        }
        Err(e) => Err(format!("not valid JSON: {e}")),
    }
}

/// A condition value typed into a row: JSON when it parses (`100`, `true`, `["a"]`), else text.
fn cond_value(s: &str) -> Value {
    serde_json::from_str(s.trim()).unwrap_or_else(|_| Value::String(s.to_string()))
}

fn cond_text(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) if serde_json::from_str::<Value>(s).is_err() => s.clone(),
        Some(v) => v.to_string(),
        None => String::new(),
    }
}

fn number(s: &str, field: &str, errors: &mut Vec<FieldError>) -> Option<Value> {
    let t = s.trim();
    if t.is_empty() {
        return None;
    }
    match t.parse::<u64>() {
        Ok(n) => Some(json!(n)),
        Err(_) => {
            errors.push(FieldError {
                field: field.into(),
                message: format!("'{t}' is not a whole number"),
            });
            None
        }
    }
}

fn kvs(map: Option<&Value>) -> Vec<Kv> {
    map.and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| Kv {
                    key: k.clone(),
                    value: text(Some(v)),
                })
                .collect()
        })
        .unwrap_or_default()
}

fn pad_rows(mut rows: Vec<Kv>) -> Vec<Kv> {
    if rows.is_empty() {
        rows.push(Kv::default());
    }
    rows
}

fn rows_from(p: &Pairs, k: &str, v: &str) -> Vec<Kv> {
    all(p, k)
        .into_iter()
        .zip(all(p, v))
        .map(|(k, v)| Kv {
            key: k.to_string(),
            value: v.to_string(),
        })
        .collect()
}

fn set_or_remove(obj: &mut Map<String, Value>, key: &str, v: Option<Value>) {
    match v {
        Some(v) => {
            obj.insert(key.to_string(), v);
        }
        None => {
            obj.remove(key);
        }
    }
}

/// Conditions as rows when they are one test or one flat `all`/`any` of tests.
fn cond_rows(c: Option<&Value>) -> Option<(String, Vec<Cond>)> {
    let row = |t: &Value| -> Option<Cond> {
        let o = t.as_object()?;
        if o.keys()
            .any(|k| !["path", "op", "value"].contains(&k.as_str()))
        {
            return None;
        }
        Some(Cond {
            path: text(o.get("path")),
            op: text(o.get("op")),
            value: cond_text(o.get("value")),
        })
    };
    match c {
        None => Some((
            "all".into(),
            vec![Cond {
                path: "$.input.".into(),
                op: "eq".into(),
                value: String::new(),
            }],
        )),
        Some(v) if v.get("path").is_some() => Some(("all".into(), vec![row(v)?])),
        Some(v) => {
            let (mode, items) = if let Some(a) = v.get("all") {
                ("all", a)
            } else {
                ("any", v.get("any")?)
            };
            let rows: Option<Vec<Cond>> = items.as_array()?.iter().map(row).collect();
            Some((mode.into(), rows?))
        }
    }
}

/// The form of a stored (or new) step.
pub fn step_form(step: &Map<String, Value>) -> StepForm {
    let g = |k: &str| step.get(k);
    let kind = text(g("type"));
    let mut f = StepForm {
        id: text(g("id")),
        kind: kind.clone(),
        title: text(g("title")),
        on_error: text(g("on_error")),
        method: text(g("method")),
        url: text(g("url")),
        headers: pad_rows(kvs(g("headers"))),
        query: pad_rows(kvs(g("query"))),
        body: pretty(g("body")),
        body_text: text(g("body_text")),
        auth: "none".into(),
        timeout_ms: text(g("timeout_ms")),
        expect: g("expect")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .map(|v| v.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default(),
        output: pretty(g("output")),
        secret: text(g("secret")),
        wait: g("wait").and_then(Value::as_bool).unwrap_or(false),
        ..Default::default()
    };
    if let Some(Value::String(s)) = g("body") {
        f.body = s.clone();
    }
    if let Some(Value::String(s)) = g("output") {
        f.output = s.clone();
    }
    if let Some(a) = g("auth").and_then(Value::as_object) {
        if let Some(t) = a.get("bearer") {
            f.auth = "bearer".into();
            f.auth_token = text(Some(t));
        } else if let Some(b) = a.get("basic") {
            f.auth = "basic".into();
            f.auth_user = text(b.get("username"));
            f.auth_pass = text(b.get("password"));
        }
    }
    if let Some(r) = g("retry") {
        f.retry_attempts = text(r.get("max_attempts"));
        f.retry_initial = text(r.get("initial_ms"));
        f.retry_max = text(r.get("max_ms"));
    }
    match cond_rows(g("condition")) {
        Some((mode, rows)) => {
            f.cond_mode = mode;
            f.conds = rows;
        }
        None => {
            f.cond_mode = "json".into();
            f.cond_json = pretty(g("condition"));
        }
    }
    if kind == "webhook_out" {
        let mut flows: Vec<String> = g("flow").map(|v| text(Some(v))).into_iter().collect();
        flows.extend(
            g("flows")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|v| text(Some(v))),
        );
        f.to_flows = flows.join(", ");
        let mut urls: Vec<String> = g("url").map(|v| text(Some(v))).into_iter().collect();
        urls.extend(
            g("urls")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|v| text(Some(v))),
        );
        f.to_urls = urls.join("\n");
        f.url = String::new();
        f.wo_body = match g("body") {
            Some(Value::String(s)) => s.clone(),
            other => pretty(other),
        };
        f.body = String::new();
    }
    f
}

/// A new step's starting configuration.
pub fn new_step(kind: &str, id: &str) -> Map<String, Value> {
    let v = match kind {
        "http" => json!({"id": id, "type": "http", "method": "POST", "url": ""}),
        "transform" => json!({"id": id, "type": "transform", "output": {"value": "{{ $.input }}"}}),
        "filter" => {
            json!({"id": id, "type": "filter", "condition": {"path": "$.input.", "op": "eq", "value": ""}})
        }
        "webhook_out" => json!({"id": id, "type": "webhook_out"}),
        other => json!({"id": id, "type": other}),
    };
    v.as_object().cloned().unwrap_or_default()
}

/// What the user posted, as a form to show again (with one more row when asked).
pub fn form_from_pairs(p: &Pairs, op: &str) -> StepForm {
    let mut f = StepForm {
        id: get(p, "id").into(),
        kind: get(p, "kind").into(),
        title: get(p, "title").into(),
        on_error: get(p, "on_error").into(),
        method: get(p, "method").into(),
        url: get(p, "url").into(),
        headers: rows_from(p, "h_key", "h_val"),
        query: rows_from(p, "q_key", "q_val"),
        body: get(p, "body").into(),
        body_text: get(p, "body_text").into(),
        auth: match get(p, "auth") {
            "" => "none".into(),
            a => a.into(),
        },
        auth_token: get(p, "auth_token").into(),
        auth_user: get(p, "auth_user").into(),
        auth_pass: get(p, "auth_pass").into(),
        timeout_ms: get(p, "timeout_ms").into(),
        retry_attempts: get(p, "retry_attempts").into(),
        retry_initial: get(p, "retry_initial").into(),
        retry_max: get(p, "retry_max").into(),
        expect: get(p, "expect").into(),
        output: get(p, "output").into(),
        cond_mode: match get(p, "cond_mode") {
            "" => "all".into(),
            m => m.into(),
        },
        conds: all(p, "c_path")
            .into_iter()
            .zip(all(p, "c_op"))
            .zip(all(p, "c_val"))
            .map(|((path, op), value)| Cond {
                path: path.into(),
                op: op.into(),
                value: value.into(),
            })
            .collect(),
        cond_json: get(p, "cond_json").into(),
        to_flows: get(p, "to_flows").into(),
        to_urls: get(p, "to_urls").into(),
        wo_body: get(p, "wo_body").into(),
        secret: get(p, "secret").into(),
        wait: get(p, "wait") == "true",
        ..Default::default()
    };
    match op {
        "add_header" => f.headers.push(Kv::default()),
        "add_query" => f.query.push(Kv::default()),
        "add_cond" => f.conds.push(Cond {
            path: "$.input.".into(),
            op: "eq".into(),
            value: String::new(),
        }),
        _ => {}
    }
    f.headers = pad_rows(f.headers);
    f.query = pad_rows(f.query);
    if f.conds.is_empty() {
        f.conds.push(Cond {
            op: "eq".into(),
            ..Default::default()
        });
    }
    if f.cond_mode == "json" && f.cond_json.trim().is_empty() && !f.conds.is_empty() {
        // Switching from rows to JSON: carry the rows over.
        if let Some(v) = conds_json(&f.conds, "all") {
            f.cond_json = serde_json::to_string_pretty(&v).unwrap_or_default();
        }
    }
    f
}

fn conds_json(rows: &[Cond], mode: &str) -> Option<Value> {
    let tests: Vec<Value> = rows
        .iter()
        .filter(|c| !c.path.trim().is_empty())
        .map(|c| {
            let op = if c.op.is_empty() { "eq" } else { c.op.as_str() };
            let takes = !matches!(op, "exists" | "not_exists" | "empty" | "not_empty");
            let mut t = json!({"path": c.path.trim(), "op": op});
            if takes {
                t["value"] = cond_value(&c.value);
            }
            t
        })
        .collect();
    match tests.len() {
        0 => None,
        1 => tests.into_iter().next(),
        _ => Some(json!({ mode: tests })),
    }
}

/// The step JSON for posted fields, starting from the stored step (to keep key order and fields
/// the form does not show). Problems the form itself can see (JSON that does not parse, numbers
/// that are not numbers) are returned as field errors.
pub fn step_from_pairs(p: &Pairs, base: Option<&Map<String, Value>>) -> (Value, Vec<FieldError>) {
    let mut errors = Vec::new();
    let kind = get(p, "kind").to_string();
    let mut obj = match base {
        Some(b) if b.get("type").and_then(Value::as_str) == Some(kind.as_str()) => b.clone(),
        _ => Map::new(),
    };
    obj.insert("id".into(), Value::String(get(p, "id").trim().to_string()));
    obj.insert("type".into(), Value::String(kind.clone()));
    let title = get(p, "title").trim();
    set_or_remove(
        &mut obj,
        "title",
        (!title.is_empty()).then(|| Value::String(title.into())),
    );
    set_or_remove(
        &mut obj,
        "on_error",
        (get(p, "on_error") == "continue").then(|| json!("continue")),
    );
    let tpl = |field: &str, errors: &mut Vec<FieldError>, into: &str| -> Option<Value> {
        match template_value(get(p, field)) {
            Ok(v) => v,
            Err(message) => {
                errors.push(FieldError {
                    field: into.into(),
                    message,
                });
                None
            }
        }
    };
    match kind.as_str() {
        "http" => {
            let method = get(p, "method").trim();
            set_or_remove(
                &mut obj,
                "method",
                (!method.is_empty()).then(|| json!(method)),
            );
            obj.insert("url".into(), json!(get(p, "url").trim()));
            let map = |k: &str, v: &str| -> Option<Value> {
                let m: Map<String, Value> = rows_from(p, k, v)
                    .into_iter()
                    .filter(|kv| !kv.key.trim().is_empty())
                    .map(|kv| (kv.key.trim().to_string(), Value::String(kv.value)))
                    .collect();
                (!m.is_empty()).then_some(Value::Object(m))
            };
            set_or_remove(&mut obj, "headers", map("h_key", "h_val"));
            set_or_remove(&mut obj, "query", map("q_key", "q_val"));
            let body = tpl("body", &mut errors, "body");
            set_or_remove(&mut obj, "body", body);
            let bt = get(p, "body_text");
            set_or_remove(&mut obj, "body_text", (!bt.is_empty()).then(|| json!(bt)));
            let auth = match get(p, "auth") {
                "bearer" => Some(json!({"bearer": get(p, "auth_token")})),
                "basic" => Some(
                    json!({"basic": {"username": get(p, "auth_user"), "password": get(p, "auth_pass")}}),
                ),
                _ => None,
            };
            set_or_remove(&mut obj, "auth", auth);
            let timeout = number(get(p, "timeout_ms"), "timeout_ms", &mut errors);
            set_or_remove(&mut obj, "timeout_ms", timeout);
            let mut retry = Map::new();
            for (field, key) in [
                ("retry_attempts", "max_attempts"),
                ("retry_initial", "initial_ms"),
                ("retry_max", "max_ms"),
            ] {
                if let Some(n) = number(get(p, field), "retry", &mut errors) {
                    retry.insert(key.into(), n);
                }
            }
            set_or_remove(
                &mut obj,
                "retry",
                (!retry.is_empty()).then_some(Value::Object(retry)),
            );
            let expect: Vec<Value> = get(p, "expect")
                .split([',', ' '])
                .filter(|s| !s.trim().is_empty())
                .filter_map(|s| number(s, "expect", &mut errors))
                .collect();
            set_or_remove(
                &mut obj,
                "expect",
                (!expect.is_empty()).then_some(Value::Array(expect)),
            );
        }
        "transform" => {
            let out = tpl("output", &mut errors, "output").unwrap_or(Value::Null);
            obj.insert("output".into(), out);
        }
        "filter" => {
            let mode = get(p, "cond_mode");
            let cond = if mode == "json" {
                match serde_json::from_str::<Value>(get(p, "cond_json")) {
                    Ok(v) => Some(v),
                    Err(e) => {
                        errors.push(FieldError {
                            field: "condition".into(),
                            message: format!("not valid JSON: {e}"),
                        });
                        None
                    }
                }
            } else {
                let rows = form_from_pairs(p, "").conds;
                let c = conds_json(&rows, if mode == "any" { "any" } else { "all" });
                if c.is_none() {
                    errors.push(FieldError {
                        field: "condition".into(),
                        message: "add at least one condition (a path such as $.input.status)"
                            .into(),
                    });
                }
                c
            };
            if let Some(c) = cond {
                obj.insert("condition".into(), c);
            }
        }
        "webhook_out" => {
            let flows: Vec<Value> = get(p, "to_flows")
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| json!(s))
                .collect();
            let urls: Vec<Value> = get(p, "to_urls")
                .lines()
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| json!(s))
                .collect();
            for (one, many, list) in [("flow", "flows", flows), ("url", "urls", urls)] {
                obj.remove(one);
                obj.remove(many);
                match list.len() {
                    0 => {}
                    1 => {
                        obj.insert(one.into(), list.into_iter().next().unwrap_or_default());
                    }
                    _ => {
                        obj.insert(many.into(), Value::Array(list));
                    }
                }
            }
            let body = tpl("wo_body", &mut errors, "body");
            set_or_remove(&mut obj, "body", body);
            let secret = get(p, "secret").trim();
            set_or_remove(
                &mut obj,
                "secret",
                (!secret.is_empty()).then(|| json!(secret)),
            );
            set_or_remove(
                &mut obj,
                "wait",
                (get(p, "wait") == "true").then_some(json!(true)),
            );
        }
        _ => {}
    }
    (Value::Object(obj), errors)
}

/// Sort validation problems (located relative to a step or the trigger) into form fields.
pub fn field_errors(issues: &[(String, String)], kind: &str) -> Errors {
    let mut e = Errors::default();
    for (path, message) in issues {
        let (head, rest) = match path.find(['.', '[']) {
            Some(i) => (&path[..i], path[i..].trim_start_matches('.')),
            None => (path.as_str(), ""),
        };
        let field = match (kind, head) {
            ("webhook_out", "flow" | "flows") => "flows",
            ("webhook_out", "url" | "urls") => "urls",
            ("trigger", "verify") => "verify",
            (_, "") | (_, "type") | (_, "name") => {
                e.general.push(if path.is_empty() {
                    message.clone()
                } else {
                    format!("{path}: {message}")
                });
                continue;
            }
            (_, h) => h,
        };
        let message = if rest.is_empty() {
            message.clone()
        } else {
            format!("{rest}: {message}")
        };
        e.fields.push(FieldError {
            field: field.to_string(),
            message,
        });
    }
    e
}

pub fn add_field_errors(e: &mut Errors, found: Vec<FieldError>) {
    e.fields.extend(found);
}

// ------------------------------------------------------------------ trigger

const METHODS: [&str; 7] = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];

fn method_choices(selected: &[String]) -> Vec<Choice> {
    METHODS
        .iter()
        .map(|m| Choice {
            value: m.to_string(),
            label: m.to_string(),
            checked: selected.iter().any(|s| s.eq_ignore_ascii_case(m)),
        })
        .collect()
}

/// The trigger form of a flow document.
pub fn trigger_form(doc: &Value) -> TriggerForm {
    let t = &doc["trigger"];
    let v = &t["verify"];
    let methods: Vec<String> = match t.get("methods").and_then(Value::as_array) {
        Some(a) => a.iter().map(|m| text(Some(m))).collect(),
        None => vec!["POST".into()],
    };
    let respond = &t["respond"];
    let secret = match v.get("secret") {
        Some(Value::Array(_)) => v["secret"].to_string(),
        other => text(other),
    };
    TriggerForm {
        flow: text(doc.get("name")),
        kind: text(t.get("type")),
        title: text(doc.get("title")),
        description: text(doc.get("description")),
        enabled: doc.get("enabled").and_then(Value::as_bool).unwrap_or(true),
        path: text(t.get("path")),
        methods: method_choices(&methods),
        scheme: text(v.get("scheme")),
        v_secret: secret,
        v_header: text(v.get("header")),
        v_value: text(v.get("value")),
        v_username: text(v.get("username")),
        v_password: text(v.get("password")),
        v_algorithm: text(v.get("algorithm")),
        v_encoding: text(v.get("encoding")),
        v_prefix: text(v.get("prefix")),
        v_tolerance: text(v.get("tolerance_s")),
        dedupe_header: text(t["dedupe"].get("header")),
        dedupe_window: text(t["dedupe"].get("window_s")),
        respond_mode: text(respond.get("mode")),
        respond_timeout: text(respond.get("timeout_ms")),
        respond_status: text(respond.get("status")),
        respond_body: match respond.get("body") {
            Some(Value::String(s)) => s.clone(),
            other => pretty(other),
        },
        schedule_json: if text(t.get("type")) == "schedule" {
            pretty(Some(t))
        } else {
            String::new()
        },
        ..Default::default()
    }
}

/// What the user posted in the trigger form, to show again.
pub fn trigger_form_from_pairs(p: &Pairs, flow: &str) -> TriggerForm {
    let methods: Vec<String> = all(p, "methods").into_iter().map(str::to_string).collect();
    TriggerForm {
        flow: flow.into(),
        kind: get(p, "kind").into(),
        title: get(p, "title").into(),
        description: get(p, "description").into(),
        enabled: get(p, "enabled") == "true",
        path: get(p, "path").into(),
        methods: method_choices(&methods),
        scheme: get(p, "scheme").into(),
        v_secret: get(p, "v_secret").into(),
        v_header: get(p, "v_header").into(),
        v_value: get(p, "v_value").into(),
        v_username: get(p, "v_username").into(),
        v_password: get(p, "v_password").into(),
        v_algorithm: get(p, "v_algorithm").into(),
        v_encoding: get(p, "v_encoding").into(),
        v_prefix: get(p, "v_prefix").into(),
        v_tolerance: get(p, "v_tolerance").into(),
        dedupe_header: get(p, "dedupe_header").into(),
        dedupe_window: get(p, "dedupe_window").into(),
        respond_mode: get(p, "respond_mode").into(),
        respond_timeout: get(p, "respond_timeout").into(),
        respond_status: get(p, "respond_status").into(),
        respond_body: get(p, "respond_body").into(),
        schedule_json: get(p, "schedule_json").into(),
        ..Default::default()
    }
}

/// The flow document with the posted trigger and flow settings applied.
pub fn apply_trigger(doc: &Value, p: &Pairs) -> (Value, Vec<FieldError>) {
    let mut errors = Vec::new();
    let mut out = doc.clone();
    let Some(obj) = out.as_object_mut() else {
        return (out, errors);
    };
    let title = get(p, "title").trim();
    set_or_remove(obj, "title", (!title.is_empty()).then(|| json!(title)));
    let desc = get(p, "description").trim();
    set_or_remove(obj, "description", (!desc.is_empty()).then(|| json!(desc)));
    let enabled = get(p, "enabled") == "true";
    set_or_remove(obj, "enabled", (!enabled).then_some(json!(false)));
    let kind = get(p, "kind");
    let base = doc["trigger"]
        .as_object()
        .filter(|t| t.get("type").and_then(Value::as_str) == Some(kind))
        .cloned()
        .unwrap_or_default();
    let trigger = match kind {
        "webhook" => {
            let mut t = base;
            t.insert("type".into(), json!("webhook"));
            let path = get(p, "path").trim().trim_start_matches('/');
            set_or_remove(&mut t, "path", (!path.is_empty()).then(|| json!(path)));
            let methods: Vec<&str> = all(p, "methods");
            let default = methods == ["POST"];
            set_or_remove(&mut t, "methods", (!default).then(|| json!(methods)));
            let scheme = get(p, "scheme");
            let verify = if scheme.is_empty() {
                None
            } else {
                let mut v = Map::new();
                v.insert("scheme".into(), json!(scheme));
                for (field, key) in [
                    ("v_username", "username"),
                    ("v_password", "password"),
                    ("v_header", "header"),
                    ("v_value", "value"),
                    ("v_algorithm", "algorithm"),
                    ("v_encoding", "encoding"),
                    ("v_prefix", "prefix"),
                ] {
                    let s = get(p, field);
                    if !s.is_empty() {
                        v.insert(key.into(), json!(s));
                    }
                }
                let secret = get(p, "v_secret").trim();
                if secret.starts_with('[') {
                    match serde_json::from_str::<Value>(secret) {
                        Ok(list) => {
                            v.insert("secret".into(), list);
                        }
                        Err(e) => errors.push(FieldError {
                            field: "verify".into(),
                            message: format!("secret list: not valid JSON: {e}"),
                        }),
                    }
                } else if !secret.is_empty() {
                    v.insert("secret".into(), json!(secret));
                }
                if let Some(n) = number(get(p, "v_tolerance"), "verify", &mut errors) {
                    v.insert("tolerance_s".into(), n);
                }
                Some(Value::Object(v))
            };
            set_or_remove(&mut t, "verify", verify);
            let header = get(p, "dedupe_header").trim();
            let dedupe = if header.is_empty() {
                None
            } else {
                let mut d = json!({"header": header});
                if let Some(n) = number(get(p, "dedupe_window"), "dedupe", &mut errors) {
                    d["window_s"] = n;
                }
                Some(d)
            };
            set_or_remove(&mut t, "dedupe", dedupe);
            let respond = if get(p, "respond_mode") == "result" {
                let mut r = json!({"mode": "result"});
                if let Some(n) = number(get(p, "respond_status"), "respond", &mut errors) {
                    r["status"] = n;
                }
                if let Some(n) = number(get(p, "respond_timeout"), "respond", &mut errors) {
                    r["timeout_ms"] = n;
                }
                match template_value(get(p, "respond_body")) {
                    Ok(Some(b)) => r["body"] = b,
                    Ok(None) => {}
                    Err(m) => errors.push(FieldError {
                        field: "respond".into(),
                        message: format!("body: {m}"),
                    }),
                }
                Some(r)
            } else {
                None
            };
            set_or_remove(&mut t, "respond", respond);
            Value::Object(t)
        }
        "schedule" => match serde_json::from_str::<Value>(get(p, "schedule_json")) {
            Ok(v) if v.is_object() => {
                let mut v = v;
                v["type"] = json!("schedule");
                v
            }
            Ok(_) | Err(_) if get(p, "schedule_json").trim().is_empty() => {
                json!({"type": "schedule", "every_s": 300})
            }
            Ok(_) => {
                errors.push(FieldError {
                    field: "schedule".into(),
                    message: "must be a JSON object".into(),
                });
                doc["trigger"].clone()
            }
            Err(e) => {
                errors.push(FieldError {
                    field: "schedule".into(),
                    message: format!("not valid JSON: {e}"),
                });
                doc["trigger"].clone()
            }
        },
        _ => json!({"type": "manual"}),
    };
    obj.insert("trigger".into(), trigger);
    (out, errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Pairs {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn http_form_round_trips() {
        let step = json!({"id": "crm", "type": "http", "method": "POST", "url": "https://x/notes",
            "headers": {"Authorization": "Bearer {{ secrets.T }}"}, "body": {"text": "{{ $.input.a }}"},
            "retry": {"max_attempts": 5}, "expect": [200, 201]});
        let f = step_form(step.as_object().unwrap());
        assert_eq!(f.headers[0].key, "Authorization");
        assert_eq!(f.retry_attempts, "5");
        assert_eq!(f.expect, "200, 201");
        let p = pairs(&[
            ("kind", "http"),
            ("id", "crm"),
            ("method", "POST"),
            ("url", "https://x/notes"),
            ("h_key", "Authorization"),
            ("h_val", "Bearer {{ secrets.T }}"),
            ("h_key", ""),
            ("h_val", ""),
            ("body", &f.body),
            ("retry_attempts", "5"),
            ("expect", "200, 201"),
            ("auth", "none"),
        ]);
        let (back, errors) = step_from_pairs(&p, step.as_object());
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(back, step);
    }

    #[test]
    fn filter_rows_become_conditions() {
        let p = pairs(&[
            ("kind", "filter"),
            ("id", "paid"),
            ("cond_mode", "all"),
            ("c_path", "$.input.status"),
            ("c_op", "eq"),
            ("c_val", "paid"),
            ("c_path", "$.input.total"),
            ("c_op", "gt"),
            ("c_val", "100"),
            ("c_path", ""),
            ("c_op", "eq"),
            ("c_val", ""),
        ]);
        let (v, errors) = step_from_pairs(&p, None);
        assert!(errors.is_empty());
        assert_eq!(
            v["condition"],
            json!({"all": [{"path": "$.input.status", "op": "eq", "value": "paid"}, {"path": "$.input.total", "op": "gt", "value": 100}]})
        );
        let f = step_form(v.as_object().unwrap());
        assert_eq!(f.conds.len(), 2);
        assert_eq!(f.conds[1].value, "100");
    }

    #[test]
    fn templates_that_are_not_json_are_strings_and_bad_json_is_an_error() {
        assert_eq!(
            template_value("{{ $.input }}").unwrap(),
            Some(json!("{{ $.input }}"))
        );
        assert!(template_value("{\"a\": ").is_err());
        let p = pairs(&[("kind", "transform"), ("id", "t"), ("output", "{ nope")]);
        let (_, errors) = step_from_pairs(&p, None);
        assert_eq!(errors[0].field, "output");
    }

    #[test]
    fn issues_land_on_fields() {
        let e = field_errors(
            &[
                ("url".into(), "must not be empty".into()),
                ("condition.all[0].op".into(), "unknown op".into()),
                ("".into(), "bad".into()),
            ],
            "http",
        );
        assert_eq!(e.of("url"), ["must not be empty"]);
        assert_eq!(e.of("condition"), ["all[0].op: unknown op"]);
        assert_eq!(e.general, ["bad"]);
    }

    #[test]
    fn trigger_form_applies() {
        let doc = json!({"hookflow": 1, "name": "f", "trigger": {"type": "webhook"}, "steps": []});
        let p = pairs(&[
            ("kind", "webhook"),
            ("path", "shop/orders"),
            ("methods", "POST"),
            ("scheme", "github"),
            ("v_secret", "{{ secrets.GH }}"),
            ("enabled", "true"),
            ("title", "Shop"),
        ]);
        let (out, errors) = apply_trigger(&doc, &p);
        assert!(errors.is_empty());
        assert_eq!(
            out["trigger"],
            json!({"type": "webhook", "path": "shop/orders", "verify": {"scheme": "github", "secret": "{{ secrets.GH }}"}})
        );
        assert_eq!(out["title"], "Shop");
        assert!(out.get("enabled").is_none());
    }
}
