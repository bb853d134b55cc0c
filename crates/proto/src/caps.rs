//! The caps.json model: a service's contract (DESIGN.md 4.2).
//!
//! A caps file is checked as a whole when it is loaded — method names unique
//! and well formed, every schema compiling under JSON Schema 2020-12, every
//! `positional` name a property of its schema — and every problem names the
//! file, the method and what to fix. Schemas are compiled at most once per
//! method; callers keep the [`CompiledCaps`] and never compile per call.
//!
//! Caps from outside the binary ([`CompiledCaps::load`], `from_json`) are
//! compiled whole when loaded, so a broken schema is refused at once. Caps
//! compiled into a server ([`CompiledCaps::embedded`]) are checked in
//! shape at start and each schema is compiled at its method's first call:
//! a socket-activated server's first answer does not wait for schemas of
//! methods nobody called (several ms per file: `cargo bench -p proto
//! --bench caps`), and the crate's own tests compile the same text whole.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::Path;
use std::sync::{Arc, LazyLock, OnceLock};

use jsonschema::{Draft, Validator};
use regex::Regex;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// What separates the service from the method in a generated MCP tool name:
/// `mcp.fs.read` becomes `fs_read`.
pub const TOOL_NAME_SEPARATOR: char = '_';

/// MCP hosts accept tool names matching `^[a-zA-Z0-9_-]{1,64}$`.
pub const MAX_TOOL_NAME: usize = 64;

static SERVICE_NAME: LazyLock<Regex> =
    LazyLock::new(|| Regex::new("^[a-z][a-z0-9]*$").expect("valid regex"));
static METHOD_LEAF: LazyLock<Regex> =
    LazyLock::new(|| Regex::new("^[A-Za-z][A-Za-z0-9_]*$").expect("valid regex"));

/// A service's capability file, as written.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Caps {
    /// The service name: lower-case letters and digits (`fs`, `mail`).
    pub service: String,
    pub version: String,
    pub description: String,
    /// The base of the service's error codes (DESIGN.md 4.1), e.g. -32010.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_base: Option<i32>,
    /// Service-specific error codes beyond the four derived from the base.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<ErrorSpec>,
    pub methods: Vec<MethodSpec>,
    /// The MCP resources the service serves, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourcesSpec>,
    /// The MCP prompts the service offers, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompts: Option<PromptsSpec>,
    /// Tools the service makes and withdraws at run time, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dynamic_tools: Option<DynamicToolsSpec>,
    /// The gateway passes the calling client's identity and tier to the
    /// service in `_meta["llmbasedos/caller"]` (the agent server acts on
    /// behalf of its callers).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub wants_caller: bool,
}

/// How a service offers tools that change while it runs (the agent's
/// workflows, say), besides its methods: three methods declared in
/// `methods` (usually with `"tool": false`). `list` takes `{}` and returns
/// `{tools: [MCP Tool]}`, the current tools under their own names; `call`
/// takes `{name, arguments}` and returns the result of that tool as any
/// method's result; `watch` is a long-running call taking `{}` that sends
/// one `notifications/progress` when it is in place and one more each time
/// the list may have changed, and runs until cancelled. The gateway lists
/// again on each, and hosts get `notifications/tools/list_changed` when the
/// list did change.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DynamicToolsSpec {
    pub list: String,
    pub call: String,
    pub watch: String,
}

/// How a service offers MCP prompts: their definitions, and the method
/// (declared in `methods`, usually with `"tool": false`) that renders one:
/// it takes `{name, arguments}` and returns a `prompts/get` result. Hosts see
/// each prompt as `<service>_<name>`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromptsSpec {
    pub get: String,
    pub prompts: Vec<crate::mcp::Prompt>,
    /// The method (declared in `methods`) that completes a prompt's
    /// argument for `completion/complete`: it takes `{name, argument: {name,
    /// value}, context?}` (`name` is the prompt's, without the service) and
    /// returns a `completion/complete` result. Without it, prompt arguments
    /// get no suggestions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub complete: Option<String>,
}

