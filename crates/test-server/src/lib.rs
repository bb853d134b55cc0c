//! A small server built with `server-kit`, used by the framework's own tests,
//! its benchmark, and later the gateway's tests. Its methods exercise each
//! part of the framework: echo (named and positional params), noop (the
//! benchmark), sleep and blocking (concurrency, cancellation), progress,
//! fail (every error kind, and a panic), big (the message limit), whoami
//! (SO_PEERCRED) and stats (what was cancelled). With
//! [`server_with_extra_tools`] it also has N plain tools that write log
//! lines (`--extra-tools N`): a long tool list and a log source for the web
//! console's benchmark.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};
use server_kit::{BuildError, Context, HandlerError, Server, State};

/// The service's contract, shipped inside the binary.
pub const CAPS: &str = include_str!("../test.cap.json");

/// Where the caps come from, for error messages.
pub const CAPS_ORIGIN: &str = "crates/test-server/test.cap.json";

#[derive(Debug, Default)]
struct Counters {
    started: AtomicU64,
    completed: AtomicU64,
    cancelled: AtomicU64,
}

/// Counts a sleep as cancelled if it is dropped before it completes.
struct Attempt {
    counters: Arc<Counters>,
    done: bool,
}

impl Attempt {
    fn start(counters: &Arc<Counters>) -> Attempt {
        counters.started.fetch_add(1, Ordering::Relaxed);
        Attempt {
            counters: counters.clone(),
            done: false,
        }
    }

