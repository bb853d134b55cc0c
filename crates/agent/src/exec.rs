//! The executor: a run is a task that starts every step whose `needs` are
//! settled (at most `max_parallel_steps` at once), and each step applies
//! its control — `when`, `for_each` with `max_parallel`, `retry` with
//! backoff, jitter and `retry_if`, `timeout`, `on_error` — around its
//! runner. Step outputs go into the run's scope (`steps.<id>`, and the
//! context keys its `outputs` name); every finished step is saved, so a
//! run cut short by a crash is found `interrupted` with them and can be
//! resumed after them.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{Map, Value, json};
use tokio::sync::{broadcast, oneshot, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::load::Catalog;
use crate::model::{OnError, Step, StepKind, Workflow};
use crate::runners::{self, Credentials, Gateway, HttpRequest};
use crate::store::{ExecutionRecord, Status, StepError, StepRecord, StepStatus, Store};
use crate::template::{Templates, has_template, is_template, scope};

/// Finished runs kept in memory (the store has them all).
const FINISHED_KEPT: usize = 512;

/// A workflow's compiled `input_schema`, with the workflow it belongs to
/// (a reloaded file is a new workflow, compiled again).
type CompiledInputs = (std::sync::Weak<Workflow>, Arc<jsonschema::Validator>);

/// What the engine is set up with.
#[derive(Clone, Debug)]
pub struct Limits {
    pub max_parallel_steps: usize,
    pub max_running: usize,
    pub http_timeout: Duration,
    pub max_response_bytes: usize,
    pub log_value_bytes: usize,
}

/// Why a run cannot start (or be acted on): data, with a kind.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("no workflow {id}; mcp.agent.listWorkflows lists them{}", broken.as_ref().map(|b| format!(" (a file of that id did not load: {b})")).unwrap_or_default())]
    UnknownWorkflow { id: String, broken: Option<String> },
    #[error("the inputs do not match the workflow's input_schema: {0}")]
    InvalidInputs(String),
    #[error("no execution {0}; mcp.agent.listExecutions lists them")]
    UnknownExecution(String),
    #[error("execution {id} has no step {step} waiting for approval{}", waiting.as_ref().map(|w| format!(" (waiting: {w})")).unwrap_or_default())]
    NotWaiting {
        id: String,
        step: String,
        waiting: Option<String>,
    },
    #[error("execution {id} is {status}; {fix}")]
    WrongState {
        id: String,
        status: String,
        fix: String,
    },
    #[error(
        "{0} runs are in progress, the most allowed (max_running in agent.yaml); wait for some to finish"
    )]
    Busy(usize),
}

impl EngineError {
    pub fn kind(&self) -> &'static str {
        match self {
            EngineError::UnknownWorkflow { .. } => "unknown_workflow",
            EngineError::InvalidInputs(_) => "invalid_inputs",
            EngineError::UnknownExecution(_) => "unknown_execution",
            EngineError::NotWaiting { .. } => "not_waiting",
            EngineError::WrongState { .. } => "wrong_state",
            EngineError::Busy(_) => "busy",
        }
    }
}

/// A step's progress, as sent to a caller who asked.
#[derive(Clone, Debug)]
pub struct StepEvent {
    pub step: String,
    pub status: StepStatus,
    pub settled: usize,
    pub total: usize,
}

/// A run in this process.
#[derive(Debug)]
pub struct Live {
    pub record: Mutex<ExecutionRecord>,
    cancel: CancellationToken,
    approvals: Mutex<HashMap<String, oneshot::Sender<bool>>>,
    events: broadcast::Sender<StepEvent>,
    done: watch::Sender<bool>,
}

impl Live {
    pub fn snapshot(&self) -> ExecutionRecord {
        lock(&self.record).clone()
    }

    /// The execution id (without copying the record).
    pub fn id(&self) -> String {
        lock(&self.record).id.clone()
    }

    /// How many steps the run has.
    pub fn step_count(&self) -> usize {
        lock(&self.record).order.len()
    }

