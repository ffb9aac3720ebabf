//! JSONPath (RFC 9535) over the run context. This is the only module that touches `jsonpath-rust`,
//! so the engine can swap implementations without changing callers.

use std::borrow::Cow;
use std::fmt;

use jsonpath_rust::parser::errors::JsonPathError;
use jsonpath_rust::parser::model::{JpQuery, Segment, Selector};
use jsonpath_rust::parser::parse_json_path;
use jsonpath_rust::query::js_path_process;
use serde_json::Value;

use crate::context::Ctx;

/// A JSONPath parsed once (when the flow is saved) and evaluated many times.
#[derive(Clone)]
pub struct JsonPath {
    src: String,
    kind: Kind,
}

#[derive(Clone, Debug)]
enum Kind {
    /// Only name/index selectors: walked directly, which avoids the library's per-match path strings.
    Singular(Vec<Step>),
    /// Anything else (wildcard, slice, filter, descendant, unions) goes through the library.
    Query(JpQuery),
}

#[derive(Clone, Debug)]
enum Step {
    Name(String),
    Index(i64),
}

impl JsonPath {
    /// Parse `src`. The error says what is wrong in plain words.
    pub fn compile(src: &str) -> Result<JsonPath, String> {
        if src.trim().is_empty() {
            return Err("empty JSONPath (expected something like $.input.id)".into());
        }
        if !src.starts_with('$') {
            return Err(format!(
                "a JSONPath must start with '$' (e.g. $.input.id), got '{src}'"
            ));
        }
        check_unquoted_space(src)?;
        let query = parse_json_path(src).map_err(|e| describe_error(src, &e))?;
        let kind = match singular_steps(&query) {
            Some(steps) => Kind::Singular(steps),
            None => Kind::Query(query),
        };
        Ok(JsonPath {
            src: src.to_string(),
            kind,
        })
    }

    /// Evaluate over `doc`: a singular path yields the value (null when nothing matches);
    /// any other path yields the array of its matches (possibly empty).
    pub fn eval(&self, doc: &Value) -> Value {
        self.eval_ref(doc).into_owned()
    }

    /// Like [`JsonPath::eval`], but borrows from `doc` when it can (singular paths), so callers that only
    /// inspect the result (conditions) do not clone subtrees.
    pub fn eval_ref<'a>(&self, doc: &'a Value) -> Cow<'a, Value> {
        match &self.kind {
            Kind::Singular(steps) => {
                walk(doc, steps).map_or(Cow::Owned(Value::Null), Cow::Borrowed)
            }
            Kind::Query(query) => {
                // A parsed query over a serde_json value cannot fail; treat a library error as no match.
                let matches = js_path_process(query, doc).unwrap_or_default();
                Cow::Owned(Value::Array(
                    matches.into_iter().map(|m| m.val.clone()).collect(),
                ))
            }
        }
    }

    /// Evaluate over a run context: like [`JsonPath::eval_ref`] over the whole context document,
    /// without building it when the path walks by names and indexes from one of its members.
    pub fn eval_in<'a>(&self, ctx: Ctx<'a>) -> Cow<'a, Value> {
        let parts = match ctx {
            Ctx::Doc(doc) => return self.eval_ref(doc),
            Ctx::Parts(p) => p,
        };
        if let Kind::Singular(steps) = &self.kind
            && let Some((Step::Name(key), rest)) = steps.split_first()
        {
            return parts
                .member(key)
                .and_then(|member| walk(member, rest))
                .map_or(Cow::Owned(Value::Null), Cow::Borrowed);
        }
        self.eval_ref(ctx.to_doc())
    }

    pub fn as_str(&self) -> &str {
        &self.src
    }

    /// True when the path can select at most one value (only name and index selectors).
    pub fn is_singular(&self) -> bool {
        matches!(self.kind, Kind::Singular(_))
    }
}

impl fmt::Debug for JsonPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("JsonPath").field(&self.src).finish()
    }
}

impl fmt::Display for JsonPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.src)
    }
}

/// The steps of a singular query (RFC 9535 §2.3.5.1), or None when the query may select several nodes.
fn singular_steps(query: &JpQuery) -> Option<Vec<Step>> {
    query
        .segments
        .iter()
        .map(|segment| match segment {
            Segment::Selector(Selector::Name(name)) => Some(Step::Name(name.clone())),
            Segment::Selector(Selector::Index(index)) => Some(Step::Index(*index)),
            _ => None,
        })
        .collect()
}

fn walk<'a>(doc: &'a Value, steps: &[Step]) -> Option<&'a Value> {
    steps.iter().try_fold(doc, |node, step| match (step, node) {
        (Step::Name(name), Value::Object(map)) => map.get(name),
        (Step::Index(index), Value::Array(items)) => {
            // Negative indexes count from the end (RFC 9535 §2.3.3.2).
            let at = if *index < 0 {
                items.len() as i64 + index
            } else {
                *index
            };
            usize::try_from(at).ok().and_then(|at| items.get(at))
        }
        _ => None,
    })
}

