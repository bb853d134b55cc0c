//! Which services exist and which methods and tools they offer, read from
//! `<caps dir>/*.cap.json` and kept current by watching the directory.
//!
//! Every change builds a new [`Snapshot`] and swaps it in whole: a request
//! sees one consistent view. A broken caps file is logged with its reason and
//! skipped; the other services keep working.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use client::Pool;
use proto::caps::tool_name;
use proto::caps::{PromptsSpec, ResourcesSpec};
use proto::mcp::{JsonObject, Tool, ToolAnnotations};
use proto::{CompiledCaps, MethodSpec};
use serde_json::Value;
use tokio::sync::broadcast;

/// Methods the gateway answers itself; a service may not claim them.
pub const BUILTIN_METHODS: &[&str] = &["mcp.hello", "mcp.listCapabilities", "mcp.llm.chat"];

/// One backend service.
#[derive(Debug)]
pub struct Service {
    pub name: String,
    pub version: String,
    pub description: String,
    pub pool: Arc<Pool>,
    pub methods: Vec<MethodSpec>,
    pub resources: Option<ResourcesSpec>,
    pub prompts: Option<PromptsSpec>,
    /// The service's error base (caps `error_base`): its codes for "not
    /// found" and the like are derived from it, so the gateway can map
    /// them to MCP's by code, never by message.
    pub error_base: Option<i32>,
}

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
    /// A tool of a third-party MCP server, by its own name there.
    Upstream {
        link: Arc<UpstreamLink>,
        name: String,
    },
}

/// A connected third-party MCP server.
#[derive(Debug)]
pub struct UpstreamLink {
    pub name: String,
    pub client: UpstreamClient,
}

/// How the gateway reaches a third-party server.
#[derive(Debug)]
pub enum UpstreamClient {
    /// A child process, newline-delimited JSON-RPC on its stdio.
    Stdio(client::Connection),
    /// A Streamable HTTP endpoint.
    Http(client::HttpConnection),
}

impl UpstreamClient {
    pub async fn call(
        &self,
        method: &str,
        params: Option<serde_json::Value>,
        progress: Option<client::ProgressSender>,
    ) -> Result<serde_json::Value, client::CallError> {
        match self {
            UpstreamClient::Stdio(connection) => connection.call(method, params, progress).await,
            UpstreamClient::Http(connection) => connection.call(method, params, progress).await,
        }
    }

    pub async fn notify(
        &self,
        method: &str,
        params: Option<serde_json::Value>,
    ) -> Result<(), client::CallError> {
        match self {
            UpstreamClient::Stdio(connection) => connection.notify(method, params).await,
            UpstreamClient::Http(connection) => connection.notify(method, params).await,
        }
    }
}

#[derive(Debug)]
struct UpstreamEntry {
    prefix: String,
    tools: Vec<Tool>,
    link: Arc<UpstreamLink>,
}

/// The registry: the current snapshot, and news of changes.
#[derive(Debug)]
pub struct Registry {
    dir: PathBuf,
    current: RwLock<Arc<Snapshot>>,
    /// Pools survive reloads so that a caps change does not drop connections.
    pools: std::sync::Mutex<HashMap<PathBuf, Arc<Pool>>>,
    changes: broadcast::Sender<()>,
    upstreams: std::sync::Mutex<BTreeMap<String, UpstreamEntry>>,
    backend_connections: usize,
    max_message: usize,
    /// How many times the directory was read.
    scans: AtomicU64,
}

