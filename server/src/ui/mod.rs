//! The browser UI: page and fragment handlers over the same store and flow functions as the API
//! (validate, save, import, export, retry, replay), rendered by the `hookflow-web` templates.
//! A handler extracts, calls one or two domain functions, and maps the result to a view; a page
//! embeds its fragment, and htmx requests get the fragment alone.

use askama::Template;
use axum::{
    Router,
    extract::{FromRequestParts, Path, Query, Request, State},
    http::{HeaderMap, HeaderValue, StatusCode, header, request::Parts},
    middleware::Next,
    response::{Html, IntoResponse, Redirect, Response},
    routing::{get, post},
};
use hookflow_web::views::{Chrome, ErrorPage};
use serde::Deserialize;

use crate::{
    app::AppState,
    error::Error,
    http::session::{Admin, NoSession},
};

mod edit;
mod editor;
mod flows;
mod forms;
mod misc;
mod queries;
mod runs;

/// Every UI route. State-changing ones are POSTs, which the CSRF guard in `http::ui_routes` checks.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/flows") }))
        .route("/flows", get(flows::list).post(flows::create))
        .route("/flows/new", get(flows::new_page))
        .route("/flows/examples", post(flows::import_examples))
        .route("/flows/{name}", get(editor::page))
        .route("/flows/{name}/graph", get(editor::graph))
        .route("/flows/{name}/steps", post(editor::add_step))
        .route("/flows/{name}/steps/{id}", post(editor::apply_step))
        .route("/flows/{name}/trigger", post(editor::apply_trigger))
        .route("/flows/{name}/test", post(editor::test))
        .route("/flows/{name}/toggle", post(flows::toggle))
        .route("/flows/{name}/duplicate", post(flows::duplicate))
        .route(
            "/flows/{name}/delete",
            get(flows::delete_page).post(flows::delete),
        )
        .route(
            "/flows/{name}/json",
            get(flows::json_page).post(flows::json_save),
        )
        .route("/flows/{name}/export", get(flows::export_one))
        .route("/flows/{name}/versions/{version}", get(flows::version_page))
        .route(
            "/flows/{name}/versions/{version}/restore",
            post(flows::restore),
        )
        .route("/export", get(flows::export_all))
        .route("/import", get(flows::import_page).post(flows::import))
        .route("/runs", get(runs::list))
        .route("/runs/{id}", get(runs::page))
        .route("/runs/{id}/retry", post(runs::retry))
        .route("/runs/{id}/replay", post(runs::replay))
        .route("/runs/{id}/diff/{other}", get(runs::diff))
        .route("/deliveries", get(misc::deliveries))
        .route("/deliveries/{id}/redeliver", post(misc::redeliver))
        .route("/inspect", get(misc::inbox))
        .route("/inspect/{name}", get(misc::inbox_one))
        .route("/secrets", get(misc::secrets).post(misc::set_secret))
        .route("/secrets/{name}/delete", post(misc::delete_secret))
        .route("/settings", get(misc::settings))
        .route("/settings/tokens", post(misc::create_token))
        .route("/settings/tokens/{id}/revoke", post(misc::revoke_token))
}

