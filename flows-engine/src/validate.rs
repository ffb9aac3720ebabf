//! Validation and preparation: one validator serves the CLI, the API and the UI. A valid flow
//! comes out prepared (templates and JSONPaths compiled, the step DAG resolved), so nothing is
//! parsed again per run.

use std::{
    collections::{BTreeSet, HashMap},
    sync::Arc,
};

use serde_json::Value;

use crate::{
    connector::{Registry, StepExec},
    flow::{Flow, Respond, Trigger, parse_flow_lenient},
    issue::{Issue, index_path, key_path},
};

/// What validation may consult besides the document.
pub struct ValidateCx<'a> {
    pub registry: &'a Registry,
    /// Whether a secret exists; `None` skips the check (e.g. validating files offline).
    pub secret_exists: Option<&'a (dyn Fn(&str) -> bool + Sync)>,
}

/// A valid flow, ready to run.
#[derive(Debug, Clone)]
pub struct PreparedFlow {
    pub flow: Flow,
    pub nodes: Vec<Node>,
}

/// One step of the DAG.
#[derive(Debug, Clone)]
pub struct Node {
    /// Indices of the steps this one runs after (empty: right after the trigger).
    pub deps: Vec<usize>,
    pub exec: Arc<dyn StepExec>,
}

impl PreparedFlow {
    pub fn name(&self) -> &str {
        &self.flow.name
    }

    /// Flows that this flow's steps chain to.
    pub fn chained_flows(&self) -> BTreeSet<String> {
        self.nodes
            .iter()
            .flat_map(|n| n.exec.chained_flows())
            .collect()
    }

    /// Every secret the flow references.
    pub fn secret_refs(&self) -> BTreeSet<String> {
        let mut refs: BTreeSet<String> = self
            .nodes
            .iter()
            .flat_map(|n| n.exec.secret_refs())
            .collect();
        refs.extend(trigger_secret_refs(&self.flow.trigger));
        refs
    }
}

/// Validate `doc` and prepare it, or return every problem found.
pub fn prepare(doc: &Value, cx: &ValidateCx<'_>) -> Result<PreparedFlow, Vec<Issue>> {
    let (flow, mut issues) = parse_flow_lenient(doc);
    let Some(flow) = flow else { return Err(issues) };

    let index: HashMap<&str, usize> = flow
        .steps
        .iter()
        .enumerate()
        .rev()
        .map(|(i, s)| (s.id.as_str(), i))
        .collect();
    for (i, step) in flow.steps.iter().enumerate() {
        if !step.id.is_empty() && index[step.id.as_str()] != i {
            issues.push(Issue::new(
                key_path(&index_path("steps", i), "id"),
                format!(
                    "duplicate step id '{}' (also used by steps[{}])",
                    step.id,
                    index[step.id.as_str()]
                ),
            ));
        }
    }

    let deps = resolve_deps(&flow, &index, &mut issues);
    if issues.iter().all(|i| !i.path.contains("after"))
        && let Some(cycle) = find_cycle(&deps)
    {
        let names: Vec<&str> = cycle.iter().map(|&i| flow.steps[i].id.as_str()).collect();
        issues.push(Issue::new(
            key_path(&index_path("steps", cycle[0]), "after"),
            format!("steps form a cycle: {}", names.join(" → ")),
        ));
    }

    let mut nodes = Vec::with_capacity(flow.steps.len());
    for (i, step) in flow.steps.iter().enumerate() {
        let at = index_path("steps", i);
        if step.kind.is_empty() {
            continue;
        }
        let Some(connector) = cx.registry.get(&step.kind) else {
            let kinds: Vec<&str> = cx.registry.kinds().collect();
            issues.push(Issue::new(
                key_path(&at, "type"),
                format!(
                    "unknown step type '{}' (expected one of: {})",
                    step.kind,
                    kinds.join(", ")
                ),
            ));
            continue;
        };
        match connector.prepare(&step.config) {
            Ok(exec) => {
                if let Some(exists) = cx.secret_exists {
                    for name in exec.secret_refs() {
                        if !exists(&name) {
                            let loc = locate_secret(&Value::Object(step.config.clone()), &name)
                                .unwrap_or_default();
                            issues.push(Issue::new(
                                crate::issue::join_path(&at, &loc),
                                format!("unknown secret '{name}'; set it first (hookflow secret set {name}, or PUT /api/secrets/{name})"),
                            ));
                        }
                    }
                }
                nodes.push(Node {
                    deps: deps[i].clone(),
                    exec,
                });
            }
            Err(problems) => issues.extend(problems.into_iter().map(|p| p.under(&at))),
        }
    }

    if let Some(exists) = cx.secret_exists {
        for name in trigger_secret_refs(&flow.trigger) {
            if !exists(&name) {
                issues.push(Issue::new(
                    "trigger",
                    format!("unknown secret '{name}'; set it first (hookflow secret set {name})"),
                ));
            }
        }
    }

    if issues.is_empty() {
        Ok(PreparedFlow { flow, nodes })
    } else {
        Err(issues)
    }
}

