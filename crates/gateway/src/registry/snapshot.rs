//! Building a [`Snapshot`]: the caps files of the directory, read and
//! checked one by one, then the tools of the connected upstreams, all
//! under names that cannot clash.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use proto::caps::tool_name;
use proto::caps::{PromptsSpec, ResourcesSpec};
use proto::mcp::{JsonObject, Tool, ToolAnnotations};
use proto::{CompiledCaps, MethodSpec};
use serde_json::Value;

use super::{Registry, Service, UpstreamLink};

/// Methods the gateway answers itself; a service may not claim them.
pub const BUILTIN_METHODS: &[&str] = &[
    "mcp.hello",
    "mcp.listCapabilities",
    "mcp.llm.chat",
    "mcp.licence.check",
    "mcp.licence.status",
];

/// A consistent view of every service, method and tool.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub services: BTreeMap<String, Arc<Service>>,
    /// `mcp.fs.read` → its service (looked up on every call; names come
    /// from the caps files, so a fast hash is safe).
    pub methods: foldhash::HashMap<String, Arc<Service>>,
    /// Tools sorted by name, and what each one calls.
    pub tools: Vec<Tool>,
    pub tool_targets: HashMap<String, ToolTarget>,
}

impl Snapshot {
    /// The service whose resources `uri` is one of (by its caps'
    /// `uri_prefix`), with its resources spec.
    pub fn resource_owner(&self, uri: &str) -> Option<(&Arc<Service>, &ResourcesSpec)> {
        self.services.values().find_map(|service| {
            service
                .resources
                .as_ref()
                .filter(|spec| uri.starts_with(&spec.uri_prefix))
                .map(|spec| (service, spec))
        })
    }

    /// The prompt an MCP host names `<service>_<prompt>`: its service, the
    /// service's prompts spec and the prompt's own name.
    pub fn prompt<'a>(
        &'a self,
        name: &'a str,
    ) -> Option<(&'a Arc<Service>, &'a PromptsSpec, &'a str)> {
        let (service, prompt) = name.split_once(proto::caps::TOOL_NAME_SEPARATOR)?;
        let service = self.services.get(service)?;
        let spec = service.prompts.as_ref()?;
        spec.prompts
            .iter()
            .any(|known| known.name == prompt)
            .then_some((service, spec, prompt))
    }
}

/// What a tool call goes to.
#[derive(Clone, Debug)]
pub enum ToolTarget {
    /// A backend method: `fs_read` → `mcp.fs.read`.
    Method(String),
    /// A service's run-time tool (caps `dynamic_tools`): its `call` method
    /// with `{name, arguments}`.
    Dynamic { method: String, name: String },
    /// A tool of a third-party MCP server, by its own name there.
    Upstream {
        link: Arc<UpstreamLink>,
        name: String,
    },
}

