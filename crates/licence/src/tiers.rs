//! Tiers: `/etc/llmbasedos/licence_tiers.yaml`, in two stages (the file
//! as written, then compiled tiers with their glob sets), in either of two
//! formats:
//!
//! - ours: `tiers:` mapping each tier's name to `allow`/`deny` patterns,
//!   `requests` per `window_secs`, `concurrent`, and `llm` (`access`,
//!   `models`, `tokens_per_request`, `tokens_per_day`, `tokens_per_month`);
//! - the original Python llmbasedos's: tier names at the top level, each
//!   with `rate_limit_requests`, `rate_limit_window_seconds`,
//!   `allowed_capabilities`, `llm_access`, `allowed_llm_models`.
//!
//! Tiers are listed from the lowest to the highest: a client may be given
//! a tier below the licence's, never above. A file without `FREE` gets the
//! built-in one ([`Tier::builtin_free`]), what a machine without a valid
//! licence runs with.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use globset::{Glob, GlobSet, GlobSetBuilder};
use serde::Deserialize;

/// The tier of a machine without a valid licence.
pub const FREE: &str = "FREE";

/// Names every tier allows: what a client needs to learn what it may do.
pub const ALWAYS_ALLOWED: &[&str] = &["mcp.hello", "mcp.listCapabilities", "mcp.licence.check"];

/// A problem in the tiers file: the file, the key and the fix.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {key}: {problem}")]
pub struct TiersError {
    pub file: String,
    pub key: String,
    pub problem: String,
}

/// Requests per window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    pub requests: u32,
    pub window: Duration,
}

/// A tier's token quotas (none: unlimited).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Quotas {
    pub per_request: Option<u64>,
    pub per_day: Option<u64>,
    pub per_month: Option<u64>,
}

impl Quotas {
    pub fn is_limited(&self) -> bool {
        self.per_request.is_some() || self.per_day.is_some() || self.per_month.is_some()
    }
}

/// Patterns compiled once.
#[derive(Clone, Debug)]
pub struct Patterns {
    written: Vec<String>,
    set: GlobSet,
}

impl Patterns {
    fn new(written: Vec<String>, file: &str, key: &str) -> Result<Patterns, TiersError> {
        let mut builder = GlobSetBuilder::new();
        for (index, pattern) in written.iter().enumerate() {
            let glob = Glob::new(pattern).map_err(|error| TiersError {
                file: file.to_owned(),
                key: format!("{key}[{index}]"),
                problem: format!(
                    "{pattern:?} is not a glob pattern ({error}); write names with * and ? wildcards, e.g. mcp.fs.*"
                ),
            })?;
            builder.add(glob);
        }
        let set = builder.build().map_err(|error| TiersError {
            file: file.to_owned(),
            key: key.to_owned(),
            problem: error.to_string(),
        })?;
        Ok(Patterns { written, set })
    }

    pub fn empty() -> Patterns {
        Patterns {
            written: Vec::new(),
            set: GlobSet::empty(),
        }
    }

    pub fn is_match(&self, name: &str) -> bool {
        !self.set.is_empty() && self.set.is_match(name)
    }

    pub fn written(&self) -> &[String] {
        &self.written
    }
}

/// One tier, compiled.
#[derive(Clone, Debug)]
pub struct Tier {
    pub name: String,
    /// Position in the file, lowest first.
    pub rank: usize,
    pub allow: Patterns,
    pub deny: Patterns,
    pub rate: Option<Rate>,
    pub concurrent: Option<usize>,
    pub llm_access: bool,
    pub models: Patterns,
    pub quotas: Quotas,
}

impl Tier {
    /// Whether a call named by `names` (its method, its tool name, …) is
    /// allowed: one name matches an allowed pattern and none a denied one.
    pub fn allows(&self, names: &[&str]) -> bool {
        if names.iter().any(|name| self.deny.is_match(name)) {
            return false;
        }
        names
            .iter()
            .any(|name| ALWAYS_ALLOWED.contains(name) || self.allow.is_match(name))
    }

    /// Whether the tier may use `model` through the LLM proxy.
    pub fn allows_model(&self, model: &str) -> bool {
        self.llm_access && self.models.is_match(model)
    }

