//! Per-connection SQLite settings that the connection URL cannot express.

use std::ffi::c_int;

use sea_orm::sqlx::{self, SqliteConnection};

/// Turn on SQLite's query planner stability guarantee (QPSG) for a new connection.
///
/// Without it, SQLite plans a statement with the *values* bound to its `LIMIT` parameters and
/// marks the prepared statement to be compiled again whenever a new value is bound: every
/// query with a bound `LIMIT` (sea-orm binds all of them, and the queue claims have three) is
/// re-parsed and re-planned on each execution, and the statement cache never helps. With QPSG a
/// statement is planned once, whatever it is bound to.
pub async fn plan_once(conn: &mut SqliteConnection) -> Result<(), sqlx::Error> {
    let mut handle = conn.lock_handle().await?;
    let db = handle.as_raw_handle().as_ptr();
    // SAFETY: `db` is a live connection handle, locked against the connection's worker thread
    // for the duration of the call; this option takes an int and an optional `int*` out value.
    let rc = unsafe {
        libsqlite3_sys::sqlite3_db_config(
            db,
            libsqlite3_sys::SQLITE_DBCONFIG_ENABLE_QPSG,
            1 as c_int,
            std::ptr::null_mut::<c_int>(),
        )
    };
    if rc != libsqlite3_sys::SQLITE_OK {
        return Err(sqlx::Error::Configuration(
            format!("could not enable the SQLite query planner stability guarantee (code {rc})")
                .into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::ffi::CString;

    use libsqlite3_sys as ffi;
    use sea_orm::sqlx::{Connection, SqliteConnection};

    /// How many times a `LIMIT ?` query was compiled again across executions with different
    /// bindings, on a connection with or without [`super::plan_once`].
    async fn reprepares(qpsg: bool) -> i32 {
        let mut conn = SqliteConnection::connect("sqlite::memory:").await.unwrap();
        if qpsg {
            super::plan_once(&mut conn).await.unwrap();
        }
        let mut handle = conn.lock_handle().await.unwrap();
        let db = handle.as_raw_handle().as_ptr();
        let sql = CString::new(
            "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 100) \
             SELECT x FROM n ORDER BY x LIMIT ?1",
        )
        .unwrap();
        // SAFETY: a private connection used from this thread only; every statement is finalized.
        unsafe {
            let mut stmt = std::ptr::null_mut();
            let rc = ffi::sqlite3_prepare_v3(
                db,
                sql.as_ptr(),
                -1,
                ffi::SQLITE_PREPARE_PERSISTENT,
                &mut stmt,
                std::ptr::null_mut(),
            );
            assert_eq!(rc, ffi::SQLITE_OK);
            for limit in 1..=10 {
                assert_eq!(ffi::sqlite3_bind_int64(stmt, 1, limit), ffi::SQLITE_OK);
                let mut rows = 0;
                while ffi::sqlite3_step(stmt) == ffi::SQLITE_ROW {
                    rows += 1;
                }
                assert_eq!(rows, limit);
                ffi::sqlite3_reset(stmt);
            }
            let n = ffi::sqlite3_stmt_status(stmt, ffi::SQLITE_STMTSTATUS_REPREPARE, 0);
            ffi::sqlite3_finalize(stmt);
            n
        }
    }

    #[tokio::test]
    async fn bound_limits_do_not_recompile_the_statement() {
        // The default: compiled again for each of the 9 new values after the first.
        assert!(reprepares(false).await >= 9);
        assert_eq!(reprepares(true).await, 0);
    }
}
