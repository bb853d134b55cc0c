//! The engine: jobs from request to history. It owns the supervised rcd,
//! the history and the running jobs, on **its own runtime thread**:
//! `server_kit::run` builds the server before its runtime exists, and the
//! rcd must be supervised from the start (the scheduler, and the rcd's
//! `PR_SET_PDEATHSIG`, which fires when the forking thread ends, want a
//! thread that lives as long as the process). Handlers call in through
//! [`Engine`], whose methods run their work on that runtime.
//!
//! A job on the rc API runs in its own stats group (`_group: job/<n>`), so
//! two jobs never mix their numbers; it is polled every 200 ms (sooner at first) and
//! its record written to the history at each change of state and every few
//! seconds while it runs. A job whose rcd died (or was replaced by a newer
//! start) is `interrupted` with what it had done. `check` is such a job
//! too (`operations/check`) where rclone has that call, 1.63 and later;
//! on older rclone (1.60, Debian 12) it runs as a supervised
//! `rclone check` child ([`crate::rcd::check_runner`] decides).
//!
//! While a job runs the engine holds a connection to the server's own
//! socket: server-kit exits idle only without connections, so a
//! socket-activated server is not stopped under a running job.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{Map, Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, NamedJob, parse_schedule};
use crate::history::{History, HistoryError, now_seconds};
use crate::job::{CheckSummary, FileProgress, Filters, JobRecord, JobSpec, JobState, Mode, Stats};
use crate::paths::{Confinement, Refusal, parse_arguments, valid_bandwidth};
use crate::rc::{RcCall, RcClient, RcError};
use crate::rcd::{CheckRunner, Rcd, RcloneSettings, check_runner};

/// How often a running job is asked for: its end is seen at most this late.
const POLL: Duration = Duration::from_millis(200);
const PERSIST_EVERY: Duration = Duration::from_secs(3);
const RCD_WAIT: Duration = Duration::from_secs(15);
const STOP_WAIT: Duration = Duration::from_secs(30);
/// Transfers listed per job in a status.
const TRANSFERRING_SHOWN: usize = 32;

/// The engine's errors; the handler layer maps each kind to the wire.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("{0}")]
    Refused(#[from] Refusal),
    #[error("{0}")]
    InvalidValue(String),
    #[error("no job with id {0:?}; the job history (listing the jobs) shows the known ones")]
    UnknownJobId(String),
    #[error("no named job {name:?}: {known}")]
    UnknownNamedJob { name: String, known: String },
    #[error("{0}")]
    RcloneUnavailable(String),
    #[error("{0}")]
    Rclone(String),
    #[error("{0}")]
    History(#[from] HistoryError),
    #[error("the sync engine stopped")]
    EngineGone,
}

impl SyncError {
    pub fn kind(&self) -> &'static str {
        match self {
            SyncError::Refused(refusal) => refusal.kind(),
            SyncError::InvalidValue(_) => "invalid",
            SyncError::UnknownJobId(_) => "unknown_job",
            SyncError::UnknownNamedJob { .. } => "unknown_named_job",
            SyncError::RcloneUnavailable(_) => "rclone_unavailable",
            SyncError::Rclone(_) => "rclone_failed",
            SyncError::History(_) => "history",
            SyncError::EngineGone => "internal",
        }
    }
}

