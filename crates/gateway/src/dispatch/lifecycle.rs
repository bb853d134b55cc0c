//! The lifecycle: what the gateway says about itself and how a client
//! starts. `initialize` (a session's revision, 2025-03-26 to 2025-11-25),
//! `server/discover` (2026-07-28), `ping` (answered in `route`) and
//! `logging/setLevel`. The eras' result fields are added in `era`.

use proto::mcp::{
    self, DiscoverResult, EmptyResult, InitializeParams, InitializeResult, JsonObject,
    ProtocolVersion, ServerCapabilities, SetLevelParams, ToolsCapability,
};
use proto::text::escaped;

use super::{Gateway, Reply, Session};

const INSTRUCTIONS: &str = "llmbasedos connects you to this machine's local capabilities. \
Each tool is named <service>_<method> (fs_read, mail_listMessages); its description says what it does.";

impl Gateway {
    fn capabilities(&self) -> ServerCapabilities {
        ServerCapabilities {
            resources: Some(mcp::ResourcesCapability::default()),
            prompts: Some(mcp::PromptsCapability::default()),
            tools: Some(ToolsCapability {
                list_changed: Some(true),
            }),
            logging: Some(JsonObject::new()),
            completions: Some(JsonObject::new()),
            ..ServerCapabilities::default()
        }
    }

    /// `initialize`: negotiates the session's revision and remembers it.
    pub(super) fn initialize(&self, session: &Session, params: InitializeParams) -> Reply {
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
        Reply::Initialize(result)
    }

    pub(super) fn discover(&self) -> Reply {
        let mut result = DiscoverResult::new(self.capabilities(), &self.info);
        result.instructions = Some(INSTRUCTIONS.to_owned());
        Reply::Discover(result)
    }

    /// `logging/setLevel`: the least level of the log records the session
    /// gets as `notifications/message`.
    pub(super) fn set_level(&self, session: &Session, params: SetLevelParams) -> Reply {
        session.state().log_level = Some(params.level);
        Reply::Empty(EmptyResult::default())
    }
}