/// How a service serves MCP resources: the URIs it owns and the two methods
/// (declared in `methods`, usually with `"tool": false`) that list and read
/// them. `list` takes `{cursor?}` and returns a `resources/list` result;
/// `read` takes `{uri}` and returns a `resources/read` result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourcesSpec {
    /// Every URI starting with this belongs to the service (`file:///`).
    pub uri_prefix: String,
    pub list: String,
    pub read: String,
    /// Resource templates (RFC 6570) announced by `resources/templates/list`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub templates: Vec<crate::mcp::ResourceTemplate>,
    /// The method (declared in `methods`) that completes a template's
    /// argument for `completion/complete`: it takes `{uri, argument: {name,
    /// value}}` (`uri` is the template) and returns a `completion/complete`
    /// result. Without it, template arguments get no suggestions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub complete: Option<String>,
    /// The method (declared in `methods`) behind `resources/subscribe`: a
    /// long-running call taking `{uri}` that refuses a URI it cannot watch,
    /// sends one `notifications/progress` when the watch is in place, one
    /// more each time the resource changes, and runs until cancelled.
    /// Without it, the service's resources cannot be subscribed to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscribe: Option<String>,
}

/// One method of a service.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MethodSpec {
    /// `mcp.<service>.<method>`.
    pub name: String,
    /// A plain description that lets a model choose the right method.
    pub description: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// JSON Schema 2020-12 of the named params; always `"type": "object"`.
    pub params_schema: Value,
    /// The order in which a positional (array) call names the params.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub positional: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result_schema: Option<Value>,
    /// MCP tool annotations (`readOnlyHint`, `destructiveHint`, …), passed through.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<Map<String, Value>>,
    /// Whether hosts see the method as an MCP tool (default true). Methods
    /// behind resources are callable by name but not tools.
    #[serde(default = "yes", skip_serializing_if = "is_yes")]
    pub tool: bool,
}

fn yes() -> bool {
    true
}

fn is_yes(value: &bool) -> bool {
    *value
}

/// A documented service error code.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorSpec {
    pub code: i32,
    pub name: String,
    pub description: String,
}

/// Why a caps file cannot be used. The message names the file, the method
/// (when one is at fault) and the problem.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CapsError {
    /// The file's path, or a label for caps that did not come from a file.
    pub origin: String,
    pub method: Option<String>,
    pub problem: String,
}

impl fmt::Display for CapsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.method {
            Some(method) => write!(f, "{}: method {}: {}", self.origin, method, self.problem),
            None => write!(f, "{}: {}", self.origin, self.problem),
        }
    }
}

impl std::error::Error for CapsError {}

/// Caps whose schemas are compiled and whose contract has been checked.
#[derive(Debug)]
pub struct CompiledCaps {
    caps: Caps,
    methods: HashMap<String, CompiledMethod>,
}

/// A method with its validators, compiled at most once.
#[derive(Debug)]
pub struct CompiledMethod {
    pub spec: MethodSpec,
    /// Where the caps came from, for the error of a schema that does not
    /// compile at its first use.
    origin: Arc<str>,
    params: OnceLock<Result<Validator, CapsError>>,
    result: OnceLock<Result<Validator, CapsError>>,
}

impl CompiledMethod {
    fn new(spec: MethodSpec, origin: Arc<str>) -> CompiledMethod {
        CompiledMethod {
            spec,
            origin,
            params: OnceLock::new(),
            result: OnceLock::new(),
        }
    }

    /// The validator of the params, compiled at the first use unless the
    /// caps were compiled whole when loaded.
    pub fn params(&self) -> Result<&Validator, &CapsError> {
        self.params
            .get_or_init(|| self.compile("params_schema", &self.spec.params_schema))
            .as_ref()
    }

