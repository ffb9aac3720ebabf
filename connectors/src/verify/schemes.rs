//! One check per scheme, on already-rendered secrets (SPEC §1.2, research/reliability.md §1).

use reqwest::header::HeaderMap;

use super::{
    VerifyError,
    crypto::{
        Algorithm, Encoding, MAX_SIGNATURES, any_signs, fresh, header_bytes, header_str, malformed,
        same_secret, timestamp, unauthorized, unbase64, unhex,
    },
};

/// `Authorization: Basic base64(username:password)`.
pub(super) fn basic(
    headers: &HeaderMap,
    username: &str,
    password: &str,
) -> Result<(), VerifyError> {
    let value = header_str(headers, "Authorization")?;
    let (auth_scheme, credentials) = value.split_once(' ').unwrap_or((value, ""));
    if !auth_scheme.eq_ignore_ascii_case("basic") {
        return Err(unauthorized("Authorization must use the Basic scheme"));
    }
    let presented = unbase64(credentials.trim())
        .ok_or_else(|| unauthorized("Authorization: Basic credentials are not base64"))?;
    if same_secret(&presented, format!("{username}:{password}").as_bytes()) {
        Ok(())
    } else {
        Err(unauthorized("wrong username or password"))
    }
}

/// The header's value is exactly the key.
pub(super) fn api_key(headers: &HeaderMap, header: &str, value: &str) -> Result<(), VerifyError> {
    if same_secret(header_bytes(headers, header)?, value.as_bytes()) {
        Ok(())
    } else {
        Err(unauthorized(format!("wrong key in header {header}")))
    }
}

/// `<header>: <prefix><hex or base64 HMAC of the body>`.
pub(super) fn hmac(
    headers: &HeaderMap,
    body: &[u8],
    keys: &[String],
    header: &str,
    algorithm: Algorithm,
    encoding: Encoding,
    prefix: &str,
) -> Result<(), VerifyError> {
    let value = header_str(headers, header)?;
    let signature = value
        .strip_prefix(prefix)
        .and_then(|s| encoding.decode(s))
        .ok_or_else(|| {
            unauthorized(format!(
                "header {header} must be '{prefix}' followed by {encoding}"
            ))
        })?;
    check(algorithm, keys, &[body], &[signature], header)
}

/// `X-Hub-Signature-256: sha256=<hex>`. The legacy SHA-1 `X-Hub-Signature` is never read.
pub(super) fn github(headers: &HeaderMap, body: &[u8], keys: &[String]) -> Result<(), VerifyError> {
    const HEADER: &str = "X-Hub-Signature-256";
    let value = header_str(headers, HEADER)?;
    let signature = value
        .strip_prefix("sha256=")
        .and_then(unhex)
        .ok_or_else(|| {
            unauthorized(format!("header {HEADER} must be 'sha256=' followed by hex"))
        })?;
    check(Algorithm::Sha256, keys, &[body], &[signature], HEADER)
}

/// `Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>...]` over `"{t}.{body}"`. The key is the
/// `whsec_...` string itself. `v0` and unknown entries are ignored.
pub(super) fn stripe(
    headers: &HeaderMap,
    body: &[u8],
    keys: &[String],
    now: i64,
    tolerance_s: u64,
) -> Result<(), VerifyError> {
    const HEADER: &str = "Stripe-Signature";
    let value = header_str(headers, HEADER)?;
    let mut t = None;
    let mut v1 = Vec::new();
    for (key, val) in value
        .split(',')
        .filter_map(|item| item.trim().split_once('='))
    {
        match key {
            "t" if t.is_some() => {
                return Err(malformed(format!("header {HEADER} has more than one t=")));
            }
            "t" => t = Some(val),
            "v1" => v1.push(val),
            _ => {}
        }
    }
    let t = t.ok_or_else(|| malformed(format!("header {HEADER} has no timestamp (t=)")))?;
    if v1.len() > MAX_SIGNATURES {
        return Err(malformed(format!(
            "header {HEADER} has more than {MAX_SIGNATURES} v1 signatures"
        )));
    }
    fresh(timestamp(&format!("{HEADER} t="), t)?, now, tolerance_s)?;
    let candidates: Vec<Vec<u8>> = v1.into_iter().filter_map(unhex).collect();
    if candidates.is_empty() {
        return Err(unauthorized(format!(
            "header {HEADER} has no hex v1 signature"
        )));
    }
    check(
        Algorithm::Sha256,
        keys,
        &[t.as_bytes(), b".", body],
        &candidates,
        HEADER,
    )
}

