//! Prometheus metrics. The recorder is process-global, so it is installed once and shared by
//! every server in the process (tests start several).
//!
//! - `hookflow_webhooks_received_total{flow,status}`: webhook requests by flow and answer status
//! - `hookflow_runs_total{flow,status}`: finished runs by final status
//! - `hookflow_runs_started_total{flow,via}`: runs given to a worker, `via="handoff"` (queued
//!   by this process while a worker was free) or `via="claim"` (taken from the queue)
//! - `hookflow_step_duration_seconds{type,status}`: step execution time
//! - `hookflow_queue_depth`: runs waiting in the queue
//! - `hookflow_deliveries_total{status}`: outbound delivery attempts by outcome
//! - `hookflow_group_commits_total{writer}`, `hookflow_group_commit_rows_total{writer}` and
//!   `hookflow_group_commit_seconds{writer}`: the group commits (see [`group_commit`])

use std::{sync::OnceLock, time::Duration};

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

pub fn handle() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            PrometheusBuilder::new()
                .set_buckets(&[
                    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                ])
                .expect("valid buckets")
                // A commit with its fsync takes about a millisecond on an SSD.
                .set_buckets_for_metric(
                    Matcher::Full("hookflow_group_commit_seconds".into()),
                    &[
                        0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0,
                    ],
                )
                .expect("valid buckets")
                .install_recorder()
                .expect("metrics recorder installed once")
        })
        .clone()
}

/// One committed transaction of a group-commit writer: `writer` is `webhooks` (new events and
/// runs, answered once committed) or `steps` (step records and run ends); `rows` is how many
/// items it held, `took` the time from its `BEGIN` to the end of its `COMMIT`. Under load,
/// ingest throughput is about rows per commit over the time a commit takes, so these two say
/// whether the disk or the batch size limits it.
pub fn group_commit(writer: &'static str, rows: usize, took: Duration) {
    metrics::counter!("hookflow_group_commits_total", "writer" => writer).increment(1);
    metrics::counter!("hookflow_group_commit_rows_total", "writer" => writer)
        .increment(rows as u64);
    metrics::histogram!("hookflow_group_commit_seconds", "writer" => writer)
        .record(took.as_secs_f64());
}
