//! Loading workflows: one file → a checked [`Workflow`] or a [`LoadError`]
//! naming the file, the line and the fix; a directory → a [`Catalog`] of
//! the valid ones and the errors of the broken ones (skipped, the others
//! keep working); the directories watched with `notify` so that changes
//! apply live.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::model::{OnError, RawOnError, RawStep, RawWorkflow, Retry, Step, StepKind, Workflow};
use crate::template::Templates;

/// Largest workflow file read.
pub const MAX_FILE_BYTES: u64 = 1 << 20;
/// The step kinds, as written.
pub const STEP_KINDS: &[&str] = &["mcp", "llm", "http", "docker", "approval", "set", "log"];
/// The original format's workflow types.
pub const CLASSIC_TYPES: &[&str] = &[
    "mcp_sequential_agent",
    "simple_sequential",
    "docker",
    "n8n_webhook",
];

/// Why a workflow file does not load.
#[derive(Clone, Debug, Serialize, thiserror::Error)]
#[error("{file}{}: {problem}; {fix}", line.map(|line| format!(":{line}")).unwrap_or_default())]
pub struct LoadError {
    pub file: String,
    pub line: Option<usize>,
    pub problem: String,
    pub fix: String,
}

impl LoadError {
    fn new(
        file: &str,
        line: Option<usize>,
        problem: impl Into<String>,
        fix: impl Into<String>,
    ) -> LoadError {
        LoadError {
            file: file.to_owned(),
            line,
            problem: problem.into(),
            fix: fix.into(),
        }
    }
}

/// Parses and checks one workflow's text; `file` names it in errors.
pub fn parse(text: &str, file: &str, templates: &Templates) -> Result<Workflow, LoadError> {
    let deserializer = yaml_serde::Deserializer::from_str(text);
    let raw: RawWorkflow = serde_path_to_error::deserialize(deserializer).map_err(|error| {
        let path = error.path().to_string();
        let step = match error.path().iter().collect::<Vec<_>>().as_slice() {
            [
                serde_path_to_error::Segment::Map { key },
                serde_path_to_error::Segment::Seq { index },
                ..,
            ] if key == "steps" => Some(*index),
            _ => None,
        };
        let inner = error.into_inner();
        let line = inner.location().map(|location| location.line());
        let message = inner.to_string();
        let fix = match step.and_then(|index| unknown_step_key(text, index)) {
            Some(_) => format!(
                "a step has exactly one kind ({}) plus control fields (id, needs, when, for_each, max_parallel, retry, timeout, on_error, outputs)",
                STEP_KINDS.join(", ")
            ),
            None => "correct the YAML there (workflow.schema.json describes the format)".to_owned(),
        };
        let at = if path.is_empty() || path == "." {
            String::new()
        } else {
            format!("at {path}: ")
        };
        LoadError::new(file, line, format!("{at}{}", strip_location(&message)), fix)
    })?;
    Checker {
        file,
        text,
        templates,
    }
    .workflow(raw)
}

/// The first key of the `index`-th step that no step has, read from the
/// file itself (the keys checked against [`RawStep`]'s own field list, as
/// serde derives it): the data a refused step is judged by, never serde's
/// message.
fn unknown_step_key(text: &str, index: usize) -> Option<String> {
    let document: Value = yaml_serde::from_str(text).ok()?;
    let step = document.get("steps")?.get(index)?.as_object()?;
    let known = step_fields();
    step.keys()
        .find(|key| !known.contains(&key.as_str()))
        .cloned()
}

/// The keys a step may have: [`RawStep`]'s fields as serde knows them, and
/// the original format's alias.
fn step_fields() -> Vec<&'static str> {
    let mut fields = FieldNames::of::<RawStep>().to_vec();
    fields.push("outputs_to_context");
    fields
}

/// A deserializer that only learns the field names a derived struct asks
/// for (serde passes them to `deserialize_struct`).
struct FieldNames<'a>(&'a mut &'static [&'static str]);

