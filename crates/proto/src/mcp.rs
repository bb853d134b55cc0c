//! MCP message types for both protocol eras llmbasedos speaks:
//!
//! - **2025-11-25 (legacy)**: `initialize` → `notifications/initialized`,
//!   then a session; `ping`, `logging/setLevel`, `resources/subscribe`.
//! - **2026-07-28 (modern)**: stateless. Every request names its protocol
//!   version and client capabilities in `_meta` ([`RequestMeta`]); servers
//!   answer `server/discover` ([`DiscoverResult`]); results carry
//!   `resultType` and list results carry cache hints (`ttlMs`,
//!   `cacheScope`); list-changed notifications flow on a
//!   `subscriptions/listen` stream.
//!
//! One set of types serves both eras: fields that exist in only one era are
//! optional and documented as such, unknown fields are ignored on input,
//! and absent optional fields are not written. The caller (the gateway's
//! MCP facade) decides which era a request belongs to
//! ([`RequestMeta::is_modern`]) and fills the era's fields.
//!
//! Method and notification names are in [`method`], `_meta` keys in
//! [`meta_key`], MCP's own error codes in [`code`].

mod content;
mod lifecycle;
mod meta;
mod params;
mod prompts;
mod resources;
mod tools;
mod utilities;
mod version;

use serde_json::{Map, Value, json};

pub use self::content::*;
pub use self::lifecycle::*;
pub use self::meta::*;
pub use self::params::*;
pub use self::prompts::*;
pub use self::resources::*;
pub use self::tools::*;
pub use self::utilities::*;
pub use self::version::*;
use crate::error::ErrorObject;

/// A JSON object: schemas, free-form capabilities, `_meta`.
pub type JsonObject = Map<String, Value>;

/// Method and notification names, spelled as on the wire (`/` → `_`).
pub mod method {
    use super::Era;

    // Requests of both eras.
    pub const TOOLS_LIST: &str = "tools/list";
    pub const TOOLS_CALL: &str = "tools/call";
    pub const RESOURCES_LIST: &str = "resources/list";
    pub const RESOURCES_TEMPLATES_LIST: &str = "resources/templates/list";
    pub const RESOURCES_READ: &str = "resources/read";
    pub const PROMPTS_LIST: &str = "prompts/list";
    pub const PROMPTS_GET: &str = "prompts/get";
    pub const COMPLETION_COMPLETE: &str = "completion/complete";

    // Requests of 2025-11-25 only.
    pub const INITIALIZE: &str = "initialize";
    pub const PING: &str = "ping";
    pub const LOGGING_SET_LEVEL: &str = "logging/setLevel";
    pub const RESOURCES_SUBSCRIBE: &str = "resources/subscribe";
    pub const RESOURCES_UNSUBSCRIBE: &str = "resources/unsubscribe";
    pub const TASKS_GET: &str = "tasks/get";
    pub const TASKS_RESULT: &str = "tasks/result";
    pub const TASKS_LIST: &str = "tasks/list";
    pub const TASKS_CANCEL: &str = "tasks/cancel";

    // Requests of 2026-07-28 only.
    pub const SERVER_DISCOVER: &str = "server/discover";
    pub const SUBSCRIPTIONS_LISTEN: &str = "subscriptions/listen";

    // Server-to-client requests in 2025-11-25; in 2026-07-28 the same names
    // appear only inside an `input_required` result.
    pub const ROOTS_LIST: &str = "roots/list";
    pub const SAMPLING_CREATE_MESSAGE: &str = "sampling/createMessage";
    pub const ELICITATION_CREATE: &str = "elicitation/create";

    // Notifications of both eras.
    pub const NOTIFICATIONS_CANCELLED: &str = "notifications/cancelled";
    pub const NOTIFICATIONS_PROGRESS: &str = "notifications/progress";
    pub const NOTIFICATIONS_MESSAGE: &str = "notifications/message";
    pub const NOTIFICATIONS_RESOURCES_UPDATED: &str = "notifications/resources/updated";
    pub const NOTIFICATIONS_RESOURCES_LIST_CHANGED: &str = "notifications/resources/list_changed";
    pub const NOTIFICATIONS_TOOLS_LIST_CHANGED: &str = "notifications/tools/list_changed";
    pub const NOTIFICATIONS_PROMPTS_LIST_CHANGED: &str = "notifications/prompts/list_changed";

    // Notifications of 2025-11-25 only.
    pub const NOTIFICATIONS_INITIALIZED: &str = "notifications/initialized";
    pub const NOTIFICATIONS_ROOTS_LIST_CHANGED: &str = "notifications/roots/list_changed";
    pub const NOTIFICATIONS_ELICITATION_COMPLETE: &str = "notifications/elicitation/complete";
    pub const NOTIFICATIONS_TASKS_STATUS: &str = "notifications/tasks/status";

    // Notifications of 2026-07-28 only.
    pub const NOTIFICATIONS_SUBSCRIPTIONS_ACKNOWLEDGED: &str =
        "notifications/subscriptions/acknowledged";

    const LEGACY_ONLY: &[&str] = &[
        INITIALIZE,
        PING,
        LOGGING_SET_LEVEL,
        RESOURCES_SUBSCRIBE,
        RESOURCES_UNSUBSCRIBE,
        TASKS_GET,
        TASKS_RESULT,
        TASKS_LIST,
        TASKS_CANCEL,
        ROOTS_LIST,
        SAMPLING_CREATE_MESSAGE,
        ELICITATION_CREATE,
        NOTIFICATIONS_INITIALIZED,
        NOTIFICATIONS_ROOTS_LIST_CHANGED,
        NOTIFICATIONS_ELICITATION_COMPLETE,
        NOTIFICATIONS_TASKS_STATUS,
    ];

