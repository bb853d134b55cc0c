//! The table: every MCP method in both eras, the classic vocabulary, and
//! the errors, as (era, method, params, expected answer). The same table
//! runs against the dispatcher ([`super::dispatcher`]) and through the
//! router over Streamable HTTP ([`super::http`]): both must answer alike.
//!
//! The values are the test server's (crates/test-server/test.cap.json):
//! its tools, its `test://greeting` resource, its `greet` prompt.

use proto::mcp::ProtocolVersion;
use serde_json::{Value, json};

use super::expect::{Case, Expect};
use super::support::Era;

const METHOD_NOT_FOUND: i32 = -32601;
const INVALID_PARAMS: i32 = -32602;
const INTERNAL_ERROR: i32 = -32603;
/// The test service's `error_base` is -32090: not found is base - 3, and
/// so on ([`proto::ServiceCodes`]).
const TEST_PERMISSION_DENIED: i32 = -32092;
const TEST_CUSTOM: i32 = -32094;
const RESOURCE_NOT_FOUND_LEGACY: i32 = -32002;
const UNSUPPORTED_PROTOCOL_VERSION: i32 = -32022;
const SERVICE_UNAVAILABLE: i32 = -32006;

/// What the test server's internal failure hides (its handler's text).
const SECRET: &str = "secret-internal-detail";

const MODERN: Era = Era::Modern;
const LEGACY: Era = Era::LATEST_LEGACY;
const OLDEST: Era = Era::OLDEST_LEGACY;
const JUNE: Era = Era::Legacy(ProtocolVersion::V2025_06_18);
const PLAIN: Era = Era::Plain;

/// The test server's tools, as `tools/list` sorts them.
pub(crate) const TEST_TOOLS: [&str; 10] = [
    "test_big",
    "test_blocking",
    "test_echo",
    "test_fail",
    "test_image",
    "test_noop",
    "test_progress",
    "test_sleep",
    "test_stats",
    "test_whoami",
];

/// The test service's methods, in its caps file's order.
const TEST_METHODS: [&str; 14] = [
    "mcp.test.echo",
    "mcp.test.noop",
    "mcp.test.sleep",
    "mcp.test.blocking",
    "mcp.test.progress",
    "mcp.test.fail",
    "mcp.test.big",
    "mcp.test.whoami",
    "mcp.test.stats",
    "mcp.test.image",
    "mcp.test.resources_list",
    "mcp.test.resource_read",
    "mcp.test.prompt_get",
    "mcp.test.prompt_complete",
];

fn ok(pattern: Value) -> Expect {
    Expect::Result(pattern)
}

fn error(code: i32, says: &'static str) -> Expect {
    Expect::Error {
        code,
        says,
        data: None,
    }
}

fn error_with(code: i32, says: &'static str, data: Value) -> Expect {
    Expect::Error {
        code,
        says,
        data: Some(data),
    }
}

/// What a 2026-07-28 result carries besides its own fields: its kind and
/// the server's name; a cacheable one (a list, `server/discover`) also
/// says not to cache it, since what llmbasedos lists changes live.
fn modern(mut pattern: Value, cacheable: bool) -> Value {
    let object = pattern.as_object_mut().expect("an object pattern");
    object.insert("resultType".to_owned(), json!("complete"));
    object.insert(
        "_meta".to_owned(),
        json!({ "io.modelcontextprotocol/serverInfo": { "name": "llmbasedos" } }),
    );
    if cacheable {
        object.insert("ttlMs".to_owned(), json!(0));
        object.insert("cacheScope".to_owned(), json!("private"));
    }
    pattern
}

/// The fields only 2026-07-28 results have, which a legacy one lacks.
const MODERN_ONLY: [&str; 4] = ["/resultType", "/ttlMs", "/cacheScope", "/_meta"];

/// A method of both eras with the same result: the legacy case, and the
/// modern one with the modern fields.
fn both(
    name: &'static str,
    method: &'static str,
    params: Option<Value>,
    pattern: Value,
    cacheable: bool,
) -> [Case; 2] {
    [
        Case::new(name, LEGACY, method, params.clone(), ok(pattern.clone())).without(&MODERN_ONLY),
        Case::new(name, MODERN, method, params, ok(modern(pattern, cacheable))).without(
            if cacheable {
                &[]
            } else {
                &["/ttlMs", "/cacheScope"]
            },
        ),
    ]
}