impl Registry {
    pub(super) fn scan(&self) -> Snapshot {
        let mut files: Vec<PathBuf> = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries
                .filter_map(Result::ok)
                .map(|entry| entry.path())
                .filter(|path| {
                    path.to_str()
                        .is_some_and(|name| name.ends_with(".cap.json"))
                })
                .collect(),
            Err(error) => {
                tracing::warn!(dir = %self.dir.display(), %error, "cannot read the caps directory; no services");
                Vec::new()
            }
        };
        files.sort();
        let mut snapshot = Snapshot::default();
        for file in files {
            let Some(service) = self.load_service(&file) else {
                continue;
            };
            if let Some(clash) = service
                .methods
                .iter()
                .map(|method| method.name.as_str())
                .find(|name| snapshot.methods.contains_key(*name) || BUILTIN_METHODS.contains(name))
            {
                tracing::error!(
                    file = %file.display(), method = clash,
                    "refusing service {}: method {clash} is already provided by another service or by the gateway",
                    service.name
                );
                continue;
            }
            for method in &service.methods {
                snapshot
                    .methods
                    .insert(method.name.clone(), service.clone());
                if let Some(tool) = tool_name(&method.name).filter(|_| method.tool) {
                    snapshot
                        .tool_targets
                        .insert(tool.clone(), ToolTarget::Method(method.name.clone()));
                    snapshot.tools.push(tool_of(tool, method));
                }
            }
            snapshot.services.insert(service.name.clone(), service);
        }
        self.add_dynamic_tools(&mut snapshot);
        let upstreams = self
            .upstreams
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for (name, entry) in upstreams.iter() {
            for tool in &entry.tools {
                let exposed = format!(
                    "{}{}{}",
                    entry.prefix,
                    proto::caps::TOOL_NAME_SEPARATOR,
                    tool.name
                );
                if !valid_tool_name(&exposed) {
                    tracing::warn!(upstream = %name, tool = %proto::text::escaped(&tool.name), "skipping a tool whose name hosts would refuse");
                    continue;
                }
                if snapshot.tool_targets.contains_key(&exposed) {
                    tracing::error!(upstream = %name, tool = %proto::text::escaped(&exposed), "refusing a tool: another service already provides it; choose another prefix");
                    continue;
                }
                snapshot.tool_targets.insert(
                    exposed.clone(),
                    ToolTarget::Upstream {
                        link: entry.link.clone(),
                        name: tool.name.clone(),
                    },
                );
                snapshot.tools.push(Tool {
                    name: exposed,
                    ..tool.clone()
                });
            }
        }
        drop(upstreams);
        snapshot
            .tools
            .sort_by(|left, right| left.name.cmp(&right.name));
        snapshot
    }

    fn load_service(&self, file: &Path) -> Option<Arc<Service>> {
        // Checked, not compiled: the gateway validates nothing with them.
        let caps = match CompiledCaps::load_for_routing(file) {
            Ok(caps) => caps,
            Err(error) => {
                tracing::warn!(file = %file.display(), "ignoring a broken caps file: {error}");
                return None;
            }
        };
        let stem = file
            .file_name()
            .and_then(|name| name.to_str())
            .and_then(|name| name.strip_suffix(".cap.json"));
        if stem != Some(caps.service()) {
            tracing::warn!(
                file = %file.display(),
                "ignoring caps file: it declares service {:?}; a service's caps file is named <service>.cap.json",
                caps.service()
            );
            return None;
        }
        let (caps, _) = caps.into_parts();
        let socket = self.dir.join(format!("{}.sock", caps.service));
        Some(Arc::new(Service {
            pool: self.pool(&socket),
            name: caps.service,
            version: caps.version,
            description: caps.description,
            methods: caps.methods,
            resources: caps.resources,
            prompts: caps.prompts,
            dynamic_tools: caps.dynamic_tools,
            error_base: caps.error_base,
            wants_caller: caps.wants_caller,
        }))
    }
}

/// Names every MCP host accepts: `^[a-zA-Z0-9_-]{1,64}$`.
pub(super) fn valid_tool_name(name: &str) -> bool {
    (1..=proto::caps::MAX_TOOL_NAME).contains(&name.len())
        && name
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-')
}

/// The MCP tool of a method: its name, description, input schema and
/// annotations come from caps.json.
fn tool_of(name: String, method: &MethodSpec) -> Tool {
    let input_schema: JsonObject = match &method.params_schema {
        Value::Object(schema) => schema.clone(),
        _ => JsonObject::new(),
    };
    let mut tool = Tool::new(name, input_schema);
    tool.title = method.title.clone();
    tool.description = Some(method.description.clone());
    tool.output_schema = method
        .result_schema
        .as_ref()
        .and_then(|schema| match schema {
            // MCP output schemas are objects; others are not announced.
            Value::Object(object)
                if object.get("type") == Some(&Value::String("object".into())) =>
            {
                Some(object.clone())
            }
            _ => None,
        });
    tool.annotations = method.annotations.as_ref().and_then(|annotations| {
        serde_json::from_value::<ToolAnnotations>(Value::Object(annotations.clone())).ok()
    });
    tool
}
