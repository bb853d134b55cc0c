//! The licence as the gateway applies it: the machine's tier (from the
//! verdict on `lic.key`), each client's tier (the licence's, or a lower
//! one gateway.yaml gives it), each client's request bucket, and the
//! token ledger. The decisions are per client, never one bucket for the
//! machine. What a refusal says is [`Refusal`]; how it is written for
//! each vocabulary is `dispatch::rights`.
//!
//! The licence is read at start and again on SIGHUP or when `lic.key` or
//! the trusted keys change ([`Licensing::watch`]): a licence in force
//! takes effect at once for every client, its running sessions included;
//! a new file that is not in force (broken, tampered, expired, removed)
//! keeps the licence in force with an error in the log and in
//! `mcp.licence.check`. The tiers file is read at start only.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use licence::{Ledger, QuotaError, RequestRate, Tier, Tiers, TrustedKeys, Verdict};

use crate::config::LicenceConfig;

/// The licence, tiers, clients and ledger.
#[derive(Debug)]
pub struct Licensing {
    pub tiers: Tiers,
    config: LicenceConfig,
    /// The verdict in force and the machine's tier (replaced by a reload).
    current: RwLock<Arc<Current>>,
    /// Why the last reload kept the licence in force (none: it did not).
    reload_error: Mutex<Option<String>>,
    /// Identity → the tier gateway.yaml gives it.
    assigned: HashMap<String, Arc<Tier>>,
    clients: Mutex<HashMap<String, Arc<Client>>>,
    pub ledger: Arc<Ledger>,
    /// What time it is for quotas' days and months, reports and reloads
    /// (the system's; tests set their own).
    clock: RwLock<Timekeeper>,
}

/// A source of the current time.
pub type Clock = Arc<dyn Fn() -> chrono::DateTime<chrono::Utc> + Send + Sync>;

struct Timekeeper(Clock);

impl std::fmt::Debug for Timekeeper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Clock")
    }
}

/// The licence in force.
#[derive(Debug)]
pub struct Current {
    pub verdict: Verdict,
    /// The licence's tier: every client's ceiling.
    pub machine: Arc<Tier>,
}

/// One client (a token holder, a uid) as the licence sees it.
#[derive(Debug)]
pub struct Client {
    pub identity: String,
    /// Replaced when a reload changes the client's tier; read (never
    /// written) on every call, so the lock is uncontended.
    terms: RwLock<Terms>,
}

#[derive(Debug)]
struct Terms {
    tier: Arc<Tier>,
    rate: Option<RequestRate>,
    /// What a refused client can do to get further.
    further: Option<Arc<str>>,
}

/// Why a call is refused.
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    /// The tier does not allow the call (`names` what it was called by).
    Permission { name: String },
    /// The client's request bucket is empty.
    Rate { retry_after: Duration },
    /// The token quota cannot hold the call.
    Quota(QuotaError),
    /// The tier does not allow this model (or any: no LLM access).
    Model { model: String },
    /// A delegate's `on_behalf_of` that is not allowed.
    Delegation { reason: String },
}

impl Licensing {
    /// Reads the tiers, the trusted keys and the licence, and opens the
    /// ledger. A licence that is missing or invalid is no error: the
    /// machine runs FREE and the verdict says why (logged here).
    pub fn load(config: &LicenceConfig) -> Result<Licensing, String> {
        let tiers = Tiers::load(&config.tiers).map_err(|error| error.to_string())?;
        let keys = TrustedKeys::load_dir(&config.keys_dir).map_err(|error| error.to_string())?;
        let verdict = licence::document::judge(
            &config.key,
            &keys,
            &tiers,
            config.allow_unsigned,
            chrono::Utc::now(),
        );
        if verdict.is_valid() {
            tracing::info!(tier = %verdict.tier, reason = %verdict.reason, "licence");
        } else {
            tracing::warn!(tier = %verdict.tier, standing = ?verdict.standing, reason = %verdict.reason, "licence not in force");
        }
        let current = Current::new(&tiers, verdict);
        let mut assigned = HashMap::new();
        for (identity, name) in &config.assigned {
            let Some(tier) = tiers.get(name) else {
                return Err(format!(
                    "the tier {} given to {identity} is not in {} (it has {})",
                    proto::text::echo(name),
                    config.tiers.display(),
                    tiers.names().join(", ")
                ));
            };
            assigned.insert(identity.clone(), tier.clone());
        }
        std::fs::create_dir_all(&config.state_dir).map_err(|error| {
            format!(
                "licence.state_dir {}: cannot create it: {error}",
                config.state_dir.display()
            )
        })?;
        let ledger = Ledger::open(
            &config.state_dir.join(licence::ledger::FILE),
            config.time_zone,
        )
        .map_err(|error| error.to_string())?;
        Ok(Licensing {
            tiers,
            config: config.clone(),
            current: RwLock::new(Arc::new(current)),
            reload_error: Mutex::new(None),
            assigned,
            clients: Mutex::new(HashMap::new()),
            ledger: Arc::new(ledger),
            clock: RwLock::new(Timekeeper(Arc::new(chrono::Utc::now))),
        })
    }

