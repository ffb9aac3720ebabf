//! hookflow's server: configuration, the axum application, ingress, the JSON API, the workers
//! that execute runs and deliver outbound webhooks, and the command line.

pub mod app;
pub mod catalog;
pub mod cli;
pub mod config;
pub mod delivery;
pub mod error;
pub mod flows;
pub mod handoff;
pub mod http;
pub mod ingest;
pub mod metrics;
pub mod retention;
pub mod rundiff;
pub mod scheduler;
pub mod store;
pub mod ui;
pub mod waiters;
pub mod wakeups;
pub mod worker;

pub use app::{App, run, start};
pub use config::ServeArgs;
