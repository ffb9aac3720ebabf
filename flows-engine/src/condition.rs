//! Conditions of filter steps (SPEC §1.1): JSON data, never code.
//! `{"path": "$.input.total", "op": "gt", "value": 100}`, combined with `all`, `any` and `not`.

use std::borrow::Cow;
use std::cmp::Ordering;

use regex::{Regex, RegexBuilder};
use serde_json::{Number, Value};

use crate::context::Ctx;
use crate::issue::{Issue, index_path, key_path};
use crate::path::JsonPath;
use crate::template::{RenderError, SecretSource, TemplateValue};

/// Compiled regexes may use at most this much memory, so a hostile pattern cannot exhaust it.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

const SHAPE_HELP: &str =
    r#"a condition is {"path", "op", "value"}, {"all": [..]}, {"any": [..]} or {"not": {..}}"#;

#[derive(Debug, Clone)]
pub enum Condition {
    All(Vec<Condition>),
    Any(Vec<Condition>),
    Not(Box<Condition>),
    Test {
        path: JsonPath,
        op: Op,
        value: Option<TemplateValue>,
        /// Precompiled when `value` is a literal string and `op` is `matches`.
        regex: Option<Regex>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Gt,
    Gte,
    Lt,
    Lte,
    In,
    NotIn,
    Contains,
    StartsWith,
    EndsWith,
    Matches,
    Exists,
    NotExists,
    Empty,
    NotEmpty,
}

impl Op {
    pub const ALL: [Op; 16] = [
        Op::Eq,
        Op::Ne,
        Op::Gt,
        Op::Gte,
        Op::Lt,
        Op::Lte,
        Op::In,
        Op::NotIn,
        Op::Contains,
        Op::StartsWith,
        Op::EndsWith,
        Op::Matches,
        Op::Exists,
        Op::NotExists,
        Op::Empty,
        Op::NotEmpty,
    ];

    /// The name used in flow JSON.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Eq => "eq",
            Op::Ne => "ne",
            Op::Gt => "gt",
            Op::Gte => "gte",
            Op::Lt => "lt",
            Op::Lte => "lte",
            Op::In => "in",
            Op::NotIn => "not_in",
            Op::Contains => "contains",
            Op::StartsWith => "starts_with",
            Op::EndsWith => "ends_with",
            Op::Matches => "matches",
            Op::Exists => "exists",
            Op::NotExists => "not_exists",
            Op::Empty => "empty",
            Op::NotEmpty => "not_empty",
        }
    }

    pub fn parse(s: &str) -> Option<Op> {
        Op::ALL.into_iter().find(|op| op.name() == s)
    }

    /// Whether the op compares with a `value` (all but exists/not_exists/empty/not_empty).
    pub fn takes_value(&self) -> bool {
        !matches!(self, Op::Exists | Op::NotExists | Op::Empty | Op::NotEmpty)
    }
}

impl Condition {
    /// Compile the JSON form. Err lists every problem, located relative to the condition
    /// ("" for the condition itself, then e.g. `all[1].op`, `value`).
    pub fn compile(v: &Value) -> Result<Condition, Vec<Issue>> {
        let mut issues = Vec::new();
        match compile_at(v, "", &mut issues) {
            Some(condition) if issues.is_empty() => Ok(condition),
            _ => Err(issues),
        }
    }