impl Registry {
    pub fn new(dir: &Path, backend_connections: usize, max_message: usize) -> Registry {
        let (changes, _) = broadcast::channel(16);
        let registry = Registry {
            dir: dir.to_owned(),
            current: RwLock::new(Arc::new(Snapshot::default())),
            pools: std::sync::Mutex::new(HashMap::new()),
            changes,
            upstreams: std::sync::Mutex::new(BTreeMap::new()),
            backend_connections,
            max_message,
            scans: AtomicU64::new(0),
        };
        registry.reload();
        registry
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Notified after every change of the tool list.
    pub fn subscribe(&self) -> broadcast::Receiver<()> {
        self.changes.subscribe()
    }

    pub fn pools(&self) -> Vec<Arc<Pool>> {
        self.pools
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }

    /// How many times the caps directory has been read (at start and at
    /// each change).
    pub fn scans(&self) -> u64 {
        self.scans.load(Ordering::Relaxed)
    }

    /// Reads the directory again; returns whether the tool list changed.
    pub fn reload(&self) -> bool {
        self.scans.fetch_add(1, Ordering::Relaxed);
        let snapshot = self.scan();
        let mut current = self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let changed = current.tools != snapshot.tools;
        *current = Arc::new(snapshot);
        drop(current);
        if changed {
            let _ = self.changes.send(());
        }
        changed
    }

    fn pool(&self, socket: &Path) -> Arc<Pool> {
        self.pools
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(socket.to_owned())
            .or_insert_with(|| {
                Arc::new(Pool::new(
                    socket,
                    self.backend_connections,
                    self.max_message,
                ))
            })
            .clone()
    }

    fn scan(&self) -> Snapshot {
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
        let caps = match CompiledCaps::load(file) {
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
            error_base: caps.error_base,
        }))
    }

    /// Publishes (or replaces) a third-party server's tools under `prefix`.
    pub fn set_upstream(&self, link: Arc<UpstreamLink>, prefix: &str, tools: Vec<Tool>) {
        let entry = UpstreamEntry {
            prefix: prefix.to_owned(),
            tools,
            link,
        };
        self.upstreams
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(entry.link.name.clone(), entry);
        self.reload();
    }

    /// Withdraws a third-party server's tools (it stopped).
    pub fn remove_upstream(&self, name: &str) {
        let removed = self
            .upstreams
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(name)
            .is_some();
        if removed {
            self.reload();
        }
    }

    /// Watches the directory and reloads on every change (debounced), until
    /// the process ends. Logs and keeps the last snapshot if watching fails.
    pub async fn watch(self: Arc<Self>) {
        use notify::{RecursiveMode, Watcher};
        let (sender, mut events) = tokio::sync::mpsc::unbounded_channel();
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            if event.is_ok_and(|event| is_caps_change(&event)) {
                let _ = sender.send(());
            }
        });
        let mut watcher = match watcher {
            Ok(watcher) => watcher,
            Err(error) => {
                tracing::error!(%error, "cannot watch the caps directory; services will not update live");
                return;
            }
        };
        if let Err(error) = watcher.watch(&self.dir, RecursiveMode::NonRecursive) {
            tracing::error!(dir = %self.dir.display(), %error, "cannot watch the caps directory; services will not update live");
            return;
        }
        while events.recv().await.is_some() {
            // Let a burst of events (a write then a rename) settle.
            tokio::time::sleep(Duration::from_millis(50)).await;
            while events.try_recv().is_ok() {}
            if self.reload() {
                let snapshot = self.snapshot();
                tracing::info!(
                    services = ?snapshot.services.keys().collect::<Vec<_>>(),
                    tools = snapshot.tools.len(),
                    "services changed"
                );
            }
        }
    }
}

/// Whether an event can change what the caps files say. Reading the files
/// (a reload does) produces open, access and close events: reacting to
/// those would reload forever. Sockets come and go with their servers and
/// say nothing about methods.
fn is_caps_change(event: &notify::Event) -> bool {
    if matches!(event.kind, notify::EventKind::Access(_)) {
        return false;
    }
    // The watcher lost track (e.g. an overflowed queue): rescan.
    event.need_rescan()
        || event.paths.is_empty()
        || event.paths.iter().any(|path| {
            path.file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| name.ends_with(".cap.json"))
        })
}

/// Names every MCP host accepts: `^[a-zA-Z0-9_-]{1,64}$`.
fn valid_tool_name(name: &str) -> bool {
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

#[cfg(test)]
mod tests {
    use super::*;

    const TEST_CAPS: &str = include_str!("../../test-server/test.cap.json");

    async fn wait_for(what: &str, mut condition: impl FnMut() -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !condition() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Regression: reading the caps files raised access events that started
    /// the next reload, so an idle gateway re-read and re-compiled every
    /// schema about twenty times a second, forever.
    #[tokio::test(flavor = "current_thread")]
    async fn a_quiet_directory_is_read_once_and_a_change_is_seen() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("test.cap.json"), TEST_CAPS).unwrap();
        let registry = Arc::new(Registry::new(dir.path(), 1, proto::DEFAULT_MAX_MESSAGE));
        assert_eq!(registry.scans(), 1);
        assert!(registry.snapshot().services.contains_key("test"));
        tokio::spawn(registry.clone().watch());
        // Sockets come and go in the same directory; they are not caps.
        let socket = std::os::unix::net::UnixListener::bind(dir.path().join("x.sock")).unwrap();
        drop(socket);
        std::fs::remove_file(dir.path().join("x.sock")).unwrap();
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!(
            registry.scans(),
            1,
            "the registry re-read a directory whose caps did not change"
        );

        let renamed = TEST_CAPS.replace("\"service\": \"test\"", "\"service\": \"other\"");
        std::fs::write(
            dir.path().join("other.cap.json"),
            renamed.replace("mcp.test.", "mcp.other."),
        )
        .unwrap();
        wait_for("the new service", || {
            registry.snapshot().services.contains_key("other")
        })
        .await;
        let after_change = registry.scans();
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!(
            registry.scans(),
            after_change,
            "a change was followed by more reloads"
        );
    }
}
