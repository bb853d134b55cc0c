//! The job history: every job and its outcome in one redb database
//! (`history.redb` in the state directory), under our own ids, which never
//! restart (rclone's restart at 1 with each rcd, and its finished jobs
//! vanish after a minute).
//!
//! Each write is one redb transaction, durable when it returns: a SIGKILL
//! at any moment leaves the last committed record of every job. At open,
//! a job still recorded as queued or running belonged to a server that
//! died; it is marked `interrupted`, keeping the numbers of what was done.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use crate::job::JobRecord;

const JOBS: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("jobs");
const META: TableDefinition<'_, &str, u64> = TableDefinition::new("meta");
const NEXT_ID: &str = "next_id";

#[derive(Debug, thiserror::Error)]
#[error("the job history ({path}): {message}")]
pub struct HistoryError {
    path: String,
    message: String,
}

#[derive(Debug)]
pub struct History {
    database: Database,
    path: String,
}

impl History {
    /// Opens (or creates) the database in `state_dir` and marks the jobs a
    /// dead server left running as interrupted.
    pub fn open(state_dir: &Path) -> Result<History, HistoryError> {
        let path = state_dir.join("history.redb");
        let display = path.display().to_string();
        let error = |message: String| HistoryError {
            path: display.clone(),
            message,
        };
        std::fs::create_dir_all(state_dir).map_err(|e| error(e.to_string()))?;
        let database = Database::create(&path).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => error(
                "another sync server holds this history; stop it, or give this one another state_dir"
                    .to_owned(),
            ),
            other => error(other.to_string()),
        })?;
        let history = History {
            database,
            path: display,
        };
        {
            let write = history.begin()?;
            {
                write.open_table(JOBS).map_err(|e| history.error(e))?;
                write.open_table(META).map_err(|e| history.error(e))?;
            }
            write.commit().map_err(|e| history.error(e))?;
        }
        let now = now_seconds();
        for mut job in history.list()? {
            if !job.state.is_final() {
                job.interrupt(
                    now,
                    "the sync server stopped while the job ran (it was killed or the machine restarted)",
                );
                history.put(&job)?;
            }
        }
        Ok(history)
    }

    fn error(&self, error: impl std::fmt::Display) -> HistoryError {
        HistoryError {
            path: self.path.clone(),
            message: error.to_string(),
        }
    }

    fn begin(&self) -> Result<redb::WriteTransaction, HistoryError> {
        self.database.begin_write().map_err(|e| self.error(e))
    }

    /// A fresh id, never given before.
    pub fn next_id(&self) -> Result<u64, HistoryError> {
        let write = self.begin()?;
        let id = {
            let mut meta = write.open_table(META).map_err(|e| self.error(e))?;
            let id = meta
                .get(NEXT_ID)
                .map_err(|e| self.error(e))?
                .map_or(1, |value| value.value());
            meta.insert(NEXT_ID, id + 1).map_err(|e| self.error(e))?;
            id
        };
        write.commit().map_err(|e| self.error(e))?;
        Ok(id)
    }

    pub fn put(&self, job: &JobRecord) -> Result<(), HistoryError> {
        let bytes = serde_json::to_vec(job).map_err(|e| self.error(e))?;
        let write = self.begin()?;
        {
            let mut jobs = write.open_table(JOBS).map_err(|e| self.error(e))?;
            jobs.insert(job.number, bytes.as_slice())
                .map_err(|e| self.error(e))?;
        }
        write.commit().map_err(|e| self.error(e))
    }

    pub fn get(&self, number: u64) -> Result<Option<JobRecord>, HistoryError> {
        let read = self.database.begin_read().map_err(|e| self.error(e))?;
        let jobs = read.open_table(JOBS).map_err(|e| self.error(e))?;
        let Some(value) = jobs.get(number).map_err(|e| self.error(e))? else {
            return Ok(None);
        };
        serde_json::from_slice(value.value())
            .map(Some)
            .map_err(|e| self.error(e))
    }

    /// Every job, newest first.
    pub fn list(&self) -> Result<Vec<JobRecord>, HistoryError> {
        let read = self.database.begin_read().map_err(|e| self.error(e))?;
        let jobs = read.open_table(JOBS).map_err(|e| self.error(e))?;
        let mut all = Vec::new();
        for entry in jobs.iter().map_err(|e| self.error(e))?.rev() {
            let (_, value) = entry.map_err(|e| self.error(e))?;
            match serde_json::from_slice::<JobRecord>(value.value()) {
                Ok(job) => all.push(job),
                Err(error) => tracing::warn!(%error, "an unreadable job record is skipped"),
            }
        }
        Ok(all)
    }

    /// Removes finished jobs older than `max_age` and beyond the newest
    /// `max_jobs`; returns how many went.
    pub fn prune(&self, max_age: Duration, max_jobs: usize) -> Result<usize, HistoryError> {
        let cutoff = now_seconds().saturating_sub(max_age.as_secs());
        let mut finished = 0;
        let mut doomed = Vec::new();
        for job in self.list()? {
            if !job.state.is_final() {
                continue;
            }
            finished += 1;
            if finished > max_jobs || job.ended.unwrap_or(job.created) < cutoff {
                doomed.push(job.number);
            }
        }
        if doomed.is_empty() {
            return Ok(0);
        }
        let write = self.begin()?;
        {
            let mut jobs = write.open_table(JOBS).map_err(|e| self.error(e))?;
            for number in &doomed {
                jobs.remove(*number).map_err(|e| self.error(e))?;
            }
        }
        write.commit().map_err(|e| self.error(e))?;
        Ok(doomed.len())
    }
}