/// A job as asked for: a named job, or the ends and options.
#[derive(Debug, Clone, Default)]
pub struct JobRequest {
    pub job: Option<String>,
    pub source: Option<String>,
    pub destination: Option<String>,
    pub mode: Mode,
    pub dry_run: bool,
    pub filters: Filters,
    pub bandwidth_limit: Option<String>,
    pub job_id_prefix: Option<String>,
    pub rclone_args: Vec<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Remote {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub destination_allowed: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct NamedJobView {
    pub name: String,
    #[serde(flatten)]
    pub job: NamedJob,
}

struct Live {
    record: watch::Sender<JobRecord>,
    stop: CancellationToken,
}

struct Inner {
    config: Config,
    settings: RcloneSettings,
    rcd: Arc<Rcd>,
    history: Arc<History>,
    live: Mutex<HashMap<u64, Live>>,
    keepalive: Mutex<(usize, Option<std::os::unix::net::UnixStream>)>,
    own_socket: Mutex<Option<PathBuf>>,
}

/// The handle the handlers hold.
#[derive(Clone)]
pub struct Engine {
    runtime: tokio::runtime::Handle,
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").finish_non_exhaustive()
    }
}

impl Engine {
    /// Opens the history (marking what a dead server left running as
    /// interrupted), starts the engine's thread, the rcd and, when
    /// configured, the scheduler.
    pub fn start(config: Config) -> Result<Engine, SyncError> {
        let history = Arc::new(History::open(&config.state_dir)?);
        match history.prune(config.max_age, config.max_jobs) {
            Ok(0) => {}
            Ok(pruned) => tracing::info!(pruned, "old jobs pruned from the history"),
            Err(error) => tracing::warn!(%error, "cannot prune the history"),
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("sync-engine")
            .enable_all()
            .build()
            .map_err(|error| SyncError::Rclone(format!("cannot start the engine: {error}")))?;
        let handle = runtime.handle().clone();
        std::thread::Builder::new()
            .name("sync-engine".to_owned())
            .spawn(move || runtime.block_on(std::future::pending::<()>()))
            .map_err(|error| SyncError::Rclone(format!("cannot start the engine: {error}")))?;
        let runtime_dir =
            std::env::temp_dir().join(format!("llmbasedos-sync-{}", std::process::id()));
        let settings = RcloneSettings {
            binary: config.rclone_binary.clone(),
            config: config.rclone_config.clone(),
            log_level: config.rclone_log_level.clone(),
            proxy: config.proxy.clone(),
            runtime_dir,
        };
        let rcd = {
            let _entered = handle.enter();
            Rcd::start(settings.clone(), CancellationToken::new())
        };
        let engine = Engine {
            runtime: handle,
            inner: Arc::new(Inner {
                config,
                settings,
                rcd,
                history,
                live: Mutex::new(HashMap::new()),
                keepalive: Mutex::new((0, None)),
                own_socket: Mutex::new(None),
            }),
        };
        if engine.inner.config.scheduler {
            engine.start_scheduler();
        }
        Ok(engine)
    }

    /// The server's own socket, for the keep-alive connection.
    pub fn set_own_socket(&self, path: Option<PathBuf>) {
        *self.inner.own_socket.lock().expect("lock") = path;
    }

    async fn on_engine<T: Send + 'static>(
        &self,
        work: impl std::future::Future<Output = Result<T, SyncError>> + Send + 'static,
    ) -> Result<T, SyncError> {
        self.runtime
            .spawn(work)
            .await
            .map_err(|_| SyncError::EngineGone)?
    }

    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> Result<T, SyncError> + Send + 'static,
    ) -> Result<T, SyncError> {
        self.runtime
            .spawn_blocking(work)
            .await
            .map_err(|_| SyncError::EngineGone)?
    }

    /// Whether rclone can run now, and if not why (for status and errors).
    pub fn rclone_problem(&self) -> Option<String> {
        match self.inner.rcd.state() {
            crate::rcd::RcdState::Unavailable(why) => Some(why),
            _ => None,
        }
    }

    /// The allowed remotes with their types; never an option of theirs.
    pub async fn list_remotes(&self) -> Result<Vec<Remote>, SyncError> {
        let inner = self.inner.clone();
        self.on_engine(async move { inner.remotes().await }).await
    }

    pub fn named_jobs(&self) -> Result<Vec<NamedJobView>, SyncError> {
        Ok(self
            .inner
            .named()?
            .iter()
            .map(|(name, job)| NamedJobView {
                name: name.clone(),
                job: job.clone(),
            })
            .collect())
    }

    /// Checks and starts a job; returns its first record and a way to
    /// follow it.
    pub async fn run(
        &self,
        request: JobRequest,
    ) -> Result<(JobRecord, watch::Receiver<JobRecord>), SyncError> {
        let engine = self.clone();
        self.on_engine(async move { engine.start_job(request).await })
            .await
    }

    pub async fn status(&self, id: &str) -> Result<JobRecord, SyncError> {
        let number = parse_id(id)?;
        if let Some(live) = self.inner.live.lock().expect("lock").get(&number) {
            return Ok(live.record.borrow().clone());
        }
        let inner = self.inner.clone();
        let record = self
            .blocking(move || Ok(inner.history.get(number)?))
            .await?;
        record
            .filter(|record| record.id() == id)
            .ok_or_else(|| SyncError::UnknownJobId(proto::text::echo(id).into_owned()))
    }

    /// Jobs newest first, from `cursor` (a job number), at most `limit`.
    pub async fn list(
        &self,
        state: Option<JobState>,
        limit: usize,
        cursor: Option<u64>,
    ) -> Result<(Vec<JobRecord>, Option<u64>), SyncError> {
        let inner = self.inner.clone();
        let mut all = self.blocking(move || Ok(inner.history.list()?)).await?;
        {
            let live = self.inner.live.lock().expect("lock");
            for record in &mut all {
                if let Some(running) = live.get(&record.number) {
                    *record = running.record.borrow().clone();
                }
            }
        }
        let mut page: Vec<JobRecord> = all
            .into_iter()
            .filter(|record| cursor.is_none_or(|cursor| record.number < cursor))
            .filter(|record| state.is_none_or(|state| record.state == state))
            .take(limit + 1)
            .collect();
        let next = if page.len() > limit {
            page.truncate(limit);
            page.last().map(|record| record.number)
        } else {
            None
        };
        Ok((page, next))
    }

