//! Inbound verification, dedupe, SSRF refusal and input limits, over HTTP.

use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::utils::{Sink, TestServer, flow, start, start_with, step};

fn hmac_hex(key: &[u8], msg: &[u8]) -> String {
    let mut m = Hmac::<Sha256>::new_from_slice(key).unwrap();
    m.update(msg);
    hex::encode(m.finalize().into_bytes())
}

async fn raw(srv: &TestServer, path: &str, headers: &[(&str, String)], body: &str) -> (u16, Value) {
    let mut req = srv
        .client
        .post(format!("{}/hooks/{path}", srv.url))
        .header("content-type", "application/json")
        .body(body.to_string());
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn github_signatures_are_checked_on_the_raw_body() {
    let srv = start().await;
    srv.put(
        "/api/secrets/GH",
        json!({"value": "It's a Secret to Everybody"}),
    )
    .await;
    srv.create_flow(json!({"hookflow": 1, "name": "gh", "trigger": {"type": "webhook", "verify": {"scheme": "github", "secret": "{{ secrets.GH }}"}}, "steps": []})).await;
    let body = r#"{"action": "opened", "number": 1}"#;
    let good = format!(
        "sha256={}",
        hmac_hex(b"It's a Secret to Everybody", body.as_bytes())
    );
    let (status, resp) = raw(&srv, "gh", &[("x-hub-signature-256", good.clone())], body).await;
    assert_eq!(status, 202, "{resp}");

    let (status, resp) = raw(
        &srv,
        "gh",
        &[("x-hub-signature-256", good.clone())],
        &body.replace("1}", "2}"),
    )
    .await;
    assert_eq!(status, 401, "tampered body: {resp}");
    assert!(
        !resp.to_string().contains(&good[7..]),
        "the expected signature is never revealed"
    );
    let (status, _) = raw(&srv, "gh", &[], body).await;
    assert_eq!(status, 401, "missing signature");
    let wrong = format!("sha256={}", hmac_hex(b"wrong secret", body.as_bytes()));
    let (status, resp) = raw(&srv, "gh", &[("x-hub-signature-256", wrong)], body).await;
    assert_eq!(status, 401);
    assert!(
        resp["error"]
            .as_str()
            .unwrap()
            .contains("verification failed")
    );
    let (_, runs) = srv.get("/api/runs?flow=gh").await;
    assert_eq!(
        runs["runs"].as_array().unwrap().len(),
        1,
        "failed verification starts nothing"
    );
}

#[tokio::test]
async fn stripe_signatures_with_a_symmetric_timestamp_window() {
    let srv = start().await;
    srv.put("/api/secrets/STRIPE", json!({"value": "whsec_test_secret"}))
        .await;
    srv.create_flow(json!({"hookflow": 1, "name": "stripe", "trigger": {"type": "webhook", "verify": {"scheme": "stripe", "secret": "{{ secrets.STRIPE }}"}}, "steps": []})).await;
    let body = r#"{"id":"evt_1","object":"event"}"#;
    let sign = |t: i64| {
        format!(
            "t={t},v1={}",
            hmac_hex(b"whsec_test_secret", format!("{t}.{body}").as_bytes())
        )
    };
    let now = chrono::Utc::now().timestamp();
    assert_eq!(
        raw(&srv, "stripe", &[("stripe-signature", sign(now))], body)
            .await
            .0,
        202
    );
    assert_eq!(
        raw(
            &srv,
            "stripe",
            &[("stripe-signature", sign(now - 400))],
            body
        )
        .await
        .0,
        401,
        "stale"
    );
    assert_eq!(
        raw(
            &srv,
            "stripe",
            &[("stripe-signature", sign(now + 3600))],
            body
        )
        .await
        .0,
        401,
        "future"
    );
    let rotated = format!(
        "t={now},v1={},v1={}",
        "0".repeat(64),
        hmac_hex(b"whsec_test_secret", format!("{now}.{body}").as_bytes())
    );
    assert_eq!(
        raw(&srv, "stripe", &[("stripe-signature", rotated)], body)
            .await
            .0,
        202,
        "any v1 entry may match"
    );
}

#[tokio::test]
async fn standard_webhooks_are_verified_and_deduped_by_webhook_id() {
    let srv = start().await;
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    srv.put("/api/secrets/SW", json!({"value": secret})).await;
    srv.create_flow(json!({"hookflow": 1, "name": "sw", "trigger": {"type": "webhook", "verify": {"scheme": "standard_webhooks", "secret": "{{ secrets.SW }}"}}, "steps": []})).await;
    let body = r#"{"type":"invoice.paid"}"#;
    let now = chrono::Utc::now().timestamp();
    let sig = standardwebhooks::Webhook::new(secret)
        .unwrap()
        .sign("msg_1", now, body.as_bytes())
        .unwrap();
    let headers = |id: &str, ts: i64, sig: &str| {
        vec![
            ("webhook-id", id.to_string()),
            ("webhook-timestamp", ts.to_string()),
            ("webhook-signature", sig.to_string()),
        ]
    };
    let (status, first) = raw(&srv, "sw", &headers("msg_1", now, &sig), body).await;
    assert_eq!(status, 202, "{first}");
    let (status, again) = raw(&srv, "sw", &headers("msg_1", now, &sig), body).await;
    assert_eq!(status, 200);
    assert_eq!(again, json!({"duplicate": true, "run_id": first["run_id"]}));
    let old = now - 301;
    let old_sig = standardwebhooks::Webhook::new(secret)
        .unwrap()
        .sign("msg_2", old, body.as_bytes())
        .unwrap();
    assert_eq!(
        raw(&srv, "sw", &headers("msg_2", old, &old_sig), body)
            .await
            .0,
        401
    );
    assert_eq!(
        raw(&srv, "sw", &headers("msg_3", now, &sig), body).await.0,
        401,
        "signature of another id"
    );
}

#[tokio::test]
async fn concurrent_copies_of_one_delivery_start_exactly_one_run() {
    let srv = start().await;
    srv.create_flow(json!({"hookflow": 1, "name": "dd", "trigger": {"type": "webhook", "dedupe": {"header": "X-Delivery", "window_s": 3600}}, "steps": []})).await;
    let header = [("x-delivery", "d-1".to_string())];
    let sends = (0..20).map(|_| raw(&srv, "dd", &header, "{}"));
    let results = futures::future::join_all(sends).await;
    let accepted: Vec<&Value> = results
        .iter()
        .filter(|(s, _)| *s == 202)
        .map(|(_, b)| b)
        .collect();
    assert_eq!(accepted.len(), 1, "{results:?}");
    let first = accepted[0]["run_id"].clone();
    assert!(
        results
            .iter()
            .filter(|(s, _)| *s == 200)
            .all(|(_, b)| b["duplicate"] == true && b["run_id"] == first)
    );
    assert_eq!(
        raw(&srv, "dd", &[], "{}").await.0,
        400,
        "the dedupe header is required"
    );
    let (_, runs) = srv.get("/api/runs?flow=dd").await;
    assert_eq!(runs["runs"].as_array().unwrap().len(), 1);
    // Durable across a restart.
    let srv = srv.restart(|_| {}).await;
    let (status, body) = raw(&srv, "dd", &[("x-delivery", "d-1".to_string())], "{}").await;
    assert_eq!((status, &body["run_id"]), (200, &first));
}

#[tokio::test]
async fn private_and_metadata_targets_are_refused_by_default() {
    let srv = start_with(|c| c.allow_private_targets = false).await;
    let sink = Sink::start().await;
    srv.create_flow(flow("ssrf", json!({"type": "webhook"}), json!([
        {"id": "local", "type": "http", "url": sink.url("/x"), "on_error": "continue"},
        {"id": "meta", "type": "http", "url": "http://169.254.169.254/latest/meta-data/", "on_error": "continue"},
        {"id": "mapped", "type": "http", "url": "http://[::ffff:169.254.169.254]/", "on_error": "continue"},
        {"id": "out", "type": "webhook_out", "url": sink.url("/y")}
    ]))).await;
    let run = srv.hook_and_wait("ssrf", json!({})).await;
    for id in ["local", "meta", "mapped"] {
        let s = step(&run, id);
        assert_eq!(s["status"], "failed", "{s}");
        assert!(
            s["error"].as_str().unwrap().starts_with("egress denied"),
            "{s}"
        );
    }
    let delivery = step(&run, "out")["output"]["delivery_id"]
        .as_str()
        .unwrap()
        .to_string();
    for _ in 0..100 {
        let (_, d) = srv.get(&format!("/api/deliveries/{delivery}")).await;
        if d["status"] == "failed" {
            assert!(
                d["error"].as_str().unwrap().starts_with("egress denied"),
                "{d}"
            );
            assert!(
                sink.received().is_empty(),
                "nothing reached the private address"
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the delivery to a private address was not refused");
}

#[tokio::test]
async fn bad_inputs_answer_4xx_and_a_misconfigured_secret_is_not_a_sender_error() {
    let srv = start().await;
    srv.create_flow(
        json!({"hookflow": 1, "name": "in", "trigger": {"type": "webhook"}, "steps": []}),
    )
    .await;
    let c = &srv.client;
    let url = format!("{}/hooks/in", srv.url);
    let r = c
        .post(&url)
        .header("content-type", "application/json")
        .body(vec![b'{', b'"', 0xff, 0xfe, b'"', b'}'])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "invalid UTF-8");
    let deep = "[".repeat(10_000) + &"]".repeat(10_000);
    let r = c
        .post(&url)
        .header("content-type", "application/json")
        .body(deep)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "10 000-deep nesting");
    let r = c
        .post(&url)
        .body(vec![b'x'; 10 * 1024 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413, "10 MB body");
    let r = c.post(&url).json(&json!({"ok": 1})).send().await.unwrap();
    assert_eq!(r.status(), 202, "the server is still fine");

    srv.put("/api/secrets/TEMP", json!({"value": "x"})).await;
    srv.create_flow(json!({"hookflow": 1, "name": "mis", "trigger": {"type": "webhook", "verify": {"scheme": "github", "secret": "{{ secrets.TEMP }}"}}, "steps": []})).await;
    srv.delete("/api/secrets/TEMP").await;
    let r = c
        .post(format!("{}/hooks/mis", srv.url))
        .header("x-hub-signature-256", "sha256=00")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    let text = r.text().await.unwrap();
    assert!(!text.contains("TEMP"), "{text}");

    let (status, body) = srv.post("/api/flows", json!({"hookflow": 1, "name": "v", "trigger": {"type": "webhook", "verify": {"scheme": "gitlab", "secret": "x"}}, "steps": []})).await;
    assert_eq!(status, 422);
    assert!(
        body["issues"][0]["text"]
            .as_str()
            .unwrap()
            .starts_with("trigger.verify.scheme: "),
        "{body}"
    );
}

#[tokio::test]
async fn body_limits_can_be_set_per_flow_and_header_floods_are_refused() {
    let srv = start().await;
    srv.create_flow(json!({"hookflow": 1, "name": "small", "trigger": {"type": "webhook", "max_body_bytes": 100}, "steps": []})).await;
    srv.create_flow(json!({"hookflow": 1, "name": "big", "trigger": {"type": "webhook", "max_body_bytes": 4194304}, "steps": []})).await;
    let post = |path: &str, size: usize| {
        srv.client
            .post(format!("{}/hooks/{path}", srv.url))
            .body(vec![b'x'; size])
            .send()
    };
    assert_eq!(
        post("small", 100).await.unwrap().status(),
        202,
        "at the limit"
    );
    let r = post("small", 101).await.unwrap();
    assert_eq!(r.status(), 413);
    assert!(
        r.json::<Value>().await.unwrap()["error"]
            .as_str()
            .unwrap()
            .contains("100 bytes")
    );
    assert_eq!(
        post("big", 2 * 1024 * 1024).await.unwrap().status(),
        202,
        "above the server default, within the flow's limit"
    );
    let (status, body) = srv.post("/api/flows", json!({"hookflow": 1, "name": "huge", "trigger": {"type": "webhook", "max_body_bytes": 1u64 << 40}, "steps": []})).await;
    assert_eq!(status, 422, "{body}");

    let mut req = srv
        .client
        .post(format!("{}/hooks/small", srv.url))
        .body("{}");
    for i in 0..200 {
        req = req.header(format!("x-flood-{i}"), "1");
    }
    match req.send().await {
        Ok(r) => assert_eq!(r.status(), 431, "too many headers"),
        Err(e) => assert!(
            e.is_request() || e.is_connect(),
            "the server closed the connection: {e}"
        ),
    }
    assert_eq!(
        post("small", 2).await.unwrap().status(),
        202,
        "still serving"
    );
}
