//! View models of the UI's pages and fragments. A page embeds its fragment as a field, so one
//! struct serves both the full page and the htmx swap (as kanidm's views do). Everything shown is
//! escaped by askama; the only unescaped output is a nested template rendered by askama itself.

use std::collections::BTreeSet;

use askama::Template;
use serde_json::Value;

use crate::{assets, json::Line, json::PathHint};

/// What every page's frame needs: who is logged in, the session's CSRF token, the active section.
#[derive(Debug, Clone)]
pub struct Chrome {
    pub user: String,
    pub csrf: String,
    pub active: &'static str,
}

impl Chrome {
    pub fn v(&self) -> &'static str {
        assets::version()
    }
    pub fn htmx(&self) -> &'static str {
        assets::HTMX_PATH
    }
    pub fn nav(&self) -> [(&'static str, &'static str, &'static str); 6] {
        [
            ("flows", "/flows", "Flows"),
            ("runs", "/runs", "Runs"),
            ("deliveries", "/deliveries", "Deliveries"),
            ("inbox", "/inspect", "Inbox"),
            ("secrets", "/secrets", "Secrets"),
            ("settings", "/settings", "Settings"),
        ]
    }
}

/// A moment, shown relative ("3 min ago") with the absolute UTC time as a tooltip.
#[derive(Debug, Clone, Default)]
pub struct Time {
    pub rel: String,
    pub abs: String,
}

impl Time {
    pub fn at(ms: i64, now_ms: i64) -> Time {
        let abs = chrono::DateTime::from_timestamp_millis(ms)
            .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
            .unwrap_or_default();
        let s = (now_ms - ms) / 1000;
        let rel = match s {
            i64::MIN..=-1 => "just now".to_string(),
            0..=4 => "just now".to_string(),
            5..=59 => format!("{s} s ago"),
            60..=3599 => format!("{} min ago", s / 60),
            3600..=86_399 => format!("{} h ago", s / 3600),
            _ => format!("{} d ago", s / 86_400),
        };
        Time { rel, abs }
    }
}

/// A duration in a compact human form.
pub fn duration(ms: i64) -> String {
    match ms {
        i64::MIN..=999 => format!("{} ms", ms.max(0)),
        1000..=59_999 => format!("{:.1} s", ms as f64 / 1000.0),
        _ => format!("{} min {} s", ms / 60_000, (ms % 60_000) / 1000),
    }
}

/// The glyph of a trigger or step kind (also legible without colour).
pub fn glyph(kind: &str) -> &'static str {
    match kind {
        "webhook" => "⇢",
        "schedule" => "◷",
        "manual" => "▶",
        "http" => "⇆",
        "transform" => "ƒ",
        "filter" => "▽",
        "webhook_out" => "↪",
        _ => "•",
    }
}

/// A validation problem at a form field (`field` is the first segment of its location).
#[derive(Debug, Clone, Default)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

/// The problems of a form: by field, and those that belong to no field.
#[derive(Debug, Clone, Default)]
pub struct Errors {
    pub fields: Vec<FieldError>,
    pub general: Vec<String>,
}

impl Errors {
    pub fn of(&self, field: &str) -> Vec<&str> {
        self.fields
            .iter()
            .filter(|e| e.field == field)
            .map(|e| e.message.as_str())
            .collect()
    }
    pub fn has(&self, field: &str) -> bool {
        self.fields.iter().any(|e| e.field == field)
    }
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty() && self.general.is_empty()
    }
    pub fn count(&self) -> usize {
        self.fields.len() + self.general.len()
    }
}

#[derive(Debug, Clone)]
pub struct Choice {
    pub value: String,
    pub label: String,
    pub checked: bool,
}

#[derive(Debug, Clone, Default)]
pub struct Kv {
    pub key: String,
    pub value: String,
}

#[derive(Debug, Clone)]
pub struct Link {
    pub label: String,
    pub href: String,
    pub active: bool,
}

// ---------------------------------------------------------------- flows list

