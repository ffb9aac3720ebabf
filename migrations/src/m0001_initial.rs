//! The initial schema. Times are milliseconds since the Unix epoch (`BIGINT`), which compare and
//! index the same way on SQLite and PostgreSQL.

use sea_orm_migration::{prelude::*, schema::*};

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m0001_initial"
    }
}

#[derive(DeriveIden)]
enum Flows {
    Table,
    Name,
    Title,
    Enabled,
    Version,
    Definition,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum FlowVersions {
    Table,
    Flow,
    Version,
    Definition,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Events {
    Table,
    Id,
    Flow,
    Method,
    Path,
    Headers,
    Query,
    Body,
    ReceivedAt,
    DedupeKey,
}

#[derive(DeriveIden)]
enum Runs {
    Table,
    Id,
    Flow,
    Version,
    EventId,
    Status,
    Attempt,
    Trigger,
    ParentRun,
    ParentStep,
    Depth,
    IdempotencyKey,
    Error,
    Output,
    Worker,
    LeaseUntil,
    AvailableAt,
    CreatedAt,
    StartedAt,
    FinishedAt,
}

#[derive(DeriveIden)]
enum StepRuns {
    Table,
    RunId,
    StepId,
    Status,
    Input,
    Output,
    Error,
    Attempts,
    StartedAt,
    DurationMs,
}

#[derive(DeriveIden)]
enum Deliveries {
    Table,
    Id,
    RunId,
    StepId,
    Url,
    Body,
    Secret,
    Status,
    Attempts,
    NextAttemptAt,
    LeaseUntil,
    LastStatus,
    LastError,
    IdempotencyKey,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum DeliveryAttempts {
    Table,
    Id,
    DeliveryId,
    Attempt,
    ResponseStatus,
    ResponseBody,
    Error,
    DurationMs,
    At,
}

#[derive(DeriveIden)]
enum Secrets {
    Table,
    Name,
    Nonce,
    Ciphertext,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum ApiTokens {
    Table,
    Id,
    Name,
    TokenHash,
    CreatedAt,
    LastUsedAt,
}

#[derive(DeriveIden)]
enum InboxRequests {
    Table,
    Id,
    Inbox,
    Method,
    Path,
    Query,
    Headers,
    Body,
    ReceivedAt,
}

// The trait's signature elides the lifetime; matching it exactly is required.
#[allow(elided_lifetimes_in_paths)]
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(Flows::Table)
                .col(string(Flows::Name).primary_key())
                .col(string_null(Flows::Title))
                .col(boolean(Flows::Enabled))
                .col(big_integer(Flows::Version))
                .col(text(Flows::Definition))
                .col(big_integer(Flows::CreatedAt))
                .col(big_integer(Flows::UpdatedAt))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(FlowVersions::Table)
                .col(string(FlowVersions::Flow))
                .col(big_integer(FlowVersions::Version))
                .col(text(FlowVersions::Definition))
                .col(big_integer(FlowVersions::CreatedAt))
                .primary_key(Index::create().col(FlowVersions::Flow).col(FlowVersions::Version))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(Events::Table)
                .col(string(Events::Id).primary_key())
                .col(string(Events::Flow))
                .col(string(Events::Method))
                .col(string(Events::Path))
                .col(text(Events::Headers))
                .col(text(Events::Query))
                .col(blob(Events::Body))
                .col(big_integer(Events::ReceivedAt))
                .col(string_null(Events::DedupeKey))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create().name("events_dedupe").table(Events::Table).col(Events::Flow).col(Events::DedupeKey).unique().to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(Runs::Table)
                .col(string(Runs::Id).primary_key())
                .col(string(Runs::Flow))
                .col(big_integer(Runs::Version))
                .col(string_null(Runs::EventId))
                .col(string(Runs::Status))
                .col(integer(Runs::Attempt))
                .col(text(Runs::Trigger))
                .col(string_null(Runs::ParentRun))
                .col(string_null(Runs::ParentStep))
                .col(integer(Runs::Depth))
                .col(string_null(Runs::IdempotencyKey))
                .col(text_null(Runs::Error))
                .col(text_null(Runs::Output))
                .col(string_null(Runs::Worker))
                .col(big_integer_null(Runs::LeaseUntil))
                .col(big_integer(Runs::AvailableAt))
                .col(big_integer(Runs::CreatedAt))
                .col(big_integer_null(Runs::StartedAt))
                .col(big_integer_null(Runs::FinishedAt))
                .to_owned(),
        )
        .await?;
        m.create_index(Index::create().name("runs_idempotency").table(Runs::Table).col(Runs::IdempotencyKey).unique().to_owned())
            .await?;
        m.create_index(Index::create().name("runs_queue").table(Runs::Table).col(Runs::Status).col(Runs::AvailableAt).to_owned())
            .await?;
        m.create_index(Index::create().name("runs_flow").table(Runs::Table).col(Runs::Flow).col(Runs::Id).to_owned()).await?;
        m.create_index(Index::create().name("runs_parent").table(Runs::Table).col(Runs::ParentRun).to_owned()).await?;
        m.create_table(
            Table::create()
                .table(StepRuns::Table)
                .col(string(StepRuns::RunId))
                .col(string(StepRuns::StepId))
                .col(string(StepRuns::Status))
                .col(text_null(StepRuns::Input))
                .col(text_null(StepRuns::Output))
                .col(text_null(StepRuns::Error))
                .col(integer(StepRuns::Attempts))
                .col(big_integer(StepRuns::StartedAt))
                .col(big_integer(StepRuns::DurationMs))
                .primary_key(Index::create().col(StepRuns::RunId).col(StepRuns::StepId))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(Deliveries::Table)
                .col(string(Deliveries::Id).primary_key())
                .col(string(Deliveries::RunId))
                .col(string(Deliveries::StepId))
                .col(text(Deliveries::Url))
                .col(text(Deliveries::Body))
                .col(text_null(Deliveries::Secret))
                .col(string(Deliveries::Status))
                .col(integer(Deliveries::Attempts))
                .col(big_integer(Deliveries::NextAttemptAt))
                .col(big_integer_null(Deliveries::LeaseUntil))
                .col(integer_null(Deliveries::LastStatus))
                .col(text_null(Deliveries::LastError))
                .col(string(Deliveries::IdempotencyKey))
                .col(big_integer(Deliveries::CreatedAt))
                .col(big_integer(Deliveries::UpdatedAt))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create().name("deliveries_idempotency").table(Deliveries::Table).col(Deliveries::IdempotencyKey).unique().to_owned(),
        )
        .await?;
        m.create_index(
            Index::create().name("deliveries_due").table(Deliveries::Table).col(Deliveries::Status).col(Deliveries::NextAttemptAt).to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(DeliveryAttempts::Table)
                .col(string(DeliveryAttempts::Id).primary_key())
                .col(string(DeliveryAttempts::DeliveryId))
                .col(integer(DeliveryAttempts::Attempt))
                .col(integer_null(DeliveryAttempts::ResponseStatus))
                .col(text_null(DeliveryAttempts::ResponseBody))
                .col(text_null(DeliveryAttempts::Error))
                .col(big_integer(DeliveryAttempts::DurationMs))
                .col(big_integer(DeliveryAttempts::At))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create().name("delivery_attempts_delivery").table(DeliveryAttempts::Table).col(DeliveryAttempts::DeliveryId).to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(Secrets::Table)
                .col(string(Secrets::Name).primary_key())
                .col(blob(Secrets::Nonce))
                .col(blob(Secrets::Ciphertext))
                .col(big_integer(Secrets::UpdatedAt))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(ApiTokens::Table)
                .col(string(ApiTokens::Id).primary_key())
                .col(string(ApiTokens::Name))
                .col(string(ApiTokens::TokenHash).unique_key())
                .col(big_integer(ApiTokens::CreatedAt))
                .col(big_integer_null(ApiTokens::LastUsedAt))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(InboxRequests::Table)
                .col(string(InboxRequests::Id).primary_key())
                .col(string(InboxRequests::Inbox))
                .col(string(InboxRequests::Method))
                .col(text(InboxRequests::Path))
                .col(text(InboxRequests::Query))
                .col(text(InboxRequests::Headers))
                .col(text(InboxRequests::Body))
                .col(big_integer(InboxRequests::ReceivedAt))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create().name("inbox_by_name").table(InboxRequests::Table).col(InboxRequests::Inbox).col(InboxRequests::Id).to_owned(),
        )
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for t in ["inbox_requests", "api_tokens", "secrets", "delivery_attempts", "deliveries", "step_runs", "runs", "events", "flow_versions", "flows"] {
            m.drop_table(Table::drop().table(Alias::new(t)).to_owned()).await?;
        }
        Ok(())
    }
}
