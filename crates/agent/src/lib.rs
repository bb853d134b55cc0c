//! llmbasedos-agent: YAML workflows over MCP methods, the LLM, HTTP and
//! Docker, with templates that never evaluate data.
//!
//! The pieces (a library with typed inputs and results, no JSON-RPC, and
//! one thin handler layer):
//! - [`model`]: the one step model and the file as written, in both
//!   formats (this engine's and the original llmbasedos's).
//! - [`load`]: parsing and checking a file (errors name the file, the line
//!   and the fix), the catalog of a directory (broken files skipped), the
//!   directory watch.
//! - [`template`]: minijinja in a sandbox (fuel, recursion limit, strict
//!   undefined, no files, no environment); data is never code.
//! - [`exec`]: the executor (DAG by `needs`, bounded parallelism, `when`,
//!   `for_each`, `retry`, `timeout`, `on_error`, approval, stop, resume).
//! - [`runners`]: `mcp` and `llm` through the gateway, `http`.
//! - [`store`]: executions and per-step logs in redb.
//! - [`config`]: the server's configuration file, `agent.yaml`.
//! - [`docker`]: the Docker step runner (bollard), [`docker_step`] the
//!   bridge from a workflow's `docker:` step to it.
//! - [`schedule`]: cron expressions with time zones, next fire times,
//!   the missed-run policy.
//! - [`handlers`]: the `mcp.agent.*` methods.

pub mod config;
pub mod docker;
pub mod docker_step;
pub mod exec;
pub mod handlers;
pub mod load;
pub mod model;
pub mod runners;
pub mod schedule;
pub mod store;
pub mod template;

pub use docker_step::DockerRunner;

use std::sync::Arc;
use std::time::Duration;

use server_kit::Server;

/// The service's contract, shipped inside the binary.
pub const CAPS: &str = include_str!("../agent.cap.json");
/// Where the caps come from, for error messages.
pub const CAPS_ORIGIN: &str = "crates/agent/agent.cap.json";
/// The JSON Schema of the workflow format (for editors; tests check the
/// examples against it).
pub const WORKFLOW_SCHEMA: &str = include_str!("../workflow.schema.json");

/// Milliseconds since the epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A new execution id: time-ordered, with 64 random bits.
pub fn new_id() -> String {
    let mut random = [0u8; 8];
    let _ = getrandom::fill(&mut random);
    format!("{:012x}-{}", now_ms(), hex(&random))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Builds the engine from the configuration: store opened (runs left
/// running marked interrupted), workflows loaded and watched.
pub fn engine(
    config: &config::Config,
) -> Result<(Arc<exec::Engine>, Option<notify::RecommendedWatcher>), String> {
    let templates = Arc::new(template::Templates::new());
    let (store, interrupted) = store::Store::open(
        &config.state_dir.join("executions.redb"),
        config.max_executions,
    )
    .map_err(|error| error.to_string())?;
    if interrupted > 0 {
        tracing::warn!(
            interrupted,
            "runs left unfinished by the last agent process are marked interrupted"
        );
    }
    let catalog = load::Catalog::load(&config.workflow_dirs, &templates);
    tracing::info!(workflows = catalog.workflows.len(), broken = catalog.errors.len(), dirs = ?config.workflow_dirs, "workflows loaded");
    let (sender, receiver) = tokio::sync::watch::channel(Arc::new(catalog));
    let watcher = match load::watch(config.workflow_dirs.clone(), templates.clone(), sender) {
        Ok(watcher) => Some(watcher),
        Err(error) => {
            tracing::warn!(%error, "cannot watch the workflow directories; changes apply at the next start");
            None
        }
    };
    let gateway = runners::Gateway::new(&config.gateway_socket, proto::DEFAULT_MAX_MESSAGE);
    let credentials = runners::Credentials {
        files: config.credentials.clone(),
        directory: std::env::var_os("CREDENTIALS_DIRECTORY").map(Into::into),
    };
    let limits = exec::Limits {
        max_parallel_steps: config.max_parallel_steps,
        max_running: config.max_running,
        http_timeout: Duration::from_secs(config.http_timeout_secs),
        max_response_bytes: config.max_response_bytes,
        log_value_bytes: config.log_value_bytes,
    };
    let docker = DockerRunner::new(docker::DockerPolicy {
        socket: config.docker_socket.clone(),
        allowed_mounts: config.docker_allowed_mounts.clone(),
        allow_network: config.docker_allow_network,
        allow_writable_mounts: config.docker_allow_writable_mounts,
        allow_pull: config.docker_allow_pull,
        user: config.docker_user.clone(),
    });
    let engine = exec::Engine::new(
        templates,
        receiver,
        store,
        gateway,
        credentials,
        limits,
        Some(Arc::new(docker)),
    );
    Ok((Arc::new(engine), watcher))
}

/// The agent server on an engine.
pub fn server(
    engine: Arc<exec::Engine>,
    watcher: Option<notify::RecommendedWatcher>,
) -> Result<Server, server_kit::BuildError> {
    let caps = proto::CompiledCaps::embedded(CAPS, CAPS_ORIGIN)?;
    let state = handlers::Agent { engine, watcher };
    handlers::register(Server::builder(caps, CAPS_ORIGIN).with_state(state)).build()
}

/// Runs the workflows' schedules (`on: schedule`) on a thread of their own
/// (the server's runtime starts after the engine is built): one driver per
/// scheduled workflow, all restarted when the workflows change. A run it
/// starts carries `{"trigger": "schedule", "identity": …}` as its caller.
/// The last firing is the latest scheduled execution in the store, so
/// slots missed while the machine was off follow the schedule's policy.
pub fn run_schedules(engine: Arc<exec::Engine>) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("agent-schedules".to_owned())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(error) => {
                    tracing::error!(%error, "cannot start the scheduler; schedules will not fire");
                    return;
                }
            };
            runtime.block_on(drive_schedules(engine));
        })
        .map(drop)
}