#[derive(Debug, Clone)]
pub struct FlowRow {
    pub name: String,
    pub title: String,
    pub enabled: bool,
    pub version: i64,
    pub trigger: String,
    pub hook_url: Option<String>,
    pub methods: String,
    pub steps: usize,
    pub last_status: Option<String>,
    pub last_run: Option<String>,
    pub last_time: Option<Time>,
    pub ok_24h: i64,
    pub failed_24h: i64,
    /// The stored definition no longer validates (e.g. after an upgrade).
    pub broken: bool,
}

impl FlowRow {
    pub fn glyph(&self) -> &'static str {
        glyph(&self.trigger)
    }
}

#[derive(Template)]
#[template(path = "flows.html")]
pub struct FlowsPage {
    pub chrome: Chrome,
    pub rows: Vec<FlowRow>,
    pub notice: Option<String>,
    pub examples_available: bool,
}

#[derive(Template)]
#[template(path = "flow_new.html")]
pub struct NewFlowPage {
    pub chrome: Chrome,
    pub name: String,
    pub title: String,
    pub trigger: String,
    pub path: String,
    pub errors: Errors,
}

#[derive(Template)]
#[template(path = "confirm.html")]
pub struct ConfirmPage {
    pub chrome: Chrome,
    pub title: String,
    pub message: String,
    pub action: String,
    pub button: String,
    pub back: String,
}

// ---------------------------------------------------------------- editor

#[derive(Debug, Clone)]
pub struct FlowHead {
    pub name: String,
    pub title: String,
    pub description: String,
    pub enabled: bool,
    pub version: i64,
    pub trigger: String,
    pub hook_url: Option<String>,
    pub curl: Option<String>,
}

#[derive(Debug, Clone)]
pub struct GNode {
    pub href: String,
    pub id: String,
    pub kind: String,
    pub glyph: &'static str,
    pub summary: String,
    pub x: i32,
    pub y: i32,
    pub w: i32,
    pub h: i32,
    pub status: Option<String>,
    pub detail: String,
    pub selected: bool,
    pub add_href: String,
    pub trigger: bool,
}

impl GNode {
    pub fn plus_x(&self) -> i32 {
        self.x + self.w / 2
    }
    pub fn plus_y(&self) -> i32 {
        self.y + self.h + 14
    }
}

#[derive(Debug, Clone)]
pub struct GEdge {
    pub d: String,
    pub mx: i32,
    pub my: i32,
    pub insert_href: String,
    pub class: String,
}

#[derive(Template, Debug, Clone)]
#[template(path = "graph_partial.html")]
pub struct GraphView {
    pub flow: String,
    pub width: i32,
    pub height: i32,
    pub nodes: Vec<GNode>,
    pub edges: Vec<GEdge>,
    /// Set while the run shown on the graph is unfinished: the graph polls this URL.
    pub poll_url: Option<String>,
    pub run_id: Option<String>,
    pub run_status: Option<String>,
    pub add_href: String,
}

/// A step's record in the run selected on the editor.
#[derive(Debug, Clone)]
pub struct StepResult {
    pub run_id: String,
    pub status: String,
    pub attempts: i32,
    pub duration: String,
    pub input: String,
    pub output: Option<String>,
    pub error: Option<String>,
}

#[derive(Debug, Clone)]
pub struct HintGroup {
    pub title: String,
    pub hints: Vec<PathHint>,
}

#[derive(Debug, Clone, Default)]
pub struct Cond {
    pub path: String,
    pub op: String,
    pub value: String,
}

