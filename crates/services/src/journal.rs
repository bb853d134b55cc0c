//! The journal through `journalctl -o json` children. The argv is built
//! from a checked [`LogFilter`] only: service names become
//! `_SYSTEMD_UNIT=llmbasedos-<name>.service` matches (names are
//! `[a-z0-9-]+`, so no `=`, `+` or space can smuggle in another match), the
//! priority `-p`, times `--since=@<epoch>`/`--until=@<epoch>`, and the text
//! `--grep` with every character that PCRE2 could read as syntax escaped, so
//! it is the fixed string the user typed (`--case-sensitive=false`: the
//! same meaning as `up`'s filter).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Deserialize;

use crate::{Error, LogEntry, LogFilter, LogPage, filter};

/// The program run for the journal.
pub(crate) const JOURNALCTL: &str = "journalctl";

/// The argv of the journal query for `filter`, without paging: what
/// [`crate::Manager::equivalent_command`] shows and what every query starts
/// with.
pub(crate) fn argv(filter: &LogFilter) -> Vec<String> {
    let mut argv: Vec<String> = [JOURNALCTL, "-o", "json", "--no-pager"]
        .map(str::to_owned)
        .to_vec();
    let mut names: Vec<&str> = filter
        .services
        .iter()
        .map(String::as_str)
        .filter(|name| filter::is_service_name(name))
        .collect();
    names.sort_unstable();
    names.dedup();
    if names.is_empty() {
        argv.push("--unit=llmbasedos-*.service".to_owned());
    }
    for name in names {
        argv.push(format!("_SYSTEMD_UNIT=llmbasedos-{name}.service"));
    }
    if let Some(priority) = filter.max_priority.filter(|priority| *priority <= 7) {
        argv.push(format!("--priority={priority}"));
    }
    if let Some(since) = filter.since {
        argv.push(format!("--since=@{}", epoch_seconds(since)));
    }
    if let Some(until) = filter.until {
        argv.push(format!("--until=@{}", epoch_seconds(until)));
    }
    if let Some(text) = filter.text.as_deref().filter(|text| !text.is_empty()) {
        argv.push("--case-sensitive=false".to_owned());
        argv.push(format!("--grep={}", fixed_string_pattern(text)));
    }
    argv
}

/// `@<seconds>` for journalctl: whole seconds, rounded down for `since` and
/// up for nothing (journalctl takes no fractions after `@`).
fn epoch_seconds(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs()
}

/// A PCRE2 pattern matching exactly `text`: every ASCII character that is
/// not a letter or digit is escaped with a backslash (PCRE2: "a backslash
/// followed by any non-alphanumeric character stands for that character");
/// letters, digits and non-ASCII characters stand for themselves.
pub(crate) fn fixed_string_pattern(text: &str) -> String {
    let mut pattern = String::with_capacity(text.len() * 2);
    for character in text.chars() {
        if character.is_ascii() && !character.is_ascii_alphanumeric() {
            pattern.push('\\');
        }
        pattern.push(character);
    }
    pattern
}

