//! Executions and their per-step logs in an embedded database (`redb`) in
//! the state directory. One writer thread commits what the executor hands
//! it in batches (group commit, each durable), so that a hundred runs at
//! once cost a few commits, not one per step, and nothing blocks the
//! async runtime. A run the process did not finish (a crash, SIGKILL) is
//! found `running` at the next start and marked `interrupted`, with the
//! steps it finished.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use serde_json::Value;

const EXECUTIONS: TableDefinition<'_, &str, &str> = TableDefinition::new("executions");

/// Where a run is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Running,
    WaitingApproval,
    Succeeded,
    Failed,
    Stopped,
    Interrupted,
}

impl Status {
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Status::Succeeded | Status::Failed | Status::Stopped | Status::Interrupted
        )
    }
}

/// Where a step is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    Pending,
    Running,
    WaitingApproval,
    Succeeded,
    Skipped,
    /// Failed, and the run went on (`on_error: continue`).
    Failed,
    /// Failed, and its `on_error` handler answered for it.
    Handled,
    Cancelled,
}

impl StepStatus {
    /// Whether the step is over such that steps needing it may start.
    pub fn is_settled(self) -> bool {
        matches!(
            self,
            StepStatus::Succeeded | StepStatus::Skipped | StepStatus::Failed | StepStatus::Handled
        )
    }
}

/// A failure, as data: `kind` is what callers and `retry_if` match.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepError {
    pub kind: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<i64>,
}

impl StepError {
    pub fn new(kind: &str, message: impl Into<String>) -> StepError {
        StepError {
            kind: kind.to_owned(),
            message: message.into(),
            status: None,
            code: None,
        }
    }
}

/// One step's log.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StepRecord {
    pub status: StepStatus,
    #[serde(default)]
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<f64>,
    /// The inputs as rendered (secrets never among them), bounded.
    #[serde(default)]
    pub input: Value,
    /// The output, bounded.
    #[serde(default)]
    pub output: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<StepError>,
    /// `log` steps' lines and notes (retries, approvals).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

impl StepRecord {
    pub fn pending() -> StepRecord {
        StepRecord {
            status: StepStatus::Pending,
            attempts: 0,
            started_ms: None,
            finished_ms: None,
            duration_ms: None,
            input: Value::Null,
            output: Value::Null,
            error: None,
            notes: Vec::new(),
        }
    }
}

/// One execution.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ExecutionRecord {
    pub id: String,
    pub workflow: String,
    pub status: Status,
    pub inputs: Value,
    /// Who started it (the gateway's `_meta.llmbasedos/caller`), passed on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caller: Option<Value>,
    pub started_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<StepError>,
    #[serde(default)]
    pub outputs: Value,
    /// The run's context (what `set` and `outputs` wrote), for resuming.
    #[serde(default)]
    pub context: Value,
    /// Step outputs by id (unbounded: what a resumed run continues with).
    #[serde(default)]
    pub results: BTreeMap<String, Value>,
    /// Steps in the workflow's order.
    pub order: Vec<String>,
    pub steps: BTreeMap<String, StepRecord>,
}

/// A run's current record as JSON, taken when the writer commits (so a
/// run's many changes between two commits cost one serialisation).
pub type Source = Arc<dyn Fn() -> Option<String> + Send + Sync>;

enum Command {
    Put(String, String),
    Live(String, Source),
    Flush(mpsc::Sender<()>),
}

/// What the next commit writes for one id.
enum Pending {
    Json(String),
    Live(Source),
}

/// The database and its writer thread.
#[derive(Clone, Debug)]
pub struct Store {
    db: Arc<Database>,
    writer: mpsc::Sender<Command>,
}

/// Why the store cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("the execution store {path}: {reason}")]
pub struct StoreError {
    pub path: String,
    pub reason: String,
}

