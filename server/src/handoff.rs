//! Runs queued by this process go straight to its own workers when one is free and nothing
//! older waits in the queue: the writer stores such a run already claimed (`running`, leased
//! to this process) in the same commit that accepts it, and hands it over in memory. A run
//! that arrives while the workers are busy, or while the queue holds anything, is queued as
//! usual and claimed in order. Either way the run is durable before anyone is answered, and a
//! handed-over run whose process dies is claimed again when its lease expires, like any other.
//!
//! This also keeps the count of runs in hand (claimed or handed over, not yet ended) and the
//! per-flow budget, shared by the dispatcher and the writer so that neither overfills them.

use std::sync::Mutex;

use flows_engine::StepRecord;
use serde_json::Value;
use tokio::sync::mpsc;

use crate::store::{entities::runs, queue::FlowBudget};

/// A run a worker takes, with what is known of it beyond its row.
pub struct RunInHand {
    pub run: runs::Model,
    /// The records of its finished steps; `None`: read them from the store.
    pub prior: Option<Vec<StepRecord>>,
    /// Its trigger, already parsed; `None`: parse `run.trigger`.
    pub trigger: Option<Value>,
}

impl RunInHand {
    /// A run read from the store; `first_start`: it never started, so no step has a record.
    pub fn stored(run: runs::Model, first_start: bool) -> Self {
        RunInHand {
            run,
            prior: first_start.then(Vec::new),
            trigger: None,
        }
    }
}

/// The dispatcher's worker slots, shared with the writer.
pub struct Handoff {
    state: Mutex<State>,
    tx: mpsc::UnboundedSender<RunInHand>,
    /// This process's identity in leases.
    pub worker: String,
    pub lease_ms: i64,
}

struct State {
    workers: usize,
    /// Runs claimed or reserved for a handover and not yet ended.
    in_hand: usize,
    budget: FlowBudget,
    /// The last claim left the queue empty: a new run may skip it.
    open: bool,
}

impl State {
    /// A new run of `flow` may skip the queue: nothing waits in it, a worker is free and the
    /// flow is under its cap.
    fn takes(&self, flow: &str) -> bool {
        self.open && self.in_hand < self.workers && self.budget.room(flow) > 0
    }
}

/// Runs handed over, for the dispatcher.
pub type Handed = mpsc::UnboundedReceiver<RunInHand>;

