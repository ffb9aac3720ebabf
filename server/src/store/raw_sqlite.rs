//! Group commits written through SQLite's C API. Through sea-orm and sqlx every statement of a
//! webhook batch was a round trip to the connection's own thread, its values copied twice on the
//! way (into the driver's arguments, then into SQLite) and its many-row text hashed to find the
//! prepared statement. Here one prepared single-row insert per table is stepped once per row with
//! the values bound in place. The webhook writer does it on a connection and a thread of its own
//! ([`WriterThread`]); [`transaction`] and [`with_connection`] do it on the pooled writer
//! connection, borrowed from sqlx.

use std::{
    collections::HashMap,
    ffi::{CStr, c_char, c_int},
    ptr,
};

use libsqlite3_sys as ffi;
use sea_orm::{DatabaseConnection, DbErr, Value, sqlx};
use tokio::sync::oneshot;

/// Rows for one table: the values of each row in the order of `columns`.
pub(crate) struct Rows {
    pub table: &'static str,
    pub columns: Vec<&'static str>,
    pub rows: Vec<Vec<Value>>,
}

/// Run `write` in one transaction on `db`'s connection (`BEGIN IMMEDIATE`), and commit. If
/// `write` or the commit fails, the transaction is rolled back and nothing is left behind.
/// `write` runs on the calling thread while the connection is locked: it must only write.
pub(crate) async fn transaction<T>(
    db: &DatabaseConnection,
    write: impl FnOnce(&mut Txn) -> Result<T, DbErr>,
) -> Result<T, DbErr> {
    let pool = db.get_sqlite_connection_pool();
    let mut conn = pool.acquire().await.map_err(sqlx_err)?;
    let written = {
        let mut handle = conn.lock_handle().await.map_err(sqlx_err)?;
        let raw = handle.as_raw_handle().as_ptr();
        let mut txn = Txn {
            db: raw,
            stmts: HashMap::new(),
        };
        // SAFETY: `raw` is the live connection, locked against its worker thread until `handle`
        // drops at the end of this block; `txn`, which finalizes its statements, drops first.
        let res = unsafe { txn.exec(c"BEGIN IMMEDIATE") }.and_then(|()| write(&mut txn));
        drop(txn);
        // SAFETY: as above.
        if res.is_err() && unsafe { ffi::sqlite3_get_autocommit(raw) } == 0 {
            let _ = unsafe { exec(raw, c"ROLLBACK") };
        }
        res
    };
    let out = written?;
    if let Err(e) = sqlx::Executor::execute(&mut *conn, "COMMIT").await {
        // A commit that failed (busy, full disk) leaves the transaction open.
        let _ = sqlx::Executor::execute(&mut *conn, "ROLLBACK").await;
        return Err(sqlx_err(e));
    }
    Ok(out)
}

/// Run `f` with `db`'s connection, locked against its own thread (no transaction is begun:
/// see [`Txn::within`]). For a database in memory, whose commits do not wait for a disk.
pub(crate) async fn with_connection<T>(
    db: &DatabaseConnection,
    f: impl FnOnce(&mut Txn) -> T,
) -> Result<T, DbErr> {
    let pool = db.get_sqlite_connection_pool();
    let mut conn = pool.acquire().await.map_err(sqlx_err)?;
    let mut handle = conn.lock_handle().await.map_err(sqlx_err)?;
    let mut txn = Txn {
        db: handle.as_raw_handle().as_ptr(),
        stmts: HashMap::new(),
    };
    // `txn` finalizes its statements before `handle` unlocks the connection.
    Ok(f(&mut txn))
}

fn sqlx_err(e: sqlx::Error) -> DbErr {
    DbErr::Custom(format!("SQLite: {e}"))
}

/// A connection to write through; each statement is prepared on first use and kept while the
/// `Txn` lives (for a batch on a borrowed connection, for the thread's life on its own).
pub(crate) struct Txn {
    db: *mut ffi::sqlite3,
    stmts: HashMap<String, Stmt>,
}