    /// The time now, by the licensing's clock.
    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        let clock = self
            .clock
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .0
            .clone();
        clock()
    }

    /// Replaces the clock (tests: a day that ends when they say).
    pub fn set_clock(&self, clock: Clock) {
        *self
            .clock
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Timekeeper(clock);
    }

    /// The licence in force.
    pub fn current(&self) -> Arc<Current> {
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Why the last reload kept the licence in force, if it did.
    pub fn reload_error(&self) -> Option<String> {
        self.reload_error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Reads `lic.key` and the trusted keys again. A licence in force
    /// replaces the current one, and every known client's tier follows
    /// (a client whose tier changes gets a fresh bucket of the new rate);
    /// one that is not in force replaces it only when the current one is
    /// not in force either (the machine runs FREE both ways; the newer
    /// reason is the one to show), and otherwise is an error: the licence
    /// in force stays, and the error is logged and kept for
    /// `mcp.licence.check`. Whether the licence in force changed.
    pub fn reload(&self) -> bool {
        let keys = match TrustedKeys::load_dir(&self.config.keys_dir) {
            Ok(keys) => keys,
            Err(error) => return self.keep(error.to_string()),
        };
        let verdict = licence::document::judge(
            &self.config.key,
            &keys,
            &self.tiers,
            self.config.allow_unsigned,
            self.now(),
        );
        let old = self.current();
        if !verdict.is_valid() && old.verdict.is_valid() {
            return self.keep(verdict.reason);
        }
        if verdict == old.verdict {
            return false;
        }
        let current = Arc::new(Current::new(&self.tiers, verdict));
        if current.verdict.is_valid() {
            tracing::info!(tier = %current.verdict.tier, was = %old.machine.name, reason = %current.verdict.reason, "licence reloaded");
        } else {
            tracing::warn!(tier = %current.verdict.tier, standing = ?current.verdict.standing, reason = %current.verdict.reason, "licence reloaded, not in force");
        }
        *self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = current.clone();
        *self
            .reload_error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
        let clients: Vec<Arc<Client>> = self
            .clients
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .cloned()
            .collect();
        for client in clients {
            let terms = self.terms(&current, &client.identity);
            let mut held = client
                .terms
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if held.tier.name != terms.tier.name || held.further != terms.further {
                *held = terms;
            }
        }
        true
    }

    fn keep(&self, reason: String) -> bool {
        let current = self.current();
        tracing::error!(
            file = %self.config.key.display(),
            reason = %reason,
            kept = %current.machine.name,
            "licence reload failed: the licence in force stays"
        );
        *self
            .reload_error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(format!(
            "the last reload of {} failed, so the licence read before stays in force: {reason}",
            self.config.key.display()
        ));
        false
    }

    /// Reloads on SIGHUP and whenever `lic.key` or the trusted keys
    /// change (debounced), until the process ends.
    pub async fn watch(self: Arc<Self>) {
        use notify::{RecursiveMode, Watcher};
        let (sender, mut events) = tokio::sync::mpsc::unbounded_channel();
        let hangup = sender.clone();
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(mut signal) => {
                tokio::spawn(async move {
                    while signal.recv().await.is_some() {
                        tracing::info!("SIGHUP: reading the licence again");
                        if hangup.send(()).is_err() {
                            break;
                        }
                    }
                });
            }
            Err(error) => tracing::error!(%error, "cannot handle SIGHUP"),
        }
        let key = self.config.key.clone();
        let keys_dir = self.config.keys_dir.clone();
        let (watched_key, watched_keys) = (key.clone(), keys_dir.clone());
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            let relevant = event.is_ok_and(|event| {
                !matches!(event.kind, notify::EventKind::Access(_))
                    && (event.need_rescan()
                        || event.paths.iter().any(|path| {
                            path == &watched_key || path.parent() == Some(watched_keys.as_path())
                        }))
            });
            if relevant {
                let _ = sender.send(());
            }
        });
        // Kept for as long as the loop runs: dropping it stops watching.
        let _watcher = match watcher {
            Ok(mut watcher) => {
                for dir in [key.parent(), Some(keys_dir.as_path())]
                    .into_iter()
                    .flatten()
                {
                    if let Err(error) = watcher.watch(dir, RecursiveMode::NonRecursive) {
                        tracing::warn!(dir = %dir.display(), %error, "cannot watch for licence changes; SIGHUP reloads it");
                    }
                }
                Some(watcher)
            }
            Err(error) => {
                tracing::warn!(%error, "cannot watch for licence changes; SIGHUP reloads it");
                None
            }
        };
        while events.recv().await.is_some() {
            // Let a burst of events (a write then a rename) settle.
            tokio::time::sleep(Duration::from_millis(50)).await;
            while events.try_recv().is_ok() {}
            let this = self.clone();
            let _ = tokio::task::spawn_blocking(move || this.reload()).await;
        }
    }

    /// What to do on a machine whose licence is not in force.
    pub fn free_hint(&self) -> String {
        self.unlicensed_hint(&self.current())
    }

    fn unlicensed_hint(&self, current: &Current) -> String {
        format!(
            "this machine runs {} because its licence is not in force ({}); to get further, install a licence: put a signed lic.key at {} (`llmbasedos licence verify FILE` checks one first; the running gateway reads it at once), or, for unlimited local use, remove the `licence:` section from gateway.yaml and restart the gateway",
            current.machine.name,
            current.verdict.reason,
            self.config.key.display()
        )
    }

    /// A client's terms under `current`: its tier, bucket, and what it
    /// can do to get further.
    fn terms(&self, current: &Current, identity: &str) -> Terms {
        let (tier, further) = match self.assigned.get(identity) {
            Some(assigned) if assigned.rank < current.machine.rank => (
                assigned.clone(),
                format!(
                    "gateway.yaml gives {} the tier {}, below the machine's {}: give it a higher tier there (auth.tokens[].tier, licence.clients) to let it do more",
                    proto::text::echo(identity),
                    assigned.name,
                    current.machine.name
                ),
            ),
            _ if !current.verdict.is_valid() => {
                (current.machine.clone(), self.unlicensed_hint(current))
            }
            _ => (
                current.machine.clone(),
                format!(
                    "this machine's licence gives {}; a licence of a higher tier at {} lets it do more",
                    current.machine.name,
                    self.config.key.display()
                ),
            ),
        };
        Terms {
            rate: tier.rate.map(RequestRate::new),
            tier,
            further: Some(Arc::from(further)),
        }
    }

    /// The client `identity` (one per identity, shared by its sessions).
    pub fn client(&self, identity: &str) -> Arc<Client> {
        let mut clients = self
            .clients
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(client) = clients.get(identity) {
            return client.clone();
        }
        let terms = self.terms(&self.current(), identity);
        let client = Arc::new(Client {
            identity: identity.to_owned(),
            terms: RwLock::new(terms),
        });
        clients.insert(identity.to_owned(), client.clone());
        client
    }

    /// Every client seen since the start, and every one the config names.
    pub fn known_clients(&self) -> Vec<String> {
        let mut known: Vec<String> = self.assigned.keys().cloned().collect();
        known.extend(
            self.clients
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .keys()
                .cloned(),
        );
        if let Ok(used) = self.ledger.clients(self.now()) {
            known.extend(used);
        }
        known.sort();
        known.dedup();
        known
    }
}

