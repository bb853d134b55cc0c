//! The thin JSON-RPC layer: typed params → [`Engine`] → results, and the
//! one mapping from [`SyncError`] to [`HandlerError`], with `data.kind`.
//!
//! `runJob` answers at once with the job's id, unless the request carries
//! a progress token: then it follows the job, sending
//! `notifications/progress` (bytes done; the total only once rclone's
//! totals are final), and answers with the final status. Cancelling such a
//! request stops the job.

use proto::{ErrorData, ServiceCodes};
use serde::Deserialize;
use serde_json::{Value, json};
use server_kit::{Context, HandlerError, ServerBuilder, State};

use crate::engine::{Engine, JobRequest, SyncError};
use crate::job::{Filters, JobState, Mode};

/// The sync service's error codes (DESIGN.md 4.1).
pub const CODES: ServiceCodes = ServiceCodes::new(proto::code::SYNC_BASE);
/// Offsets of the further codes documented in sync.cap.json.
const RCLONE_UNAVAILABLE: i32 = 4;
const RCLONE_FAILED: i32 = 5;

/// The one place an engine error becomes a handler error.
pub fn handler_error(error: SyncError) -> HandlerError {
    let data = ErrorData {
        kind: error.kind().to_owned(),
        hint: None,
    };
    let message = error.to_string();
    let handler = match &error {
        SyncError::Refused(refusal) => match refusal {
            crate::paths::Refusal::UnknownRemote { .. } => HandlerError::NotFound(message),
            crate::paths::Refusal::Argument(_) => HandlerError::InvalidValue(message),
            _ => HandlerError::PermissionDenied(message),
        },
        SyncError::InvalidValue(_) => HandlerError::InvalidValue(message),
        SyncError::UnknownJobId(_) | SyncError::UnknownNamedJob { .. } => {
            HandlerError::NotFound(message)
        }
        SyncError::RcloneUnavailable(_) => service(RCLONE_UNAVAILABLE, message),
        SyncError::Rclone(_) => service(RCLONE_FAILED, message),
        SyncError::History(_) | SyncError::EngineGone => return HandlerError::internal(error),
    };
    handler.with_data(&data)
}

fn service(offset: i32, message: String) -> HandlerError {
    HandlerError::Service {
        offset,
        message,
        data: None,
    }
}

pub fn register(builder: ServerBuilder<Engine>) -> ServerBuilder<Engine> {
    builder
        .method("mcp.sync.listRemotes", list_remotes)
        .method("mcp.sync.runJob", run_job)
        .method("mcp.sync.getJobStatus", job_status)
        .method("mcp.sync.listJobs", list_jobs)
        .method("mcp.sync.stopJob", stop_job)
        .method("mcp.sync.getJobLog", job_log)
        .method("mcp.sync.listNamedJobs", list_named_jobs)
}

#[derive(Deserialize)]
struct NoParams {}

async fn list_remotes(
    _context: Context,
    engine: State<Engine>,
    _params: NoParams,
) -> Result<Value, HandlerError> {
    let remotes = engine.list_remotes().await.map_err(handler_error)?;
    Ok(json!({ "remotes": remotes }))
}

async fn list_named_jobs(
    _context: Context,
    engine: State<Engine>,
    _params: NoParams,
) -> Result<Value, HandlerError> {
    let jobs = engine.named_jobs().map_err(handler_error)?;
    Ok(json!({ "jobs": jobs }))
}

#[derive(Deserialize)]
struct RunParams {
    source: Option<String>,
    destination: Option<String>,
    job: Option<String>,
    mode: Mode,
    dry_run: bool,
    #[serde(default)]
    filters: Filters,
    bandwidth_limit: Option<String>,
    job_id_prefix: Option<String>,
    rclone_args: Vec<String>,
}