pub fn now_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::{JobSpec, JobState, Mode};

    fn spec() -> JobSpec {
        JobSpec {
            name: None,
            prefix: "job".to_owned(),
            mode: Mode::Copy,
            source: "/a".to_owned(),
            destination: "/b".to_owned(),
            dry_run: false,
            filters: Default::default(),
            bandwidth_limit: None,
            options: Default::default(),
        }
    }

    #[test]
    fn ids_never_repeat_running_jobs_become_interrupted_and_pruning_keeps_the_newest() {
        let dir = tempfile::tempdir().expect("tempdir");
        let history = History::open(dir.path()).expect("open");
        let first = history.next_id().expect("id");
        let mut running = JobRecord::new(first, spec(), 100);
        running.state = JobState::Running;
        running.stats.bytes = 42;
        history.put(&running).expect("put");
        let mut done = JobRecord::new(history.next_id().expect("id"), spec(), 100);
        done.state = JobState::Succeeded;
        done.ended = Some(now_seconds());
        history.put(&done).expect("put");
        drop(history);

        let history = History::open(dir.path()).expect("reopen");
        let again = history.get(first).expect("get").expect("kept");
        assert_eq!(again.state, JobState::Interrupted);
        assert_eq!(again.stats.bytes, 42, "what was done is kept");
        assert!(history.next_id().expect("id") > done.number);
        for _ in 0..5 {
            let mut old = JobRecord::new(history.next_id().expect("id"), spec(), 1);
            old.state = JobState::Failed;
            old.ended = Some(now_seconds());
            history.put(&old).expect("put");
        }
        let pruned = history.prune(Duration::from_secs(3600), 3).expect("prune");
        assert_eq!(pruned, 4, "7 finished, 3 kept");
        let left: Vec<u64> = history
            .list()
            .expect("list")
            .iter()
            .map(|job| job.number)
            .collect();
        assert_eq!(left.len(), 3);
        assert!(
            left.windows(2).all(|pair| pair[0] > pair[1]),
            "newest first"
        );

        // By age: a job that ended two days ago goes with a day's limit,
        // however few jobs there are; a running one stays whatever its age.
        let mut aged = JobRecord::new(history.next_id().expect("id"), spec(), 1);
        aged.state = JobState::Succeeded;
        aged.ended = Some(now_seconds() - 2 * 86_400);
        history.put(&aged).expect("put");
        let mut old_but_running = JobRecord::new(history.next_id().expect("id"), spec(), 1);
        old_but_running.state = JobState::Running;
        history.put(&old_but_running).expect("put");
        let pruned = history
            .prune(Duration::from_secs(86_400), 1000)
            .expect("prune by age");
        assert_eq!(pruned, 1, "only the aged finished job");
        assert!(history.get(aged.number).expect("get").is_none());
        assert!(history.get(old_but_running.number).expect("get").is_some());
        assert_eq!(history.list().expect("list").len(), 4);
    }
}
