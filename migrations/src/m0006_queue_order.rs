//! The queue index holds runs in the order they are claimed: by status, then `available_at`,
//! then id.
//!
//! `runs_queue` (status, available_at) left ties on `available_at` in row order, so every claim
//! (`ORDER BY available_at, id`) sorted the head of the queue it read in a temporary B-tree
//! before it could take the first runs. With the id in the index the head is read in order.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m0006_queue_order"
    }
}

/// Both backends take the same statements.
async fn run(m: &SchemaManager<'_>, statements: &[&str]) -> Result<(), DbErr> {
    let db = m.get_connection();
    for sql in statements {
        db.execute_unprepared(sql).await?;
    }
    Ok(())
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
                "CREATE INDEX runs_by_status ON runs (status, available_at, id)",
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
