//! Flow management shared by the API, the CLI and the UI: validate, save (a new version),
//! import and export. Handlers stay thin over these.

use std::{
    collections::{BTreeSet, HashMap},
    path::Path,
};

use flows_engine::{
    Issue, PreparedFlow, Trigger, ValidateCx,
    issue::{index_path, join_path},
    validate::{find_chain_cycle, prepare},
};
use serde::Serialize;
use serde_json::{Value, json};

use crate::{app::App, error::Error, store::flows::Saved};

/// What to do when an imported flow already exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum OnConflict {
    /// Save it as a new version.
    Replace,
    /// Keep the existing flow.
    Skip,
    /// Refuse the whole import.
    #[default]
    Fail,
}

#[derive(Debug, Default, Serialize)]
pub struct ImportReport {
    /// Flows created or changed, with their new version.
    pub imported: Vec<Value>,
    /// Flows identical to their stored version.
    pub unchanged: Vec<String>,
    /// Existing flows left alone (`on_conflict=skip`).
    pub skipped: Vec<String>,
}

/// The flows of an import document: one flow, an array, or a bundle `{"hookflow":1,"flows":[..]}`.
/// Each comes with the location prefix its problems are reported under.
pub fn split_import(doc: Value) -> Result<Vec<(String, Value)>, Error> {
    match doc {
        Value::Array(items) => Ok(items
            .into_iter()
            .enumerate()
            .map(|(i, f)| (index_path("", i), f))
            .collect()),
        Value::Object(mut map) if map.contains_key("flows") && !map.contains_key("trigger") => {
            let Some(Value::Array(items)) = map.remove("flows") else {
                return Err(Error::BadRequest(
                    "a bundle's \"flows\" must be an array of flows".into(),
                ));
            };
            Ok(items
                .into_iter()
                .enumerate()
                .map(|(i, f)| (index_path("flows", i), f))
                .collect())
        }
        Value::Object(_) => Ok(vec![(String::new(), doc)]),
        _ => Err(Error::BadRequest(
            "expected a flow, an array of flows, or a bundle {\"hookflow\": 1, \"flows\": [...]}"
                .into(),
        )),
    }
}

/// Validate flows that are to be saved together, against each other and the stored flows:
/// each document on its own, webhook paths that collide, chains to unknown flows, chain cycles.
pub async fn validate_set(app: &App, docs: &[(String, Value)]) -> Result<Vec<PreparedFlow>, Error> {
    let secrets: BTreeSet<String> = app
        .store
        .secret_names()
        .await?
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    let exists = move |n: &str| secrets.contains(n);
    let cx = ValidateCx {
        registry: &app.registry,
        secret_exists: Some(&exists),
    };
    let mut issues: Vec<Issue> = Vec::new();
    let mut prepared = Vec::new();
    for (at, doc) in docs {
        match prepare(doc, &cx) {
            Ok(p) => prepared.push((at.clone(), p)),
            Err(found) => issues.extend(found.into_iter().map(|i| i.under(at))),
        }
    }
    let new_names: HashMap<&str, &str> = prepared
        .iter()
        .map(|(at, p)| (p.name(), at.as_str()))
        .collect();
    let mut seen_names: HashMap<&str, &str> = HashMap::new();
    let mut paths: HashMap<&str, &str> = HashMap::new();
    for (at, p) in &prepared {
        if let Some(other) = seen_names.insert(p.name(), at) {
            issues.push(Issue::new(
                join_path(at, "name"),
                format!("flow '{}' appears twice (also at {other})", p.name()),
            ));
        }
        if let Trigger::Schedule(sched) = &p.flow.trigger {
            issues.extend(crate::scheduler::validate(app, sched, at, &exists));
        }
        if let Trigger::Webhook(w) = &p.flow.trigger {
            if let Some(Err(found)) = w.verify.as_ref().map(connectors::verify::Verifier::prepare) {
                issues.extend(
                    found
                        .into_iter()
                        .map(|i| i.under(&join_path(at, "trigger.verify"))),
                );
            }
            if let Some(other) = paths.insert(&w.path, p.name()) {
                issues.push(Issue::new(
                    join_path(at, "trigger.path"),
                    format!("/hooks/{} is also used by flow '{other}'", w.path),
                ));
            } else if let Some(owner) = app.catalog.route_owner(&w.path) {
                // The owner keeps the path unless it is being replaced by this same import.
                let owner_moves = new_names.contains_key(owner.as_str());
                if owner != p.name() && !owner_moves {
                    issues.push(Issue::new(
                        join_path(at, "trigger.path"),
                        format!("/hooks/{} is already used by flow '{owner}'", w.path),
                    ));
                }
            }
        }
    }
    let known = app.catalog.names();
    let mut edges = app.catalog.chain_edges();
    for (at, p) in &prepared {
        for (i, node) in p.nodes.iter().enumerate() {
            for target in node.exec.chained_flows() {
                if !known.contains(&target) && !new_names.contains_key(target.as_str()) {
                    issues.push(Issue::new(
                        join_path(at, &index_path("steps", i)),
                        format!("chains to unknown flow '{target}'; create it first or import both together"),
                    ));
                }
            }
        }
        edges.insert(p.name().to_string(), p.chained_flows());
    }
    if let Some(cycle) = find_chain_cycle(&edges) {
        let at = cycle
            .iter()
            .find_map(|n| new_names.get(n.as_str()))
            .copied()
            .unwrap_or("");
        issues.push(Issue::new(
            join_path(at, "steps"),
            format!("flows chain in a cycle: {}", cycle.join(" → ")),
        ));
    }
    if issues.is_empty() {
        Ok(prepared.into_iter().map(|(_, p)| p).collect())
    } else {
        Err(Error::Invalid(issues))
    }
}