/// A method of both eras that fails alike in both.
fn both_fail(
    name: &'static str,
    method: &'static str,
    params: Option<Value>,
    code: i32,
    says: &'static str,
) -> [Case; 2] {
    [
        Case::new(name, LEGACY, method, params.clone(), error(code, says)),
        Case::new(name, MODERN, method, params, error(code, says)),
    ]
}

/// A legacy-only method asked in the modern era: not found, and why.
fn removed_in_modern(name: &'static str, method: &'static str, params: Option<Value>) -> Case {
    Case::new(
        name,
        MODERN,
        method,
        params,
        error_with(
            METHOD_NOT_FOUND,
            method,
            json!({ "reason": "removed in protocol 2026-07-28" }),
        ),
    )
}

fn tool_names(names: &[&str]) -> Value {
    Value::Array(names.iter().map(|name| json!({ "name": name })).collect())
}

fn echo_tool_output_schema() -> Value {
    json!({ "type": "object", "properties": { "text": { "type": "string" } }, "required": ["text"] })
}

fn initialize(version: &str) -> Option<Value> {
    Some(super::support::initialize_params(version))
}

/// Every case; see the module's docs.
pub(crate) fn all() -> Vec<Case> {
    let mut cases = Vec::new();
    cases.extend(lifecycle());
    cases.extend(tools());
    cases.extend(resources());
    cases.extend(prompts_and_completion());
    cases.extend(logging());
    cases.extend(classic());
    cases.extend(protocol_errors());
    cases
}

fn lifecycle() -> Vec<Case> {
    let capabilities = json!({
        "tools": { "listChanged": true },
        "resources": {},
        "prompts": {},
        "logging": {},
        "completions": {},
    });
    vec![
        // Version negotiation: a revision we speak is echoed, any other
        // gets the newest legacy one (2026-07-28 is never negotiated by
        // initialize: it has none).
        Case::new(
            "initialize 2025-03-26 is echoed, without later fields",
            PLAIN,
            "initialize",
            initialize("2025-03-26"),
            ok(json!({
                "protocolVersion": "2025-03-26",
                "serverInfo": { "name": "llmbasedos" },
                "capabilities": capabilities,
            })),
        )
        .without(&["/serverInfo/title", "/capabilities/resources/subscribe"]),
        Case::new(
            "initialize 2025-06-18 is echoed, with a title",
            PLAIN,
            "initialize",
            initialize("2025-06-18"),
            ok(json!({
                "protocolVersion": "2025-06-18",
                "serverInfo": { "name": "llmbasedos", "title": "llmbasedos gateway" },
            })),
        ),
        Case::new(
            "initialize 2025-11-25 is echoed",
            PLAIN,
            "initialize",
            initialize("2025-11-25"),
            ok(json!({
                "protocolVersion": "2025-11-25",
                "serverInfo": { "name": "llmbasedos", "title": "llmbasedos gateway" },
                "capabilities": capabilities,
            })),
        )
        .without(&MODERN_ONLY),
        Case::new(
            "initialize 2026-07-28 is offered 2025-11-25",
            PLAIN,
            "initialize",
            initialize("2026-07-28"),
            ok(json!({ "protocolVersion": "2025-11-25" })),
        ),
        Case::new(
            "initialize of an unknown revision is offered 2025-11-25",
            PLAIN,
            "initialize",
            initialize("1999-01-01"),
            ok(json!({ "protocolVersion": "2025-11-25" })),
        ),
        Case::new(
            "initialize without a protocol version",
            PLAIN,
            "initialize",
            Some(json!({ "capabilities": {}, "clientInfo": { "name": "x", "version": "1" } })),
            error(INVALID_PARAMS, "initialize"),
        ),
        removed_in_modern(
            "initialize is legacy only",
            "initialize",
            initialize("2025-11-25"),
        ),
        Case::new("ping", LEGACY, "ping", None, Expect::Exactly(json!({}))),
        removed_in_modern("ping is legacy only", "ping", None),
        Case::new(
            "server/discover",
            MODERN,
            "server/discover",
            None,
            ok(modern(
                json!({
                    "supportedVersions": ["2026-07-28", "2025-11-25", "2025-06-18", "2025-03-26"],
                    "capabilities": capabilities,
                }),
                true,
            )),
        ),
        Case::new(
            "server/discover is modern only",
            LEGACY,
            "server/discover",
            None,
            error_with(
                METHOD_NOT_FOUND,
                "server/discover",
                json!({ "reason": "exists only in protocol 2026-07-28: send _meta with the protocol version" }),
            ),
        ),
        Case::new(
            "a modern request naming a legacy version",
            PLAIN,
            "tools/list",
            Some(json!({ "_meta": {
                "io.modelcontextprotocol/protocolVersion": "2025-11-25",
                "io.modelcontextprotocol/clientCapabilities": {},
            } })),
            error_with(
                UNSUPPORTED_PROTOCOL_VERSION,
                "unsupported protocol version",
                json!({
                    "supported": ["2026-07-28", "2025-11-25", "2025-06-18", "2025-03-26"],
                    "requested": "2025-11-25",
                }),
            ),
        ),
        Case::new(
            "a modern request without client capabilities",
            PLAIN,
            "tools/list",
            Some(json!({ "_meta": { "io.modelcontextprotocol/protocolVersion": "2026-07-28" } })),
            error(INVALID_PARAMS, "io.modelcontextprotocol/clientCapabilities"),
        ),
        Case::new(
            "a _meta that is not an object",
            PLAIN,
            "tools/list",
            Some(json!({ "_meta": 5 })),
            error(INVALID_PARAMS, "_meta"),
        ),
        Case::new(
            "subscriptions/listen is not served",
            MODERN,
            "subscriptions/listen",
            Some(json!({ "notifications": { "toolsListChanged": true } })),
            error(METHOD_NOT_FOUND, "subscriptions/listen"),
        ),
    ]
}

