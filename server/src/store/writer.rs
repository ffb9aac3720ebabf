//! Group commit: new events and runs that arrive together are written in one transaction, so
//! SQLite pays one fsync for a batch instead of one per webhook. Every caller still waits for
//! the commit that holds its row before answering.

use sea_orm::{EntityTrait, TransactionTrait};
use tokio::sync::{mpsc, oneshot};

use super::{
    Store,
    entities::{events, runs},
};
use crate::error::Error;

/// A run to queue, with the inbound event that started it (if any).
pub struct NewRun {
    pub event: Option<events::ActiveModel>,
    pub run: runs::ActiveModel,
}

struct Job {
    item: NewRun,
    done: oneshot::Sender<Result<(), String>>,
}

/// Handle to the writer task.
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Job>,
}

/// Most rows in one transaction; bounds commit latency under a burst.
const MAX_BATCH: usize = 512;

impl Writer {
    /// Start the writer task. `committed` is called after every commit (to wake workers).
    pub fn start(store: Store, committed: impl Fn() + Send + 'static) -> Writer {
        // Bounded: when the database falls behind, callers wait here instead of piling up memory.
        let (tx, mut rx) = mpsc::channel::<Job>(4 * MAX_BATCH);
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(MAX_BATCH);
            while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
                write_batch(&store, &mut batch).await;
                committed();
            }
        });
        Writer { tx }
    }

    /// Queue `item` and wait until it is committed.
    pub async fn submit(&self, item: NewRun) -> Result<(), Error> {
        let (done, wait) = oneshot::channel();
        self.tx
            .send(Job { item, done })
            .await
            .map_err(|_| Error::Unavailable("the writer has stopped".into()))?;
        match wait.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(Error::Unavailable(format!(
                "could not store the event: {e}"
            ))),
            Err(_) => Err(Error::Unavailable("the writer has stopped".into())),
        }
    }
}

async fn write_batch(store: &Store, batch: &mut Vec<Job>) {
    match insert_all(store, batch.iter().map(|j| &j.item)).await {
        Ok(()) => {
            for job in batch.drain(..) {
                let _ = job.done.send(Ok(()));
            }
        }
        Err(e) if batch.len() > 1 => {
            // One bad row must not fail its neighbours: retry them one by one.
            tracing::debug!(error = %e, size = batch.len(), "batch insert failed; retrying rows singly");
            for job in batch.drain(..) {
                let res = insert_all(store, std::iter::once(&job.item))
                    .await
                    .map_err(|e| e.to_string());
                let _ = job.done.send(res);
            }
        }
        Err(e) => {
            for job in batch.drain(..) {
                let _ = job.done.send(Err(e.to_string()));
            }
        }
    }
}

async fn insert_all<'a>(
    store: &Store,
    items: impl Iterator<Item = &'a NewRun> + Clone,
) -> Result<(), sea_orm::DbErr> {
    let txn = store.db.begin().await?;
    let evs: Vec<events::ActiveModel> = items.clone().filter_map(|i| i.event.clone()).collect();
    if !evs.is_empty() {
        events::Entity::insert_many(evs)
            .exec_without_returning(&txn)
            .await?;
    }
    let rs: Vec<runs::ActiveModel> = items.map(|i| i.run.clone()).collect();
    runs::Entity::insert_many(rs)
        .exec_without_returning(&txn)
        .await?;
    txn.commit().await
}