    fn finish(mut self) {
        self.done = true;
        self.counters.completed.fetch_add(1, Ordering::Relaxed);
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        if !self.done {
            self.counters.cancelled.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[derive(Deserialize)]
struct Echo {
    text: String,
    repeat: Option<usize>,
}

#[derive(Deserialize)]
struct Millis {
    ms: u64,
}

#[derive(Deserialize)]
struct ProgressParams {
    steps: u32,
    delay_ms: Option<u64>,
}

/// The error `mcp.test.fail` answers with: one per `HandlerError` kind.
#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum FailKind {
    InvalidValue,
    PermissionDenied,
    NotFound,
    Failed,
    Custom,
    Internal,
    Panic,
}

#[derive(Deserialize)]
struct Fail {
    kind: FailKind,
    /// Quoted whole in the message, as a careless handler would quote a
    /// client's value: the framework must bound what goes out.
    detail: Option<String>,
}

#[derive(Deserialize)]
struct Big {
    bytes: usize,
}

#[derive(Deserialize)]
struct Empty {}

/// `resources/list` params; this service has one page only.
#[derive(Deserialize)]
struct Cursor {
    #[serde(rename = "cursor")]
    _cursor: Option<String>,
}

#[derive(Deserialize)]
struct PromptComplete {
    name: String,
    argument: CompleteArgument,
}

#[derive(Deserialize)]
struct CompleteArgument {
    name: String,
    value: String,
}

#[derive(Deserialize)]
struct PromptRequest {
    name: String,
    #[serde(default)]
    arguments: std::collections::HashMap<String, String>,
}

#[derive(Deserialize)]
struct Uri {
    uri: String,
}

/// The most extra tools [`server_with_extra_tools`] adds.
pub const MAX_EXTRA_TOOLS: usize = 1000;
/// The most lines one call of an extra tool writes.
const MAX_EXTRA_LINES: u64 = 1000;

/// The name of extra tool `index` (from 1): `mcp.test.extra_001`.
pub fn extra_tool(index: usize) -> String {
    format!("mcp.test.extra_{index:03}")
}

/// [`CAPS`] with `extra` more methods ([`extra_tool`] 1 ..= `extra`), each
/// writing the log lines it is asked for.
pub fn caps_with_extra_tools(extra: usize) -> String {
    if extra == 0 {
        return CAPS.to_owned();
    }
    let mut caps: Value = serde_json::from_str(CAPS).expect("the shipped caps are JSON");
    let methods = caps["methods"]
        .as_array_mut()
        .expect("the shipped caps have methods");
    for index in 1..=extra.min(MAX_EXTRA_TOOLS) {
        methods.push(json!({
            "name": extra_tool(index),
            "description": format!(
                "Extra tool {index} of {extra} (a long tool list for benchmarks): writes `lines` log lines at INFO, each `text` and its number from 0, and returns how many."
            ),
            "params_schema": {
                "type": "object",
                "properties": {
                    "text": { "type": "string", "maxLength": 200 },
                    "lines": { "type": "integer", "minimum": 1, "maximum": MAX_EXTRA_LINES }
                },
                "required": ["text"],
                "additionalProperties": false
            },
            "annotations": { "readOnlyHint": true }
        }));
    }
    serde_json::to_string_pretty(&caps).expect("serialize the caps")
}

#[derive(Deserialize)]
struct LogLines {
    text: String,
    lines: Option<u64>,
}

/// Builds the test server. Its state is the counters of sleeps and
/// blocking calls, which `stats` reports.
pub fn server() -> Result<Server, BuildError> {
    server_with_extra_tools(0)
}

/// The test server with `extra` more tools (at most [`MAX_EXTRA_TOOLS`]):
/// see [`caps_with_extra_tools`].
pub fn server_with_extra_tools(extra: usize) -> Result<Server, BuildError> {
    let caps = caps_with_extra_tools(extra);
    let caps = proto::CompiledCaps::embedded(&caps, CAPS_ORIGIN)?;
    let mut builder = Server::builder(caps, CAPS_ORIGIN)
        .with_state(Counters::default())
        .method(
            "mcp.test.echo",
            |_context: Context, params: Echo| async move {
                Ok::<_, HandlerError>(
                    json!({ "text": params.text.repeat(params.repeat.unwrap_or(1)) }),
                )
            },
        )
        .method("mcp.test.noop", |_context: Context, _params: Empty| async {
            Ok::<_, HandlerError>(json!({}))
        })
        .method(
            "mcp.test.sleep",
            |_context: Context, counters: State<Counters>, params: Millis| {
                let attempt = Attempt::start(&counters.0);
                async move {
                    tokio::time::sleep(Duration::from_millis(params.ms)).await;
                    attempt.finish();
                    Ok::<_, HandlerError>(json!({ "slept_ms": params.ms }))
                }
            },
        )
        .method(
            "mcp.test.blocking",
            |context: Context, counters: State<Counters>, params: Millis| {
                let attempt = Attempt::start(&counters.0);
                async move {
                    let token = context.cancellation_token();
                    let finished = context
                        .blocking(move || {
                            for _ in 0..params.ms {
                                if token.is_cancelled() {
                                    return false;
                                }
                                std::thread::sleep(Duration::from_millis(1));
                            }
                            true
                        })
                        .await?;
                    if finished {
                        attempt.finish();
                    }
                    Ok::<_, HandlerError>(json!({ "blocked_ms": params.ms }))
                }
            },
        )
        .method(
            "mcp.test.progress",
            |context: Context, params: ProgressParams| async move {
                let total = f64::from(params.steps);
                for step in 1..=params.steps {
                    if let Some(delay) = params.delay_ms.filter(|delay| *delay > 0) {
                        tokio::time::sleep(Duration::from_millis(delay)).await;
                    }
                    let message = format!("step {step} of {}", params.steps);
                    context
                        .progress(f64::from(step), Some(total), Some(&message))
                        .await;
                }
                Ok::<_, HandlerError>(json!({ "steps": params.steps }))
            },
        )
        .method(
            "mcp.test.fail",
            |_context: Context, params: Fail| async move {
                let detail = params
                    .detail
                    .map(|detail| format!(": {detail}"))
                    .unwrap_or_default();
                Err::<Value, _>(match params.kind {
                    FailKind::InvalidValue => {
                        HandlerError::InvalidValue(format!("the value is not usable{detail}"))
                    }
                    FailKind::PermissionDenied => {
                        HandlerError::PermissionDenied(format!("not allowed{detail}"))
                    }
                    FailKind::NotFound => HandlerError::NotFound(format!("no such thing{detail}")),
                    FailKind::Failed => HandlerError::Failed(format!("the operation failed{detail}")),
                    FailKind::Custom => HandlerError::Service {
                        offset: 4,
                        message: format!("a documented service failure{detail}"),
                        data: Some(if detail.is_empty() {
                            json!({ "hint": "see caps.json" })
                        } else {
                            json!({ "hint": "see caps.json", "detail": detail })
                        }),
                    },
                    FailKind::Panic => panic!("the test server was asked to panic"),
                    FailKind::Internal => {
                        HandlerError::internal("secret-internal-detail: /var/lib/llmbasedos/token")
                    }
                })
            },
        )
        .method(
            "mcp.test.big",
            |_context: Context, params: Big| async move {
                Ok::<_, HandlerError>(json!({ "data": "x".repeat(params.bytes) }))
            },
        )
        .method(
            "mcp.test.whoami",
            |context: Context, _params: Empty| async move {
                let peer = context.peer();
                Ok::<_, HandlerError>(json!({ "uid": peer.uid, "gid": peer.gid, "pid": peer.pid }))
            },
        )
        .method("mcp.test.image", |_context: Context, _params: Empty| async move {
            // The smallest valid PNG: one transparent pixel.
            const PIXEL: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==";
            Ok::<_, HandlerError>(json!({
                "mime_type": "image/png",
                "_content": [{ "type": "image", "data": PIXEL, "mimeType": "image/png" }],
            }))
        })
        .method("mcp.test.prompt_get", |_context: Context, params: PromptRequest| async move {
            if params.name != "greet" {
                return Err(HandlerError::NotFound(format!("no prompt {}", params.name)));
            }
            let who = params.arguments.get("who").cloned().unwrap_or_else(|| "world".to_owned());
            Ok(json!({
                "description": "A greeting",
                "messages": [{ "role": "user", "content": { "type": "text", "text": format!("Say hello to {who}.") } }]
            }))
        })
        .method("mcp.test.prompt_complete", |_context: Context, params: PromptComplete| async move {
            const NAMES: [&str; 3] = ["Ada", "Alan", "Grace"];
            if params.name != "greet" || params.argument.name != "who" {
                return Ok::<_, HandlerError>(json!({ "completion": { "values": [] } }));
            }
            let values: Vec<&str> =
                NAMES.into_iter().filter(|name| name.starts_with(&params.argument.value)).collect();
            Ok(json!({ "completion": { "values": values, "hasMore": false } }))
        })
        .method("mcp.test.resources_list", |_context: Context, _params: Cursor| async move {
            Ok::<_, HandlerError>(json!({
                "resources": [{ "uri": "test://greeting", "name": "greeting", "mimeType": "text/plain" }]
            }))
        })
        .method("mcp.test.resource_read", |_context: Context, params: Uri| async move {
            match params.uri.as_str() {
                "test://greeting" => Ok(json!({
                    "contents": [{ "uri": "test://greeting", "mimeType": "text/plain", "text": "hello from a resource" }]
                })),
                other => Err(HandlerError::NotFound(format!("no resource {other}; resources/list names them"))),
            }
        })
        .method(
            "mcp.test.stats",
            |_context: Context, counters: State<Counters>, _params: Empty| {
                async move {
                    Ok::<_, HandlerError>(json!({
                        "started": counters.started.load(Ordering::Relaxed),
                        "completed": counters.completed.load(Ordering::Relaxed),
                        "cancelled": counters.cancelled.load(Ordering::Relaxed),
                    }))
                }
            },
        );
    for index in 1..=extra.min(MAX_EXTRA_TOOLS) {
        builder = builder.method(
            &extra_tool(index),
            |_context: Context, params: LogLines| async move {
                let lines = params.lines.unwrap_or(1).clamp(1, MAX_EXTRA_LINES);
                for line in 0..lines {
                    tracing::info!("{} {line}", params.text);
                }
                Ok::<_, HandlerError>(json!({ "written": lines }))
            },
        );
    }
    builder.build()
}

/// At run time the caps are compiled method by method at first use
/// ([`proto::CompiledCaps::embedded`]); here every schema is compiled whole.
#[cfg(test)]
#[test]
fn the_embedded_caps_compile_whole() {
    proto::CompiledCaps::from_json(CAPS, CAPS_ORIGIN).expect("every schema of the caps compiles");
    proto::CompiledCaps::from_json(&caps_with_extra_tools(MAX_EXTRA_TOOLS), CAPS_ORIGIN)
        .expect("every schema of the caps with the extra tools compiles");
}