    /// The validator of the result, if the method declares a
    /// `result_schema`; compiled like [`CompiledMethod::params`].
    pub fn result(&self) -> Option<Result<&Validator, &CapsError>> {
        let schema = self.spec.result_schema.as_ref()?;
        Some(
            self.result
                .get_or_init(|| self.compile("result_schema", schema))
                .as_ref(),
        )
    }

    fn compile(&self, which: &str, schema: &Value) -> Result<Validator, CapsError> {
        compile_schema(schema).map_err(|problem| CapsError {
            origin: self.origin.to_string(),
            method: Some(self.spec.name.clone()),
            problem: format!("{which} does not compile: {problem}"),
        })
    }

    /// Compiles both schemas now: the error of the first that does not.
    fn compile_now(&self) -> Result<(), CapsError> {
        self.params().map_err(Clone::clone)?;
        if let Some(result) = self.result() {
            result.map_err(Clone::clone)?;
        }
        Ok(())
    }
}

impl CompiledCaps {
    /// Reads, parses and checks a caps file, compiling every schema.
    pub fn load(path: &Path) -> Result<CompiledCaps, CapsError> {
        let (text, origin) = read(path)?;
        CompiledCaps::from_json(&text, &origin)
    }

    /// Reads a caps file for a router that hands the schemas to its clients
    /// but validates nothing with them (the gateway): the contract is
    /// checked, and every schema against the JSON Schema meta-schema (what
    /// a host is given is a valid schema), but none is compiled: compiling
    /// the shipped caps took about 20 ms of a cold start's first call. The
    /// service validates its own params with its compiled schemas.
    pub fn load_for_routing(path: &Path) -> Result<CompiledCaps, CapsError> {
        let (text, origin) = read(path)?;
        let compiled = CompiledCaps::embedded(&text, &origin)?;
        for spec in &compiled.caps.methods {
            let schemas = std::iter::once(("params_schema", &spec.params_schema)).chain(
                spec.result_schema
                    .iter()
                    .map(|schema| ("result_schema", schema)),
            );
            for (which, schema) in schemas {
                jsonschema::meta::validate(schema).map_err(|error| CapsError {
                    origin: origin.clone(),
                    method: Some(spec.name.clone()),
                    problem: format!("{which} is not a valid JSON Schema: {error}"),
                })?;
            }
        }
        Ok(compiled)
    }

    /// Parses and checks caps from text; `origin` names where it came from.
    pub fn from_json(text: &str, origin: &str) -> Result<CompiledCaps, CapsError> {
        CompiledCaps::compile(parse(text, origin)?, origin)
    }

    /// Parses caps compiled into the binary and checks their shape; each
    /// schema is compiled at its method's first use (see the module docs).
    /// Only for text whose whole compilation a test of the crate checks
    /// (`from_json` of the same text): a schema that does not compile is
    /// otherwise found only when its method is called.
    pub fn embedded(text: &str, origin: &str) -> Result<CompiledCaps, CapsError> {
        CompiledCaps::check(parse(text, origin)?, origin)
    }

    /// Checks the contract and compiles every schema.
    pub fn compile(caps: Caps, origin: &str) -> Result<CompiledCaps, CapsError> {
        let compiled = CompiledCaps::check(caps, origin)?;
        for spec in &compiled.caps.methods {
            compiled.methods[&spec.name].compile_now()?;
        }
        Ok(compiled)
    }

