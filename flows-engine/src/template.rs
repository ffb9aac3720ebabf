//! String templates: `{{ $.input.email | lower }}` and `{{ secrets.TOKEN }}` inside any string of a
//! step's configuration (SPEC §1.1). Templates are data: a JSONPath or a secret name, then a chain of
//! fixed pipes. Nothing user-supplied is ever evaluated as code.
//!
//! Everything is parsed once by `compile` (when the flow is saved); `render` only walks the result.

use std::borrow::Cow;
use std::fmt::Write as _;

use base64::prelude::*;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::{Map, Number, Value};

use crate::context::Ctx;
use crate::issue::{Issue, index_path, key_path};
use crate::path::JsonPath;

/// Where secrets come from during rendering. Implementations remember which values they handed out
/// (for redaction).
pub trait SecretSource: Send + Sync {
    fn secret(&self, name: &str) -> Option<String>;
}

/// For rendering without secrets (tests, validation): every secret is missing.
pub struct NoSecrets;

impl SecretSource for NoSecrets {
    fn secret(&self, _name: &str) -> Option<String> {
        None
    }
}

#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum RenderError {
    #[error("secret '{0}' is not set")]
    MissingSecret(String),
    /// A pipe could not handle its input; the message names the pipe and the expression.
    #[error("{0}")]
    Pipe(String),
    /// A condition could not be evaluated (e.g. a templated regex is invalid); the message names it.
    #[error("{0}")]
    Condition(String),
}

/// One compiled string that may contain `{{ expr }}` segments.
#[derive(Debug, Clone)]
pub struct Template {
    src: String,
    kind: Kind,
}

#[derive(Debug, Clone)]
enum Kind {
    /// No `{{ }}` at all: renders to the source string.
    Literal,
    /// Exactly one `{{ expr }}` and nothing else: renders to the expression's JSON value.
    Single(Expr),
    /// Text and expressions: renders to a string.
    Mixed(Vec<Part>),
}

#[derive(Debug, Clone)]
enum Part {
    Text(String),
    Expr(Expr),
}

/// One `{{ source | pipe | ... }}`.
#[derive(Debug, Clone)]
struct Expr {
    /// The whole `{{ ... }}` as written, for error messages.
    text: String,
    source: Source,
    pipes: Vec<Pipe>,
}

#[derive(Debug, Clone)]
enum Source {
    Path(JsonPath),
    Secret(String),
}

#[derive(Debug, Clone, PartialEq)]
enum Pipe {
    Default(Value),
    Lower,
    Upper,
    Trim,
    Json,
    Length,
    Number,
    String,
    Base64,
    UrlEncode,
}

const PIPE_HELP: &str =
    "default(v), lower, upper, trim, json, length, number, string, base64, urlencode";

impl Template {
    /// Parse `src`. Err says what is wrong and where, e.g. "unclosed '{{' at byte 5".
    pub fn compile(src: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut text_start = 0;
        while let Some(open) = src[text_start..].find("{{").map(|p| p + text_start) {
            let close = find_close(src, open)?;
            if open > text_start {
                parts.push(Part::Text(src[text_start..open].to_string()));
            }
            parts.push(Part::Expr(Expr::compile(&src[open..close + 2])?));
            text_start = close + 2;
        }
        if text_start < src.len() && !parts.is_empty() {
            parts.push(Part::Text(src[text_start..].to_string()));
        }
        let kind = match parts.len() {
            0 => Kind::Literal,
            1 => match parts.pop() {
                Some(Part::Expr(expr)) => Kind::Single(expr),
                _ => unreachable!("a lone part holds an expression"),
            },
            _ => Kind::Mixed(parts),
        };
        Ok(Template {
            src: src.to_string(),
            kind,
        })
    }

