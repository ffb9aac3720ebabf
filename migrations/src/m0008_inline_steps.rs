//! The step records of a run that ends as it is accepted are kept in the run's own row
//! (`runs.steps`, a JSON array), so that such a webhook is one row instead of a run and a step
//! record per step. Runs that go on to a worker keep their records in `step_runs` as before.

use sea_orm_migration::prelude::*;

use crate::run_each as run;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m0008_inline_steps"
    }
}

// The trait's signature elides the lifetime; matching it exactly is required.
#[allow(elided_lifetimes_in_paths)]
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        run(m, &["ALTER TABLE runs ADD COLUMN steps TEXT"]).await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        run(m, &["ALTER TABLE runs DROP COLUMN steps"]).await
    }
}