/// `/assets/<path>`: embedded files. A fingerprinted URL (`?v=`, or a versioned vendor file) is
/// cached for a year; anything else is revalidated.
pub async fn asset(Path(path): Path<String>, Query(q): Query<AssetQuery>) -> Response {
    let Some(a) = hookflow_web::assets::get(&path) else {
        return (StatusCode::NOT_FOUND, "no such asset").into_response();
    };
    let immutable =
        path.starts_with("vendor/") || q.v.as_deref() == Some(hookflow_web::assets::version());
    let cache = if immutable {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    (
        [
            (header::CONTENT_TYPE, a.content_type),
            (header::CACHE_CONTROL, cache),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        a.bytes,
    )
        .into_response()
}

#[derive(Deserialize)]
pub struct AssetQuery {
    v: Option<String>,
}

pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Security headers on every HTML answer (UI pages, fragments, login): no inline scripts or
/// styles, no framing, no sniffing, no referrer to other sites.
pub async fn html_security_headers(mut resp: Response) -> Response {
    let html = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/html"));
    if html {
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        );
        h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        h.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        h.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("same-origin"),
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
}

/// The request context of a UI handler: the logged-in user, whether htmx asked for a fragment,
/// and the server's external base URL (for webhook URLs to copy).
pub struct Ui {
    pub admin: Admin,
    /// An htmx request that wants a fragment (not a history restore, which needs the whole page).
    pub htmx: bool,
    pub base: String,
}

impl FromRequestParts<AppState> for Ui {
    type Rejection = NoSession;

    async fn from_request_parts(
        parts: &mut Parts,
        app: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let admin = Admin::from_request_parts(parts, app).await?;
        let h = &parts.headers;
        let htmx = h.contains_key("hx-request") && !h.contains_key("hx-history-restore-request");
        Ok(Ui {
            admin,
            htmx,
            base: base_url(h),
        })
    }
}

impl Ui {
    pub fn chrome(&self, active: &'static str) -> Chrome {
        Chrome {
            user: self.admin.username.clone(),
            csrf: self.admin.csrf.clone(),
            active,
        }
    }
    pub fn csrf(&self) -> String {
        self.admin.csrf.clone()
    }
}

/// `http(s)://host` as the browser sees this server.
pub fn base_url(h: &HeaderMap) -> String {
    let host = h
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("127.0.0.1:8080");
    let https = h.get("x-forwarded-proto").and_then(|v| v.to_str().ok()) == Some("https");
    format!("{}://{host}", if https { "https" } else { "http" })
}

/// Render a template as an HTML answer.
pub fn html(t: &impl Template) -> Response {
    html_status(StatusCode::OK, t)
}

pub fn html_status(status: StatusCode, t: &impl Template) -> Response {
    match t.render() {
        Ok(body) => (status, Html(body)).into_response(),
        Err(e) => Error::Internal(format!("template error: {e}")).into_response(),
    }
}

/// After a successful form post: htmx follows `HX-Location`-less redirects by itself, so a 303
/// works for both plain forms and htmx.
pub fn see_other(to: &str) -> Response {
    Redirect::to(to).into_response()
}

/// Error answers of UI routes are pages (or, for htmx, a message in the flash area) rather than
/// the API's JSON. Handlers just use `?` with [`Error`].
pub async fn html_errors(State(app): State<AppState>, req: Request, next: Next) -> Response {
    let htmx = req.headers().contains_key("hx-request");
    let session = crate::http::session::session_cookie(req.headers()).map(str::to_string);
    let resp = next.run(req).await;
    let status = resp.status();
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || !is_json {
        return resp;
    }
    let bytes = axum::body::to_bytes(resp.into_body(), 1024 * 1024)
        .await
        .unwrap_or_default();
    let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
    let mut message = v["error"]
        .as_str()
        .unwrap_or("something went wrong")
        .to_string();
    if let Some(issues) = v["issues"].as_array() {
        for i in issues {
            message.push_str("\n• ");
            message.push_str(i["text"].as_str().unwrap_or_default());
        }
    }
    if htmx {
        let frag = format!(
            "<p>{}</p>",
            askama::filters::escape(&message, askama::filters::Html)
                .map(|e| e.to_string())
                .unwrap_or_default()
        );
        let mut r = (status, Html(frag)).into_response();
        r.headers_mut()
            .insert("hx-retarget", HeaderValue::from_static("#flash"));
        r.headers_mut()
            .insert("hx-reswap", HeaderValue::from_static("innerHTML"));
        return r;
    }
    let user = match session {
        Some(id) => app.store.get_session(&id).await.ok().flatten(),
        None => None,
    };
    let chrome = Chrome {
        user: user
            .as_ref()
            .map(|s| s.username.clone())
            .unwrap_or_default(),
        csrf: user.map(|s| s.csrf).unwrap_or_default(),
        active: "",
    };
    let title = match status {
        StatusCode::NOT_FOUND => "Not found",
        StatusCode::FORBIDDEN => "Not allowed",
        StatusCode::CONFLICT => "Not possible now",
        s if s.is_server_error() => "Something went wrong",
        _ => "That did not work",
    };
    html_status(
        status,
        &ErrorPage {
            chrome,
            status: status.as_u16(),
            title: title.into(),
            message,
        },
    )
}
