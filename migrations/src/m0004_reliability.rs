//! Schedules and the items they have emitted (reconciliation), and an index for retention.
//!
//! `schedules` holds one row per scheduled flow: when it is next due and who is firing it (a
//! lease), so that among many processes on one database exactly one fires a given tick.
//! `schedule_items` remembers every item a schedule emitted, by key, so a polled item starts one
//! run however often it is seen again.

use sea_orm_migration::{prelude::*, schema::*};

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m0004_reliability"
    }
}

#[derive(DeriveIden)]
enum Schedules {
    Table,
    Flow,
    Spec,
    NextAt,
    Owner,
    LeaseUntil,
    LastFiredAt,
    LastError,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum ScheduleItems {
    Table,
    Flow,
    Key,
    RunId,
    SeenAt,
}

#[derive(DeriveIden)]
enum Runs {
    Table,
    FinishedAt,
}

#[derive(DeriveIden)]
enum Deliveries {
    Table,
    RunId,
}

// The trait's signature elides the lifetime; matching it exactly is required.
#[allow(elided_lifetimes_in_paths)]
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(Schedules::Table)
                .col(string(Schedules::Flow).primary_key())
                .col(text(Schedules::Spec))
                .col(big_integer(Schedules::NextAt))
                .col(string_null(Schedules::Owner))
                .col(big_integer_null(Schedules::LeaseUntil))
                .col(big_integer_null(Schedules::LastFiredAt))
                .col(text_null(Schedules::LastError))
                .col(big_integer(Schedules::UpdatedAt))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(ScheduleItems::Table)
                .col(string(ScheduleItems::Flow))
                .col(string(ScheduleItems::Key))
                .col(string(ScheduleItems::RunId))
                .col(big_integer(ScheduleItems::SeenAt))
                .primary_key(
                    Index::create()
                        .col(ScheduleItems::Flow)
                        .col(ScheduleItems::Key),
                )
                .to_owned(),
        )
        .await?;
        // Retention deletes finished runs by age, and keeps runs whose deliveries are pending.
        m.create_index(
            Index::create()
                .name("runs_finished")
                .table(Runs::Table)
                .col(Runs::FinishedAt)
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("deliveries_run")
                .table(Deliveries::Table)
                .col(Deliveries::RunId)
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_index(
            Index::drop()
                .name("deliveries_run")
                .table(Deliveries::Table)
                .to_owned(),
        )
        .await?;
        m.drop_index(
            Index::drop()
                .name("runs_finished")
                .table(Runs::Table)
                .to_owned(),
        )
        .await?;
        m.drop_table(Table::drop().table(ScheduleItems::Table).to_owned())
            .await?;
        m.drop_table(Table::drop().table(Schedules::Table).to_owned())
            .await
    }
}