impl Txn {
    /// `f` in a transaction (`BEGIN IMMEDIATE`), committed if it succeeds; otherwise, or if the
    /// commit fails, rolled back.
    pub fn within<T>(&mut self, f: impl FnOnce(&mut Txn) -> Result<T, DbErr>) -> Result<T, DbErr> {
        // SAFETY: the open connection of this transaction.
        let res = unsafe { self.exec(c"BEGIN IMMEDIATE") }
            .and_then(|()| f(self))
            .and_then(|out| unsafe { self.exec(c"COMMIT") }.map(|()| out));
        if res.is_err() && unsafe { ffi::sqlite3_get_autocommit(self.db) } == 0 {
            let _ = unsafe { self.exec(c"ROLLBACK") };
        }
        res
    }

    /// The file of the connection's main database; empty for a database in memory.
    fn filename(&self) -> Option<std::ffi::CString> {
        // SAFETY: an open connection; the name is copied out at once.
        unsafe {
            let name = ffi::sqlite3_db_filename(self.db, c"main".as_ptr());
            (!name.is_null()).then(|| CStr::from_ptr(name).to_owned())
        }
    }

    /// Insert `rows` one at a time, with `tail` (an `ON CONFLICT` clause) after the values.
    pub fn insert(&mut self, rows: &Rows, tail: &str) -> Result<(), DbErr> {
        if rows.rows.is_empty() {
            return Ok(());
        }
        let sql = insert_sql(rows.table, &rows.columns) + tail;
        // Found once for all the rows: hashing the statement's text for each row was a
        // visible part of the writer's time.
        let (db, stmt) = (self.db, self.prepared(&sql)?);
        for row in &rows.rows {
            // SAFETY: a statement of this open connection, bound in full, then stepped and
            // reset before the values it reads in place are dropped.
            unsafe {
                bind_all(db, stmt, row, &sql)?;
                let rc = ffi::sqlite3_step(stmt);
                finish(stmt);
                if rc != ffi::SQLITE_DONE {
                    return Err(error(db, rc, &sql));
                }
            }
        }
        Ok(())
    }

    /// Run `sql` with `values` bound to its `?` parameters; returns the rows it changed.
    pub fn execute(&mut self, sql: &str, values: &[Value]) -> Result<u64, DbErr> {
        let db = self.db;
        let stmt = self.run(sql, values)?;
        // SAFETY: a statement of this open connection, bound by `run`.
        let rc = unsafe { ffi::sqlite3_step(stmt) };
        unsafe { finish(stmt) };
        if rc != ffi::SQLITE_DONE && rc != ffi::SQLITE_ROW {
            return Err(unsafe { error(db, rc, sql) });
        }
        Ok(unsafe { ffi::sqlite3_changes64(db) } as u64)
    }

    /// The first column of the first row `sql` returns, as text.
    pub fn query_text(&mut self, sql: &str, values: &[Value]) -> Result<Option<String>, DbErr> {
        let db = self.db;
        let stmt = self.run(sql, values)?;
        // SAFETY: a statement of this open connection, bound by `run`; the text is copied out
        // before the statement is reset.
        unsafe {
            let rc = ffi::sqlite3_step(stmt);
            let out = match rc {
                ffi::SQLITE_ROW => {
                    let text = ffi::sqlite3_column_text(stmt, 0);
                    (!text.is_null()).then(|| {
                        let len = ffi::sqlite3_column_bytes(stmt, 0) as usize;
                        let bytes = std::slice::from_raw_parts(text, len);
                        String::from_utf8_lossy(bytes).into_owned()
                    })
                }
                ffi::SQLITE_DONE => None,
                rc => {
                    finish(stmt);
                    return Err(error(db, rc, sql));
                }
            };
            finish(stmt);
            Ok(out)
        }
    }

    /// The prepared statement for `sql`, with `values` bound.
    fn run(&mut self, sql: &str, values: &[Value]) -> Result<*mut ffi::sqlite3_stmt, DbErr> {
        let stmt = self.prepared(sql)?;
        // SAFETY: `values` outlive the statement's next step, which the caller takes before
        // returning.
        unsafe { bind_all(self.db, stmt, values, sql)? };
        Ok(stmt)
    }

    /// The statement for `sql`, prepared on first use.
    fn prepared(&mut self, sql: &str) -> Result<*mut ffi::sqlite3_stmt, DbErr> {
        if let Some(stmt) = self.stmts.get(sql) {
            return Ok(stmt.0);
        }
        // SAFETY: an open connection; the statement is finalized with `self`.
        let stmt = unsafe { prepare(self.db, sql)? };
        Ok(self.stmts.entry(sql.to_string()).or_insert(stmt).0)
    }

