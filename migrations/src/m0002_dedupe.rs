//! Dedupe keys: one row per (flow, delivery id) while its window lasts. The primary key is the
//! arbiter between concurrent duplicates, so two copies never both start a run.

use sea_orm_migration::{prelude::*, schema::*};

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m0002_dedupe"
    }
}

#[derive(DeriveIden)]
enum DedupeKeys {
    Table,
    Flow,
    Key,
    RunId,
    ExpiresAt,
}

// The trait's signature elides the lifetime; matching it exactly is required.
#[allow(elided_lifetimes_in_paths)]
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(DedupeKeys::Table)
                .col(string(DedupeKeys::Flow))
                .col(string(DedupeKeys::Key))
                .col(string(DedupeKeys::RunId))
                .col(big_integer(DedupeKeys::ExpiresAt))
                .primary_key(Index::create().col(DedupeKeys::Flow).col(DedupeKeys::Key))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("dedupe_keys_expiry")
                .table(DedupeKeys::Table)
                .col(DedupeKeys::ExpiresAt)
                .to_owned(),
        )
        .await?;
        // Dedupe lives in its own table now; the event column only records the key.
        m.drop_index(
            Index::drop()
                .name("events_dedupe")
                .table(Alias::new("events"))
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(DedupeKeys::Table).to_owned())
            .await
    }
}