    const MODERN_ONLY: &[&str] = &[
        SERVER_DISCOVER,
        SUBSCRIPTIONS_LISTEN,
        NOTIFICATIONS_SUBSCRIPTIONS_ACKNOWLEDGED,
    ];

    /// The era a method or notification belongs to, when it exists in only
    /// one: a modern `ping` or a legacy `server/discover` is "method not
    /// found". `None` for names of both eras and for names MCP does not define.
    pub fn exclusive_era(name: &str) -> Option<Era> {
        if LEGACY_ONLY.contains(&name) {
            Some(Era::Legacy)
        } else if MODERN_ONLY.contains(&name) {
            Some(Era::Modern)
        } else {
            None
        }
    }
}

/// Reserved `_meta` keys.
pub mod meta_key {
    /// Both eras: opts a request into `notifications/progress`.
    pub const PROGRESS_TOKEN: &str = "progressToken";
    /// 2026-07-28, required on every request.
    pub const PROTOCOL_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
    /// 2026-07-28, required on every request (`{}` declares none).
    pub const CLIENT_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";
    /// 2026-07-28, optional on requests.
    pub const CLIENT_INFO: &str = "io.modelcontextprotocol/clientInfo";
    /// 2026-07-28, optional on requests: the minimum level to send as
    /// `notifications/message` for this request; absent means none.
    pub const LOG_LEVEL: &str = "io.modelcontextprotocol/logLevel";
    /// 2026-07-28, on results: the server's `Implementation`.
    pub const SERVER_INFO: &str = "io.modelcontextprotocol/serverInfo";
    /// 2026-07-28, on notifications of a `subscriptions/listen` stream: the
    /// id of that request.
    pub const SUBSCRIPTION_ID: &str = "io.modelcontextprotocol/subscriptionId";
    /// 2025-11-25 tasks: `{taskId}` of the task a message belongs to.
    pub const RELATED_TASK: &str = "io.modelcontextprotocol/related-task";
    /// llmbasedos, gateway to backend: the call is an MCP `tools/call`, so
    /// media may come as MCP content blocks in `_content`. Without it (a
    /// classic caller) a backend answers in its own shape only.
    pub const CONTENT_BLOCKS: &str = "io.llmbasedos/contentBlocks";
    /// llmbasedos, delegate to gateway: the client a delegate's call runs
    /// as (`token:<name>`, `uid:<n>`); honoured only from a UNIX peer named
    /// in gateway.yaml's `auth.delegates` (the agent, the web console).
    pub const ON_BEHALF_OF: &str = "llmbasedos/on_behalf_of";
    /// llmbasedos, gateway to a `wants_caller` service: the calling
    /// client's identity and tier.
    pub const CALLER: &str = "llmbasedos/caller";
}

/// Error codes MCP defines on top of JSON-RPC's (which are in
/// [`crate::error::code`]).
///
/// 2026-07-28 reserves `-32020..=-32099` for codes the specification
/// defines and forbids implementations to emit any other code from that
/// range.
pub mod code {
    use std::ops::RangeInclusive;

    use super::Era;

    /// Codes only the MCP specification may define (2026-07-28).
    pub const SPEC_RESERVED: RangeInclusive<i32> = -32099..=-32020;

    /// 2026-07-28: HTTP headers disagree with the body, or are missing.
    pub const HEADER_MISMATCH: i32 = -32020;
    /// 2026-07-28: the request needs a client capability it did not declare.
    pub const MISSING_REQUIRED_CLIENT_CAPABILITY: i32 = -32021;
    /// 2026-07-28: the `_meta` protocol version is not one the server speaks.
    pub const UNSUPPORTED_PROTOCOL_VERSION: i32 = -32022;

    /// 2025-11-25 and earlier: `resources/read` of an unknown URI.
    /// 2026-07-28 uses `-32602` instead and forbids emitting this code.
    pub const RESOURCE_NOT_FOUND_LEGACY: i32 = -32002;
    /// 2025-11-25 only: URL-mode elicitation required.
    pub const URL_ELICITATION_REQUIRED: i32 = -32042;

    /// The code for "no such resource" in an era.
    pub const fn resource_not_found(era: Era) -> i32 {
        match era {
            Era::Legacy => RESOURCE_NOT_FOUND_LEGACY,
            Era::Modern => crate::error::code::INVALID_PARAMS,
        }
    }
}

/// "No such resource", with the era's code and `data: {uri}`.
pub fn resource_not_found_error(era: Era, uri: &str) -> ErrorObject {
    ErrorObject::new(
        code::resource_not_found(era),
        format!("resource not found: {uri}; list the available ones with resources/list"),
    )
    .with_data(json!({ "uri": uri }))
}

/// The 2026-07-28 `MissingRequiredClientCapabilityError`: the request needs
/// `required`, which its `_meta` did not declare.
pub fn missing_client_capability_error(required: &ClientCapabilities) -> ErrorObject {
    ErrorObject::new(
        code::MISSING_REQUIRED_CLIENT_CAPABILITY,
        "this request needs client capabilities that were not declared in \
         io.modelcontextprotocol/clientCapabilities",
    )
    .with_data(json!({ "requiredCapabilities": required }))
}