/// One line of `journalctl -o json`. Any field may be a string, an array of
/// bytes (a value that is not valid UTF-8 or holds control characters), or
/// an array of those (a field given more than once).
#[derive(Deserialize)]
struct Record {
    #[serde(rename = "__CURSOR")]
    cursor: String,
    #[serde(rename = "__REALTIME_TIMESTAMP")]
    realtime: String,
    #[serde(rename = "MESSAGE", default)]
    message: Option<FieldValue>,
    #[serde(rename = "PRIORITY", default)]
    priority: Option<FieldValue>,
    #[serde(rename = "_SYSTEMD_UNIT", default)]
    unit: Option<FieldValue>,
    /// systemd's own messages about a unit ("Started …", "Failed with
    /// result …"), which `--unit=` also matches.
    #[serde(rename = "UNIT", default)]
    about_unit: Option<FieldValue>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum FieldValue {
    Text(String),
    Bytes(Vec<u8>),
    Many(Vec<FieldValue>),
    Other(serde::de::IgnoredAny),
}

impl FieldValue {
    /// The (first) value as text; bytes that are not UTF-8 are replaced.
    fn text(&self) -> Option<String> {
        match self {
            FieldValue::Text(text) => Some(text.clone()),
            FieldValue::Bytes(bytes) => Some(String::from_utf8_lossy(bytes).into_owned()),
            FieldValue::Many(values) => values.first().and_then(FieldValue::text),
            FieldValue::Other(_) => None,
        }
    }
}

/// The entry of one JSON line, or `None` for a line that is not one of
/// llmbasedos' entries (a unit outside `llmbasedos-*`, which a
/// well-built argv never returns, is dropped here too).
pub(crate) fn parse_line(line: &str) -> Option<LogEntry> {
    let record: Record = serde_json::from_str(line).ok()?;
    let unit = record
        .unit
        .as_ref()
        .and_then(FieldValue::text)
        .filter(|unit| filter::is_unit_name(unit))
        .or_else(|| {
            record
                .about_unit
                .as_ref()
                .and_then(FieldValue::text)
                .filter(|unit| filter::is_unit_name(unit))
        })?;
    let service = filter::service_of_unit(&unit)?.to_owned();
    let micros: u64 = record.realtime.parse().ok()?;
    Some(LogEntry {
        cursor: record.cursor,
        time: UNIX_EPOCH + Duration::from_micros(micros),
        service,
        priority: record
            .priority
            .as_ref()
            .and_then(FieldValue::text)
            .and_then(|priority| priority.trim().parse().ok())
            .filter(|priority| *priority <= 7)
            .unwrap_or(6),
        message: record
            .message
            .as_ref()
            .and_then(FieldValue::text)
            .unwrap_or_default(),
    })
}

/// The argv of one page: [`argv`] and `-r -n <count>`, from the entry at
/// `before` when given (journalctl starts a reversed read at the cursor,
/// that entry included: one more is asked for and the cursor's own entry
/// dropped).
pub(crate) fn page_argv(filter: &LogFilter, before: Option<&str>, limit: usize) -> Vec<String> {
    let mut argv = argv(filter);
    let count = limit + 1 + usize::from(before.is_some());
    argv.extend(["-r".to_owned(), "-n".to_owned(), count.to_string()]);
    if let Some(cursor) = before {
        argv.push(format!("--cursor={cursor}"));
    }
    argv
}

/// One page of entries, newest first: `limit` of them and the cursor of
/// the last as `older` when there are more.
pub(crate) async fn page(
    filter: &LogFilter,
    before: Option<&str>,
    limit: usize,
) -> Result<LogPage, Error> {
    let mut entries = run(&page_argv(filter, before, limit)).await?;
    if let Some(cursor) = before
        && entries.first().is_some_and(|entry| entry.cursor == cursor)
    {
        entries.remove(0);
    }
    let older = if entries.len() > limit {
        entries.truncate(limit);
        entries.last().map(|entry| entry.cursor.clone())
    } else {
        None
    };
    Ok(LogPage { entries, older })
}

/// Runs journalctl with `argv` and collects the entries of its output.
pub(crate) async fn run(argv: &[String]) -> Result<Vec<LogEntry>, Error> {
    let output = tokio::process::Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|error| unavailable(&error))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stdout_empty = stdout.trim().is_empty();
    let exit = Exit::of(output.status);
    // Whether the system journal can be read is asked only when there is
    // nothing to show: entries on stdout were read.
    let readable = !stdout_empty || system_journal_readable(&JOURNAL_ROOTS);
    match outcome(exit, stdout_empty, readable) {
        Outcome::Entries => Ok(stdout.lines().filter_map(parse_line).collect()),
        Outcome::Empty => Ok(Vec::new()),
        Outcome::Denied => Err(Error::Denied {
            hint: "the system journal cannot be read by this user; add it to the \
                   systemd-journal group"
                .to_owned(),
        }),
        Outcome::Failed => {
            // Shown to the operator, never matched.
            let stderr = String::from_utf8_lossy(&output.stderr);
            let text: String = stderr.trim().chars().take(300).collect();
            Err(Error::Failed {
                what: "journalctl".to_owned(),
                detail: match exit {
                    Exit::Code(code) => format!("exit status {code}: {text}"),
                    Exit::Signal => format!("ended by a signal: {text}"),
                },
            })
        }
    }
}

