//! Signatures made by the providers' own libraries (stripe, standardwebhooks and slack_sdk from
//! PyPI; @octokit/webhooks-methods from npm) verify at ingress, and fail when tampered with.
//! `scripts/test.sh` installs the libraries and names them in `HOOKFLOW_TEST_PYTHON` and
//! `HOOKFLOW_NODE_MODULES`.

use std::{io::Write, path::Path, process::Stdio};

use serde_json::{Value, json};

use crate::utils::start;

fn signers() -> Option<(String, String)> {
    let python = std::env::var("HOOKFLOW_TEST_PYTHON")
        .ok()
        .filter(|s| !s.is_empty());
    let node_modules = std::env::var("HOOKFLOW_NODE_MODULES")
        .ok()
        .filter(|s| !s.is_empty());
    match (python, node_modules) {
        (Some(p), Some(n)) => Some((p, n)),
        _ => {
            assert!(
                std::env::var("CI").is_err(),
                "CI must run the official-library signature tests (use scripts/test.sh)"
            );
            eprintln!(
                "official signing libraries not installed; run scripts/test.sh to include these tests"
            );
            None
        }
    }
}

/// Run a signer script with `input` on stdin; returns the headers it produced.
fn sign(program: &str, script: &str, input: Value, node_modules: &str) -> Vec<(String, String)> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../scripts/signers")
        .join(script);
    let mut child = std::process::Command::new(program)
        .arg(&script)
        .env("HOOKFLOW_NODE_MODULES", node_modules)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("running {program}: {e}"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{} failed", script.display());
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["headers"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
        .collect()
}

#[tokio::test]
async fn signatures_from_official_libraries_verify() {
    let Some((python, node_modules)) = signers() else {
        return;
    };
    let srv = start().await;
    let now = chrono::Utc::now().timestamp();
    let body = r#"{"id":"evt_1","object":"event","data":{"amount":1250,"note":"héllo 🌍"}}"#;
    let cases = [
        ("stripe", "whsec_test_secret", "sign.py", &python),
        (
            "standard_webhooks",
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "sign.py",
            &python,
        ),
        (
            "slack",
            "8f742231b10e8888abcd99yyyzzz85a5",
            "sign.py",
            &python,
        ),
        (
            "github",
            "It's a Secret to Everybody",
            "sign.mjs",
            &"node".to_string(),
        ),
    ];
    for (scheme, secret, script, program) in cases {
        let name = scheme.replace('_', "-");
        srv.put(
            &format!("/api/secrets/{}", scheme.to_uppercase()),
            json!({"value": secret}),
        )
        .await;
        srv.create_flow(json!({"hookflow": 1, "name": name, "trigger": {"type": "webhook",
            "verify": {"scheme": scheme, "secret": format!("{{{{ secrets.{} }}}}", scheme.to_uppercase())}}, "steps": []}))
            .await;
        let input = json!({"scheme": scheme, "secret": secret, "body": body, "id": format!("msg_{scheme}"), "timestamp": now});
        let headers = sign(program, script, input, &node_modules);
        let send = |payload: String| {
            let mut req = srv
                .client
                .post(format!("{}/hooks/{name}", srv.url))
                .header("content-type", "application/json")
                .body(payload);
            for (k, v) in &headers {
                req = req.header(k, v);
            }
            req.send()
        };
        let r = send(body.to_string()).await.unwrap();
        assert_eq!(r.status(), 202, "{scheme}: {}", r.text().await.unwrap());
        // Verification comes before dedupe, so a tampered copy is refused, not a "duplicate".
        let r = send(body.replace("1250", "1251")).await.unwrap();
        assert_eq!(r.status(), 401, "{scheme}: a tampered body must fail");
    }
}
