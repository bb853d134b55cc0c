//! `licence`: where the key, the signing keys, the tiers and the usage
//! ledger are, the quota time zone, and the tiers given to clients.

use std::path::PathBuf;

use super::super::{ConfigError, LicenceConfig, RawLicence, Token};
use super::Error;

pub(super) fn licence(
    raw: RawLicence,
    tokens: &[Token],
    error: Error<'_>,
) -> Result<LicenceConfig, ConfigError> {
    let time_zone = match raw.time_zone.as_deref() {
        None => licence::ledger::Tz::UTC,
        Some(name) => name.parse().map_err(|_| {
            error(
                "licence.time_zone",
                format!(
                    "{} is not a time zone: give an IANA name such as Europe/Paris or UTC",
                    proto::text::echo(name)
                ),
            )
        })?,
    };
    let mut assigned: Vec<(String, String)> = tokens
        .iter()
        .filter_map(|token| Some((format!("token:{}", token.name), token.tier.clone()?)))
        .collect();
    assigned.extend(
        raw.clients
            .into_iter()
            .map(|client| (format!("uid:{}", client.uid), client.tier)),
    );
    Ok(LicenceConfig {
        key: raw
            .key
            .unwrap_or_else(|| PathBuf::from("/etc/llmbasedos/lic.key")),
        keys_dir: raw
            .keys_dir
            .unwrap_or_else(|| PathBuf::from("/etc/llmbasedos/licence-keys")),
        tiers: raw
            .tiers
            .unwrap_or_else(|| PathBuf::from("/etc/llmbasedos/licence_tiers.yaml")),
        allow_unsigned: raw.allow_unsigned,
        time_zone,
        state_dir: raw
            .state_dir
            .unwrap_or_else(|| PathBuf::from("/var/lib/llmbasedos")),
        assigned,
    })
}
