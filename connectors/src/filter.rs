//! `filter`: when the condition is false the steps downstream do not run.

use std::sync::Arc;

use async_trait::async_trait;
use flows_engine::{
    Connector, Issue, StepCx, StepExec, StepFailure, StepOutcome, condition::Condition,
};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::config;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FilterConfig {
    /// `{ "path", "op", "value" }`, or `all` / `any` / `not` of conditions.
    condition: Value,
}

pub struct FilterConnector;

#[derive(Debug)]
struct Filter {
    condition: Condition,
}

impl Connector for FilterConnector {
    fn kind(&self) -> &'static str {
        "filter"
    }

    fn describe(&self) -> &'static str {
        "Continue only when a condition holds"
    }

    fn prepare(&self, config: &Map<String, Value>) -> Result<Arc<dyn StepExec>, Vec<Issue>> {
        let cfg: FilterConfig = config::parse(config)?;
        let condition = Condition::compile(&cfg.condition).map_err(|issues| {
            issues
                .into_iter()
                .map(|i| i.under("condition"))
                .collect::<Vec<_>>()
        })?;
        Ok(Arc::new(Filter { condition }))
    }
}

#[async_trait]
impl StepExec for Filter {
    async fn run(&self, cx: &StepCx<'_>) -> Result<StepOutcome, StepFailure> {
        let pass = self
            .condition
            .eval(cx.ctx, cx.secrets)
            .map_err(|e| StepFailure::new(e.to_string()))?;
        let input = cx.ctx.input().into_owned();
        Ok(StepOutcome {
            output: input,
            attempts: 1,
            proceed: pass,
        })
    }

    fn has_effects(&self) -> bool {
        false
    }

    fn summary(&self) -> String {
        self.condition.summary()
    }

    fn secret_refs(&self) -> Vec<String> {
        self.condition
            .secret_refs()
            .into_iter()
            .map(str::to_string)
            .collect()
    }
}