    pub fn eval<'c>(
        &self,
        ctx: impl Into<Ctx<'c>>,
        secrets: &dyn SecretSource,
    ) -> Result<bool, RenderError> {
        let ctx = ctx.into();
        match self {
            Condition::All(items) => {
                for item in items {
                    if !item.eval(ctx, secrets)? {
                        return Ok(false);
                    }
                }
                Ok(true)
            }
            Condition::Any(items) => {
                for item in items {
                    if item.eval(ctx, secrets)? {
                        return Ok(true);
                    }
                }
                Ok(false)
            }
            Condition::Not(inner) => Ok(!inner.eval(ctx, secrets)?),
            Condition::Test {
                path,
                op,
                value,
                regex,
            } => {
                let left = path.eval_in(ctx);
                let right = match value {
                    None => None,
                    Some(v) => Some(match v.as_literal() {
                        Some(lit) => Cow::Borrowed(lit),
                        None => Cow::Owned(v.render(ctx, secrets)?),
                    }),
                };
                self.test(path, *op, &left, right.as_deref(), regex.as_ref())
            }
        }
    }

    /// One line for the UI, e.g. `$.input.status eq "paid"`, `all($.a exists, not($.b empty))`.
    pub fn summary(&self) -> String {
        let list = |items: &[Condition]| {
            items
                .iter()
                .map(Condition::summary)
                .collect::<Vec<_>>()
                .join(", ")
        };
        match self {
            Condition::All(items) => format!("all({})", list(items)),
            Condition::Any(items) => format!("any({})", list(items)),
            Condition::Not(inner) => format!("not({})", inner.summary()),
            Condition::Test {
                path,
                op,
                value: None,
                ..
            } => format!("{path} {}", op.name()),
            Condition::Test {
                path,
                op,
                value: Some(v),
                ..
            } => format!("{path} {} {}", op.name(), v.to_source()),
        }
    }

    /// Names of the secrets the condition's values reference.
    pub fn secret_refs(&self) -> Vec<&str> {
        match self {
            Condition::All(items) | Condition::Any(items) => {
                items.iter().flat_map(Condition::secret_refs).collect()
            }
            Condition::Not(inner) => inner.secret_refs(),
            Condition::Test { value, .. } => value
                .as_ref()
                .map(TemplateValue::secret_refs)
                .unwrap_or_default(),
        }
    }

    fn test(
        &self,
        path: &JsonPath,
        op: Op,
        left: &Value,
        right: Option<&Value>,
        regex: Option<&Regex>,
    ) -> Result<bool, RenderError> {
        let right = right.unwrap_or(&Value::Null);
        Ok(match op {
            Op::Eq => json_eq(left, right),
            Op::Ne => !json_eq(left, right),
            Op::Gt => compare(left, right).is_some_and(Ordering::is_gt),
            Op::Gte => compare(left, right).is_some_and(Ordering::is_ge),
            Op::Lt => compare(left, right).is_some_and(Ordering::is_lt),
            Op::Lte => compare(left, right).is_some_and(Ordering::is_le),
            Op::In => self.member_of(left, right)?,
            Op::NotIn => !self.member_of(left, right)?,
            Op::Contains => contains(left, right),
            Op::StartsWith => both_str(left, right).is_some_and(|(l, r)| l.starts_with(r)),
            Op::EndsWith => both_str(left, right).is_some_and(|(l, r)| l.ends_with(r)),
            Op::Matches => self.matches(left, right, regex)?,
            Op::Exists => exists(path, left),
            Op::NotExists => !exists(path, left),
            Op::Empty => is_empty(left),
            Op::NotEmpty => !is_empty(left),
        })
    }

    /// `in`: `left` is an element of the array `list`. A null list (e.g. a template over a missing
    /// path) is an empty list; anything else that is not an array is an error.
    fn member_of(&self, left: &Value, list: &Value) -> Result<bool, RenderError> {
        match list {
            Value::Array(items) => Ok(items.iter().any(|item| json_eq(left, item))),
            Value::Null => Ok(false),
            _ => Err(RenderError::Condition(format!(
                "{}: the value is not an array",
                self.summary()
            ))),
        }
    }

    fn matches(
        &self,
        left: &Value,
        pattern: &Value,
        precompiled: Option<&Regex>,
    ) -> Result<bool, RenderError> {
        let Value::String(text) = left else {
            return Ok(false);
        };
        if let Some(regex) = precompiled {
            return Ok(regex.is_match(text));
        }
        match pattern {
            Value::String(p) => build_regex(p).map(|re| re.is_match(text)).map_err(|e| {
                // The rendered pattern may contain a secret: quote it only when none is referenced.
                let shown = if self.secret_refs().is_empty() {
                    format!(" {}", Value::from(p.as_str()))
                } else {
                    String::new()
                };
                RenderError::Condition(format!(
                    "{}: invalid regular expression{shown}: {e}",
                    self.summary()
                ))
            }),
            Value::Null => Ok(false),
            _ => Err(RenderError::Condition(format!(
                "{}: the pattern is not a string",
                self.summary()
            ))),
        }
    }
}