    /// Checks the contract, compiling no schema.
    fn check(caps: Caps, origin: &str) -> Result<CompiledCaps, CapsError> {
        let shared_origin: Arc<str> = Arc::from(origin);
        let file_error = |problem: String| CapsError {
            origin: origin.to_owned(),
            method: None,
            problem,
        };
        if !SERVICE_NAME.is_match(&caps.service) {
            return Err(file_error(format!(
                "service name {:?} must be lower-case letters and digits, starting with a letter",
                caps.service
            )));
        }
        if caps.methods.is_empty() {
            return Err(file_error("declares no methods".to_owned()));
        }
        if let Some(base) = caps.error_base
            && !(-32099..=-32000).contains(&base)
        {
            return Err(file_error(format!(
                "error_base {base} is outside the server error range -32099..=-32000"
            )));
        }
        let mut codes = HashSet::new();
        for error in &caps.errors {
            if !codes.insert(error.code) {
                return Err(file_error(format!(
                    "error code {} is documented twice",
                    error.code
                )));
            }
        }
        let prefix = format!("mcp.{}.", caps.service);
        let mut methods = HashMap::with_capacity(caps.methods.len());
        for spec in &caps.methods {
            let method_error = |problem: String| CapsError {
                origin: origin.to_owned(),
                method: Some(spec.name.clone()),
                problem,
            };
            let Some(leaf) = spec.name.strip_prefix(&prefix) else {
                return Err(method_error(format!("the name must start with {prefix:?}")));
            };
            if !METHOD_LEAF.is_match(leaf) {
                return Err(method_error(format!(
                    "{leaf:?} must be letters, digits and underscores, starting with a letter"
                )));
            }
            let tool = tool_name(&spec.name).unwrap_or_default();
            if tool.len() > MAX_TOOL_NAME {
                return Err(method_error(format!(
                    "its MCP tool name {tool:?} is longer than {MAX_TOOL_NAME} characters"
                )));
            }
            if methods.contains_key(&spec.name) {
                return Err(method_error("is declared more than once".to_owned()));
            }
            if spec.description.trim().is_empty() {
                return Err(method_error("has an empty description".to_owned()));
            }
            check_method(spec).map_err(method_error)?;
            methods.insert(
                spec.name.clone(),
                CompiledMethod::new(spec.clone(), shared_origin.clone()),
            );
        }
        if let Some(resources) = &caps.resources {
            if !resources.uri_prefix.contains("://") {
                return Err(file_error(format!(
                    "resources.uri_prefix {:?} must be a URI prefix such as \"file:///\"",
                    resources.uri_prefix
                )));
            }
            let complete = resources.complete.iter().map(|method| ("complete", method));
            let subscribe = resources
                .subscribe
                .iter()
                .map(|method| ("subscribe", method));
            for (key, method) in [("list", &resources.list), ("read", &resources.read)]
                .into_iter()
                .chain(complete)
                .chain(subscribe)
            {
                if !methods.contains_key(method) {
                    return Err(file_error(format!(
                        "resources.{key} names {method:?}, which is not a declared method"
                    )));
                }
            }
        }
        if let Some(dynamic) = &caps.dynamic_tools {
            for (key, method) in [
                ("list", &dynamic.list),
                ("call", &dynamic.call),
                ("watch", &dynamic.watch),
            ] {
                if !methods.contains_key(method) {
                    return Err(file_error(format!(
                        "dynamic_tools.{key} names {method:?}, which is not a declared method"
                    )));
                }
            }
        }
        if let Some(prompts) = &caps.prompts {
            for (key, method) in std::iter::once(("get", &prompts.get))
                .chain(prompts.complete.iter().map(|method| ("complete", method)))
            {
                if !methods.contains_key(method) {
                    return Err(file_error(format!(
                        "prompts.{key} names {method:?}, which is not a declared method"
                    )));
                }
            }
            let mut names = HashSet::new();
            for prompt in &prompts.prompts {
                if !METHOD_LEAF.is_match(&prompt.name) || !names.insert(&prompt.name) {
                    return Err(file_error(format!(
                        "prompt name {:?} must be unique, letters, digits and underscores",
                        prompt.name
                    )));
                }
            }
        }
        Ok(CompiledCaps { caps, methods })
    }

    pub fn caps(&self) -> &Caps {
        &self.caps
    }

    pub fn service(&self) -> &str {
        &self.caps.service
    }