/// Stops the followed job when the request goes away before its end
/// (cancelled, or the connection closed).
struct StopOnDrop {
    engine: Engine,
    number: u64,
    armed: bool,
}

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        if self.armed {
            self.engine.stop_soon(self.number);
        }
    }
}

async fn run_job(
    context: Context,
    engine: State<Engine>,
    params: RunParams,
) -> Result<Value, HandlerError> {
    if params.job.is_some() && (params.source.is_some() || params.destination.is_some()) {
        return Err(HandlerError::InvalidParams(
            "give either job (a named job) or source and destination, not both".to_owned(),
        ));
    }
    let request = JobRequest {
        job: params.job,
        source: params.source,
        destination: params.destination,
        mode: params.mode,
        dry_run: params.dry_run,
        filters: params.filters,
        bandwidth_limit: params.bandwidth_limit,
        job_id_prefix: params.job_id_prefix,
        rclone_args: params.rclone_args,
    };
    let (record, mut updates) = engine.run(request).await.map_err(handler_error)?;
    if !context.progress_handle().is_requested() {
        return Ok(record.status());
    }
    let engine: &Engine = &engine;
    let mut guard = StopOnDrop {
        engine: engine.clone(),
        number: record.number,
        armed: true,
    };
    let mut sent = None;
    loop {
        let current = updates.borrow_and_update().clone();
        let point = (
            current.stats.bytes,
            current.stats.transfers,
            current.stats.checks,
            current.state,
        );
        if sent != Some(point) {
            sent = Some(point);
            let total = current
                .stats
                .totals_final
                .then_some(current.stats.total_bytes as f64);
            context
                .progress(
                    current.stats.bytes as f64,
                    total,
                    Some(&current.progress_message()),
                )
                .await;
        }
        if current.state.is_final() {
            guard.armed = false;
            return Ok(current.status());
        }
        if updates.changed().await.is_err() {
            guard.armed = false;
            let id = current.id();
            return engine
                .status(&id)
                .await
                .map(|record| record.status())
                .map_err(handler_error);
        }
    }
}

#[derive(Deserialize)]
struct JobParams {
    job_id: String,
}

async fn job_status(
    _context: Context,
    engine: State<Engine>,
    params: JobParams,
) -> Result<Value, HandlerError> {
    let record = engine.status(&params.job_id).await.map_err(handler_error)?;
    Ok(record.status())
}

async fn stop_job(
    _context: Context,
    engine: State<Engine>,
    params: JobParams,
) -> Result<Value, HandlerError> {
    let record = engine.stop(&params.job_id).await.map_err(handler_error)?;
    Ok(record.status())
}

#[derive(Deserialize)]
struct LogParams {
    job_id: String,
    limit: usize,
}

async fn job_log(
    _context: Context,
    engine: State<Engine>,
    params: LogParams,
) -> Result<Value, HandlerError> {
    let record = engine.status(&params.job_id).await.map_err(handler_error)?;
    let skip = record.log.len().saturating_sub(params.limit);
    Ok(json!({ "job_id": record.id(), "lines": &record.log[skip..] }))
}

#[derive(Deserialize)]
struct ListParams {
    state: Option<JobState>,
    limit: usize,
    cursor: Option<String>,
}

async fn list_jobs(
    _context: Context,
    engine: State<Engine>,
    params: ListParams,
) -> Result<Value, HandlerError> {
    let cursor = match params.cursor.as_deref() {
        None => None,
        Some(text) => Some(text.parse::<u64>().map_err(|_| {
            HandlerError::InvalidValue(
                "cursor: pass the next_cursor of the previous page".to_owned(),
            )
        })?),
    };
    let (jobs, next) = engine
        .list(params.state, params.limit, cursor)
        .await
        .map_err(handler_error)?;
    let jobs: Vec<Value> = jobs.iter().map(|record| record.status()).collect();
    let mut answer = json!({ "jobs": jobs });
    if let Some(next) = next {
        answer["next_cursor"] = json!(next.to_string());
    }
    Ok(answer)
}