fn compile_at(v: &Value, at: &str, issues: &mut Vec<Issue>) -> Option<Condition> {
    let Some(obj) = v.as_object() else {
        issues.push(Issue::new(at, SHAPE_HELP));
        return None;
    };
    let Some(group) = ["all", "any", "not"]
        .into_iter()
        .find(|k| obj.contains_key(*k))
    else {
        return compile_test(obj, at, issues);
    };
    let before = issues.len();
    for key in obj.keys().filter(|k| *k != group) {
        issues.push(Issue::new(
            key_path(at, key),
            format!("unexpected key '{key}' next to '{group}' ({SHAPE_HELP})"),
        ));
    }
    let inner_at = key_path(at, group);
    let inner = &obj[group];
    let compiled = if group == "not" {
        compile_at(inner, &inner_at, issues).map(|c| Condition::Not(Box::new(c)))
    } else {
        compile_list(inner, &inner_at, group, issues).map(|items| match group {
            "all" => Condition::All(items),
            _ => Condition::Any(items),
        })
    };
    compiled.filter(|_| issues.len() == before)
}

fn compile_list(
    v: &Value,
    at: &str,
    group: &str,
    issues: &mut Vec<Issue>,
) -> Option<Vec<Condition>> {
    let Some(items) = v.as_array() else {
        issues.push(Issue::new(
            at,
            format!("'{group}' must be an array of conditions"),
        ));
        return None;
    };
    if items.is_empty() {
        issues.push(Issue::new(
            at,
            format!("'{group}' needs at least one condition"),
        ));
        return None;
    }
    // Compile every item (no short-circuit) so that every problem is reported.
    let compiled: Vec<_> = items
        .iter()
        .enumerate()
        .map(|(i, item)| compile_at(item, &index_path(at, i), issues))
        .collect();
    compiled.into_iter().collect()
}

fn compile_test(
    obj: &serde_json::Map<String, Value>,
    at: &str,
    issues: &mut Vec<Issue>,
) -> Option<Condition> {
    let before = issues.len();
    for key in obj
        .keys()
        .filter(|k| !["path", "op", "value"].contains(&k.as_str()))
    {
        issues.push(Issue::new(
            key_path(at, key),
            format!("unknown key '{key}' ({SHAPE_HELP})"),
        ));
    }
    let path = compile_path(obj.get("path"), &key_path(at, "path"), issues);
    let op = compile_op(obj.get("op"), &key_path(at, "op"), issues);
    let value_at = key_path(at, "value");
    let (value, regex) = match (op, obj.get("value")) {
        (Some(op), None) if op.takes_value() => {
            issues.push(Issue::new(
                &value_at,
                format!("required for op '{}'", op.name()),
            ));
            (None, None)
        }
        (Some(op), Some(_)) if !op.takes_value() => {
            issues.push(Issue::new(
                &value_at,
                format!("op '{}' takes no value", op.name()),
            ));
            (None, None)
        }
        (Some(op), Some(v)) => compile_value(op, v, &value_at, issues),
        // Without a valid op the value cannot be checked; still report template errors in it.
        (None, Some(v)) => {
            if let Err(found) = TemplateValue::compile(v) {
                issues.extend(found.into_iter().map(|i| i.under(&value_at)));
            }
            (None, None)
        }
        (_, None) => (None, None),
    };
    let (path, op) = (path?, op?);
    (issues.len() == before).then_some(Condition::Test {
        path,
        op,
        value,
        regex,
    })
}

fn compile_path(v: Option<&Value>, at: &str, issues: &mut Vec<Issue>) -> Option<JsonPath> {
    let problem = match v {
        None => "required: a JSONPath such as $.input.status".to_string(),
        Some(Value::String(s)) => match JsonPath::compile(s) {
            Ok(path) => return Some(path),
            Err(e) => e,
        },
        Some(_) => "must be a string: a JSONPath such as $.input.status".to_string(),
    };
    issues.push(Issue::new(at, problem));
    None
}

fn compile_op(v: Option<&Value>, at: &str, issues: &mut Vec<Issue>) -> Option<Op> {
    if let Some(op) = v.and_then(Value::as_str).and_then(Op::parse) {
        return Some(op);
    }
    let valid = Op::ALL.map(|op| op.name()).join(", ");
    let problem = match v {
        None => format!("required: one of {valid}"),
        Some(Value::String(s)) => format!("unknown op '{s}'; valid ops: {valid}"),
        Some(_) => format!("must be a string: one of {valid}"),
    };
    issues.push(Issue::new(at, problem));
    None
}

