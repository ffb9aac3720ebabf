//! `transform`: the rendered `output` template is the step's output.

use std::sync::Arc;

use async_trait::async_trait;
use flows_engine::{
    Connector, Issue, StepCx, StepExec, StepFailure, StepOutcome, template::TemplateValue,
};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::config::{self, Compiler};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TransformConfig {
    /// A JSON template: any string in it may hold `{{ expr }}`.
    output: Value,
}

pub struct TransformConnector;

#[derive(Debug)]
struct Transform {
    output: TemplateValue,
}

impl Connector for TransformConnector {
    fn kind(&self) -> &'static str {
        "transform"
    }

    fn describe(&self) -> &'static str {
        "Build a new JSON document from the run context"
    }

    fn prepare(&self, config: &Map<String, Value>) -> Result<Arc<dyn StepExec>, Vec<Issue>> {
        let cfg: TransformConfig = config::parse(config)?;
        let mut c = Compiler::default();
        let output = c.value("output", &cfg.output);
        c.finish(Arc::new(Transform { output }) as Arc<dyn StepExec>)
    }
}

#[async_trait]
impl StepExec for Transform {
    async fn run(&self, cx: &StepCx<'_>) -> Result<StepOutcome, StepFailure> {
        self.output
            .render(cx.ctx, cx.secrets)
            .map(StepOutcome::done)
            .map_err(|e| StepFailure::new(e.to_string()))
    }

    fn has_effects(&self) -> bool {
        false
    }

    fn summary(&self) -> String {
        match &self.output {
            TemplateValue::Object(fields) => {
                let keys: Vec<&str> = fields.iter().map(|(k, _)| k.as_str()).collect();
                format!("{{ {} }}", keys.join(", "))
            }
            _ => "value".to_string(),
        }
    }

    fn secret_refs(&self) -> Vec<String> {
        self.output
            .secret_refs()
            .into_iter()
            .map(str::to_string)
            .collect()
    }
}