    /// Render over the run context. A lone `{{ expr }}` yields its JSON value; mixed text yields a string.
    pub fn render<'c>(
        &self,
        ctx: impl Into<Ctx<'c>>,
        secrets: &dyn SecretSource,
    ) -> Result<Value, RenderError> {
        let ctx = ctx.into();
        match &self.kind {
            Kind::Literal => Ok(Value::String(self.src.clone())),
            Kind::Single(expr) => expr.eval(ctx, secrets).map(Cow::into_owned),
            Kind::Mixed(parts) => self.render_mixed(parts, ctx, secrets).map(Value::String),
        }
    }

    /// Render to a string: strings as-is, null as "", other values as compact JSON.
    pub fn render_string<'c>(
        &self,
        ctx: impl Into<Ctx<'c>>,
        secrets: &dyn SecretSource,
    ) -> Result<String, RenderError> {
        let ctx = ctx.into();
        match &self.kind {
            Kind::Literal => Ok(self.src.clone()),
            Kind::Single(expr) => Ok(into_text(expr.eval(ctx, secrets)?.into_owned())),
            Kind::Mixed(parts) => self.render_mixed(parts, ctx, secrets),
        }
    }

    /// True when the string holds no `{{ }}` at all.
    pub fn is_literal(&self) -> bool {
        matches!(self.kind, Kind::Literal)
    }

    pub fn source(&self) -> &str {
        &self.src
    }

    /// Names of the secrets referenced (`secrets.NAME`), in order of appearance, repeats included.
    pub fn secret_refs(&self) -> Vec<&str> {
        self.exprs()
            .filter_map(|e| match &e.source {
                Source::Secret(name) => Some(name.as_str()),
                Source::Path(_) => None,
            })
            .collect()
    }

    /// The JSONPaths referenced, in order of appearance.
    pub fn paths(&self) -> Vec<&JsonPath> {
        self.exprs()
            .filter_map(|e| match &e.source {
                Source::Path(path) => Some(path),
                Source::Secret(_) => None,
            })
            .collect()
    }

    fn exprs(&self) -> impl Iterator<Item = &Expr> {
        let (single, parts) = match &self.kind {
            Kind::Literal => (None, &[][..]),
            Kind::Single(expr) => (Some(expr), &[][..]),
            Kind::Mixed(parts) => (None, parts.as_slice()),
        };
        let in_parts = parts.iter().filter_map(|p| match p {
            Part::Expr(e) => Some(e),
            Part::Text(_) => None,
        });
        single.into_iter().chain(in_parts)
    }

    fn render_mixed(
        &self,
        parts: &[Part],
        ctx: Ctx<'_>,
        secrets: &dyn SecretSource,
    ) -> Result<String, RenderError> {
        let mut out = String::with_capacity(self.src.len() + 16);
        for part in parts {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Expr(expr) => push_text(&mut out, &*expr.eval(ctx, secrets)?),
            }
        }
        Ok(out)
    }
}

/// Byte index of the `}}` closing the `{{` at `open`. Quoted strings are skipped (a JSONPath may
/// compare with '}}'), and so are balanced braces (a `default({"a": {}})` argument).
fn find_close(src: &str, open: usize) -> Result<usize, String> {
    let bytes = src.as_bytes();
    let (mut i, mut depth, mut quote, mut quote_at) = (open + 2, 0usize, None, 0);
    while i < bytes.len() {
        let b = bytes[i];
        match quote {
            Some(_) if b == b'\\' => i += 1,
            Some(q) if b == q => quote = None,
            Some(_) => {}
            None => match b {
                b'\'' | b'"' => (quote, quote_at) = (Some(b), i),
                b'{' => depth += 1,
                b'}' if depth > 0 => depth -= 1,
                b'}' if bytes.get(i + 1) == Some(&b'}') => return Ok(i),
                _ => {}
            },
        }
        i += 1;
    }
    match quote {
        Some(q) => Err(format!(
            "unclosed quote {} at byte {quote_at} in '{{{{' at byte {open}",
            q as char
        )),
        None => Err(format!("unclosed '{{{{' at byte {open}")),
    }
}

/// Split an expression on `|`, but not inside quotes, brackets, parentheses or braces, nor on `||`
/// (the JSONPath filter "or").
fn split_pipes(inner: &str) -> Vec<&str> {
    let bytes = inner.as_bytes();
    let (mut parts, mut start, mut depth, mut quote, mut i) = (Vec::new(), 0, 0i32, None, 0);
    while i < bytes.len() {
        let b = bytes[i];
        match quote {
            Some(_) if b == b'\\' => i += 1,
            Some(q) if b == q => quote = None,
            Some(_) => {}
            None => match b {
                b'\'' | b'"' => quote = Some(b),
                b'(' | b'[' | b'{' => depth += 1,
                b')' | b']' | b'}' => depth -= 1,
                b'|' if bytes.get(i + 1) == Some(&b'|') => i += 1,
                b'|' if depth <= 0 => {
                    parts.push(inner[start..i].trim());
                    start = i + 1;
                }
                _ => {}
            },
        }
        i += 1;
    }
    parts.push(inner[start..].trim());
    parts
}