/// Each step's dependencies: its `after` ids, or the step listed before it.
fn resolve_deps(
    flow: &Flow,
    index: &HashMap<&str, usize>,
    issues: &mut Vec<Issue>,
) -> Vec<Vec<usize>> {
    flow.steps
        .iter()
        .enumerate()
        .map(|(i, step)| match &step.after {
            None if i == 0 => Vec::new(),
            None => vec![i - 1],
            Some(after) => {
                let mut deps = Vec::new();
                for (j, id) in after.iter().enumerate() {
                    let at = index_path(&key_path(&index_path("steps", i), "after"), j);
                    match index.get(id.as_str()) {
                        Some(&d) if d == i => issues.push(Issue::new(
                            at,
                            format!("step '{id}' cannot run after itself"),
                        )),
                        Some(&d) if !deps.contains(&d) => deps.push(d),
                        Some(_) => issues.push(Issue::new(at, format!("'{id}' is listed twice"))),
                        None => issues.push(Issue::new(at, format!("unknown step '{id}'"))),
                    }
                }
                deps
            }
        })
        .collect()
}

/// A cycle in the dependency graph, as step indices, if there is one.
fn find_cycle(deps: &[Vec<usize>]) -> Option<Vec<usize>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Active,
        Done,
    }
    fn visit(
        n: usize,
        deps: &[Vec<usize>],
        marks: &mut [Mark],
        stack: &mut Vec<usize>,
    ) -> Option<Vec<usize>> {
        marks[n] = Mark::Active;
        stack.push(n);
        for &d in &deps[n] {
            match marks[d] {
                Mark::Active => {
                    let start = stack.iter().position(|&s| s == d).unwrap_or(0);
                    let mut cycle = stack[start..].to_vec();
                    cycle.reverse();
                    cycle.push(cycle[0]);
                    return Some(cycle);
                }
                Mark::New => {
                    if let Some(c) = visit(d, deps, marks, stack) {
                        return Some(c);
                    }
                }
                Mark::Done => {}
            }
        }
        stack.pop();
        marks[n] = Mark::Done;
        None
    }
    let mut marks = vec![Mark::New; deps.len()];
    (0..deps.len()).find_map(|n| {
        if marks[n] == Mark::New {
            visit(n, deps, &mut marks, &mut Vec::new())
        } else {
            None
        }
    })
}

/// A cycle among flows chaining to each other (`webhook_out` with `flow`), as flow names.
pub fn find_chain_cycle(edges: &HashMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    let names: Vec<&String> = edges.keys().collect();
    let index: HashMap<&str, usize> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.as_str(), i))
        .collect();
    let deps: Vec<Vec<usize>> = names
        .iter()
        .map(|n| {
            edges[*n]
                .iter()
                .filter_map(|t| index.get(t.as_str()).copied())
                .collect()
        })
        .collect();
    find_cycle(&deps).map(|c| {
        // `find_cycle` walks dependencies backwards; chains read forwards.
        let mut names: Vec<String> = c.iter().map(|&i| names[i].clone()).collect();
        names.reverse();
        names
    })
}

fn trigger_secret_refs(trigger: &Trigger) -> Vec<String> {
    let mut refs = Vec::new();
    if let Trigger::Webhook(w) = trigger {
        if let Some(verify) = &w.verify {
            collect_secret_names(&Value::Object(verify.clone()), &mut refs);
        }
        if let Respond::Result { headers, body, .. } = &w.respond {
            refs.extend(
                headers
                    .iter()
                    .flat_map(|(_, t)| t.secret_refs())
                    .map(str::to_string),
            );
            if let Some(b) = body {
                refs.extend(b.secret_refs().into_iter().map(str::to_string));
            }
        }
    }
    refs
}

/// Secret names referenced as `secrets.NAME` anywhere in the strings of `v`.
fn collect_secret_names(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => {
            if let Ok(t) = crate::template::Template::compile(s) {
                out.extend(t.secret_refs().into_iter().map(str::to_string));
            }
        }
        Value::Array(a) => a.iter().for_each(|x| collect_secret_names(x, out)),
        Value::Object(m) => m.values().for_each(|x| collect_secret_names(x, out)),
        _ => {}
    }
}