    /// SAFETY: an open connection.
    unsafe fn exec(&self, sql: &CStr) -> Result<(), DbErr> {
        unsafe { exec(self.db, sql) }
    }
}

/// Bind `values` to `stmt`'s parameters, in order (SQLITE_STATIC: SQLite reads them in place
/// instead of copying them).
///
/// SAFETY: `stmt` is a live statement of `db`; `values` outlive its next step.
unsafe fn bind_all(
    db: *mut ffi::sqlite3,
    stmt: *mut ffi::sqlite3_stmt,
    values: &[Value],
    sql: &str,
) -> Result<(), DbErr> {
    for (i, v) in values.iter().enumerate() {
        let rc = unsafe { bind(stmt, i as c_int + 1, v) };
        unsafe { check(db, rc, sql)? };
    }
    Ok(())
}

/// Ready the statement for its next use, and let go of the values bound to it.
///
/// SAFETY: a live statement.
unsafe fn finish(stmt: *mut ffi::sqlite3_stmt) {
    unsafe {
        ffi::sqlite3_reset(stmt);
        ffi::sqlite3_clear_bindings(stmt);
    }
}

/// A prepared statement, finalized when dropped.
struct Stmt(*mut ffi::sqlite3_stmt);

impl Drop for Stmt {
    fn drop(&mut self) {
        // SAFETY: the statement was prepared on a connection still open and locked.
        unsafe { ffi::sqlite3_finalize(self.0) };
    }
}

/// SAFETY: `db` is an open connection.
unsafe fn prepare(db: *mut ffi::sqlite3, sql: &str) -> Result<Stmt, DbErr> {
    let mut raw = ptr::null_mut();
    // SAFETY: per the caller; `sql` outlives the call, its length is given.
    let rc = unsafe {
        ffi::sqlite3_prepare_v3(
            db,
            sql.as_ptr() as *const c_char,
            sql.len() as c_int,
            0,
            &mut raw,
            ptr::null_mut(),
        )
    };
    let stmt = Stmt(raw);
    unsafe { check(db, rc, sql)? };
    Ok(stmt)
}

/// `INSERT OR FAIL` (see `rows::insert`) of one row.
fn insert_sql(table: &str, columns: &[&str]) -> String {
    let mut sql = format!("INSERT OR FAIL INTO \"{table}\" (");
    for (i, c) in columns.iter().enumerate() {
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push('"');
        sql.push_str(c);
        sql.push('"');
    }
    sql.push_str(") VALUES (");
    for i in 0..columns.len() {
        sql.push_str(if i > 0 { ", ?" } else { "?" });
    }
    sql.push(')');
    sql
}

/// Bind `v` as sqlx would encode it: integers and booleans as integers, strings as text, bytes
/// as a blob.
///
/// SAFETY: `stmt` is a live statement; `v` outlives its next step.
unsafe fn bind(stmt: *mut ffi::sqlite3_stmt, i: c_int, v: &Value) -> c_int {
    let int = |n: Option<i64>| match n {
        Some(n) => unsafe { ffi::sqlite3_bind_int64(stmt, i, n) },
        None => unsafe { ffi::sqlite3_bind_null(stmt, i) },
    };
    match v {
        Value::Bool(b) => int(b.map(i64::from)),
        Value::TinyInt(n) => int(n.map(i64::from)),
        Value::SmallInt(n) => int(n.map(i64::from)),
        Value::Int(n) => int(n.map(i64::from)),
        Value::BigInt(n) => int(*n),
        Value::TinyUnsigned(n) => int(n.map(i64::from)),
        Value::SmallUnsigned(n) => int(n.map(i64::from)),
        Value::Unsigned(n) => int(n.map(i64::from)),
        Value::Double(Some(x)) => unsafe { ffi::sqlite3_bind_double(stmt, i, *x) },
        Value::String(Some(s)) => unsafe {
            ffi::sqlite3_bind_text64(
                stmt,
                i,
                s.as_ptr() as *const c_char,
                s.len() as u64,
                ffi::SQLITE_STATIC(),
                ffi::SQLITE_UTF8 as u8,
            )
        },
        Value::Bytes(Some(b)) => unsafe {
            ffi::sqlite3_bind_blob64(
                stmt,
                i,
                b.as_ptr().cast(),
                b.len() as u64,
                ffi::SQLITE_STATIC(),
            )
        },
        Value::Double(None) | Value::String(None) | Value::Bytes(None) => unsafe {
            ffi::sqlite3_bind_null(stmt, i)
        },
        // No column of the tables written here has another type.
        _ => ffi::SQLITE_MISMATCH,
    }
}

