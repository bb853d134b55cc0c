//! What a job is: its specification (checked before it reaches rclone),
//! its record in the history, and the numbers rclone reports for it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use crate::config::{Filters, Mode};

/// Most error texts and log lines a job keeps.
pub const LAST_ERRORS: usize = 10;
pub const LOG_LINES: usize = 200;
/// Most differences a check keeps by name.
pub const CHECK_NAMES: usize = 100;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Queued,
    Running,
    Succeeded,
    Failed,
    Stopped,
    Interrupted,
}

impl JobState {
    pub fn is_final(self) -> bool {
        !matches!(self, JobState::Queued | JobState::Running)
    }
}

/// A job ready to run: endpoints already confined ([`crate::paths`]).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct JobSpec {
    /// The named job it came from.
    pub name: Option<String>,
    /// The id's prefix (`job`, or the original's `job_id_prefix`).
    pub prefix: String,
    pub mode: Mode,
    /// rclone's spelling: an absolute local path or `remote:path`.
    pub source: String,
    pub destination: String,
    pub dry_run: bool,
    pub filters: Filters,
    pub bandwidth_limit: Option<String>,
    /// rclone options from the allow-listed `rclone_args` (`_config` keys).
    pub options: BTreeMap<String, Value>,
}

/// rclone's numbers for one job (its own stats group).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Stats {
    pub bytes: u64,
    /// What rclone knows of so far; final only when `totals_final`.
    pub total_bytes: u64,
    pub transfers: u64,
    pub total_transfers: u64,
    pub checks: u64,
    pub total_checks: u64,
    pub deletes: u64,
    pub renames: u64,
    pub errors: u64,
    /// Bytes per second.
    pub speed: f64,
    /// Seconds left, when rclone can tell.
    pub eta: Option<f64>,
    pub elapsed: f64,
    /// Whether the totals no longer grow: rclone 1.60 says nothing of its
    /// listing, so only the end of the job makes them final; until then
    /// progress is "counting" and no percentage is given.
    pub totals_final: bool,
}

impl Stats {
    /// Reads `core/stats` for one group.
    pub fn from_rclone(value: &Value) -> Stats {
        let number = |key: &str| value.get(key).and_then(Value::as_u64).unwrap_or(0);
        Stats {
            bytes: number("bytes"),
            total_bytes: number("totalBytes"),
            transfers: number("transfers"),
            total_transfers: number("totalTransfers"),
            checks: number("checks"),
            total_checks: number("totalChecks"),
            deletes: number("deletes"),
            renames: number("renames"),
            errors: number("errors"),
            speed: value.get("speed").and_then(Value::as_f64).unwrap_or(0.0),
            eta: value.get("eta").and_then(Value::as_f64),
            elapsed: value
                .get("elapsedTime")
                .and_then(Value::as_f64)
                .unwrap_or(0.0),
            totals_final: false,
        }
    }

    /// Percent of bytes done, only once the totals are final.
    pub fn percent(&self) -> Option<f64> {
        if !self.totals_final {
            return None;
        }
        if self.total_bytes == 0 {
            return Some(100.0);
        }
        Some((self.bytes as f64 * 100.0 / self.total_bytes as f64).min(100.0))
    }
}

/// A file being transferred, by its full path beneath the job's source.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct FileProgress {
    pub path: String,
    pub bytes: u64,
    pub size: u64,
    pub percent: u64,
    pub speed: f64,
}

impl FileProgress {
    pub fn from_rclone(value: &Value, source: &str) -> Option<FileProgress> {
        let name = value.get("name")?.as_str()?;
        let number = |key: &str| value.get(key).and_then(Value::as_u64).unwrap_or(0);
        Some(FileProgress {
            path: join_path(source, name),
            bytes: number("bytes"),
            size: number("size"),
            percent: number("percentage"),
            speed: value.get("speed").and_then(Value::as_f64).unwrap_or(0.0),
        })
    }
}

fn join_path(base: &str, name: &str) -> String {
    if base.ends_with('/') || base.ends_with(':') {
        format!("{base}{name}")
    } else {
        format!("{base}/{name}")
    }
}

/// What `check` found.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct CheckSummary {
    pub matching: u64,
    pub differing: u64,
    pub missing_on_destination: u64,
    pub missing_on_source: u64,
    pub errors: u64,
    /// The first differences by path, each with what differs.
    pub differences: Vec<CheckDifference>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct CheckDifference {
    pub path: String,
    /// `differ`, `missing_on_destination`, `missing_on_source`, `error`.
    pub kind: String,
}

