//! The flows list and whole-flow actions: create, enable/disable, duplicate, delete, the JSON
//! view, versions, import and export (the same formats and functions as the API and CLI).

use axum::{
    Form,
    extract::{Path, Query, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use flows_engine::{Trigger, flow::is_flow_name};
use hookflow_web::views::{
    ConfirmPage, Errors, FieldError, FlowJsonPage, FlowRow, FlowsPage, ImportPage, NewFlowPage,
    Time,
};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Ui, forms::Pairs, forms::get, html, html_status, see_other};
use crate::{
    app::{App, AppState},
    error::Error,
    flows::{self, OnConflict},
    store::{now_ms, runs::RunFilter},
};

#[derive(Deserialize, Default)]
pub struct ListQuery {
    deleted: Option<String>,
    imported: Option<String>,
}

pub async fn list(
    State(app): State<AppState>,
    ui: Ui,
    Query(q): Query<ListQuery>,
) -> Result<Response, Error> {
    let now = now_ms();
    let counts = app.store.run_counts_since(now - 86_400_000).await?;
    let mut rows = Vec::new();
    for f in app.store.list_flows().await? {
        let doc: Value = serde_json::from_str(&f.definition).unwrap_or(Value::Null);
        let prepared = app.catalog.current(&f.name);
        let trigger = doc["trigger"]
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("webhook")
            .to_string();
        let (hook_url, methods) = match prepared.as_ref().map(|(_, p)| &p.flow.trigger) {
            Some(Trigger::Webhook(w)) => (
                Some(format!("{}/hooks/{}", ui.base, w.path)),
                w.methods.join(","),
            ),
            _ => (None, String::new()),
        };
        let last = app
            .store
            .list_runs(&RunFilter {
                flow: Some(f.name.clone()),
                limit: 1,
                ..Default::default()
            })
            .await?;
        let last = last.first();
        let (ok_24h, failed_24h) = counts.get(&f.name).copied().unwrap_or_default();
        rows.push(FlowRow {
            title: f.title.clone().unwrap_or_default(),
            enabled: f.enabled,
            version: f.version,
            trigger,
            hook_url,
            methods,
            steps: doc["steps"].as_array().map_or(0, Vec::len),
            last_status: last.map(|r| r.status.clone()),
            last_run: last.map(|r| r.id.clone()),
            last_time: last.map(|r| Time::at(r.created_at, now)),
            ok_24h,
            failed_24h,
            broken: prepared.is_none(),
            name: f.name,
        });
    }
    let notice = match (q.deleted, q.imported) {
        (Some(d), _) => Some(format!(
            "Deleted flow '{d}'. Its runs and versions are kept."
        )),
        (_, Some(n)) => Some(format!("Imported {n} example flow(s).")),
        _ => None,
    };
    Ok(html(&FlowsPage {
        chrome: ui.chrome("flows"),
        rows,
        notice,
        examples_available: true,
    }))
}

pub async fn new_page(ui: Ui) -> Response {
    html(&NewFlowPage {
        chrome: ui.chrome("flows"),
        name: String::new(),
        title: String::new(),
        trigger: "webhook".into(),
        path: String::new(),
        errors: Errors::default(),
    })
}

pub async fn create(
    State(app): State<AppState>,
    ui: Ui,
    Form(p): Form<Pairs>,
) -> Result<Response, Error> {
    let name = get(&p, "name").trim().to_string();
    let title = get(&p, "title").trim().to_string();
    let kind = if get(&p, "trigger") == "manual" {
        "manual"
    } else {
        "webhook"
    };
    let path = get(&p, "path").trim().trim_start_matches('/').to_string();
    let again = |errors: Errors| {
        html_status(
            StatusCode::UNPROCESSABLE_ENTITY,
            &NewFlowPage {
                chrome: ui.chrome("flows"),
                name: name.clone(),
                title: title.clone(),
                trigger: kind.into(),
                path: path.clone(),
                errors,
            },
        )
    };
    if !is_flow_name(&name) {
        return Ok(again(Errors { fields: vec![FieldError { field: "name".into(), message: "use 1-64 lower-case letters, digits, '-' or '_', starting with a letter or digit".into() }], ..Default::default() }));
    }
    if app.store.get_flow(&name).await?.is_some() {
        return Ok(again(Errors {
            fields: vec![FieldError {
                field: "name".into(),
                message: format!("a flow named '{name}' already exists"),
            }],
            ..Default::default()
        }));
    }
    let mut doc = json!({"hookflow": 1, "name": name});
    if !title.is_empty() {
        doc["title"] = json!(title);
    }
    doc["trigger"] = if kind == "webhook" && !path.is_empty() {
        json!({"type": "webhook", "path": path})
    } else {
        json!({"type": kind})
    };
    doc["steps"] = json!([]);
    match flows::save(&app, doc, None).await {
        Ok(_) => Ok(see_other(&format!("/flows/{name}?add=trigger"))),
        Err(Error::Invalid(issues)) => {
            let mut errors = Errors::default();
            for i in issues {
                match i.path.as_str() {
                    "name" => errors.fields.push(FieldError {
                        field: "name".into(),
                        message: i.message,
                    }),
                    "trigger.path" => errors.fields.push(FieldError {
                        field: "path".into(),
                        message: i.message,
                    }),
                    _ => errors.general.push(i.to_string()),
                }
            }
            Ok(again(errors))
        }
        Err(e) => Err(e),
    }
}

fn checked(name: &str) -> Result<(), Error> {
    if is_flow_name(name) {
        Ok(())
    } else {
        Err(Error::NotFound(format!("no flow named '{name}'")))
    }
}

async fn definition(app: &App, name: &str) -> Result<Value, Error> {
    checked(name)?;
    let f = app
        .store
        .get_flow(name)
        .await?
        .ok_or_else(|| Error::NotFound(format!("no flow named '{name}'")))?;
    Ok(serde_json::from_str(&f.definition)?)
}

pub async fn toggle(
    State(app): State<AppState>,
    ui: Ui,
    Path(name): Path<String>,
    Form(p): Form<Pairs>,
) -> Result<Response, Error> {
    let mut doc = definition(&app, &name).await?;
    let enabled = doc.get("enabled").and_then(Value::as_bool).unwrap_or(true);
    if let Some(obj) = doc.as_object_mut() {
        if enabled {
            obj.insert("enabled".into(), json!(false));
        } else {
            obj.remove("enabled");
        }
    }
    flows::save(&app, doc, Some(&name)).await?;
    if get(&p, "back") == "list" {
        return Ok(see_other(&format!("/flows#flow-{name}")));
    }
    if ui.htmx {
        let q = axum::extract::Query(super::editor::EditorQuery::default());
        return super::editor::page(State(app), ui, Path(name), q).await;
    }
    Ok(see_other(&format!("/flows/{name}")))
}

pub async fn duplicate(
    State(app): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, Error> {
    let mut doc = definition(&app, &name).await?;
    let existing = app.catalog.names();
    let stored: Vec<String> = app
        .store
        .list_flows()
        .await?
        .into_iter()
        .map(|f| f.name)
        .collect();
    let copy = (1..)
        .map(|n| {
            if n == 1 {
                format!("{name}-copy")
            } else {
                format!("{name}-copy{n}")
            }
        })
        .map(|c| c.chars().take(64).collect::<String>())
        .find(|c| !existing.contains(c) && !stored.contains(c))
        .expect("a free name");
    doc["name"] = json!(copy);
    if let Some(t) = doc.get("title").and_then(Value::as_str) {
        doc["title"] = json!(format!("{t} (copy)"));
    }
    if doc["trigger"]["type"] == "webhook" {
        // The copy needs its own URL.
        doc["trigger"]["path"] = json!(copy);
    }
    flows::save(&app, doc, None).await?;
    Ok(see_other(&format!("/flows/{copy}")))
}

pub async fn delete_page(ui: Ui, Path(name): Path<String>) -> Result<Response, Error> {
    checked(&name)?;
    Ok(html(&ConfirmPage {
        chrome: ui.chrome("flows"),
        title: format!("Delete flow {name}?"),
        message: format!(
            "'{name}' stops receiving webhooks at once. Its past runs and saved versions are kept; creating a flow with the same name continues its version numbers."
        ),
        action: format!("/flows/{name}/delete"),
        button: "Delete flow".into(),
        back: format!("/flows/{name}"),
    }))
}

pub async fn delete(
    State(app): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, Error> {
    checked(&name)?;
    if !app.store.delete_flow(&name).await? {
        return Err(Error::NotFound(format!("no flow named '{name}'")));
    }
    app.catalog.reload(&app.store, &app.registry).await?;
    Ok(see_other(&format!("/flows?deleted={name}")))
}

#[derive(Deserialize, Default)]
pub struct JsonQuery {
    saved: Option<i64>,
}

pub async fn json_page(
    State(app): State<AppState>,
    ui: Ui,
    Path(name): Path<String>,
    Query(q): Query<JsonQuery>,
) -> Result<Response, Error> {
    let f = app
        .store
        .get_flow(&name)
        .await?
        .ok_or_else(|| Error::NotFound(format!("no flow named '{name}'")))?;
    let doc: Value = serde_json::from_str(&f.definition)?;
    Ok(html(&FlowJsonPage {
        chrome: ui.chrome("flows"),
        name,
        text: serde_json::to_string_pretty(&doc)?,
        errors: Vec::new(),
        notice: q.saved.map(|v| format!("Saved as version {v}.")),
        version: None,
        current: f.version,
    }))
}

pub async fn json_save(
    State(app): State<AppState>,
    ui: Ui,
    Path(name): Path<String>,
    Form(p): Form<Pairs>,
) -> Result<Response, Error> {
    let f = app
        .store
        .get_flow(&name)
        .await?
        .ok_or_else(|| Error::NotFound(format!("no flow named '{name}'")))?;
    let text = get(&p, "definition").to_string();
    let again = |errors: Vec<String>| {
        html_status(
            StatusCode::UNPROCESSABLE_ENTITY,
            &FlowJsonPage {
                chrome: ui.chrome("flows"),
                name: name.clone(),
                text: text.clone(),
                errors,
                notice: None,
                version: None,
                current: f.version,
            },
        )
    };
    let doc: Value = match serde_json::from_str(&text) {
        Ok(d) => d,
        Err(e) => return Ok(again(vec![format!("not valid JSON: {e}")])),
    };
    match flows::save(&app, doc, Some(&name)).await {
        Ok(saved) => Ok(see_other(&format!(
            "/flows/{name}/json?saved={}",
            saved.version
        ))),
        Err(Error::Invalid(issues)) => Ok(again(issues.iter().map(ToString::to_string).collect())),
        Err(e @ (Error::BadRequest(_) | Error::Conflict(_))) => Ok(again(vec![e.to_string()])),
        Err(e) => Err(e),
    }
}

pub async fn version_page(
    State(app): State<AppState>,
    ui: Ui,
    Path((name, version)): Path<(String, i64)>,
) -> Result<Response, Error> {
    let v = app
        .store
        .flow_version(&name, version)
        .await?
        .ok_or_else(|| Error::NotFound(format!("flow '{name}' has no version {version}")))?;
    let current = app.store.get_flow(&name).await?.map_or(0, |f| f.version);
    let doc: Value = serde_json::from_str(&v.definition)?;
    Ok(html(&FlowJsonPage {
        chrome: ui.chrome("flows"),
        name,
        text: serde_json::to_string_pretty(&doc)?,
        errors: Vec::new(),
        notice: None,
        version: Some(version),
        current,
    }))
}

pub async fn restore(
    State(app): State<AppState>,
    Path((name, version)): Path<(String, i64)>,
) -> Result<Response, Error> {
    let v = app
        .store
        .flow_version(&name, version)
        .await?
        .ok_or_else(|| Error::NotFound(format!("flow '{name}' has no version {version}")))?;
    let doc: Value = serde_json::from_str(&v.definition)?;
    let saved = flows::save(&app, doc, Some(&name)).await?;
    Ok(see_other(&format!("/flows/{name}?saved={}", saved.version)))
}

fn download(filename: &str, doc: &Value) -> Result<Response, Error> {
    let body = serde_json::to_string_pretty(doc)? + "\n";
    Ok((
        [
            (header::CONTENT_TYPE, "application/json".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{filename}\""),
            ),
        ],
        body,
    )
        .into_response())
}

pub async fn export_one(
    State(app): State<AppState>,
    _ui: Ui,
    Path(name): Path<String>,
) -> Result<Response, Error> {
    let doc = definition(&app, &name).await?;
    download(&format!("{name}.json"), &doc)
}

pub async fn export_all(State(app): State<AppState>, _ui: Ui) -> Result<Response, Error> {
    download("hookflow-flows.json", &flows::export_all(&app.store).await?)
}

pub async fn import_page(ui: Ui) -> Response {
    html(&ImportPage {
        chrome: ui.chrome("flows"),
        text: String::new(),
        on_conflict: "fail".into(),
        imported: vec![],
        unchanged: vec![],
        skipped: vec![],
        errors: vec![],
        done: false,
    })
}

pub async fn import(
    State(app): State<AppState>,
    ui: Ui,
    Form(p): Form<Pairs>,
) -> Result<Response, Error> {
    let text = get(&p, "text").to_string();
    let on_conflict = match get(&p, "on_conflict") {
        "replace" => OnConflict::Replace,
        "skip" => OnConflict::Skip,
        _ => OnConflict::Fail,
    };
    let mut page = ImportPage {
        chrome: ui.chrome("flows"),
        text: text.clone(),
        on_conflict: get(&p, "on_conflict").to_string(),
        imported: vec![],
        unchanged: vec![],
        skipped: vec![],
        errors: vec![],
        done: false,
    };
    if page.on_conflict.is_empty() {
        page.on_conflict = "fail".into();
    }
    let doc: Value = match serde_json::from_str(&text) {
        Ok(d) => d,
        Err(e) => {
            page.errors.push(format!("not valid JSON: {e}"));
            return Ok(html_status(StatusCode::UNPROCESSABLE_ENTITY, &page));
        }
    };
    match flows::import(&app, doc, on_conflict).await {
        Ok(report) => {
            page.imported = report
                .imported
                .iter()
                .filter_map(|v| v["name"].as_str().map(str::to_string))
                .collect();
            page.unchanged = report.unchanged;
            page.skipped = report.skipped;
            page.done = true;
            page.text = String::new();
            Ok(html(&page))
        }
        Err(Error::Invalid(issues)) => {
            page.errors = issues.iter().map(ToString::to_string).collect();
            Ok(html_status(StatusCode::UNPROCESSABLE_ENTITY, &page))
        }
        Err(e @ (Error::Conflict(_) | Error::BadRequest(_))) => {
            page.errors = vec![e.to_string()];
            Ok(html_status(StatusCode::UNPROCESSABLE_ENTITY, &page))
        }
        Err(e) => Err(e),
    }
}

/// The example flows that ship with hookflow (the same files as `examples/flows/`).
const EXAMPLES: [&str; 9] = [
    include_str!("../../../examples/flows/adjust-inventory.json"),
    include_str!("../../../examples/flows/appointment-booked.json"),
    include_str!("../../../examples/flows/crm-note.json"),
    include_str!("../../../examples/flows/etsy-orders.json"),
    include_str!("../../../examples/flows/issue-invoice.json"),
    include_str!("../../../examples/flows/notify-customer.json"),
    include_str!("../../../examples/flows/order-status-changed.json"),
    include_str!("../../../examples/flows/signup-form.json"),
    include_str!("../../../examples/flows/zendesk-tickets.json"),
];

pub async fn import_examples(State(app): State<AppState>, _ui: Ui) -> Result<Response, Error> {
    let flows: Vec<Value> = EXAMPLES
        .iter()
        .map(|t| serde_json::from_str(t))
        .collect::<Result<_, _>>()?;
    let report = flows::import(
        &app,
        json!({"hookflow": 1, "flows": flows}),
        OnConflict::Skip,
    )
    .await?;
    Ok(see_other(&format!(
        "/flows?imported={}",
        report.imported.len()
    )))
}
