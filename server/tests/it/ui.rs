//! The web UI over plain HTTP: login is required, state-changing requests need the CSRF token,
//! every HTML answer carries the CSP, assets are served with cache headers, and the pages render.

use reqwest::{StatusCode, redirect::Policy};
use serde_json::json;

use crate::utils::{TestServer, flow, start, webhook};

pub const USER: &str = "admin";
pub const PASSWORD: &str = "correct horse battery";

/// A user and a session for it: (session cookie value, CSRF token).
pub async fn login(srv: &TestServer) -> (String, String) {
    let store = &srv.app().store;
    if store.user_count().await.unwrap() == 0 {
        store.set_user(USER, PASSWORD).await.unwrap();
    }
    let (id, session) = store.create_session(USER).await.unwrap();
    (id, session.csrf)
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .unwrap()
}

#[tokio::test]
async fn pages_need_a_session() {
    let srv = start().await;
    let c = no_redirects();
    for path in [
        "/",
        "/flows",
        "/runs",
        "/flows/new",
        "/secrets",
        "/settings",
        "/deliveries",
        "/inspect",
    ] {
        let resp = c.get(format!("{}{path}", srv.url)).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::SEE_OTHER, "{path}");
        let to = resp.headers()["location"].to_str().unwrap().to_string();
        assert!(to.starts_with("/login") || to == "/flows", "{path} → {to}");
    }
    let resp = c
        .get(format!("{}/runs", srv.url))
        .header("hx-request", "true")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(resp.headers()["hx-redirect"], "/login");
}

