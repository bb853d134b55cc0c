//! The workflow model: one step model ([`Step`], [`StepKind`]) that both
//! formats load into — this engine's own and the original llmbasedos's
//! (`type: mcp_sequential_agent`, steps of `action: mcp_call` with
//! `params_template` and `outputs_to_context`).
//!
//! [`RawWorkflow`] is the file as written (serde, unknown fields refused,
//! so a misspelt key is an error with its line); [`crate::load`] checks it
//! and turns it into a [`Workflow`].

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// A workflow ready to run: checked, templates compiled once to check them.
#[derive(Clone, Debug)]
pub struct Workflow {
    pub id: String,
    pub name: String,
    pub description: String,
    /// JSON Schema of the inputs; `{"type": "object"}` when none is given.
    pub input_schema: Value,
    pub steps: Vec<Step>,
    /// Templates of the run's result, over the final scope; none: the context.
    pub outputs: Option<Value>,
    /// Whether an interrupted run may be continued after its last finished step.
    pub resumable: bool,
    /// The file it came from (`<yaml>` for validateWorkflow).
    pub file: String,
    /// `on: schedule`: when it runs unattended, and as whom.
    pub schedule: Option<Trigger>,
}

/// A workflow's schedule: the cron spec and the identity its runs carry
/// (`identity`, passed on as the caller of its calls).
#[derive(Clone, Debug)]
pub struct Trigger {
    pub spec: crate::schedule::ScheduleSpec,
    pub identity: Option<String>,
}

/// One step: what it does and the control every step has.
#[derive(Clone, Debug)]
pub struct Step {
    pub id: String,
    pub kind: StepKind,
    /// Steps this one waits for.
    pub needs: Vec<String>,
    /// A condition (template expression); false skips the step.
    pub when: Option<String>,
    /// A list (template) to run the step once per item, as `item`.
    pub for_each: Option<Value>,
    pub max_parallel: usize,
    pub retry: Retry,
    pub timeout: Option<Duration>,
    pub on_error: OnError,
    /// Context keys set from templates over the step's `result`.
    pub outputs: BTreeMap<String, String>,
}

/// What a step does.
#[derive(Clone, Debug)]
pub enum StepKind {
    /// A backend method (`mcp.<service>.<method>`) through the gateway.
    Mcp {
        method: String,
        params: Value,
    },
    Llm(LlmStep),
    Http(HttpStep),
    Docker(DockerStep),
    Approval {
        message: String,
        timeout: Duration,
    },
    /// Context keys set from templates.
    Set(BTreeMap<String, Value>),
    Log {
        message: String,
    },
}

impl StepKind {
    pub fn name(&self) -> &'static str {
        match self {
            StepKind::Mcp { .. } => "mcp",
            StepKind::Llm(_) => "llm",
            StepKind::Http(_) => "http",
            StepKind::Docker(_) => "docker",
            StepKind::Approval { .. } => "approval",
            StepKind::Set(_) => "set",
            StepKind::Log { .. } => "log",
        }
    }
}

/// An `llm` step: a chat through `mcp.llm.chat`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LlmStep {
    /// The user message (a template); or `messages`.
    #[serde(default)]
    pub prompt: Option<String>,
    #[serde(default)]
    pub system: Option<String>,
    /// Whole chat messages `[{role, content}]`, templated.
    #[serde(default)]
    pub messages: Option<Value>,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub temperature: Option<f64>,
    #[serde(default)]
    pub max_tokens: Option<u32>,
    /// A JSON Schema the answer must be JSON of.
    #[serde(default)]
    pub schema: Option<Value>,
    /// Further asks when the answer does not match `schema` (at most 5).
    #[serde(default = "default_llm_retries")]
    pub retries: u32,
}

fn default_llm_retries() -> u32 {
    2
}

/// An `http` step.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpStep {
    #[serde(default = "default_http_method")]
    pub method: String,
    pub url: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// A JSON body (templated).
    #[serde(default)]
    pub json: Option<Value>,
    /// A text body (templated).
    #[serde(default)]
    pub body: Option<String>,
    /// A secret from the agent's credentials, never from the YAML.
    #[serde(default)]
    pub auth: Option<HttpAuth>,
    #[serde(default, deserialize_with = "optional_duration")]
    pub timeout: Option<Duration>,
    /// Largest response body read, bytes [default: the server's limit].
    #[serde(default)]
    pub max_response_bytes: Option<usize>,
}

fn default_http_method() -> String {
    "POST".to_owned()
}

/// How an `http` step presents a credential.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpAuth {
    /// Its name in the agent config's `http.credentials` or in
    /// `$CREDENTIALS_DIRECTORY`.
    pub credential: String,
    /// The header it goes into [default: `Authorization`, as `Bearer <secret>`].
    #[serde(default)]
    pub header: Option<String>,
}