/// The library lets a dotted name run on across spaces (`$.a b` selects key "a b"), which RFC 9535
/// forbids and which would hide mistakes such as `$.input.email lower` (a forgotten `|`).
fn check_unquoted_space(src: &str) -> Result<(), String> {
    let is_name = |c: char| c.is_alphanumeric() || c == '_';
    let mut quote = None;
    let mut escaped = false;
    let mut prev_name: Option<usize> = None; // byte index of the last name char, if only spaces followed
    for (i, c) in src.char_indices() {
        if let Some(q) = quote {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                _ if c == q => quote = None,
                _ => {}
            }
            continue;
        }
        match c {
            '\'' | '"' => {
                quote = Some(c);
                prev_name = None;
            }
            c if c.is_whitespace() => {}
            c if is_name(c) => {
                if let Some(start) = prev_name.filter(|&p| src[p..i].contains(char::is_whitespace))
                {
                    let word_start = src[..start]
                        .rfind(|c: char| !is_name(c))
                        .map_or(0, |p| p + 1);
                    let word_end = src[i..]
                        .find(|c: char| !is_name(c))
                        .map_or(src.len(), |p| i + p);
                    let words = &src[word_start..word_end];
                    return Err(format!(
                        "unexpected space in '{words}' (a name with spaces must be quoted, e.g. $['{words}'])"
                    ));
                }
                prev_name = Some(i);
            }
            _ => prev_name = None,
        }
    }
    Ok(())
}

/// Turn the library's error (pest output spans several lines and names grammar rules) into one line.
fn describe_error(src: &str, err: &JsonPathError) -> String {
    match err {
        JsonPathError::PestError(pest) => {
            let text = pest.to_string();
            let column = text
                .lines()
                .find_map(|l| l.trim_start().strip_prefix("--> "))
                .and_then(|pos| pos.split(':').nth(1))
                .and_then(|c| c.trim().parse::<usize>().ok());
            let expected = friendly_expectation(&pest.variant.message());
            match column {
                Some(col) => {
                    let rest: String = src.chars().skip(col.saturating_sub(1)).take(12).collect();
                    let near = if rest.is_empty() {
                        "at the end".to_string()
                    } else {
                        format!("at '{rest}'")
                    };
                    format!("syntax error at character {col} ({near}): {expected}")
                }
                None => format!("syntax error: {expected}"),
            }
        }
        JsonPathError::MaxNestingDepthExceeded(max) => format!("nested deeper than {max} levels"),
        other => other.to_string(),
    }
}