fn tools() -> Vec<Case> {
    let echo = json!({
        "name": "test_echo",
        "description": "Returns the text it is given.",
        "inputSchema": { "type": "object", "required": ["text"] },
        "annotations": { "readOnlyHint": true },
    });
    let mut echo_with_output = echo.clone();
    echo_with_output["outputSchema"] = echo_tool_output_schema();
    let mut listed = tool_names(&TEST_TOOLS);
    listed[2] = echo_with_output;
    let echo_call =
        Some(json!({ "name": "test_echo", "arguments": { "text": "hi", "repeat": 2 } }));
    let echoed = json!({
        "content": [{ "type": "text", "text": "{\"text\":\"hihi\"}" }],
        "structuredContent": { "text": "hihi" },
    });
    let mut cases = Vec::new();
    cases.extend(
        both(
            "tools/list: the test server's tools, on one page",
            "tools/list",
            None,
            json!({ "tools": listed }),
            true,
        )
        .map(|case| case.without(&["/nextCursor"])),
    );
    let mut oldest_listed = tool_names(&TEST_TOOLS);
    oldest_listed[2] = echo;
    cases.push(
        Case::new(
            "tools/list for 2025-03-26: no outputSchema",
            OLDEST,
            "tools/list",
            None,
            ok(json!({ "tools": oldest_listed })),
        )
        .without(&["/tools/2/outputSchema"]),
    );
    cases.extend(both_fail(
        "tools/list with a cursor it never gave",
        "tools/list",
        Some(json!({ "cursor": "not-a-cursor" })),
        INVALID_PARAMS,
        "cursor",
    ));
    cases.extend(both_fail(
        "tools/list with a cursor that is not a string",
        "tools/list",
        Some(json!({ "cursor": 5 })),
        INVALID_PARAMS,
        "cursor",
    ));
    cases.extend(both(
        "tools/call: a structured result, also as text",
        "tools/call",
        echo_call.clone(),
        echoed,
        false,
    ));
    cases.push(
        Case::new(
            "tools/call for 2025-03-26: text only",
            OLDEST,
            "tools/call",
            echo_call.clone(),
            ok(json!({ "content": [{ "type": "text", "text": "{\"text\":\"hihi\"}" }] })),
        )
        .without(&["/structuredContent", "/isError"]),
    );
    cases.push(Case::new(
        "tools/call for 2025-06-18: structured",
        JUNE,
        "tools/call",
        echo_call,
        ok(json!({ "structuredContent": { "text": "hihi" } })),
    ));
    for era in [LEGACY, MODERN] {
        cases.push(Case::new(
            "tools/call: a backend error is a tool error the model reads",
            era,
            "tools/call",
            Some(json!({ "name": "test_fail", "arguments": { "kind": "not_found" } })),
            Expect::ToolError("no such thing"),
        ));
        cases.push(Case::new(
            "tools/call: arguments against the schema are a tool error naming the field",
            era,
            "tools/call",
            Some(json!({ "name": "test_echo", "arguments": { "text": 5 } })),
            Expect::ToolError("/text"),
        ));
        cases.push(
            Case::new(
                "tools/call: an internal failure says nothing of the internals",
                era,
                "tools/call",
                Some(json!({ "name": "test_fail", "arguments": { "kind": "internal" } })),
                Expect::ToolError(""),
            )
            .without(&["/structuredContent"])
            .never(SECRET),
        );
        cases.push(Case::new(
            "tools/call: media come as content blocks",
            era,
            "tools/call",
            Some(json!({ "name": "test_image", "arguments": {} })),
            ok(json!({
                "content": [{ "type": "image", "mimeType": "image/png" }],
                "structuredContent": { "mime_type": "image/png" },
            })),
        ));
    }
    cases.extend(both_fail(
        "tools/call of an unknown tool is a protocol error",
        "tools/call",
        Some(json!({ "name": "no_such_tool", "arguments": {} })),
        INVALID_PARAMS,
        "unknown tool: no_such_tool",
    ));
    cases.extend(both_fail(
        "tools/call without a name",
        "tools/call",
        Some(json!({ "arguments": {} })),
        INVALID_PARAMS,
        "name",
    ));
    cases.extend(both_fail(
        "tools/call with arguments that are not an object",
        "tools/call",
        Some(json!({ "name": "test_echo", "arguments": ["hi"] })),
        INVALID_PARAMS,
        "arguments",
    ));
    cases
}

