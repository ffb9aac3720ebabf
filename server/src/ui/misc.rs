//! Deliveries (outbound webhooks, with manual redelivery), the inbox of captured requests,
//! secrets (names only; values are write-only), and settings (API tokens).

use axum::{
    Form,
    extract::{Path, Query, State},
    response::Response,
};
use hookflow_web::{
    json::pretty,
    views::{
        AttemptRow, DeliveriesPage, DeliveryRow, Errors, FieldError, InboxBox, InboxPage,
        InboxRequest, Link, SecretRow, SecretsPage, SettingsPage, Time, TokenRow, duration,
    },
};
use serde::Deserialize;
use serde_json::Value;

use super::{
    Ui,
    forms::{Pairs, get},
    html, html_status, see_other,
};
use crate::{app::AppState, error::Error, store::now_ms};

#[derive(Deserialize, Default)]
pub struct DeliveriesQuery {
    status: Option<String>,
    run: Option<String>,
    redelivered: Option<String>,
}

pub async fn deliveries(
    State(app): State<AppState>,
    ui: Ui,
    Query(q): Query<DeliveriesQuery>,
) -> Result<Response, Error> {
    let status = q
        .status
        .filter(|s| ["pending", "succeeded", "failed"].contains(&s.as_str()));
    let rows = app
        .store
        .list_deliveries(status.as_deref(), q.run.as_deref(), 100)
        .await?;
    let now = now_ms();
    let mut out = Vec::new();
    for d in rows {
        let log = app
            .store
            .delivery_attempts(&d.id)
            .await?
            .into_iter()
            .map(|a| AttemptRow {
                attempt: a.attempt,
                status: a
                    .response_status
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| "no answer".into()),
                error: a.error.unwrap_or_default(),
                duration: duration(a.duration_ms),
                time: Time::at(a.at, now),
                body: a
                    .response_body
                    .map(|b| b.chars().take(2000).collect())
                    .unwrap_or_default(),
            })
            .collect();
        out.push(DeliveryRow {
            next: (d.status == "pending").then(|| Time::at(d.next_attempt_at, now)),
            response: d.last_status.map(|s| s.to_string()).unwrap_or_default(),
            error: d.last_error.clone().unwrap_or_default(),
            created: Time::at(d.created_at, now),
            log,
            id: d.id,
            run_id: d.run_id,
            step_id: d.step_id,
            url: d.url,
            status: d.status,
            attempts: d.attempts,
        });
    }
    let base = |s: Option<&str>| match s {
        Some(s) => format!("/deliveries?status={s}"),
        None => "/deliveries".into(),
    };
    let mut statuses = vec![Link {
        label: "All".into(),
        href: base(None),
        active: status.is_none(),
    }];
    for s in ["pending", "succeeded", "failed"] {
        statuses.push(Link {
            label: s.into(),
            href: base(Some(s)),
            active: status.as_deref() == Some(s),
        });
    }
    let notice = q
        .redelivered
        .map(|id| format!("Delivery {id} is queued again."));
    Ok(html(&DeliveriesPage {
        chrome: ui.chrome("deliveries"),
        rows: out,
        statuses,
        notice,
    }))
}

pub async fn redeliver(
    State(app): State<AppState>,
    _ui: Ui,
    Path(id): Path<String>,
) -> Result<Response, Error> {
    app.store
        .redeliver(&id)
        .await?
        .ok_or_else(|| Error::NotFound(format!("no delivery '{id}'")))?;
    app.wake_deliveries.notify_one();
    Ok(see_other(&format!("/deliveries?redelivered={id}")))
}

async fn inbox_page(app: &AppState, ui: Ui, selected: Option<String>) -> Result<Response, Error> {
    let now = now_ms();
    let boxes: Vec<InboxBox> = app
        .store
        .inbox_summaries()
        .await?
        .into_iter()
        .map(|(name, count, last)| InboxBox {
            active: selected.as_deref() == Some(name.as_str()),
            name,
            count,
            last: Time::at(last, now),
        })
        .collect();
    let selected = selected.or_else(|| boxes.first().map(|b| b.name.clone()));
    let requests = match &selected {
        Some(name) => app
            .store
            .list_inbox(name, 50)
            .await?
            .into_iter()
            .map(|r| InboxRequest {
                id: r["id"].as_str().unwrap_or_default().to_string(),
                method: r["method"].as_str().unwrap_or_default().to_string(),
                path: r["path"].as_str().unwrap_or_default().to_string(),
                query: pretty(&r["query"]),
                headers: pretty(&r["headers"]),
                body: match &r["body"] {
                    Value::String(s) => s.clone(),
                    other => pretty(other),
                },
                time: chrono::DateTime::parse_from_rfc3339(
                    r["received_at"].as_str().unwrap_or_default(),
                )
                .map(|t| Time::at(t.timestamp_millis(), now))
                .unwrap_or_default(),
            })
            .collect(),
        None => Vec::new(),
    };
    let boxes = boxes.into_iter().map(|mut b| {
        b.active = selected.as_deref() == Some(b.name.as_str());
        b
    });
    Ok(html(&InboxPage {
        chrome: ui.chrome("inbox"),
        base_url: ui.base.clone(),
        boxes: boxes.collect(),
        selected,
        requests,
    }))
}