/// Rewrite pest's "expected a_rule, b_rule, or c_rule" in words a flow author knows.
fn friendly_expectation(message: &str) -> String {
    let Some(list) = message.strip_prefix("expected ") else {
        return message.replace('_', " ");
    };
    let mut words: Vec<&str> = Vec::new();
    for rule in list
        .split(", or ")
        .flat_map(|s| s.split(" or "))
        .flat_map(|s| s.split(", "))
    {
        let word = match rule.trim() {
            "EOI" => "the end of the path",
            "segment" | "child_segment" => "'.name' or '[...]'",
            "bracketed_selection" => "'[...]'",
            "selector" => "a selector (name, index, *, slice or ?filter)",
            "wildcard_selector" => "'*'",
            "ALPHA" | "member_name_shorthand" | "name_first" => "a name",
            "comparable" | "literal" => "a value to compare (literal, @.path, $.path or function)",
            "logical_expr" | "atom_expr" | "logical_expr_and" => "a filter expression",
            "comp_op" => "a comparison (==, !=, <, <=, >, >=)",
            "string" | "name_selector" => "a quoted string",
            "int" | "index_selector" => "an integer",
            other => other,
        };
        if !words.contains(&word) {
            words.push(word);
        }
    }
    let list = match words.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        _ => words.concat(),
    };
    format!("expected {}", list.replace('_', " "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn eval(path: &str, doc: &Value) -> Value {
        JsonPath::compile(path)
            .unwrap_or_else(|e| panic!("{path}: {e}"))
            .eval(doc)
    }

    #[test]
    fn singular_paths_yield_the_value_or_null() {
        let doc = json!({"a": {"b": [10, 20, 30]}, "x y": 1, "n": null});
        assert_eq!(eval("$", &doc), doc);
        assert_eq!(eval("$.a.b[0]", &doc), json!(10));
        assert_eq!(eval("$.a.b[-1]", &doc), json!(30));
        assert_eq!(eval("$.a.b[3]", &doc), Value::Null);
        assert_eq!(eval("$.a.b[-4]", &doc), Value::Null);
        assert_eq!(eval("$['x y']", &doc), json!(1));
        assert_eq!(eval("$[\"a\"]['b'][1]", &doc), json!(20));
        assert_eq!(eval("$.missing.deeper", &doc), Value::Null);
        assert_eq!(eval("$.n", &doc), Value::Null);
        assert_eq!(eval("$.a.b.c", &doc), Value::Null);
        assert!(JsonPath::compile("$.a.b[0]").unwrap().is_singular());
        assert!(JsonPath::compile("$['x']").unwrap().is_singular());
    }

    #[test]
    fn non_singular_paths_yield_arrays() {
        let doc = json!({"a": [{"x": 1, "id": "p"}, {"x": 2, "id": "q"}, {"x": 3, "id": "r"}]});
        for p in [
            "$.a[*]",
            "$.a[0:2]",
            "$..x",
            "$.a[?@.x > 1]",
            "$['a','b']",
            "$.a[0,1]",
        ] {
            assert!(!JsonPath::compile(p).unwrap().is_singular(), "{p}");
        }
        assert_eq!(eval("$.a[*].x", &doc), json!([1, 2, 3]));
        assert_eq!(eval("$.a[?@.x > 1].id", &doc), json!(["q", "r"]));
        assert_eq!(eval("$.a[?@.x > 5]", &doc), json!([]));
        assert_eq!(eval("$.nothing[*]", &doc), json!([]));
    }

    // Cases in the style of the JSONPath compliance test suite (RFC 9535).
    #[test]
    fn compliance_suite_cases() {
        let arr = json!(["a", "b", "c", "d", "e", "f", "g"]);
        assert_eq!(eval("$[1:3]", &arr), json!(["b", "c"]));
        assert_eq!(eval("$[5:]", &arr), json!(["f", "g"]));
        assert_eq!(eval("$[1:5:2]", &arr), json!(["b", "d"]));
        assert_eq!(eval("$[5:1:-2]", &arr), json!(["f", "d"]));
        assert_eq!(
            eval("$[::-1]", &arr),
            json!(["g", "f", "e", "d", "c", "b", "a"])
        );
        assert_eq!(eval("$[-2:]", &arr), json!(["f", "g"]));
        assert_eq!(eval("$[1:3:0]", &arr), json!([]));

        let doc = json!({"o": {"j j": {"k.k": 3}}, "'": {"@": 2}});
        assert_eq!(eval("$.o['j j']['k.k']", &doc), json!(3));
        assert_eq!(eval("$.o[\"j j\"][\"k.k\"]", &doc), json!(3));
        assert_eq!(eval("$[\"'\"][\"@\"]", &doc), json!(2));

        let doc = json!({"o": [{"a": 1}, {"a": [2, {"a": 3}]}]});
        assert_eq!(eval("$..a", &doc), json!([1, [2, {"a": 3}], 3]));
        assert_eq!(eval("$..[0]", &doc), json!([{"a": 1}, 2]));

        let doc = json!([{"a": "b", "d": "e"}, {"a": 1, "d": "f"}, {"a": 2, "d": "g"}]);
        assert_eq!(eval("$[?@.a=='b']", &doc), json!([{"a": "b", "d": "e"}]));
        assert_eq!(eval("$[?@.a>1 || @.a=='b'].d", &doc), json!(["e", "g"]));
        assert_eq!(eval("$[?@.a>=1 && @.a<2].d", &doc), json!(["f"]));
        assert_eq!(eval("$[?!(@.a==1)].d", &doc), json!(["e", "g"]));
        assert_eq!(eval("$[?length(@.d)==1].d", &doc), json!(["e", "f", "g"]));
        assert_eq!(eval("$[?match(@.d, '[ef]')].d", &doc), json!(["e", "f"]));
        assert_eq!(eval("$[?@.zz]", &doc), json!([]));

        let doc = json!({"a": [{"x": 1}, {"x": 5}], "limit": 2});
        assert_eq!(eval("$.a[?@.x > $.limit].x", &doc), json!([5]));
    }

    #[test]
    fn invalid_paths_are_rejected() {
        for p in [
            "",
            "a.b",
            "input.x",
            "$.a[",
            "$..",
            "$.a[?@.x >]",
            "$[1:2:3:4]",
            "$['x]",
            "$.a b",
            "$.a.b c",
        ] {
            assert!(JsonPath::compile(p).is_err(), "{p} should not compile");
        }
        assert!(
            JsonPath::compile("a.b")
                .unwrap_err()
                .contains("must start with '$'")
        );
        let err = JsonPath::compile("$.a[").unwrap_err();
        assert_eq!(
            err,
            "syntax error at character 5 (at the end): expected a selector (name, index, *, slice or ?filter)"
        );
        let err = JsonPath::compile("$.input.email lower").unwrap_err();
        assert!(err.contains("'email lower'"), "{err}");
        // Spaces are fine between segments, around filter operators and inside quotes.
        for p in [
            "$ .a",
            "$.a [0]",
            "$[?@.a == 1 && @.b]",
            "$['a b']",
            "$[?@.a == 'x y']",
            "$[ 1 , 2 ]",
        ] {
            assert!(JsonPath::compile(p).is_ok(), "{p} should compile");
        }
    }

    #[test]
    fn keeps_its_source() {
        let p = JsonPath::compile("$.input['a']").unwrap();
        assert_eq!(p.as_str(), "$.input['a']");
        assert_eq!(format!("{p:?}"), "JsonPath(\"$.input['a']\")");
    }
}