    /// Asks a running job to stop; returns its record (final ones as they are).
    pub async fn stop(&self, id: &str) -> Result<JobRecord, SyncError> {
        let record = self.status(id).await?;
        let number = record.number;
        let mut receiver = {
            let live = self.inner.live.lock().expect("lock");
            match live.get(&number) {
                Some(running) => {
                    running.stop.cancel();
                    running.record.subscribe()
                }
                None => return Ok(record),
            }
        };
        let _ = tokio::time::timeout(STOP_WAIT, async {
            while !receiver.borrow_and_update().state.is_final() {
                if receiver.changed().await.is_err() {
                    break;
                }
            }
        })
        .await;
        self.status(id).await
    }

    /// Stops a job without waiting (a cancelled request's job).
    pub fn stop_soon(&self, number: u64) {
        if let Some(running) = self.inner.live.lock().expect("lock").get(&number) {
            running.stop.cancel();
        }
    }

    async fn start_job(
        &self,
        request: JobRequest,
    ) -> Result<(JobRecord, watch::Receiver<JobRecord>), SyncError> {
        let spec = self.inner.specify(request).await?;
        // Said at once rather than recorded as a failed job: nothing ran.
        self.inner
            .rcd
            .ready(RCD_WAIT)
            .await
            .map_err(SyncError::RcloneUnavailable)?;
        let inner = self.inner.clone();
        let number = {
            let inner = inner.clone();
            tokio::task::spawn_blocking(move || inner.history.next_id())
                .await
                .map_err(|_| SyncError::EngineGone)??
        };
        let mut record = JobRecord::new(number, spec, now_seconds());
        record.log_line(
            record.created,
            format!(
                "{} {} → {}{}",
                record.spec.mode.as_str(),
                record.spec.source,
                record.spec.destination,
                if record.spec.dry_run {
                    " (dry run)"
                } else {
                    ""
                }
            ),
        );
        inner.persist(&record).await?;
        let (sender, receiver) = watch::channel(record.clone());
        let stop = CancellationToken::new();
        inner.live.lock().expect("lock").insert(
            number,
            Live {
                record: sender.clone(),
                stop: stop.clone(),
            },
        );
        inner.hold();
        let worker = inner.clone();
        tokio::spawn(async move {
            let record = sender.borrow().clone();
            let finished = worker.run_job(record, &sender, stop).await;
            if let Err(error) = worker.persist(&finished).await {
                tracing::error!(%error, "cannot record the end of a job");
            }
            tracing::info!(job = %finished.id(), state = ?finished.state, "job ended");
            let (history, max_age, max_jobs) = (
                worker.history.clone(),
                worker.config.max_age,
                worker.config.max_jobs,
            );
            let _ = tokio::task::spawn_blocking(move || {
                if let Err(error) = history.prune(max_age, max_jobs) {
                    tracing::warn!(%error, "cannot prune the history");
                }
            })
            .await;
            sender.send_replace(finished);
            worker.live.lock().expect("lock").remove(&number);
            worker.release();
        });
        Ok((record, receiver))
    }

    fn start_scheduler(&self) {
        let Ok(jobs) = &self.inner.config.jobs else {
            return;
        };
        for (name, job) in jobs {
            let Some(schedule) = &job.schedule else {
                continue;
            };
            let Ok(every) = parse_schedule(schedule) else {
                continue;
            };
            let engine = self.clone();
            let name = name.clone();
            self.runtime.spawn(async move {
                let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
                ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
                loop {
                    ticks.tick().await;
                    let running = engine
                        .inner
                        .live
                        .lock()
                        .expect("lock")
                        .values()
                        .any(|live| live.record.borrow().spec.name.as_deref() == Some(&name));
                    if running {
                        tracing::info!(job = %name, "scheduled run skipped: the last one still runs");
                        continue;
                    }
                    let request = JobRequest {
                        job: Some(name.clone()),
                        ..JobRequest::default()
                    };
                    match engine.start_job(request).await {
                        Ok((record, _)) => tracing::info!(job = %name, id = %record.id(), "scheduled run started"),
                        Err(error) => tracing::warn!(job = %name, %error, "scheduled run not started"),
                    }
                }
            });
        }
    }
}

/// A job's bandwidth limit as options of that job alone (its `_config`).
///
/// rclone has ONE bandwidth limit for all the transfers of a process
/// (`--bwlimit`, set in an rcd by `core/bwlimit`): a token bucket that is
/// a global variable in every version so far, 1.60 (Debian 12) and 1.75
/// alike — rclone's pull request 8283 ("accounting: add per ctx token
/// bucket", open) is the first to propose one per call. Setting it for a
/// limited job would slow every other job of the rcd. What rclone does
/// take per call is a limit per FILE (`BwLimitFile`, read from the call's
/// `_config`), so a job is held under its limit by its own options only:
/// at most `Transfers` files at once, each at most limit / `Transfers`.
/// Without an explicit `--transfers` a limited job moves one file at a
/// time at the whole limit (a single big file still gets all of it).
fn job_bandwidth(limit: &str, transfers: Option<u64>) -> Map<String, Value> {
    let mut options = Map::new();
    if limit.split(':').all(|side| side.trim() == "off") {
        return options;
    }
    let transfers = transfers.unwrap_or(1).max(1);
    let per_file = if transfers == 1 {
        limit.to_owned()
    } else {
        limit
            .split(':')
            .map(|side| {
                let rate = bytes_per_second(side);
                if rate.is_finite() {
                    #[allow(
                        clippy::cast_possible_truncation,
                        clippy::cast_sign_loss,
                        clippy::cast_precision_loss
                    )]
                    let share = ((rate / transfers as f64).floor() as u64).max(1);
                    format!("{share}B")
                } else {
                    "off".to_owned()
                }
            })
            .collect::<Vec<_>>()
            .join(":")
    };
    options.insert("Transfers".to_owned(), Value::from(transfers));
    options.insert("BwLimitFile".to_owned(), Value::String(per_file));
    options
}

