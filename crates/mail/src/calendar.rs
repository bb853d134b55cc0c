//! iCalendar (RFC 5545) as mail carries it: invites (`METHOD:REQUEST`),
//! cancellations, replies. Text in, a typed [`Calendar`] out, and its
//! recurrences expanded inside a window ([`expand`]).
//!
//! The text is untrusted: its size is checked first, the parser is
//! `icalendar`'s (nom, no panics on garbage), recurrence expansion is
//! `rrule`'s with a bounded count, and an error names the line of the
//! original text (before unfolding) where reading stopped.
//!
//! Times keep their own zone and are also given in UTC. A `TZID` is
//! resolved to an IANA zone (chrono-tz): as it is written, as the
//! `X-LIC-LOCATION` of its VTIMEZONE, as the last two segments of a
//! path-style id (`/mozilla.org/…/Europe/Berlin`), or as a Windows zone name
//! (Outlook's `W. Europe Standard Time`) through the CLDR table below. A
//! VTIMEZONE that names no IANA zone (Outlook's `Customized Time Zone`) is
//! read from its own STANDARD/DAYLIGHT observances; its recurrences are
//! expanded on the wall clock and each instance's UTC time read from them.
//! A TZID none of these resolve keeps its local time and has no UTC time.
//! Floating times and dates (all-day) have no UTC time either; for window
//! comparisons they are read as if they were UTC.

use std::collections::HashMap;

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};
use icalendar::parser::{Component, Property};
use rrule::{RRule, RRuleSet, Unvalidated};
use serde::Serialize;

/// Years a date in an entry may have: every real calendar is inside, and
/// with durations bounded too, no date arithmetic can overflow.
const YEARS: std::ops::RangeInclusive<i32> = 1000..=3000;
/// Longest DURATION accepted: a thousand years.
const MAX_DURATION_SECONDS: i64 = 1000 * 366 * 86_400;
/// Most instances one recurrence is stepped through (before the window
/// included), so that a fine rule started long ago costs bounded time.
const ITERATION_BUDGET: usize = 200_000;

/// Limits checked while a calendar is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest iCalendar text accepted, in bytes.
    pub max_bytes: usize,
    /// Most VEVENT/VTODO components accepted.
    pub max_entries: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bytes: 1024 * 1024,
            max_entries: 2000,
        }
    }
}

/// Why a calendar could not be read or expanded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CalendarError {
    #[error("the calendar is {size} bytes, over the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    #[error(
        "line {line} is not iCalendar: expected NAME[;PARAM=VALUE]:VALUE lines between matching BEGIN and END"
    )]
    Malformed { line: usize },
    #[error("the text has no BEGIN:VCALENDAR … END:VCALENDAR")]
    NoCalendar,
    #[error("the calendar has more than {limit} events and to-dos")]
    TooManyEntries { limit: usize },
    #[error("line {line}: {property} has a value that cannot be read: {reason}")]
    InvalidValue {
        line: usize,
        property: &'static str,
        reason: String,
    },
    #[error("the window's start must be before its end")]
    InvalidWindow,
}

/// A date or time as the calendar gave it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Time {
    /// A whole day (`VALUE=DATE`, all-day events).
    Date { date: NaiveDate },
    /// A wall-clock time in no zone: the same local time wherever one is.
    Floating { local: NaiveDateTime },
    /// A UTC time (`…Z`).
    Utc { utc: DateTime<Utc> },
    /// A local time in the zone `tzid`; `time_zone` is the IANA zone it
    /// resolved to, and `utc` the instant, when it resolved.
    Zoned {
        local: NaiveDateTime,
        tzid: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        time_zone: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        utc: Option<DateTime<Utc>>,
    },
}

impl Time {
    /// The instant, when the calendar fixes one.
    pub fn utc(&self) -> Option<DateTime<Utc>> {
        match self {
            Time::Utc { utc } => Some(*utc),
            Time::Zoned { utc, .. } => *utc,
            Time::Date { .. } | Time::Floating { .. } => None,
        }
    }

    /// The instant used to order and window: the UTC time, else the local
    /// time read as UTC.
    fn sort_key(&self) -> DateTime<Utc> {
        match self {
            Time::Utc { utc } => *utc,
            Time::Zoned { utc: Some(utc), .. } => *utc,
            Time::Zoned { local, .. } | Time::Floating { local } => local.and_utc(),
            Time::Date { date } => date.and_time(NaiveTime::MIN).and_utc(),
        }
    }
}

/// Which component an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    Event,
    Todo,
}

/// An ORGANIZER or ATTENDEE.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Person {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The address, `mailto:` removed.
    pub email: String,
}

/// An ATTENDEE with their answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Attendee {
    #[serde(flatten)]
    pub person: Person,
    /// PARTSTAT upper case (`ACCEPTED`, `DECLINED`, `TENTATIVE`, …;
    /// RFC 5545's default `NEEDS-ACTION` when absent).
    pub partstat: String,
    /// ROLE upper case (default `REQ-PARTICIPANT`).
    pub role: String,
    pub rsvp: bool,
}

/// RRULE, RDATE and EXDATE of an entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct Recurrence {
    /// The RRULE values as written (`FREQ=WEEKLY;BYDAY=MO`).
    pub rules: Vec<String>,
    pub rdates: Vec<Time>,
    pub exdates: Vec<Time>,
}

/// A VEVENT or VTODO.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    pub kind: EntryKind,
    /// The line of its BEGIN in the text.
    pub line: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start: Option<Time>,
    /// DTEND, or DTSTART + DURATION (events).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end: Option<Time>,
    /// DUE, or DTSTART + DURATION (to-dos).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub due: Option<Time>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub organizer: Option<Person>,
    pub attendees: Vec<Attendee>,
    /// STATUS upper case (`CONFIRMED`, `CANCELLED`, `NEEDS-ACTION`, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    pub sequence: u32,
    /// Set on an override of one instance of a recurring entry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recurrence_id: Option<Time>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recurrence: Option<Recurrence>,
}

/// A parsed calendar.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Calendar {
    /// METHOD upper case (`REQUEST`, `CANCEL`, `REPLY`, `PUBLISH`, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    pub entries: Vec<Entry>,
    /// VTIMEZONE definitions that are not IANA zones, for expansion.
    #[serde(skip)]
    custom_zones: HashMap<String, CustomZone>,
}

/// Which occurrences [`expand`] returns: those overlapping `[from, to)`
/// (an occurrence without an end overlaps when it starts inside), at most
/// `max_occurrences`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub max_occurrences: usize,
}

/// One occurrence of an entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Occurrence {
    /// Index in [`Calendar::entries`] of the entry this occurrence is
    /// (the override's, for an overridden instance).
    pub entry: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    pub start: Time,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end: Option<Time>,
    /// The instance's original start, for instances of a recurring entry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recurrence_id: Option<Time>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Whether a RECURRENCE-ID override replaced the generated instance.
    pub overridden: bool,
}

/// The occurrences in a window, in start order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Expansion {
    pub occurrences: Vec<Occurrence>,
    /// Whether more occurrences than `max_occurrences` fell in the window.
    pub truncated: bool,
}

/// Reads iCalendar text.
pub fn parse_calendar(text: &str, limits: &Limits) -> Result<Calendar, CalendarError> {
    if text.len() > limits.max_bytes {
        return Err(CalendarError::TooLarge {
            size: text.len(),
            limit: limits.max_bytes,
        });
    }
    if text.trim().is_empty() {
        return Err(CalendarError::NoCalendar);
    }
    let unfolded = Unfolded::new(text);
    unfolded.check_structure()?;
    let components = icalendar::parser::read_calendar_simple(&unfolded.text).map_err(|error| {
        CalendarError::Malformed {
            line: unfolded.line_of(error.input),
        }
    })?;
    let Some(root) = components
        .iter()
        .find(|component| component.name == "VCALENDAR")
    else {
        return Err(match components.first() {
            Some(first) => CalendarError::Malformed {
                line: unfolded.line_of(first.name.as_str()),
            },
            None => CalendarError::Malformed { line: 1 },
        });
    };
    let zones = time_zones(root);
    let reader = Reader {
        unfolded: &unfolded,
        zones: &zones,
    };
    let method = root
        .find_prop("METHOD")
        .map(|method| method.val.as_str().trim().to_ascii_uppercase());
    let mut entries = Vec::new();
    for component in &root.components {
        let kind = match component.name.as_str() {
            "VEVENT" => EntryKind::Event,
            "VTODO" => EntryKind::Todo,
            _ => continue,
        };
        if entries.len() >= limits.max_entries {
            return Err(CalendarError::TooManyEntries {
                limit: limits.max_entries,
            });
        }
        entries.push(reader.entry(kind, component)?);
    }
    let custom_zones = zones
        .into_iter()
        .filter_map(|(tzid, zone)| match zone {
            Zone::Custom(custom) => Some((tzid, custom)),
            Zone::Iana(_) => None,
        })
        .collect();
    Ok(Calendar {
        method,
        entries,
        custom_zones,
    })
}

