//! The UI in a real headless Chromium: build a flow from scratch, send it a webhook, read the
//! run, retry a failure, export and import a file; user text stays inert; and the screenshots
//! in `docs/screenshots/` (regenerated with `HOOKFLOW_SCREENSHOTS=1 cargo test -p hookflow --test it screenshots`).

use std::{path::PathBuf, time::Duration};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::{
    ui::login,
    utils::{Sink, TestServer, flow, start, webhook},
    webdriver::Browser,
};

const WAIT: Duration = Duration::from_secs(20);

/// A browser logged in to `srv`.
async fn browser(srv: &TestServer, width: u32, height: u32) -> Browser {
    let (sid, _) = login(srv).await;
    let b = Browser::start(width, height).await;
    b.goto(&format!("{}/login", srv.url)).await;
    b.add_cookie("hookflow_session", &sid).await;
    b
}

/// Wait for the editor's notice (a save went through).
async fn saved(b: &Browser) {
    b.wait_text("#notice", "Saved as version", WAIT).await;
}

#[tokio::test]
async fn build_a_flow_run_it_retry_export_and_import() {
    let srv = start().await;
    let sink = Sink::start().await;
    let b = browser(&srv, 1280, 900).await;

    // Create the flow.
    b.goto(&format!("{}/flows", srv.url)).await;
    b.click("#new-flow").await;
    b.fill("#f-name", "orders").await;
    b.fill("#f-title", "Orders to the CRM").await;
    b.fill("#f-path", "shop/orders").await;
    b.click("#create-flow").await;

    // The first step: a transform after the trigger (the panel opens on a new step).
    b.find("#step-form").await;
    b.select("#s-kind", "transform").await;
    b.find("#s-output").await;
    b.fill("#s-id", "shape").await;
    b.fill("#s-output", r#"{"order": "{{ $.trigger.body.id }}", "status": "{{ $.trigger.body.status }}", "email": "{{ $.trigger.body.email | lower }}"}"#).await;
    b.click("#apply-step").await;
    saved(&b).await;
    assert!(b.exists("a.node[data-node=shape]").await);

    // A filter after it, from the "+" under the node.
    b.click("a.plus.add[aria-label='Add a step after shape']")
        .await;
    b.find("#step-form").await;
    b.select("#s-kind", "filter").await;
    b.find("input[name=c_path]").await;
    b.fill("#s-id", "paid_only").await;
    b.fill("input[name=c_path]", "$.input.status").await;
    b.fill("input[name=c_val]", "paid").await;
    b.click("#apply-step").await;
    saved(&b).await;

    // An HTTP call to the sink after the filter; first with a mistake, shown at its field.
    b.click("a.plus.add[aria-label='Add a step after paid_only']")
        .await;
    b.find("#s-url").await;
    b.fill("#s-id", "notify").await;
    b.fill("#s-url", "not a url").await;
    b.fill(
        "#s-body",
        r#"{"text": "Order {{ $.input.order }} from {{ $.input.email }}"}"#,
    )
    .await;
    b.click("#apply-step").await;
    b.find(".field.invalid .field-error").await;
    assert_eq!(
        b.eval("return document.querySelector('#s-body').value", json!([]))
            .await
            .as_str()
            .unwrap(),
        r#"{"text": "Order {{ $.input.order }} from {{ $.input.email }}"}"#,
        "the form keeps what was typed"
    );
    b.fill("#s-url", &sink.url("/notes")).await;
    b.click("#apply-step").await;
    saved(&b).await;
    for node in ["trigger", "shape", "paid_only", "notify"] {
        assert!(
            b.exists(&format!("a.node[data-node={node}]")).await,
            "{node} on the graph"
        );
    }
    let (_, doc) = srv.get("/api/flows/orders").await;
    assert_eq!(doc["steps"].as_array().unwrap().len(), 3, "{doc:#}");
    assert_eq!(
        doc["steps"][1]["condition"],
        json!({"path": "$.input.status", "op": "eq", "value": "paid"})
    );

    // A webhook from outside; the run appears with the right step outputs.
    let (status, resp) = srv
        .hook(
            "shop/orders",
            json!({"id": 42, "status": "paid", "email": "Ann@Example.COM"}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let run_id = resp["run_id"].as_str().unwrap().to_string();
    let got = sink.wait_for("/notes", 1, WAIT).await;
    assert_eq!(
        got[0].json(),
        json!({"text": "Order 42 from ann@example.com"})
    );
    b.goto(&format!("{}/runs", srv.url)).await;
    b.click(&format!("a[href='/runs/{run_id}']")).await;
    b.wait_text("#run-status", "succeeded", WAIT).await;
    let shape = b.text("[data-step-output=shape]").await;
    assert!(
        shape.contains("\"order\": 42") && shape.contains("ann@example.com"),
        "{shape}"
    );
    assert!(
        b.text("[data-step-output=notify]")
            .await
            .contains("\"status\": 200")
    );

    // A failing endpoint: the run fails; retried from the UI once the endpoint is back.
    sink.answer("/notes", 500, Duration::ZERO);
    let (_, resp) = srv
        .hook(
            "shop/orders",
            json!({"id": 43, "status": "paid", "email": "b@x"}),
        )
        .await;
    let failed = resp["run_id"].as_str().unwrap().to_string();
    b.goto(&format!("{}/runs/{failed}", srv.url)).await;
    b.wait_text("#run-status", "failed", WAIT).await;
    sink.clear_rules();
    b.click("#retry").await;
    b.wait_text("#run-status", "succeeded", WAIT).await;
    assert!(b.body_text().await.contains("attempt 2"));

    // Test from the editor: the graph shows each node's status.
    b.goto(&format!("{}/flows/orders?panel=test", srv.url))
        .await;
    b.fill(
        "#t-payload",
        r#"{"id": 7, "status": "pending", "email": "c@x"}"#,
    )
    .await;
    b.click("#run-test").await;
    b.find("a.node.st-stopped[data-node=paid_only]").await;
    b.find("a.node.st-skipped[data-node=notify]").await;
    b.click("a.node[data-node=shape]").await;
    b.wait_text("#panel [data-testid=step-output]", "\"order\": 7", WAIT)
        .await;

    // Template help: a path from the latest run goes into the field being edited.
    b.goto(&format!("{}/flows/orders?sel=notify", srv.url))
        .await;
    b.fill("#s-body", "").await;
    b.click("#s-body").await;
    b.click(".hint[data-path='$.input.email']").await;
    let body = b
        .eval("return document.querySelector('#s-body').value", json!([]))
        .await;
    assert_eq!(body, json!("{{ $.input.email }}"));

    // Export a file, import it back under another name.
    b.goto(&format!("{}/flows/orders", srv.url)).await;
    b.click("#export-flow").await;
    let file = b.download("orders.json").await;
    let mut exported: Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(exported, doc, "the export is the stored definition");
    exported["name"] = json!("orders-copy");
    exported["trigger"]["path"] = json!("shop/orders-copy");
    let dir = tempfile::tempdir().unwrap();
    let upload = dir.path().join("orders-copy.json");
    std::fs::write(&upload, serde_json::to_string_pretty(&exported).unwrap()).unwrap();
    b.goto(&format!("{}/import", srv.url)).await;
    b.upload("#import-file", &upload).await;
    for _ in 0..100 {
        if b.eval(
            "return document.querySelector('#import-text').value.length",
            json!([]),
        )
        .await
        .as_u64()
            > Some(10)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    b.click("#do-import").await;
    b.wait_text("#import-report", "orders-copy", WAIT).await;
    let (status, copy) = srv.get("/api/flows/orders-copy").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(copy, exported);
    b.quit().await;
}

#[tokio::test]
async fn login_is_required_and_user_text_is_inert() {
    let srv = start().await;
    let xss = r#"<img src=x onerror="alert('title')"><script>alert('x')</script>"#;
    let mut doc = flow(
        "xss",
        webhook("xss"),
        json!([{"id": "x_1", "type": "transform", "title": xss, "output": {"echo": "{{ $.trigger.body.text }}"}}]),
    );
    doc["title"] = json!(xss);
    doc["description"] = json!(xss);
    srv.create_flow(doc).await;
    let run = srv
        .hook_and_wait(
            "xss",
            json!({"text": xss, "<b>key</b>": "\"><svg onload=alert(1)>"}),
        )
        .await;
    let id = run["id"].as_str().unwrap();

    // Without a session every page sends the browser to the login page.
    let b = Browser::start(1280, 900).await;
    b.goto(&format!("{}/runs/{id}", srv.url)).await;
    assert!(
        b.url().await.contains("/login?next=%2Fruns%2F"),
        "{}",
        b.url().await
    );
    b.find("#username").await;
    b.quit().await;

    let b = browser(&srv, 1280, 900).await;
    for path in [
        "/flows".to_string(),
        "/flows/xss".into(),
        "/flows/xss?sel=x_1".into(),
        format!("/runs/{id}"),
        "/runs".into(),
        format!("/flows/xss?run={id}&sel=x_1"),
    ] {
        b.goto(&format!("{}{path}", srv.url)).await;
        b.find("main").await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(b.alert_text().await, None, "a dialog opened on {path}");
        let injected = b.eval("return document.querySelectorAll('main img[src=x], main script, main svg[onload]').length", json!([])).await;
        assert_eq!(injected, json!(0), "markup from user text on {path}");
    }
    b.goto(&format!("{}/flows", srv.url)).await;
    assert!(
        b.body_text().await.contains(xss),
        "the title is shown as text"
    );
    b.goto(&format!("{}/runs/{id}", srv.url)).await;
    assert!(
        b.text("#trigger-body")
            .await
            .contains("<script>alert('x')</script>")
    );
    b.quit().await;
}

/// Seeds a few flows and runs, then captures the main pages (desktop and phone widths).
#[tokio::test]
async fn screenshots() {
    if std::env::var("HOOKFLOW_SCREENSHOTS").is_err() {
        return;
    }
    let out = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/screenshots");
    let srv = start().await;
    let sink = Sink::start().await;
    srv.create_flow(flow("warehouse-pick", json!({"type": "manual"}), json!([{"id": "pick", "type": "http", "url": sink.url("/pick"), "body": "{{ $.trigger.body }}"}]))).await;
    let mut shop = flow(
        "shop-orders",
        json!({"type": "webhook", "path": "shop/orders"}),
        json!([
            {"id": "shape", "type": "transform", "output": {"order": "{{ $.trigger.body.id }}", "email": "{{ $.trigger.body.customer.email | lower }}", "total": "{{ $.trigger.body.total_price | number }}", "status": "{{ $.trigger.body.financial_status }}"}},
            {"id": "crm", "type": "http", "method": "POST", "url": sink.url("/crm/notes"), "body": {"text": "Order {{ $.input.order }} from {{ $.input.email }}"}},
            {"id": "paid_only", "type": "filter", "after": ["shape"], "condition": {"all": [{"path": "$.input.status", "op": "eq", "value": "paid"}, {"path": "$.input.total", "op": "gt", "value": 0}]}},
            {"id": "warehouse", "type": "webhook_out", "flow": "warehouse-pick"},
            {"id": "thank_you", "type": "http", "after": ["paid_only"], "url": sink.url("/mail"), "body": {"to": "{{ $.input.email }}"}}
        ]),
    );
    shop["title"] = json!("Shop orders to CRM and fulfilment");
    srv.create_flow(shop).await;
    srv.create_flow(flow("signup", webhook("forms/signup"), json!([{"id": "normalize", "type": "transform", "output": {"email": "{{ $.trigger.body.email | trim | lower }}"}}]))).await;
    let order = |id: i64, status: &str| json!({"id": id, "financial_status": status, "total_price": "129.90", "customer": {"email": "Ann@Example.com", "name": "Ann"}, "line_items": [{"sku": "MUG-1", "qty": 2}]});
    let mut last = String::new();
    for (i, s) in ["paid", "pending", "paid"].iter().enumerate() {
        last = srv
            .hook_and_wait("shop/orders", order(1000 + i as i64, s))
            .await["id"]
            .as_str()
            .unwrap()
            .to_string();
    }
    sink.answer("/crm/notes", 503, Duration::ZERO);
    srv.hook_and_wait("shop/orders", order(1010, "paid")).await;
    sink.clear_rules();
    srv.hook_and_wait("forms/signup", json!({"email": " Bob@Example.com "}))
        .await;
    let c = reqwest::Client::new();
    c.post(format!("{}/inbox/crm-test", srv.url))
        .json(&order(7, "paid"))
        .send()
        .await
        .unwrap();
    let mut changed = srv.get("/api/flows/shop-orders").await.1;
    changed["steps"][0]["output"]["email"] = json!("{{ $.trigger.body.customer.email }}");
    changed["steps"][0]["output"]["name"] = json!("{{ $.trigger.body.customer.name }}");
    assert_eq!(
        srv.put("/api/flows/shop-orders", changed).await.0,
        StatusCode::OK
    );
    let (_, replay) = srv.post(&format!("/api/runs/{last}/diff"), json!({})).await;
    let new = replay["run_id"].as_str().unwrap().to_string();

    let b = browser(&srv, 1280, 900).await;
    let shots: Vec<(&str, String, u32)> = vec![
        ("flows", "/flows".into(), 1280),
        (
            "editor",
            format!("/flows/shop-orders?sel=crm&run={last}"),
            1280,
        ),
        (
            "editor-filter",
            "/flows/shop-orders?sel=paid_only".into(),
            1280,
        ),
        ("runs", "/runs".into(), 1280),
        ("run", format!("/runs/{last}"), 1280),
        ("diff", format!("/runs/{last}/diff/{new}"), 1280),
        ("inbox", "/inspect".into(), 1280),
        ("phone-flows", "/flows".into(), 390),
        ("phone-run", format!("/runs/{last}"), 390),
        ("phone-editor", "/flows/shop-orders?sel=shape".into(), 390),
        (
            "test-panel",
            format!("/flows/shop-orders?panel=test&run={last}"),
            1280,
        ),
    ];
    for (name, path, width) in shots {
        b.goto(&format!("{}{path}", srv.url)).await;
        b.find("main").await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        b.screenshot_page(&out.join(format!("{name}.png")), width, 2000)
            .await;
    }
    b.quit().await;
}
