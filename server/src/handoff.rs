//! Runs queued by this process go straight to its own workers when one is free and nothing
//! older waits in the queue: the writer stores such a run already claimed (`running`, leased
//! to this process) in the same commit that accepts it, and hands it over in memory. A run
//! that arrives while the workers are busy, or while the queue holds anything, is queued as
//! usual and claimed in order. Either way the run is durable before anyone is answered, and a
//! handed-over run whose process dies is claimed again when its lease expires, like any other.
//!
//! This also keeps the count of runs in hand (claimed or handed over, not yet executed) and
//! the per-flow budget, shared by the dispatcher and the writer so that neither overfills them.
//! A run holds its slot while it executes, not while its end waits for its commit: a worker
//! that only waits for the database is free for the next run.
//!
//! A run that has to wait in the queue leaves its parsed trigger here ("parked"), so that when
//! this process claims it the worker does not parse the stored text again. The claim decides
//! who runs it as before; a run claimed elsewhere (or after a restart) reads its trigger from
//! the store, and its parked copy is dropped when newer ones push it out.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex},
};

use flows_engine::StepRecord;
use serde_json::Value;
use tokio::sync::{Notify, mpsc};

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

/// Most triggers parked at once (a few KiB each): enough for the backlog a busy process keeps.
const PARKED: usize = 1024;

/// Parsed triggers of queued runs, by run id, oldest first out.
#[derive(Default)]
struct Parked {
    triggers: HashMap<String, Value>,
    order: VecDeque<String>,
}

/// The dispatcher's worker slots, shared with the writer.
pub struct Handoff {
    state: Mutex<State>,
    parked: Mutex<Parked>,
    tx: mpsc::UnboundedSender<RunInHand>,
    /// A run gave its slot back: the dispatcher may claim again.
    pub freed: Notify,
    /// This process's identity in leases.
    pub worker: String,
    pub lease_ms: i64,
}

struct State {
    workers: usize,
    /// Runs claimed or reserved for a handover and not yet executed.
    in_hand: usize,
    budget: FlowBudget,
    /// The last claim left the queue empty: a new run may skip it.
    open: bool,
    /// Slots given back since the last claim began.
    freed: usize,
}

impl State {
    /// A new run of `flow` may skip the queue: nothing waits in it, a worker is free and the
    /// flow is under its cap.
    fn takes(&self, flow: &str) -> bool {
        self.open && self.in_hand < self.workers && self.budget.room(flow) > 0
    }
}