/// The form of one step, for every step kind (only the current kind's fields are shown).
#[derive(Debug, Clone, Default)]
pub struct StepForm {
    pub flow: String,
    /// Where the form posts.
    pub action: String,
    pub is_new: bool,
    pub original: String,
    pub insert_after: String,
    pub insert_before: String,
    pub kinds: Vec<(String, String)>,
    pub id: String,
    pub kind: String,
    pub title: String,
    pub on_error: String,
    pub after: Vec<Choice>,
    // http
    pub method: String,
    pub url: String,
    pub headers: Vec<Kv>,
    pub query: Vec<Kv>,
    pub body: String,
    pub body_text: String,
    pub auth: String,
    pub auth_token: String,
    pub auth_user: String,
    pub auth_pass: String,
    pub timeout_ms: String,
    pub retry_attempts: String,
    pub retry_initial: String,
    pub retry_max: String,
    pub expect: String,
    // transform
    pub output: String,
    // filter
    pub cond_mode: String,
    pub conds: Vec<Cond>,
    pub cond_json: String,
    // webhook_out
    pub to_flows: String,
    pub to_urls: String,
    pub wo_body: String,
    pub secret: String,
    pub wait: bool,
    pub errors: Errors,
    pub hints: Vec<HintGroup>,
    pub hints_from: Option<String>,
    pub result: Option<StepResult>,
    pub flow_names: Vec<String>,
    pub can_move_up: bool,
    pub can_move_down: bool,
}

impl StepForm {
    pub fn glyph(&self) -> &'static str {
        glyph(&self.kind)
    }
    pub fn ops(&self) -> [&'static str; 16] {
        [
            "eq",
            "ne",
            "gt",
            "gte",
            "lt",
            "lte",
            "in",
            "not_in",
            "contains",
            "starts_with",
            "ends_with",
            "matches",
            "exists",
            "not_exists",
            "empty",
            "not_empty",
        ]
    }
    pub fn methods(&self) -> [&'static str; 7] {
        ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
    }
}

/// The trigger's form, with the flow's own settings (title, description, enabled).
#[derive(Debug, Clone, Default)]
pub struct TriggerForm {
    pub flow: String,
    pub kind: String,
    pub title: String,
    pub description: String,
    pub enabled: bool,
    pub path: String,
    pub methods: Vec<Choice>,
    pub scheme: String,
    pub v_secret: String,
    pub v_header: String,
    pub v_value: String,
    pub v_username: String,
    pub v_password: String,
    pub v_algorithm: String,
    pub v_encoding: String,
    pub v_prefix: String,
    pub v_tolerance: String,
    pub dedupe_header: String,
    pub dedupe_window: String,
    pub respond_mode: String,
    pub respond_timeout: String,
    pub respond_status: String,
    pub respond_body: String,
    pub schedule_json: String,
    pub errors: Errors,
    pub hook_url: Option<String>,
    pub result: Option<StepResult>,
}

impl TriggerForm {
    pub fn glyph(&self) -> &'static str {
        glyph(&self.kind)
    }
    /// Whether the current verification scheme takes `field`.
    pub fn uses(&self, field: &str) -> bool {
        let fields: &[&str] = match self.scheme.as_str() {
            "basic" => &["username", "password"],
            "api_key" => &["header", "value"],
            "hmac" => &["secret", "header", "algorithm", "encoding", "prefix"],
            "github" | "shopify" => &["secret"],
            "stripe" | "slack" | "standard_webhooks" => &["secret", "tolerance_s"],
            _ => &[],
        };
        fields.contains(&field)
    }
    pub fn schemes(&self) -> [(&'static str, &'static str); 10] {
        [
            ("", "none (anyone with the URL)"),
            ("basic", "HTTP basic auth"),
            ("api_key", "API key header"),
            ("hmac", "HMAC of the body"),
            ("github", "GitHub"),
            ("stripe", "Stripe"),
            ("shopify", "Shopify"),
            ("slack", "Slack"),
            ("standard_webhooks", "Standard Webhooks"),
            ("none", "none (explicit)"),
        ]
    }
}

#[derive(Debug, Clone)]
pub struct Sample {
    pub label: String,
    pub detail: String,
    pub href: String,
}

#[derive(Debug, Clone, Default)]
pub struct TestPanel {
    pub flow: String,
    pub payload: String,
    pub samples_runs: Vec<Sample>,
    pub samples_inbox: Vec<Sample>,
    pub error: Option<String>,
}

