//! The example flows live in `flows/` as JSON and their sample events in `samples/`; this crate
//! only holds the tests that keep them valid and runnable.

#[cfg(test)]
mod tests {
    use std::{fs, path::Path};

    use flows_engine::{Trigger, ValidateCx, validate::prepare};
    use serde_json::Value;

    fn read_dir(dir: &str) -> Vec<(String, Value)> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
        let mut out: Vec<(String, Value)> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .map(|p| {
                let stem = p.file_stem().unwrap().to_string_lossy().into_owned();
                let doc = serde_json::from_str(&fs::read_to_string(&p).unwrap())
                    .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
                (stem, doc)
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    #[test]
    fn every_example_flow_is_valid_and_named_after_its_file() {
        let registry = connectors::registry(connectors::HttpOptions::default());
        let cx = ValidateCx {
            registry: &registry,
            secret_exists: Some(&|_: &str| false),
        };
        let flows = read_dir("flows");
        assert!(flows.len() >= 4);
        for (file, doc) in &flows {
            let flow =
                prepare(doc, &cx).unwrap_or_else(|issues| panic!("{file}.json: {issues:#?}"));
            assert_eq!(&flow.flow.name, file, "file name matches the flow name");
            assert!(
                flow.flow.title.is_some() && flow.flow.description.is_some(),
                "{file}: title and description explain the scenario"
            );
            for target in flow.chained_flows() {
                assert!(
                    flows.iter().any(|(n, _)| *n == target),
                    "{file} chains to missing example '{target}'"
                );
            }
        }
    }

    #[test]
    fn every_webhook_example_has_a_sample_event() {
        let registry = connectors::registry(connectors::HttpOptions::default());
        let cx = ValidateCx {
            registry: &registry,
            secret_exists: None,
        };
        let samples: Vec<String> = read_dir("samples").into_iter().map(|(n, _)| n).collect();
        for (file, doc) in read_dir("flows") {
            let flow = prepare(&doc, &cx).unwrap();
            if matches!(flow.flow.trigger, Trigger::Webhook(_)) {
                assert!(
                    samples.contains(&file),
                    "examples/samples/{file}.json is missing"
                );
            }
        }
    }
}
