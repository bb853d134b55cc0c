//! The one step that fits a result to its era and revision. Handlers
//! return a typed [`Reply`]; it is shaped and serialised here, once:
//!
//! - a 2026-07-28 result says what kind it is (`resultType`), names the
//!   server in `_meta` and, when a client may cache it (`server/discover`
//!   and the lists), carries cache hints;
//! - a session's result leaves out the fields its negotiated revision does
//!   not define: a 2025-03-26 host gets no `structuredContent`,
//!   `outputSchema` nor `title`; hosts before 2025-11-25 no `icons`,
//!   `execution`, nor `websiteUrl` and `description` in `serverInfo`.
//!
//! Results the gateway relays as they came (a classic call's, an upstream
//! server's tool result, the LLM relay's) get only the 2026-07-28 stamp,
//! and an upstream tool result loses `structuredContent` for 2025-03-26.

use proto::ErrorObject;
use proto::mcp::{
    self, CacheScope, CallToolResult, CompleteResult, DiscoverResult, EmptyResult, GetPromptResult,
    Implementation, InitializeResult, JsonObject, ListPromptsResult, ListResourceTemplatesResult,
    ListResourcesResult, ListToolsResult, ProtocolVersion, ReadResourceResult, ResultType,
};
use serde_json::Value;

use super::to_value;

/// What a method answers, before its era's fields are added.
#[derive(Debug)]
pub(super) enum Reply {
    Initialize(InitializeResult),
    Discover(DiscoverResult),
    Tools(ListToolsResult),
    ToolCall(CallToolResult),
    /// An upstream server's `tools/call` result, passed on as it came.
    UpstreamToolCall(Value),
    Resources(ListResourcesResult),
    ResourceTemplates(ListResourceTemplatesResult),
    Resource(ReadResourceResult),
    Prompts(ListPromptsResult),
    Prompt(GetPromptResult),
    Completion(CompleteResult),
    Empty(EmptyResult),
    /// A result outside MCP's types: the classic vocabulary's, a backend
    /// method's called directly, the LLM relay's.
    Other(Value),
}

/// The era (and for a session, the revision) a result is shaped for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Shape {
    /// A 2026-07-28 request.
    Modern,
    /// A request of a session that negotiated this revision (2025-11-25
    /// when it sent no `initialize`).
    Legacy(ProtocolVersion),
}

impl Reply {
    /// The result as it goes on the wire for `shape`; `server` names the
    /// gateway in a 2026-07-28 result's `_meta`.
    pub(super) fn into_value(
        self,
        shape: Shape,
        server: &Implementation,
    ) -> Result<Value, ErrorObject> {
        match self {
            Reply::Initialize(result) => shaped(result, shape, server),
            Reply::Discover(result) => shaped(result, shape, server),
            Reply::Tools(result) => shaped(result, shape, server),
            Reply::ToolCall(result) => shaped(result, shape, server),
            Reply::Resources(result) => shaped(result, shape, server),
            Reply::ResourceTemplates(result) => shaped(result, shape, server),
            Reply::Resource(result) => shaped(result, shape, server),
            Reply::Prompts(result) => shaped(result, shape, server),
            Reply::Prompt(result) => shaped(result, shape, server),
            Reply::Completion(result) => shaped(result, shape, server),
            Reply::Empty(result) => shaped(result, shape, server),
            Reply::UpstreamToolCall(mut value) => {
                if let (Shape::Legacy(version), Value::Object(object)) = (shape, &mut value)
                    && !version.has_structured_content()
                {
                    object.remove("structuredContent");
                }
                Ok(stamped(value, shape, server))
            }
            Reply::Other(value) => Ok(stamped(value, shape, server)),
        }
    }
}

/// A typed result's era fields.
trait EraFields: serde::Serialize {
    /// Where a 2026-07-28 result says its kind and names the server.
    fn stamp(&mut self) -> (Option<&mut Option<ResultType>>, &mut Option<JsonObject>);
    /// Cache hints, for the results a 2026-07-28 client may cache.
    fn cache_hints(&mut self) -> Option<(&mut Option<u64>, &mut Option<CacheScope>)> {
        None
    }
    /// Leaves out what `version` (older than the latest) does not define.
    fn for_revision(&mut self, _version: ProtocolVersion) {}
}