    pub fn method(&self, name: &str) -> Option<&CompiledMethod> {
        self.methods.get(name)
    }

    /// Takes the caps apart: the contract as written and the compiled methods.
    pub fn into_parts(self) -> (Caps, HashMap<String, CompiledMethod>) {
        (self.caps, self.methods)
    }

    /// Method names in the order the file declares them.
    pub fn method_names(&self) -> impl Iterator<Item = &str> {
        self.caps.methods.iter().map(|spec| spec.name.as_str())
    }
}

/// Caps from their text; `origin` names where it came from.
fn parse(text: &str, origin: &str) -> Result<Caps, CapsError> {
    serde_json::from_str(text).map_err(|error| CapsError {
        origin: origin.to_owned(),
        method: None,
        problem: format!("not a valid caps file: {error}"),
    })
}

/// A caps file's text and the name its errors give it.
fn read(path: &Path) -> Result<(String, String), CapsError> {
    let origin = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => Ok((text, origin)),
        Err(error) => Err(CapsError {
            origin,
            method: None,
            problem: format!("cannot read the file: {error}"),
        }),
    }
}

/// The shape of a method's schemas: what holds before any is compiled.
fn check_method(spec: &MethodSpec) -> Result<(), String> {
    let Value::Object(schema) = &spec.params_schema else {
        return Err("params_schema must be a JSON object".to_owned());
    };
    if schema.get("type") != Some(&Value::String("object".to_owned())) {
        return Err(
            "params_schema must have \"type\": \"object\" (MCP tool inputs are objects)".to_owned(),
        );
    }
    let properties = schema.get("properties").and_then(Value::as_object);
    let mut seen = HashSet::new();
    for name in &spec.positional {
        if !seen.insert(name) {
            return Err(format!("positional name {name:?} appears twice"));
        }
        if !properties.is_some_and(|properties| properties.contains_key(name)) {
            return Err(format!(
                "positional name {name:?} is not a property of params_schema"
            ));
        }
    }
    Ok(())
}

/// Compiles a schema as JSON Schema 2020-12 (unless it names another draft
/// in `$schema`), checking it against the meta-schema. External references
/// are never fetched.
pub fn compile_schema(schema: &Value) -> Result<Validator, String> {
    jsonschema::options()
        .with_draft(Draft::Draft202012)
        .build(schema)
        .map_err(|error| error.to_string())
}

