//! The licence as the gateway applies it: the machine's tier (from the
//! verdict on `lic.key`), each client's tier (the licence's, or a lower
//! one gateway.yaml gives it), each client's request bucket, and the
//! token ledger. The decisions are per client, never one bucket for the
//! machine. What a refusal says is [`Refusal`]; how it is written for
//! each vocabulary is `dispatch::rights`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use licence::{Ledger, QuotaError, RequestRate, Tier, Tiers, TrustedKeys, Verdict};

use crate::config::LicenceConfig;

/// The licence, tiers, clients and ledger.
#[derive(Debug)]
pub struct Licensing {
    pub tiers: Tiers,
    pub verdict: Verdict,
    /// The licence's tier: every client's ceiling.
    pub machine: Arc<Tier>,
    /// Identity → the tier gateway.yaml gives it.
    assigned: HashMap<String, Arc<Tier>>,
    clients: Mutex<HashMap<String, Arc<Client>>>,
    pub ledger: Arc<Ledger>,
}

/// One client (a token holder, a uid) as the licence sees it.
#[derive(Debug)]
pub struct Client {
    pub identity: String,
    pub tier: Arc<Tier>,
    rate: Option<RequestRate>,
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
        let machine = tiers
            .get(&verdict.tier)
            .unwrap_or_else(|| tiers.free())
            .clone();
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
            verdict,
            machine,
            assigned,
            clients: Mutex::new(HashMap::new()),
            ledger: Arc::new(ledger),
        })
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
        let tier = match self.assigned.get(identity) {
            Some(assigned) => self.tiers.lower(assigned, &self.machine).clone(),
            None => self.machine.clone(),
        };
        let client = Arc::new(Client {
            identity: identity.to_owned(),
            rate: tier.rate.map(RequestRate::new),
            tier,
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
        if let Ok(used) = self.ledger.clients(chrono::Utc::now()) {
            known.extend(used);
        }
        known.sort();
        known.dedup();
        known
    }
}

impl Client {
    /// Takes one request from the client's bucket.
    pub fn admit(&self) -> Result<(), Refusal> {
        match &self.rate {
            Some(rate) => rate
                .check()
                .map_err(|retry_after| Refusal::Rate { retry_after }),
            None => Ok(()),
        }
    }

    /// Whether the tier allows a call named by `names`.
    pub fn allows(&self, names: &[&str]) -> Result<(), Refusal> {
        if self.tier.allows(names) {
            Ok(())
        } else {
            Err(Refusal::Permission {
                name: names.first().copied().unwrap_or_default().to_owned(),
            })
        }
    }

    /// Whether the tier allows `model`.
    pub fn allows_model(&self, model: &str) -> Result<(), Refusal> {
        if self.tier.allows_model(model) {
            Ok(())
        } else {
            Err(Refusal::Model {
                model: model.to_owned(),
            })
        }
    }
}