impl Handoff {
    pub fn new(workers: usize, flow_cap: usize, worker: String, lease_ms: i64) -> (Self, Handed) {
        let (tx, rx) = mpsc::unbounded_channel();
        let state = State {
            workers: workers.max(1),
            in_hand: 0,
            budget: FlowBudget::new(flow_cap),
            open: false,
        };
        let handoff = Handoff {
            state: Mutex::new(state),
            tx,
            worker,
            lease_ms,
        };
        (handoff, rx)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is a few counters updated in place; a panic cannot leave it half-written.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Take a worker slot for a new run of `flow`, if one is free and nothing waits in the
    /// queue. When none is, handovers stop until a claim has emptied the queue again, so runs
    /// keep their order.
    pub fn reserve(&self, flow: &str) -> bool {
        let mut s = self.state();
        if s.takes(flow) {
            s.in_hand += 1;
            s.budget.take(flow);
            true
        } else {
            s.open = false;
            false
        }
    }

    /// Whether a new run of `flow` would be handed over now. A hint: the writer decides when
    /// it reserves the slot.
    pub fn would_take(&self, flow: &str) -> bool {
        self.state().takes(flow)
    }

    /// Hand a committed, reserved run to the dispatcher.
    pub fn deliver(&self, run: RunInHand) {
        if let Err(mpsc::error::SendError(RunInHand { run, .. })) = self.tx.send(run) {
            // The dispatcher has stopped (shutdown): the run is leased to this process and is
            // handed back with the others, or claimed again when its lease expires.
            self.settle(&run.flow);
        }
    }

    /// Free worker slots.
    pub fn free(&self) -> usize {
        let s = self.state();
        s.workers.saturating_sub(s.in_hand)
    }

    /// Stop handovers for a claim and return the budget it may use.
    pub fn begin_claim(&self) -> FlowBudget {
        let mut s = self.state();
        s.open = false;
        s.budget.clone()
    }

    /// Count a claimed run of `flow`; whether the flow is now at its cap.
    pub fn claimed(&self, flow: &str) -> bool {
        let mut s = self.state();
        s.in_hand += 1;
        s.budget.take(flow);
        s.budget.room(flow) == 0
    }

    /// A claim ended; `drained`: it took every run that was ready, so new runs may skip the
    /// queue until one has to wait.
    pub fn end_claim(&self, drained: bool) {
        self.state().open = drained;
    }

    /// No more handovers (shutdown).
    pub fn close(&self) {
        self.state().open = false;
    }

    /// A run of `flow` ended (or its reservation was not committed): its slot is free again.
    pub fn settle(&self, flow: &str) {
        let mut s = self.state();
        s.in_hand = s.in_hand.saturating_sub(1);
        s.budget.put_back(flow);
    }

    /// Runs in hand (claimed or handed over, not yet ended).
    #[cfg(test)]
    fn in_hand(&self) -> usize {
        self.state().in_hand
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handoff(workers: usize, cap: usize) -> (Handoff, Handed) {
        Handoff::new(workers, cap, "wrk_test".into(), 30_000)
    }

    #[test]
    fn nothing_skips_the_queue_until_a_claim_has_drained_it() {
        let (h, _rx) = handoff(4, 4);
        assert!(!h.reserve("a"), "closed at start: the queue may hold runs");
        h.begin_claim();
        h.end_claim(true);
        assert!(h.would_take("a"));
        assert!(h.reserve("a"));
        assert_eq!((h.in_hand(), h.free()), (1, 3));
    }

    #[test]
    fn a_run_that_must_wait_stops_handovers_until_the_next_drained_claim() {
        let (h, _rx) = handoff(2, 2);
        h.end_claim(true);
        assert!(h.reserve("a"));
        assert!(h.reserve("a"));
        assert!(!h.would_take("a"));
        assert!(!h.reserve("a"), "no free worker");
        h.settle("a");
        assert_eq!(h.free(), 1);
        assert!(
            !h.reserve("b"),
            "a run waits in the queue: newer runs must not overtake it"
        );
        h.begin_claim();
        assert!(!h.reserve("b"), "no handovers while a claim runs");
        h.end_claim(true);
        assert!(h.reserve("b"));
    }

    #[test]
    fn the_per_flow_cap_holds_across_claims_and_handovers() {
        let (h, _rx) = handoff(8, 2);
        h.end_claim(true);
        assert!(h.reserve("a"));
        let budget = h.begin_claim();
        assert_eq!(budget.room("a"), 1);
        assert!(h.claimed("a"), "the claim filled flow a");
        h.end_claim(true);
        assert!(!h.reserve("a"), "flow a is at its cap");
        h.end_claim(true);
        assert!(h.reserve("b"), "other flows still go straight through");
        h.settle("b");
        assert_eq!(h.in_hand(), 2);
    }

    #[test]
    fn a_run_handed_over_after_shutdown_frees_its_slot() {
        let (h, rx) = handoff(2, 2);
        h.end_claim(true);
        assert!(h.reserve("a"));
        drop(rx);
        let run = runs::Model {
            id: "run_x".into(),
            flow: "a".into(),
            version: 1,
            event_id: None,
            status: "running".into(),
            attempt: 1,
            trigger: "{}".into(),
            parent_run: None,
            parent_step: None,
            depth: 0,
            idempotency_key: None,
            error: None,
            output: None,
            worker: Some("wrk_test".into()),
            lease_until: Some(1),
            available_at: 0,
            created_at: 0,
            started_at: Some(0),
            finished_at: None,
        };
        h.deliver(RunInHand::stored(run, true));
        assert_eq!(h.in_hand(), 0);
    }
}