/// The occurrences of `calendar`'s entries inside `window`: recurring
/// entries expanded (RRULE, RDATE, EXDATE), instances replaced by their
/// RECURRENCE-ID overrides, single entries as they are.
pub fn expand(calendar: &Calendar, window: &Window) -> Result<Expansion, CalendarError> {
    if window.from >= window.to {
        return Err(CalendarError::InvalidWindow);
    }
    let mut overrides: HashMap<&str, Vec<usize>> = HashMap::new();
    for (index, entry) in calendar.entries.iter().enumerate() {
        if let (Some(uid), Some(_)) = (&entry.uid, &entry.recurrence_id) {
            overrides.entry(uid.as_str()).or_default().push(index);
        }
    }
    let masters: std::collections::HashSet<&str> = calendar
        .entries
        .iter()
        .filter(|entry| entry.recurrence_id.is_none())
        .filter_map(|entry| entry.uid.as_deref())
        .collect();
    let mut occurrences = Vec::new();
    let mut truncated = false;
    for (index, entry) in calendar.entries.iter().enumerate() {
        let Some(start) = &entry.start else { continue };
        let is_override = entry.recurrence_id.is_some();
        let has_master = entry
            .uid
            .as_deref()
            .is_some_and(|uid| masters.contains(uid));
        // Overrides are placed by their master; one without a master (an
        // invite for one instance) stands alone.
        if is_override && has_master {
            continue;
        }
        let duration = entry
            .end
            .as_ref()
            .or(entry.due.as_ref())
            .map(|end| end.sort_key() - start.sort_key());
        let replaced: Vec<(usize, &Entry)> = match (&entry.uid, is_override) {
            (Some(uid), false) => overrides
                .get(uid.as_str())
                .map(|list| list.iter().map(|&i| (i, &calendar.entries[i])).collect())
                .unwrap_or_default(),
            _ => Vec::new(),
        };
        let starts = match &entry.recurrence {
            Some(recurrence) if !is_override => {
                let limit = window.max_occurrences.saturating_add(replaced.len() + 1);
                let (starts, limited) =
                    recurrence_starts(entry, start, recurrence, window, duration, limit, calendar)?;
                truncated |= limited;
                starts
            }
            _ => vec![start.clone()],
        };
        for instance in starts {
            let key = instance.sort_key();
            if replaced.iter().any(|(_, o)| {
                o.recurrence_id
                    .as_ref()
                    .is_some_and(|id| id.sort_key() == key)
            }) {
                continue;
            }
            let end = duration.map(|duration| shift(&instance, duration));
            if overlaps(&instance, end.as_ref(), window) {
                let recurring = entry.recurrence.is_some() && !is_override;
                occurrences.push(Occurrence {
                    entry: index,
                    uid: entry.uid.clone(),
                    summary: entry.summary.clone(),
                    recurrence_id: if recurring {
                        Some(instance.clone())
                    } else {
                        entry.recurrence_id.clone()
                    },
                    start: instance,
                    end,
                    status: entry.status.clone(),
                    overridden: false,
                });
            }
        }
        for &(override_index, replacement) in &replaced {
            let Some(start) = replacement
                .start
                .clone()
                .or_else(|| replacement.recurrence_id.clone())
            else {
                continue;
            };
            let end = replacement.end.clone().or_else(|| replacement.due.clone());
            if overlaps(&start, end.as_ref(), window) {
                occurrences.push(Occurrence {
                    entry: override_index,
                    uid: replacement.uid.clone(),
                    summary: replacement.summary.clone(),
                    start,
                    end,
                    recurrence_id: replacement.recurrence_id.clone(),
                    status: replacement.status.clone(),
                    overridden: true,
                });
            }
        }
        // Only the earliest `max_occurrences` are returned: keep memory to
        // about twice that however many entries there are.
        if occurrences.len() > window.max_occurrences.saturating_mul(2) {
            occurrences.sort_by_key(|occurrence: &Occurrence| {
                (occurrence.start.sort_key(), occurrence.entry)
            });
            occurrences.truncate(window.max_occurrences);
            truncated = true;
        }
    }
    occurrences.sort_by_key(|occurrence| (occurrence.start.sort_key(), occurrence.entry));
    if occurrences.len() > window.max_occurrences {
        occurrences.truncate(window.max_occurrences);
        truncated = true;
    }
    Ok(Expansion {
        occurrences,
        truncated,
    })
}

fn overlaps(start: &Time, end: Option<&Time>, window: &Window) -> bool {
    let start = start.sort_key();
    match end.map(Time::sort_key) {
        Some(end) if end > start => start < window.to && end > window.from,
        _ => start >= window.from && start < window.to,
    }
}

/// `time` moved by `duration`, in its own kind (a date stays a date).
/// Years and durations are bounded where they are read, so this does not
/// overflow; should it, the time stays where it was rather than panic.
fn shift(time: &Time, duration: Duration) -> Time {
    shift_checked(time, duration).unwrap_or_else(|| time.clone())
}

fn shift_checked(time: &Time, duration: Duration) -> Option<Time> {
    let local_plus = |local: &NaiveDateTime| local.checked_add_signed(duration);
    let utc_plus = |utc: &DateTime<Utc>| utc.checked_add_signed(duration);
    Some(match time {
        Time::Date { date } => Time::Date {
            date: date.checked_add_signed(Duration::days(duration.num_days()))?,
        },
        Time::Floating { local } => Time::Floating {
            local: local_plus(local)?,
        },
        Time::Utc { utc } => Time::Utc {
            utc: utc_plus(utc)?,
        },
        Time::Zoned {
            local,
            tzid,
            time_zone,
            utc,
        } => {
            // Durations are exact (RFC 5545 §3.3.6 for DTEND - DTSTART):
            // the instant moves, and the local time is re-read in the zone.
            let zone = time_zone
                .as_deref()
                .and_then(|name| name.parse::<chrono_tz::Tz>().ok());
            match (utc, zone) {
                (Some(utc), Some(zone)) => {
                    let utc = utc_plus(utc)?;
                    Time::Zoned {
                        local: utc.with_timezone(&zone).naive_local(),
                        tzid: tzid.clone(),
                        time_zone: time_zone.clone(),
                        utc: Some(utc),
                    }
                }
                _ => Time::Zoned {
                    local: local_plus(local)?,
                    tzid: tzid.clone(),
                    time_zone: time_zone.clone(),
                    utc: match utc {
                        Some(utc) => Some(utc_plus(utc)?),
                        None => None,
                    },
                },
            }
        }
    })
}

/// The rrule zone a time recurs in, and the converter back.
fn rrule_zone(time: &Time) -> rrule::Tz {
    match time {
        Time::Zoned {
            time_zone: Some(name),
            utc: Some(_),
            ..
        } => name
            .parse::<chrono_tz::Tz>()
            .map(rrule::Tz::Tz)
            .unwrap_or(rrule::Tz::UTC),
        _ => rrule::Tz::UTC,
    }
}

fn to_rrule_time(time: &Time, zone: rrule::Tz) -> DateTime<rrule::Tz> {
    match (time, zone) {
        (Time::Zoned { utc: Some(utc), .. } | Time::Utc { utc }, zone) => utc.with_timezone(&zone),
        // Floating, dates and unresolved zones recur on their wall clock, read as UTC.
        (other, zone) => other.sort_key().with_timezone(&zone),
    }
}

fn from_rrule_time(instant: DateTime<rrule::Tz>, like: &Time) -> Time {
    match like {
        Time::Date { .. } => Time::Date {
            date: instant.naive_utc().date(),
        },
        Time::Floating { .. } => Time::Floating {
            local: instant.naive_utc(),
        },
        Time::Utc { .. } => Time::Utc {
            utc: instant.with_timezone(&Utc),
        },
        Time::Zoned {
            tzid,
            time_zone,
            utc,
            ..
        } => Time::Zoned {
            local: if utc.is_some() {
                instant.naive_local()
            } else {
                instant.naive_utc()
            },
            tzid: tzid.clone(),
            time_zone: time_zone.clone(),
            utc: utc.map(|_| instant.with_timezone(&Utc)),
        },
    }
}

/// How a recurrence is expanded: by rrule in an IANA zone (or UTC), or on
/// the wall clock of a VTIMEZONE that is not an IANA zone, each instance's
/// UTC time then read from the VTIMEZONE's observances.
#[derive(Clone, Copy)]
enum Frame<'a> {
    Rrule(rrule::Tz),
    Wall { zone: &'a CustomZone, tzid: &'a str },
}

impl Frame<'_> {
    fn instant(&self, time: &Time) -> DateTime<rrule::Tz> {
        match *self {
            Frame::Rrule(zone) => to_rrule_time(time, zone),
            Frame::Wall { zone, tzid } => {
                let wall = match time {
                    Time::Zoned {
                        local, tzid: other, ..
                    } if other == tzid => *local,
                    other => match other.utc() {
                        Some(utc) => zone.local_of(utc),
                        None => other.sort_key().naive_utc(),
                    },
                };
                wall.and_utc().with_timezone(&rrule::Tz::UTC)
            }
        }
    }

    fn time(&self, instant: DateTime<rrule::Tz>, like: &Time) -> Time {
        match *self {
            Frame::Rrule(_) => from_rrule_time(instant, like),
            Frame::Wall { zone, tzid } => {
                let local = instant.naive_utc();
                Time::Zoned {
                    local,
                    tzid: tzid.to_owned(),
                    time_zone: None,
                    utc: Some(zone.to_utc(local)),
                }
            }
        }
    }

    /// The rule as rrule should read it: on the wall clock, a UTC UNTIL
    /// becomes the local time it is.
    fn rule(&self, rule: &str) -> String {
        let Frame::Wall { zone, .. } = *self else {
            return rule.to_owned();
        };
        rule.split(';')
            .map(|part| {
                let until = part
                    .get(..6)
                    .filter(|name| name.eq_ignore_ascii_case("UNTIL="))
                    .and_then(|_| part[6..].strip_suffix('Z'))
                    .and_then(|value| NaiveDateTime::parse_from_str(value, "%Y%m%dT%H%M%S").ok());
                match until {
                    Some(until) => format!(
                        "UNTIL={}Z",
                        zone.local_of(until.and_utc()).format("%Y%m%dT%H%M%S")
                    ),
                    None => part.to_owned(),
                }
            })
            .collect::<Vec<_>>()
            .join(";")
    }
}

