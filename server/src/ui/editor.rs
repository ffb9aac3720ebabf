//! The visual flow editor: the flow's DAG as server-rendered SVG, a side panel with the form of
//! the selected node, adding/inserting/deleting/moving steps, template help from the latest run,
//! and test runs whose step statuses colour the graph. Every apply validates the whole flow with
//! the same validator as the API and CLI and, when valid, saves a new version.

use std::{collections::BTreeSet, sync::Arc};

use axum::{
    Form,
    extract::{Path, Query, State},
    http::{HeaderValue, StatusCode},
    response::Response,
};
use flows_engine::{PreparedFlow, issue::index_path};
use hookflow_web::{
    graph,
    json::{child_path, path_hints, pretty},
    views::{
        Choice, EditorPage, EditorPartial, Errors, FlowHead, GEdge, GNode, GraphView, HintGroup,
        Panel, Sample, StepForm, StepResult, TestPanel, Time, TriggerForm, VersionLink, duration,
        glyph,
    },
};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{
    Ui, edit,
    forms::{self, Pairs, get},
    html_status, see_other,
};
use crate::{
    app::{App, AppState},
    error::Error,
    ingest::{Started, start_run},
    store::{
        entities::{flows as flow_rows, runs, step_runs},
        now_ms,
        runs::RunFilter,
    },
};

#[derive(Deserialize, Default, Clone)]
pub struct EditorQuery {
    sel: Option<String>,
    add: Option<String>,
    before: Option<String>,
    panel: Option<String>,
    run: Option<String>,
    from: Option<String>,
    saved: Option<String>,
}

/// A flow as stored, with its prepared form when it still validates.
pub(super) struct Loaded {
    pub row: flow_rows::Model,
    pub doc: Value,
    pub prepared: Option<Arc<PreparedFlow>>,
}

pub(super) async fn load(app: &App, name: &str) -> Result<Loaded, Error> {
    let row = app
        .store
        .get_flow(name)
        .await?
        .ok_or_else(|| Error::NotFound(format!("no flow named '{name}'")))?;
    let doc: Value = serde_json::from_str(&row.definition)?;
    let prepared = app
        .catalog
        .current(name)
        .filter(|(v, _)| *v == row.version)
        .map(|(_, p)| p);
    Ok(Loaded { row, doc, prepared })
}

/// A run shown on the graph (or used for template help), with its step records.
pub(super) struct RunData {
    pub run: runs::Model,
    pub steps: Vec<step_runs::Model>,
    pub trigger: Value,
}

impl RunData {
    fn live(&self) -> bool {
        matches!(self.run.status.as_str(), "queued" | "running")
    }
    fn step(&self, id: &str) -> Option<&step_runs::Model> {
        self.steps.iter().find(|s| s.step_id == id)
    }
    fn output(&self, id: &str) -> Option<Value> {
        self.step(id)
            .and_then(|s| s.output.as_deref())
            .and_then(|o| serde_json::from_str(o).ok())
    }
}

async fn run_data(app: &App, run: runs::Model) -> Result<RunData, Error> {
    let steps = app.store.run_steps(&run).await?;
    let trigger = serde_json::from_str(&run.trigger).unwrap_or(Value::Null);
    Ok(RunData {
        run,
        steps,
        trigger,
    })
}

/// The run named in the URL (if it belongs to this flow).
async fn overlay(app: &App, flow: &str, id: Option<&str>) -> Result<Option<RunData>, Error> {
    let Some(id) = id.filter(|i| flows_engine::ids::is_id("run", i)) else {
        return Ok(None);
    };
    match app.store.get_run(id).await? {
        Some(r) if r.flow == flow => Ok(Some(run_data(app, r).await?)),
        _ => Ok(None),
    }
}

async fn latest_run(app: &App, flow: &str) -> Result<Option<runs::Model>, Error> {
    let rows = app
        .store
        .list_runs(&RunFilter {
            flow: Some(flow.to_string()),
            limit: 1,
            ..Default::default()
        })
        .await?;
    Ok(rows.into_iter().next())
}