/// SAFETY: `db` is a live connection.
unsafe fn exec(db: *mut ffi::sqlite3, sql: &CStr) -> Result<(), DbErr> {
    let rc = unsafe { ffi::sqlite3_exec(db, sql.as_ptr(), None, ptr::null_mut(), ptr::null_mut()) };
    unsafe { check(db, rc, "") }
}

/// SAFETY: `db` is a live connection.
unsafe fn check(db: *mut ffi::sqlite3, rc: c_int, sql: &str) -> Result<(), DbErr> {
    if rc == ffi::SQLITE_OK {
        Ok(())
    } else {
        Err(unsafe { error(db, rc, sql) })
    }
}

/// SAFETY: `db` is a live connection.
unsafe fn error(db: *mut ffi::sqlite3, rc: c_int, sql: &str) -> DbErr {
    let msg = unsafe { CStr::from_ptr(ffi::sqlite3_errmsg(db)) }.to_string_lossy();
    // The statement's opening words say which write failed; values are never shown.
    let what: String = sql.chars().take(60).collect();
    DbErr::Custom(format!("SQLite error {rc} in `{what}…`: {msg}"))
}

/// A write job for the [`WriterThread`]: runs on its thread with its connection.
type ThreadJob = Box<dyn FnOnce(&mut Txn) + Send>;

/// A connection of its own to the database file, on a thread of its own, for the webhook
/// writer's batches: each batch is one hop to this thread and one back, like a plain SQLite
/// writer thread. Through the pool every batch took three more round trips to the pooled
/// connection's thread (the pool's check of the connection on its return, the lock on its
/// handle, the commit) and a task to give the connection back: 0.25–0.35 ms of a 1-ms batch.
/// Its statements stay prepared from batch to batch.
pub(crate) struct WriterThread {
    jobs: std::sync::mpsc::Sender<ThreadJob>,
}

impl WriterThread {
    /// Open a second connection to `db`'s file with the same durability, and start its thread;
    /// `None` when the database has no file (in memory) or the connection cannot be opened.
    pub async fn start(db: &DatabaseConnection) -> Option<WriterThread> {
        let (path, synchronous) = with_connection(db, |txn| {
            Some((
                txn.filename()?,
                txn.query_text("PRAGMA synchronous", &[]).ok()??,
            ))
        })
        .await
        .ok()??;
        if path.is_empty() {
            return None;
        }
        let (jobs, rx) = std::sync::mpsc::channel::<ThreadJob>();
        let (ready, opened) = oneshot::channel();
        std::thread::Builder::new()
            .name("hookflow-sqlite-writer".into())
            .spawn(move || serve(&path, &synchronous, rx, ready))
            .ok()?;
        match opened.await {
            Ok(Ok(())) => Some(WriterThread { jobs }),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "could not open the writer's own SQLite connection; writing through the pool");
                None
            }
            Err(_) => None,
        }
    }

    /// Start `f` on the writer thread, after what was handed to it before, without waiting.
    pub fn spawn(&self, f: impl FnOnce(&mut Txn) + Send + 'static) -> Result<(), DbErr> {
        self.jobs
            .send(Box::new(f))
            .map_err(|_| DbErr::Custom("the SQLite writer thread has stopped".into()))
    }

    /// Run `f` on the writer thread, with its connection (not in a transaction: see
    /// [`Txn::within`]), and return what it returns.
    pub async fn run<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Txn) -> R + Send + 'static,
    ) -> Result<R, DbErr> {
        let (done, result) = oneshot::channel();
        let job: ThreadJob = Box::new(move |txn| {
            let _ = done.send(f(txn));
        });
        let gone = || DbErr::Custom("the SQLite writer thread has stopped".into());
        self.jobs.send(job).map_err(|_| gone())?;
        result.await.map_err(|_| gone())
    }
}

