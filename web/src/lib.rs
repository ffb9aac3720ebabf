//! hookflow's browser UI: askama templates (auto-escaped), their view models, the layout of the
//! flow graph, JSON presentation, and the static assets (vendored htmx included) that the server
//! embeds. No HTTP here: the server's `ui` module maps requests to these views.

pub mod assets;
pub mod auth;
pub mod graph;
pub mod json;
pub mod views;
