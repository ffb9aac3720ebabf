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

/// A group-commit writer's counters from hookflow's `/metrics`: commits, the rows they held,
/// and the seconds they took in all.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Commits {
    pub commits: f64,
    pub rows: f64,
    pub seconds: f64,
}

impl Commits {
    /// What happened between `before` and `self`.
    pub fn since(&self, before: &Commits) -> Commits {
        Commits {
            commits: self.commits - before.commits,
            rows: self.rows - before.rows,
            seconds: self.seconds - before.seconds,
        }
    }
}

/// The group-commit counters of one `writer` (`webhooks` or `steps`) in a Prometheus text page;
/// zero where a series is absent (the writer has not committed yet).
pub fn group_commits(metrics: &str, writer: &str) -> Commits {
    let labels = format!("{{writer=\"{writer}\"}} ");
    let value = |name: &str| {
        let prefix = format!("{name}{labels}");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    Commits {
        commits: value("hookflow_group_commits_total"),
        rows: value("hookflow_group_commit_rows_total"),
        seconds: value("hookflow_group_commit_seconds_sum"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_commit_counters_per_writer() {
        let page = "# TYPE hookflow_group_commits_total counter\n\
            hookflow_group_commits_total{writer=\"webhooks\"} 1664\n\
            hookflow_group_commits_total{writer=\"steps\"} 7\n\
            hookflow_group_commit_rows_total{writer=\"webhooks\"} 53099\n\
            hookflow_group_commit_seconds_bucket{writer=\"webhooks\",le=\"0.001\"} 3\n\
            hookflow_group_commit_seconds_sum{writer=\"webhooks\"} 7.493762031\n\
            hookflow_group_commit_seconds_count{writer=\"webhooks\"} 1664\n";
        let w = group_commits(page, "webhooks");
        assert_eq!(
            w,
            Commits {
                commits: 1664.0,
                rows: 53099.0,
                seconds: 7.493762031
            }
        );
        let before = Commits {
            commits: 64.0,
            rows: 99.0,
            seconds: 0.5,
        };
        let d = w.since(&before);
        assert_eq!((d.commits, d.rows), (1600.0, 53000.0));
        assert!((d.seconds - 6.993762031).abs() < 1e-9);
        // A writer that has not committed yet has no series at all.
        let steps = group_commits(page, "steps");
        assert_eq!((steps.commits, steps.rows, steps.seconds), (7.0, 0.0, 0.0));
        assert_eq!(group_commits("", "webhooks"), Commits::default());
    }

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