fn resources() -> Vec<Case> {
    let mut cases = Vec::new();
    cases.extend(both(
        "resources/list",
        "resources/list",
        None,
        json!({ "resources": [{ "uri": "test://greeting", "name": "greeting", "mimeType": "text/plain" }] }),
        true,
    ));
    cases.extend(both(
        "resources/templates/list",
        "resources/templates/list",
        None,
        json!({ "resourceTemplates": [{
            "uriTemplate": "test://{name}",
            "name": "test resource",
            "description": "A resource of the test service by name.",
            "mimeType": "text/plain",
        }] }),
        true,
    ));
    cases.extend(both(
        "resources/read",
        "resources/read",
        Some(json!({ "uri": "test://greeting" })),
        json!({ "contents": [{ "uri": "test://greeting", "mimeType": "text/plain", "text": "hello from a resource" }] }),
        false,
    ));
    // A service's own "not found" becomes MCP's, in the era's code, with
    // the service's message (which says what is missing).
    cases.push(Case::new(
        "resources/read of a missing resource (legacy code)",
        LEGACY,
        "resources/read",
        Some(json!({ "uri": "test://nothing" })),
        error_with(
            RESOURCE_NOT_FOUND_LEGACY,
            "no resource test://nothing",
            json!({ "uri": "test://nothing" }),
        ),
    ));
    cases.push(Case::new(
        "resources/read of a missing resource (modern code)",
        MODERN,
        "resources/read",
        Some(json!({ "uri": "test://nothing" })),
        error_with(
            INVALID_PARAMS,
            "no resource test://nothing",
            json!({ "uri": "test://nothing" }),
        ),
    ));
    cases.push(Case::new(
        "resources/read of a URI no service owns (legacy code)",
        LEGACY,
        "resources/read",
        Some(json!({ "uri": "elsewhere://x" })),
        error_with(
            RESOURCE_NOT_FOUND_LEGACY,
            "resource not found: elsewhere://x",
            json!({ "uri": "elsewhere://x" }),
        ),
    ));
    cases.push(Case::new(
        "resources/read of a URI no service owns (modern code)",
        MODERN,
        "resources/read",
        Some(json!({ "uri": "elsewhere://x" })),
        error_with(
            INVALID_PARAMS,
            "resource not found: elsewhere://x",
            json!({ "uri": "elsewhere://x" }),
        ),
    ));
    cases.extend(both_fail(
        "resources/read without a uri",
        "resources/read",
        Some(json!({})),
        INVALID_PARAMS,
        "uri",
    ));
    // The test service declares no `resources.subscribe` method (the fs
    // server does: tests/e2e/test_subscriptions.py).
    cases.push(Case::new(
        "resources/subscribe to resources that cannot be watched",
        LEGACY,
        "resources/subscribe",
        Some(json!({ "uri": "test://greeting" })),
        error(
            INVALID_PARAMS,
            "the test service's resources cannot be subscribed to",
        ),
    ));
    cases.push(Case::new(
        "resources/subscribe to a URI no service owns",
        LEGACY,
        "resources/subscribe",
        Some(json!({ "uri": "elsewhere://x" })),
        error_with(
            RESOURCE_NOT_FOUND_LEGACY,
            "resource not found",
            json!({ "uri": "elsewhere://x" }),
        ),
    ));
    cases.push(Case::new(
        "resources/subscribe without a uri",
        LEGACY,
        "resources/subscribe",
        Some(json!({})),
        error(INVALID_PARAMS, "uri"),
    ));
    cases.push(Case::new(
        "resources/unsubscribe of a URI not subscribed to is fine",
        LEGACY,
        "resources/unsubscribe",
        Some(json!({ "uri": "test://greeting" })),
        Expect::Exactly(json!({})),
    ));
    cases.push(Case::new(
        "resources/unsubscribe without a uri",
        LEGACY,
        "resources/unsubscribe",
        None,
        error(INVALID_PARAMS, "uri"),
    ));
    cases.push(removed_in_modern(
        "resources/subscribe is legacy only",
        "resources/subscribe",
        Some(json!({ "uri": "test://greeting" })),
    ));
    cases.push(removed_in_modern(
        "resources/unsubscribe is legacy only",
        "resources/unsubscribe",
        Some(json!({ "uri": "test://greeting" })),
    ));
    cases
}

