//! The licence document, `/etc/llmbasedos/lic.key`: the terms (tier,
//! licensee, issued and expiry dates, features) as JSON, signed with
//! Ed25519 by a key whose public half is trusted
//! (`/etc/llmbasedos/licence-keys/*.pub`).
//!
//! The file is one JSON object: `format` (`llmbasedos-licence-1`),
//! `key_id` (the first 8 bytes of the public key's SHA-256, hex),
//! `terms` (the terms' JSON bytes, base64) and `signature` (over exactly
//! those bytes, base64): what is verified is what was signed, with no
//! canonical form to agree on.
//!
//! The original llmbasedos's unsigned YAML (`tier`, `user_id`,
//! `expires_at`) is read only when unsigned keys are allowed.

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use ed25519_dalek::{Signature, Signer as _, SigningKey, Verifier as _, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::tiers::{FREE, Tiers};

pub const FORMAT: &str = "llmbasedos-licence-1";
const PUBLIC_PREFIX: &str = "llmbasedos-ed25519-public ";
const SECRET_PREFIX: &str = "llmbasedos-ed25519-secret ";

/// What a licence grants.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Terms {
    pub tier: String,
    pub licensee: String,
    pub issued: DateTime<Utc>,
    /// None: never expires.
    pub expires: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub features: Vec<String>,
}

/// The file as written.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Signed {
    format: String,
    key_id: String,
    terms: String,
    signature: String,
}

/// The original's unsigned key.
#[derive(Debug, Deserialize)]
struct Unsigned {
    tier: String,
    user_id: Option<String>,
    expires_at: Option<yaml_serde::Value>,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{path}: {problem}")]
    File { path: String, problem: String },
    #[error("cannot get random bytes for a key: {0}")]
    Random(String),
}

/// A signing key (the vendor's or the owner's secret).
pub struct Issuer {
    key: SigningKey,
}

impl std::fmt::Debug for Issuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issuer")
            .field("key_id", &key_id(&self.key.verifying_key()))
            .finish_non_exhaustive()
    }
}

impl Issuer {
    /// A new random key.
    pub fn generate() -> Result<Issuer, KeyError> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|error| KeyError::Random(error.to_string()))?;
        Ok(Issuer {
            key: SigningKey::from_bytes(&seed),
        })
    }

    /// The secret key file's text.
    pub fn secret_text(&self) -> String {
        format!("{SECRET_PREFIX}{}\n", STANDARD.encode(self.key.to_bytes()))
    }

    /// The public key file's text (for `licence-keys/<name>.pub`).
    pub fn public_text(&self) -> String {
        public_text(&self.key.verifying_key())
    }

    pub fn key_id(&self) -> String {
        key_id(&self.key.verifying_key())
    }

    pub fn parse(text: &str, path: &str) -> Result<Issuer, KeyError> {
        let bytes = decode_key(text, SECRET_PREFIX, path)?;
        Ok(Issuer {
            key: SigningKey::from_bytes(&bytes),
        })
    }

    pub fn load(path: &Path) -> Result<Issuer, KeyError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|error| KeyError::File {
            path: shown.clone(),
            problem: format!("cannot read it: {error}"),
        })?;
        Issuer::parse(&text, &shown)
    }

    /// The signed licence file's text.
    pub fn issue(&self, terms: &Terms) -> String {
        let json = serde_json::to_vec(terms).expect("terms serialize");
        let signature = self.key.sign(&json);
        let signed = Signed {
            format: FORMAT.to_owned(),
            key_id: self.key_id(),
            terms: STANDARD.encode(&json),
            signature: STANDARD.encode(signature.to_bytes()),
        };
        let mut text = serde_json::to_string_pretty(&signed).expect("licence serializes");
        text.push('\n');
        text
    }
}

fn public_text(key: &VerifyingKey) -> String {
    format!("{PUBLIC_PREFIX}{}\n", STANDARD.encode(key.to_bytes()))
}

