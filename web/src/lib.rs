//! hookflow's browser pages: askama templates (auto-escaped) and their view models.

use askama::Template;

pub mod auth;

#[derive(Template)]
#[template(path = "landing.html")]
struct Landing<'a> {
    version: &'a str,
}

/// The page at `/`: what this server is and where its interfaces are.
pub fn landing_page() -> String {
    Landing {
        version: env!("CARGO_PKG_VERSION"),
    }
    .render()
    .unwrap_or_else(|e| format!("template error: {e}"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn landing_page_renders() {
        let page = super::landing_page();
        assert!(page.contains("/api/openapi.json"));
    }
}