    /// Waits until the run is over.
    pub async fn finished(&self) {
        let mut done = self.done.subscribe();
        let _ = done.wait_for(|done| *done).await;
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The engine: workflows, runners, store, and the runs in progress.
#[derive(Debug)]
pub struct Engine {
    pub templates: Arc<Templates>,
    pub catalog: watch::Receiver<Arc<Catalog>>,
    pub store: Store,
    gateway: Gateway,
    /// The HTTP steps' client, or why there is none (no TLS roots on the
    /// machine, say): only HTTP steps fail then, saying why.
    http: Result<reqwest::Client, String>,
    credentials: Credentials,
    limits: Limits,
    docker: Option<Arc<crate::DockerRunner>>,
    runs: Mutex<HashMap<String, Arc<Live>>>,
    finished: Mutex<VecDeque<String>>,
    /// Each workflow's compiled `input_schema`, by id, for the workflow
    /// it was compiled from: compiled at its first run, not at every run.
    validators: Mutex<HashMap<String, CompiledInputs>>,
}

impl Engine {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        templates: Arc<Templates>,
        catalog: watch::Receiver<Arc<Catalog>>,
        store: Store,
        gateway: Gateway,
        credentials: Credentials,
        limits: Limits,
        docker: Option<Arc<crate::DockerRunner>>,
    ) -> Engine {
        let http = client::web_client().map_err(|error| {
            tracing::warn!(%error, "no HTTP client: http steps will fail until the system's CA certificates are installed");
            format!("cannot build the HTTP client ({error}); install the system's CA certificates (ca-certificates)")
        });
        Engine {
            templates,
            catalog,
            store,
            gateway,
            http,
            credentials,
            limits,
            docker,
            runs: Mutex::new(HashMap::new()),
            finished: Mutex::new(VecDeque::new()),
            validators: Mutex::new(HashMap::new()),
        }
    }

    pub fn workflow(&self, id: &str) -> Result<Arc<Workflow>, EngineError> {
        let catalog = self.catalog.borrow().clone();
        catalog
            .workflows
            .get(id)
            .cloned()
            .ok_or_else(|| EngineError::UnknownWorkflow {
                id: proto::text::echo(id).into_owned(),
                broken: catalog
                    .errors
                    .iter()
                    .find(|error| {
                        std::path::Path::new(&error.file)
                            .file_stem()
                            .is_some_and(|stem| stem == id)
                    })
                    .map(ToString::to_string),
            })
    }

    /// The workflow's compiled `input_schema`; compiled again only when
    /// the workflow was reloaded (a new `Arc`), entries of workflows no
    /// catalog or run holds any more dropped.
    fn validator(
        &self,
        workflow: &Arc<Workflow>,
    ) -> Result<Arc<jsonschema::Validator>, EngineError> {
        let mut cache = lock(&self.validators);
        if let Some((of, validator)) = cache.get(&workflow.id)
            && std::ptr::eq(of.as_ptr(), Arc::as_ptr(workflow))
        {
            return Ok(validator.clone());
        }
        let validator = Arc::new(
            jsonschema::validator_for(&workflow.input_schema)
                .map_err(|error| EngineError::InvalidInputs(error.to_string()))?,
        );
        cache.retain(|_, (of, _)| of.strong_count() > 0);
        cache.insert(
            workflow.id.clone(),
            (Arc::downgrade(workflow), validator.clone()),
        );
        Ok(validator)
    }

    /// The live run, if this process has it.
    pub fn live(&self, id: &str) -> Option<Arc<Live>> {
        lock(&self.runs).get(id).cloned()
    }

    /// The run's record, live or stored (blocking read for stored ones).
    pub fn record(&self, id: &str) -> Result<ExecutionRecord, EngineError> {
        if let Some(live) = self.live(id) {
            return Ok(live.snapshot());
        }
        self.store
            .get(id)
            .ok()
            .flatten()
            .ok_or_else(|| EngineError::UnknownExecution(proto::text::echo(id).into_owned()))
    }

    /// Starts a run; returns at once with its handle and a receiver of its
    /// step events (taken before the first step can start).
    pub fn start(
        self: &Arc<Self>,
        workflow_id: &str,
        inputs: Value,
        caller: Option<Value>,
    ) -> Result<(Arc<Live>, broadcast::Receiver<StepEvent>), EngineError> {
        let workflow = self.workflow(workflow_id)?;
        let validator = self.validator(&workflow)?;
        validate_inputs(&validator, &inputs)?;
        let record = ExecutionRecord {
            id: crate::new_id(),
            workflow: workflow.id.clone(),
            status: Status::Running,
            inputs,
            caller,
            started_ms: crate::now_ms(),
            finished_ms: None,
            error: None,
            outputs: Value::Null,
            context: json!({}),
            results: BTreeMap::new(),
            order: workflow.steps.iter().map(|s| s.id.clone()).collect(),
            steps: workflow
                .steps
                .iter()
                .map(|s| (s.id.clone(), StepRecord::pending()))
                .collect(),
        };
        self.launch(workflow, record)
    }

    /// Continues an interrupted (or failed, or stopped) run after its last
    /// settled steps.
    pub fn resume(
        self: &Arc<Self>,
        execution_id: &str,
    ) -> Result<(Arc<Live>, broadcast::Receiver<StepEvent>), EngineError> {
        let mut record = self.record(execution_id)?;
        if !matches!(
            record.status,
            Status::Interrupted | Status::Failed | Status::Stopped
        ) {
            return Err(EngineError::WrongState {
                id: record.id,
                status: status_name(record.status),
                fix: "only an interrupted, failed or stopped run can be resumed".to_owned(),
            });
        }
        let workflow = self.workflow(&record.workflow)?;
        if !workflow.resumable {
            return Err(EngineError::WrongState {
                id: record.id,
                status: status_name(record.status),
                fix: format!(
                    "workflow {} says resumable: false; start a new run",
                    workflow.id
                ),
            });
        }
        record.status = Status::Running;
        record.finished_ms = None;
        record.error = None;
        record.order = workflow.steps.iter().map(|s| s.id.clone()).collect();
        for step in &workflow.steps {
            let keep = record.steps.get(&step.id).is_some_and(|r| {
                matches!(
                    r.status,
                    StepStatus::Succeeded | StepStatus::Skipped | StepStatus::Handled
                )
            });
            if !keep {
                let mut fresh = StepRecord::pending();
                if let Some(old) = record.steps.get(&step.id) {
                    fresh.notes = old.notes.clone();
                }
                record.steps.insert(step.id.clone(), fresh);
                record.results.remove(&step.id);
            }
        }
        self.launch(workflow, record)
    }

    fn launch(
        self: &Arc<Self>,
        workflow: Arc<Workflow>,
        record: ExecutionRecord,
    ) -> Result<(Arc<Live>, broadcast::Receiver<StepEvent>), EngineError> {
        let running = lock(&self.runs)
            .values()
            .filter(|live| !lock(&live.record).status.is_final())
            .count();
        if running >= self.limits.max_running {
            return Err(EngineError::Busy(running));
        }
        let (events, receiver) = broadcast::channel(1024);
        let live = Arc::new(Live {
            record: Mutex::new(record),
            cancel: CancellationToken::new(),
            approvals: Mutex::new(HashMap::new()),
            events,
            done: watch::channel(false).0,
        });
        let id = lock(&live.record).id.clone();
        self.save(&live, &id);
        lock(&self.runs).insert(id.clone(), live.clone());
        let engine = self.clone();
        let task_live = live.clone();
        tokio::spawn(async move {
            engine.run(&workflow, &task_live).await;
            engine.retire(&id);
        });
        Ok((live, receiver))
    }

    fn retire(&self, id: &str) {
        let mut finished = lock(&self.finished);
        finished.push_back(id.to_owned());
        while finished.len() > FINISHED_KEPT {
            if let Some(old) = finished.pop_front() {
                lock(&self.runs).remove(&old);
            }
        }
    }

    /// Asks a run to stop: running steps are cancelled (their calls and
    /// containers with them).
    pub fn stop(&self, id: &str) -> Result<ExecutionRecord, EngineError> {
        let live = self
            .live(id)
            .ok_or_else(|| EngineError::UnknownExecution(proto::text::echo(id).into_owned()))?;
        live.cancel.cancel();
        Ok(live.snapshot())
    }

    /// Answers an approval step.
    pub fn approve(&self, id: &str, step: &str, approved: bool) -> Result<(), EngineError> {
        let live = self
            .live(id)
            .ok_or_else(|| EngineError::UnknownExecution(proto::text::echo(id).into_owned()))?;
        let sender = lock(&live.approvals).remove(step);
        match sender {
            Some(sender) => {
                let _ = sender.send(approved);
                Ok(())
            }
            None => {
                let waiting: Vec<String> = lock(&live.approvals).keys().cloned().collect();
                Err(EngineError::NotWaiting {
                    id: id.to_owned(),
                    step: proto::text::echo(step).into_owned(),
                    waiting: (!waiting.is_empty()).then(|| waiting.join(", ")),
                })
            }
        }
    }

    /// Whether runs are in progress (the server must not exit idle then).
    pub fn busy(&self) -> bool {
        lock(&self.runs)
            .values()
            .any(|live| !lock(&live.record).status.is_final())
    }

    /// Saves a run: its record is serialised when the store next commits,
    /// once however many steps settled since the last commit.
    fn save(&self, live: &Arc<Live>, id: &str) {
        let live = live.clone();
        self.store.put_live(
            id,
            Arc::new(move || {
                serde_json::to_string(&*lock(&live.record))
                    .map_err(
                        |error| tracing::error!(%error, "cannot serialise an execution record"),
                    )
                    .ok()
            }),
        );
    }

    async fn run(self: &Arc<Self>, workflow: &Arc<Workflow>, live: &Arc<Live>) {
        let total = workflow.steps.len();
        let run_id = lock(&live.record).id.clone();
        let mut state: HashMap<String, StepStatus> = {
            let record = lock(&live.record);
            workflow
                .steps
                .iter()
                .map(|s| {
                    (
                        s.id.clone(),
                        record
                            .steps
                            .get(&s.id)
                            .map_or(StepStatus::Pending, |r| r.status),
                    )
                })
                .collect()
        };
        let mut tasks: JoinSet<(String, StepOutcome)> = JoinSet::new();
        let mut failure: Option<StepError> = None;
        loop {
            if failure.is_none() && !live.cancel.is_cancelled() {
                for (index, step) in workflow.steps.iter().enumerate() {
                    if tasks.len() >= self.limits.max_parallel_steps {
                        break;
                    }
                    if state[&step.id] != StepStatus::Pending
                        || !step.needs.iter().all(|need| state[need].is_settled())
                    {
                        continue;
                    }
                    state.insert(step.id.clone(), StepStatus::Running);
                    self.mark(live, &step.id, |r| {
                        r.status = StepStatus::Running;
                        r.started_ms = Some(crate::now_ms());
                    });
                    let base = scope_of(live);
                    let engine = self.clone();
                    // The task borrows its step from the workflow it holds.
                    let task_workflow = workflow.clone();
                    let task_live = live.clone();
                    tasks.spawn(async move {
                        let step = &task_workflow.steps[index];
                        let id = step.id.clone();
                        let outcome = engine.step(&task_live, step, base).await;
                        (id, outcome)
                    });
                }
            }
            if tasks.is_empty() {
                break;
            }
            let joined = tokio::select! {
                joined = tasks.join_next() => joined,
                () = live.cancel.cancelled(), if failure.is_none() => {
                    tasks.abort_all();
                    while tasks.join_next().await.is_some() {}
                    break;
                }
            };
            let Some(Ok((id, outcome))) = joined else {
                continue;
            };
            let status = outcome.status;
            state.insert(id.clone(), status);
            {
                let mut record = lock(&live.record);
                record.results.insert(id.clone(), outcome.output.clone());
                if let Value::Object(context) = &mut record.context {
                    for (key, value) in outcome.context {
                        context.insert(key, value);
                    }
                }
                let bound = self.limits.log_value_bytes;
                if let Some(step) = record.steps.get_mut(&id) {
                    step.status = status;
                    step.finished_ms = Some(crate::now_ms());
                    step.duration_ms = Some(outcome.duration.as_secs_f64() * 1000.0);
                    step.attempts = outcome.attempts;
                    step.input = bounded(outcome.input, bound);
                    step.output = bounded(outcome.output, bound);
                    step.error.clone_from(&outcome.error);
                    step.notes.extend(outcome.notes);
                }
            }
            self.save(live, &run_id);
            let settled = state.values().filter(|s| s.is_settled()).count();
            let _ = live.events.send(StepEvent {
                step: id.clone(),
                status,
                settled,
                total,
            });
            if status == StepStatus::Cancelled {
                failure.get_or_insert(StepError::new(
                    "cancelled",
                    format!("step {id} was cancelled"),
                ));
            } else if outcome.fatal {
                let error = outcome
                    .error
                    .unwrap_or_else(|| StepError::new("failed", "failed"));
                failure = Some(StepError {
                    message: format!("step {id}: {}", error.message),
                    ..error
                });
                live.cancel.cancel();
            }
        }
        let final_scope = scope_of(live);
        let mut record = lock(&live.record);
        let stopped =
            live.cancel.is_cancelled() && failure.as_ref().is_none_or(|f| f.kind == "cancelled");
        for step in record.steps.values_mut() {
            if matches!(
                step.status,
                StepStatus::Running | StepStatus::WaitingApproval
            ) {
                step.status = StepStatus::Cancelled;
            }
        }
        record.status = if stopped {
            Status::Stopped
        } else if failure.is_some() {
            Status::Failed
        } else {
            Status::Succeeded
        };
        if stopped {
            record.error = Some(StepError::new(
                "stopped",
                "stopped by mcp.agent.stopWorkflow",
            ));
        } else {
            record.error = failure;
        }
        if record.status == Status::Succeeded {
            record.outputs = match &workflow.outputs {
                Some(outputs) => self
                    .templates
                    .render_value(outputs, &scope(&final_scope))
                    .unwrap_or_else(|error| json!({"error": error.message})),
                None => record.context.clone(),
            };
        }
        record.finished_ms = Some(crate::now_ms());
        drop(record);
        self.save(live, &run_id);
        live.done.send_replace(true);
    }

    fn mark(&self, live: &Live, step: &str, change: impl FnOnce(&mut StepRecord)) {
        let mut record = lock(&live.record);
        if let Some(step) = record.steps.get_mut(step) {
            change(step);
        }
    }

    /// One step with its control.
    async fn step(self: &Arc<Self>, live: &Arc<Live>, step: &Step, base: Value) -> StepOutcome {
        let started = Instant::now();
        let mut outcome = StepOutcome::new();
        let lazy = std::sync::OnceLock::new();
        let base_scope = || lazy.get_or_init(|| scope(&base));
        if let Some(when) = &step.when {
            match self.templates.truth(when, base_scope()) {
                Ok(true) => {}
                Ok(false) => {
                    outcome.status = StepStatus::Skipped;
                    outcome.notes.push(format!("skipped: when {when} is false"));
                    outcome.duration = started.elapsed();
                    return outcome;
                }
                Err(error) => {
                    return outcome.failed(
                        step,
                        StepError::new("template", format!("when: {error}")),
                        started,
                    );
                }
            }
        }
        let attempt = match &step.for_each {
            None => self.attempts(live, step, &base, None).await,
            Some(items) => match self.templates.render_value(items, base_scope()) {
                Ok(Value::Array(items)) => {
                    let runs = futures::stream::iter(items.into_iter().enumerate().map(|(index, item)| {
                        let base = &base;
                        async move { self.attempts(live, step, base, Some((index, item))).await }
                    }))
                    .buffered(step.max_parallel)
                    .collect::<Vec<_>>()
                    .await;
                    let mut combined = Attempted {
                        input: json!([]),
                        result: Ok(json!([])),
                        attempts: 0,
                        notes: Vec::new(),
                    };
                    let mut outputs = Vec::new();
                    let mut inputs = Vec::new();
                    for run in runs {
                        combined.attempts += run.attempts;
                        combined.notes.extend(run.notes);
                        inputs.push(run.input);
                        match run.result {
                            Ok(output) => outputs.push(output),
                            Err(error) => {
                                if combined.result.is_ok() {
                                    combined.result = Err(error);
                                }
                            }
                        }
                    }
                    combined.input = Value::Array(inputs);
                    if combined.result.is_ok() {
                        combined.result = Ok(Value::Array(outputs));
                    }
                    combined
                }
                Ok(other) => Attempted::error(StepError::new(
                    "invalid",
                    format!(
                        "for_each gave {}, not a list",
                        proto::text::echo_value(&other)
                    ),
                )),
                Err(error) => {
                    Attempted::error(StepError::new("template", format!("for_each: {error}")))
                }
            },
        };
        outcome.attempts = attempt.attempts;
        outcome.input = attempt.input;
        outcome.notes = attempt.notes;
        match attempt.result {
            Ok(output) => {
                outcome.status = StepStatus::Succeeded;
                if let StepKind::Set(_) = step.kind
                    && let Value::Object(map) = &output
                {
                    outcome.context.extend(map.clone());
                }
                if let Err(error) = self.outputs(step, &base, &output, &mut outcome.context) {
                    return outcome.failed(step, error, started);
                }
                outcome.output = output;
            }
            Err(error) if error.kind == "cancelled" => {
                outcome.status = StepStatus::Cancelled;
                outcome.error = Some(error);
            }
            Err(error) => match &step.on_error {
                OnError::Fail => return outcome.failed(step, error, started),
                OnError::Continue => {
                    outcome.status = StepStatus::Failed;
                    outcome.notes.push("failed; on_error: continue".to_owned());
                    outcome.error = Some(error);
                }
                OnError::Handler(handler) => {
                    let mut scope_with_error = base.clone();
                    scope_with_error["error"] = serde_json::to_value(&error).unwrap_or(Value::Null);
                    let handled = self.attempts(live, handler, &scope_with_error, None).await;
                    outcome.attempts += handled.attempts;
                    outcome
                        .notes
                        .push(format!("failed ({}); its on_error handler ran", error.kind));
                    outcome.error = Some(error);
                    match handled.result {
                        Ok(output) => {
                            outcome.status = StepStatus::Handled;
                            outcome.output = output;
                        }
                        Err(handler_error) => {
                            return outcome.failed(
                                step,
                                StepError {
                                    message: format!(
                                        "its on_error handler failed too: {}",
                                        handler_error.message
                                    ),
                                    ..handler_error
                                },
                                started,
                            );
                        }
                    }
                }
            },
        }
        outcome.duration = started.elapsed();
        outcome
    }

    fn outputs(
        &self,
        step: &Step,
        base: &Value,
        output: &Value,
        context: &mut Map<String, Value>,
    ) -> Result<(), StepError> {
        if step.outputs.is_empty() {
            return Ok(());
        }
        let mut with_result = base.clone();
        with_result["result"] = output.clone();
        let scope = scope(&with_result);
        for (key, template) in &step.outputs {
            let value = self
                .templates
                .render(template, &scope)
                .map_err(|error| StepError::new("template", format!("outputs.{key}: {error}")))?;
            context.insert(key.clone(), value);
        }
        Ok(())
    }

    /// Attempts of one run of a step (one item of a for_each).
    async fn attempts(
        &self,
        live: &Arc<Live>,
        step: &Step,
        base: &Value,
        item: Option<(usize, Value)>,
    ) -> Attempted {
        // A for_each item's scope adds `item` and `index`; others borrow.
        let scope_json = match &item {
            None => std::borrow::Cow::Borrowed(base),
            Some((index, item)) => {
                let mut with_item = base.clone();
                with_item["item"] = item.clone();
                with_item["index"] = json!(index);
                std::borrow::Cow::Owned(with_item)
            }
        };
        let mut attempt = 0;
        let mut notes = Vec::new();
        loop {
            attempt += 1;
            let mut input = Value::Null;
            let run = self.once(
                live,
                step,
                &scope_json,
                item.as_ref().map(|(index, _)| *index),
                &mut input,
            );
            let result = tokio::select! {
                result = async {
                    // A docker step's own runner kills and removes its
                    // container at the timeout; the executor waits a little longer.
                    let limit = match (&step.kind, step.timeout) {
                        (StepKind::Docker(_), Some(limit)) => Some(limit + crate::docker_step::REMOVAL_GRACE),
                        (_, limit) => limit,
                    };
                    match limit {
                        Some(limit) => tokio::time::timeout(limit, run).await.unwrap_or_else(|_| Err(StepError::new("timeout", format!("the step did not finish within {limit:?}")))),
                        None => run.await,
                    }
                } => result,
                () = live.cancel.cancelled() => Err(StepError::new("cancelled", "the run was stopped")),
            };
            let error = match result {
                Ok(output) => {
                    return Attempted {
                        input,
                        result: Ok(output),
                        attempts: attempt,
                        notes,
                    };
                }
                Err(error) => error,
            };
            let retry = &step.retry;
            let again = error.kind != "cancelled"
                && attempt < retry.attempts
                && match &retry.retry_if {
                    None => true,
                    Some(condition) => {
                        let mut with_error = scope_json.as_ref().clone();
                        with_error["error"] = serde_json::to_value(&error).unwrap_or(Value::Null);
                        with_error["attempt"] = json!(attempt);
                        self.templates
                            .truth(condition, &scope(&with_error))
                            .unwrap_or(false)
                    }
                };
            if !again {
                return Attempted {
                    input,
                    result: Err(error),
                    attempts: attempt,
                    notes,
                };
            }
            let delay = backoff(retry, attempt);
            notes.push(format!(
                "attempt {attempt} failed ({}: {}); retrying in {} ms",
                error.kind,
                proto::text::bounded(&error.message, 200),
                delay.as_millis()
            ));
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = live.cancel.cancelled() => return Attempted { input, result: Err(StepError::new("cancelled", "the run was stopped")), attempts: attempt, notes },
            }
        }
    }

