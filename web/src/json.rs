//! JSON for people: pretty-printed line by line, each line knowing the JSONPath of what it shows,
//! so that a diff can highlight exactly the values that changed; and the paths of a document, for
//! the editor's template help.

use std::collections::BTreeSet;

use serde_json::Value;

/// The JSONPath of `key` under `parent`: `$.a.b`, or `$['content-type']` when the key is not an
/// identifier. The same spelling is used by the diff, the template help and the engine.
pub fn child_path(parent: &str, key: &str) -> String {
    let plain = key
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if plain {
        format!("{parent}.{key}")
    } else {
        let quoted = key.replace('\\', "\\\\").replace('\'', "\\'");
        format!("{parent}['{quoted}']")
    }
}

pub fn index_path(parent: &str, i: usize) -> String {
    format!("{parent}[{i}]")
}

/// One printed line: its text (indentation included) and the path of the value it shows.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    pub text: String,
    pub path: String,
    pub changed: bool,
}

/// `v` pretty-printed, one [`Line`] per line; lines whose path is in `changed` are marked.
pub fn lines(v: &Value, changed: &BTreeSet<String>) -> Vec<Line> {
    let mut out = Vec::new();
    emit(v, "$", 0, None, true, changed, &mut out);
    out
}

fn scalar(v: &Value) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

fn emit(
    v: &Value,
    path: &str,
    depth: usize,
    key: Option<&str>,
    last: bool,
    changed: &BTreeSet<String>,
    out: &mut Vec<Line>,
) {
    let pad = "  ".repeat(depth);
    let label = key
        .map(|k| format!("{}: ", scalar(&Value::String(k.to_string()))))
        .unwrap_or_default();
    let comma = if last { "" } else { "," };
    let mark = changed.contains(path);
    let push = |out: &mut Vec<Line>, text: String, changed: bool| {
        out.push(Line {
            text,
            path: path.to_string(),
            changed,
        })
    };
    match v {
        Value::Object(map) if !map.is_empty() => {
            push(out, format!("{pad}{label}{{"), mark);
            let n = map.len();
            for (i, (k, child)) in map.iter().enumerate() {
                emit(
                    child,
                    &child_path(path, k),
                    depth + 1,
                    Some(k),
                    i + 1 == n,
                    changed,
                    out,
                );
            }
            push(out, format!("{pad}}}{comma}"), mark);
        }
        Value::Array(items) if !items.is_empty() => {
            push(out, format!("{pad}{label}["), mark);
            let n = items.len();
            for (i, child) in items.iter().enumerate() {
                emit(
                    child,
                    &index_path(path, i),
                    depth + 1,
                    None,
                    i + 1 == n,
                    changed,
                    out,
                );
            }
            push(out, format!("{pad}]{comma}"), mark);
        }
        _ => push(out, format!("{pad}{label}{}{comma}", scalar(v)), mark),
    }
}

/// Every value of `v` by path (leaves, and empty objects/arrays as leaves).
pub fn flatten(v: &Value) -> Vec<(String, Value)> {
    fn walk(v: &Value, path: String, out: &mut Vec<(String, Value)>) {
        match v {
            Value::Object(map) if !map.is_empty() => {
                for (k, child) in map {
                    walk(child, child_path(&path, k), out);
                }
            }
            Value::Array(items) if !items.is_empty() => {
                for (i, child) in items.iter().enumerate() {
                    walk(child, index_path(&path, i), out);
                }
            }
            _ => out.push((path, v.clone())),
        }
    }
    let mut out = Vec::new();
    walk(v, "$".to_string(), &mut out);
    out
}

/// A path that a template may use, with a preview of its value in the run it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct PathHint {
    pub path: String,
    pub preview: String,
}

/// The paths in `v` under `root` (objects and leaves; the first element of arrays), breadth
/// limited so a large payload does not flood the panel.
pub fn path_hints(root: &str, v: &Value, max_depth: usize, limit: usize) -> Vec<PathHint> {
    fn walk(
        v: &Value,
        path: String,
        depth: usize,
        max: usize,
        limit: usize,
        out: &mut Vec<PathHint>,
    ) {
        if out.len() >= limit {
            return;
        }
        let preview = match v {
            Value::Object(m) => format!("{{…}} {} keys", m.len()),
            Value::Array(a) => format!("[…] {} items", a.len()),
            other => {
                let s = scalar(other);
                if s.chars().count() > 40 {
                    format!("{}…", s.chars().take(39).collect::<String>())
                } else {
                    s
                }
            }
        };
        out.push(PathHint {
            path: path.clone(),
            preview,
        });
        if depth >= max {
            return;
        }
        match v {
            Value::Object(m) => {
                for (k, child) in m {
                    walk(child, child_path(&path, k), depth + 1, max, limit, out);
                }
            }
            Value::Array(a) => {
                if let Some(first) = a.first() {
                    walk(first, index_path(&path, 0), depth + 1, max, limit, out);
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(v, root.to_string(), 0, max_depth, limit, &mut out);
    out
}

/// `v` as indented JSON (for `<pre>` and textareas).
pub fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn paths_quote_keys_that_are_not_identifiers() {
        assert_eq!(child_path("$", "body"), "$.body");
        assert_eq!(
            child_path("$.headers", "content-type"),
            "$.headers['content-type']"
        );
        assert_eq!(child_path("$", "it's"), "$['it\\'s']");
        assert_eq!(index_path("$.items", 2), "$.items[2]");
    }

    #[test]
    fn lines_carry_paths_and_marks() {
        let v = json!({"a": 1, "b": {"c": [true, null]}, "e": {}});
        let changed: BTreeSet<String> = ["$.b.c[1]".to_string()].into();
        let ls = lines(&v, &changed);
        let text: Vec<&str> = ls.iter().map(|l| l.text.as_str()).collect();
        assert_eq!(
            text,
            [
                "{",
                "  \"a\": 1,",
                "  \"b\": {",
                "    \"c\": [",
                "      true,",
                "      null",
                "    ]",
                "  },",
                "  \"e\": {}",
                "}"
            ]
        );
        assert_eq!(
            ls.iter()
                .filter(|l| l.changed)
                .map(|l| l.text.trim())
                .collect::<Vec<_>>(),
            ["null"]
        );
        assert_eq!(
            ls.iter()
                .map(|l| l.text.clone())
                .collect::<Vec<_>>()
                .join("\n"),
            pretty(&v)
        );
    }

    #[test]
    fn flatten_and_hints() {
        let v = json!({"x": {"y": [1, 2]}, "z": []});
        assert_eq!(
            flatten(&v),
            vec![
                ("$.x.y[0]".into(), json!(1)),
                ("$.x.y[1]".into(), json!(2)),
                ("$.z".into(), json!([]))
            ]
        );
        let hints = path_hints("$.trigger.body", &v, 4, 50);
        let paths: Vec<&str> = hints.iter().map(|h| h.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "$.trigger.body",
                "$.trigger.body.x",
                "$.trigger.body.x.y",
                "$.trigger.body.x.y[0]",
                "$.trigger.body.z"
            ]
        );
    }
}
