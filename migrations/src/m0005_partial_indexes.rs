//! Indexes on columns that are empty for almost every run cover only the runs that have a value.
//!
//! A webhook's run has no idempotency key and no parent run, yet every new run added a `NULL`
//! entry to both indexes, in the transaction every webhook waits for. The lookups (`= value`)
//! imply `IS NOT NULL`, so SQLite and PostgreSQL use the partial indexes for them, and a key is
//! still unique among the runs that have one.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m0005_partial_indexes"
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
        // New names: the statements may run on different pooled connections, and one that has
        // not yet seen a `DROP` would refuse to create an index of the same name.
        run(
            m,
            &[
                "CREATE UNIQUE INDEX runs_by_key ON runs (idempotency_key) \
                 WHERE idempotency_key IS NOT NULL",
                "DROP INDEX runs_idempotency",
                "CREATE INDEX runs_by_parent ON runs (parent_run) WHERE parent_run IS NOT NULL",
                "DROP INDEX runs_parent",
            ],
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        run(
            m,
            &[
                "CREATE UNIQUE INDEX runs_idempotency ON runs (idempotency_key)",
                "DROP INDEX runs_by_key",
                "CREATE INDEX runs_parent ON runs (parent_run)",
                "DROP INDEX runs_by_parent",
            ],
        )
        .await
    }
}
