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

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

pub fn handle() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            PrometheusBuilder::new()
                .set_buckets(&[
                    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                ])
                .expect("valid buckets")
                .install_recorder()
                .expect("metrics recorder installed once")
        })
        .clone()
}