fn recurrence_starts(
    entry: &Entry,
    start: &Time,
    recurrence: &Recurrence,
    window: &Window,
    duration: Option<Duration>,
    limit: usize,
    calendar: &Calendar,
) -> Result<(Vec<Time>, bool), CalendarError> {
    let frame = match start {
        Time::Zoned {
            tzid,
            time_zone: None,
            utc: Some(_),
            ..
        } => match calendar.custom_zones.get(tzid) {
            Some(zone) => Frame::Wall { zone, tzid },
            None => Frame::Rrule(rrule::Tz::UTC),
        },
        other => Frame::Rrule(rrule_zone(other)),
    };
    let zone = match frame {
        Frame::Rrule(zone) => zone,
        Frame::Wall { .. } => rrule::Tz::UTC,
    };
    let invalid = |reason: String| CalendarError::InvalidValue {
        line: entry.line,
        property: "RRULE",
        reason: bounded(&reason),
    };
    let rules = recurrence
        .rules
        .iter()
        .map(|rule| frame.rule(rule).parse::<RRule<Unvalidated>>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(e.to_string()))?;
    // Occurrences that began before the window may still overlap it.
    let reach_back = duration
        .filter(|d| *d > Duration::zero())
        .unwrap_or_else(Duration::zero);
    // On a wall clock the window is only known to within a day; the
    // overlap check on UTC times then cuts it exactly.
    let slack = match frame {
        Frame::Rrule(_) => Duration::seconds(1),
        Frame::Wall { .. } => Duration::days(1),
    };
    let after = window
        .from
        .checked_sub_signed(reach_back + slack)
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
        .with_timezone(&zone);
    let before = window
        .to
        .checked_add_signed(slack)
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
        .with_timezone(&zone);
    let original_start = frame.instant(start);
    let dt_start = skip_ahead(original_start, &rules, &after);
    let mut set = RRuleSet::new(dt_start);
    for rule in rules {
        set = set.rrule(
            rule.validate(dt_start)
                .map_err(|e| invalid(e.to_string()))?,
        );
    }
    for rdate in &recurrence.rdates {
        set = set.rdate(frame.instant(rdate));
    }
    for exdate in &recurrence.exdates {
        set = set.exdate(frame.instant(exdate));
    }
    if recurrence.rules.is_empty() {
        // RFC 5545: DTSTART is the first instance; with RDATE only the set
        // would not include it.
        set = set.rdate(original_start);
    }
    let mut starts = Vec::new();
    let mut limited = false;
    for (stepped, instant) in (&set).into_iter().enumerate() {
        if stepped >= ITERATION_BUDGET || starts.len() >= limit {
            limited = true;
            break;
        }
        if instant < after {
            continue;
        }
        if instant >= before {
            break;
        }
        starts.push(frame.time(instant, start));
    }
    Ok((starts, limited))
}

/// A DTSTART moved forward, by whole periods of every rule, to just before
/// `target`, so that a rule like `FREQ=MINUTELY` started years ago is not
/// stepped through minute by minute. Only for rules whose instances that
/// keeps (no COUNT, which counts from the real start; periods of fixed
/// length, SECONDLY to WEEKLY); others start where they start and are
/// bounded by [`ITERATION_BUDGET`].
fn skip_ahead(
    dt_start: DateTime<rrule::Tz>,
    rules: &[RRule<Unvalidated>],
    target: &DateTime<rrule::Tz>,
) -> DateTime<rrule::Tz> {
    use rrule::Frequency;
    if rules.is_empty() {
        return dt_start;
    }
    let mut step: i64 = 1;
    for rule in rules {
        let period: i64 = match rule.get_freq() {
            Frequency::Secondly => 1,
            Frequency::Minutely => 60,
            Frequency::Hourly => 3_600,
            Frequency::Daily => 86_400,
            Frequency::Weekly => 604_800,
            Frequency::Monthly | Frequency::Yearly => return dt_start,
        };
        if rule.get_count().is_some() {
            return dt_start;
        }
        step = lcm(step, period * i64::from(rule.get_interval().max(1)));
        if step > MAX_DURATION_SECONDS {
            return dt_start;
        }
    }
    // On the wall clock of the start's zone, as RFC 5545 recurs.
    let local = dt_start.naive_local();
    let gap = (target.naive_local() - local).num_seconds();
    // One step short of the target, so nothing inside the window is skipped.
    let periods = gap / step - 1;
    if periods <= 0 {
        return dt_start;
    }
    let Some(moved) = local.checked_add_signed(Duration::seconds(periods * step)) else {
        return dt_start;
    };
    dt_start
        .timezone()
        .from_local_datetime(&moved)
        .earliest()
        .unwrap_or(dt_start)
}

fn lcm(a: i64, b: i64) -> i64 {
    fn gcd(a: i64, b: i64) -> i64 {
        if b == 0 { a } else { gcd(b, a % b) }
    }
    a / gcd(a, b) * b
}

/// The text with folded lines joined, and where each of its lines began
/// in the original.
struct Unfolded {
    text: String,
    /// (byte offset in `text`, line number in the original), ascending.
    lines: Vec<(usize, usize)>,
}

impl Unfolded {
    fn new(original: &str) -> Unfolded {
        let mut text = String::with_capacity(original.len());
        let mut lines = Vec::new();
        for (number, line) in original.split('\n').enumerate() {
            let line = line.strip_suffix('\r').unwrap_or(line);
            if let Some(continued) = line.strip_prefix([' ', '\t']).filter(|_| !lines.is_empty()) {
                text.push_str(continued);
                continue;
            }
            if !lines.is_empty() {
                text.push('\n');
            }
            lines.push((text.len(), number + 1));
            text.push_str(line);
        }
        Unfolded { text, lines }
    }

    /// Checks what nom's backtracking would report on the wrong line: every
    /// line is `NAME[;PARAMS]:VALUE`, and BEGIN and END pair up.
    fn check_structure(&self) -> Result<(), CalendarError> {
        let mut open: Vec<(&str, usize)> = Vec::new();
        for (index, &(start, line)) in self.lines.iter().enumerate() {
            let end = self
                .lines
                .get(index + 1)
                .map_or(self.text.len(), |&(next, _)| next - 1);
            let content = &self.text[start..end];
            if content.trim().is_empty() {
                continue;
            }
            let name_end = content
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
                .unwrap_or(content.len());
            let separator = content[name_end..].chars().next();
            if name_end == 0
                || !matches!(separator, Some(':' | ';'))
                || !content[name_end..].contains(':')
            {
                return Err(CalendarError::Malformed { line });
            }
            let name = &content[..name_end];
            let value = content[name_end + 1..].trim();
            if name.eq_ignore_ascii_case("BEGIN") {
                open.push((value, line));
            } else if name.eq_ignore_ascii_case("END") {
                match open.pop() {
                    Some((begun, _)) if begun.eq_ignore_ascii_case(value) => {}
                    _ => return Err(CalendarError::Malformed { line }),
                }
            }
        }
        match open.last() {
            Some(&(_, line)) => Err(CalendarError::Malformed { line }),
            None => Ok(()),
        }
    }

    /// The original line of a slice of `text` (a slice from elsewhere, such
    /// as an unescaped copy, gives line 1).
    fn line_of(&self, slice: &str) -> usize {
        let base = self.text.as_ptr() as usize;
        let at = slice.as_ptr() as usize;
        if at < base || at > base + self.text.len() {
            return 1;
        }
        let offset = at - base;
        let index = self.lines.partition_point(|&(start, _)| start <= offset);
        self.lines
            .get(index.saturating_sub(1))
            .map_or(1, |&(_, line)| line)
    }
}

struct Reader<'a> {
    unfolded: &'a Unfolded,
    zones: &'a HashMap<String, Zone>,
}

