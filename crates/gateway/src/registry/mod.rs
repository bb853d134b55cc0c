//! Which services exist and which methods and tools they offer, read from
//! `<caps dir>/*.cap.json` and kept current by watching the directory.
//!
//! Every change builds a new [`Snapshot`] ([`snapshot`]: the scan of the
//! directory and the upstreams' tools) and swaps it in whole: a request
//! sees one consistent view. A broken caps file is logged with its reason
//! and skipped; the other services keep working. [`watch`] decides which
//! directory events start a reload.

mod dynamic;
mod snapshot;
mod watch;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use client::Pool;
use proto::MethodSpec;
use proto::caps::{DynamicToolsSpec, PromptsSpec, ResourcesSpec};
use proto::mcp::Tool;
use tokio::sync::broadcast;

pub use snapshot::{BUILTIN_METHODS, Snapshot, ToolTarget};

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
    /// Tools the service changes at run time (caps `dynamic_tools`).
    pub dynamic_tools: Option<DynamicToolsSpec>,
    /// The service's error base (caps `error_base`): its codes for "not
    /// found" and the like are derived from it, so the gateway can map
    /// them to MCP's by code, never by message.
    pub error_base: Option<i32>,
    /// Caps `wants_caller`: calls carry `_meta["llmbasedos/caller"]`.
    pub wants_caller: bool,
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
    /// The current tools of services with `dynamic_tools`, by service.
    dynamic: std::sync::Mutex<BTreeMap<String, Vec<Tool>>>,
    /// A host wants the dynamic tools now ([`Registry::dynamic_tools_listed`]).
    dynamic_wanted: tokio::sync::Notify,
    /// The services whose dynamic tools were asked for once.
    dynamic_listed: tokio::sync::watch::Sender<std::collections::BTreeSet<String>>,
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
            dynamic: std::sync::Mutex::new(BTreeMap::new()),
            dynamic_wanted: tokio::sync::Notify::new(),
            dynamic_listed: tokio::sync::watch::Sender::new(std::collections::BTreeSet::new()),
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
}