impl Expr {
    /// `text` is the whole `{{ ... }}`.
    fn compile(text: &str) -> Result<Expr, String> {
        let inner = &text[2..text.len() - 2];
        let mut parts = split_pipes(inner).into_iter();
        let source = match parts.next() {
            Some(s) if !s.is_empty() => Source::compile(s)?,
            _ => return Err(format!("empty expression {text}")),
        };
        let pipes = parts
            .map(|p| Pipe::compile(p).map_err(|e| format!("{e} in {text}")))
            .collect::<Result<_, _>>()?;
        Ok(Expr {
            text: text.to_string(),
            source,
            pipes,
        })
    }

    /// The expression's value, borrowed from `ctx` when no pipe changed it (mixed text only reads it).
    fn eval<'a>(
        &self,
        ctx: Ctx<'a>,
        secrets: &dyn SecretSource,
    ) -> Result<Cow<'a, Value>, RenderError> {
        // A borrowed path result also spares a clone when a pipe only reads it (length, json, ...).
        let mut value = match &self.source {
            Source::Path(path) => path.eval_in(ctx),
            Source::Secret(name) => Cow::Owned(Value::String(
                secrets
                    .secret(name)
                    .ok_or_else(|| RenderError::MissingSecret(name.clone()))?,
            )),
        };
        // Values derived from a secret are never quoted in error messages.
        let reveal = matches!(self.source, Source::Path(_));
        for pipe in &self.pipes {
            let piped = pipe.apply(value, reveal).map_err(|problem| {
                RenderError::Pipe(format!(
                    "pipe '{}': {problem} in {}",
                    pipe.name(),
                    self.text
                ))
            })?;
            value = Cow::Owned(piped);
        }
        Ok(value)
    }
}

impl Source {
    fn compile(s: &str) -> Result<Source, String> {
        if s.starts_with('$') {
            return JsonPath::compile(s)
                .map(Source::Path)
                .map_err(|e| format!("bad JSONPath '{s}': {e}"));
        }
        if let Some(name) = s.strip_prefix("secrets.") {
            return if is_secret_name(name) {
                Ok(Source::Secret(name.to_string()))
            } else {
                Err(format!(
                    "bad secret name '{name}' (letters, digits and _, not starting with a digit)"
                ))
            };
        }
        let hint = match JsonPath::compile(&format!("$.{s}")) {
            Ok(_) => format!(" (did you mean '$.{s}'?)"),
            Err(_) => String::new(),
        };
        Err(format!(
            "'{s}' is not an expression: use a JSONPath starting with '$' or secrets.NAME{hint}"
        ))
    }
}

fn is_secret_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl Pipe {
    fn compile(s: &str) -> Result<Pipe, String> {
        if s.is_empty() {
            return Err("empty pipe".into());
        }
        let (name, arg) = match s.split_once('(') {
            Some((name, rest)) => match rest.strip_suffix(')') {
                Some(arg) => (name.trim(), arg.trim()),
                None => return Err(format!("pipe '{s}' is missing its closing ')'")),
            },
            None => (s, ""),
        };
        let pipe = match name {
            "default" if arg.is_empty() => {
                return Err("pipe 'default' needs a value, e.g. default('') or default(0)".into());
            }
            "default" => return parse_literal(arg).map(Pipe::Default),
            "lower" => Pipe::Lower,
            "upper" => Pipe::Upper,
            "trim" => Pipe::Trim,
            "json" => Pipe::Json,
            "length" => Pipe::Length,
            "number" => Pipe::Number,
            "string" => Pipe::String,
            "base64" => Pipe::Base64,
            "urlencode" => Pipe::UrlEncode,
            _ => return Err(format!("unknown pipe '{name}' (pipes: {PIPE_HELP})")),
        };
        if !arg.is_empty() {
            return Err(format!("pipe '{name}' takes no argument"));
        }
        Ok(pipe)
    }

    fn name(&self) -> &'static str {
        match self {
            Pipe::Default(_) => "default",
            Pipe::Lower => "lower",
            Pipe::Upper => "upper",
            Pipe::Trim => "trim",
            Pipe::Json => "json",
            Pipe::Length => "length",
            Pipe::Number => "number",
            Pipe::String => "string",
            Pipe::Base64 => "base64",
            Pipe::UrlEncode => "urlencode",
        }
    }

    /// Apply to `v`. Err is the problem alone; the caller adds the pipe and expression.
    fn apply(&self, v: Cow<'_, Value>, reveal: bool) -> Result<Value, String> {
        let text = |f: fn(&str) -> String| match v.as_ref() {
            Value::String(s) => Ok(Value::String(f(s))),
            Value::Null => Ok(Value::Null),
            other => Err(format!(
                "expected a string, got {}",
                describe(other, reveal)
            )),
        };
        match self {
            Pipe::Default(d) if v.is_null() => Ok(d.clone()),
            Pipe::Default(_) => Ok(v.into_owned()),
            Pipe::Lower => text(str::to_lowercase),
            Pipe::Upper => text(str::to_uppercase),
            Pipe::Trim => text(|s| s.trim().to_string()),
            Pipe::Json => Ok(Value::String(v.to_string())),
            Pipe::Length => match v.as_ref() {
                Value::String(s) => Ok(s.chars().count().into()),
                Value::Array(a) => Ok(a.len().into()),
                Value::Object(o) => Ok(o.len().into()),
                Value::Null => Ok(0.into()),
                other => Err(format!(
                    "expected a string, array or object, got {}",
                    describe(other, reveal)
                )),
            },
            Pipe::Number => to_number(&v)
                .map(Value::Number)
                .ok_or_else(|| format!("cannot convert {} to a number", describe(&v, reveal))),
            Pipe::String => Ok(Value::String(match v {
                Cow::Owned(v) => into_text(v),
                Cow::Borrowed(v) => text_of(v).into_owned(),
            })),
            Pipe::Base64 => Ok(Value::String(
                BASE64_STANDARD.encode(text_of(&v).as_bytes()),
            )),
            Pipe::UrlEncode => Ok(Value::String(
                utf8_percent_encode(&text_of(&v), URL_RESERVED).to_string(),
            )),
        }
    }
}

