//! The login and first-run setup pages.

use askama::Template;

#[derive(Template)]
#[template(path = "login.html")]
pub struct LoginPage<'a> {
    pub error: Option<&'a str>,
    pub next: &'a str,
    pub username: &'a str,
    /// No user exists yet: explain how to create the first one.
    pub needs_setup: bool,
}

#[derive(Template)]
#[template(path = "setup.html")]
pub struct SetupPage<'a> {
    pub token: &'a str,
    pub error: Option<&'a str>,
    pub username: &'a str,
}

/// Render a page; template errors become a plain message (they are programming errors).
pub fn render(t: &impl Template) -> String {
    t.render()
        .unwrap_or_else(|e| format!("template error: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_escape_what_they_show() {
        let page = render(&LoginPage {
            error: Some("<b>no</b>"),
            next: "/\"><script>",
            username: "<x>",
            needs_setup: false,
        });
        assert!(
            !page.contains("<b>no</b>") && !page.contains("<script>") && !page.contains("<x>"),
            "{page}"
        );
        let page = render(&SetupPage {
            token: "t",
            error: None,
            username: "",
        });
        assert!(page.contains("name=\"token\""));
    }
}
