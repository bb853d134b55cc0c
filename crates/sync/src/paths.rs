//! What a job may touch. A sync is also a way to send files away, so both
//! ends are confined before anything reaches rclone:
//! - a local path must be absolute and lie beneath a configured local root
//!   once resolved: the part that exists is canonicalised (symbolic links
//!   resolved, so a link out of the root is refused), and what does not
//!   exist yet may hold no `..`;
//! - a remote must be one the config allows (`allowed_remotes`, default all
//!   of rclone's config), named plainly (no `:backend:` definitions, no
//!   `remote,option=…:` connection strings), its path without `..`;
//! - a destination remote must also be in `destination_remotes`.
//!
//! rclone opens local paths by name afterwards, and does not follow
//! symbolic links inside a tree unless told to (`--links`/`-L` are not
//! allowed flags), so what it walks stays beneath the resolved path.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use proto::text::echo;
use serde_json::Value;

/// Why an endpoint or option is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("{role} {value:?}: {why}")]
    Path {
        role: &'static str,
        value: String,
        why: String,
    },
    #[error("unknown remote {name:?} in {role}: {known}")]
    UnknownRemote {
        role: &'static str,
        name: String,
        known: String,
    },
    #[error("{role}: remote {name:?} is not allowed as a destination; {fix}")]
    DestinationDenied {
        role: &'static str,
        name: String,
        fix: String,
    },
    #[error("rclone_args: {0}")]
    Argument(String),
}

impl Refusal {
    /// The error's kind, for clients to match.
    pub fn kind(&self) -> &'static str {
        match self {
            Refusal::Path { .. } => "path_outside",
            Refusal::UnknownRemote { .. } => "unknown_remote",
            Refusal::DestinationDenied { .. } => "destination_denied",
            Refusal::Argument(_) => "argument_refused",
        }
    }
}

/// The rules, resolved from the config and rclone's remotes.
#[derive(Debug, Clone)]
pub struct Confinement {
    pub local_roots: Vec<PathBuf>,
    /// The remotes a job may use.
    pub remotes: Vec<String>,
    pub destination_remotes: Vec<String>,
    pub local_destinations: bool,
}

impl Confinement {
    /// Resolves one end of a job into rclone's spelling.
    pub fn endpoint(
        &self,
        role: &'static str,
        value: &str,
        destination: bool,
    ) -> Result<String, Refusal> {
        let refuse = |why: &str| Refusal::Path {
            role,
            value: echo(value).into_owned(),
            why: why.to_owned(),
        };
        if value.starts_with('/') {
            if destination && !self.local_destinations {
                return Err(refuse(
                    "local directories are not allowed as destinations (local_destinations: false in sync.yaml)",
                ));
            }
            return self.local(value).map_err(|why| refuse(&why));
        }
        let Some((name, path)) = value.split_once(':') else {
            return Err(refuse(
                "a local path must be absolute (\"/…\"), a remote path is \"remote:path\"",
            ));
        };
        if name.is_empty() || name.contains(',') || name.contains('/') {
            return Err(refuse(
                "only remotes of the rclone config are allowed (no \":backend:\" definitions or connection strings)",
            ));
        }
        if !self.remotes.iter().any(|known| known == name) {
            return Err(Refusal::UnknownRemote {
                role,
                name: echo(name).into_owned(),
                known: if self.remotes.is_empty() {
                    "no remote is configured or allowed".to_owned()
                } else {
                    format!("the allowed remotes are {}", self.remotes.join(", "))
                },
            });
        }
        if path.split('/').any(|part| part == "..") {
            return Err(refuse("\"..\" is not allowed in a remote path"));
        }
        if destination && !self.destination_remotes.iter().any(|known| known == name) {
            return Err(Refusal::DestinationDenied {
                role,
                name: echo(name).into_owned(),
                fix: "add it to destination_remotes in sync.yaml to allow writing to it".to_owned(),
            });
        }
        Ok(value.to_owned())
    }