#[tokio::test]
async fn forms_without_the_csrf_token_are_refused() {
    let srv = start().await;
    let (sid, csrf) = login(&srv).await;
    let c = no_redirects();
    let cookie = format!("hookflow_session={sid}");
    let post = |body: &'static str| {
        c.post(format!("{}/flows", srv.url))
            .header("cookie", &cookie)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
    };
    assert_eq!(
        post("name=nocsrf&trigger=webhook")
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::FORBIDDEN
    );
    let htmx = post("name=nocsrf")
        .header("hx-request", "true")
        .send()
        .await
        .unwrap();
    assert_eq!(htmx.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        htmx.headers()["hx-retarget"],
        "#flash",
        "htmx shows the refusal in the flash area"
    );
    assert!(htmx.text().await.unwrap().contains("CSRF"));
    let wrong = c
        .post(format!("{}/flows", srv.url))
        .header("cookie", &cookie)
        .form(&[("_csrf", "0000"), ("name", "nocsrf")])
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::FORBIDDEN);
    let foreign = c
        .post(format!("{}/flows", srv.url))
        .header("cookie", &cookie)
        .header("origin", "https://evil.example")
        .form(&[("_csrf", csrf.as_str()), ("name", "nocsrf")])
        .send()
        .await
        .unwrap();
    assert_eq!(foreign.status(), StatusCode::FORBIDDEN);
    let ok = c
        .post(format!("{}/flows", srv.url))
        .header("cookie", &cookie)
        .form(&[
            ("_csrf", csrf.as_str()),
            ("name", "withcsrf"),
            ("trigger", "webhook"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::SEE_OTHER);
    assert_eq!(srv.get("/api/flows/withcsrf").await.0, StatusCode::OK);
    assert_eq!(srv.get("/api/flows/nocsrf").await.0, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn html_answers_carry_the_csp_and_assets_are_cached() {
    let srv = start().await;
    let (sid, _) = login(&srv).await;
    let c = no_redirects();
    let page = c
        .get(format!("{}/flows", srv.url))
        .header("cookie", format!("hookflow_session={sid}"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        csp.contains("script-src 'self'")
            && csp.contains("style-src 'self'")
            && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    let html = page.text().await.unwrap();
    assert!(
        !html.contains("<style") && !html.contains(" style=") && !html.contains("<script>"),
        "inline styles or scripts in the page"
    );
    let login_page = c.get(format!("{}/login", srv.url)).send().await.unwrap();
    assert!(login_page.headers().contains_key("content-security-policy"));
    let htmx = c
        .get(format!(
            "{}/assets/{}",
            srv.url,
            hookflow_web::assets::HTMX_PATH
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(htmx.status(), StatusCode::OK);
    assert!(
        htmx.headers()["cache-control"]
            .to_str()
            .unwrap()
            .contains("immutable")
    );
    let css = c
        .get(format!(
            "{}/assets/app.css?v={}",
            srv.url,
            hookflow_web::assets::version()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(css.headers()["content-type"], "text/css; charset=utf-8");
    assert_eq!(
        c.get(format!("{}/assets/nope.js", srv.url))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn every_page_renders_with_data() {
    let srv = start().await;
    let (sid, _) = login(&srv).await;
    srv.create_flow(flow(
        "pages",
        webhook("pages/in"),
        json!([{"id": "shape", "type": "transform", "output": {"v": "{{ $.trigger.body.v }}"}},
               {"id": "keep", "type": "filter", "condition": {"path": "$.input.v", "op": "gt", "value": 1}}]),
    ))
    .await;
    let run = srv.hook_and_wait("pages/in", json!({"v": 2})).await;
    let id = run["id"].as_str().unwrap();
    let (_, replay) = srv.post(&format!("/api/runs/{id}/diff"), json!({})).await;
    let other = replay["run_id"].as_str().unwrap();
    assert_eq!(replay["diff"]["changed_steps"], 0, "{replay}");
    let c = no_redirects();
    for path in [
        "/flows".to_string(),
        "/flows/pages".into(),
        "/flows/pages?sel=keep".into(),
        "/flows/pages?add=shape&before=keep".into(),
        "/flows/pages?panel=test".into(),
        format!("/flows/pages?run={id}&sel=shape"),
        "/flows/pages/json".into(),
        "/flows/pages/versions/1".into(),
        "/flows/pages/delete".into(),
        "/runs".into(),
        "/runs?flow=pages&status=succeeded".into(),
        format!("/runs/{id}"),
        format!("/runs/{id}/diff/{other}"),
        "/deliveries".into(),
        "/inspect".into(),
        "/secrets".into(),
        "/settings".into(),
        "/import".into(),
        "/flows/new".into(),
    ] {
        let resp = c
            .get(format!("{}{path}", srv.url))
            .header("cookie", format!("hookflow_session={sid}"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
        let html = resp.text().await.unwrap();
        assert!(html.contains("hookflow"), "{path}");
    }
    let missing = c
        .get(format!("{}/flows/nope", srv.url))
        .header("cookie", format!("hookflow_session={sid}"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert!(missing.text().await.unwrap().contains("no flow named"));
}

#[tokio::test]
async fn replay_with_diff_in_the_api() {
    let srv = start().await;
    srv.create_flow(flow("d", webhook("d"), json!([{"id": "t", "type": "transform", "output": {"a": "{{ $.trigger.body.a }}", "b": 1}}]))).await;
    let run = srv.hook_and_wait("d", json!({"a": "x"})).await;
    let id = run["id"].as_str().unwrap();
    let (status, _) = srv
        .put("/api/flows/d", flow("d", webhook("d"), json!([{"id": "t", "type": "transform", "output": {"a": "{{ $.trigger.body.a | upper }}", "b": 1}}])))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, v) = srv.post(&format!("/api/runs/{id}/diff"), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["diff"]["after"]["version"], 2);
    assert_eq!(
        v["diff"]["steps"][0]["changes"],
        json!([{"path": "$.a", "before": "x", "after": "X"}])
    );
    let (status, v1) = srv
        .post(&format!("/api/runs/{id}/diff?version=1"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v1["diff"]["changed_steps"], 0);
    let other = v["run_id"].as_str().unwrap();
    let (status, cmp) = srv.get(&format!("/api/runs/{id}/diff?with={other}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(cmp["changed_steps"], 1);
    assert_eq!(
        srv.post(&format!("/api/runs/{id}/diff?version=9"), json!({}))
            .await
            .0,
        StatusCode::NOT_FOUND
    );
}