fn steps_of(doc: &Value) -> Vec<Value> {
    doc.get("steps")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

fn sid(step: &Value) -> String {
    step.get("id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

fn skind(step: &Value) -> String {
    step.get("type")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

fn trigger_kind(doc: &Value) -> String {
    doc["trigger"]
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("webhook")
        .to_string()
}

fn hook_path(l: &Loaded) -> Option<String> {
    if trigger_kind(&l.doc) != "webhook" {
        return None;
    }
    Some(
        l.doc["trigger"]
            .get("path")
            .and_then(Value::as_str)
            .unwrap_or(&l.row.name)
            .to_string(),
    )
}

fn trigger_summary(doc: &Value, name: &str) -> String {
    let t = &doc["trigger"];
    match trigger_kind(doc).as_str() {
        "webhook" => {
            let methods = t
                .get("methods")
                .and_then(Value::as_array)
                .map(|m| {
                    m.iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_else(|| "POST".into());
            let path = t.get("path").and_then(Value::as_str).unwrap_or(name);
            let verify = t["verify"]
                .get("scheme")
                .and_then(Value::as_str)
                .map(|s| format!(" · {s}"))
                .unwrap_or_default();
            format!("{methods} /hooks/{path}{verify}")
        }
        "manual" => "started by hand or API".into(),
        "schedule" => match (t.get("every_s"), t.get("cron")) {
            (Some(e), _) => format!("every {e} s"),
            (_, Some(c)) => format!("cron {}", c.as_str().unwrap_or_default()),
            _ => "schedule".into(),
        },
        other => other.to_string(),
    }
}

fn short(s: &str, n: usize) -> String {
    if s.chars().count() > n {
        format!("{}…", s.chars().take(n - 1).collect::<String>())
    } else {
        s.to_string()
    }
}

/// The DAG as positioned nodes and edges.
fn graph_view(l: &Loaded, sel: &str, run: Option<&RunData>) -> GraphView {
    let name = &l.row.name;
    let steps = steps_of(&l.doc);
    let ids: Vec<String> = steps.iter().map(sid).collect();
    let run_q = run
        .map(|r| format!("&run={}", r.run.id))
        .unwrap_or_default();
    let mut deps: Vec<Vec<usize>> = vec![Vec::new()];
    for s in &ids {
        let d = edit::deps_of(&l.doc, s);
        let idx: Vec<usize> = d
            .iter()
            .filter_map(|x| ids.iter().position(|i| i == x).map(|p| p + 1))
            .collect();
        deps.push(if idx.is_empty() { vec![0] } else { idx });
    }
    let layout = graph::layout(&deps);
    let has_children: Vec<bool> = (0..deps.len())
        .map(|i| deps.iter().skip(1).any(|d| d.contains(&i)))
        .collect();
    let summaries: Vec<String> = match &l.prepared {
        Some(p) if p.nodes.len() == steps.len() => {
            p.nodes.iter().map(|n| n.exec.summary()).collect()
        }
        _ => steps.iter().map(|_| String::new()).collect(),
    };
    let mut nodes = Vec::new();
    let tkind = trigger_kind(&l.doc);
    let (x, y) = layout.pos[0];
    nodes.push(GNode {
        href: format!("/flows/{name}?sel=trigger{run_q}"),
        id: "trigger".into(),
        glyph: glyph(&tkind),
        kind: tkind,
        summary: short(&trigger_summary(&l.doc, name), 40),
        x,
        y,
        w: graph::NODE_W,
        h: graph::NODE_H,
        status: None,
        detail: String::new(),
        selected: sel == "trigger",
        add_href: if has_children[0] {
            String::new()
        } else {
            format!("/flows/{name}?add=trigger")
        },
        trigger: true,
    });
    for (i, s) in steps.iter().enumerate() {
        let id = &ids[i];
        let (x, y) = layout.pos[i + 1];
        let rec = run.and_then(|r| r.step(id));
        let kind = skind(s);
        nodes.push(GNode {
            href: format!("/flows/{name}?sel={}{run_q}", urlencode(id)),
            id: id.clone(),
            glyph: glyph(&kind),
            kind,
            summary: short(&summaries[i], 40),
            x,
            y,
            w: graph::NODE_W,
            h: graph::NODE_H,
            status: rec
                .map(|r| r.status.clone())
                .or_else(|| run.filter(|r| r.live()).map(|_| "pending".to_string())),
            detail: rec.map(|r| duration(r.duration_ms)).unwrap_or_default(),
            selected: sel == id,
            add_href: if has_children[i + 1] {
                String::new()
            } else {
                format!("/flows/{name}?add={}", urlencode(id))
            },
            trigger: false,
        });
    }
    let mut edges = Vec::new();
    for (j, d) in deps.iter().enumerate().skip(1) {
        for &p in d {
            let (path, (mx, my)) = graph::edge(layout.pos[p], layout.pos[j]);
            let parent = if p == 0 {
                "trigger".to_string()
            } else {
                ids[p - 1].clone()
            };
            let class = match run.and_then(|r| r.step(&ids[j - 1])) {
                Some(r) if r.status == "skipped" => "st-skipped".to_string(),
                Some(_) => "st-succeeded".to_string(),
                None => String::new(),
            };
            edges.push(GEdge {
                d: path,
                mx,
                my,
                insert_href: format!(
                    "/flows/{name}?add={}&before={}",
                    urlencode(&parent),
                    urlencode(&ids[j - 1])
                ),
                class,
            });
        }
    }
    let last = ids.last().cloned().unwrap_or_else(|| "trigger".into());
    GraphView {
        flow: name.clone(),
        width: layout.width,
        height: layout.height,
        nodes,
        edges,
        poll_url: run.filter(|r| r.live()).map(|r| {
            format!(
                "/flows/{name}/graph?run={}&sel={}",
                r.run.id,
                urlencode(sel)
            )
        }),
        run_id: run.map(|r| r.run.id.clone()),
        run_status: run.map(|r| r.run.status.clone()),
        add_href: format!("/flows/{name}?add={}", urlencode(&last)),
    }
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Paths a step may use, from a run: the trigger, its input, the steps before it, the run.
fn hints(doc: &Value, deps: &[String], run: Option<&RunData>) -> Vec<HintGroup> {
    let Some(r) = run else { return Vec::new() };
    let mut groups = Vec::new();
    let body = r.trigger.get("body").cloned().unwrap_or(Value::Null);
    let input = match deps {
        [] => body.clone(),
        [one] => r.output(one).unwrap_or(Value::Null),
        many => Value::Object(
            many.iter()
                .map(|d| (d.clone(), r.output(d).unwrap_or(Value::Null)))
                .collect(),
        ),
    };
    groups.push(HintGroup {
        title: "Input".into(),
        hints: path_hints("$.input", &input, 4, 30),
    });
    groups.push(HintGroup {
        title: "Trigger body".into(),
        hints: path_hints("$.trigger.body", &body, 5, 40),
    });
    let mut req = Vec::new();
    for key in ["method", "path", "query", "headers"] {
        if let Some(v) = r.trigger.get(key) {
            req.extend(path_hints(&child_path("$.trigger", key), v, 1, 25));
        }
    }
    groups.push(HintGroup {
        title: "Trigger request".into(),
        hints: req,
    });
    // Every step this one (transitively) runs after.
    let mut seen = BTreeSet::new();
    let mut stack: Vec<String> = deps.to_vec();
    while let Some(d) = stack.pop() {
        if seen.insert(d.clone()) {
            stack.extend(edit::deps_of(doc, &d));
        }
    }
    let mut steps = Vec::new();
    for s in steps_of(doc).iter().map(sid).filter(|s| seen.contains(s)) {
        if let Some(out) = r.output(&s) {
            steps.extend(path_hints(&child_path("$.steps", &s), &out, 3, 15));
        }
    }
    if !steps.is_empty() {
        groups.push(HintGroup {
            title: "Earlier steps".into(),
            hints: steps,
        });
    }
    groups.push(HintGroup {
        title: "Run".into(),
        hints: ["id", "flow", "attempt"]
            .iter()
            .map(|k| hookflow_web::json::PathHint {
                path: format!("$.run.{k}"),
                preview: String::new(),
            })
            .collect(),
    });
    groups.retain(|g| !g.hints.is_empty());
    groups
}

fn step_result(r: &RunData, id: &str) -> Option<StepResult> {
    let s = r.step(id)?;
    let parse = |t: &Option<String>| {
        t.as_deref()
            .and_then(|t| serde_json::from_str::<Value>(t).ok())
    };
    Some(StepResult {
        run_id: r.run.id.clone(),
        status: s.status.clone(),
        attempts: s.attempts,
        duration: duration(s.duration_ms),
        input: pretty(&parse(&s.input).unwrap_or(Value::Null)),
        output: parse(&s.output).map(|v| pretty(&v)),
        error: s.error.clone(),
    })
}

/// The panel form of an existing step, or of a new one.
async fn step_panel(
    app: &App,
    l: &Loaded,
    form: StepForm,
    deps: Vec<String>,
    original: Option<&str>,
    run: Option<&RunData>,
    hint_run: Option<&RunData>,
) -> StepForm {
    let name = &l.row.name;
    let ids: Vec<String> = steps_of(&l.doc).iter().map(sid).collect();
    let mut f = form;
    f.flow = name.clone();
    f.is_new = original.is_none();
    f.original = original.unwrap_or_default().to_string();
    f.action = match original {
        Some(id) => format!("/flows/{name}/steps/{}", urlencode(id)),
        None => format!("/flows/{name}/steps"),
    };
    f.after = ids
        .iter()
        .filter(|i| Some(i.as_str()) != original)
        .map(|i| Choice {
            value: i.clone(),
            label: i.clone(),
            checked: deps.contains(i),
        })
        .collect();
    f.kinds = app
        .registry
        .kinds()
        .map(|k| {
            (
                k.to_string(),
                app.registry
                    .get(k)
                    .map(|c| c.describe().to_string())
                    .unwrap_or_default(),
            )
        })
        .collect();
    f.flow_names = app
        .catalog
        .names()
        .into_iter()
        .filter(|n| n != name)
        .collect();
    let h = hint_run.or(run);
    f.hints = hints(&l.doc, &deps, h);
    f.hints_from = h.map(|r| r.run.id.clone());
    f.result = original.and_then(|id| run.and_then(|r| step_result(r, id)));
    if let Some(pos) = original.and_then(|o| ids.iter().position(|i| i == o)) {
        f.can_move_up = pos > 0;
        f.can_move_down = pos + 1 < ids.len();
    }
    f
}

fn step_json<'a>(doc: &'a Value, id: &str) -> Option<&'a Map<String, Value>> {
    doc.get("steps")?
        .as_array()?
        .iter()
        .find(|s| s.get("id").and_then(Value::as_str) == Some(id))?
        .as_object()
}

async fn test_panel(
    app: &App,
    l: &Loaded,
    from: Option<&str>,
    payload: Option<String>,
    error: Option<String>,
) -> Result<TestPanel, Error> {
    let name = &l.row.name;
    let now = now_ms();
    let recent = app
        .store
        .list_runs(&RunFilter {
            flow: Some(name.clone()),
            limit: 8,
            ..Default::default()
        })
        .await?;
    let samples_runs = recent
        .iter()
        .map(|r| Sample {
            label: short(&r.id, 18),
            detail: format!("{} · {}", r.status, Time::at(r.created_at, now).rel),
            href: format!("/flows/{name}?panel=test&from=run:{}", r.id),
        })
        .collect();
    let inbox = app.store.recent_inbox(8).await?;
    let samples_inbox = inbox
        .iter()
        .map(|r| Sample {
            label: format!("inbox/{}", r.inbox),
            detail: format!("{} · {}", r.method, Time::at(r.received_at, now).rel),
            href: format!("/flows/{name}?panel=test&from=req:{}", r.id),
        })
        .collect();
    let payload = match payload {
        Some(p) => p,
        None => {
            let body = match from.and_then(|f| f.split_once(':')) {
                Some(("run", id)) => app
                    .store
                    .get_run(id)
                    .await?
                    .and_then(|r| serde_json::from_str::<Value>(&r.trigger).ok())
                    .map(|t| t["body"].clone()),
                Some(("req", id)) => app
                    .store
                    .inbox_request(id)
                    .await?
                    .map(|r| serde_json::from_str(&r.body).unwrap_or(Value::String(r.body))),
                _ => recent
                    .first()
                    .and_then(|r| serde_json::from_str::<Value>(&r.trigger).ok())
                    .map(|t| t["body"].clone()),
            };
            pretty(&body.unwrap_or_else(|| json!({})))
        }
    };
    Ok(TestPanel {
        flow: name.clone(),
        payload,
        samples_runs,
        samples_inbox,
        error,
    })
}

/// Everything around the panel: header, graph, versions.
async fn editor(
    app: &App,
    ui: &Ui,
    l: &Loaded,
    sel: &str,
    panel: Panel,
    run: Option<&RunData>,
    notice: Option<String>,
) -> Result<EditorPartial, Error> {
    let name = &l.row.name;
    let hook_url = hook_path(l).map(|p| format!("{}/hooks/{p}", ui.base));
    let curl = hook_url.as_ref().map(|u| {
        format!(
            "curl -X POST '{u}' -H 'content-type: application/json' -d '{{\"hello\": \"world\"}}'"
        )
    });
    let now = now_ms();
    let versions = app
        .store
        .flow_versions(name)
        .await?
        .into_iter()
        .take(10)
        .map(|v| VersionLink {
            version: v.version,
            current: v.version == l.row.version,
            time: Time::at(v.created_at, now),
        })
        .collect();
    let last_run = latest_run(app, name).await?.map(|r| r.id);
    Ok(EditorPartial {
        csrf: ui.csrf(),
        head: FlowHead {
            name: name.clone(),
            title: l.row.title.clone().unwrap_or_default(),
            description: l
                .doc
                .get("description")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            enabled: l.row.enabled,
            version: l.row.version,
            trigger: trigger_kind(&l.doc),
            hook_url,
            curl,
        },
        graph: graph_view(l, sel, run),
        panel,
        versions,
        notice,
        last_run,
    })
}

fn respond(ui: &Ui, status: StatusCode, e: EditorPartial, push: Option<String>) -> Response {
    if ui.htmx {
        let mut r = html_status(status, &e);
        if let Some(u) = push.and_then(|u| HeaderValue::from_str(&u).ok()) {
            r.headers_mut().insert("hx-push-url", u);
        }
        r
    } else {
        html_status(
            status,
            &EditorPage {
                chrome: ui.chrome("flows"),
                e,
            },
        )
    }
}

/// The panel for the query: a step, the trigger, a new step, or the test form.
async fn panel_for(
    app: &App,
    l: &Loaded,
    q: &EditorQuery,
    run: Option<&RunData>,
) -> Result<(String, Panel), Error> {
    let hint_run = match run {
        Some(_) => None,
        None => match latest_run(app, &l.row.name).await? {
            Some(r) => Some(run_data(app, r).await?),
            None => None,
        },
    };
    if q.panel.as_deref() == Some("test") {
        return Ok((
            String::new(),
            Panel::Test(test_panel(app, l, q.from.as_deref(), None, None).await?),
        ));
    }
    if let Some(after) = &q.add {
        let kind = "http";
        let id = edit::fresh_id(&l.doc, kind);
        let form = forms::step_form(&forms::new_step(kind, &id));
        let deps = if after == "trigger" {
            vec![]
        } else {
            vec![after.clone()]
        };
        let mut f = step_panel(app, l, form, deps, None, run, hint_run.as_ref()).await;
        f.insert_after = after.clone();
        f.insert_before = q.before.clone().unwrap_or_default();
        return Ok((String::new(), Panel::Step(Box::new(f))));
    }
    let sel = q.sel.clone().unwrap_or_else(|| "trigger".into());
    if let Some(step) = step_json(&l.doc, &sel) {
        let deps = edit::deps_of(&l.doc, &sel);
        let f = step_panel(
            app,
            l,
            forms::step_form(step),
            deps,
            Some(&sel),
            run,
            hint_run.as_ref(),
        )
        .await;
        return Ok((sel, Panel::Step(Box::new(f))));
    }
    let mut t = forms::trigger_form(&l.doc);
    t.hook_url = None;
    t.result = None;
    Ok(("trigger".into(), Panel::Trigger(Box::new(t))))
}

pub async fn page(
    State(app): State<AppState>,
    ui: Ui,
    Path(name): Path<String>,
    Query(q): Query<EditorQuery>,
) -> Result<Response, Error> {
    let l = load(&app, &name).await?;
    let run = overlay(&app, &name, q.run.as_deref()).await?;
    let (sel, panel) = panel_for(&app, &l, &q, run.as_ref()).await?;
    let notice = q.saved.as_ref().map(|v| format!("Saved as version {v}."));
    let e = editor(&app, &ui, &l, &sel, panel, run.as_ref(), notice).await?;
    Ok(respond(&ui, StatusCode::OK, e, None))
}

/// The graph alone (polled while a test run is in progress).
pub async fn graph(
    State(app): State<AppState>,
    ui: Ui,
    Path(name): Path<String>,
    Query(q): Query<EditorQuery>,
) -> Result<Response, Error> {
    let _ = &ui;
    let l = load(&app, &name).await?;
    let run = overlay(&app, &name, q.run.as_deref()).await?;
    Ok(super::html(&graph_view(
        &l,
        q.sel.as_deref().unwrap_or(""),
        run.as_ref(),
    )))
}

/// Save a changed document; on success the editor shows `sel`, else the form with its problems.
async fn save_then(
    app: &App,
    ui: &Ui,
    name: &str,
    doc: Value,
    sel: &str,
) -> Result<Result<Response, Vec<flows_engine::Issue>>, Error> {
    match crate::flows::save(app, doc, Some(name)).await {
        Ok(saved) => {
            let url = if sel.is_empty() {
                format!("/flows/{name}")
            } else {
                format!("/flows/{name}?sel={}", urlencode(sel))
            };
            if !ui.htmx {
                let sep = if url.contains('?') { '&' } else { '?' };
                return Ok(Ok(see_other(&format!("{url}{sep}saved={}", saved.version))));
            }
            let l = load(app, name).await?;
            let q = EditorQuery {
                sel: Some(if sel.is_empty() {
                    "trigger".into()
                } else {
                    sel.into()
                }),
                ..Default::default()
            };
            let (sel, panel) = panel_for(app, &l, &q, None).await?;
            let notice = if saved.changed {
                format!("Saved as version {}.", saved.version)
            } else {
                "No changes to save.".to_string()
            };
            let e = editor(app, ui, &l, &sel, panel, None, Some(notice)).await?;
            Ok(Ok(respond(ui, StatusCode::OK, e, Some(url))))
        }
        Err(Error::Invalid(issues)) => Ok(Err(issues)),
        Err(other) => Err(other),
    }
}

/// Problems of the step at `index` (relative to it) and the rest (with their full location).
fn split_issues(
    issues: &[flows_engine::Issue],
    prefix: &str,
) -> (Vec<(String, String)>, Vec<String>) {
    let mut mine = Vec::new();
    let mut other = Vec::new();
    for i in issues {
        if i.path == prefix {
            mine.push((String::new(), i.message.clone()));
        } else if let Some(rest) = i
            .path
            .strip_prefix(prefix)
            .and_then(|r| r.strip_prefix('.'))
        {
            mine.push((rest.to_string(), i.message.clone()));
        } else {
            other.push(i.to_string());
        }
    }
    (mine, other)
}

/// Show the step form again as posted, with `errors`.
async fn step_again(
    app: &App,
    ui: &Ui,
    l: &Loaded,
    p: &Pairs,
    original: Option<&str>,
    errors: Errors,
    status: StatusCode,
) -> Result<Response, Error> {
    let op = get(p, "op");
    let deps: Vec<String> = forms::all(p, "after")
        .into_iter()
        .map(str::to_string)
        .collect();
    let mut form = forms::form_from_pairs(p, op);
    if original.is_none() && op == "refresh" {
        // A new step whose type changed: a fresh id and the new type's starting configuration.
        let kinds: Vec<&str> = app.registry.kinds().collect();
        if kinds.iter().any(|k| edit::fresh_id(&l.doc, k) == form.id) {
            form.id = edit::fresh_id(&l.doc, &form.kind);
        }
        let defaults = forms::step_form(&forms::new_step(&form.kind, &form.id));
        if form.output.trim().is_empty() {
            form.output = defaults.output;
        }
        if form.conds.iter().all(|c| c.path.trim().is_empty()) {
            form.conds = defaults.conds;
        }
        if form.method.is_empty() && form.kind == "http" {
            form.method = defaults.method;
        }
    }
    let mut f = step_panel(app, l, form, deps, original, None, None).await;
    if f.hints.is_empty()
        && let Some(r) = latest_run(app, &l.row.name).await?
    {
        let rd = run_data(app, r).await?;
        f.hints = hints(
            &l.doc,
            &forms::all(p, "after")
                .into_iter()
                .map(str::to_string)
                .collect::<Vec<_>>(),
            Some(&rd),
        );
        f.hints_from = Some(rd.run.id.clone());
    }
    f.insert_after = get(p, "insert_after").to_string();
    f.insert_before = get(p, "insert_before").to_string();
    f.errors = errors;
    let sel = original.unwrap_or_default().to_string();
    let e = editor(app, ui, l, &sel, Panel::Step(Box::new(f)), None, None).await?;
    Ok(respond(ui, status, e, None))
}

async fn step_post(
    app: &App,
    ui: &Ui,
    name: &str,
    original: Option<&str>,
    p: Pairs,
) -> Result<Response, Error> {
    let l = load(app, name).await?;
    let op = match get(&p, "op") {
        "" => "apply",
        o => o,
    };
    match op {
        "refresh" | "add_header" | "add_query" | "add_cond" => {
            return step_again(app, ui, &l, &p, original, Errors::default(), StatusCode::OK).await;
        }
        "delete" | "up" | "down" if original.is_some() => {
            let id = original.unwrap_or_default();
            let (doc, sel) = match op {
                "delete" => (edit::delete_step(&l.doc, id), ""),
                "up" => (edit::move_step(&l.doc, id, -1), id),
                _ => (edit::move_step(&l.doc, id, 1), id),
            };
            return match save_then(app, ui, name, doc, sel).await? {
                Ok(r) => Ok(r),
                Err(issues) => {
                    let errors = Errors {
                        general: issues.iter().map(ToString::to_string).collect(),
                        ..Default::default()
                    };
                    step_again(
                        app,
                        ui,
                        &l,
                        &p,
                        original,
                        errors,
                        StatusCode::UNPROCESSABLE_ENTITY,
                    )
                    .await
                }
            };
        }
        _ => {}
    }
    let base = original.and_then(|o| step_json(&l.doc, o));
    let (step, found) = forms::step_from_pairs(&p, base);
    let kind = get(&p, "kind").to_string();
    if !found.is_empty() {
        let mut errors = Errors::default();
        forms::add_field_errors(&mut errors, found);
        return step_again(
            app,
            ui,
            &l,
            &p,
            original,
            errors,
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    }
    let deps: Vec<String> = forms::all(&p, "after")
        .into_iter()
        .map(str::to_string)
        .collect();
    let new_id = sid(&step);
    let doc = match original {
        Some(o) => edit::replace_step(&l.doc, o, step, deps),
        None => {
            let after = match get(&p, "insert_after") {
                "" | "trigger" => None,
                a => Some(a),
            };
            let before = Some(get(&p, "insert_before")).filter(|b| !b.is_empty());
            let mut doc = edit::insert_step(&l.doc, step, after, before);
            // The "runs after" boxes win over the insertion point when the user changed them.
            let chosen = deps;
            let implied: Vec<String> = after.map(|a| vec![a.to_string()]).unwrap_or_default();
            if chosen != implied
                && let Some(s) = step_json(&doc, &new_id).cloned()
            {
                doc = edit::replace_step(&doc, &new_id, Value::Object(s), chosen);
            }
            doc
        }
    };
    let index = steps_of(&doc)
        .iter()
        .position(|s| sid(s) == new_id)
        .unwrap_or(0);
    match save_then(app, ui, name, doc, &new_id).await? {
        Ok(r) => Ok(r),
        Err(issues) => {
            let (mine, other) = split_issues(&issues, &index_path("steps", index));
            let mut errors = forms::field_errors(&mine, &kind);
            errors.general.extend(other);
            step_again(
                app,
                ui,
                &l,
                &p,
                original,
                errors,
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await
        }
    }
}

pub async fn apply_step(
    State(app): State<AppState>,
    ui: Ui,
    Path((name, id)): Path<(String, String)>,
    Form(p): Form<Pairs>,
) -> Result<Response, Error> {
    step_post(&app, &ui, &name, Some(&id), p).await
}

pub async fn add_step(
    State(app): State<AppState>,
    ui: Ui,
    Path(name): Path<String>,
    Form(p): Form<Pairs>,
) -> Result<Response, Error> {
    step_post(&app, &ui, &name, None, p).await
}

pub async fn apply_trigger(
    State(app): State<AppState>,
    ui: Ui,
    Path(name): Path<String>,
    Form(p): Form<Pairs>,
) -> Result<Response, Error> {
    let l = load(&app, &name).await?;
    let again = |errors: Errors, status: StatusCode| {
        let mut t: TriggerForm = forms::trigger_form_from_pairs(&p, &name);
        t.errors = errors;
        (t, status)
    };
    let (t, status) = if get(&p, "op") == "refresh" {
        again(Errors::default(), StatusCode::OK)
    } else {
        let (doc, found) = forms::apply_trigger(&l.doc, &p);
        if found.is_empty() {
            match save_then(&app, &ui, &name, doc, "trigger").await? {
                Ok(r) => return Ok(r),
                Err(issues) => {
                    let mut trig = Vec::new();
                    let mut general = Vec::new();
                    for i in &issues {
                        match i.path.strip_prefix("trigger.") {
                            Some(rest) => trig.push((rest.to_string(), i.message.clone())),
                            None if ["title", "description", "enabled"]
                                .contains(&i.path.as_str()) =>
                            {
                                trig.push((i.path.clone(), i.message.clone()))
                            }
                            None if i.path == "trigger" => general.push(i.message.clone()),
                            None => general.push(i.to_string()),
                        }
                    }
                    let mut errors = forms::field_errors(&trig, "trigger");
                    errors.general.extend(general);
                    again(errors, StatusCode::UNPROCESSABLE_ENTITY)
                }
            }
        } else {
            let mut errors = Errors::default();
            forms::add_field_errors(&mut errors, found);
            again(errors, StatusCode::UNPROCESSABLE_ENTITY)
        }
    };
    let e = editor(
        &app,
        &ui,
        &l,
        "trigger",
        Panel::Trigger(Box::new(t)),
        None,
        None,
    )
    .await?;
    Ok(respond(&ui, status, e, None))
}

/// Run the current version with a pasted payload; the graph then follows the run.
pub async fn test(
    State(app): State<AppState>,
    ui: Ui,
    Path(name): Path<String>,
    Form(p): Form<Pairs>,
) -> Result<Response, Error> {
    let l = load(&app, &name).await?;
    let text = get(&p, "payload").to_string();
    let payload = if text.trim().is_empty() {
        Ok(json!({}))
    } else {
        serde_json::from_str::<Value>(&text)
    };
    let (version, _) = app.catalog.current(&name).ok_or_else(|| {
        Error::Conflict(format!(
            "flow '{name}' does not validate any more; fix it in the JSON view first"
        ))
    })?;
    let payload = match payload {
        Ok(v) => v,
        Err(e) => {
            let t = test_panel(
                &app,
                &l,
                None,
                Some(text),
                Some(format!("The payload is not valid JSON: {e}")),
            )
            .await?;
            let e = editor(&app, &ui, &l, "", Panel::Test(t), None, None).await?;
            return Ok(respond(&ui, StatusCode::UNPROCESSABLE_ENTITY, e, None));
        }
    };
    let run_id = start_run(&app, &name, version, Started::manual(payload)).await?;
    let url = format!("/flows/{name}?panel=test&run={run_id}");
    if !ui.htmx {
        return Ok(see_other(&url));
    }
    let run = overlay(&app, &name, Some(&run_id)).await?;
    let t = test_panel(&app, &l, None, Some(text), None).await?;
    let e = editor(
        &app,
        &ui,
        &l,
        "",
        Panel::Test(t),
        run.as_ref(),
        Some(format!("Test run {run_id} started.")),
    )
    .await?;
    Ok(respond(&ui, StatusCode::OK, e, Some(url)))
}
