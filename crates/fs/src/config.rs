//! Configuration, in two stages: [`FileConfig`] is `fs.yaml` as written
//! (unknown keys refused, errors naming the file and the key), then
//! [`Config::resolve`] applies the environment overrides, checks the root
//! and builds the runtime [`Policy`].

use std::path::{Path, PathBuf};

use globset::{Glob, GlobSetBuilder};
use serde::Deserialize;

use crate::ops::{DEFAULT_GREP_MAX_LINE_BYTES, Policy};

/// Where the packaged configuration lives.
pub const DEFAULT_PATH: &str = "/etc/llmbasedos/fs.yaml";
/// Overrides the root (used by `llmbasedos up`).
pub const ROOT_VARIABLE: &str = "LLMBASEDOS_FS_ROOT";
/// Overrides read-only mode: `true`/`false`, `1`/`0`, `yes`/`no`.
pub const READ_ONLY_VARIABLE: &str = "LLMBASEDOS_FS_READ_ONLY";
/// Overrides where the semantic index lives.
pub const INDEX_DIR_VARIABLE: &str = "LLMBASEDOS_FS_INDEX_DIR";
/// Overrides where the embedding model lives.
pub const MODEL_DIR_VARIABLE: &str = "LLMBASEDOS_FS_MODEL_DIR";
/// Overrides the model's precision (`fp32` or `int8`).
pub const MODEL_PRECISION_VARIABLE: &str = "LLMBASEDOS_FS_MODEL_PRECISION";
/// Overrides watch mode.
pub const WATCH_VARIABLE: &str = "LLMBASEDOS_FS_WATCH";
/// The index's home when neither fs.yaml nor `$STATE_DIRECTORY` says.
pub const DEFAULT_INDEX_DIR: &str = "/var/lib/llmbasedos/fs";
/// Where the model package installs the model.
pub const DEFAULT_MODEL_DIR: &str = "/usr/share/llmbasedos/models/all-MiniLM-L6-v2";

/// Default read limit: 8 MiB, whose base64 still fits a 16 MiB message.
pub const DEFAULT_MAX_READ_BYTES: u64 = 8 * 1024 * 1024;
/// Largest read limit accepted: a read's answer must fit one message of
/// the backend wire (`proto::DEFAULT_MAX_MESSAGE`). Its content takes at
/// most the base64 of the limit as JSON (`ops::read::json_budget`: text
/// that escapes past it goes as base64), 14.7 MiB for 11 MiB, which leaves
/// room for the rest of the answer. The gateway bounds its answers by
/// `proto::mcp::CallToolResult::size_bound` of that message, so the
/// largest read reaches a host on every transport (tests/e2e/test_largest_read.py).
pub const MAX_MAX_READ_BYTES: u64 = 11 * 1024 * 1024;
/// The range of `grep_max_line_bytes`: at least a screenful, at most what
/// a few searches at once can hold without threatening the machine.
pub const GREP_LINE_BYTES_RANGE: std::ops::RangeInclusive<usize> = 4096..=256 * 1024 * 1024;
/// Most heavy operations at once that the configuration may ask for.
pub const MAX_MAX_HEAVY_OPERATIONS: usize = 64;

/// `fs.yaml` as written. Every key is optional.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// The directory shown to clients as `/`. Default: `$HOME`.
    pub root: Option<PathBuf>,
    pub read_only: Option<bool>,
    pub max_read_bytes: Option<u64>,
    pub allow_hard_links: Option<bool>,
    pub show_hidden: Option<bool>,
    /// Glob patterns of names or root-relative paths that walks skip.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Where the semantic index is kept. Default: `$STATE_DIRECTORY`, else
    /// /var/lib/llmbasedos/fs.
    pub index_dir: Option<PathBuf>,
    /// Where model.onnx and tokenizer.json are. Default:
    /// /usr/share/llmbasedos/models/all-MiniLM-L6-v2.
    pub model_dir: Option<PathBuf>,
    /// Which build of the model embeds: `fp32` (model.onnx) or `int8`
    /// (model-int8.onnx). Default: [`semantic::Precision::default`].
    pub model_precision: Option<semantic::Precision>,
    /// Keep the index fresh as files change (inotify).
    pub watch: Option<bool>,
    /// Longest line grep searches; a file with a longer line is skipped
    /// from there (and reported). Default 4 MiB.
    pub grep_max_line_bytes: Option<usize>,
    /// How many heavy operations (grep, glob, tree, list, copy, delete,
    /// read_many, resources_list, search) run at once; more wait their
    /// turn. Default: the number of CPUs, at least 2 and at most 4.
    pub max_heavy_operations: Option<usize>,
}

