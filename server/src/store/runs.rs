//! Runs and their step records: what the API shows and what a resumed run keeps.

use flows_engine::{RunStatus, StepRecord, StepStatus};
use sea_orm::{
    ColumnTrait, Condition, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Select, Set,
    sea_query::Expr,
};
use serde_json::{Value, json};

use super::{
    Store,
    entities::{runs, step_runs},
    now_ms,
    queue::WAITING,
    rfc3339,
};
use crate::error::Error;

/// Filters of the run list.
#[derive(Debug, Default, Clone)]
pub struct RunFilter {
    pub flow: Option<String>,
    pub status: Option<String>,
    /// Runs older than this id (ids sort by creation time).
    pub cursor: Option<String>,
    pub limit: u64,
}

fn json_text(v: &Option<String>) -> Value {
    v.as_deref()
        .and_then(|t| serde_json::from_str(t).ok())
        .unwrap_or(Value::Null)
}

/// A run as the API shows it in lists.
pub fn run_summary(r: &runs::Model) -> Value {
    let duration_ms = match (r.started_at, r.finished_at) {
        (Some(s), Some(f)) => json!(f - s),
        _ => Value::Null,
    };
    json!({
        "id": r.id, "flow": r.flow, "version": r.version, "status": r.status, "attempt": r.attempt,
        "parent": r.parent_run.as_ref().map(|p| json!({"run_id": p, "step": r.parent_step})),
        "created_at": rfc3339(r.created_at),
        "started_at": r.started_at.map(rfc3339),
        "finished_at": r.finished_at.map(rfc3339),
        "duration_ms": duration_ms,
        "error": r.error,
    })
}

pub fn step_json(s: &step_runs::Model) -> Value {
    json!({
        "step_id": s.step_id, "status": s.status,
        "input": json_text(&s.input), "output": json_text(&s.output), "error": s.error,
        "attempts": s.attempts, "started_at": rfc3339(s.started_at), "duration_ms": s.duration_ms,
    })
}

pub fn step_record(s: &step_runs::Model) -> Option<StepRecord> {
    Some(StepRecord {
        step_id: s.step_id.clone(),
        status: StepStatus::parse(&s.status)?,
        input: json_text(&s.input),
        output: s
            .output
            .as_deref()
            .and_then(|t| serde_json::from_str(t).ok()),
        error: s.error.clone(),
        attempts: s.attempts as u32,
        started_at: chrono::DateTime::from_timestamp_millis(s.started_at).unwrap_or_default(),
        duration_ms: s.duration_ms as u64,
    })
}

impl Store {
    pub async fn get_run(&self, id: &str) -> Result<Option<runs::Model>, Error> {
        Ok(runs::Entity::find_by_id(id.to_string())
            .one(&self.db)
            .await?)
    }

    pub async fn find_run_by_key(&self, key: &str) -> Result<Option<runs::Model>, Error> {
        Ok(runs::Entity::find()
            .filter(runs::Column::IdempotencyKey.eq(key))
            .one(&self.db)
            .await?)
    }

    pub async fn list_runs(&self, f: &RunFilter) -> Result<Vec<runs::Model>, Error> {
        Ok(list_runs_query(f).all(&self.db).await?)
    }

    /// `run`'s step records, oldest first, each with its input (see [`step_row`]: an input
    /// left out is the body of `run`'s trigger).
    pub async fn run_steps(&self, run: &runs::Model) -> Result<Vec<step_runs::Model>, Error> {
        let mut steps = step_runs::Entity::find()
            .filter(step_runs::Column::RunId.eq(run.id.as_str()))
            .order_by_asc(step_runs::Column::StartedAt)
            .all(&self.db)
            .await?;
        if steps.iter().any(|s| s.input.is_none()) {
            let body = serde_json::from_str::<Value>(&run.trigger)
                .ok()
                .and_then(|mut t| t.get_mut("body").map(Value::take))
                .unwrap_or(Value::Null);
            let body = serde_json::to_string(&body).ok();
            for s in steps.iter_mut().filter(|s| s.input.is_none()) {
                s.input = body.clone();
            }
        }
        Ok(steps)
    }