fn prompts_and_completion() -> Vec<Case> {
    let mut cases = Vec::new();
    cases.extend(both(
        "prompts/list: prompts are named <service>_<prompt>",
        "prompts/list",
        None,
        json!({ "prompts": [{
            "name": "test_greet",
            "description": "Greets someone by name.",
            "arguments": [{ "name": "who", "description": "Whom to greet.", "required": true }],
        }] }),
        true,
    ));
    cases.extend(both(
        "prompts/get",
        "prompts/get",
        Some(json!({ "name": "test_greet", "arguments": { "who": "Ada" } })),
        json!({
            "description": "A greeting",
            "messages": [{ "role": "user", "content": { "type": "text", "text": "Say hello to Ada." } }],
        }),
        false,
    ));
    cases.extend(both_fail(
        "prompts/get of an unknown prompt",
        "prompts/get",
        Some(json!({ "name": "test_nothing", "arguments": {} })),
        INVALID_PARAMS,
        "no such prompt: test_nothing",
    ));
    cases.extend(both_fail(
        "prompts/get without a name",
        "prompts/get",
        Some(json!({})),
        INVALID_PARAMS,
        "name",
    ));
    cases.extend(both(
        "completion/complete of a prompt argument, from its service",
        "completion/complete",
        Some(json!({
            "ref": { "type": "ref/prompt", "name": "test_greet" },
            "argument": { "name": "who", "value": "A" },
        })),
        json!({ "completion": { "values": ["Ada", "Alan"], "hasMore": false } }),
        false,
    ));
    cases.extend(both(
        "completion/complete of a template whose service completes nothing",
        "completion/complete",
        Some(json!({
            "ref": { "type": "ref/resource", "uri": "test://{name}" },
            "argument": { "name": "name", "value": "g" },
        })),
        json!({ "completion": { "values": [], "hasMore": false } }),
        false,
    ));
    cases.extend(both_fail(
        "completion/complete of an unknown prompt",
        "completion/complete",
        Some(json!({
            "ref": { "type": "ref/prompt", "name": "test_nothing" },
            "argument": { "name": "who", "value": "A" },
        })),
        INVALID_PARAMS,
        "no such prompt: test_nothing",
    ));
    cases.extend(both_fail(
        "completion/complete without a ref",
        "completion/complete",
        Some(json!({ "argument": { "name": "who", "value": "A" } })),
        INVALID_PARAMS,
        "completion/complete",
    ));
    cases
}