impl FieldNames<'_> {
    fn of<'de, T: serde::Deserialize<'de>>() -> &'static [&'static str] {
        let mut fields: &'static [&'static str] = &[];
        let _ = T::deserialize(FieldNames(&mut fields));
        fields
    }
}

impl<'de> serde::Deserializer<'de> for FieldNames<'_> {
    type Error = serde::de::value::Error;

    fn deserialize_any<V: serde::de::Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
        Err(serde::de::Error::custom(
            "only a struct's field names are read",
        ))
    }

    fn deserialize_struct<V: serde::de::Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Self::Error> {
        *self.0 = fields;
        Err(serde::de::Error::custom(
            "only a struct's field names are read",
        ))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map enum identifier ignored_any
    }
}

/// serde's message without its " at line N column M" (the line is ours).
fn strip_location(message: &str) -> &str {
    match message.find(" at line ") {
        Some(at) => &message[..at],
        None => message,
    }
}

struct Checker<'a> {
    file: &'a str,
    text: &'a str,
    templates: &'a Templates,
}

impl Checker<'_> {
    fn error(
        &self,
        line: Option<usize>,
        problem: impl Into<String>,
        fix: impl Into<String>,
    ) -> LoadError {
        LoadError::new(self.file, line, problem, fix)
    }

    /// The line of the `index`-th item under the top-level `steps:`.
    fn step_line(&self, index: usize) -> Option<usize> {
        let mut lines = self.text.lines().enumerate();
        lines.find(|(_, line)| line.trim_end() == "steps:")?;
        let mut indent = None;
        let mut seen = 0;
        for (number, line) in lines {
            let trimmed = line.trim_start();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let this = line.len() - trimmed.len();
            if !trimmed.starts_with("- ") && !trimmed.starts_with('-') {
                if this == 0 {
                    return None;
                }
                continue;
            }
            let level = *indent.get_or_insert(this);
            if this == level {
                if seen == index {
                    return Some(number + 1);
                }
                seen += 1;
            }
        }
        None
    }

    fn workflow(&self, raw: RawWorkflow) -> Result<Workflow, LoadError> {
        if raw.id.is_empty()
            || raw.id.len() > 48
            || !raw
                .id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(self.error(
                Some(1),
                format!(
                    "the workflow id {} is not a name",
                    proto::text::echo(&raw.id)
                ),
                "use 1 to 48 letters, digits, _ or - (it becomes the tool workflow_<id>)",
            ));
        }
        if let Some(kind) = &raw.kind
            && !CLASSIC_TYPES.contains(&kind.as_str())
        {
            return Err(self.error(
                None,
                format!("unknown workflow type {}", proto::text::echo(kind)),
                format!("use one of {} or leave type out", CLASSIC_TYPES.join(", ")),
            ));
        }
        let input_schema = raw
            .input_schema
            .unwrap_or_else(|| json!({"type": "object"}));
        if let Err(error) = jsonschema::validator_for(&input_schema) {
            return Err(self.error(
                None,
                format!("input_schema is not a valid JSON Schema: {error}"),
                "write a JSON Schema (2020-12) of the inputs object",
            ));
        }
        if raw.steps.is_empty() {
            return Err(self.error(
                None,
                "the workflow has no steps",
                "add at least one step under steps:",
            ));
        }
        let mut steps = Vec::with_capacity(raw.steps.len());
        let mut previous: Option<String> = None;
        for (index, raw_step) in raw.steps.into_iter().enumerate() {
            let line = self.step_line(index);
            let explicit_needs = raw_step.needs.is_some();
            let mut step = self.step(raw_step, index, line)?;
            if !explicit_needs && let Some(previous) = &previous {
                // A step without `needs` follows the step before it.
                step.needs = vec![previous.clone()];
            }
            previous = Some(step.id.clone());
            steps.push(step);
        }
        self.graph(&steps)?;
        if let Some(outputs) = &raw.outputs {
            self.templates.check_value(outputs).map_err(|error| {
                self.error(None, format!("outputs: {error}"), "fix the template syntax")
            })?;
        }
        let schedule = match raw.on {
            None => None,
            Some(on) => Some(self.trigger(on)?),
        };
        Ok(Workflow {
            schedule,
            name: raw.name.unwrap_or_else(|| raw.id.clone()),
            description: raw.description.unwrap_or_default(),
            id: raw.id,
            input_schema,
            steps,
            outputs: raw.outputs,
            resumable: raw.resumable.unwrap_or(true),
            file: self.file.to_owned(),
        })
    }

    fn step(&self, raw: RawStep, index: usize, line: Option<usize>) -> Result<Step, LoadError> {
        let id = raw
            .id
            .clone()
            .or_else(|| raw.name.clone())
            .unwrap_or_else(|| format!("step{}", index + 1));
        let here = format!("step {}", proto::text::echo(&id));
        let template = |text: &str, what: &str| {
            self.templates.check(text).map_err(|error| {
                self.error(
                    line,
                    format!("{here}: {what}: template error: {error}"),
                    "fix the template syntax ({{ expression }}, {% if %}…{% endif %})",
                )
            })
        };
        let template_value = |value: &Value, what: &str| {
            self.templates.check_value(value).map_err(|error| {
                self.error(
                    line,
                    format!("{here}: {what}: template error: {error}"),
                    "fix the template syntax ({{ expression }}, {% if %}…{% endif %})",
                )
            })
        };
        let expression = |text: &str, what: &str| {
            self.templates.check_expression(text).map_err(|error| {
                self.error(
                    line,
                    format!("{here}: {what}: expression error: {error}"),
                    "write an expression such as inputs.n > 2",
                )
            })
        };
        let mut kinds = Vec::new();
        if raw.mcp.is_some() {
            kinds.push("mcp");
        }
        if raw.llm.is_some() {
            kinds.push("llm");
        }
        if raw.http.is_some() {
            kinds.push("http");
        }
        if raw.docker.is_some() {
            kinds.push("docker");
        }
        if raw.approval.is_some() {
            kinds.push("approval");
        }
        if raw.set.is_some() {
            kinds.push("set");
        }
        if raw.log.is_some() {
            kinds.push("log");
        }
        if raw.action.is_some() || raw.method.is_some() || raw.params_template.is_some() {
            kinds.push("action");
        }
        if kinds.len() != 1 {
            let problem = if kinds.is_empty() {
                format!("{here} has no step kind")
            } else {
                format!("{here} has several step kinds ({})", kinds.join(", "))
            };
            return Err(self.error(
                line,
                problem,
                format!(
                    "give each step exactly one of {} (or the original format's action: mcp_call with method)",
                    STEP_KINDS.join(", ")
                ),
            ));
        }
        let kind = if let Some(mcp) = raw.mcp {
            let params = mcp.params.unwrap_or_else(|| json!({}));
            self.method_name(&mcp.method, &here, line)?;
            template_value(&params, "params")?;
            StepKind::Mcp {
                method: mcp.method,
                params,
            }
        } else if let Some(llm) = raw.llm {
            if llm.prompt.is_none() && llm.messages.is_none() {
                return Err(self.error(
                    line,
                    format!("{here}: llm has neither prompt nor messages"),
                    "give prompt: (the user message) or messages: [{role, content}]",
                ));
            }
            for text in [&llm.prompt, &llm.system].into_iter().flatten() {
                template(text, "llm")?;
            }
            if let Some(messages) = &llm.messages {
                template_value(messages, "llm messages")?;
            }
            if let Some(schema) = &llm.schema
                && let Err(error) = jsonschema::validator_for(schema)
            {
                return Err(self.error(
                    line,
                    format!("{here}: llm schema is not a valid JSON Schema: {error}"),
                    "write a JSON Schema (2020-12) of the answer",
                ));
            }
            if llm.retries > 5 {
                return Err(self.error(
                    line,
                    format!("{here}: llm retries is {}", llm.retries),
                    "use at most 5",
                ));
            }
            StepKind::Llm(llm)
        } else if let Some(http) = raw.http {
            let method = http.method.to_ascii_uppercase();
            if !["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"].contains(&method.as_str()) {
                return Err(self.error(
                    line,
                    format!(
                        "{here}: unknown HTTP method {}",
                        proto::text::echo(&http.method)
                    ),
                    "use GET, POST, PUT, PATCH, DELETE or HEAD",
                ));
            }
            template(&http.url, "http url")?;
            for (name, value) in &http.headers {
                template(value, "http headers")?;
                let lower = name.to_ascii_lowercase();
                if lower == "authorization"
                    || lower.contains("token")
                    || lower.contains("api-key")
                    || lower.contains("secret")
                {
                    return Err(self.error(line, format!("{here}: header {name} would put a secret in the workflow file"), "name a credential instead: auth: {credential: <name>, header: <header>} (the secret lives in the agent's credentials)"));
                }
            }
            if let Some(json) = &http.json {
                template_value(json, "http json")?;
            }
            if let Some(body) = &http.body {
                template(body, "http body")?;
            }
            if let Some(auth) = &http.auth
                && !valid_credential_name(&auth.credential)
            {
                return Err(self.error(
                    line,
                    format!(
                        "{here}: credential name {} is not a name",
                        proto::text::echo(&auth.credential)
                    ),
                    "use letters, digits, _, - or .",
                ));
            }
            StepKind::Http(http)
        } else if let Some(docker) = raw.docker {
            template(&docker.image, "docker image")?;
            for text in docker.command.iter().chain(docker.env.values()) {
                template(text, "docker")?;
            }
            StepKind::Docker(docker)
        } else if let Some(approval) = raw.approval {
            let message = approval.message.unwrap_or_else(|| format!("approve {id}?"));
            template(&message, "approval message")?;
            StepKind::Approval {
                message,
                timeout: approval.timeout.unwrap_or(Duration::from_secs(24 * 3600)),
            }
        } else if let Some(set) = raw.set {
            for value in set.values() {
                template_value(value, "set")?;
            }
            StepKind::Set(set)
        } else if let Some(message) = raw.log {
            template(&message, "log")?;
            StepKind::Log { message }
        } else {
            // The original's format: action: mcp_call, method, params_template.
            let action = raw.action.as_deref().unwrap_or("mcp_call");
            if action != "mcp_call" {
                return Err(self.error(line, format!("{here}: unknown action {}", proto::text::echo(action)), "the original format knows action: mcp_call; for other work use a step kind (llm, http, docker, …)"));
            }
            let Some(method) = raw.method else {
                return Err(self.error(
                    line,
                    format!("{here}: action mcp_call without method"),
                    "add method: mcp.<service>.<method>",
                ));
            };
            self.method_name(&method, &here, line)?;
            let params = raw.params_template.unwrap_or_else(|| json!({}));
            template_value(&params, "params_template")?;
            StepKind::Mcp { method, params }
        };
        if let Some(when) = &raw.when {
            expression(when, "when")?;
        }
        if let Some(for_each) = &raw.for_each {
            template_value(for_each, "for_each")?;
        }
        let retry = match raw.retry {
            None => Retry::default(),
            Some(written) => {
                let mut retry = Retry {
                    attempts: written.attempts.unwrap_or(3),
                    ..Retry::default()
                };
                if retry.attempts == 0 || retry.attempts > 20 {
                    return Err(self.error(
                        line,
                        format!("{here}: retry attempts is {}", retry.attempts),
                        "use 1 to 20 attempts in all",
                    ));
                }
                if let Some(backoff) = written.backoff {
                    retry.backoff = backoff;
                }
                if let Some(factor) = written.factor {
                    retry.factor = factor.clamp(1.0, 10.0);
                }
                if let Some(max) = written.max_backoff {
                    retry.max_backoff = max;
                }
                if let Some(jitter) = written.jitter {
                    retry.jitter = jitter;
                }
                if let Some(retry_if) = &written.retry_if {
                    expression(retry_if, "retry_if")?;
                }
                retry.retry_if = written.retry_if;
                retry
            }
        };
        let on_error = match raw.on_error {
            None => OnError::Fail,
            Some(RawOnError::Policy(policy)) => match policy.as_str() {
                "fail" => OnError::Fail,
                "continue" => OnError::Continue,
                other => {
                    return Err(self.error(
                        line,
                        format!("{here}: on_error {}", proto::text::echo(other)),
                        "use fail, continue or {handler: <a step>}",
                    ));
                }
            },
            Some(RawOnError::Handler { handler }) => {
                let mut handler = self.step(*handler, index, line)?;
                handler.id = format!("{id}.on_error");
                handler.needs.clear();
                OnError::Handler(Box::new(handler))
            }
        };
        let outputs = raw.outputs.unwrap_or_default();
        for template_text in outputs.values() {
            template(template_text, "outputs")?;
        }
        Ok(Step {
            id,
            kind,
            needs: raw.needs.unwrap_or_default(),
            when: raw.when,
            for_each: raw.for_each,
            max_parallel: raw.max_parallel.unwrap_or(4).clamp(1, 64),
            retry,
            timeout: raw.timeout,
            on_error,
            outputs,
        })
    }

    /// `on: {schedule: {cron, timezone?, missed?, identity?}}`.
    fn trigger(&self, on: Value) -> Result<crate::model::Trigger, LoadError> {
        let line = self
            .text
            .lines()
            .position(|line| line.starts_with("on:"))
            .map(|index| index + 1);
        let fix = "write on: {schedule: {cron: \"30 2 * * *\", timezone: Europe/Paris, missed: skip|run_once, identity: <who its calls run as>}}";
        let Value::Object(mut on) = on else {
            return Err(self.error(line, "on is not a mapping", fix));
        };
        let Some(Value::Object(mut schedule)) = on.remove("schedule") else {
            return Err(self.error(line, "on has no schedule mapping", fix));
        };
        if let Some(other) = on.keys().next() {
            return Err(self.error(
                line,
                format!("unknown trigger {}", proto::text::echo(other)),
                fix,
            ));
        }
        let identity = match schedule.remove("identity") {
            None => None,
            Some(Value::String(identity)) => Some(identity),
            Some(_) => return Err(self.error(line, "on.schedule.identity is not a name", fix)),
        };
        let spec: crate::schedule::ScheduleSpec =
            serde_json::from_value(Value::Object(schedule))
                .map_err(|error| self.error(line, format!("on.schedule: {error}"), fix))?;
        crate::schedule::Schedule::new(&spec)
            .map_err(|error| self.error(line, format!("on.schedule: {error}"), fix))?;
        Ok(crate::model::Trigger { spec, identity })
    }

    fn method_name(&self, method: &str, here: &str, line: Option<usize>) -> Result<(), LoadError> {
        let parts: Vec<&str> = method.split('.').collect();
        if parts.len() == 3 && parts[0] == "mcp" && parts[1..].iter().all(|part| !part.is_empty()) {
            Ok(())
        } else {
            Err(self.error(
                line,
                format!(
                    "{here}: method {} is not mcp.<service>.<method>",
                    proto::text::echo(method)
                ),
                "name a backend method, e.g. mcp.fs.read",
            ))
        }
    }

    /// Unique ids, known `needs`, no cycle.
    fn graph(&self, steps: &[Step]) -> Result<(), LoadError> {
        let mut index = HashMap::new();
        for (position, step) in steps.iter().enumerate() {
            if index.insert(step.id.as_str(), position).is_some() {
                return Err(self.error(
                    self.step_line(position),
                    format!("two steps are named {}", proto::text::echo(&step.id)),
                    "give every step its own id",
                ));
            }
        }
        for (position, step) in steps.iter().enumerate() {
            for need in &step.needs {
                if !index.contains_key(need.as_str()) {
                    return Err(self.error(
                        self.step_line(position),
                        format!(
                            "step {} needs {}, which is not a step",
                            proto::text::echo(&step.id),
                            proto::text::echo(need)
                        ),
                        "name an existing step's id in needs",
                    ));
                }
            }
        }
        // Depth-first search for a cycle, reporting its path.
        #[derive(Clone, Copy, PartialEq)]
        enum Mark {
            New,
            Open,
            Done,
        }
        fn visit(
            at: usize,
            steps: &[Step],
            index: &HashMap<&str, usize>,
            marks: &mut [Mark],
            path: &mut Vec<usize>,
        ) -> Option<Vec<usize>> {
            marks[at] = Mark::Open;
            path.push(at);
            for need in &steps[at].needs {
                let next = index[need.as_str()];
                match marks[next] {
                    Mark::Open => {
                        let start = path.iter().position(|&p| p == next).unwrap_or(0);
                        let mut cycle = path[start..].to_vec();
                        cycle.push(next);
                        return Some(cycle);
                    }
                    Mark::New => {
                        if let Some(cycle) = visit(next, steps, index, marks, path) {
                            return Some(cycle);
                        }
                    }
                    Mark::Done => {}
                }
            }
            path.pop();
            marks[at] = Mark::Done;
            None
        }
        let mut marks = vec![Mark::New; steps.len()];
        for start in 0..steps.len() {
            if marks[start] == Mark::New {
                let mut path = Vec::new();
                if let Some(cycle) = visit(start, steps, &index, &mut marks, &mut path) {
                    let names: Vec<&str> = cycle.iter().map(|&p| steps[p].id.as_str()).collect();
                    return Err(self.error(
                        self.step_line(cycle[0]),
                        format!("the steps' needs form a cycle: {}", names.join(" → ")),
                        "remove one of these needs so the steps form a DAG",
                    ));
                }
            }
        }
        Ok(())
    }
}