/// A limit as rclone reads it, in bytes per second: a number in KiB/s
/// unless a unit follows (`B`, `K`, `M`, `G`, `T`, `P`, optionally with
/// `i`/`B`), the upload side of `UP:DOWN`, `off` unlimited.
fn bytes_per_second(limit: &str) -> f64 {
    let limit = limit.split(':').next().unwrap_or(limit).trim();
    if limit == "off" {
        return f64::INFINITY;
    }
    let digits = limit
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(limit.len());
    let (number, unit) = limit.split_at(digits);
    let number: f64 = number.parse().unwrap_or(f64::INFINITY);
    let scale = match unit
        .trim_end_matches(['i', 'B'])
        .to_ascii_uppercase()
        .as_str()
    {
        "" if unit.starts_with('B') => 1.0,
        "" | "K" => 1024.0,
        "M" => 1024.0 * 1024.0,
        "G" => 1024.0 * 1024.0 * 1024.0,
        "T" => 1024f64.powi(4),
        "P" => 1024f64.powi(5),
        _ => f64::INFINITY,
    };
    number * scale
}

fn parse_id(id: &str) -> Result<u64, SyncError> {
    id.rsplit_once('-')
        .and_then(|(_, number)| number.parse().ok())
        .ok_or_else(|| SyncError::UnknownJobId(proto::text::echo(id).into_owned()))
}

impl Inner {
    fn named(&self) -> Result<&std::collections::BTreeMap<String, NamedJob>, SyncError> {
        self.config.jobs.as_ref().map_err(|error| {
            SyncError::InvalidValue(format!(
                "the named jobs cannot be used: {error}; fix the file and restart the sync service"
            ))
        })
    }

    async fn persist(&self, record: &JobRecord) -> Result<(), SyncError> {
        let history = self.history.clone();
        let record = record.clone();
        tokio::task::spawn_blocking(move || history.put(&record))
            .await
            .map_err(|_| SyncError::EngineGone)??;
        Ok(())
    }

    fn hold(&self) {
        let mut keepalive = self.keepalive.lock().expect("lock");
        keepalive.0 += 1;
        if keepalive.1.is_none()
            && let Some(path) = self.own_socket.lock().expect("lock").as_ref()
        {
            match std::os::unix::net::UnixStream::connect(path) {
                Ok(stream) => keepalive.1 = Some(stream),
                Err(error) => {
                    tracing::warn!(%error, "cannot hold the server's own socket; an idle timeout may stop running jobs");
                }
            }
        }
    }

    fn release(&self) {
        let mut keepalive = self.keepalive.lock().expect("lock");
        keepalive.0 = keepalive.0.saturating_sub(1);
        if keepalive.0 == 0 {
            keepalive.1 = None;
        }
    }