    /// FREE when the file defines none: the gateway's own methods only, no
    /// language model, 60 requests a minute.
    pub fn builtin_free() -> Tier {
        Tier {
            name: FREE.to_owned(),
            rank: 0,
            allow: Patterns::empty(),
            deny: Patterns::empty(),
            rate: Some(Rate {
                requests: 60,
                window: Duration::from_secs(60),
            }),
            concurrent: Some(4),
            llm_access: false,
            models: Patterns::empty(),
            quotas: Quotas::default(),
        }
    }
}

/// Every tier, lowest first.
#[derive(Clone, Debug)]
pub struct Tiers {
    tiers: Vec<Arc<Tier>>,
}

/// Our format's tier, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTier {
    #[serde(default)]
    allow: Vec<String>,
    #[serde(default)]
    deny: Vec<String>,
    requests: Option<u32>,
    window_secs: Option<u64>,
    concurrent: Option<usize>,
    #[serde(default)]
    llm: RawLlm,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLlm {
    #[serde(default)]
    access: bool,
    #[serde(default)]
    models: Vec<String>,
    tokens_per_request: Option<u64>,
    tokens_per_day: Option<u64>,
    tokens_per_month: Option<u64>,
}

/// The original's tier, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OriginalTier {
    rate_limit_requests: Option<u32>,
    rate_limit_window_seconds: Option<u64>,
    #[serde(default)]
    allowed_capabilities: Vec<String>,
    #[serde(default)]
    llm_access: bool,
    #[serde(default)]
    allowed_llm_models: Vec<String>,
    max_llm_tokens_per_request: Option<u64>,
    max_llm_tokens_per_day: Option<u64>,
    max_llm_tokens_per_month: Option<u64>,
}

impl Tiers {
    /// Reads and compiles the tiers file.
    pub fn load(path: &std::path::Path) -> Result<Tiers, TiersError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|error| TiersError {
            file: file.clone(),
            key: "(file)".to_owned(),
            problem: format!(
                "cannot read it: {error}; install the shipped one (config/licence_tiers.yaml)"
            ),
        })?;
        Tiers::parse(&text, &file)
    }

    /// Parses either format (see the module's documentation).
    pub fn parse(text: &str, file: &str) -> Result<Tiers, TiersError> {
        let error = |key: &str, problem: String| TiersError {
            file: file.to_owned(),
            key: key.to_owned(),
            problem,
        };
        let document: yaml_serde::Value =
            yaml_serde::from_str(text).map_err(|problem| error("(file)", problem.to_string()))?;
        let yaml_serde::Value::Mapping(top) = document else {
            return Err(error(
                "(file)",
                "expected a mapping: tiers: {FREE: {...}, PRO: {...}}".to_owned(),
            ));
        };
        // Ours has one `tiers` key whose values are all mappings; the
        // original's `tiers` (a tier by that name) has scalars and lists.
        let ours = top.len() == 1
            && top.get("tiers").is_some_and(|tiers| {
                tiers
                    .as_mapping()
                    .is_some_and(|tiers| tiers.values().all(yaml_serde::Value::is_mapping))
            });
        let mut tiers = Vec::new();
        let entries = if ours {
            top.get("tiers")
                .and_then(yaml_serde::Value::as_mapping)
                .cloned()
                .unwrap_or_default()
        } else {
            top
        };
        for (name, value) in entries {
            let Some(name) = name.as_str().map(str::to_owned) else {
                return Err(error(
                    "(tier name)",
                    "tier names are strings, e.g. PRO".to_owned(),
                ));
            };
            let key = if ours {
                format!("tiers.{name}")
            } else {
                name.clone()
            };
            let rank = tiers.len();
            let tier = if ours {
                let raw: RawTier = yaml_serde::from_value(value)
                    .map_err(|problem| error(&key, format!("{problem}; the keys are allow, deny, requests, window_secs, concurrent, llm")))?;
                compile(name, rank, raw, file, &key)?
            } else {
                let raw: OriginalTier = yaml_serde::from_value(value).map_err(|problem| {
                    error(&key, format!("{problem}; the original format's keys are rate_limit_requests, rate_limit_window_seconds, allowed_capabilities, llm_access, allowed_llm_models"))
                })?;
                compile(
                    name,
                    rank,
                    RawTier {
                        allow: raw.allowed_capabilities,
                        deny: Vec::new(),
                        requests: raw.rate_limit_requests,
                        window_secs: raw.rate_limit_window_seconds,
                        concurrent: None,
                        llm: RawLlm {
                            access: raw.llm_access,
                            models: raw.allowed_llm_models,
                            tokens_per_request: raw.max_llm_tokens_per_request,
                            tokens_per_day: raw.max_llm_tokens_per_day,
                            tokens_per_month: raw.max_llm_tokens_per_month,
                        },
                    },
                    file,
                    &key,
                )?
            };
            tiers.push(Arc::new(tier));
        }
        if !tiers.iter().any(|tier| tier.name == FREE) {
            // The built-in FREE sits below every tier of the file.
            for (rank, tier) in tiers.iter_mut().enumerate() {
                Arc::make_mut(tier).rank = rank + 1;
            }
            tiers.insert(0, Arc::new(Tier::builtin_free()));
        }
        Ok(Tiers { tiers })
    }

    /// The tier called `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<Tier>> {
        self.tiers.iter().find(|tier| tier.name == name)
    }

    /// FREE (always present).
    pub fn free(&self) -> &Arc<Tier> {
        self.get(FREE).unwrap_or(&self.tiers[0])
    }

    /// The lower of two tiers.
    pub fn lower<'a>(&'a self, a: &'a Arc<Tier>, b: &'a Arc<Tier>) -> &'a Arc<Tier> {
        if a.rank <= b.rank { a } else { b }
    }

    pub fn names(&self) -> Vec<&str> {
        self.tiers.iter().map(|tier| tier.name.as_str()).collect()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<Tier>> {
        self.tiers.iter()
    }
}