#[cfg(test)]
mod tests {
    use serde::Serialize;
    use serde::de::DeserializeOwned;
    use serde_json::{Value, json};

    use super::*;
    use crate::jsonrpc::{Message, RequestId};

    /// Parses `wire` as `T`, checks that writing it back gives the same
    /// JSON, and returns the typed value for further checks.
    #[track_caller]
    fn round_trip<T: DeserializeOwned + Serialize>(wire: &Value) -> T {
        let typed: T = serde_json::from_value(wire.clone())
            .unwrap_or_else(|error| panic!("cannot parse {wire}: {error}"));
        let written = serde_json::to_value(&typed).expect("serializes");
        assert_eq!(
            numbers_as_floats(written),
            numbers_as_floats(wire.clone()),
            "re-serialized JSON differs from the input"
        );
        typed
    }

    /// JSON does not tell `50` from `50.0`; an `f64` field writes the latter.
    fn numbers_as_floats(value: Value) -> Value {
        match value {
            Value::Number(number) => json!(number.as_f64()),
            Value::Array(items) => items.into_iter().map(numbers_as_floats).collect(),
            Value::Object(object) => Value::Object(
                object
                    .into_iter()
                    .map(|(key, value)| (key, numbers_as_floats(value)))
                    .collect(),
            ),
            other => other,
        }
    }

    /// The params of a full JSON-RPC request or notification.
    #[track_caller]
    fn params_of(message: Value) -> Value {
        match Message::from_value(message).expect("a valid JSON-RPC message") {
            Message::Request(request) => request.params.expect("params"),
            Message::Notification(notification) => notification.params.expect("params"),
            Message::Response(_) => panic!("expected a request or a notification"),
        }
    }

    #[test]
    fn mcp_initialize_request_and_result() {
        let params = params_of(json!({
            "jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {
                "protocolVersion": "2025-11-25",
                "capabilities": {
                    "roots": { "listChanged": true },
                    "sampling": {},
                    "elicitation": { "form": {}, "url": {} },
                    "tasks": { "requests": { "elicitation": { "create": {} } } }
                },
                "clientInfo": {
                    "name": "ExampleClient",
                    "title": "Example Client Display Name",
                    "version": "1.0.0",
                    "description": "An example MCP client application",
                    "icons": [{ "src": "https://example.com/icon.png", "mimeType": "image/png", "sizes": ["48x48"] }],
                    "websiteUrl": "https://example.com"
                }
            }
        }));
        let initialize: InitializeParams = round_trip(&params);
        assert_eq!(initialize.protocol_version, "2025-11-25");
        assert_eq!(
            initialize.client_info.title.as_deref(),
            Some("Example Client Display Name")
        );
        assert_eq!(initialize.client_info.icons[0].sizes, ["48x48"]);
        assert_eq!(
            initialize.capabilities.roots.as_ref().unwrap().list_changed,
            Some(true)
        );
        assert_eq!(
            initialize.capabilities.sampling,
            Some(SamplingCapability::default())
        );
        assert!(
            initialize
                .capabilities
                .elicitation
                .as_ref()
                .unwrap()
                .url
                .is_some()
        );
        assert!(initialize.meta.is_none());

        let result: InitializeResult = round_trip(&json!({
            "protocolVersion": "2025-11-25",
            "capabilities": {
                "logging": {},
                "prompts": { "listChanged": true },
                "resources": { "subscribe": true, "listChanged": true },
                "tools": { "listChanged": true }
            },
            "serverInfo": {
                "name": "ExampleServer",
                "version": "1.0.0",
                "icons": [{ "src": "https://example.com/server-icon.svg", "mimeType": "image/svg+xml", "sizes": ["any"] }],
                "websiteUrl": "https://example.com/server"
            },
            "instructions": "Optional instructions for the client"
        }));
        assert_eq!(
            result.capabilities.resources.as_ref().unwrap().subscribe,
            Some(true)
        );
        assert_eq!(
            result.capabilities.tools,
            Some(ToolsCapability {
                list_changed: Some(true)
            })
        );
        assert_eq!(result.capabilities.logging, Some(JsonObject::new()));
        assert_eq!(
            result.server_info.website_url.as_deref(),
            Some("https://example.com/server")
        );