impl CheckSummary {
    /// One line of `rclone check --combined -`.
    pub fn read_line(&mut self, line: &str) {
        let Some((mark, path)) = line.split_once(' ') else {
            return;
        };
        let kind = match mark {
            "=" => {
                self.matching += 1;
                return;
            }
            "*" => {
                self.differing += 1;
                "differ"
            }
            "+" => {
                self.missing_on_destination += 1;
                "missing_on_destination"
            }
            "-" => {
                self.missing_on_source += 1;
                "missing_on_source"
            }
            "!" => {
                self.errors += 1;
                "error"
            }
            _ => return,
        };
        if self.differences.len() < CHECK_NAMES {
            self.differences.push(CheckDifference {
                path: proto::text::bounded(path, 4096).into_owned(),
                kind: kind.to_owned(),
            });
        }
    }

    /// The answer of `operations/check` (rclone 1.63 and later), asked
    /// without its `combined` and `match` lists so that rclone's answer
    /// grows with the differences, not with the tree: the matching files are
    /// the pairs rclone checked (its group's `checks`) that neither differed
    /// nor failed.
    pub fn from_rc(output: &Value, checks: u64) -> CheckSummary {
        let mut summary = CheckSummary::default();
        for (key, mark) in [
            ("differ", "*"),
            ("missingOnDst", "+"),
            ("missingOnSrc", "-"),
            ("error", "!"),
        ] {
            for path in output
                .get(key)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                summary.read_line(&format!("{mark} {path}"));
            }
        }
        summary.matching = checks.saturating_sub(summary.differing + summary.errors);
        summary
    }

    pub fn all_match(&self) -> bool {
        self.differing + self.missing_on_destination + self.missing_on_source + self.errors == 0
    }

    /// A finished check's outcome for people.
    pub fn outcome(&self) -> String {
        if self.all_match() {
            format!("{} files match", self.matching)
        } else {
            format!(
                "the check found differences: {} differ, {} missing on the destination, {} missing on the source, {} errors",
                self.differing, self.missing_on_destination, self.missing_on_source, self.errors
            )
        }
    }
}

/// One job as the history keeps it and `getJobStatus` shows it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct JobRecord {
    /// The key in the history; the id is `<prefix>-<number>`.
    pub number: u64,
    pub spec: JobSpec,
    pub state: JobState,
    /// Unix seconds.
    pub created: u64,
    pub started: Option<u64>,
    pub ended: Option<u64>,
    pub stats: Stats,
    #[serde(default)]
    pub transferring: Vec<FileProgress>,
    #[serde(default)]
    pub last_errors: Vec<String>,
    #[serde(default)]
    pub log: Vec<String>,
    pub check: Option<CheckSummary>,
    /// Why it failed, stopped or was interrupted.
    pub outcome: Option<String>,
}

impl JobRecord {
    pub fn new(number: u64, spec: JobSpec, now: u64) -> JobRecord {
        JobRecord {
            number,
            spec,
            state: JobState::Queued,
            created: now,
            started: None,
            ended: None,
            stats: Stats::default(),
            transferring: Vec::new(),
            last_errors: Vec::new(),
            log: Vec::new(),
            check: None,
            outcome: None,
        }
    }

    pub fn id(&self) -> String {
        format!("{}-{}", self.spec.prefix, self.number)
    }

    pub fn log_line(&mut self, now: u64, line: impl Into<String>) {
        let line = line.into();
        if self.log.len() >= LOG_LINES {
            self.log.remove(0);
        }
        self.log.push(format!(
            "{} {}",
            rfc3339(now),
            proto::text::bounded(&line, 1024)
        ));
    }

    pub fn error_text(&mut self, text: &str) {
        let text = proto::text::bounded(text, 1024).into_owned();
        if self.last_errors.last() == Some(&text) {
            return;
        }
        if self.last_errors.len() >= LAST_ERRORS {
            self.last_errors.remove(0);
        }
        self.last_errors.push(text);
    }

    pub fn finish(&mut self, state: JobState, now: u64, outcome: Option<String>) {
        self.state = state;
        self.ended = Some(now);
        self.stats.totals_final = true;
        self.transferring.clear();
        if let Some(outcome) = &outcome {
            self.log_line(now, format!("{}: {outcome}", state_name(state)));
        } else {
            self.log_line(now, state_name(state));
        }
        self.outcome = outcome;
    }

