//! Published vectors (research/reliability.md §1.1), near misses (§1.3) and the config checks.

use std::collections::HashMap;

use base64::prelude::*;
use flows_engine::template::{NoSecrets, SecretSource};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::{Value, json};

use super::{
    Verifier, VerifyError,
    crypto::{Algorithm, mac},
};

struct Secrets(HashMap<String, String>);

impl SecretSource for Secrets {
    fn secret(&self, name: &str) -> Option<String> {
        self.0.get(name).cloned()
    }
}

fn secrets(pairs: &[(&str, &str)]) -> Secrets {
    Secrets(
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (name, value) in pairs {
        h.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    h
}

fn verifier(config: Value) -> Verifier {
    match config {
        Value::Object(map) => Verifier::prepare(&map).unwrap_or_else(|issues| panic!("{issues:?}")),
        _ => panic!("not an object"),
    }
}

/// `prepare`'s issues as `path: message` lines.
fn issues(config: Value) -> Vec<String> {
    let Value::Object(map) = config else {
        panic!("not an object")
    };
    match Verifier::prepare(&map) {
        Ok(v) => panic!("prepared {v:?}"),
        Err(issues) => issues
            .iter()
            .map(|i| format!("{}: {}", i.path, i.message))
            .collect(),
    }
}

fn is_unauthorized(r: Result<(), VerifyError>) -> bool {
    matches!(r, Err(VerifyError::Unauthorized(_)))
}

fn is_malformed(r: Result<(), VerifyError>) -> bool {
    matches!(r, Err(VerifyError::Malformed(_)))
}

// ---- GitHub --------------------------------------------------------------------------------

const GH_SECRET: &str = "It's a Secret to Everybody";
const V1_BODY: &[u8] = b"Hello, World!";
const V1_SIG: &str = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

fn github() -> Verifier {
    verifier(json!({"scheme": "github", "secret": "{{ secrets.GH }}"}))
}

fn gh_secrets() -> Secrets {
    secrets(&[("GH", GH_SECRET)])
}

#[test]
fn v1_github_docs_vector() {
    let h = headers(&[("X-Hub-Signature-256", V1_SIG)]);
    assert_eq!(github().verify(&h, V1_BODY, &gh_secrets(), 0), Ok(()));
}

#[test]
fn v2_github_utf8_body() {
    let h = headers(&[(
        "x-hub-signature-256",
        "sha256=38bb905773c446740c2f68a17b87165433ea5c6f581513717606580af742af56",
    )]);
    let body = r#"{"msg":"héllo 🌍"}"#.as_bytes();
    assert_eq!(github().verify(&h, body, &gh_secrets(), 0), Ok(()));
}

/// N1: octokit refuses uppercase hex; we decode hex case-insensitively on purpose. The decoded
/// bytes are what is compared, so accepting either case gives a forger nothing.
#[test]
fn n1_github_uppercase_hex_is_accepted() {
    let upper = format!(
        "sha256={}",
        V1_SIG.strip_prefix("sha256=").unwrap().to_uppercase()
    );
    assert_eq!(
        upper,
        "sha256=757107EA0EB2509FC211221CCE984B8A37570B6D7586C22C46F4379C8B043E17"
    );
    let h = headers(&[("X-Hub-Signature-256", &upper)]);
    assert_eq!(github().verify(&h, V1_BODY, &gh_secrets(), 0), Ok(()));
}

#[test]
fn n2_github_without_prefix_is_refused() {
    let h = headers(&[(
        "X-Hub-Signature-256",
        V1_SIG.strip_prefix("sha256=").unwrap(),
    )]);
    assert!(is_unauthorized(github().verify(
        &h,
        V1_BODY,
        &gh_secrets(),
        0
    )));
}

#[test]
fn n3_github_legacy_sha1_header_is_never_read() {
    let h = headers(&[(
        "X-Hub-Signature",
        "sha1=01dc10d0c83e72ed246219cdd91669667fe2ca59",
    )]);
    let err = github().verify(&h, V1_BODY, &gh_secrets(), 0).unwrap_err();
    assert_eq!(
        err,
        VerifyError::Unauthorized("missing header X-Hub-Signature-256".into())
    );
    // Nor a correct SHA-1 signature presented in the SHA-256 header.
    let h = headers(&[(
        "X-Hub-Signature-256",
        "sha1=01dc10d0c83e72ed246219cdd91669667fe2ca59",
    )]);
    assert!(is_unauthorized(github().verify(
        &h,
        V1_BODY,
        &gh_secrets(),
        0
    )));
}

#[test]
fn github_refuses_tampered_body_wrong_secret_and_missing_header() {
    let h = headers(&[("X-Hub-Signature-256", V1_SIG)]);
    assert!(is_unauthorized(github().verify(
        &h,
        b"Hello, World! ",
        &gh_secrets(),
        0
    )));
    assert!(is_unauthorized(github().verify(
        &h,
        V1_BODY,
        &secrets(&[("GH", "not it")]),
        0
    )));
    assert!(is_unauthorized(github().verify(
        &HeaderMap::new(),
        V1_BODY,
        &gh_secrets(),
        0
    )));
    let truncated = headers(&[("X-Hub-Signature-256", &V1_SIG[..V1_SIG.len() - 2])]);
    assert!(is_unauthorized(github().verify(
        &truncated,
        V1_BODY,
        &gh_secrets(),
        0
    )));
}

#[test]
fn a_repeated_signature_header_is_malformed() {
    let h = headers(&[
        ("X-Hub-Signature-256", V1_SIG),
        ("X-Hub-Signature-256", V1_SIG),
    ]);
    assert!(is_malformed(github().verify(&h, V1_BODY, &gh_secrets(), 0)));
}

#[test]
fn rotation_accepts_any_listed_secret() {
    let v =
        verifier(json!({"scheme": "github", "secret": ["{{ secrets.NEW }}", "{{ secrets.OLD }}"]}));
    let s = secrets(&[("NEW", "the new one"), ("OLD", GH_SECRET)]);
    let h = headers(&[("X-Hub-Signature-256", V1_SIG)]);
    assert_eq!(v.verify(&h, V1_BODY, &s, 0), Ok(()));
    assert_eq!(v.secret_refs(), ["NEW", "OLD"]);
    let neither = secrets(&[("NEW", "a"), ("OLD", "b")]);
    assert!(is_unauthorized(v.verify(&h, V1_BODY, &neither, 0)));
}

// ---- Stripe --------------------------------------------------------------------------------

const STRIPE_SECRET: &str = "whsec_test_secret";
const V3_BODY: &[u8] = br#"{"id":"evt_test_webhook","object":"event"}"#;
const V3_T: i64 = 1_700_000_000;
const V3_V1: &str = "d95c6b7477fbd7e9f90b1b0ef5f9c7ac25abca5382460e0d988c2b2a5b71b990";

fn stripe() -> Verifier {
    verifier(json!({"scheme": "stripe", "secret": "{{ secrets.STRIPE }}"}))
}

fn stripe_secrets() -> Secrets {
    secrets(&[("STRIPE", STRIPE_SECRET)])
}

fn stripe_header(t: i64) -> String {
    let sig = mac(
        Algorithm::Sha256,
        STRIPE_SECRET.as_bytes(),
        &[t.to_string().as_bytes(), b".", V3_BODY],
    );
    format!("t={t},v1={}", hex::encode(sig))
}

#[test]
fn v3_stripe_vector() {
    let h = headers(&[("Stripe-Signature", &format!("t={V3_T},v1={V3_V1}"))]);
    assert_eq!(
        stripe().verify(&h, V3_BODY, &stripe_secrets(), V3_T + 10),
        Ok(())
    );
    assert_eq!(stripe_header(V3_T), format!("t={V3_T},v1={V3_V1}"));
}

#[test]
fn n4_stripe_key_is_the_whsec_string_not_its_base64_decoding() {
    let wrong = "f42c8465d3f7923eaa9144e38ee44015a7c2f43aecc454e43dc3a95ff220d881";
    let h = headers(&[("Stripe-Signature", &format!("t={V3_T},v1={wrong}"))]);
    assert!(is_unauthorized(stripe().verify(
        &h,
        V3_BODY,
        &stripe_secrets(),
        V3_T + 10
    )));
}

/// N8: the Stripe SDKs accept any future `t`; our window is symmetric.
#[test]
fn n8_stripe_future_timestamp_is_refused() {
    let now = V3_T;
    let h = headers(&[("Stripe-Signature", &stripe_header(now + 3600))]);
    let err = stripe()
        .verify(&h, V3_BODY, &stripe_secrets(), now)
        .unwrap_err();
    assert!(
        matches!(&err, VerifyError::Unauthorized(m) if m.contains("stale timestamp") && m.contains("future")),
        "{err:?}"
    );
}

#[test]
fn stripe_tolerance_is_symmetric() {
    for (skew, ok) in [
        (299, true),
        (-299, true),
        (300, true),
        (301, false),
        (-301, false),
    ] {
        let h = headers(&[("Stripe-Signature", &stripe_header(V3_T + skew))]);
        let r = stripe().verify(&h, V3_BODY, &stripe_secrets(), V3_T);
        assert_eq!(r.is_ok(), ok, "skew {skew}: {r:?}");
        if !ok {
            assert!(is_unauthorized(r));
        }
    }
    let tight = verifier(json!({"scheme": "stripe", "secret": STRIPE_SECRET, "tolerance_s": 10}));
    let h = headers(&[("Stripe-Signature", &stripe_header(V3_T - 11))]);
    assert!(is_unauthorized(tight.verify(&h, V3_BODY, &NoSecrets, V3_T)));
}

#[test]
fn stripe_any_v1_may_match_and_v0_is_ignored() {
    let wrong = "0".repeat(64);
    let h = headers(&[(
        "Stripe-Signature",
        &format!("t={V3_T},v1={wrong},v1={V3_V1}"),
    )]);
    assert_eq!(
        stripe().verify(&h, V3_BODY, &stripe_secrets(), V3_T),
        Ok(())
    );
    let v0_only = headers(&[("Stripe-Signature", &format!("t={V3_T},v0={V3_V1}"))]);
    assert!(is_unauthorized(stripe().verify(
        &v0_only,
        V3_BODY,
        &stripe_secrets(),
        V3_T
    )));
    let v0_first = headers(&[(
        "Stripe-Signature",
        &format!("t={V3_T},v0={wrong},v1={V3_V1}"),
    )]);
    assert_eq!(
        stripe().verify(&v0_first, V3_BODY, &stripe_secrets(), V3_T),
        Ok(())
    );
}

#[test]
fn stripe_malformed_headers() {
    let s = stripe_secrets();
    for value in [
        format!("v1={V3_V1}"),
        format!("t=17000000.5,v1={V3_V1}"),
        format!("t=abc,v1={V3_V1}"),
        format!("t={V3_T},t={V3_T},v1={V3_V1}"),
        format!("t={V3_T},{}", vec![format!("v1={V3_V1}"); 9].join(",")),
    ] {
        let h = headers(&[("Stripe-Signature", &value)]);
        assert!(
            is_malformed(stripe().verify(&h, V3_BODY, &s, V3_T)),
            "{value}"
        );
    }
}

// ---- Shopify -------------------------------------------------------------------------------

#[test]
fn v4_shopify_vector() {
    let v = verifier(json!({"scheme": "shopify", "secret": "{{ secrets.SHOP }}"}));
    let s = secrets(&[("SHOP", "hush")]);
    let body = br#"{"id":820982911946154508,"email":"jon@example.com"}"#;
    let h = headers(&[(
        "X-Shopify-Hmac-Sha256",
        "D0UMXmhjwBRi4y66TmhJrDlhQABD7zI2fm3p6/QLMo8=",
    )]);
    assert_eq!(v.verify(&h, body, &s, 0), Ok(()));
    assert!(is_unauthorized(v.verify(
        &h,
        br#"{"id":820982911946154509,"email":"jon@example.com"}"#,
        &s,
        0
    )));
    let hex = headers(&[("X-Shopify-Hmac-Sha256", "0f450c5e")]);
    assert!(is_unauthorized(v.verify(&hex, body, &s, 0)));
}

// ---- Slack ---------------------------------------------------------------------------------

const SLACK_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
const V5_TS: i64 = 1_531_420_618;
const V5_BODY: &[u8] = b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
const V5_SIG: &str = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";

fn slack() -> Verifier {
    verifier(json!({"scheme": "slack", "secret": "{{ secrets.SLACK }}"}))
}

fn slack_secrets() -> Secrets {
    secrets(&[("SLACK", SLACK_SECRET)])
}

#[test]
fn v5_slack_docs_vector() {
    let h = headers(&[
        ("X-Slack-Signature", V5_SIG),
        ("X-Slack-Request-Timestamp", &V5_TS.to_string()),
    ]);
    assert_eq!(
        slack().verify(&h, V5_BODY, &slack_secrets(), V5_TS + 1),
        Ok(())
    );
    assert!(is_unauthorized(slack().verify(
        &h,
        &V5_BODY[1..],
        &slack_secrets(),
        V5_TS + 1
    )));
}

#[test]
fn slack_timestamp_window_and_format() {
    let h = headers(&[
        ("X-Slack-Signature", V5_SIG),
        ("X-Slack-Request-Timestamp", &V5_TS.to_string()),
    ]);
    for (now, ok) in [
        (V5_TS + 299, true),
        (V5_TS - 299, true),
        (V5_TS + 301, false),
        (V5_TS - 301, false),
    ] {
        let r = slack().verify(&h, V5_BODY, &slack_secrets(), now);
        assert_eq!(r.is_ok(), ok, "now {now}: {r:?}");
    }
    let dotted = headers(&[
        ("X-Slack-Signature", V5_SIG),
        ("X-Slack-Request-Timestamp", "1531420618.0"),
    ]);
    assert!(is_malformed(slack().verify(
        &dotted,
        V5_BODY,
        &slack_secrets(),
        V5_TS
    )));
    let no_ts = headers(&[("X-Slack-Signature", V5_SIG)]);
    assert!(is_unauthorized(slack().verify(
        &no_ts,
        V5_BODY,
        &slack_secrets(),
        V5_TS
    )));
}

// ---- Standard Webhooks ---------------------------------------------------------------------

const SW_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const V8_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
const V8_TS: i64 = 1_614_265_330;
const V8_BODY: &[u8] = br#"{"test": 2432232314}"#;
const V8_SIG: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
const DECOY: &str = "v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";

fn standard() -> Verifier {
    verifier(json!({"scheme": "standard_webhooks", "secret": "{{ secrets.SW }}"}))
}

fn sw_secrets() -> Secrets {
    secrets(&[("SW", SW_SECRET)])
}

fn sw_headers(id: &str, ts: &str, sig: &str) -> HeaderMap {
    headers(&[
        ("webhook-id", id),
        ("webhook-timestamp", ts),
        ("webhook-signature", sig),
    ])
}

fn sw_sign(ts: i64, body: &[u8]) -> String {
    standardwebhooks::Webhook::new(SW_SECRET)
        .unwrap()
        .sign(V8_ID, ts, body)
        .unwrap()
}

#[test]
fn v8_standard_webhooks_vector_after_a_decoy() {
    let plain = sw_headers(V8_ID, &V8_TS.to_string(), V8_SIG);
    assert_eq!(
        standard().verify(&plain, V8_BODY, &sw_secrets(), V8_TS + 10),
        Ok(())
    );
    let decoyed = sw_headers(V8_ID, &V8_TS.to_string(), &format!("{DECOY} {V8_SIG}"));
    assert_eq!(
        standard().verify(&decoyed, V8_BODY, &sw_secrets(), V8_TS + 10),
        Ok(())
    );
    assert_eq!(standard().default_dedupe_header(), Some("webhook-id"));
}

#[test]
fn signed_by_the_standardwebhooks_crate_verifies() {
    let now = 1_760_000_000;
    let body = "{\"event\":\"order.created\",\"n\":\"ü\"}".as_bytes();
    let sig = sw_sign(now - 5, body);
    let h = sw_headers(V8_ID, &(now - 5).to_string(), &sig);
    assert_eq!(standard().verify(&h, body, &sw_secrets(), now), Ok(()));
    assert_eq!(sw_sign(V8_TS, V8_BODY), V8_SIG);
}

#[test]
fn n5_standard_webhooks_key_is_the_base64_decoded_secret() {
    let h = sw_headers(
        V8_ID,
        &V8_TS.to_string(),
        "v1,TcxlhK9b6UD6iVI1ZU2tTqp8PEVfYRseNNfa6b+LcUg=",
    );
    assert!(is_unauthorized(standard().verify(
        &h,
        V8_BODY,
        &sw_secrets(),
        V8_TS
    )));
}

#[test]
fn n6_signature_covers_the_raw_bytes_not_reserialised_json() {
    let minified = br#"{"test":2432232314}"#;
    let h = sw_headers(V8_ID, &V8_TS.to_string(), V8_SIG);
    assert!(is_unauthorized(standard().verify(
        &h,
        minified,
        &sw_secrets(),
        V8_TS
    )));
    let minified_sig = sw_headers(
        V8_ID,
        &V8_TS.to_string(),
        "v1,Vif40peJBP7Iyl0XGmu61n4MwdrcHov5CFREBpE0svs=",
    );
    assert_eq!(
        standard().verify(&minified_sig, minified, &sw_secrets(), V8_TS),
        Ok(())
    );
}

#[test]
fn n7_dots_in_id_or_timestamp_are_malformed() {
    let now = V8_TS;
    let body = b"200.{}";
    let sig = standardwebhooks::Webhook::new(SW_SECRET)
        .unwrap()
        .sign("m", 100, body)
        .unwrap();
    // The content `m.100.200.{}` signed for id `m`, ts 100 must not pass for id `m.100`, ts 200.
    let h = sw_headers("m.100", "200", &sig);
    assert!(is_malformed(standard().verify(
        &h,
        b"{}",
        &sw_secrets(),
        now
    )));
    for ts in ["1614265330.5", "abc", "", "-1614265330", "+1614265330"] {
        let h = sw_headers(V8_ID, ts, V8_SIG);
        assert!(
            is_malformed(standard().verify(&h, V8_BODY, &sw_secrets(), now)),
            "ts {ts:?}"
        );
    }
    let h = sw_headers("", &V8_TS.to_string(), V8_SIG);
    assert!(is_malformed(standard().verify(
        &h,
        V8_BODY,
        &sw_secrets(),
        now
    )));
}

#[test]
fn n10_malformed_and_unknown_entries_are_skipped() {
    for value in [
        format!("garbage {V8_SIG}"),
        format!("v1,!!!notb64 v1a,zzz v2,AAAA {V8_SIG}"),
        format!("  {V8_SIG}  "),
    ] {
        let h = sw_headers(V8_ID, &V8_TS.to_string(), &value);
        assert_eq!(
            standard().verify(&h, V8_BODY, &sw_secrets(), V8_TS),
            Ok(()),
            "{value}"
        );
    }
    let only_junk = sw_headers(V8_ID, &V8_TS.to_string(), "garbage v1a,zzz");
    assert!(is_unauthorized(standard().verify(
        &only_junk,
        V8_BODY,
        &sw_secrets(),
        V8_TS
    )));
}

#[test]
fn standard_webhooks_caps_entries_and_header_length() {
    let eight = format!("{} {V8_SIG}", [DECOY; 7].join(" "));
    let h = sw_headers(V8_ID, &V8_TS.to_string(), &eight);
    assert_eq!(standard().verify(&h, V8_BODY, &sw_secrets(), V8_TS), Ok(()));
    let nine = format!("{} {V8_SIG}", [DECOY; 8].join(" "));
    let h = sw_headers(V8_ID, &V8_TS.to_string(), &nine);
    assert!(is_malformed(standard().verify(
        &h,
        V8_BODY,
        &sw_secrets(),
        V8_TS
    )));
    let long = format!("{V8_SIG}{}", " ".repeat(4096));
    let h = sw_headers(V8_ID, &V8_TS.to_string(), &long);
    assert!(is_malformed(standard().verify(
        &h,
        V8_BODY,
        &sw_secrets(),
        V8_TS
    )));
    let long_id = sw_headers(&"a".repeat(4097), &V8_TS.to_string(), V8_SIG);
    assert!(is_malformed(standard().verify(
        &long_id,
        V8_BODY,
        &sw_secrets(),
        V8_TS
    )));
}

#[test]
fn standard_webhooks_tolerance_is_symmetric() {
    for (skew, ok) in [(299, true), (-299, true), (301, false), (-301, false)] {
        let ts = V8_TS + skew;
        let h = sw_headers(V8_ID, &ts.to_string(), &sw_sign(ts, V8_BODY));
        let r = standard().verify(&h, V8_BODY, &sw_secrets(), V8_TS);
        assert_eq!(r.is_ok(), ok, "skew {skew}: {r:?}");
        if !ok {
            assert!(is_unauthorized(r));
        }
    }
    // The published vector against a real clock is long stale.
    let h = sw_headers(V8_ID, &V8_TS.to_string(), V8_SIG);
    assert!(is_unauthorized(standard().verify(
        &h,
        V8_BODY,
        &sw_secrets(),
        1_760_000_000
    )));
}

#[test]
fn standard_webhooks_rotation_of_secrets_and_signatures() {
    let other = format!("whsec_{}", BASE64_STANDARD.encode([7u8; 32]));
    let v = verifier(
        json!({"scheme": "standard_webhooks", "secret": ["{{ secrets.NEXT }}", "{{ secrets.SW }}"]}),
    );
    let s = secrets(&[("NEXT", &other), ("SW", SW_SECRET)]);
    let h = sw_headers(V8_ID, &V8_TS.to_string(), V8_SIG);
    assert_eq!(v.verify(&h, V8_BODY, &s, V8_TS), Ok(()));
    // The sender signs with both keys during its own rotation; the second signature is ours.
    let theirs = standardwebhooks::Webhook::new(&other)
        .unwrap()
        .sign(V8_ID, V8_TS, V8_BODY)
        .unwrap();
    let both = sw_headers(V8_ID, &V8_TS.to_string(), &format!("{theirs} {V8_SIG}"));
    assert_eq!(
        standard().verify(&both, V8_BODY, &sw_secrets(), V8_TS),
        Ok(())
    );
}

#[test]
fn standard_webhooks_secret_that_is_not_base64_is_a_config_error() {
    let s = secrets(&[("SW", "whsec_not base64!")]);
    let h = sw_headers(V8_ID, &V8_TS.to_string(), V8_SIG);
    let err = standard().verify(&h, V8_BODY, &s, V8_TS).unwrap_err();
    assert!(
        matches!(&err, VerifyError::Config(m) if m.contains("'SW'") && !m.contains("not base64!")),
        "{err:?}"
    );
}

// ---- basic / api_key / hmac ----------------------------------------------------------------

#[test]
fn basic_auth() {
    let v =
        verifier(json!({"scheme": "basic", "username": "hook", "password": "{{ secrets.PW }}"}));
    let s = secrets(&[("PW", "s3cret:with:colons")]);
    let good = format!(
        "Basic {}",
        BASE64_STANDARD.encode("hook:s3cret:with:colons")
    );
    assert_eq!(
        v.verify(&headers(&[("Authorization", &good)]), b"", &s, 0),
        Ok(())
    );
    let lower = format!(
        "basic {}",
        BASE64_STANDARD.encode("hook:s3cret:with:colons")
    );
    assert_eq!(
        v.verify(&headers(&[("authorization", &lower)]), b"", &s, 0),
        Ok(())
    );
    for bad in [
        format!("Basic {}", BASE64_STANDARD.encode("hook:wrong")),
        format!(
            "Basic {}",
            BASE64_STANDARD.encode("other:s3cret:with:colons")
        ),
        format!(
            "Bearer {}",
            BASE64_STANDARD.encode("hook:s3cret:with:colons")
        ),
        "Basic !!!".to_string(),
        "Basic".to_string(),
    ] {
        assert!(
            is_unauthorized(v.verify(&headers(&[("Authorization", &bad)]), b"", &s, 0)),
            "{bad}"
        );
    }
    assert!(is_unauthorized(v.verify(&HeaderMap::new(), b"", &s, 0)));
    // A username from a secret cannot smuggle in a ':' either.
    let from_secret =
        verifier(json!({"scheme": "basic", "username": "{{ secrets.U }}", "password": "p"}));
    let err = from_secret.verify(
        &headers(&[("Authorization", &good)]),
        b"",
        &secrets(&[("U", "a:b")]),
        0,
    );
    assert_eq!(
        err,
        Err(VerifyError::Config(
            "verify.username (secret 'U') must not contain ':'".into()
        ))
    );
}

#[test]
fn api_key() {
    let v =
        verifier(json!({"scheme": "api_key", "header": "X-Api-Key", "value": "{{ secrets.KEY }}"}));
    let s = secrets(&[("KEY", "k-123")]);
    assert_eq!(
        v.verify(&headers(&[("x-api-key", "k-123")]), b"", &s, 0),
        Ok(())
    );
    assert!(is_unauthorized(v.verify(
        &headers(&[("X-Api-Key", "k-12")]),
        b"",
        &s,
        0
    )));
    assert!(is_unauthorized(v.verify(
        &headers(&[("X-Api-Key", "k-1234")]),
        b"",
        &s,
        0
    )));
    assert!(is_unauthorized(v.verify(
        &headers(&[("X-Other", "k-123")]),
        b"",
        &s,
        0
    )));
    assert_eq!(v.secret_refs(), ["KEY"]);
}

#[test]
fn hmac_variants() {
    // Independent values from Python's hmac module over V1's key and body.
    let sha1_hex = "01dc10d0c83e72ed246219cdd91669667fe2ca59";
    let sha512_b64 =
        "Ee01WmF+mBNOhCASp5RMz1nBAlbLGCNXvX46QgE/8Hw3b4wUz1zBkj2iC1HWQlay+4678QCqZ6YTJvYf6oERvA==";
    let sha512_hex = "11ed355a617e98134e842012a7944ccf59c10256cb182357bd7e3a42013ff07c376f8c14cf5cc1923da20b51d64256b2fb8ebbf100aa67a61326f61fea8111bc";
    let sha256_b64 = "dXEH6g6yUJ/CESIczphLijdXC211hsIsRvQ3nIsEPhc=";
    let sha256_hex = V1_SIG.strip_prefix("sha256=").unwrap();
    let s = gh_secrets();
    let cases = [
        (json!({}), sha256_hex.to_string()),
        (json!({"algorithm": "sha1"}), sha1_hex.to_string()),
        (json!({"algorithm": "sha512"}), sha512_hex.to_string()),
        (
            json!({"algorithm": "sha512", "encoding": "base64"}),
            sha512_b64.to_string(),
        ),
        (json!({"encoding": "base64"}), sha256_b64.to_string()),
        (
            json!({"encoding": "base64"}),
            sha256_b64.trim_end_matches('=').to_string(),
        ),
        (json!({"prefix": "sha256="}), V1_SIG.to_string()),
        (
            json!({"algorithm": "sha1", "prefix": "sha1="}),
            format!("sha1={sha1_hex}"),
        ),
    ];
    for (extra, value) in cases {
        let mut config =
            json!({"scheme": "hmac", "secret": "{{ secrets.GH }}", "header": "X-Signature"});
        config
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let v = verifier(config.clone());
        let h = headers(&[("X-Signature", &value)]);
        assert_eq!(v.verify(&h, V1_BODY, &s, 0), Ok(()), "{config} {value}");
        assert!(
            is_unauthorized(v.verify(&h, b"tampered", &s, 0)),
            "{config}"
        );
    }
    // A prefix is required when configured, and not accepted when not.
    let prefixed = verifier(
        json!({"scheme": "hmac", "secret": GH_SECRET, "header": "X-Signature", "prefix": "sha256="}),
    );
    let bare = headers(&[("X-Signature", sha256_hex)]);
    assert!(is_unauthorized(
        prefixed.verify(&bare, V1_BODY, &NoSecrets, 0)
    ));
    let plain = verifier(json!({"scheme": "hmac", "secret": GH_SECRET, "header": "X-Signature"}));
    assert!(is_unauthorized(plain.verify(
        &headers(&[("X-Signature", V1_SIG)]),
        V1_BODY,
        &NoSecrets,
        0
    )));
    // The wrong algorithm does not match.
    let sha1 = verifier(
        json!({"scheme": "hmac", "secret": GH_SECRET, "header": "X-Signature", "algorithm": "sha1"}),
    );
    assert!(is_unauthorized(sha1.verify(&bare, V1_BODY, &NoSecrets, 0)));
}

#[test]
fn none_accepts_anything() {
    let v = verifier(json!({"scheme": "none"}));
    assert_eq!(v.verify(&HeaderMap::new(), b"x", &NoSecrets, 0), Ok(()));
    assert_eq!(v.scheme(), "none");
    assert!(v.secret_refs().is_empty());
    assert_eq!(v.default_dedupe_header(), None);
}

#[test]
fn scheme_names() {
    for (config, name) in [
        (
            json!({"scheme": "basic", "username": "u", "password": "p"}),
            "basic",
        ),
        (
            json!({"scheme": "api_key", "header": "x-key", "value": "v"}),
            "api_key",
        ),
        (
            json!({"scheme": "hmac", "secret": "s", "header": "x-sig"}),
            "hmac",
        ),
        (json!({"scheme": "github", "secret": "s"}), "github"),
        (json!({"scheme": "stripe", "secret": "s"}), "stripe"),
        (json!({"scheme": "shopify", "secret": "s"}), "shopify"),
        (json!({"scheme": "slack", "secret": "s"}), "slack"),
        (
            json!({"scheme": "standard_webhooks", "secret": SW_SECRET}),
            "standard_webhooks",
        ),
    ] {
        let v = verifier(config);
        assert_eq!(v.scheme(), name);
        assert_eq!(
            v.default_dedupe_header().is_some(),
            name == "standard_webhooks"
        );
    }
}

// ---- config errors -------------------------------------------------------------------------

#[test]
fn unknown_or_missing_scheme() {
    let unknown = issues(json!({"scheme": "gitlab", "secret": "x"}));
    assert_eq!(unknown.len(), 1);
    assert!(
        unknown[0].starts_with("scheme: unknown scheme 'gitlab'"),
        "{unknown:?}"
    );
    for name in [
        "none",
        "basic",
        "api_key",
        "hmac",
        "github",
        "stripe",
        "shopify",
        "slack",
        "standard_webhooks",
    ] {
        assert!(unknown[0].contains(name), "{unknown:?}");
    }
    assert!(issues(json!({}))[0].starts_with("scheme: is required"));
    assert!(issues(json!({"scheme": 3}))[0].starts_with("scheme: must be a string"));
}

#[test]
fn missing_and_unknown_fields_are_all_reported() {
    assert_eq!(
        issues(json!({"scheme": "github"})),
        ["secret: is required for scheme 'github'"]
    );
    assert_eq!(
        issues(json!({"scheme": "github", "secret": "s", "tolerance_s": 5, "odd key": 1})),
        [
            "tolerance_s: unknown field for scheme 'github'; its fields are: secret",
            "[\"odd key\"]: unknown field for scheme 'github'; its fields are: secret",
        ]
    );
    assert_eq!(
        issues(json!({"scheme": "none", "secret": "s"})),
        ["secret: unknown field: scheme 'none' takes no other fields"]
    );
    assert_eq!(
        issues(json!({"scheme": "basic"})),
        [
            "username: is required for scheme 'basic'",
            "password: is required for scheme 'basic'"
        ]
    );
    assert_eq!(
        issues(json!({"scheme": "api_key", "header": "bad header", "value": ""})),
        [
            "header: 'bad header' is not a valid header name",
            "value: must not be empty"
        ]
    );
}

#[test]
fn bad_field_values() {
    assert_eq!(
        issues(
            json!({"scheme": "hmac", "secret": "s", "header": "x-sig", "algorithm": "md5", "encoding": "hex2"})
        ),
        [
            "algorithm: unknown algorithm 'md5'; use one of: sha256, sha1, sha512",
            "encoding: unknown encoding 'hex2'; use one of: hex, base64",
        ]
    );
    assert_eq!(
        issues(json!({"scheme": "hmac", "secret": "s", "prefix": 1})),
        [
            "header: is required for scheme 'hmac'",
            "prefix: must be a string, e.g. \"sha256=\""
        ]
    );
    for tolerance in [json!(0), json!(-5), json!(1.5), json!("300"), json!(86_401)] {
        assert_eq!(
            issues(json!({"scheme": "slack", "secret": "s", "tolerance_s": tolerance})),
            ["tolerance_s: must be a whole number of seconds from 1 to 86400"]
        );
    }
    assert_eq!(
        issues(json!({"scheme": "github", "secret": ["{{ secrets.A }}", 5, "{{ $.input.key }}"]})),
        [
            "secret[1]: must be a string",
            "secret[2]: a verify config has no run context: use literal text or {{ secrets.NAME }}",
        ]
    );
    assert_eq!(
        issues(json!({"scheme": "github", "secret": []})),
        ["secret: list at least one secret"]
    );
    assert!(
        issues(json!({"scheme": "github", "secret": {"a": 1}}))[0]
            .starts_with("secret: must be a string")
    );
    assert!(
        issues(json!({"scheme": "github", "secret": "{{ secrets.A"}))[0].starts_with("secret: ")
    );
    assert_eq!(
        issues(json!({"scheme": "standard_webhooks", "secret": "whsec_***"})),
        ["secret: must be 'whsec_' followed by base64"]
    );
    assert_eq!(
        issues(json!({"scheme": "basic", "username": "a:b", "password": "p"})),
        ["username: must not contain ':' (it separates username and password)"]
    );
}

#[test]
fn unset_or_empty_secret_is_a_config_error_naming_it() {
    let h = headers(&[("X-Hub-Signature-256", V1_SIG)]);
    let err = github().verify(&h, V1_BODY, &NoSecrets, 0).unwrap_err();
    assert_eq!(
        err,
        VerifyError::Config("verify.secret: secret 'GH' is not set".into())
    );
    let err = github()
        .verify(&h, V1_BODY, &secrets(&[("GH", "")]), 0)
        .unwrap_err();
    assert_eq!(
        err,
        VerifyError::Config("verify.secret (secret 'GH') is empty".into())
    );
    // Reported before looking at the request.
    let err = github()
        .verify(&HeaderMap::new(), V1_BODY, &NoSecrets, 0)
        .unwrap_err();
    assert!(matches!(err, VerifyError::Config(_)));
    let rotation =
        verifier(json!({"scheme": "stripe", "secret": ["{{ secrets.A }}", "{{ secrets.B }}"]}));
    let err = rotation
        .verify(&h, V1_BODY, &secrets(&[("A", "x")]), 0)
        .unwrap_err();
    assert_eq!(
        err,
        VerifyError::Config("verify.secret[1]: secret 'B' is not set".into())
    );
}

/// No message, and no Debug output, ever carries a secret or the expected signature.
#[test]
fn nothing_reveals_the_secret_or_the_expected_signature() {
    let stripe_secret_b64 = BASE64_STANDARD.encode(STRIPE_SECRET);
    let expected_b64 = V8_SIG.strip_prefix("v1,").unwrap();
    let mut messages = Vec::new();
    let mut record = |r: Result<(), VerifyError>| messages.push(r.unwrap_err().to_string());
    record(github().verify(
        &headers(&[("X-Hub-Signature-256", "sha256=00")]),
        V1_BODY,
        &gh_secrets(),
        0,
    ));
    record(github().verify(
        &headers(&[("X-Hub-Signature-256", V1_SIG)]),
        b"x",
        &gh_secrets(),
        0,
    ));
    record(stripe().verify(
        &headers(&[("Stripe-Signature", &format!("t={V3_T},v1=00"))]),
        V3_BODY,
        &stripe_secrets(),
        V3_T,
    ));
    record(stripe().verify(
        &headers(&[("Stripe-Signature", &stripe_header(V3_T))]),
        V3_BODY,
        &stripe_secrets(),
        0,
    ));
    record(standard().verify(
        &sw_headers(V8_ID, &V8_TS.to_string(), DECOY),
        V8_BODY,
        &sw_secrets(),
        V8_TS,
    ));
    record(standard().verify(
        &sw_headers(V8_ID, "1.5", V8_SIG),
        V8_BODY,
        &sw_secrets(),
        V8_TS,
    ));
    record(slack().verify(
        &headers(&[
            ("X-Slack-Signature", "v0=00"),
            ("X-Slack-Request-Timestamp", &V5_TS.to_string()),
        ]),
        V5_BODY,
        &slack_secrets(),
        V5_TS,
    ));
    let literal =
        verifier(json!({"scheme": "api_key", "header": "x-key", "value": "hunter2-literal"}));
    record(literal.verify(&headers(&[("x-key", "hunter2")]), b"", &NoSecrets, 0));
    let basic =
        verifier(json!({"scheme": "basic", "username": "u", "password": "{{ secrets.PW }}"}));
    record(basic.verify(
        &headers(&[("Authorization", "Basic dTpw")]),
        b"",
        &secrets(&[("PW", "pw-value")]),
        0,
    ));
    let piped = verifier(json!({"scheme": "github", "secret": "{{ secrets.GH | number }}"}));
    record(piped.verify(
        &headers(&[("X-Hub-Signature-256", V1_SIG)]),
        V1_BODY,
        &gh_secrets(),
        0,
    ));
    assert_eq!(messages.len(), 10);
    let debug = format!("{literal:?} {:?} {:?}", github(), standard());
    let forbidden = [
        GH_SECRET,
        STRIPE_SECRET,
        stripe_secret_b64.as_str(),
        SW_SECRET,
        "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        SLACK_SECRET,
        "hunter2-literal",
        "pw-value",
        "757107ea",
        V3_V1,
        expected_b64,
        "a2114d57",
    ];
    for text in messages.iter().chain([&debug]) {
        for secret in forbidden {
            assert!(!text.contains(secret), "{text:?} reveals {secret:?}");
        }
    }
}