/// Compile `value`; a literal is checked against what `op` needs now rather than failing every run.
fn compile_value(
    op: Op,
    v: &Value,
    at: &str,
    issues: &mut Vec<Issue>,
) -> (Option<TemplateValue>, Option<Regex>) {
    let value = match TemplateValue::compile(v) {
        Ok(value) => value,
        Err(found) => {
            issues.extend(found.into_iter().map(|i| i.under(at)));
            return (None, None);
        }
    };
    let Some(literal) = value.as_literal() else {
        return (Some(value), None);
    };
    let mut regex = None;
    let problem = match (op, literal) {
        (Op::Matches, Value::String(p)) => match build_regex(p) {
            Ok(re) => {
                regex = Some(re);
                None
            }
            Err(e) => Some(format!(
                "invalid regular expression {}: {e}",
                Value::from(p.as_str())
            )),
        },
        (Op::Matches, _) => Some("op 'matches' needs a regular expression (a string)".to_string()),
        (Op::In | Op::NotIn, v) if !v.is_array() => Some(format!(
            "op '{}' needs an array value, e.g. [\"a\", \"b\"]",
            op.name()
        )),
        (Op::Gt | Op::Gte | Op::Lt | Op::Lte, v) if !v.is_number() && !v.is_string() => {
            Some(format!("op '{}' compares numbers or strings", op.name()))
        }
        (Op::StartsWith | Op::EndsWith, v) if !v.is_string() => {
            Some(format!("op '{}' needs a string value", op.name()))
        }
        _ => None,
    };
    if let Some(problem) = problem {
        issues.push(Issue::new(at, problem));
    }
    (Some(value), regex)
}

/// Build a size-limited regex. The error is one line (the regex crate's spans several) and does not
/// repeat the pattern, which callers show only when it cannot hold a secret.
fn build_regex(pattern: &str) -> Result<Regex, String> {
    RegexBuilder::new(pattern)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|e| {
            let text = e.to_string();
            let reason = text
                .lines()
                .find_map(|l| l.strip_prefix("error: "))
                .unwrap_or(text.trim());
            reason.to_string()
        })
}

/// JSON equality, except that numbers compare by value (1 == 1.0), also inside arrays and objects.
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => num_cmp(x, y) == Some(Ordering::Equal),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_eq(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, a)| y.get(k).is_some_and(|b| json_eq(a, b)))
        }
        _ => a == b,
    }
}

/// Order for gt/gte/lt/lte: numbers numerically, strings lexicographically. A number and a numeric
/// string compare as numbers, because webhook payloads often carry amounts as strings ("12.50").
/// Anything else is unordered, so the comparison is false.
fn compare(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => num_cmp(x, y),
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        (Value::Number(x), Value::String(y)) => num_cmp(x, &parse_number(y)?),
        (Value::String(x), Value::Number(y)) => num_cmp(&parse_number(x)?, y),
        _ => None,
    }
}

fn num_cmp(a: &Number, b: &Number) -> Option<Ordering> {
    match (a.as_i64(), b.as_i64(), a.as_u64(), b.as_u64()) {
        (Some(x), Some(y), _, _) => Some(x.cmp(&y)),
        (_, _, Some(x), Some(y)) => Some(x.cmp(&y)),
        _ => a.as_f64()?.partial_cmp(&b.as_f64()?),
    }
}

fn parse_number(s: &str) -> Option<Number> {
    let s = s.trim();
    s.parse::<i64>()
        .map(Number::from)
        .ok()
        .or_else(|| s.parse::<f64>().ok().and_then(Number::from_f64))
}

/// `contains`: substring of a string, element of an array, key of an object.
fn contains(haystack: &Value, needle: &Value) -> bool {
    match (haystack, needle) {
        (Value::String(h), Value::String(n)) => h.contains(n.as_str()),
        (Value::Array(items), n) => items.iter().any(|item| json_eq(item, n)),
        (Value::Object(map), Value::String(key)) => map.contains_key(key),
        _ => false,
    }
}