async fn save_prepared(app: &App, p: &PreparedFlow) -> Result<Saved, Error> {
    let f = &p.flow;
    app.store
        .save_flow(&f.name, &f.source, f.title.clone(), f.enabled)
        .await
}

/// Save one flow (create or new version). `expected`: the name in the URL, which must match.
pub async fn save(app: &App, doc: Value, expected: Option<&str>) -> Result<Saved, Error> {
    if let (Some(want), Some(got)) = (expected, doc.get("name").and_then(Value::as_str))
        && want != got
    {
        return Err(Error::Invalid(vec![Issue::new(
            "name",
            format!("'{got}' does not match the flow in the URL ('{want}')"),
        )]));
    }
    let prepared = validate_set(app, &[(String::new(), doc)]).await?;
    let saved = save_prepared(app, &prepared[0]).await?;
    app.catalog.reload(&app.store, &app.registry).await?;
    Ok(saved)
}

/// Import one flow, an array or a bundle. Everything is validated before anything is saved.
pub async fn import(app: &App, doc: Value, on_conflict: OnConflict) -> Result<ImportReport, Error> {
    let docs = split_import(doc)?;
    let prepared = validate_set(app, &docs).await?;
    let mut report = ImportReport::default();
    let existing = app.catalog.names();
    if on_conflict == OnConflict::Fail {
        let taken: Vec<&str> = prepared
            .iter()
            .map(|p| p.name())
            .filter(|n| existing.contains(*n))
            .collect();
        if !taken.is_empty() {
            return Err(Error::Conflict(format!(
                "flows already exist: {}; import with on_conflict=replace or skip",
                taken.join(", ")
            )));
        }
    }
    for p in &prepared {
        if on_conflict == OnConflict::Skip && existing.contains(p.name()) {
            report.skipped.push(p.name().to_string());
            continue;
        }
        let saved = save_prepared(app, p).await?;
        if saved.changed {
            report
                .imported
                .push(json!({"name": p.name(), "version": saved.version}));
        } else {
            report.unchanged.push(p.name().to_string());
        }
    }
    app.catalog.reload(&app.store, &app.registry).await?;
    Ok(report)
}

/// Read flow files (a file, or every `*.json` in a directory) into one import document.
pub fn read_flow_files(path: &Path) -> Result<Value, Error> {
    let files = if path.is_dir() {
        let mut files: Vec<_> = std::fs::read_dir(path)
            .map_err(|e| Error::BadRequest(format!("cannot read {}: {e}", path.display())))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        files.sort();
        files
    } else {
        vec![path.to_path_buf()]
    };
    let mut flows = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file)
            .map_err(|e| Error::BadRequest(format!("cannot read {}: {e}", file.display())))?;
        let doc: Value = serde_json::from_str(&text)
            .map_err(|e| Error::BadRequest(format!("{}: not valid JSON: {e}", file.display())))?;
        flows.extend(split_import(doc)?.into_iter().map(|(_, f)| f));
    }
    Ok(json!({"hookflow": 1, "flows": flows}))
}

/// `--import`: existing flows are replaced when their file changed.
pub async fn import_path(app: &App, path: &Path) -> Result<ImportReport, Error> {
    let doc = read_flow_files(path)?;
    import(app, doc, OnConflict::Replace).await
}

/// Every flow as a bundle (the export form: definitions exactly as saved, secrets as references).
pub async fn export_all(app_store: &crate::store::Store) -> Result<Value, Error> {
    let flows = app_store
        .list_flows()
        .await?
        .into_iter()
        .map(|f| serde_json::from_str::<Value>(&f.definition))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(json!({"hookflow": 1, "flows": flows}))
}
