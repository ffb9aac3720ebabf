//! The command line, run as a real process.

use std::process::Command;

use serde_json::json;

fn hookflow() -> Command {
    Command::new(env!("CARGO_BIN_EXE_hookflow"))
}

#[test]
fn validate_reports_locations_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, json!({"hookflow": 1, "name": "bad", "trigger": {"type": "webhook"}, "steps": [
        {"id": "shape", "type": "transform", "output": {}},
        {"id": "a", "type": "transform", "output": {}},
        {"id": "b", "type": "filter", "after": ["shap"], "condition": {"path": "$.x", "op": "exists"}}
    ]}).to_string()).unwrap();
    let out = hookflow().arg("validate").arg(&bad).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("steps[2].after[0]: unknown step 'shap'"),
        "{err}"
    );

    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/flows");
    let out = hookflow().arg("validate").arg(&examples).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = hookflow().arg("frobnicate").output().unwrap();
    assert_eq!(out.status.code(), Some(2), "usage errors exit 2");
}

#[test]
fn import_export_token_and_one_shot_run() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let flow_file = dir.path().join("greet.json");
    let doc = json!({"hookflow": 1, "name": "greet", "trigger": {"type": "manual"}, "steps": [
        {"id": "hello", "type": "transform", "output": {"greeting": "Hello {{ $.input.name | upper }}"}},
        {"id": "check", "type": "filter", "condition": {"path": "$.input.greeting", "op": "starts_with", "value": "Hello"}}
    ]});
    std::fs::write(&flow_file, doc.to_string()).unwrap();

    let out = hookflow()
        .args(["run"])
        .arg(&flow_file)
        .args(["--payload", r#"{"name":"ana"}"#, "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("\"greeting\": \"Hello ANA\""), "{stdout}");
    assert!(stdout.contains(": succeeded"), "{stdout}");

    let out = hookflow()
        .arg("import")
        .arg(&flow_file)
        .arg("--data-dir")
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = hookflow()
        .args(["export", "greet", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    let exported: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(exported, doc);

    let payload = dir.path().join("p.json");
    std::fs::write(&payload, r#"{"name":"bo"}"#).unwrap();
    let out = hookflow()
        .args(["run", "greet", "--payload"])
        .arg(format!("@{}", payload.display()))
        .arg("--data-dir")
        .arg(&data)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("Hello BO"));

    let out = hookflow()
        .args(["token", "create", "ci", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    let token = String::from_utf8_lossy(&out.stdout);
    assert!(
        token.trim().starts_with("hf_") && token.trim().len() > 40,
        "{token}"
    );
}
