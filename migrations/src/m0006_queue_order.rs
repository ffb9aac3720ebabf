//! The queue index holds each flow's runs in the order they are claimed: by status, flow,
//! `available_at`, then id.
//!
//! With `runs_queue` (status, available_at) a claim read one window of the whole queue's head
//! and ranked it per flow: the window cost more than the runs it took, ties on `available_at`
//! were sorted again, and a flow's runs behind a long backlog of another flow were out of sight.
//! Now a claim finds the flows that have runs waiting (one seek each) and reads each flow's
//! head in order, as far as that flow may take.

use sea_orm_migration::prelude::*;

use crate::run_each as run;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m0006_queue_order"
    }
}

// The trait's signature elides the lifetime; matching it exactly is required.
#[allow(elided_lifetimes_in_paths)]
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // A new name: the statements may run on different pooled connections (see m0005).
        run(
            m,
            &[
                "CREATE INDEX runs_by_status ON runs (status, flow, available_at, id)",
                "DROP INDEX runs_queue",
            ],
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        run(
            m,
            &[
                "CREATE INDEX runs_queue ON runs (status, available_at)",
                "DROP INDEX runs_by_status",
            ],
        )
        .await
    }
}