fn key_id(key: &VerifyingKey) -> String {
    hex::encode(&Sha256::digest(key.as_bytes())[..8])
}

fn decode_key(text: &str, prefix: &str, path: &str) -> Result<[u8; 32], KeyError> {
    let problem = |problem: &str| KeyError::File {
        path: path.to_owned(),
        problem: problem.to_owned(),
    };
    let encoded = text.trim().strip_prefix(prefix.trim_end()).ok_or_else(|| {
        problem(&format!(
            "not a key file: it should read {prefix:?} then the key (llmbasedos licence keygen writes them)"
        ))
    })?;
    let bytes = STANDARD
        .decode(encoded.trim())
        .map_err(|_| problem("the key is not base64"))?;
    bytes
        .try_into()
        .map_err(|_| problem("the key is not 32 bytes long"))
}

/// The public keys that may sign.
#[derive(Clone, Debug, Default)]
pub struct TrustedKeys {
    keys: Vec<(String, VerifyingKey)>,
}

impl TrustedKeys {
    pub fn parse_one(&mut self, text: &str, path: &str) -> Result<(), KeyError> {
        let bytes = decode_key(text, PUBLIC_PREFIX, path)?;
        let key = VerifyingKey::from_bytes(&bytes).map_err(|_| KeyError::File {
            path: path.to_owned(),
            problem: "not a valid Ed25519 public key".to_owned(),
        })?;
        self.keys.push((key_id(&key), key));
        Ok(())
    }

    /// Every `*.pub` file of `dir`; a missing directory trusts no key.
    pub fn load_dir(dir: &Path) -> Result<TrustedKeys, KeyError> {
        let mut keys = TrustedKeys::default();
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(keys),
            Err(error) => {
                return Err(KeyError::File {
                    path: dir.display().to_string(),
                    problem: format!("cannot read the directory: {error}"),
                });
            }
        };
        let mut paths: Vec<_> = entries
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "pub"))
            .collect();
        paths.sort();
        for path in paths {
            let shown = path.display().to_string();
            let text = std::fs::read_to_string(&path).map_err(|error| KeyError::File {
                path: shown.clone(),
                problem: format!("cannot read it: {error}"),
            })?;
            keys.parse_one(&text, &shown)?;
        }
        Ok(keys)
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// Why the machine has its tier.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Standing {
    /// Signed by a trusted key, in force.
    Valid,
    /// The original's unsigned key, accepted because the configuration allows it.
    UnsignedAllowed,
    Missing,
    Unreadable,
    Malformed,
    UnsignedRefused,
    Tampered,
    UntrustedKey,
    Expired,
    NotYetValid,
    UnknownTier,
}

/// The licence as the gateway judged it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Verdict {
    /// The tier the machine runs with (FREE unless the licence is valid).
    pub tier: String,
    pub standing: Standing,
    /// Says exactly why, and what to do.
    pub reason: String,
    /// The terms as written, when they could be read (also for an expired
    /// or refused licence, so that the owner sees which one it is).
    pub terms: Option<Terms>,
}

impl Verdict {
    fn free(standing: Standing, reason: String, terms: Option<Terms>) -> Verdict {
        Verdict {
            tier: FREE.to_owned(),
            standing,
            reason,
            terms,
        }
    }

    pub fn is_valid(&self) -> bool {
        matches!(self.standing, Standing::Valid | Standing::UnsignedAllowed)
    }
}

/// Judges the licence file at `path` at time `now`.
pub fn judge(
    path: &Path,
    keys: &TrustedKeys,
    tiers: &Tiers,
    allow_unsigned: bool,
    now: DateTime<Utc>,
) -> Verdict {
    let shown = path.display();
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return Verdict::free(
                Standing::Missing,
                format!(
                    "no licence at {shown}: running FREE; install a licence (llmbasedos licence issue writes one)"
                ),
                None,
            );
        }
        Err(error) => {
            return Verdict::free(
                Standing::Unreadable,
                format!(
                    "the licence {shown} cannot be read ({error}): running FREE; make it readable by the gateway's user"
                ),
                None,
            );
        }
    };
    judge_text(&text, &shown.to_string(), keys, tiers, allow_unsigned, now)
}