impl Reader<'_> {
    fn entry(&self, kind: EntryKind, component: &Component<'_>) -> Result<Entry, CalendarError> {
        let text = |name: &str| {
            component.find_prop(name).map(|property| {
                property
                    .val
                    .clone()
                    .unescape_text()
                    .as_str()
                    .trim()
                    .to_owned()
            })
        };
        let time = |name: &'static str| -> Result<Option<Time>, CalendarError> {
            component
                .find_prop(name)
                .map(|property| self.time(name, property))
                .transpose()
        };
        let start = time("DTSTART")?;
        let duration = component
            .find_prop("DURATION")
            .map(|property| {
                parse_duration(property.val.as_str()).ok_or_else(|| {
                    self.invalid(
                        property,
                        "DURATION",
                        "not an RFC 5545 duration like PT1H30M",
                    )
                })
            })
            .transpose()?;
        let from_duration = match (&start, duration) {
            (Some(start), Some(duration)) => Some(shift(start, duration)),
            _ => None,
        };
        let (end, due) = match kind {
            EntryKind::Event => (time("DTEND")?.or(from_duration), None),
            EntryKind::Todo => (None, time("DUE")?.or(from_duration)),
        };
        let mut recurrence = Recurrence::default();
        for property in &component.properties {
            match property.name.as_str() {
                "RRULE" => recurrence
                    .rules
                    .push(property.val.as_str().trim().to_owned()),
                "RDATE" => recurrence.rdates.extend(self.times("RDATE", property)?),
                "EXDATE" => recurrence.exdates.extend(self.times("EXDATE", property)?),
                _ => {}
            }
        }
        // EXDATE alone changes nothing but is kept for the reader.
        let has_recurrence = !recurrence.rules.is_empty()
            || !recurrence.rdates.is_empty()
            || !recurrence.exdates.is_empty();
        Ok(Entry {
            kind,
            line: self.unfolded.line_of(component.name.as_str()),
            uid: text("UID"),
            summary: text("SUMMARY"),
            location: text("LOCATION"),
            description: text("DESCRIPTION"),
            start,
            end,
            due,
            organizer: component.find_prop("ORGANIZER").map(person),
            attendees: component
                .properties
                .iter()
                .filter(|property| property.name == "ATTENDEE")
                .map(|property| Attendee {
                    person: person(property),
                    partstat: parameter(property, "PARTSTAT")
                        .map_or_else(|| "NEEDS-ACTION".to_owned(), |v| v.to_ascii_uppercase()),
                    role: parameter(property, "ROLE")
                        .map_or_else(|| "REQ-PARTICIPANT".to_owned(), |v| v.to_ascii_uppercase()),
                    rsvp: parameter(property, "RSVP")
                        .is_some_and(|v| v.eq_ignore_ascii_case("TRUE")),
                })
                .collect(),
            status: text("STATUS").map(|status| status.to_ascii_uppercase()),
            sequence: match component.find_prop("SEQUENCE") {
                Some(property) => property.val.as_str().trim().parse().map_err(|_| {
                    self.invalid(property, "SEQUENCE", "not a non-negative integer")
                })?,
                None => 0,
            },
            recurrence_id: time("RECURRENCE-ID")?,
            recurrence: has_recurrence.then_some(recurrence),
        })
    }

    fn invalid(&self, property: &Property<'_>, name: &'static str, reason: &str) -> CalendarError {
        CalendarError::InvalidValue {
            line: self.unfolded.line_of(property.name.as_str()),
            property: name,
            reason: reason.to_owned(),
        }
    }

    fn time(&self, name: &'static str, property: &Property<'_>) -> Result<Time, CalendarError> {
        let mut times = self.times(name, property)?;
        if times.len() != 1 {
            return Err(self.invalid(property, name, "expected exactly one date or date-time"));
        }
        Ok(times.remove(0))
    }

    /// The comma-separated dates or date-times of a property (RDATE
    /// periods give their start).
    fn times(
        &self,
        name: &'static str,
        property: &Property<'_>,
    ) -> Result<Vec<Time>, CalendarError> {
        let is_date = parameter(property, "VALUE").is_some_and(|v| v.eq_ignore_ascii_case("DATE"));
        let tzid = parameter(property, "TZID").map(|tzid| tzid.trim_matches('"').to_owned());
        property
            .val
            .as_str()
            .split(',')
            .map(|value| {
                let value = value.split('/').next().unwrap_or("").trim();
                self.one_time(value, is_date, tzid.as_deref())
                    .ok_or_else(|| {
                        self.invalid(
                            property,
                            name,
                            "expected YYYYMMDD or YYYYMMDDTHHMMSS[Z], year 1000 to 3000",
                        )
                    })
            })
            .collect()
    }

    fn one_time(&self, value: &str, is_date: bool, tzid: Option<&str>) -> Option<Time> {
        let time = self.one_time_any_year(value, is_date, tzid)?;
        let written_year = match &time {
            Time::Date { date } => date.year(),
            Time::Floating { local } | Time::Zoned { local, .. } => local.year(),
            Time::Utc { utc } => utc.year(),
        };
        YEARS.contains(&written_year).then_some(time)
    }

    fn one_time_any_year(&self, value: &str, is_date: bool, tzid: Option<&str>) -> Option<Time> {
        if is_date || (value.len() == 8 && !value.contains('T')) {
            return NaiveDate::parse_from_str(value, "%Y%m%d")
                .ok()
                .map(|date| Time::Date { date });
        }
        if let Some(utc) = value.strip_suffix('Z') {
            let local = NaiveDateTime::parse_from_str(utc, "%Y%m%dT%H%M%S").ok()?;
            return Some(Time::Utc {
                utc: local.and_utc(),
            });
        }
        let local = NaiveDateTime::parse_from_str(value, "%Y%m%dT%H%M%S").ok()?;
        let Some(tzid) = tzid else {
            return Some(Time::Floating { local });
        };
        let known = self.zones.get(tzid);
        let (time_zone, utc) = match known {
            Some(Zone::Iana(zone)) => (
                Some(zone.name().to_owned()),
                Some(local_to_utc(*zone, local)),
            ),
            Some(Zone::Custom(zone)) => (None, Some(zone.to_utc(local))),
            None => match resolve_tzid(tzid, None) {
                Some(zone) => (
                    Some(zone.name().to_owned()),
                    Some(local_to_utc(zone, local)),
                ),
                None => (None, None),
            },
        };
        Some(Time::Zoned {
            local,
            tzid: tzid.to_owned(),
            time_zone,
            utc,
        })
    }
}

/// A local time in `zone` as UTC: an ambiguous time (the repeated hour in
/// autumn) is its first occurrence, a time in the spring gap is read with
/// the offset before the gap (RFC 5545 §3.3.5).
fn local_to_utc(zone: chrono_tz::Tz, local: NaiveDateTime) -> DateTime<Utc> {
    match zone.from_local_datetime(&local).earliest() {
        Some(time) => time.with_timezone(&Utc),
        None => {
            let before = zone
                .from_local_datetime(&(local - Duration::hours(1)))
                .earliest()
                .map(|time| time.with_timezone(&Utc) + Duration::hours(1));
            before.unwrap_or_else(|| local.and_utc())
        }
    }
}

fn parameter<'p>(property: &'p Property<'_>, name: &str) -> Option<&'p str> {
    property
        .params
        .iter()
        .find(|param| param.key.as_str().eq_ignore_ascii_case(name))
        .and_then(|param| param.val.as_ref())
        .map(|val| val.as_str())
}

fn person(property: &Property<'_>) -> Person {
    let value = property.val.as_str().trim();
    let email = value
        .get(..7)
        .filter(|scheme| scheme.eq_ignore_ascii_case("mailto:"))
        .map_or(value, |_| &value[7..]);
    Person {
        name: parameter(property, "CN").map(|name| name.trim_matches('"').to_owned()),
        email: email.to_owned(),
    }
}

/// RFC 5545 §3.3.6 durations: `[+-]P[nW]` or `[+-]P[nD][T[nH][nM][nS]]`.
fn parse_duration(value: &str) -> Option<Duration> {
    let value = value.trim();
    let (sign, rest) = match value.as_bytes().first()? {
        b'-' => (-1, &value[1..]),
        b'+' => (1, &value[1..]),
        _ => (1, value),
    };
    let rest = rest.strip_prefix('P')?;
    let mut seconds: i64 = 0;
    let mut number: Option<i64> = None;
    let mut in_time = false;
    let mut any = false;
    for character in rest.chars() {
        match character {
            '0'..='9' => {
                let digit = i64::from(character.to_digit(10)?);
                number = Some(number.unwrap_or(0).checked_mul(10)?.checked_add(digit)?);
            }
            'T' if !in_time && number.is_none() => in_time = true,
            unit => {
                let count = number.take()?;
                let scale = match (unit, in_time) {
                    ('W', false) => 7 * 86_400,
                    ('D', false) => 86_400,
                    ('H', true) => 3_600,
                    ('M', true) => 60,
                    ('S', true) => 1,
                    _ => return None,
                };
                seconds = seconds.checked_add(count.checked_mul(scale)?)?;
                any = true;
            }
        }
    }
    if number.is_some() || !any || seconds > MAX_DURATION_SECONDS {
        return None;
    }
    Duration::try_seconds(sign * seconds)
}

/// A VTIMEZONE's meaning: an IANA zone, or its own observances.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Zone {
    Iana(chrono_tz::Tz),
    Custom(CustomZone),
}

/// A VTIMEZONE that names no IANA zone (Outlook's "Customized Time Zone"):
/// its STANDARD and DAYLIGHT observances, read as RFC 5545 §3.6.5 says.
#[derive(Debug, Clone, PartialEq, Eq)]
struct CustomZone {
    observances: Vec<Observance>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Observance {
    /// DTSTART: the first onset, in the local time before it (offset_from).
    onset: NaiveDateTime,
    offset_from: i32,
    offset_to: i32,
    rules: Vec<String>,
    rdates: Vec<NaiveDateTime>,
}

impl Observance {
    /// The last onset at or before `local`.
    fn last_onset(&self, local: NaiveDateTime) -> Option<NaiveDateTime> {
        if self.onset > local {
            return None;
        }
        let mut last = self.onset;
        for &rdate in &self.rdates {
            if rdate <= local && rdate > last {
                last = rdate;
            }
        }
        for rule in &self.rules {
            let Ok(parsed) = rule.parse::<RRule<Unvalidated>>() else {
                continue;
            };
            // Real VTIMEZONEs change offsets yearly; anything finer is not
            // a time zone and would cost an expansion per lookup.
            if parsed.get_freq() != rrule::Frequency::Yearly {
                continue;
            }
            // Yearly rules (all real VTIMEZONEs) restart two years back, so
            // that a 1601 onset does not cost four centuries of iterations;
            // other rules are expanded from the onset, bounded by rrule.
            let yearly_from = (parsed.get_freq() == rrule::Frequency::Yearly
                && parsed.get_count().is_none())
            .then(|| local.date().year() - 2)
            .filter(|&year| year > self.onset.date().year())
            .and_then(|year| {
                let day = self
                    .onset
                    .date()
                    .with_year(year)
                    .or_else(|| NaiveDate::from_ymd_opt(year, 1, 1))?;
                Some(day.and_time(self.onset.time()))
            });
            let start = yearly_from
                .unwrap_or(self.onset)
                .and_utc()
                .with_timezone(&rrule::Tz::UTC);
            let Ok(set) = parsed.build(start) else {
                continue;
            };
            let before = local.and_utc().with_timezone(&rrule::Tz::UTC);
            if let Some(found) = set.before(before).all(u16::MAX).dates.last() {
                last = last.max(found.naive_utc());
            }
        }
        Some(last)
    }
}

impl CustomZone {
    /// The UTC offset in seconds in effect at a local time.
    fn offset_at_local(&self, local: NaiveDateTime) -> i32 {
        self.observances
            .iter()
            .filter_map(|observance| {
                observance
                    .last_onset(local)
                    .map(|onset| (onset, observance.offset_to))
            })
            .max_by_key(|&(onset, _)| onset)
            .map(|(_, offset)| offset)
            .unwrap_or_else(|| {
                // Before the first onset: the offset that onset came from.
                self.observances
                    .iter()
                    .min_by_key(|o| o.onset)
                    .map_or(0, |o| o.offset_from)
            })
    }

