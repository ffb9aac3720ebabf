//! Multi-row inserts for the group commits (new webhooks, step records), written straight from
//! the rows' values. Through the query builder every model was copied twice more (into the builder's
//! values, then into the driver's arguments) and the statement text assembled again for each
//! batch, all while the batch held the single write turn: a quarter of the request threads'
//! time under the ingest load.

use std::{
    collections::HashMap,
    sync::{LazyLock, Mutex},
};

use sea_orm::{
    ActiveModelTrait, ConnectionTrait, DatabaseBackend, DbErr, EntityName, EntityTrait, IdenStatic,
    Iterable, Statement,
};

use super::steps::fixed_chunks;

/// Insert `rows`, several to a statement, in the caller's transaction. On SQLite the
/// statements are `INSERT OR FAIL`: any failure ends the whole transaction anyway, and unlike
/// the default (`ABORT`, undo the failing statement alone) it needs no statement journal, a
/// copy of every page the statement changes.
pub(crate) async fn insert<A, C>(db: &C, rows: Vec<A>) -> Result<(), DbErr>
where
    A: ActiveModelTrait,
    C: ConnectionTrait,
{
    insert_then(db, rows, "").await
}

/// [`insert`], with `tail` (an `ON CONFLICT` clause, valid on both backends) after the values.
pub(crate) async fn insert_then<A, C>(db: &C, rows: Vec<A>, tail: &'static str) -> Result<(), DbErr>
where
    A: ActiveModelTrait,
    C: ConnectionTrait,
{
    let backend = db.get_database_backend();
    for chunk in fixed_chunks(rows) {
        let rows = values(chunk)?;
        let sql = cached_sql(backend, rows.table, (rows.rows.len(), tail), || {
            let mut sql = insert_sql(
                backend,
                rows.table,
                rows.columns.iter().copied(),
                rows.rows.len(),
            );
            sql.push_str(tail);
            sql
        });
        let values: Vec<_> = rows.rows.into_iter().flatten().collect();
        db.execute_raw(Statement::from_sql_and_values(backend, sql, values))
            .await?;
    }
    Ok(())
}

/// The values of `rows`, column by column: an error names the first column not set.
pub(crate) fn values<A: ActiveModelTrait>(rows: Vec<A>) -> Result<super::raw_sqlite::Rows, DbErr> {
    let columns: Vec<_> = <A::Entity as EntityTrait>::Column::iter().collect();
    let table = A::Entity::default().table_name();
    let mut out = Vec::with_capacity(rows.len());
    for mut row in rows {
        let mut values = Vec::with_capacity(columns.len());
        for &c in &columns {
            values.push(row.take(c).into_value().ok_or_else(|| {
                DbErr::Custom(format!("insert into {table}: {} is not set", c.as_str()))
            })?);
        }
        out.push(values);
    }
    Ok(super::raw_sqlite::Rows {
        table,
        columns: columns.iter().map(IdenStatic::as_str).collect(),
        rows: out,
    })
}

/// The text of the insert of `rows` rows into `table`, made by `build` the first time: the
/// statements come in a handful of shapes ([`fixed_chunks`]), and assembling the text of a
/// 64-row statement cost more than binding its values.
fn cached_sql(
    backend: DatabaseBackend,
    table: &'static str,
    (rows, tail): (usize, &'static str),
    build: impl FnOnce() -> String,
) -> String {
    type Texts = HashMap<(bool, &'static str, usize, &'static str), String>;
    static TEXTS: LazyLock<Mutex<Texts>> = LazyLock::new(Default::default);
    let key = (backend == DatabaseBackend::Sqlite, table, rows, tail);
    let mut texts = TEXTS.lock().unwrap_or_else(|e| e.into_inner());
    texts.entry(key).or_insert_with(build).clone()
}

/// `INSERT INTO table (columns) VALUES (...), ...` for `rows` rows. SQLite gets anonymous
/// parameters: for a numbered one (`?7`) the driver asks SQLite for each parameter's name, a
/// linear search of the statement's names, so binding a many-row statement took time growing
/// with the square of its parameters (a fifth of SQLite's thread under the ingest load).
fn insert_sql<'a>(
    backend: DatabaseBackend,
    table: &str,
    columns: impl Iterator<Item = &'a str>,
    rows: usize,
) -> String {
    use std::fmt::Write;
    let verb = match backend {
        DatabaseBackend::Sqlite => "INSERT OR FAIL",
        _ => "INSERT",
    };
    let columns: Vec<&str> = columns.collect();
    let mut sql = String::with_capacity(64 + rows * columns.len() * 7);
    let _ = write!(sql, "{verb} INTO \"{table}\" (");
    for (i, c) in columns.iter().enumerate() {
        let _ = write!(sql, "{}\"{c}\"", if i > 0 { ", " } else { "" });
    }
    sql.push_str(") VALUES ");
    let mut n = 0;
    for r in 0..rows {
        sql.push_str(if r > 0 { ", (" } else { "(" });
        for c in 0..columns.len() {
            n += 1;
            let _ = match backend {
                DatabaseBackend::Sqlite => write!(sql, "{}?", if c > 0 { ", " } else { "" }),
                _ => write!(sql, "{}${n}", if c > 0 { ", " } else { "" }),
            };
        }
        sql.push(')');
    }
    sql
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_shape_is_built_once_per_backend() {
        let mut built = 0;
        for backend in [
            DatabaseBackend::Sqlite,
            DatabaseBackend::Sqlite,
            DatabaseBackend::Postgres,
        ] {
            let text = cached_sql(backend, "shape_test", (7, ""), || {
                built += 1;
                format!("{backend:?}")
            });
            assert_eq!(text, format!("{backend:?}"));
        }
        assert_eq!(built, 2);
    }

    #[test]
    fn parameters_per_backend() {
        let cols = || ["a", "b"].into_iter();
        assert_eq!(
            insert_sql(DatabaseBackend::Sqlite, "t", cols(), 2),
            r#"INSERT OR FAIL INTO "t" ("a", "b") VALUES (?, ?), (?, ?)"#
        );
        assert_eq!(
            insert_sql(DatabaseBackend::Postgres, "t", cols(), 2),
            r#"INSERT INTO "t" ("a", "b") VALUES ($1, $2), ($3, $4)"#
        );
    }
}