fn shaped<T: EraFields>(
    mut result: T,
    shape: Shape,
    server: &Implementation,
) -> Result<Value, ErrorObject> {
    match shape {
        Shape::Modern => {
            let (kind, meta) = result.stamp();
            if let Some(kind) = kind {
                kind.get_or_insert(ResultType::Complete);
            }
            meta.get_or_insert_with(JsonObject::new)
                .extend(mcp::server_info_meta(server));
            // What llmbasedos lists changes live (services come and go),
            // so: do not cache.
            if let Some((ttl, scope)) = result.cache_hints() {
                ttl.get_or_insert(0);
                scope.get_or_insert(CacheScope::Private);
            }
        }
        Shape::Legacy(version) if version < ProtocolVersion::LATEST_LEGACY => {
            result.for_revision(version);
        }
        Shape::Legacy(_) => {}
    }
    to_value(&result)
}

/// The 2026-07-28 stamp on a result the gateway did not build.
fn stamped(mut value: Value, shape: Shape, server: &Implementation) -> Value {
    if shape == Shape::Modern
        && let Value::Object(object) = &mut value
    {
        object
            .entry("resultType")
            .or_insert_with(|| Value::from("complete"));
        let meta = object
            .entry("_meta")
            .or_insert_with(|| Value::Object(JsonObject::new()));
        if let Value::Object(meta) = meta {
            meta.extend(mcp::server_info_meta(server));
        }
    }
    value
}

/// Clears an item's `title` and `icons` where `version` lacks them.
fn strip_presentation(
    version: ProtocolVersion,
    title: &mut Option<String>,
    icons: &mut Vec<mcp::Icon>,
) {
    if !version.has_structured_content() {
        *title = None;
    }
    if !version.has_icons() {
        icons.clear();
    }
}

/// The stamp and cache hints of a list result (all have the same fields).
macro_rules! cacheable {
    () => {
        fn stamp(&mut self) -> (Option<&mut Option<ResultType>>, &mut Option<JsonObject>) {
            (Some(&mut self.result_type), &mut self.meta)
        }
        fn cache_hints(&mut self) -> Option<(&mut Option<u64>, &mut Option<CacheScope>)> {
            Some((&mut self.ttl_ms, &mut self.cache_scope))
        }
    };
}

/// The stamp of a result that is not cached.
macro_rules! stamp {
    () => {
        fn stamp(&mut self) -> (Option<&mut Option<ResultType>>, &mut Option<JsonObject>) {
            (Some(&mut self.result_type), &mut self.meta)
        }
    };
}

impl EraFields for InitializeResult {
    /// `initialize` exists only in sessions; it has no `resultType`.
    fn stamp(&mut self) -> (Option<&mut Option<ResultType>>, &mut Option<JsonObject>) {
        (None, &mut self.meta)
    }
    fn for_revision(&mut self, version: ProtocolVersion) {
        let info = &mut self.server_info;
        strip_presentation(version, &mut info.title, &mut info.icons);
        if !version.has_icons() {
            info.website_url = None;
            info.description = None;
        }
    }
}

impl EraFields for DiscoverResult {
    cacheable!();
}

impl EraFields for ListToolsResult {
    cacheable!();
    fn for_revision(&mut self, version: ProtocolVersion) {
        for tool in &mut self.tools {
            strip_presentation(version, &mut tool.title, &mut tool.icons);
            if !version.has_structured_content() {
                tool.output_schema = None;
            }
            if !version.has_icons() {
                tool.execution = None;
            }
        }
    }
}

impl EraFields for CallToolResult {
    stamp!();
    fn for_revision(&mut self, version: ProtocolVersion) {
        if !version.has_structured_content() {
            self.structured_content = None;
        }
    }
}

impl EraFields for ListResourcesResult {
    cacheable!();
    fn for_revision(&mut self, version: ProtocolVersion) {
        for resource in &mut self.resources {
            strip_presentation(version, &mut resource.title, &mut resource.icons);
        }
    }
}

impl EraFields for ListResourceTemplatesResult {
    cacheable!();
    fn for_revision(&mut self, version: ProtocolVersion) {
        for template in &mut self.resource_templates {
            strip_presentation(version, &mut template.title, &mut template.icons);
        }
    }
}

impl EraFields for ListPromptsResult {
    cacheable!();
    fn for_revision(&mut self, version: ProtocolVersion) {
        for prompt in &mut self.prompts {
            strip_presentation(version, &mut prompt.title, &mut prompt.icons);
        }
    }
}

/// Read results carry cache hints when their service gives them; the
/// gateway adds none (as for every non-list result).
impl EraFields for ReadResourceResult {
    stamp!();
}

impl EraFields for GetPromptResult {
    stamp!();
}

impl EraFields for CompleteResult {
    stamp!();
}

