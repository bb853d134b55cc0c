//! Services whose tools change at run time (caps `dynamic_tools`): for each
//! one, a follower holds the service's `watch` call open and, on each of its
//! progress notifications, asks `list` for the current tools; the registry
//! swaps them into a new snapshot, and hosts hear `tools/list_changed` when
//! the list changed. Nothing here knows any particular service.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use proto::caps::DynamicToolsSpec;
use proto::mcp::Tool;
use serde::Deserialize;
use serde_json::json;

use super::snapshot::{Snapshot, ToolTarget, valid_tool_name};
use super::{Registry, Service};

/// How often the set of services with dynamic tools is looked at.
const LOOK: Duration = Duration::from_secs(1);
/// The first look waits this long after start, unless a host asks for the
/// tools first ([`Registry::dynamic_tools_listed`]): following a service
/// socket-activates it (the agent), which on a cold start would compete
/// with the first call for the service manager and the CPU.
const FIRST_LOOK: Duration = Duration::from_secs(1);
/// How long a host's first `tools/list` waits for the services' first
/// listing of their dynamic tools.
const FIRST_LISTING: Duration = Duration::from_secs(2);
/// The longest wait before a failed watch is tried again.
const MAX_RETRY: Duration = Duration::from_secs(30);

#[derive(Deserialize)]
struct ListResult {
    tools: Vec<Tool>,
}

impl Registry {
    /// Keeps one follower per service with `dynamic_tools`, until the
    /// process ends: started when the service appears, restarted when its
    /// caps change, stopped (its tools withdrawn) when it goes.
    pub(super) async fn follow_dynamic_tools(self: Arc<Self>) {
        let mut followers: HashMap<String, (Arc<Service>, tokio::task::JoinHandle<()>)> =
            HashMap::new();
        tokio::select! {
            () = tokio::time::sleep(FIRST_LOOK) => {}
            () = self.dynamic_wanted.notified() => {}
        }
        let mut ticker = tokio::time::interval(LOOK);
        loop {
            ticker.tick().await;
            let snapshot = self.snapshot();
            let wanted: HashMap<&String, &Arc<Service>> = snapshot
                .services
                .iter()
                .filter(|(_, service)| service.dynamic_tools.is_some())
                .collect();
            let mut withdrawn = false;
            followers.retain(|name, (service, task)| {
                let keep = wanted
                    .get(name)
                    .is_some_and(|current| Arc::ptr_eq(current, service));
                if !keep {
                    task.abort();
                    withdrawn |= self.lock_dynamic().remove(name).is_some();
                }
                keep
            });
            if withdrawn {
                self.reload();
            }
            for (name, service) in wanted {
                if !followers.contains_key(name)
                    && let Some(spec) = service.dynamic_tools.clone()
                {
                    let task = tokio::spawn(self.clone().follow(service.clone(), spec));
                    followers.insert(name.clone(), (service.clone(), task));
                }
            }
        }
    }