/// Judges a licence's text.
pub fn judge_text(
    text: &str,
    shown: &str,
    keys: &TrustedKeys,
    tiers: &Tiers,
    allow_unsigned: bool,
    now: DateTime<Utc>,
) -> Verdict {
    let signed: Signed = match serde_json::from_str(text) {
        Ok(signed) => signed,
        Err(_) => return judge_unsigned(text, shown, tiers, allow_unsigned, now),
    };
    if signed.format != FORMAT {
        return Verdict::free(
            Standing::Malformed,
            format!(
                "the licence {shown} has format {:?}, not {FORMAT:?}: running FREE; ask for a licence of this format",
                proto_echo(&signed.format)
            ),
            None,
        );
    }
    let (Ok(json), Ok(signature)) = (
        STANDARD.decode(signed.terms.as_bytes()),
        STANDARD.decode(signed.signature.as_bytes()),
    ) else {
        return Verdict::free(
            Standing::Malformed,
            format!("the licence {shown} is damaged (terms or signature not base64): running FREE"),
            None,
        );
    };
    let terms: Option<Terms> = serde_json::from_slice(&json).ok();
    let Ok(signature) = Signature::from_slice(&signature) else {
        return Verdict::free(
            Standing::Malformed,
            format!("the licence {shown} is damaged (the signature is not 64 bytes): running FREE"),
            terms,
        );
    };
    let named = keys.keys.iter().find(|(id, _)| *id == signed.key_id);
    let verified = match named {
        Some((_, key)) => key.verify(&json, &signature).is_ok(),
        None => {
            let any = keys
                .keys
                .iter()
                .any(|(_, key)| key.verify(&json, &signature).is_ok());
            if !any {
                return Verdict::free(
                    Standing::UntrustedKey,
                    format!(
                        "the licence {shown} is signed by key {} which is not trusted ({} trusted keys): running FREE; put the issuer's public key in the licence keys directory",
                        proto_echo(&signed.key_id),
                        keys.len()
                    ),
                    terms,
                );
            }
            true
        }
    };
    if !verified {
        return Verdict::free(
            Standing::Tampered,
            format!(
                "the licence {shown}'s signature does not match its terms (altered after signing): running FREE; reinstall the licence as issued"
            ),
            terms,
        );
    }
    let Some(terms) = terms else {
        return Verdict::free(
            Standing::Malformed,
            format!("the licence {shown}'s terms cannot be read: running FREE"),
            None,
        );
    };
    in_force(terms, shown, tiers, now, Standing::Valid)
}

fn in_force(
    terms: Terms,
    shown: &str,
    tiers: &Tiers,
    now: DateTime<Utc>,
    standing: Standing,
) -> Verdict {
    if let Some(expires) = terms.expires
        && expires <= now
    {
        return Verdict::free(
            Standing::Expired,
            format!(
                "the licence {shown} for {} expired at {}: running FREE; renew it",
                proto_echo(&terms.licensee),
                expires.to_rfc3339()
            ),
            Some(terms),
        );
    }
    if terms.issued > now + chrono::Duration::days(1) {
        return Verdict::free(
            Standing::NotYetValid,
            format!(
                "the licence {shown} is issued for {} which is in the future: running FREE; check the clock",
                terms.issued.to_rfc3339()
            ),
            Some(terms),
        );
    }
    if tiers.get(&terms.tier).is_none() {
        return Verdict::free(
            Standing::UnknownTier,
            format!(
                "the licence {shown} names tier {} which licence_tiers.yaml does not define ({}): running FREE",
                proto_echo(&terms.tier),
                tiers.names().join(", ")
            ),
            Some(terms),
        );
    }
    let reason = match standing {
        Standing::UnsignedAllowed => format!(
            "the unsigned licence {shown} is accepted because licence.allow_unsigned is set"
        ),
        _ => format!("the licence {shown} is valid and signed by a trusted key"),
    };
    Verdict {
        tier: terms.tier.clone(),
        standing,
        reason,
        terms: Some(terms),
    }
}

