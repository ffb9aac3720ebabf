//! The flows API: validation with locations, versions, import/export, auth, secrets.

use serde_json::{Value, json};

use crate::utils::{flow, start, webhook};

fn texts(body: &Value) -> Vec<String> {
    body["issues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["text"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn invalid_flows_get_422_with_every_problem_and_its_location() {
    let srv = start().await;
    let (status, body) = srv.post("/api/flows", json!({
        "hookflow": 1, "name": "bad", "trigger": {"type": "webhook", "respond": {"mode": "soon"}},
        "steps": [
            {"id": "shape", "type": "transform", "output": {"a": "{{ $.trigger.body[ }}"}},
            {"id": "crm", "type": "http", "url": "https://crm.example.com", "colour": "red"},
            {"id": "x", "type": "filter", "after": ["shap"], "condition": {"path": "$.input.a", "op": "bigger", "value": 1}},
            {"id": "y", "type": "transform", "output": {"k": "{{ secrets.NOPE }}"}},
            {"id": "shape", "type": "teleport"}
        ]
    })).await;
    assert_eq!(status, 422, "{body:#}");
    let got = texts(&body);
    for want in [
        "trigger.respond.mode: unknown mode 'soon'",
        "steps[0].output.a: ",
        "steps[1].colour: unknown field `colour`",
        "steps[2].after[0]: unknown step 'shap'",
        "steps[2].condition.op: ",
        "steps[3].output.k: unknown secret 'NOPE'",
        "steps[4].id: duplicate step id 'shape'",
        "steps[4].type: unknown step type 'teleport'",
    ] {
        assert!(
            got.iter().any(|g| g.starts_with(want)),
            "missing {want:?} in {got:#?}"
        );
    }
    let (status, _) = srv.get("/api/flows/bad").await;
    assert_eq!(status, 404, "nothing was saved");
    let (status, body) = srv.post("/api/flows", json!("not a flow")).await;
    assert_eq!(status, 422, "{body}");
    let r = srv
        .client
        .post(format!("{}/api/flows", srv.url))
        .bearer_auth(&srv.token)
        .header("content-type", "application/json")
        .body("{oops")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn each_save_is_a_new_version_and_crud_works() {
    let srv = start().await;
    let v1 = flow(
        "crud",
        webhook("crud"),
        json!([{"id": "t", "type": "transform", "output": 1}]),
    );
    srv.create_flow(v1.clone()).await;
    let (status, _) = srv.post("/api/flows", v1.clone()).await;
    assert_eq!(status, 409, "POST does not overwrite");
    let (status, body) = srv.put("/api/flows/crud", v1.clone()).await;
    assert_eq!(
        (
            status.as_u16(),
            body["version"].as_i64(),
            body["changed"].as_bool()
        ),
        (200, Some(1), Some(false)),
        "identical save keeps the version"
    );
    let v2 = flow(
        "crud",
        webhook("crud"),
        json!([{"id": "t", "type": "transform", "output": 2}]),
    );
    let (status, body) = srv.put("/api/flows/crud", v2.clone()).await;
    assert_eq!((status.as_u16(), body["version"].as_i64()), (200, Some(2)));
    let (_, got) = srv.get("/api/flows/crud").await;
    assert_eq!(got, v2);
    let (_, versions) = srv.get("/api/flows/crud/versions").await;
    let listed: Vec<i64> = versions["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_i64().unwrap())
        .collect();
    assert_eq!(listed, [2, 1]);
    let (_, old) = srv.get("/api/flows/crud/versions/1").await;
    assert_eq!(old, v1);
    let (status, body) = srv
        .put("/api/flows/crud", flow("other", webhook("crud"), json!([])))
        .await;
    assert_eq!(status, 422, "name must match the URL: {body}");
    let (_, list) = srv.get("/api/flows").await;
    assert_eq!(list["flows"][0]["trigger"]["url_path"], "/hooks/crud");
    let (status, body) = srv
        .post("/api/flows", flow("dup-path", webhook("crud"), json!([])))
        .await;
    assert_eq!(status, 422);
    assert!(
        texts(&body)[0].contains("already used by flow 'crud'"),
        "{body}"
    );
    let (status, _) = srv.delete("/api/flows/crud").await;
    assert_eq!(status, 204);
    let (status, _) = srv.hook("crud", json!({})).await;
    assert_eq!(status, 404, "a deleted flow no longer receives webhooks");
    let (status, _) = srv.delete("/api/flows/crud").await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn import_then_export_round_trips_exactly() {
    let srv = start().await;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/flows");
    let mut originals: Vec<Value> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| {
            serde_json::from_str(&std::fs::read_to_string(e.unwrap().path()).unwrap()).unwrap()
        })
        .collect();
    assert!(originals.len() >= 4);
    let (status, report) = srv
        .post("/api/import", json!({"hookflow": 1, "flows": originals}))
        .await;
    assert_eq!(status, 200, "{report:#}");
    assert_eq!(
        report["imported"].as_array().unwrap().len(),
        originals.len()
    );
    let (status, bundle) = srv.get("/api/export").await;
    assert_eq!(status, 200);
    let mut exported = bundle["flows"].as_array().unwrap().clone();
    let by_name = |v: &Value| v["name"].as_str().unwrap().to_string();
    originals.sort_by_key(by_name);
    exported.sort_by_key(by_name);
    assert_eq!(
        exported, originals,
        "export returns exactly what was imported"
    );
    // Byte-identical key order too, so exports diff cleanly.
    assert_eq!(
        serde_json::to_string(&exported[0]).unwrap(),
        serde_json::to_string(&originals[0]).unwrap()
    );

    let (status, body) = srv
        .post("/api/import", json!({"hookflow": 1, "flows": originals}))
        .await;
    assert_eq!(status, 409, "default on_conflict=fail: {body}");
    let (status, body) = srv
        .post("/api/import?on_conflict=skip", json!(originals))
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["skipped"].as_array().unwrap().len(), originals.len());
    let (status, body) = srv
        .post("/api/import?on_conflict=replace", json!(originals[0]))
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["unchanged"].as_array().unwrap().len(), 1);
    let (status, body) = srv.post("/api/import", json!({"hookflow": 1, "flows": [flow("x", webhook("x"), json!([{"id": "a", "type": "webhook_out", "flow": "missing"}]))]})).await;
    assert_eq!(status, 422);
    assert!(
        texts(&body)[0].starts_with("flows[0].steps[0]: chains to unknown flow 'missing'"),
        "{body}"
    );
}

#[tokio::test]
async fn the_api_needs_a_token() {
    let srv = start().await;
    for path in [
        "/api/flows",
        "/api/runs",
        "/api/export",
        "/api/secrets",
        "/api/deliveries",
    ] {
        let r = srv
            .client
            .get(format!("{}{path}", srv.url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{path}");
        assert!(
            r.json::<Value>().await.unwrap()["error"]
                .as_str()
                .unwrap()
                .contains("Bearer")
        );
        let r = srv
            .client
            .get(format!("{}{path}", srv.url))
            .bearer_auth("hf_wrong")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{path}");
    }
}

/// A first step's input is the request's body (stored once, with the trigger); a body that
/// carries a secret's value shows it redacted in the step's input all the same.
#[tokio::test]
async fn a_first_steps_input_is_the_body_and_stays_redacted() {
    let srv = start().await;
    let (status, _) = srv
        .put("/api/secrets/TOKEN", json!({"value": "s3cr3t-value"}))
        .await;
    assert_eq!(status, 204);
    let steps = json!([{"id": "t", "type": "transform",
        "output": {"auth": "{{ secrets.TOKEN }}", "n": "{{ $.input.n }}"}}]);
    srv.create_flow(flow("first", webhook("first"), steps))
        .await;
    let body = json!({"n": 1, "items": [{"sku": "a"}, 2], "note": "é"});
    let run = srv.hook_and_wait("first", body.clone()).await;
    assert_eq!(run["status"], "succeeded");
    assert_eq!(crate::utils::step(&run, "t")["input"], body);
    let run = srv
        .hook_and_wait("first", json!({"n": 2, "note": "s3cr3t-value"}))
        .await;
    assert_eq!(
        crate::utils::step(&run, "t")["input"],
        json!({"n": 2, "note": "«redacted:TOKEN»"})
    );
}

#[tokio::test]
async fn secrets_are_write_only_and_usable_in_templates() {
    let srv = start().await;
    let (status, _) = srv
        .put("/api/secrets/CRM_TOKEN", json!({"value": "s3cr3t-value"}))
        .await;
    assert_eq!(status, 204);
    let (_, list) = srv.get("/api/secrets").await;
    assert_eq!(list["secrets"][0]["name"], "CRM_TOKEN");
    assert!(
        !list.to_string().contains("s3cr3t"),
        "values are never shown"
    );
    srv.create_flow(flow("sec", webhook("sec"), json!([{"id": "t", "type": "transform", "output": {"auth": "Bearer {{ secrets.CRM_TOKEN }}"}}]))).await;
    let run = srv.hook_and_wait("sec", json!({})).await;
    assert_eq!(run["status"], "succeeded");
    assert!(
        !run.to_string().contains("s3cr3t-value"),
        "secrets are redacted from runs: {run}"
    );
    assert_eq!(
        crate::utils::step(&run, "t")["output"]["auth"],
        "Bearer «redacted:CRM_TOKEN»"
    );
    let (_, exported) = srv.get("/api/export").await;
    assert!(
        exported.to_string().contains("{{ secrets.CRM_TOKEN }}"),
        "exports keep references"
    );
    let (status, _) = srv
        .put("/api/secrets/bad-name", json!({"value": "x"}))
        .await;
    assert_eq!(status, 400);
    let (status, _) = srv.delete("/api/secrets/CRM_TOKEN").await;
    assert_eq!(status, 204);
}