/// The location of the first string in `v` that mentions `secrets.<name>`.
fn locate_secret(v: &Value, name: &str) -> Option<String> {
    fn walk(v: &Value, needle: &str, at: String) -> Option<String> {
        match v {
            Value::String(s) if s.contains(needle) => Some(at),
            Value::Array(a) => a
                .iter()
                .enumerate()
                .find_map(|(i, x)| walk(x, needle, index_path(&at, i))),
            Value::Object(m) => m
                .iter()
                .find_map(|(k, x)| walk(x, needle, key_path(&at, k))),
            _ => None,
        }
    }
    walk(v, &format!("secrets.{name}"), String::new())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use async_trait::async_trait;
    use serde_json::{Map, json};

    use super::*;
    use crate::{
        connector::{Connector, StepCx, StepFailure, StepOutcome},
        template::TemplateValue,
    };

    #[derive(Debug)]
    struct Echo(TemplateValue);

    #[async_trait]
    impl StepExec for Echo {
        async fn run(&self, cx: &StepCx<'_>) -> Result<StepOutcome, StepFailure> {
            self.0
                .render(cx.ctx, cx.secrets)
                .map(StepOutcome::done)
                .map_err(|e| StepFailure::new(e.to_string()))
        }
        fn summary(&self) -> String {
            "echo".into()
        }
        fn secret_refs(&self) -> Vec<String> {
            self.0
                .secret_refs()
                .into_iter()
                .map(str::to_string)
                .collect()
        }
    }

    struct EchoConnector;

    impl Connector for EchoConnector {
        fn kind(&self) -> &'static str {
            "transform"
        }
        fn describe(&self) -> &'static str {
            "test"
        }
        fn prepare(&self, config: &Map<String, Value>) -> Result<Arc<dyn StepExec>, Vec<Issue>> {
            let out = config.get("output").cloned().unwrap_or(Value::Null);
            TemplateValue::compile(&out)
                .map(|t| Arc::new(Echo(t)) as Arc<dyn StepExec>)
                .map_err(|is| is.into_iter().map(|i| i.under("output")).collect())
        }
    }

    fn registry() -> Registry {
        let mut r = Registry::new();
        r.register(Arc::new(EchoConnector));
        r
    }

    fn errors(doc: Value) -> Vec<String> {
        let reg = registry();
        let exists = |n: &str| n == "KNOWN";
        let cx = ValidateCx {
            registry: &reg,
            secret_exists: Some(&exists),
        };
        prepare(&doc, &cx)
            .err()
            .unwrap_or_default()
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    fn flow(steps: Value) -> Value {
        json!({"hookflow": 1, "name": "f", "trigger": {"type": "manual"}, "steps": steps})
    }

    #[test]
    fn default_after_is_the_previous_step() {
        let reg = registry();
        let cx = ValidateCx {
            registry: &reg,
            secret_exists: None,
        };
        let p = prepare(&flow(json!([{"id": "a", "type": "transform"}, {"id": "b", "type": "transform"}, {"id": "c", "type": "transform", "after": []}])), &cx).unwrap();
        let deps: Vec<_> = p.nodes.iter().map(|n| n.deps.clone()).collect();
        assert_eq!(deps, vec![vec![], vec![0], vec![]]);
    }

    #[test]
    fn reports_unknown_after_duplicates_types_templates_and_secrets() {
        let got = errors(flow(json!([
            {"id": "shape", "type": "transform"},
            {"id": "shape", "type": "transform"},
            {"id": "c", "type": "transform", "after": ["shap"]},
            {"id": "d", "type": "nope"},
            {"id": "e", "type": "transform", "output": {"x": "{{ $.a[ }}"}},
            {"id": "g", "type": "transform", "output": {"auth": "Bearer {{ secrets.MISSING }}", "ok": "{{ secrets.KNOWN }}"}}
        ])));
        for want in [
            "steps[1].id: duplicate step id 'shape'",
            "steps[2].after[0]: unknown step 'shap'",
            "steps[3].type: unknown step type 'nope'",
            "steps[4].output.x: ",
            "steps[5].output.auth: unknown secret 'MISSING'",
        ] {
            assert!(
                got.iter().any(|g| g.starts_with(want)),
                "missing {want:?} in {got:#?}"
            );
        }
        assert_eq!(got.len(), 5, "{got:#?}");
    }

    #[test]
    fn reports_cycles() {
        let got = errors(flow(json!([
            {"id": "a", "type": "transform", "after": ["c"]},
            {"id": "b", "type": "transform", "after": ["a"]},
            {"id": "c", "type": "transform", "after": ["b"]}
        ])));
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(got[0].contains("cycle"), "{got:?}");
    }

    #[test]
    fn finds_chain_cycles_between_flows() {
        let edges: HashMap<String, BTreeSet<String>> = [
            ("a".to_string(), ["b".to_string()].into()),
            ("b".to_string(), ["c".to_string()].into()),
            ("c".to_string(), ["a".to_string()].into()),
            ("d".to_string(), ["a".to_string()].into()),
        ]
        .into();
        let cycle = find_chain_cycle(&edges).unwrap();
        assert_eq!(cycle.len(), 4);
        assert_eq!(cycle.first(), cycle.last());
        let acyclic: HashMap<String, BTreeSet<String>> = [
            ("a".to_string(), ["b".to_string()].into()),
            ("b".to_string(), BTreeSet::new()),
        ]
        .into();
        assert!(find_chain_cycle(&acyclic).is_none());
    }
}
