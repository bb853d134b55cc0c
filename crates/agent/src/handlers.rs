//! The thin JSON-RPC layer: typed params → the engine → results, and the
//! one mapping from [`EngineError`] to [`HandlerError`].

use std::sync::Arc;

use proto::ErrorData;
use serde::Deserialize;
use serde_json::{Value, json};
use server_kit::{Context, HandlerError, ServerBuilder, State};

use crate::exec::{Engine, EngineError, Live, StepEvent, status_name};
use crate::load;
use crate::runners::CALLER;
use crate::store::{ExecutionRecord, Status};

const INVALID_INPUTS: i32 = 4;
const WRONG_STATE: i32 = 5;
const BUSY: i32 = 6;
const WORKFLOW_FAILED: i32 = 7;

/// The server's state.
#[derive(Debug)]
pub struct Agent {
    pub engine: Arc<Engine>,
    /// Keeps the directory watch alive.
    pub watcher: Option<notify::RecommendedWatcher>,
}

/// The one place an engine error becomes a handler error.
pub fn handler_error(error: EngineError) -> HandlerError {
    let data = ErrorData {
        kind: error.kind().to_owned(),
        hint: None,
    };
    let message = error.to_string();
    let handler = match error {
        EngineError::UnknownWorkflow { .. } | EngineError::UnknownExecution(_) => {
            HandlerError::NotFound(message)
        }
        EngineError::InvalidInputs(_) => service(INVALID_INPUTS, message),
        EngineError::NotWaiting { .. } | EngineError::WrongState { .. } => {
            service(WRONG_STATE, message)
        }
        EngineError::Busy(_) => service(BUSY, message),
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

pub fn register(builder: ServerBuilder<Agent>) -> ServerBuilder<Agent> {
    builder
        .method("mcp.agent.listWorkflows", list_workflows)
        .method("mcp.agent.validateWorkflow", validate_workflow)
        .method("mcp.agent.runWorkflow", run_workflow)
        .method("mcp.agent.getWorkflowStatus", get_status)
        .method("mcp.agent.listExecutions", list_executions)
        .method("mcp.agent.getWorkflowLogs", get_logs)
        .method("mcp.agent.stopWorkflow", stop_workflow)
        .method("mcp.agent.approve", approve)
        .method("mcp.agent.resumeWorkflow", resume_workflow)
        .method("mcp.agent.listTools", list_tools)
        .method("mcp.agent.callTool", call_tool)
        .method("mcp.agent.watchTools", watch_tools)
}

/// The prefix of the workflows' tool names.
pub const TOOL_PREFIX: &str = "workflow_";

/// `mcp.agent.listTools`: every valid workflow as an MCP tool.
async fn list_tools(
    _context: Context,
    agent: State<Agent>,
    _params: Empty,
) -> Result<Value, HandlerError> {
    let catalog = agent.engine.catalog.borrow().clone();
    let tools: Vec<Value> = catalog
        .workflows
        .values()
        .map(|w| {
            let description = if w.description.is_empty() {
                format!("Runs the workflow {}.", w.name)
            } else {
                w.description.clone()
            };
            json!({
                "name": format!("{TOOL_PREFIX}{}", w.id),
                "title": w.name,
                "description": description,
                "inputSchema": w.input_schema,
            })
        })
        .collect();
    Ok(json!({"tools": tools}))
}

#[derive(Debug, Deserialize)]
pub struct CallToolParams {
    name: String,
    arguments: Value,
}

/// `mcp.agent.callTool`: a workflow tool runs its workflow to the end.
async fn call_tool(
    context: Context,
    agent: State<Agent>,
    params: CallToolParams,
) -> Result<Value, HandlerError> {
    let Some(id) = params.name.strip_prefix(TOOL_PREFIX) else {
        return Err(HandlerError::NotFound(format!(
            "{} is not a workflow tool; they are named {TOOL_PREFIX}<workflow id>",
            proto::text::echo(&params.name)
        )));
    };
    let (live, events) = agent
        .engine
        .start(id, params.arguments, caller(&context))
        .map_err(handler_error)?;
    answer(&context, live, events, true).await
}

/// `mcp.agent.watchTools`: a notice once watching and on every change of
/// the workflows, until cancelled.
async fn watch_tools(
    context: Context,
    agent: State<Agent>,
    _params: Empty,
) -> Result<Value, HandlerError> {
    let mut catalog = agent.engine.catalog.clone();
    catalog.mark_unchanged();
    let mut notices = 0.0;
    let stopping = stopping();
    context
        .progress(notices, None, Some("watching the workflows"))
        .await;
    loop {
        tokio::select! {
            changed = catalog.changed() => {
                if changed.is_err() {
                    break;
                }
                notices += 1.0;
                context.progress(notices, None, Some("the workflows changed")).await;
            }
            () = context.cancelled() => break,
            // A watch never finishes by itself: it must not hold the
            // server's drain on SIGTERM.
            () = stopping.cancelled() => break,
        }
    }
    Ok(json!({}))
}

/// Cancelled once the process is asked to stop (SIGTERM or SIGINT, which
/// the lifecycle handles too).
fn stopping() -> tokio_util::sync::CancellationToken {
    use std::sync::OnceLock;
    use tokio::signal::unix::{SignalKind, signal};
    static STOPPING: OnceLock<tokio_util::sync::CancellationToken> = OnceLock::new();
    STOPPING
        .get_or_init(|| {
            let token = tokio_util::sync::CancellationToken::new();
            let cancel = token.clone();
            if let (Ok(mut terminate), Ok(mut interrupt)) = (
                signal(SignalKind::terminate()),
                signal(SignalKind::interrupt()),
            ) {
                tokio::spawn(async move {
                    tokio::select! {
                        _ = terminate.recv() => {}
                        _ = interrupt.recv() => {}
                    }
                    cancel.cancel();
                });
            }
            token
        })
        .clone()
}

#[derive(Debug, Deserialize)]
pub struct Empty {}

async fn list_workflows(
    _context: Context,
    agent: State<Agent>,
    _params: Empty,
) -> Result<Value, HandlerError> {
    let catalog = agent.engine.catalog.borrow().clone();
    let workflows: Vec<Value> = catalog
        .workflows
        .values()
        .map(|w| {
            json!({
                "id": w.id, "name": w.name, "description": w.description,
                "input_schema": w.input_schema, "file": w.file, "steps": w.steps.len(),
                "tool": format!("workflow_{}", w.id),
            })
        })
        .collect();
    Ok(json!({"workflows": workflows, "errors": catalog.errors}))
}

#[derive(Debug, Deserialize)]
pub struct ValidateParams {
    yaml: String,
}

async fn validate_workflow(
    _context: Context,
    agent: State<Agent>,
    params: ValidateParams,
) -> Result<Value, HandlerError> {
    Ok(
        match load::parse(&params.yaml, "<yaml>", &agent.engine.templates) {
            Ok(workflow) => json!({
                "valid": true,
                "id": workflow.id,
                "steps": workflow.steps.iter().map(|s| json!({"id": s.id, "kind": s.kind.name(), "needs": s.needs})).collect::<Vec<_>>(),
            }),
            Err(error) => json!({"valid": false, "error": error, "message": error.to_string()}),
        },
    )
}

#[derive(Debug, Deserialize)]
pub struct RunParams {
    id: String,
    inputs: Value,
    wait: bool,
}

/// The caller the gateway named in `_meta`, passed on by the workflow's calls.
fn caller(context: &Context) -> Option<Value> {
    context.meta().and_then(|meta| meta.get(CALLER)).cloned()
}

async fn run_workflow(
    context: Context,
    agent: State<Agent>,
    params: RunParams,
) -> Result<Value, HandlerError> {
    let (live, events) = agent
        .engine
        .start(&params.id, params.inputs, caller(&context))
        .map_err(handler_error)?;
    answer(&context, live, events, params.wait).await
}

/// At once with the execution id; or, when waiting (or asked for
/// progress), after one progress notification per step.
pub async fn answer(
    context: &Context,
    live: Arc<Live>,
    mut events: tokio::sync::broadcast::Receiver<StepEvent>,
    wait: bool,
) -> Result<Value, HandlerError> {
    let id = live.id();
    let progress = context.progress_handle();
    if !wait && !progress.is_requested() {
        return Ok(json!({"execution_id": id, "status": "running"}));
    }
    let total = live.step_count() as f64;
    progress
        .report(0.0, Some(total), Some(&format!("execution {id} started")))
        .await;
    let finished = live.finished();
    tokio::pin!(finished);
    loop {
        tokio::select! {
            () = &mut finished => break,
            event = events.recv() => match event {
                Ok(event) => {
                    let message = format!("step {}: {}", event.step, serde_json::to_value(event.status).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default());
                    progress.report(event.settled as f64, Some(total), Some(&message)).await;
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            },
        }
    }
    // Events sent just before the end.
    while let Ok(event) = events.try_recv() {
        let message = format!(
            "step {}: {}",
            event.step,
            serde_json::to_value(event.status)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default()
        );
        progress
            .report(event.settled as f64, Some(total), Some(&message))
            .await;
    }
    let record = live.snapshot();
    if record.status == Status::Succeeded {
        Ok(json!({"execution_id": record.id, "status": "succeeded", "outputs": record.outputs}))
    } else {
        let error = record.error.clone();
        Err(HandlerError::Service {
            offset: WORKFLOW_FAILED,
            message: format!(
                "execution {} {}: {}",
                record.id,
                status_name(record.status),
                error.as_ref().map_or("", |e| e.message.as_str())
            ),
            data: Some(json!({
                "kind": "workflow_failed",
                "execution_id": record.id,
                "status": status_name(record.status),
                "error": error,
            })),
        })
    }
}

#[derive(Debug, Deserialize)]
pub struct ExecutionParams {
    execution_id: String,
}

fn summary(record: &ExecutionRecord) -> Value {
    json!({
        "execution_id": record.id,
        "workflow": record.workflow,
        "status": record.status,
        "started_by": started_by(record.caller.as_ref()),
        "started_ms": record.started_ms,
        "finished_ms": record.finished_ms,
        "error": record.error,
    })
}

/// Who a run acts for, as a listing shows it: `{"trigger": "schedule",
/// "identity": …}` for a scheduled run, `{"client": …}` for one a client
/// started, null when neither is known. Names only (never a tier or more).
fn started_by(caller: Option<&Value>) -> Value {
    let Some(caller) = caller else {
        return Value::Null;
    };
    if caller.get("trigger").and_then(Value::as_str) == Some("schedule") {
        json!({"trigger": "schedule", "identity": caller.get("identity").cloned().unwrap_or(Value::Null)})
    } else {
        caller
            .get("client")
            .and_then(Value::as_str)
            .map_or(Value::Null, |client| json!({"client": client}))
    }
}

async fn record(
    context: &Context,
    agent: &State<Agent>,
    id: String,
) -> Result<ExecutionRecord, HandlerError> {
    let engine = agent.engine.clone();
    context
        .blocking(move || engine.record(&id))
        .await?
        .map_err(handler_error)
}

async fn get_status(
    context: Context,
    agent: State<Agent>,
    params: ExecutionParams,
) -> Result<Value, HandlerError> {
    let record = record(&context, &agent, params.execution_id).await?;
    let mut status = summary(&record);
    status["steps"] = record
        .order
        .iter()
        .map(|id| {
            let step = &record.steps[id];
            json!({"id": id, "status": step.status, "attempts": step.attempts, "error": step.error})
        })
        .collect();
    status["outputs"] = record.outputs;
    Ok(status)
}

#[derive(Debug, Deserialize)]
pub struct ListExecutionsParams {
    workflow: Option<String>,
    limit: usize,
}

async fn list_executions(
    context: Context,
    agent: State<Agent>,
    params: ListExecutionsParams,
) -> Result<Value, HandlerError> {
    let engine = agent.engine.clone();
    let records = context
        .blocking(move || engine.store.list(params.workflow.as_deref(), params.limit))
        .await?
        .map_err(HandlerError::internal)?;
    // Live runs are newer than what the store has committed.
    let executions: Vec<Value> = records
        .iter()
        .map(|stored| {
            agent
                .engine
                .live(&stored.id)
                .map_or_else(|| summary(stored), |live| summary(&live.snapshot()))
        })
        .collect();
    Ok(json!({"executions": executions}))
}

#[derive(Debug, Deserialize)]
pub struct LogsParams {
    execution_id: String,
    step: Option<String>,
    max_bytes: usize,
}

async fn get_logs(
    context: Context,
    agent: State<Agent>,
    params: LogsParams,
) -> Result<Value, HandlerError> {
    let record = record(&context, &agent, params.execution_id).await?;
    let mut steps = Vec::new();
    let mut used = 0;
    let mut truncated = false;
    for id in &record.order {
        if params.step.as_ref().is_some_and(|wanted| wanted != id) {
            continue;
        }
        let mut entry = serde_json::to_value(&record.steps[id]).map_err(HandlerError::internal)?;
        entry["id"] = json!(id);
        let size = entry.to_string().len();
        if used + size > params.max_bytes {
            truncated = true;
            break;
        }
        used += size;
        steps.push(entry);
    }
    if let Some(step) = &params.step
        && steps.is_empty()
        && !truncated
    {
        return Err(HandlerError::NotFound(format!(
            "execution {} has no step {}",
            record.id,
            proto::text::echo(step)
        )));
    }
    Ok(
        json!({"execution_id": record.id, "status": record.status, "steps": steps, "truncated": truncated}),
    )
}

async fn stop_workflow(
    _context: Context,
    agent: State<Agent>,
    params: ExecutionParams,
) -> Result<Value, HandlerError> {
    let record = agent
        .engine
        .stop(&params.execution_id)
        .map_err(handler_error)?;
    if let Some(live) = agent.engine.live(&record.id) {
        live.finished().await;
        return Ok(summary(&live.snapshot()));
    }
    Ok(summary(&record))
}

#[derive(Debug, Deserialize)]
pub struct ApproveParams {
    execution_id: String,
    step: String,
    approved: bool,
}

async fn approve(
    _context: Context,
    agent: State<Agent>,
    params: ApproveParams,
) -> Result<Value, HandlerError> {
    agent
        .engine
        .approve(&params.execution_id, &params.step, params.approved)
        .map_err(handler_error)?;
    Ok(
        json!({"execution_id": params.execution_id, "step": params.step, "approved": params.approved}),
    )
}

#[derive(Debug, Deserialize)]
pub struct ResumeParams {
    execution_id: String,
    wait: bool,
}

async fn resume_workflow(
    context: Context,
    agent: State<Agent>,
    params: ResumeParams,
) -> Result<Value, HandlerError> {
    let engine = agent.engine.clone();
    let id = params.execution_id.clone();
    // Reading a stored record is a blocking read.
    let (live, events) = context
        .blocking(move || engine.resume(&id))
        .await?
        .map_err(handler_error)?;
    answer(&context, live, events, params.wait).await
}