    fn to_utc(&self, local: NaiveDateTime) -> DateTime<Utc> {
        (local - Duration::seconds(i64::from(self.offset_at_local(local)))).and_utc()
    }

    fn local_of(&self, utc: DateTime<Utc>) -> NaiveDateTime {
        let naive = utc.naive_utc();
        let guess = naive + Duration::seconds(i64::from(self.offset_at_local(naive)));
        naive + Duration::seconds(i64::from(self.offset_at_local(guess)))
    }

    fn from_component(component: &Component<'_>) -> Option<CustomZone> {
        let observances: Vec<Observance> = component
            .components
            .iter()
            .filter(|sub| sub.name == "STANDARD" || sub.name == "DAYLIGHT")
            .filter_map(|sub| {
                let local =
                    |value: &str| NaiveDateTime::parse_from_str(value.trim(), "%Y%m%dT%H%M%S").ok();
                Some(Observance {
                    onset: local(sub.find_prop("DTSTART")?.val.as_str())?,
                    offset_from: parse_offset(sub.find_prop("TZOFFSETFROM")?.val.as_str())?,
                    offset_to: parse_offset(sub.find_prop("TZOFFSETTO")?.val.as_str())?,
                    rules: sub
                        .properties
                        .iter()
                        .filter(|p| p.name == "RRULE")
                        .map(|p| p.val.as_str().trim().to_owned())
                        .collect(),
                    rdates: sub
                        .properties
                        .iter()
                        .filter(|p| p.name == "RDATE")
                        .flat_map(|p| {
                            p.val
                                .as_str()
                                .split(',')
                                .filter_map(local)
                                .collect::<Vec<_>>()
                        })
                        .collect(),
                })
            })
            .collect();
        (!observances.is_empty()).then_some(CustomZone { observances })
    }
}

/// `+0100`, `-0530`, `+013045` as seconds east of UTC.
fn parse_offset(value: &str) -> Option<i32> {
    let value = value.trim();
    let (sign, digits) = match value.as_bytes().first()? {
        b'+' => (1, &value[1..]),
        b'-' => (-1, &value[1..]),
        _ => return None,
    };
    if !(digits.len() == 4 || digits.len() == 6) || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let hours: i32 = digits[..2].parse().ok()?;
    let minutes: i32 = digits[2..4].parse().ok()?;
    let seconds: i32 = digits
        .get(4..)
        .filter(|s| !s.is_empty())
        .map_or(Some(0), |s| s.parse().ok())?;
    (hours < 24 && minutes < 60 && seconds < 60)
        .then_some(sign * (hours * 3600 + minutes * 60 + seconds))
}

/// VTIMEZONE ids and what each stands for, where it can be told.
fn time_zones(root: &Component<'_>) -> HashMap<String, Zone> {
    root.components
        .iter()
        .filter(|component| component.name == "VTIMEZONE")
        .filter_map(|component| {
            let tzid = component.find_prop("TZID")?.val.as_str().trim().to_owned();
            let location = component
                .find_prop("X-LIC-LOCATION")
                .map(|p| p.val.as_str().trim().to_owned());
            let zone = match resolve_tzid(&tzid, location.as_deref()) {
                Some(zone) => Zone::Iana(zone),
                None => Zone::Custom(CustomZone::from_component(component)?),
            };
            Some((tzid, zone))
        })
        .collect()
}

fn resolve_tzid(tzid: &str, location: Option<&str>) -> Option<chrono_tz::Tz> {
    let tzid = tzid.trim().trim_matches('"');
    let direct = |name: &str| name.parse::<chrono_tz::Tz>().ok();
    direct(tzid)
        .or_else(|| location.and_then(direct))
        .or_else(|| {
            // Path-style ids: "/mozilla.org/20050126_1/Europe/Berlin".
            let segments: Vec<&str> = tzid.trim_matches('/').split('/').collect();
            match segments.as_slice() {
                [.., area, city] => direct(&format!("{area}/{city}")),
                _ => None,
            }
        })
        .or_else(|| {
            WINDOWS_ZONES
                .iter()
                .find(|(windows, _)| windows.eq_ignore_ascii_case(tzid))
                .and_then(|(_, iana)| direct(iana))
        })
}

/// Windows time zone names (Outlook, Exchange) and their IANA zone, from
/// the CLDR `windowsZones.xml` territory-001 mapping (the common ones).
const WINDOWS_ZONES: &[(&str, &str)] = &[
    ("Dateline Standard Time", "Etc/GMT+12"),
    ("UTC-11", "Etc/GMT+11"),
    ("Hawaiian Standard Time", "Pacific/Honolulu"),
    ("Alaskan Standard Time", "America/Anchorage"),
    ("Pacific Standard Time", "America/Los_Angeles"),
    ("US Mountain Standard Time", "America/Phoenix"),
    ("Mountain Standard Time", "America/Denver"),
    ("Central Standard Time", "America/Chicago"),
    ("Central Standard Time (Mexico)", "America/Mexico_City"),
    ("Canada Central Standard Time", "America/Regina"),
    ("SA Pacific Standard Time", "America/Bogota"),
    ("Eastern Standard Time", "America/New_York"),
    ("US Eastern Standard Time", "America/Indianapolis"),
    ("Atlantic Standard Time", "America/Halifax"),
    ("Pacific SA Standard Time", "America/Santiago"),
    ("Newfoundland Standard Time", "America/St_Johns"),
    ("E. South America Standard Time", "America/Sao_Paulo"),
    ("Argentina Standard Time", "America/Buenos_Aires"),
    ("UTC-02", "Etc/GMT+2"),
    ("Azores Standard Time", "Atlantic/Azores"),
    ("Cape Verde Standard Time", "Atlantic/Cape_Verde"),
    ("UTC", "Etc/UTC"),
    ("Coordinated Universal Time", "Etc/UTC"),
    ("GMT Standard Time", "Europe/London"),
    ("Greenwich Standard Time", "Atlantic/Reykjavik"),
    ("Morocco Standard Time", "Africa/Casablanca"),
    ("W. Europe Standard Time", "Europe/Berlin"),
    ("Central Europe Standard Time", "Europe/Budapest"),
    ("Romance Standard Time", "Europe/Paris"),
    ("Central European Standard Time", "Europe/Warsaw"),
    ("W. Central Africa Standard Time", "Africa/Lagos"),
    ("GTB Standard Time", "Europe/Bucharest"),
    ("E. Europe Standard Time", "Europe/Chisinau"),
    ("Egypt Standard Time", "Africa/Cairo"),
    ("FLE Standard Time", "Europe/Kiev"),
    ("Israel Standard Time", "Asia/Jerusalem"),
    ("South Africa Standard Time", "Africa/Johannesburg"),
    ("Turkey Standard Time", "Europe/Istanbul"),
    ("Arab Standard Time", "Asia/Riyadh"),
    ("Russian Standard Time", "Europe/Moscow"),
    ("Iran Standard Time", "Asia/Tehran"),
    ("Arabian Standard Time", "Asia/Dubai"),
    ("Afghanistan Standard Time", "Asia/Kabul"),
    ("Ekaterinburg Standard Time", "Asia/Yekaterinburg"),
    ("Pakistan Standard Time", "Asia/Karachi"),
    ("India Standard Time", "Asia/Calcutta"),
    ("Sri Lanka Standard Time", "Asia/Colombo"),
    ("Nepal Standard Time", "Asia/Katmandu"),
    ("Central Asia Standard Time", "Asia/Almaty"),
    ("Bangladesh Standard Time", "Asia/Dhaka"),
    ("Myanmar Standard Time", "Asia/Rangoon"),
    ("SE Asia Standard Time", "Asia/Bangkok"),
    ("North Asia Standard Time", "Asia/Krasnoyarsk"),
    ("China Standard Time", "Asia/Shanghai"),
    ("Singapore Standard Time", "Asia/Singapore"),
    ("W. Australia Standard Time", "Australia/Perth"),
    ("Taipei Standard Time", "Asia/Taipei"),
    ("Tokyo Standard Time", "Asia/Tokyo"),
    ("Korea Standard Time", "Asia/Seoul"),
    ("Cen. Australia Standard Time", "Australia/Adelaide"),
    ("E. Australia Standard Time", "Australia/Brisbane"),
    ("AUS Eastern Standard Time", "Australia/Sydney"),
    ("Tasmania Standard Time", "Australia/Hobart"),
    ("West Pacific Standard Time", "Pacific/Port_Moresby"),
    ("New Zealand Standard Time", "Pacific/Auckland"),
    ("Fiji Standard Time", "Pacific/Fiji"),
    ("Tonga Standard Time", "Pacific/Tongatapu"),
];

/// A library's error text, cut to a length an error message may carry.
fn bounded(text: &str) -> String {
    const MAX: usize = 160;
    match text.char_indices().nth(MAX) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    fn parse(text: &str) -> Calendar {
        parse_calendar(text, &Limits::default()).expect("parses")
    }

    fn window(from: &str, to: &str) -> Window {
        Window {
            from: utc(from),
            to: utc(to),
            max_occurrences: 100,
        }
    }

    /// (start in UTC or local, summary, overridden) of each occurrence.
    fn starts(calendar: &Calendar, window: &Window) -> Vec<(String, String, bool)> {
        expand(calendar, window)
            .unwrap()
            .occurrences
            .into_iter()
            .map(|o| {
                let start = match &o.start {
                    Time::Date { date } => date.to_string(),
                    Time::Floating { local } => local.to_string(),
                    other => other.utc().unwrap().to_rfc3339(),
                };
                (start, o.summary.unwrap_or_default(), o.overridden)
            })
            .collect()
    }

    /// Shaped like an Exchange invite: Windows zone name with its
    /// VTIMEZONE, CRLF lines, folded description, a weekly rule crossing
    /// the end of summer time, an EXDATE and a moved instance.
    const OUTLOOK: &str = "BEGIN:VCALENDAR\r\n\
METHOD:REQUEST\r\n\
PRODID:Microsoft Exchange Server 2010\r\n\
VERSION:2.0\r\n\
BEGIN:VTIMEZONE\r\n\
TZID:W. Europe Standard Time\r\n\
BEGIN:STANDARD\r\n\
DTSTART:16010101T030000\r\n\
TZOFFSETFROM:+0200\r\n\
TZOFFSETTO:+0100\r\n\
RRULE:FREQ=YEARLY;INTERVAL=1;BYDAY=-1SU;BYMONTH=10\r\n\
END:STANDARD\r\n\
BEGIN:DAYLIGHT\r\n\
DTSTART:16010101T020000\r\n\
TZOFFSETFROM:+0100\r\n\
TZOFFSETTO:+0200\r\n\
RRULE:FREQ=YEARLY;INTERVAL=1;BYDAY=-1SU;BYMONTH=3\r\n\
END:DAYLIGHT\r\n\
END:VTIMEZONE\r\n\
BEGIN:VEVENT\r\n\
ORGANIZER;CN=Ann Example:mailto:ann@example.org\r\n\
ATTENDEE;ROLE=REQ-PARTICIPANT;PARTSTAT=NEEDS-ACTION;RSVP=TRUE;CN=Bob:mailto:bob@example.net\r\n\
ATTENDEE;ROLE=OPT-PARTICIPANT;PARTSTAT=ACCEPTED;CN=\"Carol, C.\":MAILTO:carol@example.net\r\n\
DESCRIPTION;LANGUAGE=en-US:Weekly sync\\n\\nAgenda: status\\, risks and a line that is\r\n \x20folded\r\n\
RRULE:FREQ=WEEKLY;BYDAY=TU;INTERVAL=1;UNTIL=20261201T090000Z\r\n\
EXDATE;TZID=W. Europe Standard Time:20261020T100000\r\n\
UID:040000008200E00074C5B7101A82E00800000000\r\n\
SUMMARY;LANGUAGE=en-US:Weekly sync\r\n\
DTSTART;TZID=W. Europe Standard Time:20261013T100000\r\n\
DTEND;TZID=W. Europe Standard Time:20261013T103000\r\n\
CLASS:PUBLIC\r\n\
DTSTAMP:20261001T080000Z\r\n\
STATUS:CONFIRMED\r\n\
SEQUENCE:2\r\n\
LOCATION;LANGUAGE=en-US:Room 4\r\n\
BEGIN:VALARM\r\n\
ACTION:DISPLAY\r\n\
TRIGGER:-PT15M\r\n\
END:VALARM\r\n\
END:VEVENT\r\n\
BEGIN:VEVENT\r\n\
UID:040000008200E00074C5B7101A82E00800000000\r\n\
RECURRENCE-ID;TZID=W. Europe Standard Time:20261103T100000\r\n\
DTSTART;TZID=W. Europe Standard Time:20261104T140000\r\n\
DTEND;TZID=W. Europe Standard Time:20261104T143000\r\n\
SUMMARY:Weekly sync (moved)\r\n\
SEQUENCE:3\r\n\
END:VEVENT\r\n\
END:VCALENDAR\r\n";

    #[test]
    fn an_outlook_invite_is_typed() {
        let calendar = parse(OUTLOOK);
        assert_eq!(calendar.method.as_deref(), Some("REQUEST"));
        assert_eq!(calendar.entries.len(), 2);
        let event = &calendar.entries[0];
        assert_eq!((event.kind, event.line), (EntryKind::Event, 20));
        assert_eq!(event.summary.as_deref(), Some("Weekly sync"));
        assert_eq!(event.location.as_deref(), Some("Room 4"));
        assert_eq!(
            event.description.as_deref(),
            Some("Weekly sync\n\nAgenda: status, risks and a line that is folded")
        );
        assert_eq!(event.status.as_deref(), Some("CONFIRMED"));
        assert_eq!(event.sequence, 2);
        assert_eq!(
            event.start,
            Some(Time::Zoned {
                local: NaiveDate::from_ymd_opt(2026, 10, 13)
                    .unwrap()
                    .and_hms_opt(10, 0, 0)
                    .unwrap(),
                tzid: "W. Europe Standard Time".into(),
                time_zone: Some("Europe/Berlin".into()),
                utc: Some(utc("2026-10-13T08:00:00Z")),
            })
        );
        assert_eq!(
            event.end.as_ref().and_then(Time::utc),
            Some(utc("2026-10-13T08:30:00Z"))
        );
        assert_eq!(
            event.organizer,
            Some(Person {
                name: Some("Ann Example".into()),
                email: "ann@example.org".into()
            })
        );
        let attendees: Vec<_> = event
            .attendees
            .iter()
            .map(|a| {
                (
                    a.person.name.as_deref(),
                    a.person.email.as_str(),
                    a.partstat.as_str(),
                    a.role.as_str(),
                    a.rsvp,
                )
            })
            .collect();
        assert_eq!(
            attendees,
            [
                (
                    Some("Bob"),
                    "bob@example.net",
                    "NEEDS-ACTION",
                    "REQ-PARTICIPANT",
                    true
                ),
                (
                    Some("Carol, C."),
                    "carol@example.net",
                    "ACCEPTED",
                    "OPT-PARTICIPANT",
                    false
                ),
            ]
        );
        let recurrence = event.recurrence.as_ref().unwrap();
        assert_eq!(
            recurrence.rules,
            ["FREQ=WEEKLY;BYDAY=TU;INTERVAL=1;UNTIL=20261201T090000Z"]
        );
        assert_eq!(
            recurrence.exdates[0].utc(),
            Some(utc("2026-10-20T08:00:00Z"))
        );
        assert_eq!(
            calendar.entries[1]
                .recurrence_id
                .as_ref()
                .and_then(Time::utc),
            Some(utc("2026-11-03T09:00:00Z"))
        );
    }

    #[test]
    fn outlook_recurrence_crosses_dst_skips_exdate_and_moves_the_exception() {
        let calendar = parse(OUTLOOK);
        let got = starts(
            &calendar,
            &window("2026-10-12T00:00:00Z", "2026-11-11T00:00:00Z"),
        );
        let expected = [
            ("2026-10-13T08:00:00+00:00", "Weekly sync", false),
            // Summer time ended on 25 October: 10:00 in Berlin is now 09:00 UTC.
            ("2026-10-27T09:00:00+00:00", "Weekly sync", false),
            ("2026-11-04T13:00:00+00:00", "Weekly sync (moved)", true),
            ("2026-11-10T09:00:00+00:00", "Weekly sync", false),
        ];
        let expected: Vec<_> = expected
            .iter()
            .map(|(s, n, o)| (s.to_string(), n.to_string(), *o))
            .collect();
        assert_eq!(got, expected);

        let expansion = expand(
            &calendar,
            &window("2026-10-27T00:00:00Z", "2026-10-28T00:00:00Z"),
        )
        .unwrap();
        let only = &expansion.occurrences[0];
        assert_eq!(
            only.end.as_ref().and_then(Time::utc),
            Some(utc("2026-10-27T09:30:00Z"))
        );
        assert!(
            matches!(&only.start, Time::Zoned { local, .. } if local.to_string() == "2026-10-27 10:00:00")
        );
        assert_eq!(
            only.recurrence_id.as_ref().and_then(Time::utc),
            Some(utc("2026-10-27T09:00:00Z"))
        );
        // The UNTIL ends the series: 1 December 10:00 CET is 09:00 UTC, included.
        let late = starts(
            &calendar,
            &window("2026-11-25T00:00:00Z", "2027-01-01T00:00:00Z"),
        );
        assert_eq!(late.len(), 1);
        assert_eq!(late[0].0, "2026-12-01T09:00:00+00:00");
    }

    /// Shaped like a Google Calendar invite: IANA TZID with X-LIC-LOCATION,
    /// a daily rule over the end of US summer time.
    const GOOGLE: &str = "BEGIN:VCALENDAR
PRODID:-//Google Inc//Google Calendar 70.9054//EN
VERSION:2.0
CALSCALE:GREGORIAN
METHOD:REQUEST
BEGIN:VTIMEZONE
TZID:America/New_York
X-LIC-LOCATION:America/New_York
BEGIN:STANDARD
TZOFFSETFROM:-0400
TZOFFSETTO:-0500
TZNAME:EST
DTSTART:19701101T020000
RRULE:FREQ=YEARLY;BYMONTH=11;BYDAY=1SU
END:STANDARD
END:VTIMEZONE
BEGIN:VEVENT
DTSTART;TZID=America/New_York:20261030T090000
DTEND;TZID=America/New_York:20261030T093000
RRULE:FREQ=DAILY;UNTIL=20261103T135959Z
DTSTAMP:20261020T120000Z
ORGANIZER;CN=dan@example.com:mailto:dan@example.com
UID:abc123@google.com
ATTENDEE;CUTYPE=INDIVIDUAL;ROLE=REQ-PARTICIPANT;PARTSTAT=ACCEPTED;CN=dan@example.com;X-NUM-GUESTS=0:mailto:dan@example.com
ATTENDEE;CUTYPE=INDIVIDUAL;ROLE=REQ-PARTICIPANT;PARTSTAT=TENTATIVE;RSVP=TRUE;CN=eve@example.org;X-NUM-GUESTS=0:mailto:eve@example.org
SEQUENCE:0
STATUS:CONFIRMED
SUMMARY:Standup
END:VEVENT
END:VCALENDAR
";

    #[test]
    fn a_google_daily_rule_follows_new_york_time() {
        let calendar = parse(GOOGLE);
        assert_eq!(calendar.entries[0].attendees[1].partstat, "TENTATIVE");
        let got: Vec<_> = starts(
            &calendar,
            &window("2026-10-01T00:00:00Z", "2026-12-01T00:00:00Z"),
        )
        .into_iter()
        .map(|(start, _, _)| start)
        .collect();
        assert_eq!(
            got,
            [
                "2026-10-30T13:00:00+00:00",
                "2026-10-31T13:00:00+00:00",
                "2026-11-01T14:00:00+00:00",
                "2026-11-02T14:00:00+00:00",
            ]
        );
    }

    #[test]
    fn all_day_floating_todos_and_methods() {
        let text = "BEGIN:VCALENDAR
METHOD:CANCEL
BEGIN:VEVENT
UID:xmas
DTSTART;VALUE=DATE:20261224
DTEND;VALUE=DATE:20261226
RRULE:FREQ=YEARLY
SUMMARY:Holidays
STATUS:CANCELLED
END:VEVENT
BEGIN:VEVENT
UID:floating
DTSTART:20261201T070000
DURATION:PT1H30M
SUMMARY:Run
END:VEVENT
BEGIN:VTODO
UID:todo1
DTSTART:20261201T090000Z
DUE:20261203T170000Z
SUMMARY:File report
STATUS:NEEDS-ACTION
END:VTODO
END:VCALENDAR
";
        let calendar = parse(text);
        assert_eq!(calendar.method.as_deref(), Some("CANCEL"));
        let holidays = &calendar.entries[0];
        assert_eq!(
            holidays.start,
            Some(Time::Date {
                date: NaiveDate::from_ymd_opt(2026, 12, 24).unwrap()
            })
        );
        assert_eq!(holidays.status.as_deref(), Some("CANCELLED"));
        let run = &calendar.entries[1];
        assert_eq!(
            run.end,
            Some(Time::Floating {
                local: NaiveDate::from_ymd_opt(2026, 12, 1)
                    .unwrap()
                    .and_hms_opt(8, 30, 0)
                    .unwrap()
            })
        );
        assert_eq!(run.end.as_ref().and_then(Time::utc), None);
        let todo = &calendar.entries[2];
        assert_eq!(todo.kind, EntryKind::Todo);
        assert_eq!(
            todo.due.as_ref().and_then(Time::utc),
            Some(utc("2026-12-03T17:00:00Z"))
        );
        let got = starts(
            &calendar,
            &window("2026-12-01T00:00:00Z", "2028-01-01T00:00:00Z"),
        );
        let got: Vec<_> = got
            .iter()
            .map(|(s, n, _)| (s.as_str(), n.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("2026-12-01 07:00:00", "Run"),
                ("2026-12-01T09:00:00+00:00", "File report"),
                ("2026-12-24", "Holidays"),
                ("2027-12-24", "Holidays"),
            ]
        );
        let expansion = expand(
            &calendar,
            &window("2026-12-25T12:00:00Z", "2026-12-25T13:00:00Z"),
        )
        .unwrap();
        // The holiday that began on the 24th still covers the 25th.
        assert_eq!(expansion.occurrences.len(), 1);
        assert_eq!(
            expansion.occurrences[0].end,
            Some(Time::Date {
                date: NaiveDate::from_ymd_opt(2026, 12, 26).unwrap()
            })
        );
    }

    #[test]
    fn time_zone_ids_are_resolved_where_they_can_be() {
        let table = [
            ("Europe/Paris", None, Some("Europe/Paris")),
            ("\"Europe/Paris\"", None, Some("Europe/Paris")),
            (
                "/mozilla.org/20050126_1/Europe/Berlin",
                None,
                Some("Europe/Berlin"),
            ),
            (
                "Custom Berlin",
                Some("Europe/Berlin"),
                Some("Europe/Berlin"),
            ),
            ("Eastern Standard Time", None, Some("America/New_York")),
            ("tokyo standard time", None, Some("Asia/Tokyo")),
            ("Nowhere Standard Time", None, None),
            ("", None, None),
        ];
        for (tzid, location, expected) in table {
            assert_eq!(
                resolve_tzid(tzid, location).map(|tz| tz.name()),
                expected,
                "{tzid:?}"
            );
        }
        let text = "BEGIN:VCALENDAR\nBEGIN:VEVENT\nDTSTART;TZID=Nowhere:20261201T100000\nEND:VEVENT\nEND:VCALENDAR\n";
        let start = parse(text).entries[0].start.clone().unwrap();
        assert_eq!(start.utc(), None);
        assert!(matches!(
            start,
            Time::Zoned {
                time_zone: None,
                ..
            }
        ));
    }

    #[test]
    fn local_times_in_dst_gaps_and_overlaps() {
        let berlin: chrono_tz::Tz = "Europe/Berlin".parse().unwrap();
        let at = |text: &str| NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M").unwrap();
        // 02:30 on 29 March 2026 does not exist: read with the offset before the gap.
        assert_eq!(
            local_to_utc(berlin, at("2026-03-29 02:30")),
            utc("2026-03-29T01:30:00Z")
        );
        // 02:30 on 25 October 2026 happens twice: the first one.
        assert_eq!(
            local_to_utc(berlin, at("2026-10-25 02:30")),
            utc("2026-10-25T00:30:00Z")
        );
    }

    #[test]
    fn durations() {
        let table = [
            ("PT1H30M", Some(5400)),
            ("P1D", Some(86_400)),
            ("P2W", Some(1_209_600)),
            ("-PT15M", Some(-900)),
            ("P1DT2H", Some(93_600)),
            ("PT", None),
            ("P", None),
            ("1H", None),
            ("PT1X", None),
            ("P1H", None),
            ("PT99999999999999999999S", None),
        ];
        for (text, seconds) in table {
            assert_eq!(
                parse_duration(text).map(|d| d.num_seconds()),
                seconds,
                "{text}"
            );
        }
    }

    #[test]
    fn expansion_is_bounded() {
        let text = "BEGIN:VCALENDAR\nBEGIN:VEVENT\nUID:s\nDTSTART:20261201T000000Z\nRRULE:FREQ=SECONDLY\nEND:VEVENT\nEND:VCALENDAR\n";
        let calendar = parse(text);
        let window = Window {
            max_occurrences: 50,
            ..window("2026-12-01T00:00:00Z", "2027-12-01T00:00:00Z")
        };
        let expansion = expand(&calendar, &window).unwrap();
        assert_eq!(expansion.occurrences.len(), 50);
        assert!(expansion.truncated);
        // A rule that started long before the window still reaches it.
        let text = "BEGIN:VCALENDAR\nBEGIN:VEVENT\nUID:d\nDTSTART:19900101T120000Z\nRRULE:FREQ=DAILY\nEND:VEVENT\nEND:VCALENDAR\n";
        let expansion = expand(&parse(text), &window).unwrap();
        assert_eq!(expansion.occurrences.len(), 50);
        assert_eq!(
            expansion.occurrences[0].start.utc(),
            Some(utc("2026-12-01T12:00:00Z"))
        );
        // Many recurring entries: the earliest occurrences across all of them.
        let mut text = String::from("BEGIN:VCALENDAR\n");
        for day in (1..=20).rev() {
            text.push_str(&format!(
                "BEGIN:VEVENT\nUID:e{day}\nDTSTART:202612{day:02}T080000Z\nRRULE:FREQ=DAILY\nSUMMARY:e{day}\nEND:VEVENT\n"
            ));
        }
        text.push_str("END:VCALENDAR\n");
        let many = Window {
            max_occurrences: 5,
            ..window
        };
        let expansion = expand(&parse(&text), &many).unwrap();
        let got: Vec<_> = expansion
            .occurrences
            .iter()
            .map(|o| o.summary.as_deref().unwrap())
            .collect();
        // Same start: calendar order (e2 comes before e1 in the text).
        assert_eq!(got, ["e1", "e2", "e1", "e3", "e2"]);
        assert!(expansion.truncated);
        assert_eq!(
            expand(
                &calendar,
                &Window {
                    to: window.from,
                    ..window
                }
            ),
            Err(CalendarError::InvalidWindow)
        );
    }

    #[test]
    fn rdates_add_instances_and_orphan_overrides_stand_alone() {
        let text = "BEGIN:VCALENDAR
METHOD:REQUEST
BEGIN:VEVENT
UID:r
DTSTART:20261201T100000Z
RDATE:20261205T100000Z,20261210T100000Z
EXDATE:20261210T100000Z
SUMMARY:Review
END:VEVENT
BEGIN:VEVENT
UID:only-one-instance
RECURRENCE-ID:20261207T090000Z
DTSTART:20261207T110000Z
SUMMARY:Moved once
END:VEVENT
END:VCALENDAR
";
        let got: Vec<_> = starts(
            &parse(text),
            &window("2026-11-01T00:00:00Z", "2027-01-01T00:00:00Z"),
        )
        .into_iter()
        .map(|(start, summary, _)| (start, summary))
        .collect();
        let expected = [
            ("2026-12-01T10:00:00+00:00", "Review"),
            ("2026-12-05T10:00:00+00:00", "Review"),
            ("2026-12-07T11:00:00+00:00", "Moved once"),
        ];
        let expected: Vec<_> = expected
            .iter()
            .map(|(s, n)| (s.to_string(), n.to_string()))
            .collect();
        assert_eq!(got, expected);
    }

    #[test]
    fn a_vtimezone_without_an_iana_name_is_read_from_its_observances() {
        let custom = OUTLOOK.replace("W. Europe Standard Time", "Customized Time Zone");
        let calendar = parse(&custom);
        let start = calendar.entries[0].start.clone().unwrap();
        assert!(
            matches!(
                &start,
                Time::Zoned {
                    time_zone: None,
                    ..
                }
            ),
            "{start:?}"
        );
        assert_eq!(start.utc(), Some(utc("2026-10-13T08:00:00Z")));
        let got = starts(
            &calendar,
            &window("2026-10-12T00:00:00Z", "2026-11-11T00:00:00Z"),
        );
        let expected = starts(
            &parse(OUTLOOK),
            &window("2026-10-12T00:00:00Z", "2026-11-11T00:00:00Z"),
        );
        assert_eq!(got, expected);
        assert_eq!(got.len(), 4);
        // The UNTIL (UTC) still ends the series on its last Tuesday.
        let late = starts(
            &calendar,
            &window("2026-11-25T00:00:00Z", "2027-01-01T00:00:00Z"),
        );
        assert_eq!(
            late.iter().map(|(s, _, _)| s.as_str()).collect::<Vec<_>>(),
            ["2026-12-01T09:00:00+00:00"]
        );
        // Summer 2030, winter 2031: the observances' rules keep working.
        let zone = &calendar.custom_zones["Customized Time Zone"];
        let at = |text: &str| NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M").unwrap();
        assert_eq!(zone.offset_at_local(at("2030-07-01 12:00")), 7200);
        assert_eq!(zone.offset_at_local(at("2031-01-15 12:00")), 3600);
        assert_eq!(
            zone.local_of(utc("2030-07-01T10:00:00Z")),
            at("2030-07-01 12:00")
        );
    }

    #[test]
    fn utc_offsets() {
        let table = [
            ("+0100", Some(3600)),
            ("-0530", Some(-19_800)),
            ("+013045", Some(5445)),
            ("0100", None),
            ("+01", None),
            ("+2500", None),
            ("+01x0", None),
            ("", None),
        ];
        for (text, expected) in table {
            assert_eq!(parse_offset(text), expected, "{text:?}");
        }
    }

    #[test]
    fn extreme_values_are_refused_or_bounded() {
        let year = window("2026-01-01T00:00:00Z", "2027-01-01T00:00:00Z");
        let bad_year = "expected YYYYMMDD or YYYYMMDDTHHMMSS[Z], year 1000 to 3000";
        // (properties, the reason they are refused, or how many occurrences)
        let table: [(&str, Result<usize, &str>); 9] = [
            ("DTSTART:99991231T235959Z\nDURATION:PT1H\n", Err(bad_year)),
            ("DTSTART:00010101T000000Z\n", Err(bad_year)),
            ("DTSTART:+99991231T000000Z\n", Err(bad_year)),
            (
                "DTSTART:29991231T235959Z\nDURATION:P99999999W\n",
                Err("not an RFC 5545 duration like PT1H30M"),
            ),
            (
                "DTSTART:10000101T000000Z\nDTEND:30001231T000000Z\nRRULE:FREQ=YEARLY\n",
                Ok(100),
            ),
            // Stepped ahead: a minute-by-minute rule from 1000 AD reaches 2026 at once.
            (
                "DTSTART;TZID=Europe/Berlin:10000101T000000\nRRULE:FREQ=MINUTELY;INTERVAL=7\n",
                Ok(100),
            ),
            ("DTSTART:10000101T000000Z\nRRULE:FREQ=SECONDLY\n", Ok(100)),
            // COUNT forbids stepping ahead: the iteration budget ends it, marked truncated.
            (
                "DTSTART:10000101T000000Z\nRRULE:FREQ=SECONDLY;COUNT=4000000000\n",
                Ok(0),
            ),
            (
                "DTSTART;VALUE=DATE:29991231\nDTEND;VALUE=DATE:10000101\nRRULE:FREQ=DAILY\n",
                Ok(0),
            ),
        ];
        for (properties, expected) in table {
            let text = format!(
                "BEGIN:VCALENDAR\nBEGIN:VEVENT\nUID:x\n{properties}END:VEVENT\nEND:VCALENDAR\n"
            );
            let got = parse_calendar(&text, &Limits::default())
                .map_err(|error| match error {
                    CalendarError::InvalidValue { reason, .. } => reason,
                    other => format!("{other:?}"),
                })
                .map(|calendar| expand(&calendar, &year).unwrap().occurrences.len());
            assert_eq!(got, expected.map_err(str::to_owned), "{properties:?}");
        }
        let text = "BEGIN:VCALENDAR\nBEGIN:VEVENT\nUID:x\nDTSTART:10000101T000000Z\nRRULE:FREQ=MINUTELY;INTERVAL=7\nEND:VEVENT\nEND:VCALENDAR\n";
        let first = expand(&parse(text), &year).unwrap().occurrences[0]
            .start
            .utc()
            .unwrap();
        // Every 7 minutes since 1000-01-01T00:00Z: the first at or after 2026-01-01.
        let since = (utc("2026-01-01T00:00:00Z") - utc("1000-01-01T00:00:00Z")).num_minutes();
        let expected = utc("1000-01-01T00:00:00Z") + Duration::minutes((since + 6) / 7 * 7);
        assert_eq!(first, expected);
        // A caller's window at the ends of time does not overflow.
        let wide = Window {
            from: DateTime::<Utc>::MIN_UTC,
            to: DateTime::<Utc>::MAX_UTC,
            max_occurrences: 3,
        };
        assert_eq!(expand(&parse(text), &wide).unwrap().occurrences.len(), 3);
    }

    #[test]
    fn malformed_calendars_name_the_line() {
        let table: [(&str, CalendarError); 9] = [
            ("", CalendarError::NoCalendar),
            ("hello world", CalendarError::Malformed { line: 1 }),
            (
                "BEGIN:VCALENDAR\nBEGIN:VEVENT\nUID:x\nSUMMARY no colon here\nEND:VEVENT\nEND:VCALENDAR\n",
                CalendarError::Malformed { line: 4 },
            ),
            (
                "BEGIN:VCALENDAR\nBEGIN:VEVENT\nUID:x\nDTSTART:2026-12-01\nEND:VEVENT\nEND:VCALENDAR\n",
                CalendarError::InvalidValue {
                    line: 4,
                    property: "DTSTART",
                    reason: "expected YYYYMMDD or YYYYMMDDTHHMMSS[Z], year 1000 to 3000".into(),
                },
            ),
            (
                "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nDESCRIPTION:folded\r\n  on two lines\r\nSEQUENCE:-1\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n",
                CalendarError::InvalidValue {
                    line: 5,
                    property: "SEQUENCE",
                    reason: "not a non-negative integer".into(),
                },
            ),
            (
                "BEGIN:VCALENDAR\nBEGIN:VEVENT\nDTSTART:20261201T100000Z\nDURATION:soon\nEND:VEVENT\nEND:VCALENDAR\n",
                CalendarError::InvalidValue {
                    line: 4,
                    property: "DURATION",
                    reason: "not an RFC 5545 duration like PT1H30M".into(),
                },
            ),
            (
                "BEGIN:VEVENT\nUID:x\nEND:VEVENT\n",
                CalendarError::Malformed { line: 1 },
            ),
            (
                "BEGIN:VCALENDAR\nBEGIN:VEVENT\nUID:x\nEND:VTODO\nEND:VCALENDAR\n",
                CalendarError::Malformed { line: 4 },
            ),
            // Cut off: the component left open is named.
            (
                "BEGIN:VCALENDAR\nBEGIN:VEVENT\nUID:x\nEND:VEVENT\n",
                CalendarError::Malformed { line: 1 },
            ),
        ];
        for (text, expected) in table {
            assert_eq!(
                parse_calendar(text, &Limits::default()),
                Err(expected),
                "{text:?}"
            );
        }
        let bad_rule = "BEGIN:VCALENDAR\nBEGIN:VEVENT\nDTSTART:20261201T100000Z\nRRULE:FREQ=SOMETIMES\nEND:VEVENT\nEND:VCALENDAR\n";
        let error = expand(
            &parse(bad_rule),
            &window("2026-01-01T00:00:00Z", "2027-01-01T00:00:00Z"),
        )
        .unwrap_err();
        assert!(
            matches!(
                error,
                CalendarError::InvalidValue {
                    line: 2,
                    property: "RRULE",
                    ..
                }
            ),
            "{error:?}"
        );
    }

    #[test]
    fn limits() {
        let limits = Limits {
            max_bytes: 10,
            max_entries: 1,
        };
        assert_eq!(
            parse_calendar(OUTLOOK, &limits),
            Err(CalendarError::TooLarge {
                size: OUTLOOK.len(),
                limit: 10
            })
        );
        let limits = Limits {
            max_bytes: 1 << 20,
            max_entries: 1,
        };
        assert_eq!(
            parse_calendar(OUTLOOK, &limits),
            Err(CalendarError::TooManyEntries { limit: 1 })
        );
    }

    #[test]
    fn truncated_invites_never_panic() {
        for end in 0..OUTLOOK.len() {
            if let Ok(calendar) = parse_calendar(&OUTLOOK[..end], &Limits::default()) {
                let _ = expand(
                    &calendar,
                    &window("2026-10-01T00:00:00Z", "2026-12-31T00:00:00Z"),
                );
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn calendar_shaped_garbage_never_panics(
            body in "((BEGIN|END):(VEVENT|VTODO|VALARM)\n|DTSTART(;TZID=[A-Za-z/ ]{0,12})?:[0-9TZ]{0,16}\n|RRULE:FREQ=(DAILY|WEEKLY|X);COUNT=[0-9]{1,3}\n|EXDATE:[0-9TZ,]{0,20}\n|DURATION:[PTHMSDW0-9-]{0,8}\n| [a-z]{0,5}\n|[A-Z]{1,6}:[ -~]{0,10}\n)*",
        ) {
            let text = format!("BEGIN:VCALENDAR\n{body}END:VCALENDAR\n");
            if let Ok(calendar) = parse_calendar(&text, &Limits::default()) {
                let window = Window { from: utc("2026-01-01T00:00:00Z"), to: utc("2027-01-01T00:00:00Z"), max_occurrences: 20 };
                let _ = expand(&calendar, &window);
            }
        }
    }
}
