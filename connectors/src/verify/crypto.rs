//! The shared pieces of every scheme: bounded header reads, timestamp checks, HMAC and
//! constant-time comparison.

use std::fmt;

use base64::{Engine as _, engine::general_purpose::STANDARD_PAD_INDIFFERENT};
use hmac::{Hmac, KeyInit, Mac};
use reqwest::header::HeaderMap;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::VerifyError;

/// Longest header value read; longer ones are refused before any work is done on them.
pub(super) const MAX_HEADER_BYTES: usize = 4096;
/// Most signature entries in one header (rotation needs two or three).
pub(super) const MAX_SIGNATURES: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Algorithm {
    Sha1,
    Sha256,
    Sha512,
}

impl Algorithm {
    pub const NAMES: &'static [&'static str] = &["sha256", "sha1", "sha512"];

    pub fn from_name(name: &str) -> Option<Algorithm> {
        match name {
            "sha256" => Some(Algorithm::Sha256),
            "sha1" => Some(Algorithm::Sha1),
            "sha512" => Some(Algorithm::Sha512),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Encoding {
    Hex,
    Base64,
}

impl Encoding {
    pub const NAMES: &'static [&'static str] = &["hex", "base64"];

    pub fn from_name(name: &str) -> Option<Encoding> {
        match name {
            "hex" => Some(Encoding::Hex),
            "base64" => Some(Encoding::Base64),
            _ => None,
        }
    }

    pub fn decode(self, s: &str) -> Option<Vec<u8>> {
        match self {
            Encoding::Hex => unhex(s),
            Encoding::Base64 => unbase64(s),
        }
    }
}

impl fmt::Display for Encoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Encoding::Hex => "hex",
            Encoding::Base64 => "base64",
        })
    }
}

/// Hex in either case. Senders write lowercase; accepting uppercase too changes nothing about
/// what must be known to forge a signature (the decoded bytes are compared), so it is allowed.
pub(super) fn unhex(s: &str) -> Option<Vec<u8>> {
    hex::decode(s).ok()
}

/// Standard base64, with or without padding.
pub(super) fn unbase64(s: &str) -> Option<Vec<u8>> {
    STANDARD_PAD_INDIFFERENT.decode(s).ok()
}

pub(super) fn unauthorized(msg: impl Into<String>) -> VerifyError {
    VerifyError::Unauthorized(msg.into())
}

pub(super) fn malformed(msg: impl Into<String>) -> VerifyError {
    VerifyError::Malformed(msg.into())
}

/// The one value of header `name`: missing → 401; repeated or over [`MAX_HEADER_BYTES`] → 400.
pub(super) fn header_bytes<'h>(
    headers: &'h HeaderMap,
    name: &str,
) -> Result<&'h [u8], VerifyError> {
    let mut values = headers.get_all(name).iter();
    let Some(value) = values.next() else {
        return Err(unauthorized(format!("missing header {name}")));
    };
    if values.next().is_some() {
        return Err(malformed(format!("header {name} appears more than once")));
    }
    if value.len() > MAX_HEADER_BYTES {
        return Err(malformed(format!(
            "header {name} is longer than {MAX_HEADER_BYTES} bytes"
        )));
    }
    Ok(value.as_bytes())
}

/// Like [`header_bytes`], and the value must be visible ASCII.
pub(super) fn header_str<'h>(headers: &'h HeaderMap, name: &str) -> Result<&'h str, VerifyError> {
    let bytes = header_bytes(headers, name)?;
    match std::str::from_utf8(bytes) {
        Ok(s)
            if s.bytes()
                .all(|b| b == b' ' || b == b'\t' || b.is_ascii_graphic()) =>
        {
            Ok(s)
        }
        _ => Err(malformed(format!("header {name} is not printable ASCII"))),
    }
}

/// A Unix time in whole seconds, digits only (so never a '.').
pub(super) fn timestamp(name: &str, s: &str) -> Result<i64, VerifyError> {
    let digits = !s.is_empty() && s.len() <= 18 && s.bytes().all(|b| b.is_ascii_digit());
    match s.parse::<i64>() {
        Ok(t) if digits => Ok(t),
        _ => Err(malformed(format!(
            "{name} must be a Unix time in whole seconds"
        ))),
    }
}

/// Symmetric window: a timestamp too far in the future is refused like one too far in the past.
pub(super) fn fresh(ts: i64, now: i64, tolerance_s: u64) -> Result<(), VerifyError> {
    let skew = now.abs_diff(ts);
    if skew <= tolerance_s {
        return Ok(());
    }
    let side = if ts < now { "old" } else { "in the future" };
    Err(unauthorized(format!(
        "stale timestamp: {skew} s {side}; the tolerance is {tolerance_s} s"
    )))
}

/// HMAC of the concatenation of `parts`.
pub(super) fn mac(algorithm: Algorithm, key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    macro_rules! run {
        ($digest:ty) => {{
            let mut m = <Hmac<$digest> as KeyInit>::new_from_slice(key)
                .expect("HMAC takes keys of any length");
            for part in parts {
                m.update(part);
            }
            m.finalize().into_bytes().to_vec()
        }};
    }
    match algorithm {
        Algorithm::Sha1 => run!(sha1::Sha1),
        Algorithm::Sha256 => run!(sha2::Sha256),
        Algorithm::Sha512 => run!(sha2::Sha512),
    }
}

/// Whether any key signs `parts` to any of `candidates` (decoded bytes, compared in constant
/// time; only lengths, which are public, short-circuit).
pub(super) fn any_signs<K: AsRef<[u8]>>(
    algorithm: Algorithm,
    keys: &[K],
    parts: &[&[u8]],
    candidates: &[Vec<u8>],
) -> bool {
    keys.iter().any(|key| {
        let expected = mac(algorithm, key.as_ref(), parts);
        candidates
            .iter()
            .any(|c| bool::from(expected.as_slice().ct_eq(c.as_slice())))
    })
}

/// Constant-time equality that hides lengths too: compares SHA-256 digests of both values.
pub(super) fn same_secret(presented: &[u8], expected: &[u8]) -> bool {
    let a = Sha256::digest(presented);
    let b = Sha256::digest(expected);
    a.as_slice().ct_eq(b.as_slice()).into()
}
