//! Outbound deliveries: signed per Standard Webhooks, retried until the receiver is back.

use std::time::Duration;

use serde_json::{Value, json};

use crate::utils::{Sink, flow, start_with, step, webhook};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

#[tokio::test]
async fn a_delivery_to_a_receiver_that_is_down_arrives_once_it_is_up() {
    let srv = start_with(|c| {
        c.delivery_schedule = hookflow::config::parse_schedule(
            "0s,300ms,300ms,300ms,300ms,300ms,300ms,300ms,300ms,300ms",
        )
        .unwrap()
    })
    .await;
    // Reserve a port, then free it: nothing listens there until the sink starts.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let (status, _) = srv.put("/api/secrets/OUT", json!({"value": SECRET})).await;
    assert_eq!(status, 204);
    srv.create_flow(flow("out", webhook("out"), json!([
        {"id": "send", "type": "webhook_out", "url": format!("http://{addr}/receive"), "secret": "{{ secrets.OUT }}", "body": {"order": "{{ $.trigger.body.id }}"}}
    ]))).await;
    let run = srv.hook_and_wait("out", json!({"id": 9})).await;
    assert_eq!(
        run["status"], "succeeded",
        "the step completes once the delivery is queued"
    );
    let delivery_id = step(&run, "send")["output"]["delivery_id"]
        .as_str()
        .unwrap()
        .to_string();

    // Let a couple of attempts fail against the closed port.
    let mut failed_attempts = 0;
    for _ in 0..100 {
        let (_, d) = srv.get(&format!("/api/deliveries/{delivery_id}")).await;
        failed_attempts = d["attempts"].as_i64().unwrap();
        if failed_attempts >= 2 {
            assert_eq!(d["status"], "pending");
            assert!(d["error"].is_string());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        failed_attempts >= 2,
        "attempts against the closed port are recorded"
    );

    let sink = Sink::on(tokio::net::TcpListener::bind(addr).await.unwrap()).await;
    let got = sink.wait_for("/receive", 1, Duration::from_secs(10)).await;
    assert_eq!(got.len(), 1, "delivered once the receiver is up");
    let req = &got[0];
    assert_eq!(req.json(), json!({"order": 9}));
    assert_eq!(req.headers["webhook-id"], delivery_id.as_str());
    // The signature verifies with the Standard Webhooks reference implementation.
    let hook = standardwebhooks::Webhook::new(SECRET).unwrap();
    hook.verify(&req.body, &req.headers)
        .expect("signature verifies");
    let mut tampered = req.body.to_vec();
    tampered[2] ^= 1;
    assert!(hook.verify(&tampered, &req.headers).is_err());

    for _ in 0..100 {
        let (_, d) = srv.get(&format!("/api/deliveries/{delivery_id}")).await;
        if d["status"] == "succeeded" {
            assert_eq!(d["response_status"], 200);
            let log = d["attempt_log"].as_array().unwrap();
            assert!(log.len() >= 3, "{d:#}");
            assert!(log.last().unwrap()["response_status"] == 200);
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("delivery not marked succeeded");
}

#[tokio::test]
async fn exhausted_deliveries_fail_and_can_be_redelivered() {
    let srv =
        start_with(|c| c.delivery_schedule = hookflow::config::parse_schedule("0s,50ms").unwrap())
            .await;
    let sink = Sink::start().await;
    sink.answer("/hook", 500, Duration::ZERO);
    srv.create_flow(flow(
        "out",
        webhook("out"),
        json!([
            {"id": "send", "type": "webhook_out", "urls": [sink.url("/hook")], "wait": true}
        ]),
    ))
    .await;
    let run = srv.hook_and_wait("out", json!({"n": 1})).await;
    assert_eq!(
        run["status"], "failed",
        "wait=true fails the step when the delivery gives up: {run:#}"
    );
    let (_, list) = srv.get("/api/deliveries?status=failed").await;
    let d = &list["deliveries"][0];
    assert_eq!(d["attempts"], 2);
    assert_eq!(d["response_status"], 500);
    sink.clear_rules();
    let id = d["id"].as_str().unwrap();
    let (status, _) = srv
        .post(&format!("/api/deliveries/{id}/redeliver"), Value::Null)
        .await;
    assert_eq!(status, 202);
    sink.wait_for("/hook", 3, Duration::from_secs(5)).await;
    for _ in 0..100 {
        let (_, d) = srv.get(&format!("/api/deliveries/{id}")).await;
        if d["status"] == "succeeded" {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("redelivery did not succeed");
}
