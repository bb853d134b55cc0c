//! Names and filters: what counts as an llmbasedos service, and the checks
//! every [`LogFilter`] passes before either implementation sees it.

use crate::{Error, LogEntry, LogFilter};

/// The longest service name accepted (systemd allows 255 for a whole unit).
const MAX_NAME: usize = 64;
/// The longest text filter accepted.
pub(crate) const MAX_TEXT: usize = 256;

/// A short service name: `[a-z0-9][a-z0-9-]*`, at most 64 bytes (`fs`,
/// `test-server`). Exactly what may follow `llmbasedos-` in a unit name.
pub fn is_service_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && !name.starts_with('-')
        && name
            .bytes()
            .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-')
}

/// `^llmbasedos-[a-z0-9-]+\.(service|socket)$`: the only units this crate
/// ever names to systemd.
pub fn is_unit_name(unit: &str) -> bool {
    service_of_unit(unit).is_some()
}

/// `fs` for `llmbasedos-fs.service` or `llmbasedos-fs.socket`; `None` for
/// any unit that is not llmbasedos' own.
pub fn service_of_unit(unit: &str) -> Option<&str> {
    let rest = unit.strip_prefix("llmbasedos-")?;
    let name = rest
        .strip_suffix(".service")
        .or_else(|| rest.strip_suffix(".socket"))?;
    // `-` alone or a leading `-` are allowed by the pattern; a name must
    // still be non-empty and of the allowed bytes.
    (!name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .bytes()
            .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-'))
    .then_some(name)
}

/// Refuses a filter that cannot be meant: a priority above 7, a service
/// name that could not be an llmbasedos unit, a reversed time range, an
/// overlong or control-character text.
pub(crate) fn check(filter: &LogFilter) -> Result<(), Error> {
    if let Some(priority) = filter.max_priority
        && priority > 7
    {
        return Err(Error::BadFilter {
            field: "priority".to_owned(),
            hint: "a syslog priority from 0 (emerg) to 7 (debug), e.g. 4 for warnings and worse"
                .to_owned(),
        });
    }
    for name in &filter.services {
        if !is_service_name(name) {
            return Err(Error::BadFilter {
                field: "service".to_owned(),
                hint: format!(
                    "{} is not a service name: lowercase letters, digits and '-', as the services list shows them (fs, gateway)",
                    quoted(name)
                ),
            });
        }
    }
    if let (Some(since), Some(until)) = (filter.since, filter.until)
        && since > until
    {
        return Err(Error::BadFilter {
            field: "since".to_owned(),
            hint: "the start of the time range is after its end".to_owned(),
        });
    }
    if let Some(text) = &filter.text {
        if text.len() > MAX_TEXT {
            return Err(Error::BadFilter {
                field: "text".to_owned(),
                hint: format!("at most {MAX_TEXT} bytes"),
            });
        }
        if text.chars().any(char::is_control) {
            return Err(Error::BadFilter {
                field: "text".to_owned(),
                hint: "control characters (newlines, tabs) cannot be searched for".to_owned(),
            });
        }
    }
    Ok(())
}

/// Whether `entry` passes `filter` (services, priority, times, text): the
/// filtering `up` does itself, and what the journal's answer is checked
/// against.
pub(crate) fn matches(filter: &LogFilter, entry: &LogEntry) -> bool {
    (filter.services.is_empty() || filter.services.contains(&entry.service))
        && filter
            .max_priority
            .is_none_or(|priority| entry.priority <= priority)
        && filter.since.is_none_or(|since| entry.time >= since)
        && filter.until.is_none_or(|until| entry.time <= until)
        && filter
            .text
            .as_deref()
            .is_none_or(|text| contains_ignoring_case(&entry.message, text))
}

/// A case-insensitive substring test (Unicode simple lowercase on both
/// sides), the meaning of [`LogFilter::text`].
pub(crate) fn contains_ignoring_case(haystack: &str, needle: &str) -> bool {
    if needle.is_empty() {
        return true;
    }
    haystack.to_lowercase().contains(&needle.to_lowercase())
}

/// A client-given value quoted for an error text: bounded and escaped.
pub(crate) fn quoted(value: &str) -> String {
    let mut shown: String = value.chars().take(64).collect();
    if shown.len() < value.len() {
        shown.push('…');
    }
    format!("{shown:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_llmbasedos_units_are_ours() {
        for (unit, ours) in [
            ("llmbasedos-fs.service", Some("fs")),
            ("llmbasedos-fs.socket", Some("fs")),
            ("llmbasedos-test-server.service", Some("test-server")),
            ("llmbasedos-sync-job@a.service", None),
            ("llmbasedos-.service", None),
            ("llmbasedos-FS.service", None),
            ("llmbasedos-fs.timer", None),
            ("ssh.service", None),
            ("llmbasedos-fs.service\n", None),
            ("xllmbasedos-fs.service", None),
            ("llmbasedos-fs.service.d", None),
            ("llmbasedos-../ssh.service", None),
        ] {
            assert_eq!(service_of_unit(unit), ours, "{unit:?}");
            assert_eq!(is_unit_name(unit), ours.is_some(), "{unit:?}");
        }
    }

    #[test]
    fn filters_that_cannot_be_meant_are_refused_naming_the_field() {
        let cases: [(LogFilter, Option<&str>); 6] = [
            (LogFilter::default(), None),
            (
                LogFilter {
                    max_priority: Some(8),
                    ..LogFilter::default()
                },
                Some("priority"),
            ),
            (
                LogFilter {
                    services: vec!["fs.service _SYSTEMD_UNIT=ssh.service".into()],
                    ..LogFilter::default()
                },
                Some("service"),
            ),
            (
                LogFilter {
                    services: vec!["_SYSTEMD_UNIT=ssh.service".into()],
                    ..LogFilter::default()
                },
                Some("service"),
            ),
            (
                LogFilter {
                    text: Some("a\nb".into()),
                    ..LogFilter::default()
                },
                Some("text"),
            ),
            (
                LogFilter {
                    since: Some(std::time::UNIX_EPOCH + std::time::Duration::from_secs(10)),
                    until: Some(std::time::UNIX_EPOCH),
                    ..LogFilter::default()
                },
                Some("since"),
            ),
        ];
        for (filter, field) in cases {
            match (check(&filter), field) {
                (Ok(()), None) => {}
                (Err(Error::BadFilter { field: got, .. }), Some(want)) => {
                    assert_eq!(got, want, "{filter:?}")
                }
                (other, _) => panic!("{filter:?}: {other:?}"),
            }
        }
    }
}
