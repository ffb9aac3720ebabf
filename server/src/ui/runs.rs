//! The runs explorer: the list (per flow and global, by status, newest first, paged), a run's
//! page (step timeline with input/output/error, the trigger request, parent and chained runs,
//! retry and replay; live while it runs), and replay with diff.

use std::collections::BTreeSet;

use axum::{
    Form,
    extract::{Path, Query, State},
    response::Response,
};
use flows_engine::{RunStatus, ids::is_id};
use hookflow_web::{
    json::pretty,
    views::{
        ChildLink, DiffChange, DiffPage, DiffPartial, DiffRunHead, DiffSide, DiffStep, Link,
        RunPage, RunPartial, RunRow, RunsPage, RunsPartial, StepView, Time, duration, glyph,
        marked_lines,
    },
};
use serde::Deserialize;
use serde_json::Value;

use super::{
    Ui,
    forms::{Pairs, get},
    html, see_other,
};
use crate::{
    app::{App, AppState},
    error::Error,
    rundiff,
    store::{entities::runs, now_ms, runs::RunFilter},
};

const PAGE: u64 = 50;

#[derive(Deserialize, Default)]
pub struct ListQuery {
    flow: Option<String>,
    status: Option<String>,
    cursor: Option<String>,
}

fn runs_url(flow: Option<&str>, status: Option<&str>, cursor: Option<&str>) -> String {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    if let Some(f) = flow {
        q.append_pair("flow", f);
    }
    if let Some(s) = status {
        q.append_pair("status", s);
    }
    if let Some(c) = cursor {
        q.append_pair("cursor", c);
    }
    let q = q.finish();
    if q.is_empty() {
        "/runs".into()
    } else {
        format!("/runs?{q}")
    }
}

/// `POST shop/orders · {id, email, total…}`: what started a run, in one line.
fn trigger_line(trigger: &str) -> String {
    let t: Value = serde_json::from_str(trigger).unwrap_or(Value::Null);
    let method = t["method"].as_str().unwrap_or("");
    let path = t["path"]
        .as_str()
        .map(|p| format!(" {p}"))
        .unwrap_or_default();
    let source = t["source"]["flow"]
        .as_str()
        .map(|f| format!(" ← {f}"))
        .unwrap_or_default();
    let body = match &t["body"] {
        Value::Object(m) => {
            let keys: Vec<&str> = m.keys().take(4).map(String::as_str).collect();
            format!(
                " · {{{}{}}}",
                keys.join(", "),
                if m.len() > 4 { ", …" } else { "" }
            )
        }
        Value::Null => String::new(),
        other => {
            let s = other.to_string();
            format!(" · {}", s.chars().take(40).collect::<String>())
        }
    };
    format!("{method}{path}{source}{body}")
}

fn run_duration(r: &runs::Model) -> String {
    match (r.started_at, r.finished_at) {
        (Some(s), Some(f)) => duration(f - s),
        (Some(s), None) => format!("{}…", duration(now_ms() - s)),
        _ => "—".into(),
    }
}

pub async fn list(
    State(app): State<AppState>,
    ui: Ui,
    Query(q): Query<ListQuery>,
) -> Result<Response, Error> {
    let status = q.status.filter(|s| RunStatus::parse(s).is_some());
    let flow = q.flow.filter(|f| !f.is_empty());
    let cursor = q.cursor.filter(|c| is_id("run", c));
    let mut rows = app
        .store
        .list_runs(&RunFilter {
            flow: flow.clone(),
            status: status.clone(),
            cursor: cursor.clone(),
            limit: PAGE + 1,
        })
        .await?;
    let next = if rows.len() as u64 > PAGE {
        rows.truncate(PAGE as usize);
        rows.last()
            .map(|r| runs_url(flow.as_deref(), status.as_deref(), Some(&r.id)))
    } else {
        None
    };
    let now = now_ms();
    let rows = rows
        .iter()
        .map(|r| RunRow {
            id: r.id.clone(),
            flow: r.flow.clone(),
            version: r.version,
            status: r.status.clone(),
            attempt: r.attempt,
            created: Time::at(r.created_at, now),
            duration: run_duration(r),
            trigger: trigger_line(&r.trigger),
            parent: r.parent_run.clone(),
        })
        .collect();
    let mut statuses = vec![Link {
        label: "All".into(),
        href: runs_url(flow.as_deref(), None, None),
        active: status.is_none(),
    }];
    for s in [
        "succeeded",
        "failed",
        "filtered",
        "running",
        "queued",
        "cancelled",
    ] {
        statuses.push(Link {
            label: s.into(),
            href: runs_url(flow.as_deref(), Some(s), None),
            active: status.as_deref() == Some(s),
        });
    }
    let mut flows = vec![Link {
        label: "all flows".into(),
        href: runs_url(None, status.as_deref(), None),
        active: flow.is_none(),
    }];
    flows.extend(app.store.list_flows().await?.into_iter().map(|f| Link {
        href: runs_url(Some(&f.name), status.as_deref(), None),
        active: flow.as_deref() == Some(f.name.as_str()),
        label: f.name,
    }));
    let list = RunsPartial {
        rows,
        statuses,
        flows,
        next,
        first: cursor
            .as_ref()
            .map(|_| runs_url(flow.as_deref(), status.as_deref(), None)),
        here: runs_url(flow.as_deref(), status.as_deref(), cursor.as_deref()),
        embedded: flow.is_some(),
        flow,
    };
    Ok(if ui.htmx {
        html(&list)
    } else {
        html(&RunsPage {
            chrome: ui.chrome("runs"),
            list,
        })
    })
}