/// How a journalctl child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Exit {
    Code(i32),
    /// Killed by a signal (no exit code).
    Signal,
}

impl Exit {
    fn of(status: std::process::ExitStatus) -> Exit {
        status.code().map_or(Exit::Signal, Exit::Code)
    }
}

/// What a journalctl page query answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// The entries on stdout.
    Entries,
    /// No entries.
    Empty,
    /// The system journal is closed to this user.
    Denied,
    /// journalctl failed.
    Failed,
}

/// The answer of a journalctl child that ended with `exit`, printed nothing
/// (`stdout_empty`) or something, on a system journal this user can or
/// cannot read. journalctl exits 1 with nothing printed when `--grep`
/// matches nothing and when `--unit=`'s pattern matches no unit of the
/// journal; it exits 0 with nothing printed when no entry matches and
/// when it could open no journal file but the user's own. Any other exit
/// status, or a signal, is a failure, whatever was printed before it.
fn outcome(exit: Exit, stdout_empty: bool, readable: bool) -> Outcome {
    match exit {
        Exit::Code(0 | 1) if !stdout_empty => Outcome::Entries,
        Exit::Code(0 | 1) if !readable => Outcome::Denied,
        Exit::Code(0 | 1) => Outcome::Empty,
        Exit::Code(_) | Exit::Signal => Outcome::Failed,
    }
}

/// Where journald keeps the journal: volatile, then persistent, each with
/// one directory per machine id.
const JOURNAL_ROOTS: [&str; 2] = ["/run/log/journal", "/var/log/journal"];

/// At most this many entries are looked at per directory.
const DIRECTORY_ENTRIES: usize = 4096;

/// Whether this user can read the system journal under `roots`: it can
/// open one of the `system*.journal` files (the ones that hold system
/// units' entries; permissions and ACLs are the kernel's to decide), or
/// there is no such file at all (then there is nothing to deny, and an
/// empty answer is true). Not readable when some file or directory was
/// refused and none opened.
fn system_journal_readable<P: AsRef<std::path::Path>>(roots: &[P]) -> bool {
    let mut refused = false;
    for root in roots {
        let machines = match std::fs::read_dir(root) {
            Ok(machines) => machines,
            Err(error) => {
                refused |= error.kind() == std::io::ErrorKind::PermissionDenied;
                continue;
            }
        };
        for machine in machines.take(DIRECTORY_ENTRIES).flatten() {
            let files = match std::fs::read_dir(machine.path()) {
                Ok(files) => files,
                Err(error) => {
                    refused |= error.kind() == std::io::ErrorKind::PermissionDenied;
                    continue;
                }
            };
            for file in files.take(DIRECTORY_ENTRIES).flatten() {
                let name = file.file_name();
                let name = name.to_string_lossy();
                if !(name.starts_with("system") && name.ends_with(".journal")) {
                    continue;
                }
                match std::fs::File::open(file.path()) {
                    Ok(_) => return true,
                    Err(error) => {
                        refused |= error.kind() == std::io::ErrorKind::PermissionDenied;
                    }
                }
            }
        }
    }
    !refused
}