fn valid_credential_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// The workflows of the watched directories: the valid ones by id, and
/// the errors of the files that did not load.
#[derive(Debug, Default)]
pub struct Catalog {
    pub workflows: BTreeMap<String, Arc<Workflow>>,
    pub errors: Vec<LoadError>,
}

impl Catalog {
    /// Loads every `*.yaml`/`*.yml` in `dirs` (missing directories are
    /// empty). A later directory's workflow of the same id wins (the
    /// user's over the system's), and the shadowing is reported.
    pub fn load(dirs: &[PathBuf], templates: &Templates) -> Catalog {
        let mut catalog = Catalog::default();
        let mut seen: HashSet<String> = HashSet::new();
        for dir in dirs {
            let Ok(entries) = std::fs::read_dir(dir) else {
                continue;
            };
            let mut files: Vec<PathBuf> = entries
                .filter_map(Result::ok)
                .map(|entry| entry.path())
                .filter(|path| {
                    matches!(
                        path.extension().and_then(|e| e.to_str()),
                        Some("yaml" | "yml")
                    )
                })
                .collect();
            files.sort();
            for path in files {
                let file = path.display().to_string();
                match read_file(&path).and_then(|text| parse(&text, &file, templates)) {
                    Ok(workflow) => {
                        if !seen.insert(workflow.id.clone())
                            && let Some(old) = catalog.workflows.get(&workflow.id)
                        {
                            tracing::info!(id = %workflow.id, file, shadowed = %old.file, "workflow replaces one of the same id");
                        }
                        catalog
                            .workflows
                            .insert(workflow.id.clone(), Arc::new(workflow));
                    }
                    Err(error) => {
                        tracing::warn!(%error, "workflow skipped");
                        catalog.errors.push(error);
                    }
                }
            }
        }
        catalog
    }
}

