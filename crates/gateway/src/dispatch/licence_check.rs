//! `mcp.licence.check` (the `licence_check` tool) and `mcp.licence.status`
//! (`llmbasedos status`): the licence, each client's tier, limits, usage
//! and what remains this day and month.

use std::sync::Arc;

use proto::ErrorObject;
use serde_json::{Value, json};

use super::{Gateway, Session, to_value};
use crate::licensing::Client;

impl Gateway {
    /// `mcp.licence.check`: the licence, the client's tier, limits, usage
    /// and what remains this day and month.
    pub(super) async fn licence_check(&self, session: &Session) -> Result<Value, ErrorObject> {
        let Some(licensing) = &self.licensing else {
            return Ok(json!({
                "licensed": false,
                "client": session.identity(),
                "reason": "gateway.yaml has no licence section: every client may do everything, without limits",
            }));
        };
        let client = licensing.client(session.identity());
        let report = client_report(licensing, &client).await;
        let current = licensing.current();
        let verdict = &current.verdict;
        let terms = verdict.terms.as_ref();
        to_value(&json!({
            "licensed": true,
            "client": client.identity,
            "tier": client.tier().name,
            "machine_tier": current.machine.name,
            "standing": verdict.standing,
            "valid": verdict.is_valid(),
            "reason": verdict.reason,
            "how_to_get_further": client.further().as_deref(),
            "reload_error": licensing.reload_error(),
            "licensee": terms.map(|terms| &terms.licensee),
            "issued": terms.map(|terms| terms.issued.to_rfc3339()),
            "expires": terms.and_then(|terms| terms.expires.map(|at| at.to_rfc3339())),
            "features": terms.map(|terms| &terms.features),
            "limits": report["limits"],
            "usage": report["usage"],
            "remaining": report["remaining"],
        }))
    }

    /// `mcp.licence.status`: every known client's tier, limits and usage
    /// (`llmbasedos status`); only a client whose tier allows the method.
    pub(super) async fn licence_status(&self) -> Result<Value, ErrorObject> {
        let Some(licensing) = &self.licensing else {
            return Ok(json!({ "licensed": false, "clients": [] }));
        };
        let mut clients = Vec::new();
        for identity in licensing.known_clients() {
            let client = licensing.client(&identity);
            clients.push(client_report(licensing, &client).await);
        }
        let current = licensing.current();
        Ok(json!({
            "licensed": true,
            "machine_tier": current.machine.name,
            "standing": current.verdict.standing,
            "reason": current.verdict.reason,
            "how_to_get_further": (!current.verdict.is_valid()).then(|| licensing.free_hint()),
            "reload_error": licensing.reload_error(),
            "clients": clients,
        }))
    }
}

/// One client's tier, limits, usage and what remains.
async fn client_report(licensing: &crate::licensing::Licensing, client: &Arc<Client>) -> Value {
    let ledger = licensing.ledger.clone();
    let identity = client.identity.clone();
    let now = licensing.now();
    let usage = tokio::task::spawn_blocking(move || ledger.usage(&identity, now))
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    let tier = client.tier();
    let quotas = tier.quotas;
    let periods = licence::ledger::Periods::at(licensing.ledger.zone(), now);
    json!({
        "client": client.identity,
        "tier": tier.name,
        "limits": licence::tiers::describe(&tier),
        "usage": usage,
        "remaining": {
            "day": quotas.per_day.map(|limit| limit.saturating_sub(usage.day)),
            "month": quotas.per_month.map(|limit| limit.saturating_sub(usage.month)),
            "day_resets": periods.day_resets.to_rfc3339(),
            "month_resets": periods.month_resets.to_rfc3339(),
        },
    })
}