    /// One attempt of a step's runner; `input` receives what was rendered.
    async fn once(
        &self,
        live: &Arc<Live>,
        step: &Step,
        scope_json: &Value,
        index: Option<usize>,
        input: &mut Value,
    ) -> Result<Value, StepError> {
        // The scope as minijinja sees it, made only when a template needs
        // it (a step of plain values renders nothing).
        let lazy = std::sync::OnceLock::new();
        let scope = || lazy.get_or_init(|| scope(scope_json));
        let render = |value: &Value| {
            if !has_template(value) {
                return Ok(value.clone());
            }
            self.templates
                .render_value(value, scope())
                .map_err(|error| StepError::new("template", error.message))
        };
        let text = |value: &str| {
            if !is_template(value) {
                return Ok(value.to_owned());
            }
            self.templates
                .render_text(value, scope())
                .map_err(|error| StepError::new("template", error.message))
        };
        let caller = lock(&live.record).caller.clone();
        match &step.kind {
            StepKind::Mcp { method, params } => {
                let params = render(params)?;
                *input = json!({"method": method, "params": params});
                let mut result = self.gateway.call(method, params, caller.as_ref()).await?;
                if method == "mcp.llm.chat"
                    && let Value::Object(map) = &mut result
                    && let Some(message) = map.get("message").cloned()
                {
                    // The original's workflows read the OpenAI shape.
                    map.insert(
                        "choices".to_owned(),
                        json!([{"message": message, "finish_reason": map.get("finish_reason")}]),
                    );
                }
                Ok(result)
            }
            StepKind::Llm(llm) => {
                let messages = match &llm.messages {
                    Some(messages) => render(messages)?,
                    None => {
                        let mut messages = Vec::new();
                        if let Some(system) = &llm.system {
                            messages.push(json!({"role": "system", "content": text(system)?}));
                        }
                        if let Some(prompt) = &llm.prompt {
                            messages.push(json!({"role": "user", "content": text(prompt)?}));
                        }
                        Value::Array(messages)
                    }
                };
                let mut request = json!({"messages": messages});
                if let Some(model) = &llm.model {
                    request["model"] = json!(text(model)?);
                }
                if let Some(temperature) = llm.temperature {
                    request["temperature"] = json!(temperature);
                }
                if let Some(max_tokens) = llm.max_tokens {
                    request["max_tokens"] = json!(max_tokens);
                }
                *input = request.clone();
                let mut answer = runners::llm(
                    &self.gateway,
                    caller.as_ref(),
                    request,
                    llm.schema.as_ref(),
                    llm.retries,
                )
                .await?;
                answer["untrusted"] = json!(true);
                Ok(answer)
            }
            StepKind::Http(http) => {
                let url = text(&http.url)?;
                let mut headers = BTreeMap::new();
                for (name, value) in &http.headers {
                    headers.insert(name.clone(), text(value)?);
                }
                let json_body = http.json.as_ref().map(&render).transpose()?;
                let body = http.body.as_deref().map(&text).transpose()?;
                *input = json!({"method": http.method, "url": url, "headers": headers, "json": json_body, "body": body,
                    "credential": http.auth.as_ref().map(|auth| &auth.credential)});
                let request = HttpRequest {
                    method: http.method.to_ascii_uppercase(),
                    url,
                    headers,
                    json: json_body,
                    body,
                    auth: http.auth.clone(),
                    timeout: http.timeout.unwrap_or(self.limits.http_timeout),
                    max_bytes: http
                        .max_response_bytes
                        .unwrap_or(self.limits.max_response_bytes)
                        .min(self.limits.max_response_bytes.max(1 << 20) * 16),
                };
                match &self.http {
                    Ok(http) => runners::http(http, &self.credentials, request).await,
                    Err(reason) => Err(StepError::new("http_unavailable", reason.clone())),
                }
            }
            StepKind::Docker(docker) => {
                let image = text(&docker.image)?;
                let command = docker
                    .command
                    .iter()
                    .map(|c| text(c))
                    .collect::<Result<Vec<_>, _>>()?;
                let mut env = BTreeMap::new();
                for (key, value) in &docker.env {
                    env.insert(key.clone(), text(value)?);
                }
                let mut rendered = docker.clone();
                for mount in &mut rendered.mounts {
                    mount.source = text(&mount.source)?;
                    mount.target = text(&mount.target)?;
                }
                if let Some(network) = &docker.network {
                    rendered.network = Some(text(network)?);
                }
                *input = json!({"image": image, "command": command, "env": env,
                    "mounts": rendered.mounts.iter().map(|m| json!({"source": m.source, "target": m.target, "writable": m.writable})).collect::<Vec<_>>(),
                    "network": rendered.network});
                match &self.docker {
                    Some(runner) => {
                        runner
                            .run(
                                &rendered,
                                image,
                                command,
                                env,
                                step.timeout,
                                live.cancel.clone(),
                            )
                            .await
                    }
                    None => Err(StepError::new(
                        "docker_unavailable",
                        "the Docker runner is not present in this build of llmbasedos-agent; docker steps cannot run (other steps do)",
                    )),
                }
            }
            StepKind::Approval { message, timeout } => {
                let message = text(message)?;
                *input = json!({"message": message});
                let key = match index {
                    Some(index) => format!("{}[{index}]", step.id),
                    None => step.id.clone(),
                };
                let (sender, receiver) = oneshot::channel();
                lock(&live.approvals).insert(key.clone(), sender);
                let note = format!(
                    "waiting for mcp.agent.approve {{execution_id, step: {key}}}: {message}"
                );
                let waiting = |record: &mut ExecutionRecord| {
                    record.status = Status::WaitingApproval;
                    if let Some(step_record) = record.steps.get_mut(&step.id) {
                        step_record.status = StepStatus::WaitingApproval;
                        step_record.notes.push(note.clone());
                    }
                };
                // Saved (committed) before anyone can see the run waiting:
                // a run killed while waiting resumes with its finished steps.
                let mut saved = live.snapshot();
                waiting(&mut saved);
                self.store.put(&saved);
                let store = self.store.clone();
                let _ = tokio::task::spawn_blocking(move || store.flush()).await;
                waiting(&mut lock(&live.record));
                let _ = live.events.send(StepEvent {
                    step: step.id.clone(),
                    status: StepStatus::WaitingApproval,
                    settled: 0,
                    total: 0,
                });
                let answer = tokio::time::timeout(*timeout, receiver).await;
                lock(&live.approvals).remove(&key);
                {
                    let mut record = lock(&live.record);
                    if lock(&live.approvals).is_empty() && record.status == Status::WaitingApproval
                    {
                        record.status = Status::Running;
                    }
                    if let Some(step_record) = record.steps.get_mut(&step.id) {
                        step_record.status = StepStatus::Running;
                    }
                }
                match answer {
                    Ok(Ok(true)) => Ok(json!({"approved": true})),
                    Ok(Ok(false)) => Err(StepError::new("rejected", format!("{key} was rejected"))),
                    Ok(Err(_)) => Err(StepError::new("cancelled", "the run was stopped")),
                    Err(_) => Err(StepError::new(
                        "timeout",
                        format!("no approval of {key} within {timeout:?}"),
                    )),
                }
            }
            StepKind::Set(values) => {
                let mut map = Map::new();
                for (key, value) in values {
                    map.insert(key.clone(), render(value)?);
                }
                *input = Value::Object(map.clone());
                Ok(Value::Object(map))
            }
            StepKind::Log { message } => {
                let line = text(message)?;
                tracing::info!(execution = %lock(&live.record).id, step = %step.id, message = %proto::text::escaped(&line), "workflow log");
                *input = json!({"message": line});
                Ok(Value::String(line))
            }
        }
    }
}