    pub async fn child_runs(&self, run_id: &str) -> Result<Vec<runs::Model>, Error> {
        Ok(runs::Entity::find()
            .filter(runs::Column::ParentRun.eq(run_id))
            .order_by_asc(runs::Column::Id)
            .all(&self.db)
            .await?)
    }

    /// Record one finished step (replacing an earlier record of the same step, e.g. on retry).
    /// `durable`: return once it is committed; otherwise once it is queued for the next group
    /// commit (which the run's end, or its next durable record, waits for).
    pub async fn record_step(
        &self,
        run_id: &str,
        rec: &StepRecord,
        durable: bool,
    ) -> Result<(), Error> {
        // Through the step writer: concurrent runs share one commit.
        self.write_step_row(step_row(run_id, rec, None), durable)
            .await
    }

    /// Queue a failed run again as a new attempt: its failed and skipped steps are forgotten,
    /// its succeeded steps are kept and not run again. `None` if the run is not failed.
    pub async fn retry_run(&self, id: &str) -> Result<Option<runs::Model>, Error> {
        let txn = self.begin_write().await?;
        let Some(run) = runs::Entity::find_by_id(id.to_string()).one(&txn).await? else {
            return Ok(None);
        };
        if run.status != "failed" {
            return Ok(None);
        }
        step_runs::Entity::delete_many()
            .filter(step_runs::Column::RunId.eq(id))
            .filter(step_runs::Column::Status.is_in(["failed", "skipped"]))
            .exec(&txn)
            .await?;
        let mut row: runs::ActiveModel = run.clone().into();
        row.status = Set("queued".into());
        row.attempt = Set(run.attempt + 1);
        row.error = Set(None);
        row.output = Set(None);
        row.worker = Set(None);
        row.lease_until = Set(None);
        row.finished_at = Set(None);
        row.available_at = Set(now_ms());
        let updated = sea_orm::ActiveModelTrait::update(row, &txn).await?;
        txn.commit().await?;
        Ok(Some(updated))
    }
}

/// Runs newest first. Only queued, running and failed runs are indexed by status (the two
/// partial indexes of `m0007`); a filter on one of them states the index's predicate word for
/// word so that SQLite can use it, while the common states are found walking back by id.
fn list_runs_query(f: &RunFilter) -> Select<runs::Entity> {
    let mut cond = Condition::all();
    if let Some(flow) = &f.flow {
        cond = cond.add(runs::Column::Flow.eq(flow.as_str()));
    }
    if let Some(status) = &f.status {
        cond = cond.add(runs::Column::Status.eq(status.as_str()));
        match RunStatus::parse(status) {
            Some(RunStatus::Queued | RunStatus::Running) => cond = cond.add(Expr::cust(WAITING)),
            Some(RunStatus::Failed) => cond = cond.add(Expr::cust(FAILED)),
            _ => {}
        }
    }
    if let Some(cursor) = &f.cursor {
        cond = cond.add(runs::Column::Id.lt(cursor.as_str()));
    }
    runs::Entity::find()
        .filter(cond)
        .order_by_desc(runs::Column::Id)
        .limit(f.limit)
}

/// The predicate of `runs_failed`.
const FAILED: &str = "status = 'failed'";

