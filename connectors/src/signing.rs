//! Standard Webhooks signing for outbound deliveries (`webhook-id`, `webhook-timestamp`,
//! `webhook-signature`), through the reference implementation rather than hand-rolled crypto.

use standardwebhooks::Webhook;

/// The `webhook-signature` value (`v1,<base64>`) for one delivery attempt. `secret` is
/// `whsec_<base64 key>`; the key must be at least 24 bytes, as the spec asks.
pub fn sign(secret: &str, msg_id: &str, timestamp: i64, body: &[u8]) -> Result<String, String> {
    let encoded = secret.strip_prefix("whsec_").unwrap_or(secret);
    let key_len = base64::Engine::decode(&base64::prelude::BASE64_STANDARD, encoded)
        .map_err(|_| "the signing secret must be 'whsec_' followed by base64".to_string())?
        .len();
    if key_len < 24 {
        return Err(format!(
            "the signing secret's key is {key_len} bytes; use at least 24"
        ));
    }
    let hook = Webhook::new(secret).map_err(|e| format!("bad signing secret: {e}"))?;
    hook.sign(msg_id, timestamp, body)
        .map_err(|e| format!("cannot sign: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The published Standard Webhooks / Svix vector.
    #[test]
    fn reproduces_the_spec_vector() {
        let sig = sign(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        )
        .unwrap();
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn refuses_short_or_malformed_secrets() {
        assert!(
            sign("whsec_c2hvcnQ=", "m", 1, b"{}")
                .unwrap_err()
                .contains("at least 24")
        );
        assert!(sign("whsec_!!!", "m", 1, b"{}").is_err());
    }
}
