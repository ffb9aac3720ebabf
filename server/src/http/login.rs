//! `/login`, `/logout` and the first-run `/setup` page.

use std::net::SocketAddr;

use axum::{
    Form,
    extract::{ConnectInfo, Query, State},
    http::{HeaderMap, StatusCode, header},
    response::{Html, IntoResponse, Redirect, Response},
};
use hookflow_web::auth::{LoginPage, SetupPage, render};
use serde::Deserialize;

use super::session::{self, client_key, session_cookie, set_cookie};
use crate::{app::AppState, error::Error};

/// Only local paths may follow a login (no open redirects).
fn safe_next(next: &str) -> &str {
    if next.starts_with('/') && !next.starts_with("//") && !next.contains('\\') {
        next
    } else {
        "/"
    }
}

#[derive(Deserialize)]
pub struct NextQuery {
    #[serde(default)]
    next: String,
}

pub async fn login_page(
    State(app): State<AppState>,
    Query(q): Query<NextQuery>,
) -> Result<Html<String>, Error> {
    let needs_setup = app.store.user_count().await? == 0;
    Ok(Html(render(&LoginPage {
        error: None,
        next: safe_next(&q.next),
        username: "",
        needs_setup,
    })))
}

#[derive(Deserialize)]
pub struct LoginForm {
    username: String,
    password: String,
    #[serde(default)]
    next: String,
}

pub async fn login(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(f): Form<LoginForm>,
) -> Result<Response, Error> {
    if !session::same_origin(&headers) {
        return Err(Error::Forbidden("cross-origin login refused".into()));
    }
    let client = client_key(peer);
    let page = |status: StatusCode, error: &str| {
        let html = render(&LoginPage {
            error: Some(error),
            next: safe_next(&f.next),
            username: &f.username,
            needs_setup: false,
        });
        (status, Html(html)).into_response()
    };
    if !app.auth.allowed(&client) {
        return Ok(page(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many failed attempts; wait a minute and try again.",
        ));
    }
    if !app.store.check_user(&f.username, &f.password).await? {
        app.auth.failed(&client);
        return Ok(page(
            StatusCode::UNAUTHORIZED,
            "Wrong username or password.",
        ));
    }
    app.auth.succeeded(&client);
    let (id, _) = app.store.create_session(&f.username).await?;
    tracing::info!(user = %f.username, "logged in");
    Ok((
        StatusCode::SEE_OTHER,
        [
            (header::SET_COOKIE, set_cookie(Some(&id))),
            (
                header::LOCATION,
                safe_next(&f.next).parse().expect("ASCII path"),
            ),
        ],
    )
        .into_response())
}

/// Behind the CSRF guard, like every state-changing UI request.
pub async fn logout(State(app): State<AppState>, headers: HeaderMap) -> Result<Response, Error> {
    if let Some(id) = session_cookie(&headers) {
        app.store.delete_session(id).await?;
    }
    Ok((
        StatusCode::SEE_OTHER,
        [
            (header::SET_COOKIE, set_cookie(None)),
            (header::LOCATION, "/login".parse().expect("ASCII")),
        ],
    )
        .into_response())
}

#[derive(Deserialize)]
pub struct SetupQuery {
    #[serde(default)]
    token: String,
}

pub async fn setup_page(
    State(app): State<AppState>,
    Query(q): Query<SetupQuery>,
) -> Result<Response, Error> {
    if app.store.user_count().await? > 0 {
        return Ok(Redirect::to("/login").into_response());
    }
    if !app.auth.check_setup_token(&q.token) {
        return Err(Error::Forbidden(
            "this setup link is not valid; use the link printed in the server log".into(),
        ));
    }
    Ok(Html(render(&SetupPage {
        token: &q.token,
        error: None,
        username: "",
    }))
    .into_response())
}

#[derive(Deserialize)]
pub struct SetupForm {
    token: String,
    username: String,
    password: String,
    password2: String,
}

pub async fn setup(
    State(app): State<AppState>,
    headers: HeaderMap,
    Form(f): Form<SetupForm>,
) -> Result<Response, Error> {
    if !session::same_origin(&headers) {
        return Err(Error::Forbidden("cross-origin setup refused".into()));
    }
    if app.store.user_count().await? > 0 || !app.auth.check_setup_token(&f.token) {
        return Err(Error::Forbidden(
            "this setup link is not valid any more".into(),
        ));
    }
    let problem = if f.password != f.password2 {
        Some("The two passwords differ.".to_string())
    } else {
        crate::store::users::check_username(&f.username)
            .and_then(|()| crate::store::users::check_password(&f.password))
            .err()
            .map(|e| e.to_string())
    };
    if let Some(error) = problem {
        let html = render(&SetupPage {
            token: &f.token,
            error: Some(&error),
            username: &f.username,
        });
        return Ok((StatusCode::UNPROCESSABLE_ENTITY, Html(html)).into_response());
    }
    if !app.auth.take_setup_token(&f.token) {
        return Err(Error::Forbidden(
            "this setup link is not valid any more".into(),
        ));
    }
    app.store.set_user(&f.username, &f.password).await?;
    let (id, _) = app.store.create_session(&f.username).await?;
    tracing::info!(user = %f.username, "first user created");
    Ok((
        StatusCode::SEE_OTHER,
        [
            (header::SET_COOKIE, set_cookie(Some(&id))),
            (header::LOCATION, "/".parse().expect("ASCII")),
        ],
    )
        .into_response())
}