async fn find(app: &App, id: &str) -> Result<runs::Model, Error> {
    let missing = || Error::NotFound(format!("no run '{id}'"));
    if !is_id("run", id) {
        return Err(missing());
    }
    app.store.get_run(id).await?.ok_or_else(missing)
}

fn parse(t: &Option<String>) -> Option<Value> {
    t.as_deref().and_then(|t| serde_json::from_str(t).ok())
}

async fn run_partial(app: &App, ui: &Ui, run: runs::Model) -> Result<RunPartial, Error> {
    let mut steps = app.store.run_steps(&run).await?;
    let flow = app
        .catalog
        .version(&app.store, &app.registry, &run.flow, run.version)
        .await
        .ok();
    let kind_of = |id: &str| {
        flow.as_ref()
            .and_then(|f| f.flow.steps.iter().find(|s| s.id == id))
            .map(|s| s.kind.clone())
            .unwrap_or_default()
    };
    if let Some(f) = &flow {
        steps.sort_by_key(|s| {
            f.flow
                .steps
                .iter()
                .position(|x| x.id == s.step_id)
                .unwrap_or(usize::MAX)
        });
    }
    let start = run.started_at.unwrap_or(run.created_at);
    let views = steps
        .iter()
        .map(|s| {
            let kind = kind_of(&s.step_id);
            StepView {
                id: s.step_id.clone(),
                glyph: glyph(&kind),
                kind,
                status: s.status.clone(),
                attempts: s.attempts,
                duration: duration(s.duration_ms),
                offset: duration(s.started_at - start),
                input: pretty(&parse(&s.input).unwrap_or(Value::Null)),
                output: parse(&s.output).map(|v| pretty(&v)),
                error: s.error.clone(),
            }
        })
        .collect();
    let trigger: Value = serde_json::from_str(&run.trigger).unwrap_or(Value::Null);
    let children = app
        .store
        .child_runs(&run.id)
        .await?
        .into_iter()
        .map(|c| ChildLink {
            id: c.id,
            flow: c.flow,
            status: c.status,
            step: c.parent_step.unwrap_or_default(),
        })
        .collect();
    let current = app.catalog.current(&run.flow).map(|(v, _)| v);
    let versions = if current.is_some() {
        app.store
            .flow_versions(&run.flow)
            .await?
            .into_iter()
            .map(|v| v.version)
            .collect()
    } else {
        vec![]
    };
    let deliveries = app
        .store
        .list_deliveries(None, Some(&run.id), 100)
        .await?
        .len();
    Ok(RunPartial {
        csrf: ui.csrf(),
        flow_exists: current.is_some(),
        current_version: current,
        versions,
        live: matches!(run.status.as_str(), "queued" | "running"),
        created: Time::at(run.created_at, now_ms()),
        duration: run_duration(&run),
        steps: views,
        trigger_method: trigger["method"].as_str().unwrap_or_default().to_string(),
        trigger_path: trigger["path"]
            .as_str()
            .map(|p| format!("/hooks/{p}"))
            .unwrap_or_else(|| "(manual, replayed or chained)".into()),
        trigger_headers: pretty(&trigger["headers"]),
        trigger_query: pretty(&trigger["query"]),
        trigger_body: pretty(&trigger["body"]),
        source: (!trigger["source"].is_null()).then(|| trigger["source"].to_string()),
        parent: run
            .parent_run
            .clone()
            .map(|p| (p, run.parent_step.clone().unwrap_or_default())),
        children,
        output: parse(&run.output).map(|v| pretty(&v)),
        deliveries,
        error: run.error.clone(),
        status: run.status.clone(),
        attempt: run.attempt,
        version: run.version,
        flow: run.flow.clone(),
        id: run.id,
    })
}