/// A `docker` step as written; converted into the Docker runner's spec.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DockerStep {
    pub image: String,
    #[serde(default)]
    pub command: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub mounts: Vec<DockerStepMount>,
    #[serde(default)]
    pub network: Option<String>,
    #[serde(default)]
    pub memory_bytes: Option<u64>,
    #[serde(default)]
    pub cpus: Option<f64>,
    #[serde(default)]
    pub pids: Option<i64>,
    #[serde(default)]
    pub output_limit: Option<usize>,
    /// The image's root file system read-only (a fresh tmpfs on /tmp).
    #[serde(default)]
    pub read_only_rootfs: bool,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DockerStepMount {
    pub source: String,
    pub target: String,
    #[serde(default)]
    pub writable: bool,
}

/// When a failed attempt is tried again.
#[derive(Clone, Debug)]
pub struct Retry {
    /// Attempts in all (1: no retry).
    pub attempts: u32,
    pub backoff: Duration,
    pub factor: f64,
    pub max_backoff: Duration,
    pub jitter: bool,
    /// An expression over `error` ({kind, message, status, code}) and `attempt`.
    pub retry_if: Option<String>,
}

impl Default for Retry {
    fn default() -> Retry {
        Retry {
            attempts: 1,
            backoff: Duration::from_millis(500),
            factor: 2.0,
            max_backoff: Duration::from_secs(60),
            jitter: true,
            retry_if: None,
        }
    }
}

/// What a step's failure does to the run.
#[derive(Clone, Debug)]
pub enum OnError {
    /// The run fails (the default).
    Fail,
    /// The run goes on; the step's output is null and its error recorded.
    Continue,
    /// This step runs with `error` in scope; its output becomes the step's.
    Handler(Box<Step>),
}

// ---------------------------------------------------------------- raw form

/// The file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWorkflow {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    /// The original's workflow type; all of them run on this step model.
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub input_schema: Option<Value>,
    pub steps: Vec<RawStep>,
    #[serde(default)]
    pub outputs: Option<Value>,
    #[serde(default)]
    pub resumable: Option<bool>,
    /// Triggers (`schedule`: cron and time zone); run by the scheduler.
    #[serde(default)]
    pub on: Option<Value>,
    #[serde(default)]
    pub version: Option<Value>,
}

/// One step as written, in either format.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStep {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    // The step kinds: exactly one.
    #[serde(default)]
    pub mcp: Option<RawMcp>,
    #[serde(default)]
    pub llm: Option<LlmStep>,
    #[serde(default)]
    pub http: Option<HttpStep>,
    #[serde(default)]
    pub docker: Option<DockerStep>,
    #[serde(default)]
    pub approval: Option<RawApproval>,
    #[serde(default)]
    pub set: Option<BTreeMap<String, Value>>,
    #[serde(default)]
    pub log: Option<String>,
    // The original's format.
    #[serde(default)]
    pub action: Option<String>,
    #[serde(default)]
    pub method: Option<String>,
    #[serde(default)]
    pub params_template: Option<Value>,
    #[serde(default, alias = "outputs_to_context")]
    pub outputs: Option<BTreeMap<String, String>>,
    // Control.
    #[serde(default)]
    pub needs: Option<Vec<String>>,
    #[serde(default)]
    pub when: Option<String>,
    #[serde(default)]
    pub for_each: Option<Value>,
    #[serde(default)]
    pub max_parallel: Option<usize>,
    #[serde(default)]
    pub retry: Option<RawRetry>,
    #[serde(default, deserialize_with = "optional_duration")]
    pub timeout: Option<Duration>,
    #[serde(default)]
    pub on_error: Option<RawOnError>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMcp {
    pub method: String,
    #[serde(default)]
    pub params: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApproval {
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default, deserialize_with = "optional_duration")]
    pub timeout: Option<Duration>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRetry {
    #[serde(default)]
    pub attempts: Option<u32>,
    #[serde(default, deserialize_with = "optional_duration")]
    pub backoff: Option<Duration>,
    #[serde(default)]
    pub factor: Option<f64>,
    #[serde(default, deserialize_with = "optional_duration")]
    pub max_backoff: Option<Duration>,
    #[serde(default)]
    pub jitter: Option<bool>,
    #[serde(default)]
    pub retry_if: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawOnError {
    Policy(String),
    Handler { handler: Box<RawStep> },
}

/// A duration as written: seconds as a number, or `250ms`, `5s`, `2m`, `1h`.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let seconds = match unit.trim() {
        "ms" => number / 1000.0,
        "" | "s" => number,
        "m" => number * 60.0,
        "h" => number * 3600.0,
        "d" => number * 86400.0,
        _ => return None,
    };
    Duration::try_from_secs_f64(seconds).ok()
}

fn optional_duration<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Duration>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Written {
        Seconds(f64),
        Text(String),
    }
    match Option::<Written>::deserialize(deserializer)? {
        None => Ok(None),
        Some(Written::Seconds(seconds)) => {
            Duration::try_from_secs_f64(seconds).map(Some).map_err(|_| {
                serde::de::Error::custom("a duration must be a positive number of seconds")
            })
        }
        Some(Written::Text(text)) => parse_duration(&text).map(Some).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "{} is not a duration; write seconds (30) or 250ms, 5s, 2m, 1h",
                proto::text::echo(&text)
            ))
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_written() {
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("5s"), Some(Duration::from_secs(5)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("5 parsecs"), None);
        assert_eq!(parse_duration(""), None);
    }
}