/// Everything but RFC 3986 unreserved characters (ALPHA / DIGIT / "-" / "." / "_" / "~") is encoded.
const URL_RESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The argument of `default(...)`: a JSON literal, or a 'single-quoted' string.
fn parse_literal(arg: &str) -> Result<Value, String> {
    let json = match arg.strip_prefix('\'').and_then(|a| a.strip_suffix('\'')) {
        Some(inner) => single_to_double_quoted(inner),
        None => arg.to_string(),
    };
    serde_json::from_str(&json).map_err(|_| {
        format!("pipe 'default' needs one JSON value such as \"x\", 'x', 0, true, null or [], got '{arg}'")
    })
}

/// 'it\'s' → "it's": JSON escapes keep their meaning, `\'` becomes `'` and a bare `"` is escaped.
fn single_to_double_quoted(inner: &str) -> String {
    let mut out = String::with_capacity(inner.len() + 2);
    out.push('"');
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('\'') => out.push('\''),
                Some(next) => {
                    out.push('\\');
                    out.push(next);
                }
                None => out.push('\\'),
            },
            '"' => out.push_str("\\\""),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn to_number(v: &Value) -> Option<Number> {
    match v {
        Value::Number(n) => Some(n.clone()),
        Value::Bool(b) => Some(Number::from(u8::from(*b))),
        Value::String(s) => {
            let s = s.trim();
            s.parse::<i64>()
                .map(Number::from)
                .or_else(|_| s.parse::<u64>().map(Number::from))
                .ok()
                .or_else(|| s.parse::<f64>().ok().and_then(Number::from_f64))
        }
        _ => None,
    }
}

/// A short description of a value for error messages; the value itself only when `reveal`.
fn describe(v: &Value, reveal: bool) -> String {
    let kind = match v {
        Value::Null => return "null".into(),
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => return "an array".into(),
        Value::Object(_) => return "an object".into(),
    };
    if !reveal {
        return kind.into();
    }
    let shown = v.to_string();
    match shown.char_indices().nth(40) {
        Some((cut, _)) => format!("{kind} {}…", &shown[..cut]),
        None => format!("{kind} {shown}"),
    }
}

/// Append the text form of `v`. Null inserts nothing — deliberately: "Hi {{ $.name }}" with no name
/// reads better as "Hi " than as "Hi null".
fn push_text(out: &mut String, v: &Value) {
    match v {
        Value::String(s) => out.push_str(s),
        Value::Null => {}
        other => {
            let _ = write!(out, "{other}"); // Display for Value is compact JSON
        }
    }
}

/// The text form of `v` (see [`into_text`]), borrowed when `v` is a string.
fn text_of(v: &Value) -> Cow<'_, str> {
    match v {
        Value::String(s) => Cow::Borrowed(s),
        Value::Null => Cow::Borrowed(""),
        other => Cow::Owned(other.to_string()),
    }
}

