//! The lifecycle and the eras: `initialize`, `server/discover`, `ping`,
//! `logging/setLevel`, and the step that shapes every result for its era
//! and revision.

use proto::ErrorObject;
use proto::mcp::{
    self, DiscoverResult, InitializeParams, InitializeResult, LoggingLevel, ProtocolVersion,
    ServerCapabilities, ToolsCapability, method,
};
use proto::text::{echo, escaped};
use serde_json::{Map, Value, json};

use super::{Gateway, Session, to_value};

/// Results that 2026-07-28 clients may cache, which must carry cache hints.
pub(super) const CACHEABLE: &[&str] = &[
    method::SERVER_DISCOVER,
    method::TOOLS_LIST,
    method::RESOURCES_LIST,
    method::RESOURCES_TEMPLATES_LIST,
    method::PROMPTS_LIST,
];

impl Gateway {
    /// Every 2026-07-28 result says what kind it is and names the server.
    pub(super) fn modern_result(&self, name: &str, mut value: Value) -> Value {
        if let Value::Object(object) = &mut value {
            object
                .entry("resultType")
                .or_insert_with(|| json!("complete"));
            // Cacheable results carry cache hints. What llmbasedos lists
            // changes live (services come and go), so: do not cache.
            if CACHEABLE.contains(&name) {
                object.entry("ttlMs").or_insert_with(|| json!(0));
                object
                    .entry("cacheScope")
                    .or_insert_with(|| json!("private"));
            }
            let meta = object.entry("_meta").or_insert_with(|| json!({}));
            if let Value::Object(meta) = meta {
                meta.extend(mcp::server_info_meta(&self.info));
            }
        }
        value
    }

    pub(super) fn capabilities(&self) -> ServerCapabilities {
        ServerCapabilities {
            resources: Some(mcp::ResourcesCapability::default()),
            prompts: Some(mcp::PromptsCapability::default()),
            tools: Some(ToolsCapability {
                list_changed: Some(true),
            }),
            logging: Some(Map::new()),
            completions: Some(Map::new()),
            ..ServerCapabilities::default()
        }
    }

    pub(super) fn initialize(
        &self,
        session: &Session,
        params: Option<Value>,
    ) -> Result<Value, ErrorObject> {
        let params: InitializeParams = serde_json::from_value(params.unwrap_or_else(|| json!({})))
            .map_err(|error| {
                ErrorObject::invalid_params(format!(
                    "invalid initialize params: {}",
                    echo(&error.to_string())
                ))
            })?;
        let version = ProtocolVersion::negotiate_legacy(&params.protocol_version);
        session.state().legacy_version = Some(version);
        tracing::info!(
            client = %escaped(&params.client_info.name),
            client_version = %escaped(&params.client_info.version),
            requested = %escaped(&params.protocol_version),
            version = version.as_str(), identity = %session.identity(), "client initialized"
        );
        let mut capabilities = self.capabilities();
        if let Some(resources) = &mut capabilities.resources {
            resources.subscribe = self.serves_subscriptions().then_some(true);
        }
        let mut result = InitializeResult::new(version, capabilities, self.info.clone());
        result.instructions = Some(INSTRUCTIONS.to_owned());
        to_value(&result)
    }

    pub(super) fn discover(&self) -> Result<Value, ErrorObject> {
        let mut result = DiscoverResult::new(self.capabilities(), &self.info);
        result.instructions = Some(INSTRUCTIONS.to_owned());
        to_value(&result)
    }

    pub(super) fn set_level(
        &self,
        session: &Session,
        params: Option<&Value>,
    ) -> Result<Value, ErrorObject> {
        let level = params
            .and_then(|params| params.get("level"))
            .cloned()
            .and_then(|level| serde_json::from_value::<LoggingLevel>(level).ok())
            .ok_or_else(|| {
                ErrorObject::invalid_params(
                    "logging/setLevel needs \"level\": one of debug, info, notice, warning, error, critical, alert, emergency",
                )
            })?;
        session.state().log_level = Some(level);
        Ok(json!({}))
    }
}

pub(super) const INSTRUCTIONS: &str = "llmbasedos connects you to this machine's local capabilities. \
Each tool is named <service>_<method> (fs_read, mail_listMessages); its description says what it does.";

/// A result shaped for the revision a session negotiated: fields a revision
/// does not define are left out (a 2025-03-26 host gets no
/// `structuredContent`, `outputSchema` nor `title`; hosts before 2025-11-25
/// no `icons` nor `execution`). Only the MCP methods that carry such fields
/// are looked at; the classic vocabulary passes untouched.
pub(super) fn legacy_result(version: ProtocolVersion, name: &str, mut value: Value) -> Value {
    if version >= ProtocolVersion::LATEST_LEGACY {
        return value;
    }
    let mut drop: Vec<&str> = Vec::with_capacity(4);
    if !version.has_structured_content() {
        drop.push("title");
    }
    if !version.has_icons() {
        drop.push("icons");
    }
    let Value::Object(object) = &mut value else {
        return value;
    };
    let list = match name {
        method::TOOLS_LIST => {
            if !version.has_structured_content() {
                drop.push("outputSchema");
            }
            if !version.has_icons() {
                drop.push("execution");
            }
            "tools"
        }
        method::RESOURCES_LIST => "resources",
        method::RESOURCES_TEMPLATES_LIST => "resourceTemplates",
        method::PROMPTS_LIST => "prompts",
        method::TOOLS_CALL => {
            if !version.has_structured_content() {
                object.remove("structuredContent");
            }
            return value;
        }
        method::INITIALIZE => {
            if let Some(Value::Object(info)) = object.get_mut("serverInfo") {
                for key in &drop {
                    info.remove(*key);
                }
                if !version.has_icons() {
                    info.remove("websiteUrl");
                    info.remove("description");
                }
            }
            return value;
        }
        _ => return value,
    };
    if let Some(Value::Array(items)) = object.get_mut(list) {
        for item in items.iter_mut().filter_map(Value::as_object_mut) {
            for key in &drop {
                item.remove(*key);
            }
        }
    }
    value
}