        let built = InitializeResult::new(
            ProtocolVersion::negotiate_legacy("2024-11-05"),
            ServerCapabilities {
                tools: Some(ToolsCapability {
                    list_changed: Some(true),
                }),
                ..ServerCapabilities::default()
            },
            Implementation::new("llmbasedos", "0.1.0"),
        );
        assert_eq!(
            serde_json::to_value(&built).unwrap(),
            json!({
                "protocolVersion": "2025-11-25",
                "capabilities": { "tools": { "listChanged": true } },
                "serverInfo": { "name": "llmbasedos", "version": "0.1.0" }
            })
        );
    }

    #[test]
    fn mcp_modern_tools_list_request_carries_meta() {
        let params = params_of(json!({
            "jsonrpc": "2.0", "id": "list-tools-example", "method": "tools/list",
            "params": {
                "cursor": "page-2",
                "_meta": {
                    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                    "io.modelcontextprotocol/clientInfo": { "name": "ExampleClient", "version": "1.0.0" },
                    "io.modelcontextprotocol/clientCapabilities": {
                        "extensions": { "io.modelcontextprotocol/ui": { "mimeTypes": ["text/html;profile=mcp-app"] } }
                    },
                    "io.modelcontextprotocol/logLevel": "warning",
                    "progressToken": 7,
                    "traceparent": "00-0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b7-01"
                }
            }
        }));
        let list: ListToolsParams = round_trip(&params);
        assert_eq!(list.cursor.as_deref(), Some("page-2"));
        let meta = list.meta.expect("_meta");
        assert!(meta.is_modern());
        assert_eq!(meta.validate_modern(), Ok(ProtocolVersion::V2026_07_28));
        assert_eq!(
            meta.client_info,
            Some(Implementation::new("ExampleClient", "1.0.0"))
        );
        assert!(
            meta.client_capabilities
                .unwrap()
                .extensions
                .unwrap()
                .contains_key("io.modelcontextprotocol/ui")
        );
        assert_eq!(meta.log_level, Some(LoggingLevel::Warning));
        assert_eq!(meta.progress_token, Some(ProgressToken::Number(7)));
        assert_eq!(meta.other.keys().collect::<Vec<_>>(), ["traceparent"]);

        let read_directly = RequestMeta::from_params(Some(&params)).unwrap();
        assert_eq!(
            read_directly.protocol_version.as_deref(),
            Some("2026-07-28")
        );
        assert_eq!(RequestMeta::from_params(None), Ok(RequestMeta::default()));
        assert!(!RequestMeta::default().is_modern());
    }

    /// `_meta` is taken out and read once; what is left are the method's
    /// own params. A `_meta` that is not an object is malformed.
    #[test]
    fn mcp_meta_is_taken_out_of_the_params() {
        let mut params = Some(json!({ "uri": "file:///a", "_meta": { "progressToken": "p" } }));
        assert!(RequestMeta::requests_progress(params.as_ref()));
        let meta = RequestMeta::take(&mut params).expect("well-formed");
        assert_eq!(meta.progress_token, Some(ProgressToken::from("p")));
        assert_eq!(params, Some(json!({ "uri": "file:///a" })));
        assert!(!RequestMeta::requests_progress(params.as_ref()));

        let mut positional = Some(json!([1, 2]));
        assert_eq!(
            RequestMeta::take(&mut positional),
            Ok(RequestMeta::default())
        );
        assert_eq!(positional, Some(json!([1, 2])));
        assert_eq!(RequestMeta::take(&mut None), Ok(RequestMeta::default()));

        let mut malformed = Some(json!({ "_meta": 5 }));
        assert!(matches!(
            RequestMeta::take(&mut malformed),
            Err(RequestMetaError::Malformed(_))
        ));
        let mut bad_token = Some(json!({ "_meta": { "progressToken": [1] } }));
        assert!(!RequestMeta::requests_progress(bad_token.as_ref()));
        assert!(RequestMeta::take(&mut bad_token).is_err());
    }

    #[test]
    fn mcp_modern_meta_validation() {
        let caps = json!({});
        // (_meta, expected version or error code)
        let cases: &[(Value, Result<ProtocolVersion, i32>)] = &[
            (
                json!({ meta_key::PROTOCOL_VERSION: "2026-07-28", meta_key::CLIENT_CAPABILITIES: caps }),
                Ok(ProtocolVersion::V2026_07_28),
            ),
            (json!({ meta_key::CLIENT_CAPABILITIES: caps }), Err(-32602)),
            (
                json!({ meta_key::PROTOCOL_VERSION: "2026-07-28" }),
                Err(-32602),
            ),
            (
                json!({ meta_key::PROTOCOL_VERSION: "2025-11-25", meta_key::CLIENT_CAPABILITIES: caps }),
                Err(-32022),
            ),
            (
                json!({ meta_key::PROTOCOL_VERSION: "1900-01-01", meta_key::CLIENT_CAPABILITIES: caps }),
                Err(-32022),
            ),
            (
                json!({ meta_key::PROTOCOL_VERSION: "2026-07-28", meta_key::CLIENT_CAPABILITIES: "all" }),
                Err(-32602),
            ),
            (json!({ meta_key::LOG_LEVEL: "loud" }), Err(-32602)),
        ];
        for (meta, expected) in cases {
            let Value::Object(map) = meta else {
                unreachable!()
            };
            let outcome = RequestMeta::from_map(map)
                .and_then(|meta| meta.validate_modern())
                .map_err(|error| ErrorObject::from(error).code);
            assert_eq!(&outcome, expected, "_meta: {meta}");
        }
    }

    #[test]
    fn mcp_meta_keys_are_the_serde_names() {
        let meta = RequestMeta {
            progress_token: Some("t".into()),
            log_level: Some(LoggingLevel::Debug),
            ..RequestMeta::modern(ClientCapabilities::default(), Implementation::new("c", "1"))
        };
        let Value::Object(written) = serde_json::to_value(&meta).unwrap() else {
            unreachable!()
        };
        let mut keys: Vec<&str> = written.keys().map(String::as_str).collect();
        keys.sort_unstable();
        let mut expected = [
            meta_key::PROGRESS_TOKEN,
            meta_key::PROTOCOL_VERSION,
            meta_key::CLIENT_CAPABILITIES,
            meta_key::CLIENT_INFO,
            meta_key::LOG_LEVEL,
        ];
        expected.sort_unstable();
        assert_eq!(keys, expected);
        assert_eq!(
            server_info_meta(&Implementation::new("s", "1")),
            *json!({ meta_key::SERVER_INFO: { "name": "s", "version": "1" } })
                .as_object()
                .unwrap()
        );
    }

    #[test]
    fn mcp_discover_result() {
        let wire = json!({
            "resultType": "complete",
            "supportedVersions": ["2026-07-28", "2025-11-25", "2025-06-18", "2025-03-26"],
            "capabilities": {
                "tools": { "listChanged": true },
                "resources": { "subscribe": true, "listChanged": true },
                "prompts": {},
                "completions": {},
                "extensions": { "io.modelcontextprotocol/tasks": {} }
            },
            "instructions": "Files, mail and sync on this machine.",
            "ttlMs": 3600000,
            "cacheScope": "public",
            "_meta": { "io.modelcontextprotocol/serverInfo": { "name": "llmbasedos", "version": "0.1.0" } }
        });
        let discover: DiscoverResult = round_trip(&wire);
        assert_eq!(discover.supported_versions, SUPPORTED_PROTOCOL_VERSIONS);
        assert_eq!(discover.result_type, Some(ResultType::Complete));
        assert_eq!(discover.ttl_ms, Some(3_600_000));
        assert_eq!(discover.cache_scope, Some(CacheScope::Public));
        assert_eq!(
            discover.capabilities.prompts,
            Some(PromptsCapability::default())
        );
        assert_eq!(
            discover.find_server_info(),
            Some(Implementation::new("llmbasedos", "0.1.0"))
        );

        let built = DiscoverResult {
            instructions: Some("Files, mail and sync on this machine.".into()),
            ttl_ms: Some(3_600_000),
            cache_scope: Some(CacheScope::Public),
            ..DiscoverResult::new(
                discover.capabilities,
                &Implementation::new("llmbasedos", "0.1.0"),
            )
        };
        assert_eq!(serde_json::to_value(&built).unwrap(), wire);

        // Draft-era servers put serverInfo at the top level and omit resultType.
        let draft: DiscoverResult = round_trip(&json!({
            "supportedVersions": ["2026-07-28"],
            "capabilities": { "tools": {} },
            "serverInfo": { "name": "mock", "version": "1" }
        }));
        assert_eq!(
            draft.find_server_info(),
            Some(Implementation::new("mock", "1"))
        );
        assert_eq!(draft.result_type.unwrap_or_default(), ResultType::Complete);
    }

    #[test]
    fn mcp_result_types() {
        let cases = [
            (json!("complete"), ResultType::Complete),
            (json!("input_required"), ResultType::InputRequired),
            (
                json!("com.example/streaming"),
                ResultType::Other("com.example/streaming".into()),
            ),
        ];
        for (wire, expected) in cases {
            assert_eq!(round_trip::<ResultType>(&wire), expected);
        }
    }

    #[test]
    fn mcp_tools_list_result() {
        let result: ListToolsResult = round_trip(&json!({
            "tools": [{
                "name": "fs_read",
                "title": "Read a file",
                "description": "Reads a file under the allowed roots.",
                "inputSchema": {
                    "type": "object",
                    "properties": { "path": { "type": "string" } },
                    "required": ["path"]
                },
                "outputSchema": { "type": "object", "properties": { "content": { "type": "string" } } },
                "annotations": { "title": "Read", "readOnlyHint": true, "destructiveHint": false,
                                 "idempotentHint": true, "openWorldHint": false },
                "execution": { "taskSupport": "forbidden" },
                "icons": [{ "src": "data:image/png;base64,AAAA", "theme": "dark" }]
            }],
            "nextCursor": "next-page-cursor",
            "ttlMs": 0,
            "cacheScope": "private",
            "resultType": "complete"
        }));
        let tool = &result.tools[0];
        assert_eq!(tool.input_schema["required"], json!(["path"]));
        let annotations = tool.annotations.as_ref().unwrap();
        assert_eq!(
            (
                annotations.read_only_hint,
                annotations.destructive_hint,
                annotations.open_world_hint
            ),
            (Some(true), Some(false), Some(false))
        );
        assert_eq!(
            tool.execution.as_ref().unwrap().task_support,
            Some(TaskSupport::Forbidden)
        );
        assert_eq!(tool.icons[0].theme, Some(IconTheme::Dark));
        assert_eq!(result.next_cursor.as_deref(), Some("next-page-cursor"));
        assert_eq!(result.cache_scope, Some(CacheScope::Private));
    }

    #[test]
    fn mcp_call_tool_params_and_results() {
        let params = params_of(json!({
            "jsonrpc": "2.0", "id": 2, "method": "tools/call",
            "params": { "name": "get_weather", "arguments": { "location": "New York" },
                        "_meta": { "progressToken": "abc" } }
        }));
        let call: CallToolParams = round_trip(&params);
        assert_eq!(call.name, "get_weather");
        assert_eq!(call.arguments.as_ref().unwrap()["location"], "New York");
        assert_eq!(
            call.meta.unwrap().progress_token,
            Some(ProgressToken::from("abc"))
        );

        // (wire, is_error, structured content)
        let cases = [
            (
                json!({
                    "content": [{ "type": "text", "text": "Current weather: 22.5C, partly cloudy, 65% humidity." }],
                    "structuredContent": { "temperature": 22.5, "conditions": "Partly cloudy", "humidity": 65 }
                }),
                false,
                Some(json!({ "temperature": 22.5, "conditions": "Partly cloudy", "humidity": 65 })),
            ),
            (
                json!({
                    "content": [{ "type": "text", "text": "Invalid departure date: must be in the future." }],
                    "isError": true,
                    "resultType": "complete"
                }),
                true,
                None,
            ),
            // 2026-07-28 allows any JSON value as structured content.
            (
                json!({ "content": [], "structuredContent": [1, 2, 3] }),
                false,
                Some(json!([1, 2, 3])),
            ),
        ];
        for (wire, is_error, structured) in cases {
            let result: CallToolResult = round_trip(&wire);
            assert_eq!(result.is_error, is_error, "{wire}");
            assert_eq!(result.structured_content, structured, "{wire}");
        }

        let helpers = [
            (
                CallToolResult::text("done"),
                json!({ "content": [{ "type": "text", "text": "done" }] }),
            ),
            (
                CallToolResult::error("no such mailbox: Archive"),
                json!({ "content": [{ "type": "text", "text": "no such mailbox: Archive" }], "isError": true }),
            ),
            (
                CallToolResult::structured(json!({ "size": 3 })),
                json!({ "content": [{ "type": "text", "text": "{\"size\":3}" }], "structuredContent": { "size": 3 } }),
            ),
        ];
        for (result, expected) in helpers {
            assert_eq!(serde_json::to_value(&result).unwrap(), expected);
        }
    }

    #[test]
    fn mcp_content_blocks() {
        let cases = [
            (
                json!({ "type": "text", "text": "Hello" }),
                Content::text("Hello"),
            ),
            (
                json!({ "type": "image", "data": "iVBORw0KGgo=", "mimeType": "image/png",
                        "annotations": { "audience": ["user"], "priority": 0.9 } }),
                Content::Image(ImageContent {
                    data: "iVBORw0KGgo=".into(),
                    mime_type: "image/png".into(),
                    annotations: Some(Annotations {
                        audience: Some(vec![Role::User]),
                        priority: Some(0.9),
                        last_modified: None,
                    }),
                    meta: None,
                }),
            ),
            (
                json!({ "type": "audio", "data": "UklGRg==", "mimeType": "audio/wav" }),
                Content::audio("UklGRg==", "audio/wav"),
            ),
            (
                json!({ "type": "resource_link", "uri": "file:///project/src/main.rs", "name": "main.rs",
                        "mimeType": "text/x-rust", "size": 1024 }),
                Content::resource_link(Resource {
                    mime_type: Some("text/x-rust".into()),
                    size: Some(1024),
                    ..Resource::new("file:///project/src/main.rs", "main.rs")
                }),
            ),
            (
                json!({ "type": "resource",
                        "resource": { "uri": "file:///project/README.md", "mimeType": "text/markdown", "text": "# Hi" },
                        "annotations": { "lastModified": "2025-01-12T15:00:58Z" } }),
                Content::Resource(EmbeddedResource {
                    resource: ResourceContents::text("file:///project/README.md", "# Hi")
                        .with_mime_type("text/markdown"),
                    annotations: Some(Annotations {
                        last_modified: Some("2025-01-12T15:00:58Z".into()),
                        ..Annotations::default()
                    }),
                    meta: None,
                }),
            ),
            (
                json!({ "type": "resource", "resource": { "uri": "file:///logo.png", "blob": "AAEC" },
                        "_meta": { "com.example/origin": "cache" } }),
                Content::Resource(EmbeddedResource {
                    resource: ResourceContents::blob("file:///logo.png", "AAEC"),
                    annotations: None,
                    meta: Some(
                        json!({ "com.example/origin": "cache" })
                            .as_object()
                            .unwrap()
                            .clone(),
                    ),
                }),
            ),
        ];
        for (wire, expected) in cases {
            assert_eq!(round_trip::<Content>(&wire), expected, "{wire}");
        }
        assert_eq!(Content::text("x").as_text(), Some("x"));
        assert!(serde_json::from_value::<Content>(json!({ "type": "video", "data": "" })).is_err());
    }

    #[test]
    fn mcp_progress_and_cancelled_notifications() {
        let progress: ProgressNotificationParams = round_trip(&params_of(json!({
            "jsonrpc": "2.0", "method": "notifications/progress",
            "params": { "progressToken": "abc123", "progress": 50, "total": 100, "message": "Reticulating splines..." }
        })));
        assert_eq!(
            progress.progress_token,
            ProgressToken::String("abc123".into())
        );
        assert_eq!((progress.progress, progress.total), (50.0, Some(100.0)));
        assert_eq!(progress.message.as_deref(), Some("Reticulating splines..."));

        let fractional: ProgressNotificationParams =
            round_trip(&json!({ "progressToken": 9, "progress": 0.25 }));
        assert_eq!(fractional, ProgressNotificationParams::new(9.into(), 0.25));

        let cancelled: CancelledNotificationParams = round_trip(&params_of(json!({
            "jsonrpc": "2.0", "method": "notifications/cancelled",
            "params": { "requestId": "123", "reason": "User requested cancellation" }
        })));
        assert_eq!(cancelled.request_id, Some(RequestId::String("123".into())));
        assert_eq!(
            cancelled.reason.as_deref(),
            Some("User requested cancellation")
        );
        assert_eq!(
            round_trip::<CancelledNotificationParams>(&json!({ "requestId": 42 })),
            CancelledNotificationParams::new(RequestId::Number(42))
        );
    }

    #[test]
    fn mcp_resources() {
        let read: ReadResourceResult = round_trip(&json!({
            "contents": [
                { "uri": "file:///project/src/main.rs", "mimeType": "text/x-rust", "text": "fn main() {}" },
                { "uri": "file:///project/logo.png", "mimeType": "image/png", "blob": "iVBORw0KGgo=" }
            ],
            "ttlMs": 60000,
            "cacheScope": "private",
            "resultType": "complete"
        }));
        let [text, blob] = &read.contents[..] else {
            panic!("two contents expected")
        };
        assert!(matches!(text, ResourceContents::Text(text) if text.text == "fn main() {}"));
        assert!(matches!(blob, ResourceContents::Blob(blob) if blob.blob == "iVBORw0KGgo="));
        assert_eq!(blob.uri(), "file:///project/logo.png");
        assert_eq!(blob.mime_type(), Some("image/png"));

        let params: ReadResourceParams =
            round_trip(&json!({ "uri": "file:///project/src/main.rs" }));
        assert_eq!(params.uri, "file:///project/src/main.rs");

        let list: ListResourcesResult = round_trip(&json!({
            "resources": [{ "uri": "file:///project/src/main.rs", "name": "main.rs", "title": "Main",
                            "description": "Entry point", "mimeType": "text/x-rust" }],
            "nextCursor": "2"
        }));
        assert_eq!(list.resources[0].title.as_deref(), Some("Main"));

        let templates: ListResourceTemplatesResult = round_trip(&json!({
            "resourceTemplates": [{ "uriTemplate": "file:///{path}", "name": "Project Files",
                                    "mimeType": "application/octet-stream" }]
        }));
        assert_eq!(
            templates.resource_templates[0].uri_template,
            "file:///{path}"
        );

        let updated: ResourceUpdatedNotificationParams = round_trip(&json!({ "uri": "file:///a" }));
        assert_eq!(updated.uri, "file:///a");

        let cases = [(Era::Legacy, -32002), (Era::Modern, -32602)];
        for (era, expected) in cases {
            let error = resource_not_found_error(era, "file:///nonexistent.txt");
            assert_eq!(
                (error.code, error.data),
                (expected, Some(json!({ "uri": "file:///nonexistent.txt" })))
            );
        }
    }

    #[test]
    fn mcp_prompts_and_completion() {
        let list: ListPromptsResult = round_trip(&json!({
            "prompts": [{ "name": "code_review", "title": "Request Code Review",
                          "arguments": [{ "name": "code", "description": "The code to review", "required": true },
                                        { "name": "style" }] }],
            "nextCursor": "next"
        }));
        let arguments = &list.prompts[0].arguments;
        assert_eq!(
            (arguments[0].required, arguments[1].required),
            (true, false)
        );

        let get: GetPromptParams = round_trip(
            &json!({ "name": "code_review", "arguments": { "code": "def hello(): pass" } }),
        );
        assert_eq!(get.arguments.unwrap()["code"], "def hello(): pass");

        let result: GetPromptResult = round_trip(&json!({
            "description": "Code review prompt",
            "messages": [
                { "role": "user", "content": { "type": "text", "text": "Please review this code" } },
                { "role": "assistant", "content": { "type": "text", "text": "Sure." } }
            ]
        }));
        assert_eq!(
            result.messages,
            [
                PromptMessage::user("Please review this code"),
                PromptMessage::assistant("Sure.")
            ]
        );

        let complete: CompleteParams = round_trip(&json!({
            "ref": { "type": "ref/prompt", "name": "code_review" },
            "argument": { "name": "language", "value": "py" },
            "context": { "arguments": { "framework": "flask" } }
        }));
        assert_eq!(
            complete.reference,
            CompletionReference::Prompt {
                name: "code_review".into(),
                title: None
            }
        );
        assert_eq!(complete.argument.value, "py");
        let by_template: CompleteParams = round_trip(&json!({
            "ref": { "type": "ref/resource", "uri": "file:///{path}" },
            "argument": { "name": "path", "value": "src/" }
        }));
        assert_eq!(
            by_template.reference,
            CompletionReference::ResourceTemplate {
                uri: "file:///{path}".into()
            }
        );

        let completion: CompleteResult = round_trip(&json!({
            "completion": { "values": ["python", "pytorch", "pyside"], "total": 10, "hasMore": true }
        }));
        assert_eq!(completion.completion.has_more, Some(true));
    }

    #[test]
    fn mcp_logging_levels() {
        let mut shuffled = [
            LoggingLevel::Emergency,
            LoggingLevel::Debug,
            LoggingLevel::Warning,
            LoggingLevel::Info,
        ];
        shuffled.sort();
        assert_eq!(
            shuffled,
            [
                LoggingLevel::Debug,
                LoggingLevel::Info,
                LoggingLevel::Warning,
                LoggingLevel::Emergency
            ]
        );
        let wire = [
            "debug",
            "info",
            "notice",
            "warning",
            "error",
            "critical",
            "alert",
            "emergency",
        ];
        for (level, name) in LoggingLevel::ALL.into_iter().zip(wire) {
            assert_eq!(serde_json::to_value(level).unwrap(), json!(name));
            assert_eq!(name.parse(), Ok(level));
            assert_eq!(level.to_string(), name);
        }
        assert!(LoggingLevel::ALL.is_sorted());
        assert!("WARNING".parse::<LoggingLevel>().is_err());

        let set: SetLevelParams = round_trip(&json!({ "level": "error" }));
        assert_eq!(set.level, LoggingLevel::Error);
        let message: LoggingMessageNotificationParams = round_trip(&json!({
            "level": "error", "logger": "database",
            "data": { "error": "Connection failed", "details": { "host": "localhost", "port": 5432 } }
        }));
        assert!(message.level >= LoggingLevel::Warning);
        assert_eq!(message.data["details"]["port"], 5432);
    }

    #[test]
    fn mcp_subscriptions_listen() {
        let listen: SubscriptionsListenParams = round_trip(&json!({
            "notifications": { "toolsListChanged": true, "resourceSubscriptions": ["file:///a"] },
            "_meta": { "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                       "io.modelcontextprotocol/clientCapabilities": {} }
        }));
        assert_eq!(listen.notifications.tools_list_changed, Some(true));
        let acknowledged: SubscriptionsAcknowledgedParams = round_trip(&json!({
            "notifications": { "toolsListChanged": true },
            "_meta": { "io.modelcontextprotocol/subscriptionId": 5 }
        }));
        assert_eq!(acknowledged.meta.unwrap()[meta_key::SUBSCRIPTION_ID], 5);
    }

    #[test]
    fn mcp_unknown_fields_are_ignored() {
        let tool: Tool = serde_json::from_value(json!({
            "name": "t", "inputSchema": { "type": "object" }, "futureField": { "x": 1 },
            "annotations": { "newHint": true }
        }))
        .unwrap();
        assert_eq!(
            tool,
            Tool {
                annotations: Some(ToolAnnotations::default()),
                ..Tool::new(
                    "t",
                    json!({ "type": "object" }).as_object().unwrap().clone()
                )
            }
        );
        let caps: ServerCapabilities =
            serde_json::from_value(json!({ "tools": {}, "somethingNew": {} })).unwrap();
        assert_eq!(caps.tools, Some(ToolsCapability::default()));
        let result: CallToolResult =
            serde_json::from_value(json!({ "content": [], "usage": 3 })).unwrap();
        assert_eq!(result, CallToolResult::default());
    }

    #[test]
    fn mcp_version_negotiation() {
        // initialize: echo a legacy version we speak, otherwise our newest legacy one.
        let legacy = [
            ("2025-11-25", ProtocolVersion::V2025_11_25),
            ("2025-06-18", ProtocolVersion::V2025_06_18),
            ("2025-03-26", ProtocolVersion::V2025_03_26),
            ("2024-11-05", ProtocolVersion::V2025_11_25),
            ("2026-07-28", ProtocolVersion::V2025_11_25),
            ("2099-01-01", ProtocolVersion::V2025_11_25),
            ("1.0.0", ProtocolVersion::V2025_11_25),
        ];
        for (requested, expected) in legacy {
            assert_eq!(
                ProtocolVersion::negotiate_legacy(requested),
                expected,
                "initialize {requested}"
            );
        }

        // Per-request _meta: only modern versions, otherwise -32022.
        let modern = [
            ("2026-07-28", Some(ProtocolVersion::V2026_07_28)),
            ("2025-11-25", None),
            ("DRAFT-2026-v1", None),
            ("", None),
        ];
        for (requested, expected) in modern {
            assert_eq!(
                ProtocolVersion::accept_modern(requested).ok(),
                expected,
                "_meta {requested}"
            );
        }

        let error = ErrorObject::from(ProtocolVersion::accept_modern("1900-01-01").unwrap_err());
        assert_eq!(error.code, code::UNSUPPORTED_PROTOCOL_VERSION);
        assert_eq!(
            error.data,
            Some(
                json!({ "supported": ["2026-07-28", "2025-11-25", "2025-06-18", "2025-03-26"], "requested": "1900-01-01" })
            )
        );

        assert_eq!(
            ProtocolVersion::SUPPORTED.map(ProtocolVersion::as_str),
            SUPPORTED_PROTOCOL_VERSIONS
        );
        assert!(ProtocolVersion::LATEST > ProtocolVersion::LATEST_LEGACY);
        assert_eq!(ProtocolVersion::LATEST.era(), Era::Modern);
        assert_eq!(ProtocolVersion::LATEST_LEGACY.era(), Era::Legacy);
        assert_eq!(
            round_trip::<ProtocolVersion>(&json!("2026-07-28")),
            ProtocolVersion::V2026_07_28
        );
    }

    #[test]
    fn mcp_methods_by_era() {
        let cases = [
            (method::INITIALIZE, Some(Era::Legacy)),
            (method::PING, Some(Era::Legacy)),
            (method::LOGGING_SET_LEVEL, Some(Era::Legacy)),
            (method::NOTIFICATIONS_INITIALIZED, Some(Era::Legacy)),
            (method::SERVER_DISCOVER, Some(Era::Modern)),
            (method::SUBSCRIPTIONS_LISTEN, Some(Era::Modern)),
            (method::TOOLS_CALL, None),
            (method::NOTIFICATIONS_PROGRESS, None),
            ("mcp.fs.read", None),
        ];
        for (name, era) in cases {
            assert_eq!(method::exclusive_era(name), era, "{name}");
        }
    }

    #[test]
    fn mcp_error_codes() {
        for reserved in [
            code::HEADER_MISMATCH,
            code::MISSING_REQUIRED_CLIENT_CAPABILITY,
            code::UNSUPPORTED_PROTOCOL_VERSION,
        ] {
            assert!(code::SPEC_RESERVED.contains(&reserved));
        }
        let required = ClientCapabilities {
            elicitation: Some(ElicitationCapability::default()),
            ..ClientCapabilities::default()
        };
        let error = missing_client_capability_error(&required);
        assert_eq!(error.code, -32021);
        assert_eq!(
            error.data,
            Some(json!({ "requiredCapabilities": { "elicitation": {} } }))
        );
    }
}
