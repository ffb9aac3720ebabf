//! The connector contract: one trait per step kind and an explicit registry, so adding a step
//! kind is one module plus one registry line.

use std::{collections::BTreeMap, fmt, sync::Arc};

use async_trait::async_trait;
use serde_json::{Map, Value};

use crate::{context::Ctx, executor::RunInfo, issue::Issue, template::SecretSource};

/// A step kind. `prepare` parses and compiles a step's configuration once, when a flow is saved
/// or loaded; the result runs many times.
pub trait Connector: Send + Sync {
    /// The `type` name in the flow format.
    fn kind(&self) -> &'static str;
    /// One line for help texts.
    fn describe(&self) -> &'static str;
    /// Every problem in `config`, located relative to the step (e.g. `url`, `headers.X-Id`).
    fn prepare(&self, config: &Map<String, Value>) -> Result<Arc<dyn StepExec>, Vec<Issue>>;
}

/// A prepared step, ready to run.
#[async_trait]
pub trait StepExec: Send + Sync + fmt::Debug {
    async fn run(&self, cx: &StepCx<'_>) -> Result<StepOutcome, StepFailure>;
    /// One line for lists and the graph, e.g. `POST https://crm.example.com/notes`.
    fn summary(&self) -> String;
    /// Flows this step chains to (for static cycle checks).
    fn chained_flows(&self) -> Vec<String> {
        Vec::new()
    }
    /// Secret names the step's templates reference.
    fn secret_refs(&self) -> Vec<String>;
    /// Whether running the step reaches outside the run (a request, a delivery, a chained run).
    /// Such a step's record is committed before anything after it starts, so that a resumed run
    /// never repeats it; a step without effects (`false`) may be computed again instead.
    fn has_effects(&self) -> bool {
        true
    }
}

/// What a step sees while it runs.
pub struct StepCx<'a> {
    /// The run context with `input` set for this step.
    pub ctx: Ctx<'a>,
    pub secrets: &'a dyn SecretSource,
    pub run: &'a RunInfo,
    pub step_id: &'a str,
    pub dispatch: &'a dyn Dispatch,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StepOutcome {
    pub output: Value,
    pub attempts: u32,
    /// `false` stops the steps downstream (a filter whose condition is false).
    pub proceed: bool,
}

impl StepOutcome {
    pub fn done(output: Value) -> Self {
        Self {
            output,
            attempts: 1,
            proceed: true,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct StepFailure {
    pub error: String,
    pub attempts: u32,
    /// Output to keep despite the failure (e.g. the last HTTP response).
    pub output: Option<Value>,
}

impl StepFailure {
    pub fn new(error: impl Into<String>) -> Self {
        Self {
            error: error.into(),
            attempts: 1,
            output: None,
        }
    }
}

/// A run queued by chaining (`webhook_out` to a flow).
#[derive(Debug, Clone)]
pub struct ChainRequest {
    pub flow: String,
    pub body: Value,
    /// `{ "flow", "run_id", "step" }` of the run that chained.
    pub source: Value,
    pub depth: u32,
    /// Idempotency key: a resumed step does not queue the same run twice.
    pub key: String,
}

/// An outbound delivery queued by `webhook_out` to a URL.
#[derive(Debug, Clone)]
pub struct DeliveryRequest {
    pub url: String,
    pub body: Value,
    /// The signing secret's template source (`{{ secrets.X }}` or a literal), rendered at send time
    /// so the secret is never stored in the delivery record.
    pub secret: Option<String>,
    pub run_id: String,
    pub step_id: String,
    pub key: String,
}

/// Durable side effects a step may ask for; the server implements this over its store.
#[async_trait]
pub trait Dispatch: Send + Sync {
    /// Queue a run of another flow; returns its run id.
    async fn chain(&self, req: ChainRequest) -> Result<String, String>;
    /// Queue an outbound delivery; returns its delivery id.
    async fn deliver(&self, req: DeliveryRequest) -> Result<String, String>;
    /// Wait until a delivery succeeded or gave up; returns its final record.
    async fn await_delivery(&self, delivery_id: &str) -> Result<Value, String>;
}

/// Step kinds by name.
#[derive(Clone, Default)]
pub struct Registry {
    kinds: BTreeMap<&'static str, Arc<dyn Connector>>,
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Add a connector. Panics on a duplicate kind: that is a programming error.
    pub fn register(&mut self, c: Arc<dyn Connector>) -> &mut Self {
        let kind = c.kind();
        assert!(
            self.kinds.insert(kind, c).is_none(),
            "connector kind '{kind}' registered twice"
        );
        self
    }

    pub fn get(&self, kind: &str) -> Option<&Arc<dyn Connector>> {
        self.kinds.get(kind)
    }

    pub fn kinds(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.kinds.keys().copied()
    }
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.kinds.keys()).finish()
    }
}
