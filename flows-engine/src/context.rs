//! The run context that templates and conditions read: `{trigger, input, steps, run}`. A running
//! step's context is held in parts and borrows the trigger from the run, so starting a step does
//! not copy the trigger (headers and body). A path that walks from one of the four keys by names
//! and indexes reads in place; any other (`$` alone, wildcards, filters, descendants) reads a
//! copy of the whole context, made once per step the first time such a path needs it.

use std::{borrow::Cow, sync::OnceLock};

use serde_json::{Map, Value};

/// What a template or condition is evaluated over.
#[derive(Clone, Copy)]
pub enum Ctx<'a> {
    /// A whole context document.
    Doc(&'a Value),
    /// A running step's context, in parts.
    Parts(Parts<'a>),
}

/// The parts of a running step's context.
#[derive(Clone, Copy)]
pub struct Parts<'a> {
    pub trigger: &'a Value,
    pub input: &'a Value,
    /// The outputs of the steps finished when this one started, by step id.
    pub steps: &'a Value,
    pub run: &'a Value,
    /// The whole context as one document, copied from the parts when a path first needs it.
    pub whole: &'a OnceLock<Value>,
}

impl<'a> From<&'a Value> for Ctx<'a> {
    fn from(doc: &'a Value) -> Self {
        Ctx::Doc(doc)
    }
}

impl<'a> Ctx<'a> {
    /// `$.input`.
    pub fn input(self) -> Cow<'a, Value> {
        match self {
            Ctx::Doc(doc) => doc
                .get("input")
                .map_or(Cow::Owned(Value::Null), Cow::Borrowed),
            Ctx::Parts(p) => Cow::Borrowed(p.input),
        }
    }

    /// The context as one document: the document itself, or the parts' copy (made once).
    pub fn to_doc(self) -> &'a Value {
        match self {
            Ctx::Doc(doc) => doc,
            Ctx::Parts(p) => p.whole.get_or_init(|| {
                Value::Object(Map::from_iter([
                    ("trigger".to_string(), p.trigger.clone()),
                    ("input".to_string(), p.input.clone()),
                    ("steps".to_string(), p.steps.clone()),
                    ("run".to_string(), p.run.clone()),
                ]))
            }),
        }
    }
}

impl<'a> Parts<'a> {
    /// The top-level member `key`; `None`: no such member, as in the whole document.
    pub(crate) fn member(self, key: &str) -> Option<&'a Value> {
        let part = match key {
            "trigger" => self.trigger,
            "input" => self.input,
            "run" => self.run,
            "steps" => self.steps,
            _ => return None,
        };
        Some(part)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::{path::JsonPath, template::NoSecrets, template::Template};

    /// Every kind of path reads the same from the parts as from the whole document.
    #[test]
    fn parts_read_like_the_whole_document() {
        let trigger = json!({"body": {"id": 7, "items": [{"sku": "a", "qty": 2}, {"sku": "b", "qty": 0}]},
                             "headers": {"x-k": "v"}});
        let input = json!({"status": "paid", "min": 1});
        let steps = json!({"shape": {"n": 3}});
        let run = json!({"id": "run_1", "flow": "f", "attempt": 1});
        let whole = OnceLock::new();
        let parts = Ctx::Parts(Parts {
            trigger: &trigger,
            input: &input,
            steps: &steps,
            run: &run,
            whole: &whole,
        });
        let doc = json!({"trigger": trigger, "input": input, "steps": steps, "run": run});
        for src in [
            "$",
            "$.trigger",
            "$.trigger.body.id",
            "$.trigger.body.items[1].sku",
            "$.trigger.body.items[-1].qty",
            "$.trigger.headers['x-k']",
            "$.input.status",
            "$.steps.shape.n",
            "$.steps.missing.n",
            "$.steps",
            "$.run.id",
            "$.nothing",
            "$[0]",
            "$.trigger.body.items[*].sku",
            "$..sku",
            "$.trigger.body.items[?@.qty >= $.input.min].sku",
            "$.*",
        ] {
            let path = JsonPath::compile(src).unwrap();
            assert_eq!(path.eval_in(parts), path.eval_in(Ctx::Doc(&doc)), "{src}");
            assert_eq!(*path.eval_in(Ctx::Doc(&doc)), path.eval(&doc), "{src}");
        }
        let t =
            Template::compile("{{ $.run.id }}: {{ $.trigger.body.items | length }} items").unwrap();
        assert_eq!(
            t.render(parts, &NoSecrets).unwrap(),
            json!("run_1: 2 items")
        );
        assert_eq!(parts.input().into_owned(), input);
        assert_eq!(*parts.to_doc(), doc);
        assert!(
            std::ptr::eq(parts.to_doc(), parts.to_doc()),
            "the whole document is copied once per step"
        );
    }

    /// A plain walk from a member borrows from the run instead of copying.
    #[test]
    fn member_walks_borrow() {
        let trigger = json!({"body": {"id": 7}});
        let null = Value::Null;
        let whole = OnceLock::new();
        let parts = Ctx::Parts(Parts {
            trigger: &trigger,
            input: &null,
            steps: &null,
            run: &null,
            whole: &whole,
        });
        let path = JsonPath::compile("$.trigger.body").unwrap();
        assert!(
            matches!(path.eval_in(parts), Cow::Borrowed(v) if std::ptr::eq(v, &trigger["body"]))
        );
        assert!(whole.get().is_none(), "no copy of the whole context");
    }
}