/// A run's scope: `inputs`, `context`, `steps` (outputs by id), `execution`.
fn scope_of(live: &Live) -> Value {
    let record = lock(&live.record);
    json!({
        "inputs": record.inputs,
        "context": record.context,
        "steps": record.results,
        "execution": {"id": record.id, "workflow": record.workflow},
    })
}

fn validate_inputs(validator: &jsonschema::Validator, inputs: &Value) -> Result<(), EngineError> {
    let problems: Vec<String> = validator
        .iter_errors(inputs)
        .take(5)
        .map(|error| {
            let at = error.instance_path().to_string();
            format!(
                "{}: {}",
                if at.is_empty() {
                    "inputs".to_owned()
                } else {
                    format!("inputs{at}")
                },
                proto::text::bounded(&error.to_string(), 200)
            )
        })
        .collect();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(EngineError::InvalidInputs(problems.join("; ")))
    }
}

/// The wait before attempt `attempt + 1`: backoff × factor^(attempt-1),
/// capped, with jitter (a random half to all of it).
pub fn backoff(retry: &crate::model::Retry, attempt: u32) -> Duration {
    let exponent = i32::try_from(attempt.saturating_sub(1)).unwrap_or(i32::MAX);
    let raw = retry.backoff.as_secs_f64() * retry.factor.powi(exponent);
    let capped = raw.min(retry.max_backoff.as_secs_f64());
    let jittered = if retry.jitter {
        let mut byte = [0u8; 2];
        let _ = getrandom::fill(&mut byte);
        let unit = f64::from(u16::from_le_bytes(byte)) / f64::from(u16::MAX);
        capped * (0.5 + unit / 2.0)
    } else {
        capped
    };
    Duration::try_from_secs_f64(jittered).unwrap_or(retry.max_backoff)
}