/// Why the configuration cannot be used. Messages name the file or the
/// variable, the key, and the fix.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(String);

impl FileConfig {
    /// Parses `fs.yaml` text; `origin` names the file in errors.
    pub fn parse(text: &str, origin: &str) -> Result<FileConfig, ConfigError> {
        // A file of comments only is an empty configuration.
        let value: yaml_serde::Value = yaml_serde::from_str(text)
            .map_err(|error| ConfigError(format!("{origin}: not valid YAML: {error}")))?;
        if value.is_null() {
            return Ok(FileConfig::default());
        }
        // yaml_serde's messages start with the key at fault and end with
        // the line and column.
        yaml_serde::from_str(text).map_err(|error| ConfigError(format!("{origin}: {error}")))
    }

    /// Reads the file. A missing file at the default path means defaults;
    /// a missing file that was asked for explicitly is an error.
    pub fn load(path: &Path, explicit: bool) -> Result<FileConfig, ConfigError> {
        let origin = path.display().to_string();
        match std::fs::read_to_string(path) {
            Ok(text) => FileConfig::parse(&text, &origin),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound && !explicit => {
                Ok(FileConfig::default())
            }
            Err(error) => Err(ConfigError(format!("{origin}: cannot read it: {error}"))),
        }
    }
}

/// The runtime configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// The root directory, as a host path (used once, to open it).
    pub root: PathBuf,
    pub policy: Policy,
    pub semantic: SemanticConfig,
    /// Heavy operations running at once (the rest queue).
    pub max_heavy_operations: usize,
}

/// The default of `max_heavy_operations`: one per CPU, at least 2 (so one
/// long walk does not hold everything up) and at most 4 (each holds up to
/// `grep_max_line_bytes` and [`crate::ops::walk::DEPTH_LIMIT`] directory
/// descriptors).
pub fn default_heavy_operations() -> usize {
    std::thread::available_parallelism().map_or(2, |cpus| cpus.get().clamp(2, 4))
}

/// Where semantic search keeps its index and finds its model. Nothing is
/// opened at start-up: the model loads on first use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SemanticConfig {
    /// The root as a host path: watch mode registers inotify watches on
    /// it (files are still read only through the root handle).
    pub host_root: PathBuf,
    pub index_dir: PathBuf,
    pub model_dir: PathBuf,
    /// Which model file of `model_dir` embeds; the index re-embeds what
    /// another precision embedded.
    pub model_precision: semantic::Precision,
    /// ONNX Runtime's library (`ORT_DYLIB_PATH`, else Arch's location).
    pub runtime: PathBuf,
    pub watch: bool,
}