fn read_file(path: &Path) -> Result<String, LoadError> {
    let file = path.display().to_string();
    let metadata = std::fs::metadata(path).map_err(|error| {
        LoadError::new(
            &file,
            None,
            format!("cannot read it: {error}"),
            "check the file's permissions",
        )
    })?;
    if metadata.len() > MAX_FILE_BYTES {
        return Err(LoadError::new(
            &file,
            None,
            format!("the file has {} bytes", metadata.len()),
            format!("a workflow file may have at most {MAX_FILE_BYTES} bytes"),
        ));
    }
    std::fs::read_to_string(path).map_err(|error| {
        LoadError::new(
            &file,
            None,
            format!("cannot read it: {error}"),
            "save it as UTF-8 text readable by the agent",
        )
    })
}

/// Watches `dirs` and publishes a new catalog after each change (debounced
/// 100 ms, on a thread of its own). The watch lives as long as the
/// returned watcher.
pub fn watch(
    dirs: Vec<PathBuf>,
    templates: Arc<Templates>,
    sender: watch::Sender<Arc<Catalog>>,
) -> notify::Result<notify::RecommendedWatcher> {
    use notify::{RecursiveMode, Watcher};
    let (changed, changes) = std::sync::mpsc::channel::<()>();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event
            && !matches!(event.kind, notify::EventKind::Access(_))
        {
            let _ = changed.send(());
        }
    })?;
    for dir in &dirs {
        if dir.is_dir() {
            watcher.watch(dir, RecursiveMode::NonRecursive)?;
        }
    }
    std::thread::Builder::new()
        .name("agent-watch".to_owned())
        .spawn(move || {
            // Ends when the watcher (holding the sending side) is dropped.
            while changes.recv().is_ok() {
                // Debounce: an editor's save is several events.
                while changes.recv_timeout(Duration::from_millis(100)).is_ok() {}
                let catalog = Catalog::load(&dirs, &templates);
                tracing::info!(
                    workflows = catalog.workflows.len(),
                    errors = catalog.errors.len(),
                    "workflows reloaded"
                );
                if sender.send(Arc::new(catalog)).is_err() {
                    break;
                }
            }
        })
        .map_err(|error| notify::Error::generic(&error.to_string()))?;
    Ok(watcher)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Workflow, LoadError> {
        parse(text, "w.yaml", &Templates::new())
    }

    #[test]
    fn steps_follow_the_step_before_unless_needs_says_otherwise() {
        let workflow = load(
            "id: w\nsteps:\n  - id: a\n    log: a\n  - id: b\n    log: b\n  - id: c\n    needs: []\n    log: c\n",
        )
        .unwrap();
        let needs: Vec<_> = workflow.steps.iter().map(|s| s.needs.clone()).collect();
        assert_eq!(needs, vec![vec![], vec!["a".to_owned()], vec![]]);
    }

    #[test]
    fn the_original_format_loads_onto_the_step_model() {
        let workflow = load(
            r#"
id: summarize
name: Summarize
type: mcp_sequential_agent
input_schema: {type: object, properties: {path: {type: string}}}
steps:
  - name: read
    action: mcp_call
    method: mcp.fs.read
    params_template: ["{{ inputs.path }}"]
    outputs_to_context:
      text: "{{ result.content }}"
  - name: ask
    action: mcp_call
    method: mcp.llm.chat
    params_template:
      messages: [{role: user, content: "Summarize: {{ context.text }}"}]
    outputs_to_context:
      summary: "{{ result.choices[0].message.content | replace('\n', ' ') | default('') }}"
"#,
        )
        .unwrap();
        assert_eq!(workflow.steps.len(), 2);
        assert!(
            matches!(&workflow.steps[0].kind, StepKind::Mcp { method, .. } if method == "mcp.fs.read")
        );
        assert_eq!(workflow.steps[1].needs, vec!["read".to_owned()]);
        assert!(workflow.steps[1].outputs.contains_key("summary"));
    }

    #[test]
    fn errors_name_the_line_and_the_fix() {
        let error =
            load("id: w\nsteps:\n  - id: a\n    log: a\n  - id: b\n    frobnicate: {x: 1}\n")
                .unwrap_err();
        assert_eq!(error.line, Some(6), "{error}");
        assert!(error.problem.contains("frobnicate"), "{error}");
        assert!(error.fix.contains("exactly one kind"), "{error}");
        // A step's unknown key is judged by the keys, not by serde's text:
        // a bad value of a known key gets the general fix.
        let error =
            load("id: w\nsteps:\n  - id: a\n    max_parallel: many\n    log: a\n").unwrap_err();
        assert!(!error.fix.contains("exactly one kind"), "{error}");
        assert!(step_fields().contains(&"on_error"), "{:?}", step_fields());
        assert!(step_fields().contains(&"params_template"));

        let error = load("id: w\nsteps:\n  - id: a\n    log: a\n   bad indent: [\n").unwrap_err();
        assert!(error.line.is_some(), "{error}");

        let error = load("id: w\nsteps:\n  - id: a\n    needs: [b]\n    log: a\n  - id: b\n    needs: [a]\n    log: b\n").unwrap_err();
        assert!(error.problem.contains("cycle"), "{error}");
        assert!(
            error.problem.contains("a → b → a") || error.problem.contains("b → a → b"),
            "{error}"
        );
        assert_eq!(error.line, Some(3), "{error}");

        let error =
            load("id: w\nsteps:\n  - id: a\n    log: a\n  - id: b\n    log: \"{{ inputs.x \"\n")
                .unwrap_err();
        assert!(error.problem.contains("template error"), "{error}");
        assert_eq!(error.line, Some(5), "{error}");

        let error = load("id: w\nsteps:\n  - id: a\n    mcp: {method: fs.read}\n").unwrap_err();
        assert!(error.fix.contains("mcp.fs.read"), "{error}");

        let error = load("id: w\nsteps:\n  - id: a\n    http: {url: 'http://x', headers: {Authorization: 'Bearer abc'}}\n").unwrap_err();
        assert!(error.fix.contains("credential"), "{error}");
        assert!(!error.to_string().contains("abc"), "{error}");
    }

    #[test]
    fn a_schedule_is_checked_at_load() {
        let workflow = load("id: w\non:\n  schedule: {cron: '30 2 * * *', timezone: Europe/Paris, missed: run_once, identity: backup}\nsteps:\n  - log: hi\n").unwrap();
        let trigger = workflow.schedule.unwrap();
        assert_eq!(trigger.identity.as_deref(), Some("backup"));
        let error = load("id: w\non:\n  schedule: {cron: 'every tuesday'}\nsteps:\n  - log: hi\n")
            .unwrap_err();
        assert_eq!(error.line, Some(2), "{error}");
        assert!(error.problem.contains("cron"), "{error}");
        let error = load("id: w\non:\n  schedule: {cron: '* * * * *', timezone: Mars/Olympus}\nsteps:\n  - log: hi\n").unwrap_err();
        assert!(error.problem.contains("time zone"), "{error}");
    }

    #[test]
    fn a_broken_file_is_skipped_and_the_others_load() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("good.yaml"),
            "id: good\nsteps:\n  - log: hi\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("bad.yaml"), "id: bad\nsteps: [\n").unwrap();
        std::fs::write(dir.path().join("notes.txt"), "not a workflow").unwrap();
        let catalog = Catalog::load(&[dir.path().to_owned()], &Templates::new());
        assert_eq!(catalog.workflows.keys().collect::<Vec<_>>(), vec!["good"]);
        assert_eq!(catalog.errors.len(), 1);
        assert!(catalog.errors[0].file.ends_with("bad.yaml"));
    }
}