pub(crate) fn unavailable(error: &std::io::Error) -> Error {
    Error::Unavailable {
        what: "the journal (journalctl)".to_owned(),
        hint: format!("cannot run journalctl ({error}); install systemd's journalctl"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_argv_holds_only_checked_matches() {
        let filter = LogFilter {
            services: vec!["gateway".into(), "fs".into(), "fs".into()],
            max_priority: Some(4),
            since: Some(UNIX_EPOCH + Duration::from_secs(1_700_000_000)),
            until: None,
            text: Some("a.b _SYSTEMD_UNIT=ssh.service".into()),
        };
        assert_eq!(
            argv(&filter),
            [
                "journalctl",
                "-o",
                "json",
                "--no-pager",
                "_SYSTEMD_UNIT=llmbasedos-fs.service",
                "_SYSTEMD_UNIT=llmbasedos-gateway.service",
                "--priority=4",
                "--since=@1700000000",
                "--case-sensitive=false",
                r"--grep=a\.b\ \_SYSTEMD\_UNIT\=ssh\.service",
            ]
        );
        assert_eq!(
            argv(&LogFilter::default())[4..],
            ["--unit=llmbasedos-*.service"]
        );
    }

    #[test]
    fn a_message_may_be_text_or_bytes() {
        let text = r#"{"__CURSOR":"s=1","__REALTIME_TIMESTAMP":"1700000000000001","MESSAGE":"hi <b>","PRIORITY":"4","_SYSTEMD_UNIT":"llmbasedos-fs.service"}"#;
        let entry = parse_line(text).expect("an entry");
        assert_eq!(
            (
                entry.service.as_str(),
                entry.priority,
                entry.message.as_str()
            ),
            ("fs", 4, "hi <b>")
        );
        assert_eq!(
            entry.time,
            UNIX_EPOCH + Duration::from_micros(1_700_000_000_000_001)
        );
        let bytes = r#"{"__CURSOR":"s=2","__REALTIME_TIMESTAMP":"1","MESSAGE":[104,105,10,255],"_SYSTEMD_UNIT":"llmbasedos-gateway.service"}"#;
        let entry = parse_line(bytes).expect("an entry");
        assert_eq!(entry.message, "hi\n\u{fffd}");
        assert_eq!(entry.priority, 6);
        let foreign = r#"{"__CURSOR":"s=3","__REALTIME_TIMESTAMP":"1","MESSAGE":"x","_SYSTEMD_UNIT":"ssh.service"}"#;
        assert_eq!(parse_line(foreign), None);
        let about = r#"{"__CURSOR":"s=4","__REALTIME_TIMESTAMP":"1","MESSAGE":"Started","_SYSTEMD_UNIT":"init.scope","UNIT":"llmbasedos-fs.service"}"#;
        assert_eq!(
            parse_line(about).map(|entry| entry.service),
            Some("fs".into())
        );
    }

    #[test]
    fn the_answer_is_decided_by_exit_output_and_readability() {
        use Exit::{Code, Signal};
        use Outcome::{Denied, Empty, Entries, Failed};
        // (exit, stdout empty, journal readable) → outcome
        let table = [
            (Code(0), false, true, Entries),
            (Code(0), false, false, Entries),
            (Code(1), false, true, Entries),
            (Code(0), true, true, Empty),
            (Code(1), true, true, Empty),
            (Code(0), true, false, Denied),
            (Code(1), true, false, Denied),
            (Code(2), true, true, Failed),
            (Code(2), false, true, Failed),
            (Code(2), true, false, Failed),
            (Code(-1), true, true, Failed),
            (Signal, true, true, Failed),
            (Signal, false, true, Failed),
            (Signal, true, false, Failed),
        ];
        for (exit, stdout_empty, readable, expected) in table {
            assert_eq!(
                outcome(exit, stdout_empty, readable),
                expected,
                "{exit:?}, stdout empty {stdout_empty}, readable {readable}"
            );
        }
    }

    #[test]
    fn a_journal_is_readable_when_a_system_file_opens_or_none_exists() {
        let root = tempfile::tempdir().expect("a temp dir");
        let missing = root.path().join("missing");
        assert!(system_journal_readable(&[&missing]));
        let machine = root.path().join("0123456789abcdef");
        std::fs::create_dir(&machine).expect("a machine directory");
        std::fs::write(machine.join("user-1000.journal"), b"").expect("a user file");
        assert!(system_journal_readable(&[root.path()]));
        std::fs::write(machine.join("system.journal"), b"").expect("a system file");
        assert!(system_journal_readable(&[&missing, root.path()]));
    }
}
