//! hookflow's database schema, for SQLite and PostgreSQL. Migrations run at every start; a
//! migration is never edited once released — add a new one.

pub use sea_orm_migration::prelude::*;

mod m0001_initial;
mod m0002_dedupe;
mod m0003_auth;
mod m0004_reliability;
mod m0005_partial_indexes;
mod m0006_queue_order;
mod m0007_lean_run_indexes;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m0001_initial::Migration),
            Box::new(m0002_dedupe::Migration),
            Box::new(m0003_auth::Migration),
            Box::new(m0004_reliability::Migration),
            Box::new(m0005_partial_indexes::Migration),
            Box::new(m0006_queue_order::Migration),
            Box::new(m0007_lean_run_indexes::Migration),
        ]
    }
}

/// Run raw statements that read the same on both backends, in order.
pub(crate) async fn run_each(m: &SchemaManager<'_>, statements: &[&str]) -> Result<(), DbErr> {
    let db = m.get_connection();
    for sql in statements {
        db.execute_unprepared(sql).await?;
    }
    Ok(())
}