impl Current {
    fn new(tiers: &Tiers, verdict: Verdict) -> Current {
        let machine = tiers
            .get(&verdict.tier)
            .unwrap_or_else(|| tiers.free())
            .clone();
        Current { verdict, machine }
    }
}

impl Client {
    fn terms(&self) -> std::sync::RwLockReadGuard<'_, Terms> {
        self.terms
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The client's tier now.
    pub fn tier(&self) -> Arc<Tier> {
        self.terms().tier.clone()
    }

    /// What the client can do to get further than its tier lets it.
    pub fn further(&self) -> Option<Arc<str>> {
        self.terms().further.clone()
    }

    /// Takes one request from the client's bucket.
    pub fn admit(&self) -> Result<(), Refusal> {
        match &self.terms().rate {
            Some(rate) => rate
                .check()
                .map_err(|retry_after| Refusal::Rate { retry_after }),
            None => Ok(()),
        }
    }

    /// Whether the tier allows a call named by `names`.
    pub fn allows(&self, names: &[&str]) -> Result<(), Refusal> {
        if self.terms().tier.allows(names) {
            Ok(())
        } else {
            Err(Refusal::Permission {
                name: names.first().copied().unwrap_or_default().to_owned(),
            })
        }
    }

    /// Whether the tier allows `model`.
    pub fn allows_model(&self, model: &str) -> Result<(), Refusal> {
        if self.terms().tier.allows_model(model) {
            Ok(())
        } else {
            Err(Refusal::Model {
                model: model.to_owned(),
            })
        }
    }
}