pub async fn page(
    State(app): State<AppState>,
    ui: Ui,
    Path(id): Path<String>,
) -> Result<Response, Error> {
    let run = find(&app, &id).await?;
    let partial = run_partial(&app, &ui, run).await?;
    Ok(if ui.htmx {
        html(&partial)
    } else {
        html(&RunPage {
            chrome: ui.chrome("runs"),
            run: partial,
        })
    })
}

pub async fn retry(
    State(app): State<AppState>,
    _ui: Ui,
    Path(id): Path<String>,
) -> Result<Response, Error> {
    let run = find(&app, &id).await?;
    if app.store.retry_run(&run.id).await?.is_none() {
        return Err(Error::Conflict(format!(
            "run '{id}' is {}; only failed runs can be retried",
            run.status
        )));
    }
    app.wake_runs.notify_one();
    Ok(see_other(&format!("/runs/{id}")))
}

/// A new run with the same trigger, on the current version or the one chosen; with `diff`, the
/// answer is the comparison page.
pub async fn replay(
    State(app): State<AppState>,
    _ui: Ui,
    Path(id): Path<String>,
    Form(p): Form<Pairs>,
) -> Result<Response, Error> {
    let run = find(&app, &id).await?;
    let version = get(&p, "version").parse::<i64>().ok();
    let new_id = rundiff::replay(&app, &run, version).await?;
    app.wake_runs.notify_one();
    if get(&p, "diff").is_empty() {
        Ok(see_other(&format!("/runs/{new_id}")))
    } else {
        Ok(see_other(&format!("/runs/{id}/diff/{new_id}")))
    }
}

fn show(v: &Option<Value>) -> String {
    match v {
        None => "(absent)".into(),
        Some(Value::String(s)) => format!("\"{s}\""),
        Some(v) => v.to_string(),
    }
}

pub async fn diff(
    State(app): State<AppState>,
    ui: Ui,
    Path((a, b)): Path<(String, String)>,
) -> Result<Response, Error> {
    let before = find(&app, &a).await?;
    let after = find(&app, &b).await?;
    let d = rundiff::diff(&app, &before, &after).await?;
    let kinds = app
        .catalog
        .version(&app.store, &app.registry, &after.flow, after.version)
        .await
        .ok();
    let steps = d
        .steps
        .iter()
        .map(|s| {
            let changed: BTreeSet<String> = s.changes.iter().map(|c| c.path.clone()).collect();
            let side = |x: &Option<rundiff::StepSide>| {
                x.as_ref().map(|x| DiffSide {
                    status: x.status.clone(),
                    lines: marked_lines(&x.output, &changed),
                    error: x.error.clone(),
                })
            };
            let kind = kinds
                .as_ref()
                .and_then(|f| f.flow.steps.iter().find(|st| st.id == s.step_id))
                .map(|st| st.kind.clone())
                .unwrap_or_default();
            DiffStep {
                id: s.step_id.clone(),
                glyph: glyph(&kind),
                sides: vec![side(&s.before), side(&s.after)],
                changes: s
                    .changes
                    .iter()
                    .map(|c| DiffChange {
                        path: c.path.clone(),
                        before: show(&c.before),
                        after: show(&c.after),
                    })
                    .collect(),
                same: s.changes.is_empty(),
            }
        })
        .collect();
    let head = |h: &rundiff::RunHead| DiffRunHead {
        id: h.id.clone(),
        version: h.version,
        status: h.status.clone(),
    };
    let partial = DiffPartial {
        flow: d.flow.clone(),
        a: head(&d.before),
        b: head(&d.after),
        steps,
        changed_steps: d.changed_steps,
        live: matches!(after.status.as_str(), "queued" | "running"),
        url: format!("/runs/{a}/diff/{b}"),
    };
    Ok(if ui.htmx {
        html(&partial)
    } else {
        html(&DiffPage {
            chrome: ui.chrome("runs"),
            d: partial,
        })
    })
}