fn judge_unsigned(
    text: &str,
    shown: &str,
    tiers: &Tiers,
    allow_unsigned: bool,
    now: DateTime<Utc>,
) -> Verdict {
    let Ok(unsigned) = yaml_serde::from_str::<Unsigned>(text) else {
        return Verdict::free(
            Standing::Malformed,
            format!(
                "the licence {shown} is neither a signed licence nor the original's YAML key: running FREE"
            ),
            None,
        );
    };
    let expires = match &unsigned.expires_at {
        None | Some(yaml_serde::Value::Null) => None,
        Some(value) => {
            let written = match value {
                yaml_serde::Value::String(text) => text.clone(),
                other => yaml_serde::to_string(other)
                    .unwrap_or_default()
                    .trim()
                    .to_owned(),
            };
            match parse_when(&written) {
                Some(when) => Some(when),
                None => {
                    return Verdict::free(
                        Standing::Malformed,
                        format!(
                            "the unsigned licence {shown}'s expires_at {} is not a date: running FREE",
                            proto_echo(&written)
                        ),
                        None,
                    );
                }
            }
        }
    };
    let terms = Terms {
        tier: unsigned.tier,
        licensee: unsigned.user_id.unwrap_or_default(),
        issued: DateTime::<Utc>::UNIX_EPOCH,
        expires,
        features: Vec::new(),
    };
    if !allow_unsigned {
        return Verdict::free(
            Standing::UnsignedRefused,
            format!(
                "the licence {shown} is unsigned (the original's format) and unsigned licences are not allowed: running FREE; install a signed licence or set licence.allow_unsigned: true in gateway.yaml"
            ),
            Some(terms),
        );
    }
    in_force(terms, shown, tiers, now, Standing::UnsignedAllowed)
}

/// An RFC 3339 time or a date (`2027-01-31`: the end of that day, UTC).
pub fn parse_when(text: &str) -> Option<DateTime<Utc>> {
    if let Ok(when) = DateTime::parse_from_rfc3339(text.trim()) {
        return Some(when.with_timezone(&Utc));
    }
    let date = chrono::NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d").ok()?;
    Some(date.and_hms_opt(23, 59, 59)?.and_utc())
}