/// The MCP tool name of a method: `mcp.fs.read` → `fs_read`. `None` when the
/// name is not of the `mcp.<service>.<method>` form.
pub fn tool_name(method: &str) -> Option<String> {
    let rest = method.strip_prefix("mcp.")?;
    let (service, leaf) = rest.split_once('.')?;
    if service.is_empty() || leaf.is_empty() || leaf.contains('.') {
        return None;
    }
    Some(format!("{service}{TOOL_NAME_SEPARATOR}{leaf}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn caps_with(method: Value) -> String {
        json!({
            "service": "demo", "version": "0.1.0", "description": "demo",
            "methods": [method],
        })
        .to_string()
    }

    fn method(name: &str) -> Value {
        json!({
            "name": name, "description": "does a thing",
            "params_schema": {"type": "object", "properties": {"path": {"type": "string"}}},
            "positional": ["path"],
        })
    }

    #[test]
    fn accepts_a_good_file() {
        let compiled =
            CompiledCaps::from_json(&caps_with(method("mcp.demo.read_all")), "demo.cap.json")
                .expect("valid caps");
        let method = compiled.method("mcp.demo.read_all").expect("declared");
        let params = method.params().expect("compiled");
        assert!(params.is_valid(&json!({"path": "/a"})));
        assert!(!params.is_valid(&json!({"path": 3})));
    }

    #[test]
    fn dynamic_tools_name_declared_methods() {
        let mut caps: Value =
            serde_json::from_str(&caps_with(method("mcp.demo.list"))).expect("json");
        caps["dynamic_tools"] =
            json!({"list": "mcp.demo.list", "call": "mcp.demo.list", "watch": "mcp.demo.watch"});
        let error =
            CompiledCaps::from_json(&caps.to_string(), "demo.cap.json").expect_err("undeclared");
        assert!(
            error.to_string().contains(
                "dynamic_tools.watch names \"mcp.demo.watch\", which is not a declared method"
            ),
            "{error}"
        );
        caps["dynamic_tools"]["watch"] = json!("mcp.demo.list");
        let compiled = CompiledCaps::from_json(&caps.to_string(), "demo.cap.json").expect("valid");
        assert_eq!(
            compiled
                .caps()
                .dynamic_tools
                .as_ref()
                .map(|d| d.call.as_str()),
            Some("mcp.demo.list")
        );
    }

    #[test]
    fn refuses_bad_files_naming_file_method_and_problem() {
        let mut bad_positional = method("mcp.demo.read");
        bad_positional["positional"] = json!(["path", "encoding"]);
        let mut bad_schema = method("mcp.demo.read");
        bad_schema["params_schema"] =
            json!({"type": "object", "properties": {"path": {"type": "strin"}}});
        let mut not_object = method("mcp.demo.read");
        not_object["params_schema"] = json!({"type": "string"});
        let mut bad_result = method("mcp.demo.read");
        bad_result["result_schema"] = json!({"minimum": "zero"});
        let mut repeated = method("mcp.demo.read");
        repeated["positional"] = json!(["path", "path"]);
        let long = format!("mcp.demo.{}", "x".repeat(60));
        let cases: Vec<(String, &str)> = vec![
            (caps_with(bad_positional), "method mcp.demo.read: positional name \"encoding\" is not a property"),
            (caps_with(bad_schema), "method mcp.demo.read: params_schema does not compile"),
            (caps_with(not_object), "method mcp.demo.read: params_schema must have \"type\": \"object\""),
            (caps_with(bad_result), "method mcp.demo.read: result_schema does not compile"),
            (caps_with(repeated), "positional name \"path\" appears twice"),
            (caps_with(method("mcp.other.read")), "method mcp.other.read: the name must start with \"mcp.demo.\""),
            (caps_with(method("mcp.demo.9lives")), "method mcp.demo.9lives: \"9lives\" must be letters"),
            (caps_with(method("mcp.demo.a.b")), "method mcp.demo.a.b: \"a.b\" must be letters"),
            (caps_with(method(&long)), "is longer than 64 characters"),
            (
                json!({"service": "demo", "version": "1", "description": "d",
                       "methods": [method("mcp.demo.read"), method("mcp.demo.read")]})
                .to_string(),
                "method mcp.demo.read: is declared more than once",
            ),
            (
                json!({"service": "Demo", "version": "1", "description": "d", "methods": [method("mcp.Demo.read")]})
                    .to_string(),
                "demo.cap.json: service name \"Demo\"",
            ),
            (
                json!({"service": "demo", "version": "1", "description": "d", "methods": [], "extra": 1}).to_string(),
                "demo.cap.json: not a valid caps file: unknown field `extra`",
            ),
            ("{".to_owned(), "demo.cap.json: not a valid caps file: EOF while parsing"),
            (
                json!({"service": "demo", "version": "1", "description": "d", "methods": [method("mcp.demo.read")],
                       "resources": {"uri_prefix": "file:///", "list": "mcp.demo.list", "read": "mcp.demo.read"}})
                .to_string(),
                "demo.cap.json: resources.list names \"mcp.demo.list\", which is not a declared method",
            ),
            (
                json!({"service": "demo", "version": "1", "description": "d", "methods": [method("mcp.demo.read")],
                       "resources": {"uri_prefix": "files", "list": "mcp.demo.read", "read": "mcp.demo.read"}})
                .to_string(),
                "resources.uri_prefix \"files\" must be a URI prefix",
            ),
        ];
        for (text, expected) in cases {
            let error = CompiledCaps::from_json(&text, "demo.cap.json")
                .expect_err(expected)
                .to_string();
            assert!(error.starts_with("demo.cap.json: "), "{error}");
            assert!(
                error.contains(expected),
                "expected {expected:?} in {error:?}"
            );
        }
    }

    #[test]
    fn embedded_caps_compile_a_schema_at_its_first_use_and_say_which_does_not() {
        let bad = json!({"name": "mcp.demo.read", "description": "reads",
            "params_schema": {"type": "object", "properties": {"path": {"type": "nonsense"}}}});
        let text = caps_with(bad);
        let whole = CompiledCaps::from_json(&text, "demo.cap.json").expect_err("compiled whole");
        assert!(
            whole.to_string().contains("params_schema does not compile"),
            "{whole}"
        );

        let embedded = CompiledCaps::embedded(&text, "demo.cap.json").expect("the shape is right");
        let read = embedded.method("mcp.demo.read").expect("declared");
        let error = read.params().expect_err("compiled at first use");
        assert_eq!(error.origin, "demo.cap.json");
        assert_eq!(error.method.as_deref(), Some("mcp.demo.read"));
        assert!(
            error.problem.starts_with("params_schema does not compile"),
            "{error}"
        );
        assert!(read.result().is_none(), "no result_schema, no validator");

        let good = CompiledCaps::embedded(&caps_with(method("mcp.demo.read")), "demo.cap.json")
            .expect("valid");
        let params = good
            .method("mcp.demo.read")
            .expect("declared")
            .params()
            .expect("compiles");
        assert!(params.is_valid(&json!({"path": "/a"})));
        // A shape problem is still found at start.
        let mut no_object = method("mcp.demo.read");
        no_object["params_schema"] = json!({"type": "array"});
        let error =
            CompiledCaps::embedded(&caps_with(no_object), "demo.cap.json").expect_err("shape");
        assert!(
            error.to_string().contains("\"type\": \"object\""),
            "{error}"
        );
    }

    #[test]
    fn loading_for_routing_checks_every_schema_against_the_meta_schema() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("demo.cap.json");
        std::fs::write(&path, caps_with(method("mcp.demo.read"))).expect("write");
        let caps = CompiledCaps::load_for_routing(&path).expect("valid");
        assert_eq!(caps.service(), "demo");

        let mut bad_result = method("mcp.demo.read");
        bad_result["result_schema"] =
            json!({"type": "object", "properties": {"n": {"minimum": "one"}}});
        std::fs::write(&path, caps_with(bad_result)).expect("write");
        let error = CompiledCaps::load_for_routing(&path).expect_err("not a schema");
        assert_eq!(error.method.as_deref(), Some("mcp.demo.read"));
        assert!(
            error
                .problem
                .starts_with("result_schema is not a valid JSON Schema"),
            "{error}"
        );
        assert!(error.origin.ends_with("demo.cap.json"), "{error}");

        let error =
            CompiledCaps::load_for_routing(&dir.path().join("gone.cap.json")).expect_err("missing");
        assert!(error.problem.starts_with("cannot read the file"), "{error}");
    }

    #[test]
    fn load_names_the_missing_file() {
        let error = CompiledCaps::load(Path::new("/nonexistent/x.cap.json")).expect_err("missing");
        assert!(
            error
                .to_string()
                .starts_with("/nonexistent/x.cap.json: cannot read the file"),
            "{error}"
        );
    }

    #[test]
    fn tool_names() {
        assert_eq!(tool_name("mcp.fs.read").as_deref(), Some("fs_read"));
        assert_eq!(
            tool_name("mcp.mail.listMessages").as_deref(),
            Some("mail_listMessages")
        );
        assert_eq!(tool_name("fs.read"), None);
        assert_eq!(tool_name("mcp.fs"), None);
    }
}