/// A value kept in a log: itself, or a preview when it is too large.
fn bounded(value: Value, limit: usize) -> Value {
    let text = value.to_string();
    if text.len() <= limit {
        value
    } else {
        json!({"truncated": true, "bytes": text.len(), "preview": proto::text::bounded(&text, limit).into_owned()})
    }
}

pub fn status_name(status: Status) -> String {
    serde_json::to_value(status)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

struct Attempted {
    input: Value,
    result: Result<Value, StepError>,
    attempts: u32,
    notes: Vec<String>,
}

impl Attempted {
    fn error(error: StepError) -> Attempted {
        Attempted {
            input: Value::Null,
            result: Err(error),
            attempts: 1,
            notes: Vec::new(),
        }
    }
}

struct StepOutcome {
    status: StepStatus,
    output: Value,
    input: Value,
    error: Option<StepError>,
    attempts: u32,
    notes: Vec<String>,
    context: Map<String, Value>,
    duration: Duration,
    /// The step failed and the run fails with it.
    fatal: bool,
}

impl StepOutcome {
    fn new() -> StepOutcome {
        StepOutcome {
            status: StepStatus::Running,
            output: Value::Null,
            input: Value::Null,
            error: None,
            attempts: 0,
            notes: Vec::new(),
            context: Map::new(),
            duration: Duration::ZERO,
            fatal: false,
        }
    }

    fn failed(mut self, _step: &Step, error: StepError, started: Instant) -> StepOutcome {
        self.status = StepStatus::Failed;
        self.error = Some(error);
        self.fatal = true;
        self.duration = started.elapsed();
        self
    }
}