impl EraFields for EmptyResult {
    stamp!();
}

#[cfg(test)]
mod tests {
    use proto::mcp::{Icon, Tool, ToolExecution};
    use serde_json::json;

    use super::*;

    fn server() -> Implementation {
        Implementation::new("llmbasedos", "1.0")
    }

    fn tools() -> Reply {
        let mut tool = Tool::new("fs_read", JsonObject::new());
        tool.title = Some("Read".to_owned());
        tool.output_schema = Some(JsonObject::new());
        tool.execution = Some(ToolExecution::default());
        tool.icons = vec![Icon {
            src: "data:,".to_owned(),
            ..Icon::default()
        }];
        Reply::Tools(ListToolsResult {
            tools: vec![tool],
            ..ListToolsResult::default()
        })
    }

    fn tool_call() -> Reply {
        Reply::ToolCall(CallToolResult::structured(json!({ "ok": true })))
    }

    fn upstream_tool_call() -> Reply {
        Reply::UpstreamToolCall(json!({ "content": [], "structuredContent": { "ok": true } }))
    }

    /// A reply, the shape it is written for, the JSON expected.
    type Case = (fn() -> Reply, Shape, Value);

    /// Each revision gets exactly the fields it defines, and a 2026-07-28
    /// result its kind, the server and, for a list, cache hints.
    #[test]
    fn each_era_and_revision_gets_its_own_fields() {
        use ProtocolVersion::*;
        let server_meta = json!({ "io.modelcontextprotocol/serverInfo": { "name": "llmbasedos", "version": "1.0" } });
        let full_tool = json!({ "name": "fs_read", "title": "Read", "inputSchema": {}, "outputSchema": {}, "execution": {}, "icons": [{ "src": "data:," }] });
        let cases: Vec<Case> = vec![
            (
                tools,
                Shape::Legacy(V2025_11_25),
                json!({ "tools": [full_tool] }),
            ),
            (
                tools,
                Shape::Legacy(V2025_06_18),
                json!({ "tools": [{ "name": "fs_read", "title": "Read", "inputSchema": {}, "outputSchema": {} }] }),
            ),
            (
                tools,
                Shape::Legacy(V2025_03_26),
                json!({ "tools": [{ "name": "fs_read", "inputSchema": {} }] }),
            ),
            (
                tools,
                Shape::Modern,
                json!({ "tools": [full_tool], "ttlMs": 0, "cacheScope": "private", "resultType": "complete", "_meta": server_meta }),
            ),
            (
                tool_call,
                Shape::Legacy(V2025_03_26),
                json!({ "content": [{ "type": "text", "text": "{\"ok\":true}" }] }),
            ),
            (
                tool_call,
                Shape::Modern,
                json!({ "content": [{ "type": "text", "text": "{\"ok\":true}" }], "structuredContent": { "ok": true }, "resultType": "complete", "_meta": server_meta }),
            ),
            (
                upstream_tool_call,
                Shape::Legacy(V2025_03_26),
                json!({ "content": [] }),
            ),
            (
                upstream_tool_call,
                Shape::Legacy(V2025_06_18),
                json!({ "content": [], "structuredContent": { "ok": true } }),
            ),
            (
                || Reply::Empty(EmptyResult::default()),
                Shape::Legacy(V2025_11_25),
                json!({}),
            ),
            (
                || Reply::Other(json!({ "resultType": "input_required" })),
                Shape::Modern,
                json!({ "resultType": "input_required", "_meta": server_meta }),
            ),
            (|| Reply::Other(json!([1])), Shape::Modern, json!([1])),
        ];
        for (reply, shape, expected) in cases {
            let written = reply().into_value(shape, &server()).expect("serialises");
            assert_eq!(written, expected, "{shape:?}");
        }
    }

    /// `serverInfo` of an `initialize` loses what older revisions lack.
    #[test]
    fn initialize_server_info_follows_the_revision() {
        let mut info = server();
        info.title = Some("gateway".to_owned());
        info.description = Some("one endpoint".to_owned());
        info.website_url = Some("https://example.org".to_owned());
        let result = InitializeResult::new(
            ProtocolVersion::V2025_06_18,
            mcp::ServerCapabilities::default(),
            info,
        );
        let written = Reply::Initialize(result)
            .into_value(Shape::Legacy(ProtocolVersion::V2025_06_18), &server())
            .expect("serialises");
        assert_eq!(
            written["serverInfo"],
            json!({ "name": "llmbasedos", "version": "1.0", "title": "gateway" })
        );
    }
}
