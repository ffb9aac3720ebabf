//! Waiting for a run to finish (`respond: result`, `?wait=true`): woken in-process when this
//! process finishes the run, with a database poll as the fallback when another process does.

use std::{collections::HashMap, sync::Mutex, time::Duration};

use tokio::sync::oneshot;

use crate::{
    error::Error,
    store::{Store, entities::runs},
};

#[derive(Default)]
pub struct Waiters {
    map: Mutex<HashMap<String, Vec<oneshot::Sender<()>>>>,
}

impl Waiters {
    fn register(&self, run_id: &str) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        self.map
            .lock()
            .expect("waiters lock")
            .entry(run_id.to_string())
            .or_default()
            .push(tx);
        rx
    }

    /// Wake everyone waiting for `run_id`.
    pub fn finished(&self, run_id: &str) {
        if let Some(senders) = self.map.lock().expect("waiters lock").remove(run_id) {
            for s in senders {
                let _ = s.send(());
            }
        }
    }

    fn forget(&self, run_id: &str) {
        self.map.lock().expect("waiters lock").remove(run_id);
    }

    /// The run once it has finished, or `None` after `timeout`.
    pub async fn wait(
        &self,
        store: &Store,
        run_id: &str,
        timeout: Duration,
    ) -> Result<Option<runs::Model>, Error> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut woken = self.register(run_id);
        loop {
            if let Some(run) = store.get_run(run_id).await?
                && run.status != "queued"
                && run.status != "running"
            {
                self.forget(run_id);
                return Ok(Some(run));
            }
            let poll = tokio::time::sleep(Duration::from_millis(250));
            tokio::select! {
                _ = &mut woken => woken = self.register(run_id),
                _ = poll => {}
                _ = tokio::time::sleep_until(deadline) => {
                    self.forget(run_id);
                    return Ok(None);
                }
            }
        }
    }
}