impl Config {
    /// Applies the environment (`variable` looks one up) and checks every value.
    pub fn resolve(
        file: FileConfig,
        origin: &str,
        variable: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let (root, root_source) = match (variable(ROOT_VARIABLE), file.root) {
            (Some(root), _) if !root.is_empty() => (PathBuf::from(root), ROOT_VARIABLE.to_owned()),
            (_, Some(root)) => (root, format!("root in {origin}")),
            (_, None) => match variable("HOME") {
                Some(home) if !home.is_empty() => (
                    PathBuf::from(home),
                    format!("$HOME, since {origin} sets no root"),
                ),
                _ => {
                    return Err(ConfigError(format!(
                        "no root directory: {origin} sets no root and $HOME is not set; set root in {origin} or {ROOT_VARIABLE}"
                    )));
                }
            },
        };
        if !root.is_absolute() {
            return Err(ConfigError(format!(
                "the root {} (from {root_source}) is not an absolute path; give the full path",
                root.display()
            )));
        }
        match std::fs::metadata(&root) {
            Ok(metadata) if metadata.is_dir() => {}
            Ok(_) => {
                return Err(ConfigError(format!(
                    "the root {} (from {root_source}) is not a directory; point it at a directory",
                    root.display()
                )));
            }
            Err(error) => {
                return Err(ConfigError(format!(
                    "the root {} (from {root_source}) cannot be used: {error}; create the directory or point the root at an existing one",
                    root.display()
                )));
            }
        }
        let read_only = match variable(READ_ONLY_VARIABLE) {
            Some(value) => parse_bool(&value).ok_or_else(|| {
                ConfigError(format!(
                    "{READ_ONLY_VARIABLE}={value:?} is not a boolean; use true or false"
                ))
            })?,
            None => file.read_only.unwrap_or(false),
        };
        let max_read_bytes = file.max_read_bytes.unwrap_or(DEFAULT_MAX_READ_BYTES);
        if max_read_bytes == 0 || max_read_bytes > MAX_MAX_READ_BYTES {
            return Err(ConfigError(format!(
                "{origin}: max_read_bytes: {max_read_bytes} is out of range; use 1 to {MAX_MAX_READ_BYTES} (a read must fit one 16 MiB message, base64 included)"
            )));
        }
        let mut exclude = GlobSetBuilder::new();
        for (index, pattern) in file.exclude.iter().enumerate() {
            let glob = Glob::new(pattern).map_err(|error| {
                ConfigError(format!(
                    "{origin}: exclude[{index}]: {pattern:?} is not a valid glob pattern: {error}"
                ))
            })?;
            exclude.add(glob);
        }
        let exclude = exclude
            .build()
            .map_err(|error| ConfigError(format!("{origin}: exclude: {error}")))?;
        let absolute = |path: PathBuf, source: String| {
            if path.is_absolute() {
                Ok(path)
            } else {
                Err(ConfigError(format!(
                    "{} (from {source}) is not an absolute path; give the full path",
                    path.display()
                )))
            }
        };
        let index_dir = match (variable(INDEX_DIR_VARIABLE), file.index_dir) {
            (Some(dir), _) if !dir.is_empty() => {
                absolute(PathBuf::from(dir), INDEX_DIR_VARIABLE.to_owned())?
            }
            (_, Some(dir)) => absolute(dir, format!("index_dir in {origin}"))?,
            // systemd's StateDirectory= may list several, colon-separated.
            _ => match variable("STATE_DIRECTORY")
                .and_then(|dirs| dirs.split(':').next().map(str::to_owned))
            {
                Some(dir) if !dir.is_empty() => {
                    absolute(PathBuf::from(dir), "$STATE_DIRECTORY".to_owned())?
                }
                _ => PathBuf::from(DEFAULT_INDEX_DIR),
            },
        };
        let model_dir = match (variable(MODEL_DIR_VARIABLE), file.model_dir) {
            (Some(dir), _) if !dir.is_empty() => {
                absolute(PathBuf::from(dir), MODEL_DIR_VARIABLE.to_owned())?
            }
            (_, Some(dir)) => absolute(dir, format!("model_dir in {origin}"))?,
            _ => PathBuf::from(DEFAULT_MODEL_DIR),
        };
        let model_precision = match variable(MODEL_PRECISION_VARIABLE) {
            Some(name) if !name.is_empty() => semantic::Precision::from_name(name.trim())
                .ok_or_else(|| {
                    ConfigError(format!(
                        "{MODEL_PRECISION_VARIABLE}={name:?} is not a model precision; use fp32 or int8"
                    ))
                })?,
            _ => file.model_precision.unwrap_or_default(),
        };
        let runtime = match variable(semantic::embed::RUNTIME_VARIABLE) {
            Some(path) if !path.is_empty() => PathBuf::from(path),
            _ => PathBuf::from(semantic::embed::DEFAULT_RUNTIME),
        };
        let watch = match variable(WATCH_VARIABLE) {
            Some(value) => parse_bool(&value).ok_or_else(|| {
                ConfigError(format!(
                    "{WATCH_VARIABLE}={value:?} is not a boolean; use true or false"
                ))
            })?,
            None => file.watch.unwrap_or(false),
        };
        let grep_max_line_bytes = file
            .grep_max_line_bytes
            .unwrap_or(DEFAULT_GREP_MAX_LINE_BYTES);
        if !GREP_LINE_BYTES_RANGE.contains(&grep_max_line_bytes) {
            return Err(ConfigError(format!(
                "{origin}: grep_max_line_bytes: {grep_max_line_bytes} is out of range; use {} to {}",
                GREP_LINE_BYTES_RANGE.start(),
                GREP_LINE_BYTES_RANGE.end()
            )));
        }
        let max_heavy_operations = file
            .max_heavy_operations
            .unwrap_or_else(default_heavy_operations);
        if max_heavy_operations == 0 || max_heavy_operations > MAX_MAX_HEAVY_OPERATIONS {
            return Err(ConfigError(format!(
                "{origin}: max_heavy_operations: {max_heavy_operations} is out of range; use 1 to {MAX_MAX_HEAVY_OPERATIONS}"
            )));
        }
        let host_root = root.clone();
        Ok(Config {
            root,
            max_heavy_operations,
            semantic: SemanticConfig {
                host_root,
                index_dir,
                model_dir,
                model_precision,
                runtime,
                watch,
            },
            policy: Policy {
                read_only,
                max_read_bytes,
                allow_hard_links: file.allow_hard_links.unwrap_or(false),
                show_hidden: file.show_hidden.unwrap_or(true),
                exclude,
                grep_max_line_bytes,
            },
        })
    }