/// `X-Shopify-Hmac-Sha256: <base64>` of the body.
pub(super) fn shopify(
    headers: &HeaderMap,
    body: &[u8],
    keys: &[String],
) -> Result<(), VerifyError> {
    const HEADER: &str = "X-Shopify-Hmac-Sha256";
    let signature = unbase64(header_str(headers, HEADER)?)
        .ok_or_else(|| unauthorized(format!("header {HEADER} is not base64")))?;
    check(Algorithm::Sha256, keys, &[body], &[signature], HEADER)
}

/// `X-Slack-Signature: v0=<hex>` over `"v0:{X-Slack-Request-Timestamp}:{body}"`.
pub(super) fn slack(
    headers: &HeaderMap,
    body: &[u8],
    keys: &[String],
    now: i64,
    tolerance_s: u64,
) -> Result<(), VerifyError> {
    const HEADER: &str = "X-Slack-Signature";
    const TS_HEADER: &str = "X-Slack-Request-Timestamp";
    let value = header_str(headers, HEADER)?;
    let ts = header_str(headers, TS_HEADER)?;
    fresh(timestamp(TS_HEADER, ts)?, now, tolerance_s)?;
    let signature = value
        .strip_prefix("v0=")
        .and_then(unhex)
        .ok_or_else(|| unauthorized(format!("header {HEADER} must be 'v0=' followed by hex")))?;
    check(
        Algorithm::Sha256,
        keys,
        &[b"v0:", ts.as_bytes(), b":", body],
        &[signature],
        HEADER,
    )
}

/// The HMAC key of a Standard Webhooks secret: base64 after an optional `whsec_`. Err says what
/// is wrong without quoting the secret.
pub(super) fn standard_key(secret: &str) -> Result<Vec<u8>, &'static str> {
    match unbase64(secret.strip_prefix("whsec_").unwrap_or(secret)) {
        Some(key) if !key.is_empty() => Ok(key),
        Some(_) => Err("holds an empty key"),
        None => Err("must be 'whsec_' followed by base64"),
    }
}

/// `webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64>[ v1,<base64>...]` over
/// `"{id}.{timestamp}.{body}"`. Unparsable and unknown entries (`v1a`, `v2`) are skipped.
pub(super) fn standard_webhooks(
    headers: &HeaderMap,
    body: &[u8],
    keys: &[Vec<u8>],
    now: i64,
    tolerance_s: u64,
) -> Result<(), VerifyError> {
    const ID: &str = "webhook-id";
    const TS: &str = "webhook-timestamp";
    const SIGNATURE: &str = "webhook-signature";
    let id = header_str(headers, ID)?;
    let ts = header_str(headers, TS)?;
    let value = header_str(headers, SIGNATURE)?;
    // The signed content joins the parts with '.', so a '.' inside one would let a signature for
    // one (id, timestamp, body) pass for another.
    if id.is_empty() || id.contains('.') {
        return Err(malformed(format!(
            "header {ID} must be non-empty and must not contain '.'"
        )));
    }
    let entries: Vec<&str> = value.split_ascii_whitespace().collect();
    if entries.len() > MAX_SIGNATURES {
        return Err(malformed(format!(
            "header {SIGNATURE} has more than {MAX_SIGNATURES} entries"
        )));
    }
    fresh(timestamp(TS, ts)?, now, tolerance_s)?;
    let candidates: Vec<Vec<u8>> = entries
        .iter()
        .filter_map(|entry| entry.split_once(','))
        .filter(|(version, _)| *version == "v1")
        .filter_map(|(_, sig)| unbase64(sig))
        .collect();
    if candidates.is_empty() {
        return Err(unauthorized(format!(
            "header {SIGNATURE} has no v1 signature"
        )));
    }
    check(
        Algorithm::Sha256,
        keys,
        &[id.as_bytes(), b".", ts.as_bytes(), b".", body],
        &candidates,
        SIGNATURE,
    )
}

fn check<K: AsRef<[u8]>>(
    algorithm: Algorithm,
    keys: &[K],
    parts: &[&[u8]],
    candidates: &[Vec<u8>],
    header: &str,
) -> Result<(), VerifyError> {
    if any_signs(algorithm, keys, parts, candidates) {
        Ok(())
    } else {
        Err(unauthorized(format!(
            "the signature in {header} does not match"
        )))
    }
}