fn logging() -> Vec<Case> {
    vec![
        Case::new(
            "logging/setLevel",
            LEGACY,
            "logging/setLevel",
            Some(json!({ "level": "warning" })),
            Expect::Exactly(json!({})),
        ),
        Case::new(
            "logging/setLevel of a level MCP does not have",
            LEGACY,
            "logging/setLevel",
            Some(json!({ "level": "loud" })),
            error(
                INVALID_PARAMS,
                "expected one of `debug`, `info`, `notice`, `warning`",
            ),
        ),
        removed_in_modern(
            "logging/setLevel is legacy only (modern requests carry a logLevel)",
            "logging/setLevel",
            Some(json!({ "level": "warning" })),
        ),
    ]
}

/// The classic vocabulary: the original llmbasedos's method names.
fn classic() -> Vec<Case> {
    let methods: Vec<Value> = TEST_METHODS
        .iter()
        .map(|name| json!({ "name": name }))
        .collect();
    vec![
        Case::new(
            "mcp.hello",
            PLAIN,
            "mcp.hello",
            None,
            Expect::Exactly(json!({
                "name": "llmbasedos",
                "version": env!("CARGO_PKG_VERSION"),
                "protocolVersions": ["2026-07-28", "2025-11-25", "2025-06-18", "2025-03-26"],
                "services": ["test"],
            })),
        ),
        Case::new(
            "mcp.hello in the modern era gains the modern fields",
            MODERN,
            "mcp.hello",
            None,
            ok(modern(
                json!({ "name": "llmbasedos", "services": ["test"] }),
                false,
            )),
        ),
        Case::new(
            "mcp.listCapabilities",
            PLAIN,
            "mcp.listCapabilities",
            None,
            ok(json!({ "services": [{
                "service": "test",
                "version": "0.1.0",
                "description": "A test service for the llmbasedos server framework: echo, sleep, progress and failing methods.",
                "methods": methods,
            }] })),
        ),
        Case::new(
            "a routed method with named params",
            PLAIN,
            "mcp.test.echo",
            Some(json!({ "text": "hi" })),
            Expect::Exactly(json!({ "text": "hi" })),
        ),
        Case::new(
            "a routed method with positional params",
            PLAIN,
            "mcp.test.echo",
            Some(json!(["hi", 3])),
            Expect::Exactly(json!({ "text": "hihihi" })),
        ),
        Case::new(
            "a routed method in a legacy session",
            LEGACY,
            "mcp.test.echo",
            Some(json!({ "text": "hi" })),
            Expect::Exactly(json!({ "text": "hi" })),
        ),
        Case::new(
            "a routed method in the modern era: _meta stays with the gateway",
            MODERN,
            "mcp.test.echo",
            Some(json!({ "text": "hi" })),
            ok(modern(json!({ "text": "hi" }), false)),
        ),
        Case::new(
            "a routed method's params against its schema",
            PLAIN,
            "mcp.test.echo",
            Some(json!({ "text": 5 })),
            error(INVALID_PARAMS, "/text"),
        ),
        Case::new(
            "a service's error keeps its code",
            PLAIN,
            "mcp.test.fail",
            Some(json!({ "kind": "permission_denied" })),
            error(TEST_PERMISSION_DENIED, "not allowed"),
        ),
        Case::new(
            "a service's documented error keeps its code and data",
            PLAIN,
            "mcp.test.fail",
            Some(json!({ "kind": "custom" })),
            error_with(
                TEST_CUSTOM,
                "a documented service failure",
                json!({ "hint": "see caps.json" }),
            ),
        ),
        Case::new(
            "a service's internal error hides its detail",
            PLAIN,
            "mcp.test.fail",
            Some(json!({ "kind": "internal" })),
            error(INTERNAL_ERROR, ""),
        )
        .without(&["/data"])
        .never(SECRET),
        Case::new(
            "mcp.llm.chat without a model configured",
            PLAIN,
            "mcp.llm.chat",
            Some(json!({ "messages": [{ "role": "user", "content": "hi" }] })),
            error(SERVICE_UNAVAILABLE, "no language model is configured"),
        ),
    ]
}

fn protocol_errors() -> Vec<Case> {
    let mut cases = Vec::new();
    for era in [PLAIN, LEGACY, MODERN] {
        cases.push(Case::new(
            "an unknown method is named in the error",
            era,
            "mcp.nothing.here",
            None,
            error(METHOD_NOT_FOUND, "method not found: mcp.nothing.here"),
        ));
        cases.push(Case::new(
            "an MCP-looking method that does not exist",
            era,
            "tools/unknown",
            None,
            error(METHOD_NOT_FOUND, "tools/unknown"),
        ));
    }
    cases
}
