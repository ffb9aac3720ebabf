//! Pieces of the benchmark that are worth testing on their own: the latency histogram and the
//! Standard Webhooks signer the load generator uses.

pub mod hist;

use base64::Engine;
use hmac::{KeyInit, Mac};

/// `webhook-signature` value (`v1,<base64>`) for `secret` (`whsec_<base64 key>`), over
/// `"{id}.{timestamp}.{body}"`, as the Standard Webhooks specification defines it.
pub fn standard_webhooks_signature(secret: &str, id: &str, ts: i64, body: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD;
    let key = b64
        .decode(secret.trim_start_matches("whsec_"))
        .expect("the bench secret is base64");
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).expect("any key length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(ts.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", b64.encode(mac.finalize().into_bytes()))
}

/// Parse `"16,64"` into connection counts.
pub fn parse_list(s: &str) -> Result<Vec<usize>, String> {
    s.split(',')
        .map(|p| {
            p.trim()
                .parse::<usize>()
                .map_err(|e| format!("'{p}': {e}"))
                .and_then(|n| {
                    if n == 0 {
                        Err("must be at least 1".into())
                    } else {
                        Ok(n)
                    }
                })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_the_specification_example() {
        // The example from the Standard Webhooks specification.
        let sig = standard_webhooks_signature(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn connection_lists() {
        assert_eq!(parse_list("16,64").unwrap(), [16, 64]);
        assert_eq!(parse_list(" 8 ").unwrap(), [8]);
        assert!(parse_list("0").is_err());
        assert!(parse_list("x").is_err());
    }
}
