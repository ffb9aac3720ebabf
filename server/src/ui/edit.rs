//! Editing a flow document as a graph: add a step after a node, insert one between two nodes,
//! replace, delete (its dependants take over its dependencies), move in the list. Each operation
//! works on resolved dependencies and then writes `after` back only where it differs from the
//! implicit default (the step listed before; the trigger for the first step), so documents stay
//! as terse as a person would write them. Key order and unknown fields are kept.

use serde_json::{Map, Value};

/// `after` as the flow format resolves it: the listed ids, else the previous step, else the
/// trigger (empty).
fn resolved(steps: &[Value]) -> Vec<Vec<String>> {
    steps
        .iter()
        .enumerate()
        .map(|(i, s)| match s.get("after") {
            Some(Value::Array(ids)) => ids
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect(),
            _ if i == 0 => Vec::new(),
            _ => steps[i - 1]
                .get("id")
                .and_then(Value::as_str)
                .map(|s| vec![s.to_string()])
                .unwrap_or_default(),
        })
        .collect()
}

fn id_of(step: &Value) -> String {
    step.get("id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// Write the steps back with their dependencies, `after` only where needed.
fn write_back(doc: &mut Value, items: Vec<(Value, Vec<String>)>) {
    let mut out = Vec::with_capacity(items.len());
    let mut prev: Option<String> = None;
    for (mut step, deps) in items {
        let implicit: Vec<String> = prev.iter().cloned().collect();
        if let Some(obj) = step.as_object_mut() {
            if deps == implicit {
                obj.remove("after");
            } else {
                let list = Value::Array(deps.into_iter().map(Value::String).collect());
                if obj.contains_key("after") {
                    obj.insert("after".into(), list);
                } else {
                    insert_after_key(obj, "type", "after", list);
                }
            }
        }
        prev = Some(id_of(&step));
        out.push(step);
    }
    doc["steps"] = Value::Array(out);
}

/// Insert `key` right after `anchor` (for readable documents), or at the end.
fn insert_after_key(obj: &mut Map<String, Value>, anchor: &str, key: &str, value: Value) {
    let old = std::mem::take(obj);
    let mut placed = false;
    for (k, v) in old {
        let is_anchor = k == anchor;
        obj.insert(k, v);
        if is_anchor && !placed {
            obj.insert(key.to_string(), value.clone());
            placed = true;
        }
    }
    if !placed {
        obj.insert(key.to_string(), value);
    }
}

fn items(doc: &Value) -> Vec<(Value, Vec<String>)> {
    let steps = doc
        .get("steps")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let deps = resolved(&steps);
    steps.into_iter().zip(deps).collect()
}

/// The resolved dependencies of every step, by id (for forms).
pub fn deps_of(doc: &Value, id: &str) -> Vec<String> {
    items(doc)
        .into_iter()
        .find(|(s, _)| id_of(s) == id)
        .map(|(_, d)| d)
        .unwrap_or_default()
}

/// Replace step `original` by `step` with dependencies `deps`; a changed id is renamed in the
/// other steps' dependencies.
pub fn replace_step(doc: &Value, original: &str, step: Value, deps: Vec<String>) -> Value {
    let new_id = id_of(&step);
    let mut list = items(doc);
    for (s, d) in list.iter_mut() {
        if id_of(s) == original {
            *s = step.clone();
            *d = deps.clone();
        } else if new_id != original {
            for dep in d.iter_mut() {
                if dep == original {
                    *dep = new_id.clone();
                }
            }
        }
    }
    let mut out = doc.clone();
    write_back(&mut out, list);
    out
}

/// Add `step` after `after` (`None`: the trigger), or between `after` and `before`.
pub fn insert_step(doc: &Value, step: Value, after: Option<&str>, before: Option<&str>) -> Value {
    let new_id = id_of(&step);
    let deps: Vec<String> = after.map(|a| vec![a.to_string()]).unwrap_or_default();
    let mut list = items(doc);
    let position = match before {
        Some(b) => {
            for (_, d) in list.iter_mut().filter(|(s, _)| id_of(s) == b) {
                match after.and_then(|a| d.iter().position(|x| x == a)) {
                    Some(i) => d[i] = new_id.clone(),
                    None if !d.contains(&new_id) => d.push(new_id.clone()),
                    None => {}
                }
            }
            list.iter()
                .position(|(s, _)| id_of(s) == b)
                .unwrap_or(list.len())
        }
        None => list.len(),
    };
    list.insert(position, (step, deps));
    let mut out = doc.clone();
    write_back(&mut out, list);
    out
}

/// Delete step `id`; the steps that ran after it run after its own dependencies instead.
pub fn delete_step(doc: &Value, id: &str) -> Value {
    let mut list = items(doc);
    let Some(pos) = list.iter().position(|(s, _)| id_of(s) == id) else {
        return doc.clone();
    };
    let (_, its_deps) = list.remove(pos);
    for (_, d) in list.iter_mut() {
        if let Some(i) = d.iter().position(|x| x == id) {
            d.remove(i);
            for (k, dep) in its_deps.iter().enumerate() {
                if !d.contains(dep) {
                    d.insert(i + k.min(d.len() - i), dep.clone());
                }
            }
        }
    }
    let mut out = doc.clone();
    write_back(&mut out, list);
    out
}

/// Move step `id` up (`-1`) or down (`+1`) in the list; dependencies are unchanged.
pub fn move_step(doc: &Value, id: &str, delta: i64) -> Value {
    let mut list = items(doc);
    if let Some(pos) = list.iter().position(|(s, _)| id_of(s) == id) {
        let to = pos as i64 + delta;
        if to >= 0 && (to as usize) < list.len() {
            let item = list.remove(pos);
            list.insert(to as usize, item);
        }
    }
    let mut out = doc.clone();
    write_back(&mut out, list);
    out
}

/// A step id for a new step of `kind` that no step uses yet.
pub fn fresh_id(doc: &Value, kind: &str) -> String {
    let taken: Vec<String> = items(doc).iter().map(|(s, _)| id_of(s)).collect();
    let base = match kind {
        "webhook_out" => "send",
        other => other,
    };
    if !taken.iter().any(|t| t == base) {
        return base.to_string();
    }
    (2..)
        .map(|n| format!("{base}{n}"))
        .find(|c| !taken.contains(c))
        .expect("an unused id")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn doc(steps: Value) -> Value {
        json!({"hookflow": 1, "name": "f", "trigger": {"type": "manual"}, "steps": steps})
    }

    fn shape(d: &Value) -> Vec<(String, Option<Value>)> {
        d["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| (id_of(s), s.get("after").cloned()))
            .collect()
    }

    #[test]
    fn add_after_the_last_step_stays_implicit() {
        let d = doc(json!([{"id": "a", "type": "transform", "output": 1}]));
        let d = insert_step(
            &d,
            json!({"id": "b", "type": "transform", "output": 2}),
            Some("a"),
            None,
        );
        assert_eq!(shape(&d), vec![("a".into(), None), ("b".into(), None)]);
    }

    #[test]
    fn add_after_an_inner_step_branches() {
        let d = doc(json!([{"id": "a", "type": "x"}, {"id": "b", "type": "x"}]));
        let d = insert_step(&d, json!({"id": "c", "type": "x"}), Some("a"), None);
        assert_eq!(shape(&d)[2], ("c".into(), Some(json!(["a"]))));
        let d = insert_step(&d, json!({"id": "t", "type": "x"}), None, None);
        assert_eq!(shape(&d)[3], ("t".into(), Some(json!([]))));
    }

    #[test]
    fn insert_between_rewires_the_child() {
        let d = doc(json!([{"id": "a", "type": "x"}, {"id": "b", "type": "x"}]));
        let d = insert_step(&d, json!({"id": "m", "type": "x"}), Some("a"), Some("b"));
        assert_eq!(
            shape(&d),
            vec![("a".into(), None), ("m".into(), None), ("b".into(), None)]
        );
        assert_eq!(d["steps"][1]["type"], "x");
    }

    #[test]
    fn delete_reconnects_and_rename_follows() {
        let d = doc(
            json!([{"id": "a", "type": "x"}, {"id": "b", "type": "x"}, {"id": "c", "type": "x", "after": ["b"]}, {"id": "z", "type": "x", "after": ["a"]}]),
        );
        let d2 = delete_step(&d, "b");
        assert_eq!(
            shape(&d2),
            vec![
                ("a".into(), None),
                ("c".into(), None),
                ("z".into(), Some(json!(["a"])))
            ]
        );
        let d3 = replace_step(&d, "a", json!({"id": "first", "type": "x"}), vec![]);
        assert_eq!(shape(&d3)[3], ("z".into(), Some(json!(["first"]))));
        let d4 = move_step(&d, "z", -3);
        assert_eq!(shape(&d4)[0], ("z".into(), Some(json!(["a"]))));
        assert_eq!(shape(&d4)[1], ("a".into(), Some(json!([]))));
        assert_eq!(fresh_id(&d, "x"), "x");
        assert_eq!(
            fresh_id(&doc(json!([{"id": "filter"}])), "filter"),
            "filter2"
        );
    }
}