    fn local(&self, value: &str) -> Result<String, String> {
        let path = Path::new(value);
        let mut existing = path.to_path_buf();
        let mut rest: Vec<std::ffi::OsString> = Vec::new();
        let canonical = loop {
            match std::fs::canonicalize(&existing) {
                Ok(canonical) => break canonical,
                Err(_) => {
                    let Some(name) = existing.file_name() else {
                        return Err("cannot be resolved".to_owned());
                    };
                    rest.push(name.to_owned());
                    if !existing.pop() {
                        return Err("cannot be resolved".to_owned());
                    }
                }
            }
        };
        // `file_name` skips `..` and `.`: look at what was not resolved.
        let unresolved = path.strip_prefix(&existing).unwrap_or(path);
        if unresolved
            .components()
            .any(|component| !matches!(component, Component::Normal(_)))
        {
            return Err("\"..\" is not allowed where the path does not exist yet".to_owned());
        }
        let mut resolved = canonical;
        for name in rest.iter().rev() {
            resolved.push(name);
        }
        if !self
            .local_roots
            .iter()
            .any(|root| resolved.starts_with(root))
        {
            let roots: Vec<String> = self
                .local_roots
                .iter()
                .map(|root| root.display().to_string())
                .collect();
            return Err(format!(
                "is outside the local roots a job may use ({}); symbolic links out of them are refused too",
                roots.join(", ")
            ));
        }
        resolved
            .into_os_string()
            .into_string()
            .map_err(|_| "is not valid UTF-8".to_owned())
    }
}

/// What the original's `rclone_args` may carry: harmless flags that map
/// onto rclone options of one job (`_config` keys), filters, or the
/// bandwidth limit. Never `--config`, `--rc*`, backend options or anything
/// that runs a command: everything not listed here is refused.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Arguments {
    pub options: BTreeMap<String, Value>,
    pub include: Vec<String>,
    pub exclude: Vec<String>,
    pub bandwidth_limit: Option<String>,
    pub dry_run: bool,
}

const SWITCHES: [(&str, &str); 8] = [
    ("--checksum", "CheckSum"),
    ("-c", "CheckSum"),
    ("--size-only", "SizeOnly"),
    ("--ignore-existing", "IgnoreExisting"),
    ("--update", "UpdateOlder"),
    ("-u", "UpdateOlder"),
    ("--ignore-times", "IgnoreTimes"),
    ("--no-update-modtime", "NoUpdateModTime"),
];
const NUMBERS: [(&str, &str); 2] = [("--transfers", "Transfers"), ("--checkers", "Checkers")];

pub fn parse_arguments(arguments: &[String]) -> Result<Arguments, Refusal> {
    let mut parsed = Arguments::default();
    let mut words = arguments.iter();
    while let Some(word) = words.next() {
        let (flag, inline) = match word.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => (flag, Some(value.to_owned())),
            _ => (word.as_str(), None),
        };
        if let Some((_, key)) = SWITCHES.iter().find(|(name, _)| *name == flag) {
            if inline.is_some() {
                return Err(Refusal::Argument(format!("{flag} takes no value")));
            }
            parsed.options.insert((*key).to_owned(), Value::Bool(true));
            continue;
        }
        if matches!(flag, "--dry-run" | "-n") {
            parsed.dry_run = true;
            continue;
        }
        if matches!(flag, "-v" | "-vv" | "--verbose" | "-P" | "--progress") {
            // Output flags: the server reports progress itself.
            continue;
        }
        let mut value = || {
            inline
                .clone()
                .or_else(|| words.next().cloned())
                .ok_or_else(|| Refusal::Argument(format!("{flag} needs a value")))
        };
        if let Some((_, key)) = NUMBERS.iter().find(|(name, _)| *name == flag) {
            let text = value()?;
            let number: u64 = text
                .parse()
                .ok()
                .filter(|number| (1..=64).contains(number))
                .ok_or_else(|| Refusal::Argument(format!("{flag} takes a number from 1 to 64")))?;
            parsed
                .options
                .insert((*key).to_owned(), Value::from(number));
            continue;
        }
        match flag {
            "--include" => parsed.include.push(value()?),
            "--exclude" => parsed.exclude.push(value()?),
            "--bwlimit" => parsed.bandwidth_limit = Some(value()?),
            _ => {
                return Err(Refusal::Argument(format!(
                    "{:?} is not an allowed flag; allowed: --checksum, --size-only, --ignore-existing, --update, --ignore-times, --no-update-modtime, --transfers N, --checkers N, --dry-run, --include P, --exclude P, --bwlimit RATE",
                    echo(flag)
                )));
            }
        }
    }
    Ok(parsed)
}