#[derive(Debug, Clone)]
pub enum Panel {
    Step(Box<StepForm>),
    Trigger(Box<TriggerForm>),
    Test(TestPanel),
}

#[derive(Debug, Clone)]
pub struct VersionLink {
    pub version: i64,
    pub current: bool,
    pub time: Time,
}

#[derive(Template)]
#[template(path = "editor_partial.html")]
pub struct EditorPartial {
    pub csrf: String,
    pub head: FlowHead,
    pub graph: GraphView,
    pub panel: Panel,
    pub versions: Vec<VersionLink>,
    pub notice: Option<String>,
    pub last_run: Option<String>,
}

#[derive(Template)]
#[template(path = "editor.html")]
pub struct EditorPage {
    pub chrome: Chrome,
    pub e: EditorPartial,
}

#[derive(Template)]
#[template(path = "flow_json.html")]
pub struct FlowJsonPage {
    pub chrome: Chrome,
    pub name: String,
    pub text: String,
    pub errors: Vec<String>,
    pub notice: Option<String>,
    /// Showing an older version (read-only, with "restore").
    pub version: Option<i64>,
    pub current: i64,
}

#[derive(Template)]
#[template(path = "import.html")]
pub struct ImportPage {
    pub chrome: Chrome,
    pub text: String,
    pub on_conflict: String,
    pub imported: Vec<String>,
    pub unchanged: Vec<String>,
    pub skipped: Vec<String>,
    pub errors: Vec<String>,
    pub done: bool,
}

// ---------------------------------------------------------------- runs

#[derive(Debug, Clone)]
pub struct RunRow {
    pub id: String,
    pub flow: String,
    pub version: i64,
    pub status: String,
    pub attempt: i32,
    pub created: Time,
    pub duration: String,
    pub trigger: String,
    pub parent: Option<String>,
}

#[derive(Template)]
#[template(path = "runs_partial.html")]
pub struct RunsPartial {
    pub rows: Vec<RunRow>,
    pub statuses: Vec<Link>,
    pub flows: Vec<Link>,
    pub next: Option<String>,
    pub first: Option<String>,
    pub flow: Option<String>,
    /// This list's own URL (refresh).
    pub here: String,
    /// Hide the flow column (the list of one flow).
    pub embedded: bool,
}

#[derive(Template)]
#[template(path = "runs.html")]
pub struct RunsPage {
    pub chrome: Chrome,
    pub list: RunsPartial,
}

#[derive(Debug, Clone)]
pub struct StepView {
    pub id: String,
    pub kind: String,
    pub glyph: &'static str,
    pub status: String,
    pub attempts: i32,
    pub duration: String,
    pub offset: String,
    pub input: String,
    pub output: Option<String>,
    pub error: Option<String>,
}

#[derive(Debug, Clone)]
pub struct ChildLink {
    pub id: String,
    pub flow: String,
    pub status: String,
    pub step: String,
}

#[derive(Template)]
#[template(path = "run_partial.html")]
pub struct RunPartial {
    pub csrf: String,
    pub id: String,
    pub flow: String,
    pub flow_exists: bool,
    pub version: i64,
    pub current_version: Option<i64>,
    pub versions: Vec<i64>,
    pub status: String,
    pub attempt: i32,
    pub created: Time,
    pub duration: String,
    pub error: Option<String>,
    pub steps: Vec<StepView>,
    pub trigger_method: String,
    pub trigger_path: String,
    pub trigger_headers: String,
    pub trigger_query: String,
    pub trigger_body: String,
    pub source: Option<String>,
    pub parent: Option<(String, String)>,
    pub children: Vec<ChildLink>,
    pub output: Option<String>,
    pub live: bool,
    pub deliveries: usize,
}

impl RunPartial {
    pub fn is_current(&self, v: i64) -> bool {
        self.current_version == Some(v)
    }
}

#[derive(Template)]
#[template(path = "run.html")]
pub struct RunPage {
    pub chrome: Chrome,
    pub run: RunPartial,
}

