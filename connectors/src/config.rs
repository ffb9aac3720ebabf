//! Parsing a step's configuration into its typed config, with the location of the problem.

use flows_engine::{
    Issue,
    issue::key_path,
    template::{Template, TemplateValue},
};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

/// Deserialize `config` into `T` (which should deny unknown fields).
pub(crate) fn parse<T: DeserializeOwned>(config: &Map<String, Value>) -> Result<T, Vec<Issue>> {
    serde_path_to_error::deserialize(Value::Object(config.clone())).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { String::new() } else { path };
        vec![Issue::new(path, e.into_inner().to_string())]
    })
}

/// Collects compiled templates and the problems met while compiling them.
#[derive(Default)]
pub(crate) struct Compiler {
    pub issues: Vec<Issue>,
}

impl Compiler {
    pub fn template(&mut self, at: &str, src: &str) -> Template {
        Template::compile(src).unwrap_or_else(|e| {
            self.issues.push(Issue::new(at, e));
            Template::compile("").expect("empty template")
        })
    }

    pub fn value(&mut self, at: &str, v: &Value) -> TemplateValue {
        TemplateValue::compile(v).unwrap_or_else(|issues| {
            self.issues.extend(issues.into_iter().map(|i| i.under(at)));
            TemplateValue::compile(&Value::Null).expect("null template")
        })
    }

    /// A map of string templates (headers, query parameters).
    pub fn string_map(&mut self, at: &str, map: &Map<String, Value>) -> Vec<(String, Template)> {
        map.iter()
            .filter_map(|(k, v)| match v {
                Value::String(s) => Some((k.clone(), self.template(&key_path(at, k), s))),
                Value::Number(_) | Value::Bool(_) => {
                    Some((k.clone(), self.template(&key_path(at, k), &v.to_string())))
                }
                _ => {
                    self.issues
                        .push(Issue::new(key_path(at, k), "must be a string"));
                    None
                }
            })
            .collect()
    }

    pub fn finish<T>(self, value: T) -> Result<T, Vec<Issue>> {
        if self.issues.is_empty() {
            Ok(value)
        } else {
            Err(self.issues)
        }
    }
}

pub(crate) fn secret_names<'a>(templates: impl IntoIterator<Item = &'a Template>) -> Vec<String> {
    templates
        .into_iter()
        .flat_map(|t| t.secret_refs())
        .map(str::to_string)
        .collect()
}
