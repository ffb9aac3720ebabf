//! hookflow's flow model and runtime. It knows nothing of HTTP servers, databases or concrete
//! connectors: those plug in through the traits in [`connector`] and [`executor`].

pub mod condition;
pub mod connector;
pub mod context;
pub mod executor;
pub mod flow;
pub mod ids;
pub mod issue;
pub mod path;
pub mod secrets;
pub mod template;
pub mod validate;

pub use connector::{Connector, Dispatch, Registry, StepCx, StepExec, StepFailure, StepOutcome};
pub use context::Ctx;
pub use executor::{ExecError, RunInfo, RunOutcome, RunStatus, StepRecord, StepSink, StepStatus};
pub use flow::{Flow, OnError, Respond, ScheduleTrigger, Step, Trigger, WebhookTrigger};
pub use issue::Issue;
pub use validate::{PreparedFlow, ValidateCx};
