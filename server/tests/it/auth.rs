//! UI sessions: first-run setup, login, rate limiting, logout, CSRF; API tokens.

use reqwest::{StatusCode, redirect::Policy};
use serde_json::{Value, json};

use crate::utils::{TestServer, start};

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .unwrap()
}

fn session_cookie(resp: &reqwest::Response) -> Option<String> {
    resp.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("hookflow_session=") && !c.starts_with("hookflow_session=;"))
        .map(|c| c.split(';').next().unwrap().to_string())
}

async fn login(srv: &TestServer, user: &str, pw: &str) -> reqwest::Response {
    client()
        .post(format!("{}/login", srv.url))
        .form(&[("username", user), ("password", pw), ("next", "/runs")])
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn first_run_setup_link_works_once() {
    let srv = start().await;
    let token = srv.app().auth.setup_token();
    let c = client();
    let r = c
        .get(format!("{}/setup?token=wrong", srv.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = c
        .get(format!("{}/setup?token={token}", srv.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("Create the first user"));
    let form = [
        ("token", token.as_str()),
        ("username", "admin"),
        ("password", "correct horse battery"),
        ("password2", "different password"),
    ];
    let r = c
        .post(format!("{}/setup", srv.url))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422, "passwords must match");
    let form = [
        ("token", token.as_str()),
        ("username", "admin"),
        ("password", "correct horse battery"),
        ("password2", "correct horse battery"),
    ];
    let r = c
        .post(format!("{}/setup", srv.url))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert!(session_cookie(&r).is_some());
    let cookie = r
        .headers()
        .get("set-cookie")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );
    let r = c
        .post(format!("{}/setup", srv.url))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "the link works once");
    assert_eq!(
        login(&srv, "admin", "correct horse battery").await.status(),
        303
    );
}

#[tokio::test]
async fn login_is_rate_limited_and_logout_needs_the_csrf_token() {
    let srv = start().await;
    srv.app()
        .store
        .set_user("ana", "a long enough password")
        .await
        .unwrap();
    let r = login(&srv, "ana", "wrong password!").await;
    assert_eq!(r.status(), 401);
    assert!(session_cookie(&r).is_none());
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("Wrong username or password")
    );
    let r = login(&srv, "ana", "a long enough password").await;
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/runs");
    let cookie = session_cookie(&r).unwrap();
    let session_id = cookie.split('=').nth(1).unwrap();
    let csrf = srv
        .app()
        .store
        .get_session(session_id)
        .await
        .unwrap()
        .unwrap()
        .csrf;

    let c = client();
    let r = c
        .post(format!("{}/logout", srv.url))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "no CSRF token");
    let r = c
        .post(format!("{}/logout", srv.url))
        .header("cookie", &cookie)
        .header("x-csrf-token", "0".repeat(64))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "wrong CSRF token");
    let r = c
        .post(format!("{}/logout", srv.url))
        .header("cookie", &cookie)
        .header("origin", "http://evil.example")
        .form(&[("_csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "cross-origin");
    let r = c
        .post(format!("{}/logout", srv.url))
        .header("cookie", &cookie)
        .form(&[("_csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert!(
        srv.app()
            .store
            .get_session(session_id)
            .await
            .unwrap()
            .is_none(),
        "the session is gone"
    );

    for _ in 0..5 {
        assert_eq!(login(&srv, "ana", "wrong password!").await.status(), 401);
    }
    let r = login(&srv, "ana", "a long enough password").await;
    assert_eq!(
        r.status(),
        429,
        "too many failures, even with the right password"
    );
    let r = login(&srv, "nobody", "whatever it is").await;
    assert_eq!(r.status(), 429);
}

#[tokio::test]
async fn open_redirects_are_refused_after_login() {
    let srv = start().await;
    srv.app()
        .store
        .set_user("bo", "another long password")
        .await
        .unwrap();
    let r = client()
        .post(format!("{}/login", srv.url))
        .form(&[
            ("username", "bo"),
            ("password", "another long password"),
            ("next", "//evil.example/"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["location"], "/");
}

#[tokio::test]
async fn api_tokens_are_listed_created_and_revoked() {
    let srv = start().await;
    let (status, created) = srv.post("/api/tokens", json!({"name": "deploy"})).await;
    assert_eq!(status, StatusCode::CREATED);
    let token = created["token"].as_str().unwrap().to_string();
    let (_, list) = srv.get("/api/tokens").await;
    let tokens = list["tokens"].as_array().unwrap();
    assert_eq!(tokens.len(), 2);
    assert!(
        !list.to_string().contains(&token),
        "tokens are never listed"
    );
    let id = tokens.iter().find(|t| t["name"] == "deploy").unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = srv
        .client
        .get(format!("{}/api/flows", srv.url))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (status, _) = srv.delete(&format!("/api/tokens/{id}")).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let r = srv
        .client
        .get(format!("{}/api/flows", srv.url))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "a revoked token stops working");
    let body: Value = r.json().await.unwrap();
    assert!(body["error"].is_string());
}
