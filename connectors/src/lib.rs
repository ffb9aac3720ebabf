//! hookflow's step kinds and outbound webhook signing. Each kind is one module with its config
//! type; [`registry`] lists them all.

use std::sync::Arc;

use flows_engine::Registry;

mod config;
pub mod egress;
pub mod filter;
pub mod http;
pub mod signing;
pub mod transform;
pub mod verify;
pub mod webhook_out;

pub use http::HttpOptions;

/// Every step kind, ready to prepare flows.
pub fn registry(http: HttpOptions) -> Registry {
    let mut r = Registry::new();
    r.register(Arc::new(http::HttpConnector::new(http)))
        .register(Arc::new(transform::TransformConnector))
        .register(Arc::new(filter::FilterConnector))
        .register(Arc::new(webhook_out::WebhookOutConnector));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_lists_every_kind_once() {
        let r = registry(HttpOptions::default());
        assert_eq!(
            r.kinds().collect::<Vec<_>>(),
            ["filter", "http", "transform", "webhook_out"]
        );
    }
}