    /// Loads the file at `path` (or the default path) and resolves it with
    /// the process environment.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let (path, explicit) = match path {
            Some(path) => (path, true),
            None => (Path::new(DEFAULT_PATH), false),
        };
        let file = FileConfig::load(path, explicit)?;
        Config::resolve(file, &path.display().to_string(), |name| {
            std::env::var(name).ok()
        })
    }
}

fn parse_bool(value: &str) -> Option<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" | "" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The default file shipped for /etc/llmbasedos must parse and resolve.
    #[test]
    fn the_shipped_file_parses() {
        let text = include_str!("../../../config/fs.yaml");
        let file = FileConfig::parse(text, "config/fs.yaml").expect("the shipped file parses");
        let home = tempfile::tempdir().expect("temp dir");
        let home_text = home.path().display().to_string();
        let config = Config::resolve(file, "config/fs.yaml", |name| {
            (name == "HOME").then(|| home_text.clone())
        })
        .expect("the shipped file resolves");
        assert_eq!(config.root, home.path());
        assert!(!config.policy.read_only);
        assert!(!config.policy.allow_hard_links);
        assert_eq!(config.policy.max_read_bytes, DEFAULT_MAX_READ_BYTES);
        assert_eq!(config.semantic.index_dir, Path::new(DEFAULT_INDEX_DIR));
        assert_eq!(config.semantic.model_dir, Path::new(DEFAULT_MODEL_DIR));
        assert_eq!(
            config.semantic.model_precision,
            semantic::Precision::default()
        );
        assert!(!config.semantic.watch);
        assert_eq!(
            config.policy.grep_max_line_bytes,
            DEFAULT_GREP_MAX_LINE_BYTES
        );
        assert_eq!(config.max_heavy_operations, default_heavy_operations());
    }

    #[test]
    fn semantic_directories_come_from_file_state_directory_and_variables() {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path().display().to_string();
        let file = |text: &str| FileConfig::parse(text, "fs.yaml").expect(text);
        let resolve = |text: &str, variables: &[(&str, &str)]| {
            let variables: Vec<(String, String)> = variables
                .iter()
                .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
                .collect();
            Config::resolve(file(&format!("root: {root}\n{text}")), "fs.yaml", |name| {
                variables
                    .iter()
                    .find(|(key, _)| key == name)
                    .map(|(_, value)| value.clone())
            })
        };
        let semantic =
            |text: &str, variables: &[(&str, &str)]| resolve(text, variables).expect(text).semantic;
        assert_eq!(
            semantic("", &[("STATE_DIRECTORY", "/var/lib/a:/var/lib/b")]).index_dir,
            Path::new("/var/lib/a")
        );
        let from_file = semantic(
            "index_dir: /srv/index\nmodel_dir: /srv/model\nmodel_precision: int8\nwatch: true",
            &[("STATE_DIRECTORY", "/var/lib/a")],
        );
        assert_eq!(from_file.index_dir, Path::new("/srv/index"));
        assert_eq!(from_file.model_dir, Path::new("/srv/model"));
        assert_eq!(from_file.model_precision, semantic::Precision::Int8);
        for (text, variables, expected) in [
            ("model_precision: fp32", &[][..], semantic::Precision::Fp32),
            ("model_precision: int8", &[][..], semantic::Precision::Int8),
            (
                "model_precision: int8",
                &[(MODEL_PRECISION_VARIABLE, "fp32")][..],
                semantic::Precision::Fp32,
            ),
            (
                "",
                &[(MODEL_PRECISION_VARIABLE, "int8")][..],
                semantic::Precision::Int8,
            ),
        ] {
            assert_eq!(
                semantic(text, variables).model_precision,
                expected,
                "{text} {variables:?}"
            );
        }
        let bad_precision = resolve("", &[(MODEL_PRECISION_VARIABLE, "int4")])
            .expect_err("bad precision")
            .to_string();
        assert!(
            bad_precision.contains(
                "LLMBASEDOS_FS_MODEL_PRECISION=\"int4\" is not a model precision; use fp32 or int8"
            ),
            "{bad_precision}"
        );
        assert!(from_file.watch);
        let from_variables = semantic(
            "index_dir: /srv/index\nmodel_dir: /srv/model",
            &[
                (INDEX_DIR_VARIABLE, "/tmp/index"),
                (MODEL_DIR_VARIABLE, "/tmp/model"),
                ("ORT_DYLIB_PATH", "/tmp/libonnxruntime.so"),
                (WATCH_VARIABLE, "yes"),
            ],
        );
        assert_eq!(from_variables.index_dir, Path::new("/tmp/index"));
        assert_eq!(from_variables.model_dir, Path::new("/tmp/model"));
        assert_eq!(from_variables.runtime, Path::new("/tmp/libonnxruntime.so"));
        assert!(from_variables.watch);
        let relative = resolve("index_dir: index", &[])
            .expect_err("relative")
            .to_string();
        assert!(
            relative.contains("index (from index_dir in fs.yaml) is not an absolute path"),
            "{relative}"
        );
        let bad_watch = resolve("", &[(WATCH_VARIABLE, "often")])
            .expect_err("bad bool")
            .to_string();
        assert!(bad_watch.contains("LLMBASEDOS_FS_WATCH"), "{bad_watch}");
    }

    #[test]
    fn bad_files_are_refused_naming_file_and_key() {
        let cases = [
            ("root: [1, 2]", "fs.yaml: root: invalid type"),
            ("rot: /srv", "fs.yaml: unknown field `rot`"),
            ("read_only: maybe", "fs.yaml: read_only: invalid type"),
            (
                "max_read_bytes: -1",
                "fs.yaml: max_read_bytes: invalid type",
            ),
            ("exclude: {a: 1}", "fs.yaml: exclude: invalid type"),
            (
                "model_precision: int4",
                "fs.yaml: model_precision: unknown variant `int4`, expected `fp32` or `int8` at line 1",
            ),
            ("root: [", "fs.yaml: not valid YAML"),
        ];
        for (text, expected) in cases {
            let error = FileConfig::parse(text, "fs.yaml")
                .expect_err(text)
                .to_string();
            assert!(error.starts_with(expected), "{text}: {error}");
        }
        assert!(FileConfig::parse("# nothing\n", "fs.yaml").is_ok());
    }

    #[test]
    fn resolution_checks_values_and_applies_overrides() {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path().display().to_string();
        let file = |text: &str| FileConfig::parse(text, "fs.yaml").expect(text);
        let no_env = |_: &str| None;

        let missing = Config::resolve(
            file("root: /nonexistent/llmbasedos-root"),
            "fs.yaml",
            no_env,
        )
        .expect_err("missing root")
        .to_string();
        assert!(
            missing.contains("/nonexistent/llmbasedos-root (from root in fs.yaml) cannot be used"),
            "{missing}"
        );
        let relative = Config::resolve(file("root: data"), "fs.yaml", no_env)
            .expect_err("relative root")
            .to_string();
        assert!(relative.contains("not an absolute path"), "{relative}");
        let bad_glob = Config::resolve(
            file(&format!("root: {root}\nexclude: ['a[']")),
            "fs.yaml",
            no_env,
        )
        .expect_err("bad glob")
        .to_string();
        assert!(bad_glob.contains("fs.yaml: exclude[0]"), "{bad_glob}");
        let too_big = Config::resolve(
            file(&format!("root: {root}\nmax_read_bytes: 999999999")),
            "fs.yaml",
            no_env,
        )
        .expect_err("too big")
        .to_string();
        assert!(too_big.contains("fs.yaml: max_read_bytes"), "{too_big}");
        for (text, expected) in [
            (
                "grep_max_line_bytes: 10",
                "fs.yaml: grep_max_line_bytes: 10 is out of range",
            ),
            (
                "max_heavy_operations: 0",
                "fs.yaml: max_heavy_operations: 0 is out of range",
            ),
            ("max_heavy_operations: 1000", "use 1 to 64"),
        ] {
            let error = Config::resolve(file(&format!("root: {root}\n{text}")), "fs.yaml", no_env)
                .expect_err(text)
                .to_string();
            assert!(error.contains(expected), "{text}: {error}");
        }
        let limits = Config::resolve(
            file(&format!(
                "root: {root}\ngrep_max_line_bytes: 65536\nmax_heavy_operations: 1"
            )),
            "fs.yaml",
            no_env,
        )
        .expect("limits resolve");
        assert_eq!(limits.policy.grep_max_line_bytes, 65536);
        assert_eq!(limits.max_heavy_operations, 1);
        let no_home = Config::resolve(file(""), "fs.yaml", no_env)
            .expect_err("no home")
            .to_string();
        assert!(no_home.contains("$HOME is not set"), "{no_home}");

        let overridden = Config::resolve(
            file("root: /nonexistent\nread_only: false"),
            "fs.yaml",
            |name| match name {
                ROOT_VARIABLE => Some(root.clone()),
                READ_ONLY_VARIABLE => Some("yes".to_owned()),
                _ => None,
            },
        )
        .expect("overrides apply");
        assert_eq!(overridden.root, dir.path());
        assert!(overridden.policy.read_only);
        let bad_bool = Config::resolve(file(""), "fs.yaml", |name| match name {
            ROOT_VARIABLE => Some(root.clone()),
            READ_ONLY_VARIABLE => Some("perhaps".to_owned()),
            _ => None,
        })
        .expect_err("bad bool")
        .to_string();
        assert!(bad_bool.contains("LLMBASEDOS_FS_READ_ONLY"), "{bad_bool}");
    }
}