/// A bandwidth limit as rclone reads one: `off`, or a number with an
/// optional unit (`512K`, `10M`, `1.5G`), optionally `UP:DOWN`.
pub fn valid_bandwidth(limit: &str) -> bool {
    let one = |part: &str| {
        part == "off"
            || (!part.is_empty()
                && part.len() <= 16
                && part
                    .trim_end_matches(['B', 'K', 'M', 'G', 'T', 'P', 'k', 'i'])
                    .parse::<f64>()
                    .is_ok_and(|number| number >= 0.0))
    };
    match limit.split_once(':') {
        Some((up, down)) => one(up) && one(down),
        None => one(limit),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_confined() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = std::fs::canonicalize(dir.path())
            .expect("root")
            .join("root");
        std::fs::create_dir_all(root.join("inside")).expect("mkdir");
        let outside = std::fs::canonicalize(dir.path())
            .expect("dir")
            .join("outside");
        std::fs::create_dir_all(&outside).expect("mkdir");
        std::os::unix::fs::symlink(&outside, root.join("link")).expect("symlink");
        let rules = Confinement {
            local_roots: vec![root.clone()],
            remotes: vec!["backup".to_owned(), "vault".to_owned()],
            destination_remotes: vec!["vault".to_owned()],
            local_destinations: true,
        };
        let r = root.display().to_string();
        let cases: Vec<(String, bool, Result<String, &str>)> = vec![
            (format!("{r}/inside"), false, Ok(format!("{r}/inside"))),
            (
                format!("{r}/new/deeper"),
                true,
                Ok(format!("{r}/new/deeper")),
            ),
            (
                format!("{r}/inside/../inside"),
                false,
                Ok(format!("{r}/inside")),
            ),
            (format!("{r}/../outside"), false, Err("path_outside")),
            (format!("{r}/new/../../outside"), true, Err("path_outside")),
            (format!("{r}/link"), false, Err("path_outside")),
            (format!("{r}/link/new"), true, Err("path_outside")),
            ("/etc".to_owned(), false, Err("path_outside")),
            ("relative/path".to_owned(), false, Err("path_outside")),
            (
                "backup:photos".to_owned(),
                false,
                Ok("backup:photos".to_owned()),
            ),
            ("backup:photos".to_owned(), true, Err("destination_denied")),
            ("vault:".to_owned(), true, Ok("vault:".to_owned())),
            ("vault:a/../../b".to_owned(), true, Err("path_outside")),
            ("nowhere:x".to_owned(), false, Err("unknown_remote")),
            (":local:/etc".to_owned(), false, Err("path_outside")),
            (
                "backup,type=local:/etc".to_owned(),
                false,
                Err("path_outside"),
            ),
        ];
        for (value, destination, expected) in cases {
            let got = rules
                .endpoint("source", &value, destination)
                .map_err(|refusal| refusal.kind());
            assert_eq!(got, expected, "{value} (destination: {destination})");
        }
    }

    #[test]
    fn only_harmless_flags_pass() {
        let words = |text: &str| {
            text.split_whitespace()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        };
        let parsed = parse_arguments(&words(
            "--checksum --transfers 4 --exclude *.tmp --include=*.md --bwlimit 1M -v --dry-run",
        ))
        .expect("allowed");
        assert_eq!(parsed.options.get("CheckSum"), Some(&Value::Bool(true)));
        assert_eq!(parsed.options.get("Transfers"), Some(&Value::from(4)));
        assert_eq!(parsed.exclude, ["*.tmp"]);
        assert_eq!(parsed.include, ["*.md"]);
        assert_eq!(parsed.bandwidth_limit.as_deref(), Some("1M"));
        assert!(parsed.dry_run);
        for refused in [
            "--config /tmp/x",
            "--rc-addr :1",
            "--rc",
            "--s3-provider AWS",
            "--password-command id",
            "--transfers 1000",
            "--links",
            "-L",
            "--checksum=yes",
            "--include",
        ] {
            assert!(parse_arguments(&words(refused)).is_err(), "{refused}");
        }
        assert!(valid_bandwidth("10M") && valid_bandwidth("off") && valid_bandwidth("1.5M:2M"));
        assert!(!valid_bandwidth("fast") && !valid_bandwidth("") && !valid_bandwidth("10M;x"));
    }
}
