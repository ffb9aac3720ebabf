//! Browser sessions for the UI: login with argon2id passwords, first-run setup through a one-time
//! link, HttpOnly SameSite cookies, logout, login rate limiting, and CSRF protection on every
//! state-changing UI request.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::Mutex,
    time::{Duration, Instant},
};

use axum::{
    extract::{FromRequestParts, Request, State},
    http::{HeaderMap, HeaderValue, Method, StatusCode, header, request::Parts},
    middleware::Next,
    response::{IntoResponse, Redirect, Response},
};
use subtle::ConstantTimeEq;

use crate::{app::AppState, error::Error, store::users::Session};

pub const COOKIE: &str = "hookflow_session";
/// Failed logins allowed per client address within [`WINDOW`].
const MAX_FAILURES: usize = 5;
const WINDOW: Duration = Duration::from_secs(60);

/// Process-wide login state.
#[derive(Default)]
pub struct AuthState {
    failures: Mutex<HashMap<String, Vec<Instant>>>,
    /// The one-time token of the first-run setup link, while no user exists.
    setup_token: Mutex<Option<String>>,
}

impl AuthState {
    /// Whether `client` may try to log in now.
    pub fn allowed(&self, client: &str) -> bool {
        let mut map = self.failures.lock().expect("auth lock");
        let recent = map.entry(client.to_string()).or_default();
        recent.retain(|t| t.elapsed() < WINDOW);
        recent.len() < MAX_FAILURES
    }

    pub fn failed(&self, client: &str) {
        let mut map = self.failures.lock().expect("auth lock");
        // Bounded: forget the oldest clients rather than grow without limit.
        if map.len() > 10_000 {
            map.retain(|_, v| v.iter().any(|t| t.elapsed() < WINDOW));
        }
        map.entry(client.to_string())
            .or_default()
            .push(Instant::now());
    }

    pub fn succeeded(&self, client: &str) {
        self.failures.lock().expect("auth lock").remove(client);
    }

    /// The setup token, creating one if none exists yet.
    pub fn setup_token(&self) -> String {
        self.setup_token
            .lock()
            .expect("auth lock")
            .get_or_insert_with(crate::store::users::random_token)
            .clone()
    }

    /// Use the setup token up: true if `token` was it.
    pub fn take_setup_token(&self, token: &str) -> bool {
        let mut slot = self.setup_token.lock().expect("auth lock");
        match slot.as_deref() {
            Some(t) if bool::from(t.as_bytes().ct_eq(token.as_bytes())) => {
                *slot = None;
                true
            }
            _ => false,
        }
    }

    pub fn check_setup_token(&self, token: &str) -> bool {
        let slot = self.setup_token.lock().expect("auth lock");
        slot.as_deref()
            .is_some_and(|t| bool::from(t.as_bytes().ct_eq(token.as_bytes())))
    }
}

/// The session id in the request's cookies.
pub fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v)
}

/// `Set-Cookie` for a new session (or, with `None`, one that clears it).
pub fn set_cookie(id: Option<&str>) -> HeaderValue {
    let value = match id {
        Some(id) => format!(
            "{COOKIE}={id}; Path=/; HttpOnly; SameSite=Lax; Max-Age={}",
            crate::store::users::SESSION_MS / 1000
        ),
        None => format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0"),
    };
    HeaderValue::from_str(&value).expect("cookie is ASCII")
}

/// A logged-in user, for UI handlers. Without a session, a page request is sent to the login
/// page and an htmx request is told to go there.
#[derive(Debug, Clone)]
pub struct Admin {
    pub username: String,
    /// The session's CSRF token, to put into forms and the htmx request headers.
    pub csrf: String,
}

/// Why there is no [`Admin`].
pub enum NoSession {
    Login(String),
    Htmx,
    Failed(Error),
}

impl IntoResponse for NoSession {
    fn into_response(self) -> Response {
        match self {
            NoSession::Login(next) => {
                Redirect::to(&format!("/login?next={}", url_encode(&next))).into_response()
            }
            NoSession::Htmx => {
                (StatusCode::UNAUTHORIZED, [("hx-redirect", "/login")]).into_response()
            }
            NoSession::Failed(e) => e.into_response(),
        }
    }
}