/// The text form of `v`: strings as-is, null as "", anything else as compact JSON.
fn into_text(v: Value) -> String {
    match v {
        Value::String(s) => s,
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// A JSON value whose strings are templates, compiled once.
#[derive(Debug, Clone)]
pub enum TemplateValue {
    /// A subtree without any `{{ }}`: rendering clones it.
    Literal(Value),
    String(Template),
    Array(Vec<TemplateValue>),
    /// Keys are plain text (not templates), kept in document order.
    Object(Vec<(String, TemplateValue)>),
}

impl TemplateValue {
    /// Compile every string in `v`. Err lists every problem, located relative to `v` ("" is `v` itself).
    pub fn compile(v: &Value) -> Result<TemplateValue, Vec<Issue>> {
        let mut issues = Vec::new();
        let compiled = compile_value(v, "", &mut issues);
        if issues.is_empty() {
            Ok(compiled)
        } else {
            Err(issues)
        }
    }

    pub fn render<'c>(
        &self,
        ctx: impl Into<Ctx<'c>>,
        secrets: &dyn SecretSource,
    ) -> Result<Value, RenderError> {
        let ctx = ctx.into();
        match self {
            TemplateValue::Literal(v) => Ok(v.clone()),
            TemplateValue::String(t) => t.render(ctx, secrets),
            TemplateValue::Array(items) => items.iter().map(|i| i.render(ctx, secrets)).collect(),
            TemplateValue::Object(fields) => {
                let mut map = Map::with_capacity(fields.len());
                for (key, value) in fields {
                    map.insert(key.clone(), value.render(ctx, secrets)?);
                }
                Ok(Value::Object(map))
            }
        }
    }

    pub fn secret_refs(&self) -> Vec<&str> {
        let mut out = Vec::new();
        self.visit(&mut |t| out.extend(t.secret_refs()));
        out
    }

    pub fn paths(&self) -> Vec<&JsonPath> {
        let mut out = Vec::new();
        self.visit(&mut |t| out.extend(t.paths()));
        out
    }

    /// True when nothing in the value holds `{{ }}`.
    pub fn is_literal(&self) -> bool {
        matches!(self, TemplateValue::Literal(_))
    }

    /// The value when it holds no template (renders to itself), without cloning.
    pub fn as_literal(&self) -> Option<&Value> {
        match self {
            TemplateValue::Literal(v) => Some(v),
            _ => None,
        }
    }

    /// The JSON this was compiled from (templates as their source text), e.g. for summaries.
    pub fn to_source(&self) -> Value {
        match self {
            TemplateValue::Literal(v) => v.clone(),
            TemplateValue::String(t) => Value::String(t.source().to_string()),
            TemplateValue::Array(items) => items.iter().map(TemplateValue::to_source).collect(),
            TemplateValue::Object(fields) => fields
                .iter()
                .map(|(k, v)| (k.clone(), v.to_source()))
                .collect(),
        }
    }

    fn visit<'a>(&'a self, f: &mut impl FnMut(&'a Template)) {
        match self {
            TemplateValue::Literal(_) => {}
            TemplateValue::String(t) => f(t),
            TemplateValue::Array(items) => items.iter().for_each(|i| i.visit(f)),
            TemplateValue::Object(fields) => fields.iter().for_each(|(_, v)| v.visit(f)),
        }
    }
}

fn compile_value(v: &Value, at: &str, issues: &mut Vec<Issue>) -> TemplateValue {
    let compiled = match v {
        Value::String(s) => match Template::compile(s) {
            Ok(t) if t.is_literal() => TemplateValue::Literal(v.clone()),
            Ok(t) => TemplateValue::String(t),
            Err(message) => {
                issues.push(Issue::new(at, message));
                TemplateValue::Literal(Value::Null)
            }
        },
        Value::Array(items) => TemplateValue::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, item)| compile_value(item, &index_path(at, i), issues))
                .collect(),
        ),
        Value::Object(map) => TemplateValue::Object(
            map.iter()
                .map(|(k, item)| (k.clone(), compile_value(item, &key_path(at, k), issues)))
                .collect(),
        ),
        scalar => return TemplateValue::Literal(scalar.clone()),
    };
    // A container without templates renders faster as one clone.
    let all_literal = match &compiled {
        TemplateValue::Array(items) => items.iter().all(TemplateValue::is_literal),
        TemplateValue::Object(fields) => fields.iter().all(|(_, f)| f.is_literal()),
        _ => false,
    };
    if all_literal {
        TemplateValue::Literal(v.clone())
    } else {
        compiled
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use serde_json::json;

    use super::*;

    struct Secrets(HashMap<&'static str, &'static str>);

    impl SecretSource for Secrets {
        fn secret(&self, name: &str) -> Option<String> {
            self.0.get(name).map(|s| s.to_string())
        }
    }

    fn ctx() -> Value {
        json!({
            "input": {"email": "  Ada@Example.COM ", "total": "12.50", "count": 3, "name": "Ada",
                      "tags": ["a", "b"], "obj": {"k": 1, "j": 2}, "none": null, "flag": true,
                      "items": [{"sku": "x", "qty": 2}, {"sku": "y", "qty": 5}]},
            "steps": {"shape": {"order": 42}}
        })
    }

    fn render(src: &str) -> Value {
        Template::compile(src)
            .unwrap_or_else(|e| panic!("{src}: {e}"))
            .render(&ctx(), &NoSecrets)
            .unwrap()
    }

    fn render_err(src: &str) -> String {
        Template::compile(src)
            .unwrap()
            .render(&ctx(), &NoSecrets)
            .unwrap_err()
            .to_string()
    }

    fn compile_err(src: &str) -> String {
        Template::compile(src).expect_err(src)
    }

    #[test]
    fn literal_strings_render_as_themselves() {
        let t = Template::compile("plain text } { }}").unwrap();
        assert!(t.is_literal());
        assert_eq!(
            t.render(&ctx(), &NoSecrets).unwrap(),
            json!("plain text } { }}")
        );
        assert_eq!(t.source(), "plain text } { }}");
        assert!(Template::compile("").unwrap().is_literal());
    }

    #[test]
    fn a_lone_expression_yields_the_json_value() {
        assert_eq!(render("{{ $.input.count }}"), json!(3));
        assert_eq!(render("{{$.input.obj}}"), json!({"k": 1, "j": 2}));
        assert_eq!(render("{{   $.input.tags\n }}"), json!(["a", "b"]));
        assert_eq!(render("{{ $.steps.shape.order }}"), json!(42));
        assert!(!Template::compile("{{ $.input }}").unwrap().is_literal());
    }

    #[test]
    fn mixed_text_yields_a_string() {
        assert_eq!(
            render("Order {{ $.steps.shape.order }} for {{ $.input.name }}"),
            json!("Order 42 for Ada")
        );
        assert_eq!(
            render("tags={{ $.input.tags }} obj={{$.input.obj}}"),
            json!(r#"tags=["a","b"] obj={"k":1,"j":2}"#)
        );
        assert_eq!(
            render(" {{ $.input.count }}"),
            json!(" 3"),
            "surrounding text makes it a string"
        );
        assert_eq!(
            render("{{ $.input.count }}{{ $.input.count }}"),
            json!("33")
        );
        assert_eq!(
            render("[{{ $.input.none }}]"),
            json!("[]"),
            "null inserts nothing"
        );
        assert_eq!(render("x{{ $.input.flag }}"), json!("xtrue"));
    }

    #[test]
    fn missing_paths_yield_null_and_several_matches_an_array() {
        assert_eq!(render("{{ $.input.nope.deeper }}"), Value::Null);
        assert_eq!(render("{{ $.input.items[*].sku }}"), json!(["x", "y"]));
        assert_eq!(render("{{ $.input.items[?@.qty > 3].sku }}"), json!(["y"]));
        assert_eq!(render("{{ $..nothing }}"), json!([]));
    }

    #[test]
    fn filter_or_and_quoted_bars_are_not_pipes() {
        assert_eq!(
            render("{{ $.input.items[?@.qty > 3 || @.sku == 'x'].sku }}"),
            json!(["x", "y"])
        );
        assert_eq!(
            render("{{ $.input.items[?@.sku == 'a|b'].sku | length }}"),
            json!(0)
        );
        assert_eq!(
            render("{{ $.input.nope | default('a | b') }}"),
            json!("a | b")
        );
        assert_eq!(
            render("{{ $.input.items[?@.sku == '}}'] }}"),
            json!([]),
            "'}}' inside quotes does not close"
        );
        assert_eq!(
            render("{{ $.input.nope | default({\"a\": {}}) }}"),
            json!({"a": {}})
        );
    }

    #[test]
    fn every_pipe() {
        assert_eq!(
            render("{{ $.input.email | trim | lower }}"),
            json!("ada@example.com")
        );
        assert_eq!(render("{{ $.input.name | upper }}"), json!("ADA"));
        assert_eq!(
            render("{{ $.input.none | lower }}"),
            Value::Null,
            "null passes through text pipes"
        );
        assert_eq!(
            render("{{ $.input.obj | json }}"),
            json!(r#"{"k":1,"j":2}"#)
        );
        assert_eq!(render("{{ $.input.name | json }}"), json!(r#""Ada""#));
        assert_eq!(render("{{ $.input.name | length }}"), json!(3));
        assert_eq!(render("{{ $.input.tags | length }}"), json!(2));
        assert_eq!(render("{{ $.input.obj | length }}"), json!(2));
        assert_eq!(render("{{ $.input.none | length }}"), json!(0));
        assert_eq!(render("{{ $.input.total | number }}"), json!(12.5));
        assert_eq!(render("{{ $.input.count | number }}"), json!(3));
        assert_eq!(render("{{ $.input.flag | number }}"), json!(1));
        assert_eq!(render("{{ $.input.count | string }}"), json!("3"));
        assert_eq!(render("{{ $.input.none | string }}"), json!(""));
        assert_eq!(render("{{ $.input.tags | string }}"), json!(r#"["a","b"]"#));
        assert_eq!(render("{{ $.input.name | base64 }}"), json!("QWRh"));
        assert_eq!(render("{{ $.input.count | base64 }}"), json!("Mw=="));
        assert_eq!(
            render("{{ $.input.email | trim | urlencode }}"),
            json!("Ada%40Example.COM")
        );
        assert_eq!(
            render("{{ $.input.nope | default('a b/c-d_e.f~g') | urlencode }}"),
            json!("a%20b%2Fc-d_e.f~g")
        );
        assert_eq!(render("{{ $.input.none | default(0) }}"), json!(0));
        assert_eq!(render("{{ $.input.nope | default([]) }}"), json!([]));
        assert_eq!(render("{{ $.input.nope | default(\"x\") }}"), json!("x"));
        assert_eq!(
            render("{{ $.input.nope | default('it\\'s \"q\"') }}"),
            json!("it's \"q\"")
        );
        assert_eq!(
            render("{{ $.input.name | default('x') }}"),
            json!("Ada"),
            "default keeps non-null"
        );
        assert_eq!(
            render("{{ $.input.nope | default(true) | string }}"),
            json!("true")
        );
        assert_eq!(render("{{ $.input.nope | default(null) }}"), Value::Null);
        assert_eq!(render("{{ $.input.name | lower() }}"), json!("ada"));
    }

    #[test]
    fn pipe_errors_name_the_pipe_and_the_expression() {
        assert_eq!(
            render_err("{{ $.input.name | number }}"),
            r#"pipe 'number': cannot convert a string "Ada" to a number in {{ $.input.name | number }}"#
        );
        assert_eq!(
            render_err("n: {{ $.input.count | lower }}"),
            "pipe 'lower': expected a string, got a number 3 in {{ $.input.count | lower }}"
        );
        assert!(render_err("{{ $.input.tags | trim }}").contains("got an array"));
        assert!(
            render_err("{{ $.input.flag | length }}")
                .contains("expected a string, array or object")
        );
        assert!(render_err("{{ $.input.none | number }}").contains("cannot convert null"));
    }

    #[test]
    fn secrets() {
        let secrets = Secrets([("TOKEN", "t0k"), ("_b2", "x")].into());
        let t = Template::compile("Bearer {{ secrets.TOKEN }} {{ $.input.name }}{{secrets._b2}}")
            .unwrap();
        assert_eq!(
            t.render(&ctx(), &secrets).unwrap(),
            json!("Bearer t0k Adax")
        );
        assert_eq!(t.secret_refs(), ["TOKEN", "_b2"]);
        assert_eq!(
            t.paths().iter().map(|p| p.as_str()).collect::<Vec<_>>(),
            ["$.input.name"]
        );
        assert_eq!(
            t.render(&ctx(), &NoSecrets).unwrap_err(),
            RenderError::MissingSecret("TOKEN".into())
        );
        assert_eq!(
            t.render(&ctx(), &NoSecrets).unwrap_err().to_string(),
            "secret 'TOKEN' is not set"
        );
        let t = Template::compile("{{ secrets.TOKEN | base64 }}").unwrap();
        assert_eq!(t.render(&ctx(), &secrets).unwrap(), json!("dDBr"));
        // A secret's value never appears in an error message.
        let err = Template::compile("{{ secrets.TOKEN | number }}")
            .unwrap()
            .render(&ctx(), &secrets)
            .unwrap_err();
        assert!(!err.to_string().contains("t0k"), "{err}");
    }

    #[test]
    fn compile_errors() {
        assert_eq!(compile_err("abc {{ $.a"), "unclosed '{{' at byte 4");
        assert_eq!(
            compile_err("{{ $.a[?@.b == 'x }}"),
            "unclosed quote ' at byte 15 in '{{' at byte 0"
        );
        assert!(compile_err("{{ $.a[ }}").starts_with("bad JSONPath '$.a[': syntax error"));
        assert_eq!(
            compile_err("{{ $.a | lowr }}"),
            format!("unknown pipe 'lowr' (pipes: {PIPE_HELP}) in {{{{ $.a | lowr }}}}")
        );
        assert!(compile_err("{{ $.a | lower(1) }}").starts_with("pipe 'lower' takes no argument"));
        assert!(compile_err("{{ $.a | default }}").starts_with("pipe 'default' needs a value"));
        assert!(compile_err("{{ $.a | default() }}").starts_with("pipe 'default' needs a value"));
        assert!(compile_err("{{ $.a | default(1, 2) }}").contains("needs one JSON value"));
        assert!(compile_err("{{ $.a | default(abc) }}").contains("needs one JSON value"));
        assert!(compile_err("{{ $.a | default('x' }}").contains("missing its closing ')'"));
        assert!(compile_err("{{ $.a | }}").starts_with("empty pipe in"));
        assert!(compile_err("{{ $.a || lower }}").starts_with("bad JSONPath"));
        assert_eq!(compile_err("x {{ }}"), "empty expression {{ }}");
        assert_eq!(
            compile_err("{{ input.email }}"),
            "'input.email' is not an expression: use a JSONPath starting with '$' or secrets.NAME (did you mean '$.input.email'?)"
        );
        assert!(compile_err("{{ secrets.9x }}").starts_with("bad secret name '9x'"));
        assert!(compile_err("{{ secrets.a-b }}").starts_with("bad secret name 'a-b'"));
        assert!(compile_err("{{ $.input.email lower }}").contains("unexpected space"));
    }

    #[test]
    fn render_string_forms() {
        let r = |src: &str| {
            Template::compile(src)
                .unwrap()
                .render_string(&ctx(), &NoSecrets)
                .unwrap()
        };
        assert_eq!(r("plain"), "plain");
        assert_eq!(r("{{ $.input.name }}"), "Ada");
        assert_eq!(r("{{ $.input.none }}"), "");
        assert_eq!(r("{{ $.input.obj }}"), r#"{"k":1,"j":2}"#);
        assert_eq!(r("a{{ $.input.count }}"), "a3");
    }

    #[test]
    fn template_values() {
        let src = json!({
            "z": "{{ $.input.count }}",
            "a": ["x", "{{ $.input.name | upper }}", {"deep": "{{ secrets.K }}"}],
            "lit": {"n": 1, "s": "plain"},
            "num": 5
        });
        let tv = TemplateValue::compile(&src).unwrap();
        assert!(!tv.is_literal());
        let secrets = Secrets([("K", "v")].into());
        let out = tv.render(&ctx(), &secrets).unwrap();
        assert_eq!(
            out,
            json!({"z": 3, "a": ["x", "ADA", {"deep": "v"}], "lit": {"n": 1, "s": "plain"}, "num": 5})
        );
        let keys: Vec<_> = out.as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys, ["z", "a", "lit", "num"], "key order is kept");
        assert_eq!(tv.secret_refs(), ["K"]);
        assert_eq!(tv.paths().len(), 2);
        assert_eq!(tv.to_source(), src);
        match &tv {
            TemplateValue::Object(fields) => {
                assert!(fields[2].1.is_literal(), "template-free subtrees collapse")
            }
            other => panic!("{other:?}"),
        }

        let lit = TemplateValue::compile(&json!({"a": [1, "b"]})).unwrap();
        assert!(lit.is_literal());
        assert_eq!(lit.as_literal(), Some(&json!({"a": [1, "b"]})));
        assert_eq!(
            lit.render(&Value::Null, &NoSecrets).unwrap(),
            json!({"a": [1, "b"]})
        );
    }

    #[test]
    fn template_value_errors_are_located() {
        let issues = TemplateValue::compile(&json!({
            "output": {"email": "{{ $.a | lowr }}", "ok": "{{ $.a }}"},
            "list": ["fine", "x", "{{ $.b"],
            "odd key": "{{ nope }}"
        }))
        .unwrap_err();
        let paths: Vec<_> = issues.iter().map(|i| i.path.as_str()).collect();
        assert_eq!(paths, ["output.email", "list[2]", "[\"odd key\"]"]);
        let root = TemplateValue::compile(&json!("{{ $.a[ }}")).unwrap_err();
        assert_eq!(root.len(), 1);
        assert_eq!(root[0].path, "");
    }
}