#[derive(Debug, Clone)]
pub struct DiffSide {
    pub status: String,
    pub lines: Vec<Line>,
    pub error: Option<String>,
}

#[derive(Debug, Clone)]
pub struct DiffChange {
    pub path: String,
    pub before: String,
    pub after: String,
}

#[derive(Debug, Clone)]
pub struct DiffStep {
    pub id: String,
    pub glyph: &'static str,
    /// Before and after.
    pub sides: Vec<Option<DiffSide>>,
    pub changes: Vec<DiffChange>,
    pub same: bool,
}

#[derive(Debug, Clone)]
pub struct DiffRunHead {
    pub id: String,
    pub version: i64,
    pub status: String,
}

#[derive(Template)]
#[template(path = "diff_partial.html")]
pub struct DiffPartial {
    pub flow: String,
    pub a: DiffRunHead,
    pub b: DiffRunHead,
    pub steps: Vec<DiffStep>,
    pub changed_steps: usize,
    pub live: bool,
    pub url: String,
}

#[derive(Template)]
#[template(path = "diff.html")]
pub struct DiffPage {
    pub chrome: Chrome,
    pub d: DiffPartial,
}

/// Lines of `v` with the paths in `changed` marked (for diff columns).
pub fn marked_lines(v: &Value, changed: &BTreeSet<String>) -> Vec<Line> {
    crate::json::lines(v, changed)
}

// ---------------------------------------------------------------- deliveries, inbox, secrets, settings

#[derive(Debug, Clone)]
pub struct AttemptRow {
    pub attempt: i32,
    pub status: String,
    pub error: String,
    pub duration: String,
    pub time: Time,
    pub body: String,
}

#[derive(Debug, Clone)]
pub struct DeliveryRow {
    pub id: String,
    pub run_id: String,
    pub step_id: String,
    pub url: String,
    pub status: String,
    pub attempts: i32,
    pub next: Option<Time>,
    pub response: String,
    pub error: String,
    pub created: Time,
    pub log: Vec<AttemptRow>,
}

#[derive(Template)]
#[template(path = "deliveries.html")]
pub struct DeliveriesPage {
    pub chrome: Chrome,
    pub rows: Vec<DeliveryRow>,
    pub statuses: Vec<Link>,
    pub notice: Option<String>,
}

#[derive(Debug, Clone)]
pub struct InboxBox {
    pub name: String,
    pub count: i64,
    pub last: Time,
    pub active: bool,
}

#[derive(Debug, Clone)]
pub struct InboxRequest {
    pub id: String,
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: String,
    pub body: String,
    pub time: Time,
}

#[derive(Template)]
#[template(path = "inbox.html")]
pub struct InboxPage {
    pub chrome: Chrome,
    pub boxes: Vec<InboxBox>,
    pub selected: Option<String>,
    pub requests: Vec<InboxRequest>,
    pub base_url: String,
}

#[derive(Debug, Clone)]
pub struct SecretRow {
    pub name: String,
    pub updated: Time,
    pub used_by: Vec<String>,
}

#[derive(Template)]
#[template(path = "secrets.html")]
pub struct SecretsPage {
    pub chrome: Chrome,
    pub rows: Vec<SecretRow>,
    pub name: String,
    pub errors: Errors,
    pub notice: Option<String>,
}

#[derive(Debug, Clone)]
pub struct TokenRow {
    pub id: String,
    pub name: String,
    pub created: Time,
}

#[derive(Template)]
#[template(path = "settings.html")]
pub struct SettingsPage {
    pub chrome: Chrome,
    pub tokens: Vec<TokenRow>,
    pub new_token: Option<String>,
    pub version: &'static str,
    pub database: String,
    pub base_url: String,
}

#[derive(Template)]
#[template(path = "error.html")]
pub struct ErrorPage {
    pub chrome: Chrome,
    pub status: u16,
    pub title: String,
    pub message: String,
}