fn both_str<'a>(a: &'a Value, b: &'a Value) -> Option<(&'a str, &'a str)> {
    Some((a.as_str()?, b.as_str()?))
}

/// A singular path exists when it selects a non-null value; any other path when it matches something.
fn exists(path: &JsonPath, result: &Value) -> bool {
    if path.is_singular() {
        !result.is_null()
    } else {
        result.as_array().is_some_and(|matches| !matches.is_empty())
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::template::NoSecrets;

    struct OneSecret;

    impl SecretSource for OneSecret {
        fn secret(&self, name: &str) -> Option<String> {
            (name == "STATUS").then(|| "paid".to_string())
        }
    }

    fn ctx() -> Value {
        json!({"input": {
            "status": "paid", "total": 150, "price": "12.50", "ratio": 1.0, "email": "ada@example.com",
            "tags": ["vip", "eu"], "meta": {"source": "web"}, "none": null, "blank": "", "list": [], "obj": {},
            "items": [{"qty": 1}, {"qty": 5}], "allowed": ["paid", "refunded"], "re": "^pa"
        }})
    }

    fn eval(c: Value) -> bool {
        let cond = Condition::compile(&c).unwrap_or_else(|e| panic!("{c}: {e:?}"));
        cond.eval(&ctx(), &NoSecrets)
            .unwrap_or_else(|e| panic!("{c}: {e}"))
    }

    fn test(path: &str, op: &str, value: Value) -> bool {
        eval(json!({"path": path, "op": op, "value": value}))
    }

    fn check(path: &str, op: &str) -> bool {
        eval(json!({"path": path, "op": op}))
    }

    fn issues(c: Value) -> Vec<String> {
        Condition::compile(&c)
            .unwrap_err()
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn op_names_round_trip() {
        for op in Op::ALL {
            assert_eq!(Op::parse(op.name()), Some(op));
        }
        assert_eq!(Op::parse("equals"), None);
    }

    #[test]
    fn eq_and_ne() {
        assert!(test("$.input.status", "eq", json!("paid")));
        assert!(!test("$.input.status", "eq", json!("PAID")));
        assert!(
            test("$.input.total", "eq", json!(150.0)),
            "numbers compare numerically"
        );
        assert!(test("$.input.ratio", "eq", json!(1)));
        assert!(test("$.input.tags", "eq", json!(["vip", "eu"])));
        assert!(test("$.input.meta", "eq", json!({"source": "web"})));
        assert!(test("$.input.none", "eq", json!(null)));
        assert!(
            test("$.input.missing", "eq", json!(null)),
            "a missing path is null"
        );
        assert!(
            !test("$.input.total", "eq", json!("150")),
            "eq is JSON equality: no string/number coercion"
        );
        assert!(test("$.input.status", "ne", json!("open")));
        assert!(!test("$.input.total", "ne", json!(150)));
        assert!(
            test("$.input.items[*].qty", "eq", json!([1, 5])),
            "a non-singular path compares as its array"
        );
    }

    #[test]
    fn ordering() {
        assert!(test("$.input.total", "gt", json!(100)));
        assert!(!test("$.input.total", "gt", json!(150)));
        assert!(test("$.input.total", "gte", json!(150)));
        assert!(test("$.input.total", "lt", json!(150.5)));
        assert!(test("$.input.total", "lte", json!(150)));
        assert!(
            test("$.input.status", "gt", json!("open")),
            "strings compare lexicographically"
        );
        assert!(
            test("$.input.price", "gt", json!(12)),
            "a numeric string compares with a number"
        );
        assert!(test("$.input.total", "lt", json!("200")));
        assert!(
            !test("$.input.status", "gt", json!(1)),
            "unordered values are never greater"
        );
        assert!(!test("$.input.status", "lt", json!(1)));
        assert!(!test("$.input.missing", "lt", json!(1)));
        assert!(!test("$.input.tags", "gte", json!("a")));
    }

    #[test]
    fn membership_and_text() {
        assert!(test("$.input.status", "in", json!(["open", "paid"])));
        assert!(!test("$.input.status", "in", json!(["open"])));
        assert!(test("$.input.total", "in", json!([150.0])));
        assert!(test("$.input.status", "not_in", json!(["open"])));
        assert!(!test("$.input.status", "not_in", json!(["paid"])));
        assert!(test("$.input.status", "in", json!("{{ $.input.allowed }}")));
        assert!(
            !test("$.input.status", "in", json!("{{ $.input.nothing }}")),
            "a null list is empty"
        );

        assert!(test("$.input.email", "contains", json!("@example")));
        assert!(test("$.input.tags", "contains", json!("vip")));
        assert!(test("$.input.meta", "contains", json!("source")));
        assert!(!test("$.input.total", "contains", json!(1)));
        assert!(test("$.input.email", "starts_with", json!("ada@")));
        assert!(!test("$.input.total", "starts_with", json!("1")));
        assert!(test("$.input.email", "ends_with", json!(".com")));
        assert!(!test("$.input.email", "ends_with", json!(".org")));
    }

    #[test]
    fn regex_matching() {
        assert!(test(
            "$.input.email",
            "matches",
            json!(r"^[a-z]+@example\.com$")
        ));
        assert!(test("$.input.status", "matches", json!("(?i)PAID")));
        assert!(!test("$.input.email", "matches", json!("^bob")));
        assert!(
            !test("$.input.total", "matches", json!("1")),
            "non-strings never match"
        );
        assert!(
            test("$.input.status", "matches", json!("{{ $.input.re }}")),
            "templated patterns work"
        );
        let c =
            Condition::compile(&json!({"path": "$.input.status", "op": "matches", "value": "x+"}))
                .unwrap();
        assert!(
            matches!(c, Condition::Test { regex: Some(_), .. }),
            "literal patterns are precompiled"
        );
        let bad = Condition::compile(
            &json!({"path": "$.input.status", "op": "matches", "value": "{{ $.input.bad }}"}),
        )
        .unwrap()
        .eval(&json!({"input": {"status": "x", "bad": "(x"}}), &NoSecrets)
        .unwrap_err();
        let secret_bad = Condition::compile(
            &json!({"path": "$.input.status", "op": "matches", "value": "{{ secrets.STATUS }}("}),
        )
        .unwrap()
        .eval(&ctx(), &OneSecret)
        .unwrap_err();
        assert!(!secret_bad.to_string().contains("paid"), "{secret_bad}");
        assert!(
            bad.to_string()
                .contains("invalid regular expression \"(x\": unclosed group"),
            "{bad}"
        );
    }

    #[test]
    fn presence() {
        assert!(check("$.input.status", "exists"));
        assert!(
            check("$.input.list", "exists"),
            "an empty array is still there"
        );
        assert!(!check("$.input.none", "exists"));
        assert!(!check("$.input.missing", "exists"));
        assert!(check("$.input.missing", "not_exists"));
        assert!(check("$.input.items[?@.qty > 2]", "exists"));
        assert!(check("$.input.items[?@.qty > 9]", "not_exists"));

        for empty in [
            "$.input.none",
            "$.input.missing",
            "$.input.blank",
            "$.input.list",
            "$.input.obj",
        ] {
            assert!(check(empty, "empty"), "{empty}");
            assert!(!check(empty, "not_empty"), "{empty}");
        }
        for full in [
            "$.input.status",
            "$.input.tags",
            "$.input.meta",
            "$.input.total",
        ] {
            assert!(check(full, "not_empty"), "{full}");
        }
    }

    #[test]
    fn combinators() {
        let paid = json!({"path": "$.input.status", "op": "eq", "value": "paid"});
        let big = json!({"path": "$.input.total", "op": "gt", "value": 1000});
        assert!(!eval(json!({"all": [paid, big]})));
        assert!(eval(json!({"any": [paid, big]})));
        assert!(eval(json!({"not": big})));
        assert!(eval(json!({"all": [paid, {"any": [big, {"not": big}]}]})));
        assert!(!eval(json!({"not": {"any": [paid]}})));
    }

    #[test]
    fn templated_values_and_secrets() {
        let c = Condition::compile(&json!({"any": [
            {"path": "$.input.status", "op": "eq", "value": "{{ secrets.STATUS }}"},
            {"not": {"path": "$.input.email", "op": "ends_with", "value": "@{{ $.input.meta.source }}.com"}}
        ]}))
        .unwrap();
        assert_eq!(c.secret_refs(), ["STATUS"]);
        assert!(c.eval(&ctx(), &OneSecret).unwrap());
        assert_eq!(
            c.eval(&ctx(), &NoSecrets).unwrap_err(),
            RenderError::MissingSecret("STATUS".into())
        );
        assert!(test(
            "$.input.total",
            "gt",
            json!("{{ $.input.items[1].qty }}")
        ));
        assert!(test("$.input.total", "eq", json!("{{ $.input.total }}")));
    }

    #[test]
    fn summaries() {
        let c = Condition::compile(&json!({"all": [
            {"path": "$.input.status", "op": "eq", "value": "paid"},
            {"not": {"path": "$.input.email", "op": "exists"}},
            {"any": [{"path": "$.input.total", "op": "in", "value": [1, "{{ $.x }}"]}]}
        ]}))
        .unwrap();
        assert_eq!(
            c.summary(),
            r#"all($.input.status eq "paid", not($.input.email exists), any($.input.total in [1,"{{ $.x }}"]))"#
        );
    }

    #[test]
    fn compile_errors_are_located() {
        assert_eq!(issues(json!("x")), [SHAPE_HELP]);
        assert_eq!(
            issues(json!({"path": "$.a", "op": "equals", "value": 1})),
            [
                "op: unknown op 'equals'; valid ops: eq, ne, gt, gte, lt, lte, in, not_in, contains, starts_with, ends_with, matches, exists, not_exists, empty, not_empty"
            ]
        );
        assert_eq!(
            issues(json!({"all": [
                {"path": "$.a", "op": "exists"},
                {"path": "a", "op": "eq", "value": 1, "extra": true},
                {"not": {"path": "$.a", "op": "gt"}},
                {"any": []},
                {"path": "$.a", "op": "in", "value": "x"},
                {"path": "$.a", "op": "matches", "value": "(x"},
                {"path": "$.a", "op": "exists", "value": 1},
                {"path": "$.a", "op": "eq", "value": {"k": "{{ $.b | nope }}"}},
                {"op": 3},
                {"all": [], "path": "$.a"}
            ]})),
            [
                "all[1].extra: unknown key 'extra' (a condition is {\"path\", \"op\", \"value\"}, {\"all\": [..]}, {\"any\": [..]} or {\"not\": {..}})",
                "all[1].path: a JSONPath must start with '$' (e.g. $.input.id), got 'a'",
                "all[2].not.value: required for op 'gt'",
                "all[3].any: 'any' needs at least one condition",
                "all[4].value: op 'in' needs an array value, e.g. [\"a\", \"b\"]",
                "all[5].value: invalid regular expression \"(x\": unclosed group",
                "all[6].value: op 'exists' takes no value",
                "all[7].value.k: unknown pipe 'nope' (pipes: default(v), lower, upper, trim, json, length, number, string, base64, urlencode) in {{ $.b | nope }}",
                "all[8].path: required: a JSONPath such as $.input.status",
                "all[8].op: must be a string: one of eq, ne, gt, gte, lt, lte, in, not_in, contains, starts_with, ends_with, matches, exists, not_exists, empty, not_empty",
                "all[9].path: unexpected key 'path' next to 'all' (a condition is {\"path\", \"op\", \"value\"}, {\"all\": [..]}, {\"any\": [..]} or {\"not\": {..}})",
                "all[9].all: 'all' needs at least one condition",
            ]
        );
        assert_eq!(
            issues(json!({"any": {}})),
            ["any: 'any' must be an array of conditions"]
        );
        assert_eq!(
            issues(json!({"path": "$.a", "op": "gt", "value": true})),
            ["value: op 'gt' compares numbers or strings"]
        );
        assert_eq!(
            issues(json!({"path": "$.a", "op": "starts_with", "value": 1})),
            ["value: op 'starts_with' needs a string value"]
        );
        assert_eq!(
            issues(json!({"path": "$.a", "op": "matches", "value": 1})),
            ["value: op 'matches' needs a regular expression (a string)"]
        );
        assert_eq!(
            issues(json!({"path": "$.a", "op": "eq"})),
            ["value: required for op 'eq'"]
        );
    }
}