fn compile(
    name: String,
    rank: usize,
    raw: RawTier,
    file: &str,
    key: &str,
) -> Result<Tier, TiersError> {
    let problem = |sub: &str, problem: &str| TiersError {
        file: file.to_owned(),
        key: format!("{key}.{sub}"),
        problem: problem.to_owned(),
    };
    let rate = match (raw.requests, raw.window_secs) {
        (None, None) => None,
        (Some(0), _) => {
            return Err(problem(
                "requests",
                "is 0, which allows nothing; leave requests out for no rate limit",
            ));
        }
        (_, Some(0)) => {
            return Err(problem(
                "window_secs",
                "is 0; give the window in seconds, e.g. 60",
            ));
        }
        (Some(requests), window) => Some(Rate {
            requests,
            window: Duration::from_secs(window.unwrap_or(60)),
        }),
        (None, Some(_)) => {
            return Err(problem(
                "requests",
                "is missing while window_secs is set; give both",
            ));
        }
    };
    if raw.concurrent == Some(0) {
        return Err(problem(
            "concurrent",
            "is 0, which allows nothing; give at least 1",
        ));
    }
    let field = |sub: &str| format!("{key}.{sub}");
    Ok(Tier {
        name,
        rank,
        allow: Patterns::new(raw.allow, file, &field("allow"))?,
        deny: Patterns::new(raw.deny, file, &field("deny"))?,
        rate,
        concurrent: raw.concurrent,
        llm_access: raw.llm.access,
        models: Patterns::new(raw.llm.models, file, &field("llm.models"))?,
        quotas: Quotas {
            per_request: raw.llm.tokens_per_request,
            per_day: raw.llm.tokens_per_day,
            per_month: raw.llm.tokens_per_month,
        },
    })
}

/// A summary of a tier for `mcp.licence.check`.
pub fn describe(tier: &Tier) -> BTreeMap<&'static str, serde_json::Value> {
    use serde_json::json;
    let mut map = BTreeMap::new();
    map.insert("name", json!(tier.name));
    map.insert("allow", json!(tier.allow.written()));
    map.insert("deny", json!(tier.deny.written()));
    map.insert(
        "rate",
        match tier.rate {
            Some(rate) => json!({"requests": rate.requests, "window_secs": rate.window.as_secs()}),
            None => serde_json::Value::Null,
        },
    );
    map.insert("concurrent", json!(tier.concurrent));
    map.insert(
        "llm",
        json!({
            "access": tier.llm_access,
            "models": tier.models.written(),
            "tokens_per_request": tier.quotas.per_request,
            "tokens_per_day": tier.quotas.per_day,
            "tokens_per_month": tier.quotas.per_month,
        }),
    );
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    const OURS: &str = r#"
tiers:
  FREE:
    allow: ["mcp.fs.list", "fs_list"]
    requests: 10
    window_secs: 60
  PRO:
    allow: ["mcp.fs.*", "fs_*", "mcp.llm.chat"]
    deny: ["mcp.fs.delete", "fs_delete"]
    concurrent: 8
    llm: {access: true, models: ["local-*"], tokens_per_day: 1000}
