//! Configuration, in two stages: [`FileConfig`] is `sync.yaml` as written
//! and [`JobsFile`] is `sync_jobs.yaml` as written (unknown keys refused,
//! errors naming the file and the key), then [`Config::resolve`] fills in
//! the defaults and checks what can be checked before rclone runs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Where the packaged configuration lives.
pub const DEFAULT_PATH: &str = "/etc/llmbasedos/sync.yaml";
/// Where the named jobs live unless `sync.yaml` says otherwise.
pub const DEFAULT_JOBS_PATH: &str = "/etc/llmbasedos/sync_jobs.yaml";
/// The history's home when neither sync.yaml nor `$STATE_DIRECTORY` says.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/llmbasedos/sync";

/// `sync.yaml` as written. Every key is optional.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(default)]
    pub rclone: RcloneFile,
    /// Local directories a job may read or write beneath. Default: `$HOME`.
    #[serde(default)]
    pub local_roots: Vec<PathBuf>,
    /// Remotes of the rclone config a job may use. Default: all of them.
    pub allowed_remotes: Option<Vec<String>>,
    /// Remotes a job may write to (sync, copy and move destinations).
    /// Default: none, so that nothing is sent away unless configured.
    #[serde(default)]
    pub destination_remotes: Vec<String>,
    /// Whether local directories (beneath `local_roots`) may be destinations.
    pub local_destinations: Option<bool>,
    #[serde(default)]
    pub history: HistoryFile,
    /// The named jobs. Default: /etc/llmbasedos/sync_jobs.yaml (a missing
    /// default file means no named jobs).
    pub jobs_file: Option<PathBuf>,
    /// Where the history database lives. Default: `$STATE_DIRECTORY`, else
    /// /var/lib/llmbasedos/sync.
    pub state_dir: Option<PathBuf>,
    /// Run the named jobs' schedules in the server itself (`llmbasedos up`);
    /// under systemd the packaged timer template does it.
    pub scheduler: Option<bool>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RcloneFile {
    /// The rclone binary. Default: `rclone` from `PATH`.
    pub binary: Option<PathBuf>,
    /// The rclone config file. Default: rclone's own
    /// (`$HOME/.config/rclone/rclone.conf` of the service user).
    pub config: Option<PathBuf>,
    /// rclone's log level (`ERROR`, `NOTICE`, `INFO`, `DEBUG`). Default NOTICE.
    pub log_level: Option<String>,
    /// A proxy for rclone's connections (`HTTPS_PROXY`/`HTTP_PROXY`); none
    /// is inherited from the server's environment.
    pub proxy: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryFile {
    /// Finished jobs older than this many days are pruned. Default 90.
    pub max_age_days: Option<u64>,
    /// At most this many finished jobs are kept. Default 1000.
    pub max_jobs: Option<usize>,
}

/// `sync_jobs.yaml` as written.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobsFile {
    #[serde(default)]
    pub jobs: BTreeMap<String, NamedJob>,
}

/// One named job: what `runJob {job: name}` runs.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NamedJob {
    pub source: String,
    pub destination: String,
    #[serde(default)]
    pub mode: Mode,
    #[serde(default)]
    pub dry_run: bool,
    #[serde(default)]
    pub filters: Filters,
    pub bandwidth_limit: Option<String>,
    /// `hourly`, `daily`, `weekly`, or `every <N>s|m|h|d`: the server's own
    /// scheduler under `llmbasedos up`; under systemd the timer
    /// `llmbasedos-sync-job@<name>.timer` runs it.
    pub schedule: Option<String>,
}

/// What a job does.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Sync,
    Copy,
    Move,
    Check,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Sync => "sync",
            Mode::Copy => "copy",
            Mode::Move => "move",
            Mode::Check => "check",
        }
    }
}

/// Include and exclude patterns (rclone's filter syntax).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Filters {
    #[serde(default)]
    pub include: Vec<String>,
    #[serde(default)]
    pub exclude: Vec<String>,
}