/// The row of a step record. An input equal to the run's trigger body (`body`, where the caller
/// has it at hand: a first step's input is that body) is left out, and read back from the
/// trigger by [`Store::run_steps`]; storing it again was a fifth of the bytes a webhook
/// commits. A redacted input differs from the body, so it is always stored.
pub fn step_row(run_id: &str, rec: &StepRecord, body: Option<&Value>) -> step_runs::ActiveModel {
    let text = |v: &Value| serde_json::to_string(v).ok();
    let input = match body {
        Some(body) if *body == rec.input => None,
        _ => text(&rec.input),
    };
    step_runs::ActiveModel {
        run_id: Set(run_id.to_string()),
        step_id: Set(rec.step_id.clone()),
        status: Set(rec.status.as_str().to_string()),
        input: Set(input),
        output: Set(rec.output.as_ref().and_then(text)),
        error: Set(rec.error.clone()),
        attempts: Set(rec.attempts as i32),
        started_at: Set(rec.started_at.timestamp_millis()),
        duration_ms: Set(rec.duration_ms as i64),
    }
}

#[cfg(test)]
mod tests {
    use sea_orm::{ConnectionTrait, DatabaseBackend, QueryTrait, Statement};

    use super::*;
    use crate::store::testing::{plan, temp_store};

    async fn rows(store: &Store, sql: &str) -> Vec<sea_orm::QueryResult> {
        let stmt = Statement::from_string(DatabaseBackend::Sqlite, sql.to_string());
        store.db.query_all_raw(stmt).await.unwrap()
    }

    async fn insert_run(store: &Store, id: &str, key: Option<&str>) -> Result<(), sea_orm::DbErr> {
        let stmt = Statement::from_sql_and_values(
            DatabaseBackend::Sqlite,
            "INSERT INTO runs (id, flow, version, status, attempt, trigger, depth, idempotency_key, \
             available_at, created_at) VALUES (?, 'f', 1, 'queued', 1, '{}', 0, ?, 0, 0)",
            [id.into(), key.map(str::to_string).into()],
        );
        store.db.execute_raw(stmt).await.map(|_| ())
    }

    /// A first step's input that is its run's trigger body is stored once, in the trigger, and
    /// read back with the step; any other input (here a redacted one) is stored as it is.
    #[tokio::test]
    async fn a_first_steps_input_is_read_back_from_its_trigger() {
        let (_dir, store) = temp_store().await;
        let body = json!({"order": 7, "items": [{"sku": "a"}, {"sku": "b"}], "note": "é"});
        let trigger = json!({"method": "POST", "path": "shop", "body": body}).to_string();
        let stmt = Statement::from_sql_and_values(
            DatabaseBackend::Sqlite,
            "INSERT INTO runs (id, flow, version, status, attempt, trigger, depth, \
             available_at, created_at) VALUES ('run_1', 'f', 1, 'succeeded', 1, ?, 0, 0, 0)",
            [trigger.into()],
        );
        store.db.execute_raw(stmt).await.unwrap();
        let rec = |id: &str, input: &Value, at: i64| StepRecord {
            step_id: id.into(),
            status: StepStatus::Succeeded,
            input: input.clone(),
            output: Some(json!({"ok": true})),
            error: None,
            attempts: 1,
            started_at: chrono::DateTime::from_timestamp_millis(at).unwrap(),
            duration_ms: 1,
        };
        let redacted = json!({"order": 7, "items": "[redacted]", "note": "é"});
        let first = step_row("run_1", &rec("first", &body, 1), Some(&body));
        let second = step_row("run_1", &rec("second", &redacted, 2), Some(&body));
        let unknown = step_row("run_1", &rec("third", &body, 3), None);
        for row in [first, second, unknown] {
            store.write_step_row(row, true).await.unwrap();
        }
        let stored: Vec<Option<String>> =
            rows(&store, "SELECT input FROM step_runs ORDER BY started_at")
                .await
                .iter()
                .map(|r| r.try_get("", "input").unwrap())
                .collect();
        assert_eq!(stored[0], None, "the trigger's body is not stored again");
        assert_eq!(stored[1].as_deref(), Some(redacted.to_string().as_str()));
        assert_eq!(stored[2].as_deref(), Some(body.to_string().as_str()));
        let run = store.get_run("run_1").await.unwrap().unwrap();
        let inputs: Vec<Value> = store
            .run_steps(&run)
            .await
            .unwrap()
            .iter()
            .map(|s| step_json(s)["input"].clone())
            .collect();
        assert_eq!(inputs, [body.clone(), redacted, body]);
    }