fn url_encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

impl FromRequestParts<AppState> for Admin {
    type Rejection = NoSession;

    async fn from_request_parts(
        parts: &mut Parts,
        app: &AppState,
    ) -> Result<Self, Self::Rejection> {
        if let Some(s) = parts.extensions.get::<Session>() {
            return Ok(Admin {
                username: s.username.clone(),
                csrf: s.csrf.clone(),
            });
        }
        let session = match session_cookie(&parts.headers) {
            Some(id) => app.store.get_session(id).await.map_err(NoSession::Failed)?,
            None => None,
        };
        match session {
            Some(s) => Ok(Admin {
                username: s.username,
                csrf: s.csrf,
            }),
            None if parts.headers.contains_key("hx-request") => Err(NoSession::Htmx),
            None => Err(NoSession::Login(
                parts
                    .uri
                    .path_and_query()
                    .map(|p| p.to_string())
                    .unwrap_or_else(|| "/".into()),
            )),
        }
    }
}

/// Middleware for UI routes: a state-changing request must come from a live session and carry
/// its CSRF token (header `X-CSRF-Token`, or form field `_csrf`), and must not come from another
/// origin. Safe methods pass through.
pub async fn csrf_guard(State(app): State<AppState>, req: Request, next: Next) -> Response {
    if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        return next.run(req).await;
    }
    if !same_origin(req.headers()) {
        return Error::Forbidden("cross-origin request refused".into()).into_response();
    }
    let session = match session_cookie(req.headers()) {
        Some(id) => match app.store.get_session(id).await {
            Ok(s) => s,
            Err(e) => return e.into_response(),
        },
        None => None,
    };
    let Some(session) = session else {
        return if req.headers().contains_key("hx-request") {
            (StatusCode::UNAUTHORIZED, [("hx-redirect", "/login")]).into_response()
        } else {
            Redirect::to("/login").into_response()
        };
    };
    let (parts, body) = req.into_parts();
    let bytes = match axum::body::to_bytes(body, 2 * 1024 * 1024).await {
        Ok(b) => b,
        Err(_) => {
            return Error::PayloadTooLarge("the form is larger than 2 MiB".into()).into_response();
        }
    };
    let header_token = parts
        .headers
        .get("x-csrf-token")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let token = header_token.or_else(|| {
        let is_form = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded"));
        is_form
            .then(|| {
                url::form_urlencoded::parse(&bytes)
                    .find(|(k, _)| k == "_csrf")
                    .map(|(_, v)| v.into_owned())
            })
            .flatten()
    });
    let valid = token.is_some_and(|t| bool::from(t.as_bytes().ct_eq(session.csrf.as_bytes())));
    if !valid {
        return Error::Forbidden(
            "missing or wrong CSRF token; reload the page and try again".into(),
        )
        .into_response();
    }
    let mut req = Request::from_parts(parts, axum::body::Body::from(bytes));
    req.extensions_mut().insert(session);
    next.run(req).await
}

/// `Origin` (or, without it, `Referer`) names this host, or is absent (non-browser clients).
pub fn same_origin(headers: &HeaderMap) -> bool {
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let origin = headers
        .get(header::ORIGIN)
        .or_else(|| headers.get(header::REFERER))
        .and_then(|v| v.to_str().ok());
    match (origin, host) {
        (None, _) => true,
        (Some("null"), _) => false,
        (Some(o), Some(h)) => url::Url::parse(o).ok().is_some_and(|u| {
            let authority = match u.port() {
                Some(p) => format!("{}:{p}", u.host_str().unwrap_or_default()),
                None => u.host_str().unwrap_or_default().to_string(),
            };
            authority.eq_ignore_ascii_case(h)
        }),
        (Some(_), None) => false,
    }
}

/// The client address for rate limiting.
pub fn client_key(peer: SocketAddr) -> String {
    peer.ip().to_string()
}