impl Store {
    /// Opens (or creates) the store at `path`, marks the runs left
    /// running `interrupted`, and keeps at most `max_executions`: the
    /// oldest finished runs are dropped, at the open and as new runs are
    /// committed (a run still going is never dropped).
    pub fn open(path: &Path, max_executions: usize) -> Result<(Store, usize), StoreError> {
        let error = |reason: String| StoreError {
            path: path.display().to_string(),
            reason,
        };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| error(e.to_string()))?;
        }
        let db = Database::create(path).map_err(|e| error(e.to_string()))?;
        let (interrupted, kept) = recover(&db, max_executions).map_err(|e| error(e.to_string()))?;
        let db = Arc::new(db);
        let (writer, commands) = mpsc::channel();
        let for_thread = db.clone();
        let mut bound = Bound {
            count: kept,
            max: max_executions,
        };
        std::thread::Builder::new()
            .name("agent-store".to_owned())
            .spawn(move || write_loop(&for_thread, &commands, &mut bound))
            .map_err(|e| error(e.to_string()))?;
        Ok((Store { db, writer }, interrupted))
    }

    /// Saves a record (asynchronously: committed with the next batch).
    pub fn put(&self, record: &ExecutionRecord) {
        match serde_json::to_string(record) {
            Ok(json) => {
                let _ = self.writer.send(Command::Put(record.id.clone(), json));
            }
            Err(error) => tracing::error!(%error, "cannot serialise an execution record"),
        }
    }

    /// Saves a live run's record: `source` gives its JSON when the next
    /// batch commits, so the record committed is the newest one and a run
    /// that changed several times since the last commit is serialised once.
    /// Durable no later than with [`Store::put`].
    pub fn put_live(&self, id: &str, source: Source) {
        let _ = self.writer.send(Command::Live(id.to_owned(), source));
    }

    /// Waits until everything put so far is committed (blocking).
    pub fn flush(&self) {
        let (done, wait) = mpsc::channel();
        if self.writer.send(Command::Flush(done)).is_ok() {
            let _ = wait.recv();
        }
    }

    /// One execution (blocking read).
    pub fn get(&self, id: &str) -> Result<Option<ExecutionRecord>, redb::Error> {
        let read = self.db.begin_read()?;
        let table = match read.open_table(EXECUTIONS) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(error) => return Err(error.into()),
        };
        Ok(table
            .get(id)?
            .and_then(|value| serde_json::from_str(value.value()).ok()))
    }

    /// Executions, newest first, of one workflow or all (blocking read).
    pub fn list(
        &self,
        workflow: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ExecutionRecord>, redb::Error> {
        let read = self.db.begin_read()?;
        let table = match read.open_table(EXECUTIONS) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(error) => return Err(error.into()),
        };
        let mut records: Vec<ExecutionRecord> = Vec::new();
        for entry in table.iter()? {
            let (_, value) = entry?;
            if let Ok(record) = serde_json::from_str::<ExecutionRecord>(value.value())
                && workflow.is_none_or(|w| record.workflow == w)
            {
                records.push(record);
            }
        }
        records.sort_by(|a, b| b.started_ms.cmp(&a.started_ms).then(b.id.cmp(&a.id)));
        records.truncate(limit);
        Ok(records)
    }
}

/// How many records the table holds, and how many it may.
struct Bound {
    count: usize,
    max: usize,
}

/// Marks the runs left running `interrupted` and drops the oldest past
/// `max_executions`; gives how many were interrupted and how many are kept.
fn recover(db: &Database, max_executions: usize) -> Result<(usize, usize), redb::Error> {
    let write = db.begin_write()?;
    let mut interrupted = 0;
    let kept;
    {
        let mut table = write.open_table(EXECUTIONS)?;
        let mut changed = Vec::new();
        let mut all: Vec<(u64, String)> = Vec::new();
        for entry in table.iter()? {
            let (key, value) = entry?;
            let Ok(mut record) = serde_json::from_str::<ExecutionRecord>(value.value()) else {
                continue;
            };
            all.push((record.started_ms, key.value().to_owned()));
            if !record.status.is_final() {
                record.status = Status::Interrupted;
                record.finished_ms = Some(crate::now_ms());
                record.error = Some(StepError::new(
                    "interrupted",
                    "the agent stopped during the run (crash or kill); the steps it finished are kept; mcp.agent.resumeWorkflow continues after them",
                ));
                for step in record.steps.values_mut() {
                    if matches!(
                        step.status,
                        StepStatus::Running | StepStatus::WaitingApproval
                    ) {
                        step.status = StepStatus::Cancelled;
                    }
                }
                changed.push(record);
            }
        }
        for record in &changed {
            if let Ok(json) = serde_json::to_string(record) {
                table.insert(record.id.as_str(), json.as_str())?;
            }
            interrupted += 1;
        }
        if all.len() > max_executions {
            all.sort();
            for (_, key) in &all[..all.len() - max_executions] {
                table.remove(key.as_str())?;
            }
        }
        kept = all.len().min(max_executions);
    }
    write.commit()?;
    Ok((interrupted, kept))
}

fn write_loop(db: &Database, commands: &mpsc::Receiver<Command>, bound: &mut Bound) {
    while let Ok(first) = commands.recv() {
        let mut puts: BTreeMap<String, Pending> = BTreeMap::new();
        let mut flushes = Vec::new();
        let mut take = |command| match command {
            Command::Put(id, json) => {
                puts.insert(id, Pending::Json(json));
            }
            Command::Live(id, source) => {
                puts.insert(id, Pending::Live(source));
            }
            Command::Flush(done) => flushes.push(done),
        };
        take(first);
        while let Ok(command) = commands.try_recv() {
            take(command);
        }
        if !puts.is_empty()
            && let Err(error) = commit(db, &puts, bound)
        {
            tracing::error!(%error, "cannot save executions");
        }
        for done in flushes {
            let _ = done.send(());
        }
    }
}

