//! Persistence over sea-orm, for SQLite and PostgreSQL. The `runs` table is the queue; the SQL
//! that claims work (leases, `SKIP LOCKED`) lives in [`queue`].

use std::{path::Path, time::Duration};

use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseBackend, DatabaseConnection, DbErr,
    Statement, Value as DbValue,
};

pub mod deliveries;
pub mod entities;
pub mod flows;
pub mod inbox;
pub mod queue;
mod raw_sqlite;
mod rows;
pub mod runs;
pub mod schedules;
pub mod secrets;
mod sqlite_tuning;
pub mod steps;
pub mod tokens;
pub mod users;
pub mod writer;

use migrations::{Migrator, MigratorTrait};

/// How hard SQLite works to make a commit durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SqliteSync {
    /// fsync on every commit: an acknowledged webhook survives a power cut.
    Full,
    /// fsync at checkpoints only: survives a crash of the process, not of the machine.
    Normal,
}

/// The database handle shared by the whole process.
#[derive(Clone)]
pub struct Store {
    pub db: DatabaseConnection,
    /// Where writes that take a [`Store::write_turn`] go. On SQLite a pool of one connection of
    /// its own: SQLite drops a connection's whole page cache whenever *another* connection has
    /// written, so writers spread over the pool would each start cold and read the index pages
    /// they touch back from the file; one connection that does all of this process's hot writes
    /// keeps them cached. On PostgreSQL the same pool as `db`.
    pub(crate) writer_db: DatabaseConnection,
    /// Decrypted secrets, shared by every clone of this handle.
    pub(crate) secrets_cache: std::sync::Arc<secrets::SecretsCache>,
    /// Group commit of step records.
    pub(crate) step_writer: steps::SharedStepWriter,
    /// Turns at SQLite's single write lock (see [`Store::write_turn`]).
    pub(crate) write_gate: WriteGate,
}

/// SQLite lets one connection write at a time. When two of this process's connections collide
/// on that lock, the loser's busy handler *sleeps* (1, 2, 5, 10… ms) before trying again, while
/// the disk sits idle. Writers on SQLite take turns here instead, in arrival order; the busy
/// handler is left for other processes (the CLI). PostgreSQL needs no turns. The lock holds
/// the number of turns taken so far.
pub(crate) type WriteGate = std::sync::Arc<tokio::sync::Mutex<u64>>;

impl Store {
    /// Connect, tune and migrate. `url` is `sqlite://<file>` or `postgres://...`.
    pub async fn open(url: &str, sync: SqliteSync) -> Result<Store, DbErr> {
        let mut opts = ConnectOptions::new(url.to_string());
        // A connection that was just in use is not tested again when it is taken from the pool:
        // by default every checkout first pings it, one more round trip (to SQLite's thread or
        // to the server) for every statement or transaction. One idle for a while still is.
        opts.sqlx_logging(false)
            .acquire_timeout(Duration::from_secs(10))
            .test_before_acquire_if_idle_for(Duration::from_secs(30));
        let sqlite = url.starts_with("sqlite:");
        if sqlite {
            // One writer at a time is SQLite's model; a few connections let reads run alongside.
            opts.max_connections(8)
                .min_connections(1)
                .map_sqlx_sqlite_opts(move |o| {
                    use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
                    o.journal_mode(SqliteJournalMode::Wal)
                        .synchronous(match sync {
                            SqliteSync::Full => SqliteSynchronous::Full,
                            SqliteSync::Normal => SqliteSynchronous::Normal,
                        })
                        .busy_timeout(Duration::from_secs(10))
                        .create_if_missing(true)
                })
                .map_sqlx_sqlite_pool_opts(|o| {
                    o.after_connect(|conn, _| Box::pin(sqlite_tuning::plan_once(conn)))
                });
        } else {
            opts.max_connections(16).min_connections(1);
        }
        let writer_opts = sqlite.then(|| {
            let mut w = opts.clone();
            w.max_connections(1).min_connections(1);
            w
        });
        let db = Database::connect(opts).await?;
        Migrator::up(&db, None).await?;
        let writer_db = match writer_opts {
            Some(w) => Database::connect(w).await?,
            None => db.clone(),
        };
        Ok(Store {
            db,
            writer_db,
            secrets_cache: Default::default(),
            step_writer: Default::default(),
            write_gate: Default::default(),
        })
    }