/// A value from the file, quoted bounded.
fn proto_echo(text: &str) -> String {
    let short: String = text.chars().take(80).collect();
    format!("{short:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiers() -> Tiers {
        Tiers::parse("tiers:\n  FREE: {}\n  PRO: {allow: ['*']}\n", "t").unwrap()
    }

    fn terms(expires: Option<DateTime<Utc>>) -> Terms {
        Terms {
            tier: "PRO".to_owned(),
            licensee: "ACME".to_owned(),
            issued: "2026-01-01T00:00:00Z".parse().unwrap(),
            expires,
            features: vec!["mail".to_owned()],
        }
    }

    fn now() -> DateTime<Utc> {
        "2026-06-01T00:00:00Z".parse().unwrap()
    }

    fn trusting(issuer: &Issuer) -> TrustedKeys {
        let mut keys = TrustedKeys::default();
        keys.parse_one(&issuer.public_text(), "k.pub").unwrap();
        keys
    }

    #[test]
    fn valid_expired_tampered_wrong_key() {
        let issuer = Issuer::generate().unwrap();
        let keys = trusting(&issuer);
        let text = issuer.issue(&terms(None));
        let verdict = judge_text(&text, "lic.key", &keys, &tiers(), false, now());
        assert_eq!(verdict.standing, Standing::Valid, "{}", verdict.reason);
        assert_eq!(verdict.tier, "PRO");

        let expired = issuer.issue(&terms(Some("2026-05-01T00:00:00Z".parse().unwrap())));
        let verdict = judge_text(&expired, "lic.key", &keys, &tiers(), false, now());
        assert_eq!(verdict.standing, Standing::Expired);
        assert_eq!(verdict.tier, "FREE");
        assert!(verdict.reason.contains("expired"), "{}", verdict.reason);

        // Tampered: the terms changed (ELITE) under the old signature.
        let mut signed: Signed = serde_json::from_str(&text).unwrap();
        let mut changed = terms(None);
        changed.licensee = "Mallory".to_owned();
        signed.terms = STANDARD.encode(serde_json::to_vec(&changed).unwrap());
        let tampered = serde_json::to_string(&signed).unwrap();
        let verdict = judge_text(&tampered, "lic.key", &keys, &tiers(), false, now());
        assert_eq!(verdict.standing, Standing::Tampered);
        assert_eq!(verdict.tier, "FREE");

        let other = Issuer::generate().unwrap();
        let foreign = other.issue(&terms(None));
        let verdict = judge_text(&foreign, "lic.key", &keys, &tiers(), false, now());
        assert_eq!(verdict.standing, Standing::UntrustedKey);
        assert_eq!(verdict.tier, "FREE");
        assert!(
            verdict.reason.contains(&other.key_id()),
            "{}",
            verdict.reason
        );
    }

    #[test]
    fn unsigned_allowed_and_refused() {
        let original = "tier: PRO\nuser_id: bob\nexpires_at: '2027-01-01'\n";
        let keys = TrustedKeys::default();
        let refused = judge_text(original, "lic.key", &keys, &tiers(), false, now());
        assert_eq!(refused.standing, Standing::UnsignedRefused);
        assert_eq!(refused.tier, "FREE");
        assert!(refused.reason.contains("allow_unsigned"));
        let allowed = judge_text(original, "lic.key", &keys, &tiers(), true, now());
        assert_eq!(allowed.standing, Standing::UnsignedAllowed);
        assert_eq!(allowed.tier, "PRO");
        assert_eq!(allowed.terms.unwrap().licensee, "bob");
        let expired = "tier: PRO\nexpires_at: '2026-01-01'\n";
        let verdict = judge_text(expired, "lic.key", &keys, &tiers(), true, now());
        assert_eq!(verdict.standing, Standing::Expired);
    }

    #[test]
    fn missing_and_unknown_tier() {
        let dir = tempfile::tempdir().unwrap();
        let verdict = judge(
            &dir.path().join("lic.key"),
            &TrustedKeys::default(),
            &tiers(),
            false,
            now(),
        );
        assert_eq!(verdict.standing, Standing::Missing);
        let issuer = Issuer::generate().unwrap();
        let mut unknown = terms(None);
        unknown.tier = "PLATINUM".to_owned();
        let verdict = judge_text(
            &issuer.issue(&unknown),
            "lic.key",
            &trusting(&issuer),
            &tiers(),
            false,
            now(),
        );
        assert_eq!(verdict.standing, Standing::UnknownTier);
    }

    #[test]
    fn keys_round_trip_through_their_files() {
        let issuer = Issuer::generate().unwrap();
        let again = Issuer::parse(&issuer.secret_text(), "s").unwrap();
        assert_eq!(again.key_id(), issuer.key_id());
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("vendor.pub"), issuer.public_text()).unwrap();
        std::fs::write(dir.path().join("README"), "not a key").unwrap();
        assert_eq!(TrustedKeys::load_dir(dir.path()).unwrap().len(), 1);
        assert!(Issuer::parse(&issuer.public_text(), "p").is_err());
    }
}
