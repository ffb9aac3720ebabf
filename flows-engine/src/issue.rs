//! Validation issues: every problem with its JSON location, e.g. `steps[2].after[0]: unknown step 'shap'`.

use std::fmt;

use serde::Serialize;

/// One validation problem and where it is in the flow document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Issue {
    /// JSON location, e.g. `steps[2].url` (empty for the document root).
    pub path: String,
    pub message: String,
}

impl Issue {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }

    /// Prefix a relative location (`.url`, `[2]`, `url`) with a parent location.
    pub fn under(mut self, parent: &str) -> Self {
        self.path = join_path(parent, &self.path);
        self
    }
}

impl fmt::Display for Issue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Join `parent` and a relative `child` location into one location string.
pub fn join_path(parent: &str, child: &str) -> String {
    match (parent.is_empty(), child.is_empty()) {
        (_, true) => parent.to_string(),
        (true, false) => child.trim_start_matches('.').to_string(),
        (false, false) if child.starts_with('[') || child.starts_with('.') => {
            format!("{parent}{child}")
        }
        (false, false) => format!("{parent}.{child}"),
    }
}

/// Location of an object key below `parent`: `parent.key`, or `parent["odd key"]` when the key is not an identifier.
pub fn key_path(parent: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    let child = if plain {
        format!(".{key}")
    } else {
        format!("[{}]", serde_json::Value::from(key))
    };
    join_path(parent, &child)
}

/// Location of an array element below `parent`.
pub fn index_path(parent: &str, index: usize) -> String {
    format!("{parent}[{index}]")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_locations() {
        assert_eq!(join_path("steps[2]", "url"), "steps[2].url");
        assert_eq!(join_path("steps[2]", "[0]"), "steps[2][0]");
        assert_eq!(join_path("", ".url"), "url");
        assert_eq!(key_path("headers", "X-Id"), "headers.X-Id");
        assert_eq!(key_path("headers", "a b"), "headers[\"a b\"]");
        assert_eq!(
            Issue::new("url", "bad").under("steps[1]").to_string(),
            "steps[1].url: bad"
        );
    }
}