    /// Wait for this process's turn to write (SQLite), and write through the turn (it derefs to
    /// the writer connection) until the commit.
    pub(crate) async fn write_turn(&self) -> WriteTurn<'_> {
        write_turn(&self.writer_db, &self.write_gate).await
    }

    /// Write turns taken so far on SQLite (about one per transaction of the writer connection).
    #[cfg(test)]
    pub(crate) async fn write_turns(&self) -> u64 {
        *self.write_gate.lock().await
    }

    /// `sqlite://<dir>/hookflow.db` for a data directory.
    pub fn sqlite_url(data_dir: &Path) -> String {
        format!(
            "sqlite://{}?mode=rwc",
            data_dir.join("hookflow.db").display()
        )
    }

    pub fn backend(&self) -> DatabaseBackend {
        self.db.get_database_backend()
    }

    pub fn is_postgres(&self) -> bool {
        self.backend() == DatabaseBackend::Postgres
    }

    /// A raw statement written with `$1, $2, ...` placeholders, for either backend.
    pub fn stmt(&self, sql: &str, values: Vec<DbValue>) -> Statement {
        let sql = if self.is_postgres() {
            sql.to_string()
        } else {
            sqlite_placeholders(sql)
        };
        Statement::from_sql_and_values(self.backend(), sql, values)
    }

    /// A transaction that will write after reading. On SQLite it takes the write lock at once
    /// (`BEGIN IMMEDIATE`): a deferred transaction that reads and then writes fails with
    /// `SQLITE_BUSY` when another connection committed in between, whatever the busy timeout.
    pub async fn begin_write(&self) -> Result<sea_orm::DatabaseTransaction, DbErr> {
        use sea_orm::{SqliteTransactionMode, TransactionOptions, TransactionTrait};
        if self.is_postgres() {
            return self.db.begin().await;
        }
        let opts = TransactionOptions {
            sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
            ..Default::default()
        };
        self.db.begin_with_options(opts).await
    }

    pub async fn ping(&self) -> Result<(), DbErr> {
        self.db.execute_unprepared("SELECT 1").await.map(|_| ())
    }
}

/// A turn at writing: the connection to write through, and (SQLite) the gate held until dropped.
pub(crate) struct WriteTurn<'a> {
    db: &'a DatabaseConnection,
    _gate: Option<tokio::sync::MutexGuard<'a, u64>>,
}

impl std::ops::Deref for WriteTurn<'_> {
    type Target = DatabaseConnection;

    fn deref(&self) -> &DatabaseConnection {
        self.db
    }
}

/// [`Store::write_turn`] for a task that holds the writer connection and the gate, not the store.
pub(crate) async fn write_turn<'a>(
    db: &'a DatabaseConnection,
    gate: &'a WriteGate,
) -> WriteTurn<'a> {
    let _gate = match db.get_database_backend() {
        DatabaseBackend::Sqlite => {
            let mut turns = gate.lock().await;
            *turns += 1;
            Some(turns)
        }
        _ => None,
    };
    WriteTurn { db, _gate }
}

/// SQLite takes `?NNN` for numbered parameters. Copies the text between `$` signs in runs
/// rather than character by character: the queue's claim is long and rewritten for every claim.
fn sqlite_placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut rest = sql;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        rest = &rest[at + 1..];
        out.push(if rest.starts_with(|c: char| c.is_ascii_digit()) {
            '?'
        } else {
            '$'
        });
    }
    out.push_str(rest);
    out
}

/// A JSON document as stored text. Written straight into a buffer: `Value`'s `Display` (what
/// `to_string` uses) sends every fragment through the formatting machinery, several times slower
/// for the documents each webhook stores.
pub fn to_json_text(v: &serde_json::Value) -> String {
    // Serializing a `Value` cannot fail (its map keys are strings); keep `Display` as a fallback.
    serde_json::to_string(v).unwrap_or_else(|_| v.to_string())
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// A stored millisecond time as RFC 3339.
pub fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// What the store's own tests share: a store on a temporary SQLite file, and SQLite's plan for a
/// statement.
#[cfg(test)]
pub(crate) mod testing {
    use sea_orm::{ConnectionTrait, Statement, TransactionTrait};

    use super::{SqliteSync, Store};

    /// A migrated store in a directory removed when the returned guard is dropped.
    pub(crate) async fn temp_store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&Store::sqlite_url(dir.path()), SqliteSync::Normal)
            .await
            .unwrap();
        (dir, store)
    }

    /// SQLite's plan for `stmt`, one line per step.
    pub(crate) async fn plan(store: &Store, stmt: Statement) -> Vec<String> {
        let sql = format!("EXPLAIN QUERY PLAN {}", stmt.sql);
        let values = stmt.values.map(|v| v.0).unwrap_or_default();
        let explain = Statement::from_sql_and_values(store.backend(), sql, values);
        // `EXPLAIN QUERY PLAN` plans with the schema the connection last read, which may be from
        // before the migrations that ran on another pooled connection: read the table first,
        // in the same transaction, so the connection loads the current schema.
        let txn = store.db.begin().await.unwrap();
        txn.execute_unprepared("SELECT 1 FROM runs LIMIT 1")
            .await
            .unwrap();
        txn.query_all_raw(explain)
            .await
            .unwrap()
            .iter()
            .map(|row| row.try_get::<String>("", "detail").unwrap())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbered_placeholders_for_sqlite() {
        assert_eq!(
            sqlite_placeholders("a = $1 AND b = $12 AND c = '$'"),
            "a = ?1 AND b = ?12 AND c = '$'"
        );
        assert_eq!(sqlite_placeholders("$$1 x$"), "$?1 x$");
        assert_eq!(sqlite_placeholders("é = $2é"), "é = ?2é");
    }
}