    /// A webhook's run has no idempotency key and no parent run; those indexes hold only the
    /// runs that have one (they are written in the transaction every webhook waits for), the
    /// lookups by key and by parent still use them, and a key is still unique.
    #[tokio::test]
    async fn keys_and_parents_are_indexed_only_where_present() {
        let (_dir, store) = temp_store().await;
        let partial: Vec<(String, i64)> = rows(&store, "PRAGMA index_list('runs')")
            .await
            .iter()
            .map(|r| {
                (
                    r.try_get("", "name").unwrap(),
                    r.try_get("", "partial").unwrap(),
                )
            })
            .collect();
        for index in ["runs_by_key", "runs_by_parent"] {
            assert!(partial.contains(&(index.to_string(), 1)), "{partial:?}");
        }
        for (query, index) in [
            (
                runs::Entity::find().filter(runs::Column::IdempotencyKey.eq("k")),
                "runs_by_key",
            ),
            (
                runs::Entity::find().filter(runs::Column::ParentRun.eq("run_x")),
                "runs_by_parent",
            ),
        ] {
            let plan = plan(&store, query.build(DatabaseBackend::Sqlite)).await;
            assert!(plan.iter().any(|l| l.contains(index)), "{plan:?}");
        }
        insert_run(&store, "run_a", None).await.unwrap();
        insert_run(&store, "run_b", None).await.unwrap();
        insert_run(&store, "run_c", Some("key")).await.unwrap();
        assert!(insert_run(&store, "run_d", Some("key")).await.is_err());
    }

    /// The queue's index holds queued and running runs only, the retention index ended runs
    /// only: a run that ends as it is accepted writes neither, a run that starts running writes
    /// only the first. The run lists still find queued, running and failed runs by index.
    #[tokio::test]
    async fn only_waiting_runs_are_in_the_queue_index() {
        let (_dir, store) = temp_store().await;
        let count = |index: &'static str, predicate: &'static str| {
            let store = store.clone();
            async move {
                let sql =
                    format!("SELECT COUNT(*) AS n FROM runs INDEXED BY {index} WHERE {predicate}");
                let n: i64 = rows(&store, &sql).await[0].try_get("", "n").unwrap();
                n
            }
        };
        for (id, status, finished_at) in [
            ("run_1", "queued", "NULL"),
            ("run_2", "running", "NULL"),
            ("run_3", "succeeded", "5"),
            ("run_4", "failed", "6"),
            ("run_5", "filtered", "7"),
        ] {
            rows(
                &store,
                &format!(
                    "INSERT INTO runs (id, flow, version, status, attempt, trigger, depth, \
                     available_at, created_at, finished_at) \
                     VALUES ('{id}', 'f', 1, '{status}', 1, '{{}}', 0, 0, 0, {finished_at})"
                ),
            )
            .await;
        }
        assert_eq!(count("runs_waiting", WAITING).await, 2);
        assert_eq!(count("runs_ended", "finished_at IS NOT NULL").await, 3);
        assert_eq!(count("runs_failed", FAILED).await, 1);
        for (status, index) in [
            ("queued", "runs_waiting"),
            ("running", "runs_waiting"),
            ("failed", "runs_failed"),
        ] {
            let filter = RunFilter {
                status: Some(status.into()),
                limit: 50,
                ..Default::default()
            };
            let plan = plan(
                &store,
                list_runs_query(&filter).build(DatabaseBackend::Sqlite),
            )
            .await;
            assert!(plan.iter().any(|l| l.contains(index)), "{status}: {plan:?}");
            let found = store.list_runs(&filter).await.unwrap();
            assert_eq!(found.len(), 1, "{status}");
            assert_eq!(found[0].status, status);
        }
    }
}