/// A run's worker slot; dropping it gives the slot back and wakes the dispatcher.
pub struct Slot {
    handoff: Arc<Handoff>,
    flow: String,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.handoff.settle(&self.flow);
        self.handoff.freed.notify_one();
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
            freed: 0,
        };
        let handoff = Handoff {
            state: Mutex::new(state),
            parked: Mutex::default(),
            tx,
            freed: Notify::new(),
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

    /// Slots given back since the last claim began.
    pub fn freed_since_claim(&self) -> usize {
        self.state().freed
    }

    /// Stop handovers for a claim and return the budget it may use.
    pub fn begin_claim(&self) -> FlowBudget {
        let mut s = self.state();
        s.open = false;
        s.freed = 0;
        s.budget.clone()
    }

    /// Count a claimed run of `flow`.
    pub fn claimed(&self, flow: &str) {
        let mut s = self.state();
        s.in_hand += 1;
        s.budget.take(flow);
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
        s.freed += 1;
        s.budget.put_back(flow);
    }

    /// The slot of a run of `flow`, given back when dropped: when the run has executed (its
    /// end may still wait for its commit), or when its task is aborted or panics.
    pub fn slot(self: &Arc<Self>, flow: String) -> Slot {
        Slot {
            handoff: self.clone(),
            flow,
        }
    }

    /// Keep the parsed trigger of a committed run that waits in the queue, for when this
    /// process claims it; the oldest parked trigger goes when there are too many.
    pub fn park(&self, run_id: String, trigger: Value) {
        let mut p = self.parked.lock().unwrap_or_else(|e| e.into_inner());
        while p.order.len() >= PARKED {
            if let Some(old) = p.order.pop_front() {
                p.triggers.remove(&old);
            }
        }
        if p.triggers.insert(run_id.clone(), trigger).is_none() {
            p.order.push_back(run_id);
        }
    }

    /// A claimed run, with its trigger if it was parked here.
    pub fn claimed_run(&self, run: runs::Model, first_start: bool) -> RunInHand {
        let mut p = self.parked.lock().unwrap_or_else(|e| e.into_inner());
        // Its id stays in `order` until pushed out; a stale id there removes nothing.
        let trigger = p.triggers.remove(&run.id);
        drop(p);
        RunInHand {
            trigger,
            ..RunInHand::stored(run, first_start)
        }
    }

    /// Runs in hand (claimed or handed over, not yet executed).
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
        h.claimed("a");
        h.end_claim(true);
        assert!(!h.reserve("a"), "flow a is at its cap");
        h.end_claim(true);
        assert!(h.reserve("b"), "other flows still go straight through");
        h.settle("b");
        assert_eq!(h.in_hand(), 2);
    }

    #[tokio::test]
    async fn a_dropped_slot_frees_its_worker_and_wakes_the_dispatcher() {
        let (h, _rx) = handoff(2, 1);
        let h = Arc::new(h);
        h.end_claim(true);
        assert!(h.reserve("a"));
        let slot = h.slot("a".into());
        assert!(!h.would_take("a"), "flow a is at its cap");
        h.begin_claim();
        h.end_claim(true);
        drop(slot);
        assert_eq!((h.in_hand(), h.freed_since_claim()), (0, 1));
        assert!(h.would_take("a"), "the flow has room again");
        tokio::time::timeout(std::time::Duration::from_secs(1), h.freed.notified())
            .await
            .expect("the dispatcher is woken");
        h.begin_claim();
        assert_eq!(h.freed_since_claim(), 0, "counted from the last claim");
    }

    fn stored_run(id: &str) -> runs::Model {
        runs::Model {
            id: id.into(),
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
        }
    }

    #[test]
    fn a_run_handed_over_after_shutdown_frees_its_slot() {
        let (h, rx) = handoff(2, 2);
        h.end_claim(true);
        assert!(h.reserve("a"));
        drop(rx);
        h.deliver(RunInHand::stored(stored_run("run_x"), true));
        assert_eq!(h.in_hand(), 0);
    }

    #[test]
    fn a_claimed_run_takes_its_parked_trigger_once() {
        let (h, _rx) = handoff(2, 2);
        h.park("run_a".into(), serde_json::json!({"body": {"n": 1}}));
        let taken = h.claimed_run(stored_run("run_a"), true);
        assert_eq!(taken.trigger.unwrap()["body"]["n"], 1);
        assert_eq!(taken.prior.unwrap().len(), 0);
        let again = h.claimed_run(stored_run("run_a"), false);
        assert!(again.trigger.is_none(), "parked once, taken once");
        assert!(
            again.prior.is_none(),
            "a run started before reads its records"
        );
        assert!(h.claimed_run(stored_run("run_b"), true).trigger.is_none());
    }

    #[test]
    fn parked_triggers_are_bounded_oldest_out() {
        let (h, _rx) = handoff(2, 2);
        for i in 0..PARKED + 10 {
            h.park(format!("run_{i}"), Value::from(i));
        }
        assert!(h.claimed_run(stored_run("run_9"), true).trigger.is_none());
        let kept = h.claimed_run(stored_run("run_10"), true).trigger;
        assert_eq!(kept, Some(Value::from(10)));
        let newest = format!("run_{}", PARKED + 9);
        assert!(h.claimed_run(stored_run(&newest), true).trigger.is_some());
        let p = h.parked.lock().unwrap();
        assert_eq!(p.triggers.len(), PARKED - 2);
        assert_eq!(p.order.len(), PARKED);
    }
}