    pub fn interrupt(&mut self, now: u64, why: &str) {
        let done = format!(
            "{why}; done before: {} bytes, {} files transferred, {} checks",
            self.stats.bytes, self.stats.transfers, self.stats.checks
        );
        self.finish(JobState::Interrupted, now, Some(done));
        // The totals were never final.
        self.stats.totals_final = false;
    }

    /// The answer of `getJobStatus`.
    pub fn status(&self) -> Value {
        let mut status = serde_json::json!({
            "job_id": self.id(),
            "name": self.spec.name,
            "state": self.state,
            "mode": self.spec.mode,
            "source": self.spec.source,
            "destination": self.spec.destination,
            "dry_run": self.spec.dry_run,
            "created_at": rfc3339(self.created),
            "started_at": self.started.map(rfc3339),
            "ended_at": self.ended.map(rfc3339),
            "bytes": self.stats.bytes,
            "total_bytes": self.stats.total_bytes,
            "totals_final": self.stats.totals_final,
            "percent": self.stats.percent(),
            "files_transferred": self.stats.transfers,
            "total_files": self.stats.total_transfers,
            "checks": self.stats.checks,
            "deletes": self.stats.deletes,
            "errors": self.stats.errors,
            "speed": self.stats.speed,
            "eta": self.stats.eta,
            "last_errors": self.last_errors,
            "transferring": self.transferring,
            "outcome": self.outcome,
        });
        if let Some(check) = &self.check {
            status["check"] = serde_json::to_value(check).unwrap_or(Value::Null);
        }
        if let Some(map) = status.as_object_mut() {
            map.retain(|_, value| !value.is_null());
        }
        status
    }

    /// One line of progress for people: "counting" until totals are final.
    pub fn progress_message(&self) -> String {
        let stats = &self.stats;
        match stats.percent() {
            Some(percent) => format!(
                "{percent:.0}%: {} of {} bytes, {} of {} files, {} errors, {}/s",
                stats.bytes,
                stats.total_bytes,
                stats.transfers,
                stats.total_transfers,
                stats.errors,
                stats.speed as u64
            ),
            None => format!(
                "counting: {} bytes of at least {}, {} files of at least {}, {} checks, {} errors, {}/s",
                stats.bytes,
                stats.total_bytes,
                stats.transfers,
                stats.total_transfers,
                stats.checks,
                stats.errors,
                stats.speed as u64
            ),
        }
    }
}

pub fn state_name(state: JobState) -> &'static str {
    match state {
        JobState::Queued => "queued",
        JobState::Running => "running",
        JobState::Succeeded => "succeeded",
        JobState::Failed => "failed",
        JobState::Stopped => "stopped",
        JobState::Interrupted => "interrupted",
    }
}

/// Formats Unix seconds as RFC 3339 in UTC, to the second
/// (`proto::time::rfc3339`, on seconds).
pub fn rfc3339(seconds: u64) -> String {
    proto::time::rfc3339(std::time::UNIX_EPOCH + std::time::Duration::from_secs(seconds))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_lines_and_percentages() {
        let mut check = CheckSummary::default();
        for line in ["= a", "* b", "+ c", "- d", "! e", "garbage"] {
            check.read_line(line);
        }
        assert_eq!(
            (
                check.matching,
                check.differing,
                check.missing_on_destination,
                check.missing_on_source,
                check.errors
            ),
            (1, 1, 1, 1, 1)
        );
        assert_eq!(check.differences.len(), 4);

        // operations/check's answer says the same as the child's lines.
        let answer = serde_json::json!({
            "differ": ["b"],
            "missingOnDst": ["c"],
            "missingOnSrc": ["d"],
            "error": ["e"],
            "hashType": "md5",
            "status": "4 differences found",
            "success": false,
        });
        // rclone counted a, b and e as checked pairs.
        assert_eq!(CheckSummary::from_rc(&answer, 3), check);
        let clean = CheckSummary::from_rc(&serde_json::json!({"success": true, "differ": []}), 2);
        assert!(clean.all_match());
        assert_eq!(clean.outcome(), "2 files match");
        assert!(
            check
                .outcome()
                .starts_with("the check found differences: 1 differ")
        );
        let mut stats = Stats {
            bytes: 50,
            total_bytes: 200,
            ..Stats::default()
        };
        assert_eq!(stats.percent(), None, "no percentage while counting");
        stats.totals_final = true;
        assert_eq!(stats.percent(), Some(25.0));
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_764_633_600), "2025-12-02T00:00:00Z");
    }
}