/// The writer thread: open the connection, then run jobs until every sender is gone.
fn serve(
    path: &CStr,
    synchronous: &str,
    jobs: std::sync::mpsc::Receiver<ThreadJob>,
    ready: oneshot::Sender<Result<(), DbErr>>,
) {
    let mut db = ptr::null_mut();
    let flags = ffi::SQLITE_OPEN_READWRITE | ffi::SQLITE_OPEN_NOMUTEX;
    // SAFETY: `path` is NUL-terminated; the connection is used by this thread only and closed
    // at the end, after its statements (in `txn`) are finalized.
    let rc = unsafe { ffi::sqlite3_open_v2(path.as_ptr(), &mut db, flags, ptr::null()) };
    let mut txn = Txn {
        db,
        stmts: HashMap::new(),
    };
    // The same settings as the pool's connections: durability as configured, waiting on the
    // lock held by another process (the CLI), and foreign keys checked.
    let setup = unsafe { check(db, rc, "open") }.and_then(|()| {
        let sql = format!(
            "PRAGMA synchronous = {}; PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON;",
            synchronous.parse::<u8>().unwrap_or(2)
        );
        let sql = std::ffi::CString::new(sql).map_err(|e| DbErr::Custom(e.to_string()))?;
        unsafe { exec(db, &sql) }
    });
    let ok = setup.is_ok();
    let _ = ready.send(setup);
    if ok {
        while let Ok(job) = jobs.recv() {
            job(&mut txn);
        }
    }
    drop(txn);
    // SAFETY: every statement of the connection was finalized with `txn`.
    unsafe { ffi::sqlite3_close(db) };
}

#[cfg(test)]
mod tests {
    use sea_orm::{ConnectionTrait, Statement};

    use super::*;
    use crate::store::testing::temp_store;

    fn flow_row(name: &str) -> Vec<Value> {
        vec![
            name.into(),
            Value::String(None),
            true.into(),
            1i64.into(),
            "{}".into(),
            0i64.into(),
            0i64.into(),
        ]
    }

    fn flows(rows: Vec<Vec<Value>>) -> Rows {
        Rows {
            table: "flows",
            columns: vec![
                "name",
                "title",
                "enabled",
                "version",
                "definition",
                "created_at",
                "updated_at",
            ],
            rows,
        }
    }

    async fn names(store: &crate::store::Store) -> Vec<String> {
        let stmt = Statement::from_string(
            store.backend(),
            "SELECT name FROM flows ORDER BY name".to_string(),
        );
        store
            .db
            .query_all_raw(stmt)
            .await
            .unwrap()
            .iter()
            .map(|r| r.try_get_by_index::<String>(0).unwrap())
            .collect()
    }

    /// The thread's own connection writes the database file the pool reads, a failed batch
    /// leaves nothing behind, and the next batch goes through.
    #[tokio::test]
    async fn the_writer_thread_commits_whole_batches_or_nothing() {
        let (_dir, store) = temp_store().await;
        let thread = WriterThread::start(&store.writer_db)
            .await
            .expect("a file database");
        let ok = thread
            .run(|txn| txn.within(|txn| txn.insert(&flows(vec![flow_row("a"), flow_row("b")]), "")))
            .await
            .unwrap();
        assert!(ok.is_ok());
        // The second row repeats a primary key: the first must not stay either.
        let err = thread
            .run(|txn| txn.within(|txn| txn.insert(&flows(vec![flow_row("c"), flow_row("a")]), "")))
            .await
            .unwrap()
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("UNIQUE constraint failed: flows.name"),
            "{err}"
        );
        assert!(err.contains("INSERT OR FAIL INTO \"flows\""), "{err}");
        let changed = thread
            .run(|txn| {
                txn.within(|txn| {
                    txn.execute(
                        "UPDATE flows SET version = ?1 WHERE name = ?2",
                        &[2i64.into(), "b".into()],
                    )
                })
            })
            .await
            .unwrap()
            .unwrap();
        assert_eq!(changed, 1);
        assert_eq!(names(&store).await, ["a", "b"]);
    }

    /// A database in memory has no file for a second connection: the writer stays on the pool.
    #[tokio::test]
    async fn no_writer_thread_for_a_database_in_memory() {
        let db = sea_orm::Database::connect("sqlite::memory:").await.unwrap();
        assert!(WriterThread::start(&db).await.is_none());
    }
}