    fn lock_dynamic(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::BTreeMap<String, Vec<Tool>>> {
        self.dynamic
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Waits (at most [`FIRST_LISTING`]) until every service with dynamic
    /// tools has been asked for them once, starting the follow at once if
    /// it was still waiting for [`FIRST_LOOK`]: what a host lists or calls
    /// right after the gateway started includes the run-time tools.
    pub async fn dynamic_tools_listed(&self) {
        self.dynamic_wanted.notify_one();
        let wanted: Vec<String> = self
            .snapshot()
            .services
            .values()
            .filter(|service| service.dynamic_tools.is_some())
            .map(|service| service.name.clone())
            .collect();
        if wanted.is_empty() {
            return;
        }
        let mut listed = self.dynamic_listed.subscribe();
        let all_listed = listed.wait_for(|listed| wanted.iter().all(|name| listed.contains(name)));
        if tokio::time::timeout(FIRST_LISTING, all_listed)
            .await
            .is_err()
        {
            tracing::debug!(services = ?wanted, "dynamic tools not listed within {FIRST_LISTING:?}; answering without them");
        }
    }

    /// Marks a service's first listing of its dynamic tools as done (or
    /// failed: a host is not kept waiting for a service that is down).
    fn first_listing_done(&self, service: &str) {
        self.dynamic_listed
            .send_if_modified(|listed| listed.insert(service.to_owned()));
    }

    /// Holds the service's watch open and lists its tools on each notice.
    async fn follow(self: Arc<Self>, service: Arc<Service>, spec: DynamicToolsSpec) {
        let mut delay = Duration::from_secs(1);
        loop {
            let (progress, mut notices) = tokio::sync::mpsc::unbounded_channel();
            let watch = service
                .pool
                .call(&spec.watch, Some(json!({})), Some(progress));
            tokio::pin!(watch);
            let ended = loop {
                tokio::select! {
                    ended = &mut watch => break ended,
                    Some(_) = notices.recv() => {
                        self.list_dynamic(&service, &spec).await;
                        self.first_listing_done(&service.name);
                        delay = Duration::from_secs(1);
                    }
                }
            };
            self.first_listing_done(&service.name);
            match ended {
                Ok(_) => {
                    tracing::info!(service = %service.name, "the dynamic tools watch ended; watching again")
                }
                Err(error) => {
                    tracing::debug!(service = %service.name, %error, "cannot watch dynamic tools; trying again")
                }
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(MAX_RETRY);
        }
    }

    async fn list_dynamic(&self, service: &Service, spec: &DynamicToolsSpec) {
        let listed = service.pool.call(&spec.list, Some(json!({})), None).await;
        let tools = match listed.map(serde_json::from_value::<ListResult>) {
            Ok(Ok(result)) => result.tools,
            Ok(Err(error)) => {
                tracing::warn!(service = %service.name, method = %spec.list, %error, "ignoring a malformed dynamic tools list");
                return;
            }
            Err(error) => {
                tracing::warn!(service = %service.name, method = %spec.list, %error, "cannot list dynamic tools");
                return;
            }
        };
        self.set_dynamic_tools(&service.name, tools);
    }

    /// Replaces a service's run-time tools; hosts hear of it if the tool
    /// list changed.
    pub fn set_dynamic_tools(&self, service: &str, tools: Vec<Tool>) {
        self.lock_dynamic().insert(service.to_owned(), tools);
        self.reload();
    }

    /// Adds the run-time tools of the snapshot's services: valid names only,
    /// never one that another tool already has.
    pub(super) fn add_dynamic_tools(&self, snapshot: &mut Snapshot) {
        let dynamic = self.lock_dynamic();
        for (name, tools) in dynamic.iter() {
            let Some(spec) = snapshot
                .services
                .get(name)
                .and_then(|service| service.dynamic_tools.clone())
            else {
                continue;
            };
            for tool in tools {
                if !valid_tool_name(&tool.name) {
                    tracing::warn!(service = %name, tool = %proto::text::escaped(&tool.name), "skipping a dynamic tool whose name hosts would refuse");
                    continue;
                }
                if snapshot.tool_targets.contains_key(&tool.name) {
                    tracing::error!(service = %name, tool = %proto::text::escaped(&tool.name), "refusing a dynamic tool: another tool already has its name");
                    continue;
                }
                snapshot.tool_targets.insert(
                    tool.name.clone(),
                    ToolTarget::Dynamic {
                        method: spec.call.clone(),
                        name: tool.name.clone(),
                    },
                );
                snapshot.tools.push(tool.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::mcp::JsonObject;

    fn caps(service: &str, dynamic: bool) -> String {
        let method = |name: &str| json!({"name": format!("mcp.{service}.{name}"), "description": "d", "params_schema": {"type": "object"}, "tool": name == "plain"});
        let mut caps = json!({
            "service": service, "version": "1", "description": "d", "error_base": -32090,
            "methods": [method("plain"), method("list"), method("call"), method("watch")],
        });
        if dynamic {
            caps["dynamic_tools"] = json!({"list": format!("mcp.{service}.list"), "call": format!("mcp.{service}.call"), "watch": format!("mcp.{service}.watch")});
        }
        caps.to_string()
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_services_run_time_tools_join_the_list_and_change_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("dyn.cap.json"), caps("dyn", true)).expect("write");
        std::fs::write(dir.path().join("other.cap.json"), caps("other", false)).expect("write");
        let registry = Registry::new(dir.path(), 1, 1 << 20);
        let mut changes = registry.subscribe();
        let names = |registry: &Registry| -> Vec<String> {
            registry
                .snapshot()
                .tools
                .iter()
                .map(|tool| tool.name.clone())
                .collect()
        };
        assert_eq!(names(&registry), ["dyn_plain", "other_plain"]);

        let tool = |name: &str| Tool::new(name.to_owned(), JsonObject::new());
        registry.set_dynamic_tools(
            "dyn",
            vec![
                tool("workflow_b"),
                tool("workflow_a"),
                tool("dyn_plain"),
                tool("bad name"),
            ],
        );
        assert!(changes.try_recv().is_ok(), "hosts hear of the change");
        // Sorted with the others; a clash and an invalid name are refused.
        assert_eq!(
            names(&registry),
            ["dyn_plain", "other_plain", "workflow_a", "workflow_b"]
        );
        match registry.snapshot().tool_targets.get("workflow_a") {
            Some(ToolTarget::Dynamic { method, name }) => {
                assert_eq!(
                    (method.as_str(), name.as_str()),
                    ("mcp.dyn.call", "workflow_a")
                );
            }
            other => panic!("{other:?}"),
        }

        // The same list again is no change.
        registry.set_dynamic_tools("dyn", vec![tool("workflow_b"), tool("workflow_a")]);
        assert!(changes.try_recv().is_err());
        // A service without dynamic_tools in its caps gets none.
        registry.set_dynamic_tools("other", vec![tool("sneaky")]);
        assert!(!names(&registry).contains(&"sneaky".to_owned()));
        registry.set_dynamic_tools("dyn", vec![tool("workflow_a")]);
        assert!(changes.try_recv().is_ok());
        assert_eq!(names(&registry), ["dyn_plain", "other_plain", "workflow_a"]);
    }
}