fn commit(
    db: &Database,
    puts: &BTreeMap<String, Pending>,
    bound: &mut Bound,
) -> Result<(), redb::Error> {
    let write = db.begin_write()?;
    let mut count = bound.count;
    {
        let mut table = write.open_table(EXECUTIONS)?;
        for (id, pending) in puts {
            let taken;
            let json = match pending {
                Pending::Json(json) => json.as_str(),
                Pending::Live(source) => match source() {
                    Some(json) => {
                        taken = json;
                        taken.as_str()
                    }
                    None => continue,
                },
            };
            if table.insert(id.as_str(), json)?.is_none() {
                count += 1;
            }
        }
        if count > bound.max {
            count -= prune_oldest(&mut table, count - bound.max)?;
        }
    }
    write.commit()?;
    bound.count = count;
    Ok(())
}

/// Removes up to `excess` of the oldest finished runs (ids are
/// time-ordered, so the table's order is the start order); a run still
/// going is skipped. Looks at a bounded number of records, so a store full
/// of long runs costs a commit little. Gives how many were removed.
fn prune_oldest(
    table: &mut redb::Table<'_, &'static str, &'static str>,
    excess: usize,
) -> Result<usize, redb::Error> {
    let mut doomed = Vec::new();
    for entry in table.iter()?.take(excess + 64) {
        let (key, value) = entry?;
        let finished = serde_json::from_str::<ExecutionRecord>(value.value())
            .map_or(true, |record| record.status.is_final());
        if finished {
            doomed.push(key.value().to_owned());
            if doomed.len() == excess {
                break;
            }
        }
    }
    for key in &doomed {
        table.remove(key.as_str())?;
    }
    Ok(doomed.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    fn record(id: &str) -> ExecutionRecord {
        ExecutionRecord {
            id: id.to_owned(),
            workflow: "w".to_owned(),
            status: Status::Running,
            inputs: Value::Null,
            caller: None,
            started_ms: 1,
            finished_ms: None,
            error: None,
            outputs: Value::Null,
            context: Value::Null,
            results: BTreeMap::new(),
            order: vec!["a".to_owned()],
            steps: BTreeMap::from([("a".to_owned(), StepRecord::pending())]),
        }
    }

    /// A long-running agent keeps at most `max_executions`: the oldest
    /// finished runs go as new ones are committed; a run still going,
    /// however old, stays.
    #[test]
    fn the_store_stays_bounded_while_it_runs_and_keeps_runs_still_going() {
        let dir = tempfile::tempdir().expect("dir");
        let (store, _) = Store::open(&dir.path().join("executions.redb"), 3).expect("opens");
        let mut still_going = record("000000000001-going");
        still_going.started_ms = 1;
        store.put(&still_going);
        for n in 2..=9u64 {
            let mut done = record(&format!("{n:012x}-done"));
            done.started_ms = n;
            done.status = Status::Succeeded;
            store.put(&done);
            store.flush();
        }
        let kept: Vec<String> = store
            .list(None, 100)
            .expect("lists")
            .into_iter()
            .map(|record| record.id)
            .collect();
        assert_eq!(
            kept,
            [
                "000000000009-done",
                "000000000008-done",
                "000000000001-going"
            ]
        );
    }

    /// A live run's record is serialised at commit time: what is committed
    /// is its newest state; a run left running is `interrupted` at the next
    /// open, with the steps it finished.
    #[test]
    fn a_live_record_commits_its_newest_state_and_survives_as_interrupted() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("executions.redb");
        let (store, interrupted) = Store::open(&path, 100).expect("opens");
        assert_eq!(interrupted, 0);
        let live = Arc::new(Mutex::new(record("x1")));
        let source = live.clone();
        let source: Source =
            Arc::new(move || serde_json::to_string(&*source.lock().expect("lock")).ok());
        store.put_live("x1", source.clone());
        if let Some(step) = live.lock().expect("lock").steps.get_mut("a") {
            step.status = StepStatus::Succeeded;
        }
        store.put_live("x1", source);
        store.flush();
        let stored = store.get("x1").expect("reads").expect("stored");
        assert_eq!(stored.steps["a"].status, StepStatus::Succeeded);
        assert_eq!(stored.status, Status::Running);
        drop(store);
        // Reopened as after a crash: the writer thread of the first store
        // holds the file until its channel closes.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let (store, interrupted) = loop {
            match Store::open(&path, 100) {
                Ok(opened) => break opened,
                Err(error) if std::time::Instant::now() < deadline => {
                    let _ = error;
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                Err(error) => panic!("{error}"),
            }
        };
        assert_eq!(interrupted, 1);
        let stored = store.get("x1").expect("reads").expect("stored");
        assert_eq!(stored.status, Status::Interrupted);
        assert_eq!(stored.steps["a"].status, StepStatus::Succeeded);
    }
}