    /// `rclone listremotes --long`: names and types only, so no remote's
    /// options (secrets among them) ever reach the server's memory.
    async fn all_remotes(&self) -> Result<Vec<(String, String)>, SyncError> {
        let output = self
            .settings
            .command()
            .args(["listremotes", "--long"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .await
            .map_err(|error| SyncError::RcloneUnavailable(self.settings.missing(&error)))?;
        if !output.status.success() {
            let text = String::from_utf8_lossy(&output.stderr);
            return Err(SyncError::Rclone(format!(
                "rclone cannot read its config: {}",
                proto::text::bounded(text.trim(), 512)
            )));
        }
        Ok(String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter_map(|line| {
                let (name, kind) = line.split_once(':')?;
                Some((name.trim().to_owned(), kind.trim().to_owned()))
            })
            .filter(|(name, _)| !name.is_empty())
            .collect())
    }

    async fn remotes(&self) -> Result<Vec<Remote>, SyncError> {
        let all = self.all_remotes().await?;
        Ok(all
            .into_iter()
            .filter(|(name, _)| {
                self.config
                    .allowed_remotes
                    .as_ref()
                    .is_none_or(|allowed| allowed.contains(name))
            })
            .map(|(name, kind)| Remote {
                destination_allowed: self.config.destination_remotes.contains(&name),
                name,
                kind,
            })
            .collect())
    }

    async fn specify(&self, request: JobRequest) -> Result<JobSpec, SyncError> {
        let mut request = request;
        let mut name = None;
        if let Some(job) = request.job.take() {
            let jobs = self.named()?;
            let Some(named) = jobs.get(&job) else {
                let known: Vec<&str> = jobs.keys().map(String::as_str).collect();
                return Err(SyncError::UnknownNamedJob {
                    name: proto::text::echo(&job).into_owned(),
                    known: if known.is_empty() {
                        "sync_jobs.yaml names no jobs".to_owned()
                    } else {
                        format!("the named jobs are {}", known.join(", "))
                    },
                });
            };
            request.source = Some(named.source.clone());
            request.destination = Some(named.destination.clone());
            request.mode = named.mode;
            request.dry_run |= named.dry_run;
            request.filters = named.filters.clone();
            request.bandwidth_limit = named.bandwidth_limit.clone();
            name = Some(job);
        }
        let (Some(source), Some(destination)) = (request.source, request.destination) else {
            return Err(SyncError::InvalidValue(
                "give source and destination, or job with the name of a job in sync_jobs.yaml"
                    .to_owned(),
            ));
        };
        let arguments = parse_arguments(&request.rclone_args)?;
        let mut filters = request.filters;
        filters.include.extend(arguments.include);
        filters.exclude.extend(arguments.exclude);
        for pattern in filters.include.iter().chain(&filters.exclude) {
            if pattern.is_empty() || pattern.len() > 1024 || pattern.contains('\n') {
                return Err(SyncError::InvalidValue(
                    "filters: a pattern is one line of 1 to 1024 characters".to_owned(),
                ));
            }
        }
        let bandwidth_limit = request.bandwidth_limit.or(arguments.bandwidth_limit);
        if let Some(limit) = &bandwidth_limit
            && !valid_bandwidth(limit)
        {
            return Err(SyncError::InvalidValue(format!(
                "bandwidth_limit {:?} is not a rate rclone reads (e.g. \"512K\", \"10M\", \"off\")",
                proto::text::echo(limit)
            )));
        }
        let prefix = request.job_id_prefix.unwrap_or_else(|| "job".to_owned());
        let remotes = if source.starts_with('/') && destination.starts_with('/') {
            Vec::new()
        } else {
            self.remotes()
                .await?
                .into_iter()
                .map(|remote| remote.name)
                .collect()
        };
        let confinement = Confinement {
            local_roots: self.config.local_roots.clone(),
            remotes,
            destination_remotes: self.config.destination_remotes.clone(),
            local_destinations: self.config.local_destinations,
        };
        // check and copy write nothing to the source; move and sync change
        // the destination; a check writes nowhere.
        let writes_destination =
            request.mode != Mode::Check && !(request.dry_run || arguments.dry_run);
        let source = confinement.endpoint(
            "source",
            &source,
            request.mode == Mode::Move && !request.dry_run,
        )?;
        let destination = confinement.endpoint("destination", &destination, writes_destination)?;
        Ok(JobSpec {
            name,
            prefix,
            mode: request.mode,
            source,
            destination,
            dry_run: request.dry_run || arguments.dry_run,
            filters,
            bandwidth_limit,
            options: arguments.options,
        })
    }

    /// rclone's filter rules for a job: excludes first, then includes,
    /// then (with includes) everything else excluded.
    fn filter_rules(filters: &Filters) -> Vec<String> {
        let mut rules: Vec<String> = filters.exclude.iter().map(|p| format!("- {p}")).collect();
        rules.extend(filters.include.iter().map(|p| format!("+ {p}")));
        if !filters.include.is_empty() {
            rules.push("- **".to_owned());
        }
        rules
    }

    /// Runs a job on the rcd, or a check on rclone without
    /// `operations/check` as a child ([`check_runner`]).
    async fn run_job(
        &self,
        mut record: JobRecord,
        updates: &watch::Sender<JobRecord>,
        stop: CancellationToken,
    ) -> JobRecord {
        let (client, generation, version) = match self.rcd.ready(RCD_WAIT).await {
            Ok(ready) => ready,
            Err(why) => {
                record.finish(JobState::Failed, now_seconds(), Some(why));
                return record;
            }
        };
        if record.spec.mode == Mode::Check && check_runner(version) == CheckRunner::Child {
            return self.run_check(record, updates, stop).await;
        }
        self.run_rc(record, updates, stop, client, generation).await
    }

    async fn run_rc(
        &self,
        mut record: JobRecord,
        updates: &watch::Sender<JobRecord>,
        stop: CancellationToken,
        client: RcClient,
        generation: u64,
    ) -> JobRecord {
        let group = format!("job/{}", record.number);
        let call = match record.spec.mode {
            Mode::Sync => RcCall::SyncSync,
            Mode::Copy => RcCall::SyncCopy,
            Mode::Move => RcCall::SyncMove,
            Mode::Check => RcCall::OperationsCheck,
        };
        let mut config = Map::new();
        if record.spec.mode != Mode::Check {
            config.insert("DryRun".to_owned(), Value::Bool(record.spec.dry_run));
        }
        for (key, value) in &record.spec.options {
            config.insert(key.clone(), value.clone());
        }
        if let Some(limit) = &record.spec.bandwidth_limit {
            let transfers = record.spec.options.get("Transfers").and_then(Value::as_u64);
            config.extend(job_bandwidth(limit, transfers));
        }
        let mut params = json!({
            "srcFs": record.spec.source,
            "dstFs": record.spec.destination,
            "_async": true,
            "_group": group,
            "_config": config,
        });
        let rules = Self::filter_rules(&record.spec.filters);
        if !rules.is_empty() {
            params["_filter"] = json!({ "FilterRule": rules });
        }
        if record.spec.mode == Mode::Check {
            // The differences by name; no `combined` or `match` list, which
            // would name every file of the tree (CheckSummary::from_rc).
            params["combined"] = Value::Bool(false);
            params["match"] = Value::Bool(false);
            record.check = Some(CheckSummary::default());
        }
        let started = client.call(call, &params).await;
        let rc_job = match started
            .as_ref()
            .ok()
            .and_then(|value| value.get("jobid")?.as_u64())
        {
            Some(id) => id,
            None => {
                let why = match started {
                    Err(error) => error.to_string(),
                    Ok(_) => "rclone did not say which job it started".to_owned(),
                };
                record.error_text(&why);
                record.finish(JobState::Failed, now_seconds(), Some(why));
                return record;
            }
        };
        let now = now_seconds();
        record.state = JobState::Running;
        record.started = Some(now);
        record.log_line(
            now,
            format!("running (rclone job {rc_job}, rcd start {generation})"),
        );
        let _ = self.persist(&record).await;
        updates.send_replace(record.clone());
        let mut last_persist = Instant::now();
        let mut recorded_bytes = false;
        let mut stopping = false;
        let mut stop_asked_at = None;
        // A short job ends within its first polls: start quick, then settle.
        let mut poll = Duration::from_millis(25);
        loop {
            tokio::select! {
                () = tokio::time::sleep(poll) => poll = (poll * 2).min(POLL),
                () = stop.cancelled(), if !stopping => {
                    stopping = true;
                    stop_asked_at = Some(Instant::now());
                    record.log_line(now_seconds(), "stop requested");
                    if let Err(error) = client.call(RcCall::JobStop, &json!({ "jobid": rc_job })).await {
                        tracing::warn!(%error, "job/stop failed");
                    }
                }
            }
            if self.rcd.generation() != Some(generation) {
                record.interrupt(now_seconds(), "rclone stopped while the job ran");
                return record;
            }
            let status = client
                .call(RcCall::JobStatus, &json!({ "jobid": rc_job }))
                .await;
            let stats = client
                .call(RcCall::CoreStats, &json!({ "group": group }))
                .await;
            if let Ok(stats) = &stats {
                self.read_stats(&mut record, stats);
            }
            let status = match status {
                Ok(status) => status,
                Err(RcError::Connect(_)) | Err(RcError::Http(_)) => {
                    // The rcd is going away; the generation check decides next turn.
                    continue;
                }
                Err(error) => {
                    record.finish(JobState::Failed, now_seconds(), Some(error.to_string()));
                    return record;
                }
            };
            if status.get("finished").and_then(Value::as_bool) == Some(true) {
                let success = status.get("success").and_then(Value::as_bool) == Some(true);
                let error = status
                    .get("error")
                    .and_then(Value::as_str)
                    .filter(|text| !text.is_empty())
                    .map(|text| proto::text::bounded(text, 1024).into_owned());
                let _ = client
                    .call(RcCall::CoreStatsDelete, &json!({ "group": group }))
                    .await;
                let now = now_seconds();
                if stopping {
                    record.finish(
                        JobState::Stopped,
                        now,
                        Some("stopped on request".to_owned()),
                    );
                } else if success && record.spec.mode == Mode::Check {
                    let output = status.get("output").unwrap_or(&Value::Null);
                    let summary = CheckSummary::from_rc(output, record.stats.checks);
                    let clean = summary.all_match()
                        && output.get("success").and_then(Value::as_bool) == Some(true);
                    record.stats.errors = summary.errors;
                    let outcome = summary.outcome();
                    record.check = Some(summary);
                    let state = if clean {
                        JobState::Succeeded
                    } else {
                        JobState::Failed
                    };
                    record.finish(state, now, Some(outcome));
                } else if success {
                    record.finish(JobState::Succeeded, now, None);
                } else {
                    let why = error.unwrap_or_else(|| "rclone reported a failure".to_owned());
                    record.error_text(&why);
                    record.finish(JobState::Failed, now, Some(why));
                }
                return record;
            }
            if let Some(asked) = stop_asked_at
                && asked.elapsed() > STOP_WAIT
            {
                record.finish(
                    JobState::Stopped,
                    now_seconds(),
                    Some("stop requested; rclone did not confirm the end".to_owned()),
                );
                return record;
            }
            // Recorded before it is shown: what a status showed done is what
            // an interrupted job keeps after a crash.
            let first_bytes = !recorded_bytes && record.stats.bytes > 0;
            if first_bytes || last_persist.elapsed() >= PERSIST_EVERY {
                let _ = self.persist(&record).await;
                last_persist = Instant::now();
                recorded_bytes |= first_bytes;
            }
            updates.send_replace(record.clone());
        }
    }

    fn read_stats(&self, record: &mut JobRecord, stats: &Value) {
        record.stats = Stats::from_rclone(stats);
        record.transferring = stats
            .get("transferring")
            .and_then(Value::as_array)
            .map(|files| {
                files
                    .iter()
                    .take(TRANSFERRING_SHOWN)
                    .filter_map(|file| FileProgress::from_rclone(file, &record.spec.source))
                    .collect()
            })
            .unwrap_or_default();
        if let Some(error) = stats.get("lastError").and_then(Value::as_str)
            && !error.is_empty()
        {
            record.error_text(error);
        }
    }

    async fn run_check(
        &self,
        mut record: JobRecord,
        updates: &watch::Sender<JobRecord>,
        stop: CancellationToken,
    ) -> JobRecord {
        let mut command = self.settings.command();
        command
            .arg("check")
            .arg(&record.spec.source)
            .arg(&record.spec.destination)
            .args(["--combined", "-", "--log-level", "NOTICE", "--use-json-log"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for rule in Self::filter_rules(&record.spec.filters) {
            command.arg("--filter").arg(rule);
        }
        if record.spec.options.contains_key("CheckSum") {
            command.arg("--checksum");
        }
        if record.spec.options.contains_key("SizeOnly") {
            command.arg("--size-only");
        }
        if let Some(limit) = &record.spec.bandwidth_limit {
            // A child of its own: rclone's one limit is this job's alone.
            command.arg("--bwlimit").arg(limit);
        }
        let mut child = match command.spawn() {
            Ok(child) => child,
            Err(error) => {
                let why = self.settings.missing(&error);
                record.finish(JobState::Failed, now_seconds(), Some(why));
                return record;
            }
        };
        let now = now_seconds();
        record.state = JobState::Running;
        record.started = Some(now);
        record.check = Some(CheckSummary::default());
        record.log_line(now, "running (rclone check)");
        let _ = self.persist(&record).await;
        updates.send_replace(record.clone());
        let mut stdout = BufReader::new(child.stdout.take().expect("piped")).lines();
        let mut stderr = BufReader::new(child.stderr.take().expect("piped")).lines();
        let (mut out_open, mut err_open) = (true, true);
        let mut stopped = false;
        while out_open || err_open {
            tokio::select! {
                line = stdout.next_line(), if out_open => match line {
                    Ok(Some(line)) => {
                        if let Some(check) = record.check.as_mut() {
                            check.read_line(&line);
                            record.stats.checks = check.matching + check.differing + check.missing_on_destination + check.missing_on_source;
                        }
                        updates.send_replace(record.clone());
                    }
                    _ => out_open = false,
                },
                line = stderr.next_line(), if err_open => match line {
                    Ok(Some(line)) => {
                        let line = CheckLogLine::parse(&line);
                        let text = proto::text::escaped(&line.text).to_string();
                        if line.is_error {
                            record.error_text(&text);
                        }
                        record.log_line(now_seconds(), text);
                    }
                    _ => err_open = false,
                },
                () = stop.cancelled(), if !stopped => {
                    stopped = true;
                    let _ = child.start_kill();
                }
            }
        }
        let status = child.wait().await;
        let now = now_seconds();
        let summary = record.check.clone().unwrap_or_default();
        record.stats.errors = summary.errors;
        if stopped {
            record.finish(
                JobState::Stopped,
                now,
                Some("stopped on request".to_owned()),
            );
        } else {
            match status {
                Ok(status) if status.success() && summary.all_match() => {
                    record.finish(JobState::Succeeded, now, Some(summary.outcome()));
                }
                Ok(status) if status.code().is_some() => {
                    record.finish(JobState::Failed, now, Some(summary.outcome()));
                }
                Ok(status) => {
                    record.interrupt(now, &format!("rclone check ended by a signal ({status})"))
                }
                Err(error) => record.finish(JobState::Failed, now, Some(error.to_string())),
            }
        }
        record
    }
}

/// One stderr line of an `rclone check` child run with `--use-json-log`:
/// a JSON object with `level`, `msg` and, for a line about one file or
/// remote, `object` (rclone 1.60 and 1.75 alike); a line that is not one
/// (1.60 prints its closing "Failed to check …" as plain text) is kept as
/// it is and is no error.
#[derive(Debug, PartialEq, Eq)]
struct CheckLogLine {
    /// The human text, as rclone's text log puts it:
    /// `LEVEL : object: msg`.
    text: String,
    /// Whether rclone logged it at level error or above: the job's error.
    is_error: bool,
}

#[derive(serde::Deserialize)]
struct JsonLogLine {
    level: String,
    msg: String,
    #[serde(default)]
    object: Option<String>,
}

impl CheckLogLine {
    fn parse(line: &str) -> CheckLogLine {
        let Ok(entry) = serde_json::from_str::<JsonLogLine>(line) else {
            return CheckLogLine {
                text: line.to_owned(),
                is_error: false,
            };
        };
        let level = entry.level.to_ascii_uppercase();
        let text = match entry.object.as_deref().filter(|object| !object.is_empty()) {
            Some(object) => format!("{level} : {object}: {}", entry.msg),
            None => format!("{level} : {}", entry.msg),
        };
        CheckLogLine {
            text,
            is_error: matches!(
                entry.level.as_str(),
                "error" | "critical" | "alert" | "emergency"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{CheckLogLine, bytes_per_second, job_bandwidth};
    use serde_json::json;

    #[test]
    fn a_bandwidth_limit_is_the_jobs_own_per_file_limit_never_the_rcds() {
        // One file at a time at the whole limit, by default.
        assert_eq!(
            serde_json::Value::Object(job_bandwidth("2M", None)),
            json!({"Transfers": 1, "BwLimitFile": "2M"})
        );
        // With --transfers 4 each file gets a quarter: never above 2M in all.
        assert_eq!(
            serde_json::Value::Object(job_bandwidth("2M", Some(4))),
            json!({"Transfers": 4, "BwLimitFile": "524288B"})
        );
        // UP:DOWN splits each side; an unlimited side stays unlimited.
        assert_eq!(
            serde_json::Value::Object(job_bandwidth("1M:off", Some(2))),
            json!({"Transfers": 2, "BwLimitFile": "524288B:off"})
        );
        // A number without a unit is KiB/s, as rclone reads it.
        assert_eq!(
            serde_json::Value::Object(job_bandwidth("100", Some(2))),
            json!({"Transfers": 2, "BwLimitFile": "51200B"})
        );
        // "off" limits nothing and leaves the transfers alone.
        assert!(job_bandwidth("off", Some(8)).is_empty());
        assert!(job_bandwidth("off:off", None).is_empty());
    }

    #[test]
    fn rates_are_read_as_rclone_reads_them() {
        assert!(bytes_per_second("512K") < bytes_per_second("1M"));
        assert!(bytes_per_second("1M") < bytes_per_second("1.5M:10M"));
        assert_eq!(bytes_per_second("100"), 100.0 * 1024.0);
        assert_eq!(bytes_per_second("2Mi"), 2.0 * 1024.0 * 1024.0);
        assert!(bytes_per_second("10G") < bytes_per_second("off"));
    }

    #[test]
    fn a_check_lines_level_decides_whether_it_is_the_jobs_error() {
        // As rclone 1.60.1 and 1.75.2 print them with --use-json-log.
        let table = [
            (
                r#"{"level":"error","msg":"md5 differ","object":"g","objectType":"*local.Object","source":"operations/check.go:284","time":"2026-12-03T15:25:59.812643+00:00"}"#,
                "ERROR : g: md5 differ",
                true,
            ),
            (
                r#"{"time":"2026-12-03T15:26:00.337701213Z","level":"error","msg":"file not in Local file system at rc/b","object":"f","objectType":"*local.Object","source":"operations/check.go:108"}"#,
                "ERROR : f: file not in Local file system at rc/b",
                true,
            ),
            (
                r#"{"level":"warning","msg":"2 differences found","object":"Local file system at /tmp/rc/b","objectType":"*local.Fs","source":"operations/check.go:249","time":"2026-12-03T15:25:59.812751+00:00"}"#,
                "WARNING : Local file system at /tmp/rc/b: 2 differences found",
                false,
            ),
            (
                r#"{"time":"2026-12-03T15:26:00.337805288Z","level":"notice","msg":"Failed to check with 2 errors: last error was: 2 differences found","source":"cmd/cmd.go:336"}"#,
                "NOTICE : Failed to check with 2 errors: last error was: 2 differences found",
                false,
            ),
            // A message that names ERROR is no error unless its level is.
            (
                r#"{"level":"notice","msg":"ERROR in a file name","object":"ERROR.txt"}"#,
                "NOTICE : ERROR.txt: ERROR in a file name",
                false,
            ),
            (
                "2026/12/03 15:25:59 Failed to check with 2 errors: last error was: 2 differences found",
                "2026/12/03 15:25:59 Failed to check with 2 errors: last error was: 2 differences found",
                false,
            ),
            (
                "2026/12/03 15:25:59 ERROR : g: md5 differ",
                "2026/12/03 15:25:59 ERROR : g: md5 differ",
                false,
            ),
        ];
        for (line, text, is_error) in table {
            assert_eq!(
                CheckLogLine::parse(line),
                CheckLogLine {
                    text: text.to_owned(),
                    is_error
                },
                "{line}"
            );
        }
    }
}