async fn drive_schedules(engine: Arc<exec::Engine>) {
    let mut catalog = engine.catalog.clone();
    loop {
        let current = catalog.borrow_and_update().clone();
        let stop = tokio_util::sync::CancellationToken::new();
        for workflow in current.workflows.values() {
            let Some(trigger) = &workflow.schedule else {
                continue;
            };
            let Ok(schedule) = schedule::Schedule::new(&trigger.spec) else {
                continue;
            };
            let last = last_scheduled(&engine, &workflow.id);
            let engine = engine.clone();
            let id = workflow.id.clone();
            let caller = serde_json::json!({"trigger": "schedule", "identity": trigger.identity});
            let stop = stop.clone();
            tokio::spawn(async move {
                schedule::drive(&schedule, &schedule::SystemClock, last, stop, |firing| {
                    let started = engine.start(&id, serde_json::json!({}), Some(caller.clone()));
                    match started {
                        Ok((live, _)) => tracing::info!(workflow = %id, execution = %live.id(), missed = firing.missed, "scheduled run started"),
                        Err(error) => tracing::warn!(workflow = %id, %error, "a scheduled run could not start"),
                    }
                    std::future::ready(())
                })
                .await;
            });
        }
        if catalog.changed().await.is_err() {
            return;
        }
        stop.cancel();
    }
}

/// The latest scheduled execution of `workflow` in the store.
fn last_scheduled(engine: &exec::Engine, workflow: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    let records = engine.store.list(Some(workflow), 10_000).ok()?;
    records
        .iter()
        .filter(|record| {
            record
                .caller
                .as_ref()
                .is_some_and(|caller| caller["trigger"] == "schedule")
        })
        .map(|record| record.started_ms)
        .max()
        .and_then(|ms| chrono::DateTime::from_timestamp_millis(i64::try_from(ms).ok()?))
}

/// At run time the caps are compiled method by method at first use
/// ([`proto::CompiledCaps::embedded`]); here every schema is compiled whole.
#[cfg(test)]
#[test]
fn the_embedded_caps_compile_whole() {
    proto::CompiledCaps::from_json(CAPS, CAPS_ORIGIN).expect("every schema of the caps compiles");
}