/// The resolved configuration the server runs with.
#[derive(Clone, Debug)]
pub struct Config {
    pub rclone_binary: PathBuf,
    pub rclone_config: Option<PathBuf>,
    pub rclone_log_level: String,
    pub proxy: Option<String>,
    /// Canonical local roots.
    pub local_roots: Vec<PathBuf>,
    pub allowed_remotes: Option<Vec<String>>,
    pub destination_remotes: Vec<String>,
    pub local_destinations: bool,
    pub max_age: Duration,
    pub max_jobs: usize,
    /// The named jobs, or why `sync_jobs.yaml` cannot be used: a broken
    /// file costs its named jobs, not the server (ad-hoc jobs and the
    /// history keep working, and every use of a named job says what is wrong).
    pub jobs: Result<BTreeMap<String, NamedJob>, String>,
    pub state_dir: PathBuf,
    pub scheduler: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

const LOG_LEVELS: [&str; 4] = ["ERROR", "NOTICE", "INFO", "DEBUG"];

fn read_yaml<T: for<'de> Deserialize<'de> + Default>(
    path: &Path,
    missing_is_default: bool,
) -> Result<T, ConfigError> {
    match std::fs::read_to_string(path) {
        Ok(text) if text.trim().is_empty() => Ok(T::default()),
        Ok(text) => yaml_serde::from_str(&text).map_err(|error| ConfigError::Parse {
            path: path.to_owned(),
            message: error.to_string(),
        }),
        Err(error) if missing_is_default && error.kind() == std::io::ErrorKind::NotFound => {
            Ok(T::default())
        }
        Err(source) => Err(ConfigError::Read {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Parses and checks a `sync_jobs.yaml`.
pub fn load_jobs(path: &Path, missing_is_default: bool) -> Result<JobsFile, ConfigError> {
    let jobs: JobsFile = read_yaml(path, missing_is_default)?;
    for (name, job) in &jobs.jobs {
        let invalid = |message: String| ConfigError::Invalid {
            path: path.to_owned(),
            message: format!("job {name:?}: {message}"),
        };
        if !valid_job_name(name) {
            return Err(invalid(
                "a job name is 1 to 64 letters, digits, '-', '_' or '.'".to_owned(),
            ));
        }
        if job.source.trim().is_empty() || job.destination.trim().is_empty() {
            return Err(invalid(
                "source and destination must not be empty".to_owned(),
            ));
        }
        if let Some(schedule) = &job.schedule {
            parse_schedule(schedule).map_err(invalid)?;
        }
    }
    Ok(jobs)
}

/// A named job's name: also a systemd instance name, so kept plain.
pub fn valid_job_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// The interval of a schedule: `hourly`, `daily`, `weekly`, `every <N>s|m|h|d`.
pub fn parse_schedule(schedule: &str) -> Result<Duration, String> {
    const HOUR: u64 = 3600;
    let bad = || {
        format!(
            "schedule {:?} is not one of hourly, daily, weekly or \"every <N>s|m|h|d\"",
            proto::text::echo(schedule)
        )
    };
    match schedule.trim() {
        "hourly" => return Ok(Duration::from_secs(HOUR)),
        "daily" => return Ok(Duration::from_secs(24 * HOUR)),
        "weekly" => return Ok(Duration::from_secs(7 * 24 * HOUR)),
        _ => {}
    }
    let every = schedule
        .trim()
        .strip_prefix("every ")
        .ok_or_else(bad)?
        .trim();
    let (number, unit) = every.split_at(every.len().saturating_sub(1));
    let number: u64 = number.parse().map_err(|_| bad())?;
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => HOUR,
        "d" => 24 * HOUR,
        _ => return Err(bad()),
    };
    if number == 0 {
        return Err(bad());
    }
    Ok(Duration::from_secs(number.saturating_mul(seconds)))
}

impl Config {
    /// Loads `path` (or the default file, whose absence means the defaults)
    /// and the named jobs it points to, and resolves them.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let (file, origin) = match path {
            Some(path) => (read_yaml(path, false)?, path.to_owned()),
            None => (
                read_yaml(Path::new(DEFAULT_PATH), true)?,
                PathBuf::from(DEFAULT_PATH),
            ),
        };
        Config::resolve(file, &origin)
    }

    pub fn resolve(file: FileConfig, origin: &Path) -> Result<Config, ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            path: origin.to_owned(),
            message,
        };
        let home = std::env::var_os("HOME").map(PathBuf::from);
        let roots = if file.local_roots.is_empty() {
            home.into_iter().collect()
        } else {
            file.local_roots
        };
        let mut local_roots = Vec::new();
        for root in roots {
            let canonical = std::fs::canonicalize(&root).map_err(|error| {
                invalid(format!(
                    "local_roots: {} cannot be used: {error}",
                    root.display()
                ))
            })?;
            local_roots.push(canonical);
        }
        let log_level = file
            .rclone
            .log_level
            .unwrap_or_else(|| "NOTICE".to_owned())
            .to_ascii_uppercase();
        if !LOG_LEVELS.contains(&log_level.as_str()) {
            return Err(invalid(format!(
                "rclone.log_level must be one of {}",
                LOG_LEVELS.join(", ")
            )));
        }
        let (jobs_path, jobs_default) = match file.jobs_file {
            Some(path) => (path, false),
            None => (PathBuf::from(DEFAULT_JOBS_PATH), true),
        };
        let jobs = load_jobs(&jobs_path, jobs_default)
            .map(|file| file.jobs)
            .map_err(|error| error.to_string());
        let state_dir = file
            .state_dir
            .or_else(|| std::env::var_os("STATE_DIRECTORY").map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR));
        Ok(Config {
            rclone_binary: file
                .rclone
                .binary
                .unwrap_or_else(|| PathBuf::from("rclone")),
            rclone_config: file.rclone.config,
            rclone_log_level: log_level,
            proxy: file.rclone.proxy,
            local_roots,
            allowed_remotes: file.allowed_remotes,
            destination_remotes: file.destination_remotes,
            local_destinations: file.local_destinations.unwrap_or(true),
            max_age: Duration::from_secs(file.history.max_age_days.unwrap_or(90) * 86_400),
            max_jobs: file.history.max_jobs.unwrap_or(1000).max(1),
            jobs,
            state_dir,
            scheduler: file.scheduler.unwrap_or(false),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repository_file(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../config")
            .join(name)
    }

    #[test]
    fn the_shipped_configuration_parses() {
        let file: FileConfig =
            read_yaml(&repository_file("sync.yaml"), false).expect("config/sync.yaml parses");
        assert_eq!(file.history.max_jobs, Some(1000));
        let jobs = load_jobs(&repository_file("sync_jobs.yaml"), false)
            .expect("config/sync_jobs.yaml parses");
        assert!(!jobs.jobs.is_empty(), "the example names a job");
        for job in jobs.jobs.values() {
            if let Some(schedule) = &job.schedule {
                parse_schedule(schedule).expect("a valid schedule");
            }
        }
    }

    #[test]
    fn malformed_job_files_are_refused_naming_the_job() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cases = [
            ("jobs:\n  a: {source: /x}\n", "destination"),
            (
                "jobs:\n  a: {source: /x, destination: /y, mode: mirror}\n",
                "mode",
            ),
            (
                "jobs:\n  a: {source: /x, destination: /y, colour: red}\n",
                "colour",
            ),
            (
                "jobs:\n  'a b': {source: /x, destination: /y}\n",
                "job name",
            ),
            (
                "jobs:\n  a: {source: /x, destination: /y, schedule: sometimes}\n",
                "schedule",
            ),
        ];
        for (text, expected) in cases {
            let path = dir.path().join("jobs.yaml");
            std::fs::write(&path, text).expect("write");
            let error = load_jobs(&path, false).expect_err(text).to_string();
            assert!(error.contains(expected), "{text}: {error}");
            assert!(error.contains("jobs.yaml"), "{error}");
        }
    }

    #[test]
    fn schedules() {
        assert_eq!(parse_schedule("daily"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_schedule("every 30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_schedule("every 2h"), Ok(Duration::from_secs(7200)));
        assert!(parse_schedule("every 0m").is_err());
        assert!(parse_schedule("every m").is_err());
        assert_eq!(parse_schedule("every 5s"), Ok(Duration::from_secs(5)));
        assert!(parse_schedule("monthly").is_err());
    }
}
