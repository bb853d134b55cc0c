//! Licences, tiers, request rates and token quotas for the llmbasedos
//! gateway, with no JSON-RPC in them:
//!
//! - [`document`]: the Ed25519-signed licence (`/etc/llmbasedos/lic.key`),
//!   its keys, and the verdict on it (a tier and exactly why);
//! - [`tiers`]: `licence_tiers.yaml` (ours and the original's format),
//!   compiled into glob sets, rates and quotas;
//! - [`rate`]: one token bucket per client, on an injectable clock;
//! - [`ledger`]: the token ledger in redb, reservations first, so that
//!   concurrent calls cannot overspend and a killed gateway loses nothing.

pub mod document;
pub mod ledger;
pub mod rate;
pub mod tiers;

pub use document::{Issuer, Standing, Terms, TrustedKeys, Verdict};
pub use ledger::{Ask, Ledger, Period, QuotaError, Reservation, Usage};
pub use rate::RequestRate;
pub use tiers::{Quotas, Rate, Tier, Tiers};