pub async fn inbox(State(app): State<AppState>, ui: Ui) -> Result<Response, Error> {
    inbox_page(&app, ui, None).await
}

pub async fn inbox_one(
    State(app): State<AppState>,
    ui: Ui,
    Path(name): Path<String>,
) -> Result<Response, Error> {
    inbox_page(&app, ui, Some(name)).await
}

#[derive(Deserialize, Default)]
pub struct SecretsQuery {
    saved: Option<String>,
    deleted: Option<String>,
}

async fn secrets_page(
    app: &AppState,
    ui: &Ui,
    name: String,
    errors: Errors,
    notice: Option<String>,
) -> Result<SecretsPage, Error> {
    let now = now_ms();
    let users: Vec<(String, std::collections::BTreeSet<String>)> = app
        .catalog
        .names()
        .into_iter()
        .filter_map(|n| app.catalog.current(&n).map(|(_, p)| (n, p.secret_refs())))
        .collect();
    let rows = app
        .store
        .secret_names()
        .await?
        .into_iter()
        .map(|(n, at)| SecretRow {
            used_by: users
                .iter()
                .filter(|(_, refs)| refs.contains(&n))
                .map(|(f, _)| f.clone())
                .collect(),
            name: n,
            updated: Time::at(at, now),
        })
        .collect();
    Ok(SecretsPage {
        chrome: ui.chrome("secrets"),
        rows,
        name,
        errors,
        notice,
    })
}

pub async fn secrets(
    State(app): State<AppState>,
    ui: Ui,
    Query(q): Query<SecretsQuery>,
) -> Result<Response, Error> {
    let notice = match (q.saved, q.deleted) {
        (Some(n), _) => Some(format!("Secret {n} saved.")),
        (_, Some(n)) => Some(format!("Secret {n} deleted.")),
        _ => None,
    };
    Ok(html(
        &secrets_page(&app, &ui, String::new(), Errors::default(), notice).await?,
    ))
}

pub async fn set_secret(
    State(app): State<AppState>,
    ui: Ui,
    Form(p): Form<Pairs>,
) -> Result<Response, Error> {
    let name = get(&p, "name").trim().to_string();
    if let Err(e) = crate::store::secrets::check_secret_name(&name) {
        let errors = Errors {
            fields: vec![FieldError {
                field: "name".into(),
                message: e.to_string(),
            }],
            ..Default::default()
        };
        let page = secrets_page(&app, &ui, name, errors, None).await?;
        return Ok(html_status(
            axum::http::StatusCode::UNPROCESSABLE_ENTITY,
            &page,
        ));
    }
    app.store
        .set_secret(&app.key, &name, get(&p, "value"))
        .await?;
    Ok(see_other(&format!("/secrets?saved={name}")))
}

pub async fn delete_secret(
    State(app): State<AppState>,
    _ui: Ui,
    Path(name): Path<String>,
) -> Result<Response, Error> {
    crate::store::secrets::check_secret_name(&name)?;
    if !app.store.delete_secret(&name).await? {
        return Err(Error::NotFound(format!("no secret '{name}'")));
    }
    Ok(see_other(&format!("/secrets?deleted={name}")))
}

async fn settings_page(
    app: &AppState,
    ui: &Ui,
    new_token: Option<String>,
) -> Result<SettingsPage, Error> {
    let now = now_ms();
    let tokens = app
        .store
        .list_tokens()
        .await?
        .into_iter()
        .map(|t| TokenRow {
            id: t.id,
            name: t.name,
            created: Time::at(t.created_at, now),
        })
        .collect();
    let database = if app.store.is_postgres() {
        "PostgreSQL".to_string()
    } else {
        "SQLite".to_string()
    };
    Ok(SettingsPage {
        chrome: ui.chrome("settings"),
        tokens,
        new_token,
        version: env!("CARGO_PKG_VERSION"),
        database,
        base_url: ui.base.clone(),
    })
}

pub async fn settings(State(app): State<AppState>, ui: Ui) -> Result<Response, Error> {
    Ok(html(&settings_page(&app, &ui, None).await?))
}

pub async fn create_token(
    State(app): State<AppState>,
    ui: Ui,
    Form(p): Form<Pairs>,
) -> Result<Response, Error> {
    let name = get(&p, "name").trim().to_string();
    if name.is_empty() || name.len() > 64 {
        return Err(Error::BadRequest("a token name is 1-64 characters".into()));
    }
    let token = app.store.create_token(&name).await?;
    Ok(html(&settings_page(&app, &ui, Some(token)).await?))
}

pub async fn revoke_token(
    State(app): State<AppState>,
    _ui: Ui,
    Path(id): Path<String>,
) -> Result<Response, Error> {
    if !app.store.revoke_token(&id).await? {
        return Err(Error::NotFound(format!("no token '{id}'")));
    }
    Ok(see_other("/settings"))
}