"#;

    #[test]
    fn ours_compiles_with_order_and_patterns() {
        let tiers = Tiers::parse(OURS, "t.yaml").unwrap();
        assert_eq!(tiers.names(), ["FREE", "PRO"]);
        let pro = tiers.get("PRO").unwrap();
        assert!(pro.allows(&["mcp.fs.read"]));
        assert!(!pro.allows(&["mcp.fs.delete"]));
        assert!(!pro.allows(&["fs_delete", "mcp.fs.delete"]));
        assert!(!pro.allows(&["mcp.mail.list"]));
        assert!(pro.allows(&["mcp.licence.check"]));
        assert!(pro.allows_model("local-7b"));
        assert!(!pro.allows_model("gpt-4"));
        assert_eq!(pro.quotas.per_day, Some(1000));
        let free = tiers.free();
        assert!(free.allows(&["fs_list"]));
        assert!(!free.allows(&["fs_read"]));
        assert_eq!(tiers.lower(free, pro).name, "FREE");
    }

    #[test]
    fn the_originals_format_loads() {
        let original = r#"
FREE:
  rate_limit_requests: 100
  rate_limit_window_seconds: 3600
  allowed_capabilities: ["mcp.hello", "mcp.fs.list"]
  llm_access: false
  allowed_llm_models: []
PRO:
  rate_limit_requests: 1000
  rate_limit_window_seconds: 3600
  allowed_capabilities: ["mcp.fs.*", "mcp.llm.chat"]
  llm_access: true
  allowed_llm_models: ["*"]
"#;
        let tiers = Tiers::parse(original, "t.yaml").unwrap();
        assert_eq!(tiers.names(), ["FREE", "PRO"]);
        let free = tiers.free();
        assert_eq!(
            free.rate,
            Some(Rate {
                requests: 100,
                window: Duration::from_secs(3600)
            })
        );
        assert!(!free.allows(&["mcp.fs.read"]));
        assert!(tiers.get("PRO").unwrap().allows_model("anything"));
    }

    #[test]
    fn a_file_without_free_gets_the_builtin_one_lowest() {
        let tiers = Tiers::parse("tiers:\n  ELITE: {allow: ['*']}\n", "t.yaml").unwrap();
        assert_eq!(tiers.names(), ["FREE", "ELITE"]);
        assert_eq!(tiers.get("ELITE").unwrap().rank, 1);
        assert!(!tiers.free().allows(&["mcp.fs.read"]));
    }

    #[test]
    fn errors_name_the_key_and_the_fix() {
        let error = Tiers::parse("tiers:\n  PRO: {allow: ['a[']}\n", "t.yaml").unwrap_err();
        assert_eq!(error.key, "tiers.PRO.allow[0]");
        let error = Tiers::parse("tiers:\n  PRO: {alow: []}\n", "t.yaml").unwrap_err();
        assert_eq!(error.key, "tiers.PRO");
        assert!(error.problem.contains("allow, deny"), "{error}");
        let error = Tiers::parse("tiers:\n  PRO: {requests: 0}\n", "t.yaml").unwrap_err();
        assert_eq!(error.key, "tiers.PRO.requests");
    }

    #[test]
    fn the_shipped_file_parses() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../config/licence_tiers.yaml"
        );
        let tiers = Tiers::load(std::path::Path::new(path)).unwrap();
        assert_eq!(tiers.names(), ["FREE", "PRO", "ELITE"]);
        assert!(tiers.get("ELITE").unwrap().allows(&["mcp.mail.send"]));
        assert!(!tiers.free().allows_model("anything"));
    }
}
