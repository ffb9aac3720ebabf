//! The queue's index holds only the runs that are waiting or running, and the retention index
//! only the runs that have ended; failed runs, which the run lists filter for, get a small
//! index of their own.
//!
//! Both used to hold every run: a run that ends as it is accepted still wrote its entry into the
//! queue's index, and every run started with a `NULL` entry in the retention index. On
//! PostgreSQL a run's end is never a HOT update (it changes `status` and `finished_at`), so each
//! new row version went into every index of `runs`; now it goes into neither of these two's
//! wrong halves, and the queue's scans walk only the queue.

use sea_orm_migration::prelude::*;

use crate::run_each as run;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m0007_lean_run_indexes"
    }
}

// The trait's signature elides the lifetime; matching it exactly is required.
#[allow(elided_lifetimes_in_paths)]
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        run(
            m,
            &[
                "CREATE INDEX runs_waiting ON runs (status, flow, available_at, id) \
                 WHERE status IN ('queued', 'running')",
                "DROP INDEX runs_by_status",
                "CREATE INDEX runs_ended ON runs (finished_at) WHERE finished_at IS NOT NULL",
                "DROP INDEX runs_finished",
                "CREATE INDEX runs_failed ON runs (id) WHERE status = 'failed'",
            ],
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        run(
            m,
            &[
                "CREATE INDEX runs_by_status ON runs (status, flow, available_at, id)",
                "DROP INDEX runs_waiting",
                "CREATE INDEX runs_finished ON runs (finished_at)",
                "DROP INDEX runs_ended",
                "DROP INDEX runs_failed",
            ],
        )
        .await
    }
}
