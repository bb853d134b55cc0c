//! `on: schedule` triggers: a cron expression in a time zone, and what to do
//! about the runs missed while the machine was off.
//!
//! The expression is the standard five fields (minute hour day-of-month
//! month day-of-week, day-of-month and day-of-week OR-ed as in Vixie cron)
//! or a macro (`@yearly`/`@annually`, `@monthly`, `@weekly`, `@daily`/
//! `@midnight`, `@hourly`); croner parses and evaluates it in the zone.
//! Daylight saving time (croner follows the Open Cron Pattern Spec and
//! Vixie cron): a fixed local time that does not exist that day (the spring
//! gap) fires at the first valid minute after the gap; a fixed local time
//! that happens twice (the autumn overlap) fires once, at its first pass.
//! Wildcard and step fields (`*/15 * * * *`) keep their real-time rhythm
//! across both, so the repeated hour is not a hole.
//!
//! Nothing here reads the clock but through [`Clock`]: the decisions are
//! given `now`, and [`drive`] (the loop that fires one schedule) asks its
//! clock, so tests decide what time it is.

use std::future::Future;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use proto::text::echo;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

/// How late a slot may be taken and still count as on time rather than
/// missed (a timer that wakes a little late, a busy machine).
pub const ON_TIME_GRACE: Duration = Duration::from_secs(60);

/// The longest [`drive`] sleeps before it looks at the clock again, so a
/// wall-clock change or a suspend is noticed within it (its timers run on
/// the monotonic clock, which a suspend stops).
pub const MAX_SLEEP: Duration = Duration::from_secs(60);

/// Slots counted at most when reporting how many were missed.
pub const MISSED_COUNT_LIMIT: u64 = 10_000;

/// What to do about slots that passed while the agent was not running.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Missed {
    /// Nothing for missed slots; the next run is the next slot in the future.
    #[default]
    Skip,
    /// One run now if one or more slots were missed (however many).
    RunOnce,
}

/// A workflow's `on: schedule` block as the YAML gives it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleSpec {
    pub cron: String,
    /// An IANA zone name (`Europe/Paris`); none: UTC.
    #[serde(default)]
    pub timezone: Option<String>,
    #[serde(default)]
    pub missed: Missed,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error(
        "cron expression {} is not valid ({reason}): give five fields (minute hour day-of-month month day-of-week, e.g. \"30 2 * * *\") or one of @yearly @monthly @weekly @daily @hourly",
        echo(expression)
    )]
    Cron { expression: String, reason: String },
    #[error(
        "time zone {} is not known: give an IANA name such as \"Europe/Paris\" or \"UTC\"",
        echo(name)
    )]
    TimeZone { name: String },
}

/// A parsed schedule: when it fires, and its missed-run policy.
#[derive(Debug, Clone)]
pub struct Schedule {
    cron: Cron,
    zone: Tz,
    missed: Missed,
}

/// What a scheduler should do at `now`, given the last time it acted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Start one run now.
    pub run_now: bool,
    /// Slots that passed more than [`ON_TIME_GRACE`] ago without a run
    /// (at most [`MISSED_COUNT_LIMIT`]).
    pub missed: u64,
    /// The next slot strictly after `now` (`None`: the expression never fires again).
    pub next: Option<DateTime<Utc>>,
}

impl Schedule {
    pub fn new(spec: &ScheduleSpec) -> Result<Schedule, ScheduleError> {
        let zone = match spec.timezone.as_deref() {
            None => Tz::UTC,
            Some(name) => Tz::from_str(name).map_err(|_| ScheduleError::TimeZone {
                name: name.to_string(),
            })?,
        };
        let expression = spec.cron.trim();
        // croner knows every usual macro but this one.
        let pattern = if expression.eq_ignore_ascii_case("@midnight") {
            "@daily"
        } else {
            expression
        };
        let cron = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .year(Year::Disallowed)
            .build()
            .parse(pattern)
            .map_err(|error| ScheduleError::Cron {
                expression: spec.cron.clone(),
                reason: proto::text::bounded(&error.to_string(), 200).into_owned(),
            })?;
        Ok(Schedule {
            cron,
            zone,
            missed: spec.missed,
        })
    }

    pub fn zone(&self) -> Tz {
        self.zone
    }

    pub fn missed_policy(&self) -> Missed {
        self.missed
    }

    /// The first slot strictly after `after`.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = after.with_timezone(&self.zone);
        self.cron
            .find_next_occurrence(&local, false)
            .ok()
            .map(|next| next.with_timezone(&Utc))
    }

    /// What to do at `now`, when the scheduler last acted on this schedule
    /// at `last` (ran it, or decided to skip): the slots in `(last, now]`
    /// are due. The latest of them, if within [`ON_TIME_GRACE`] of `now`,
    /// is on time and runs whatever the policy; older ones are missed, and
    /// the policy says whether they earn one run. `last = None` (never
    /// acted: a new workflow) misses nothing. After acting on the decision,
    /// the caller records `now` as its new `last`.
    pub fn decide(&self, last: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Decision {
        let next = self.next_after(now);
        let Some(last) = last.filter(|last| *last < now) else {
            return Decision {
                run_now: false,
                missed: 0,
                next,
            };
        };
        let grace = chrono::Duration::from_std(ON_TIME_GRACE).unwrap_or_default();
        let mut missed = 0;
        let mut on_time = false;
        let mut cursor = last;
        while let Some(slot) = self.next_after(cursor) {
            if slot > now || missed >= MISSED_COUNT_LIMIT {
                break;
            }
            if now - slot <= grace {
                on_time = true;
            } else {
                missed += 1;
            }
            cursor = slot;
        }
        let run_now = on_time || (missed > 0 && self.missed == Missed::RunOnce);
        Decision {
            run_now,
            missed,
            next,
        }
    }
}

/// Where a scheduler reads the time.
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// One run a schedule asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Firing {
    /// When it was decided (what the caller stores as the schedule's last
    /// run, to give back to [`drive`] after a restart).
    pub at: DateTime<Utc>,
    /// Slots missed before it (see [`Decision::missed`]).
    pub missed: u64,
}

/// How long to sleep at `now` before deciding again: until `next`, at most
/// [`MAX_SLEEP`].
pub fn sleep_before(next: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Duration {
    next.and_then(|next| (next - now).to_std().ok())
        .unwrap_or(Duration::ZERO)
        .min(MAX_SLEEP)
}

/// Fires `schedule` until `shutdown`: `fire` is awaited once per run the
/// schedule asks for (it should start the run, not wait for it). `last` is
/// the stored time of the last firing (`None`: never, nothing is missed);
/// missed slots are handled by the schedule's [`Missed`] policy at the first
/// decision. Returns when `shutdown` is cancelled or the expression never
/// fires again.
pub async fn drive<F, Fut>(
    schedule: &Schedule,
    clock: &dyn Clock,
    last: Option<DateTime<Utc>>,
    shutdown: CancellationToken,
    mut fire: F,
) where
    F: FnMut(Firing) -> Fut,
    Fut: Future<Output = ()>,
{
    let mut last = last.unwrap_or_else(|| clock.now());
    loop {
        let now = clock.now();
        let decision = schedule.decide(Some(last), now);
        // Every slot up to `now` has been decided on (run, skipped, or none
        // was due); a clock set back starts again from the new now.
        last = now;
        if decision.run_now {
            fire(Firing {
                at: now,
                missed: decision.missed,
            })
            .await;
        }
        if decision.next.is_none() {
            return;
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(sleep_before(decision.next, clock.now())) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(cron: &str, zone: &str, missed: Missed) -> Schedule {
        Schedule::new(&ScheduleSpec {
            cron: cron.into(),
            timezone: Some(zone.into()),
            missed,
        })
        .unwrap()
    }

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    /// (expression, zone, after, expected next) — all instants in UTC.
    #[test]
    fn next_after_follows_the_expression_in_its_zone() {
        let table = [
            (
                "30 2 * * *",
                "UTC",
                "2026-01-10T02:30:00Z",
                "2026-01-11T02:30:00Z",
            ),
            (
                "30 2 * * *",
                "UTC",
                "2026-01-10T02:29:59Z",
                "2026-01-10T02:30:00Z",
            ),
            (
                "*/15 * * * *",
                "UTC",
                "2026-01-10T10:07:00Z",
                "2026-01-10T10:15:00Z",
            ),
            (
                "0 9 * * 1-5",
                "UTC",
                "2026-01-09T09:00:00Z",
                "2026-01-12T09:00:00Z",
            ), // Friday → Monday
            (
                "0 0 1 * *",
                "UTC",
                "2026-01-15T00:00:00Z",
                "2026-02-01T00:00:00Z",
            ),
            (
                "@daily",
                "UTC",
                "2026-01-10T12:00:00Z",
                "2026-01-11T00:00:00Z",
            ),
            (
                "@midnight",
                "UTC",
                "2026-01-10T12:00:00Z",
                "2026-01-11T00:00:00Z",
            ),
            (
                "@hourly",
                "UTC",
                "2026-01-10T12:00:00Z",
                "2026-01-10T13:00:00Z",
            ),
            (
                "@weekly",
                "UTC",
                "2026-01-10T12:00:00Z",
                "2026-01-11T00:00:00Z",
            ), // Saturday → Sunday
            (
                "@monthly",
                "UTC",
                "2026-01-10T12:00:00Z",
                "2026-02-01T00:00:00Z",
            ),
            (
                "@yearly",
                "UTC",
                "2026-01-10T12:00:00Z",
                "2027-01-01T00:00:00Z",
            ),
            (
                "@annually",
                "UTC",
                "2026-01-10T12:00:00Z",
                "2027-01-01T00:00:00Z",
            ),
            // Day-of-month OR day-of-week, as in Vixie cron: the 13th or a Friday.
            (
                "0 0 13 * 5",
                "UTC",
                "2026-02-06T00:00:00Z",
                "2026-02-13T00:00:00Z",
            ),
            (
                "0 0 13 * 5",
                "UTC",
                "2026-02-13T00:00:00Z",
                "2026-02-20T00:00:00Z",
            ),
            // Paris is UTC+1 in winter, UTC+2 in summer.
            (
                "0 9 * * *",
                "Europe/Paris",
                "2026-01-10T00:00:00Z",
                "2026-01-10T08:00:00Z",
            ),
            (
                "0 9 * * *",
                "Europe/Paris",
                "2026-07-10T00:00:00Z",
                "2026-07-10T07:00:00Z",
            ),
            (
                "0 9 * * *",
                "America/New_York",
                "2026-07-10T00:00:00Z",
                "2026-07-10T13:00:00Z",
            ),
        ];
        for (cron, zone, after, expected) in table {
            let next = schedule(cron, zone, Missed::Skip).next_after(utc(after));
            assert_eq!(next, Some(utc(expected)), "{cron} in {zone} after {after}");
        }
    }

    #[test]
    fn a_local_time_in_the_spring_gap_fires_right_after_it() {
        // Europe/Berlin 2026-03-29: 02:00 CET jumps to 03:00 CEST (01:00 UTC).
        let daily = schedule("30 2 * * *", "Europe/Berlin", Missed::Skip);
        let day_before = utc("2026-03-28T01:30:00Z"); // 02:30 CET
        let gap_day = daily.next_after(day_before).unwrap();
        assert_eq!(
            gap_day,
            utc("2026-03-29T01:00:00Z"),
            "03:00 CEST, the first minute after the gap"
        );
        assert_eq!(
            daily.next_after(gap_day),
            Some(utc("2026-03-30T00:30:00Z")),
            "02:30 CEST the day after"
        );
    }

    #[test]
    fn a_local_time_in_the_autumn_overlap_fires_once() {
        // Europe/Berlin 2026-10-25: 03:00 CEST falls back to 02:00 CET; 02:30 happens twice.
        let daily = schedule("30 2 * * *", "Europe/Berlin", Missed::Skip);
        let first = daily.next_after(utc("2026-10-24T12:00:00Z")).unwrap();
        assert_eq!(first, utc("2026-10-25T00:30:00Z"), "the first 02:30 (CEST)");
        assert_eq!(
            daily.next_after(first),
            Some(utc("2026-10-26T01:30:00Z")),
            "not the second 02:30 (CET, 01:30 UTC the same day) but the next day's"
        );
        // Every firing over the whole week is a distinct local day.
        let mut cursor = utc("2026-10-21T00:00:00Z");
        let mut days = Vec::new();
        while let Some(next) = daily
            .next_after(cursor)
            .filter(|next| *next < utc("2026-10-28T00:00:00Z"))
        {
            days.push(next.with_timezone(&daily.zone()).date_naive());
            cursor = next;
        }
        let mut distinct = days.clone();
        distinct.dedup();
        assert_eq!(days.len(), 7);
        assert_eq!(days, distinct);
    }

    #[test]
    fn missed_slots_are_skipped_or_earn_one_run() {
        let last = utc("2026-01-10T02:30:00Z");
        let three_days_later = utc("2026-01-13T12:00:00Z"); // slots on the 11th, 12th and 13th passed
        let skip = schedule("30 2 * * *", "UTC", Missed::Skip).decide(Some(last), three_days_later);
        assert_eq!(
            skip,
            Decision {
                run_now: false,
                missed: 3,
                next: Some(utc("2026-01-14T02:30:00Z"))
            }
        );
        let once =
            schedule("30 2 * * *", "UTC", Missed::RunOnce).decide(Some(last), three_days_later);
        assert_eq!(
            once,
            Decision {
                run_now: true,
                missed: 3,
                next: Some(utc("2026-01-14T02:30:00Z"))
            }
        );
    }

    #[test]
    fn a_slot_taken_on_time_runs_whatever_the_policy() {
        let every_hour = |missed| schedule("0 * * * *", "UTC", missed);
        let last = utc("2026-01-10T10:00:00Z");
        let woke = utc("2026-01-10T11:00:20Z"); // the timer woke 20 s late
        for policy in [Missed::Skip, Missed::RunOnce] {
            let decision = every_hour(policy).decide(Some(last), woke);
            assert_eq!(
                decision,
                Decision {
                    run_now: true,
                    missed: 0,
                    next: Some(utc("2026-01-10T12:00:00Z"))
                }
            );
        }
        // Nothing due yet.
        let early = every_hour(Missed::RunOnce).decide(Some(last), utc("2026-01-10T10:59:00Z"));
        assert_eq!(
            early,
            Decision {
                run_now: false,
                missed: 0,
                next: Some(utc("2026-01-10T11:00:00Z"))
            }
        );
        // Never acted before: nothing is missed.
        let fresh = every_hour(Missed::RunOnce).decide(None, woke);
        assert_eq!(
            fresh,
            Decision {
                run_now: false,
                missed: 0,
                next: Some(utc("2026-01-10T12:00:00Z"))
            }
        );
        // Off for a year, every minute: the count is bounded.
        let minutely = schedule("* * * * *", "UTC", Missed::RunOnce);
        let decision = minutely.decide(Some(last), utc("2027-01-10T10:00:30Z"));
        assert!(decision.run_now);
        assert_eq!(decision.missed, MISSED_COUNT_LIMIT);
    }

    /// A clock that follows tokio's (paused, auto-advancing) time from a
    /// chosen wall-clock start.
    struct TestClock {
        start: DateTime<Utc>,
        base: tokio::time::Instant,
    }

    impl Clock for TestClock {
        fn now(&self) -> DateTime<Utc> {
            self.start + chrono::Duration::from_std(self.base.elapsed()).unwrap()
        }
    }

    async fn firings(
        schedule: &Schedule,
        start: &str,
        last: Option<&str>,
        count: usize,
    ) -> Vec<Firing> {
        let clock = TestClock {
            start: utc(start),
            base: tokio::time::Instant::now(),
        };
        let shutdown = CancellationToken::new();
        let mut fired = Vec::new();
        drive(
            schedule,
            &clock,
            last.map(utc),
            shutdown.clone(),
            |firing| {
                fired.push(firing);
                if fired.len() == count {
                    shutdown.cancel();
                }
                async {}
            },
        )
        .await;
        fired
    }

    #[tokio::test(start_paused = true)]
    async fn drive_fires_each_slot_once_on_time() {
        let every_hour = schedule("0 * * * *", "UTC", Missed::Skip);
        let fired = firings(&every_hour, "2026-01-10T10:59:00Z", None, 3).await;
        let at: Vec<_> = fired.iter().map(|firing| firing.at).collect();
        assert_eq!(
            at,
            [
                utc("2026-01-10T11:00:00Z"),
                utc("2026-01-10T12:00:00Z"),
                utc("2026-01-10T13:00:00Z")
            ]
        );
        assert!(fired.iter().all(|firing| firing.missed == 0));
    }

    #[tokio::test(start_paused = true)]
    async fn drive_applies_the_missed_policy_at_start() {
        // Last run three days ago: run_once fires at once, then on schedule.
        let once = schedule("30 2 * * *", "UTC", Missed::RunOnce);
        let fired = firings(
            &once,
            "2026-01-13T12:00:00Z",
            Some("2026-01-10T02:30:00Z"),
            2,
        )
        .await;
        assert_eq!(
            fired,
            [
                Firing {
                    at: utc("2026-01-13T12:00:00Z"),
                    missed: 3
                },
                Firing {
                    at: utc("2026-01-14T02:30:00Z"),
                    missed: 0
                },
            ]
        );
        // skip: the first firing is the next slot.
        let skip = schedule("30 2 * * *", "UTC", Missed::Skip);
        let fired = firings(
            &skip,
            "2026-01-13T12:00:00Z",
            Some("2026-01-10T02:30:00Z"),
            1,
        )
        .await;
        assert_eq!(
            fired,
            [Firing {
                at: utc("2026-01-14T02:30:00Z"),
                missed: 0
            }]
        );
    }

    #[test]
    fn sleeps_are_bounded_so_clock_changes_are_noticed() {
        let now = utc("2026-01-10T10:00:00Z");
        assert_eq!(
            sleep_before(Some(utc("2026-01-10T10:00:10Z")), now),
            Duration::from_secs(10)
        );
        assert_eq!(
            sleep_before(Some(utc("2026-01-11T10:00:00Z")), now),
            MAX_SLEEP
        );
        assert_eq!(
            sleep_before(Some(utc("2026-01-10T09:00:00Z")), now),
            Duration::ZERO
        );
        assert_eq!(sleep_before(None, now), Duration::ZERO);
    }

    #[test]
    fn bad_expressions_and_zones_are_refused_with_the_fix() {
        for cron in [
            "",
            "* * * *",
            "0 0 0 * * *",
            "61 * * * *",
            "@sometimes",
            "0 0 * * * 2027",
        ] {
            let error = Schedule::new(&ScheduleSpec {
                cron: cron.into(),
                timezone: None,
                missed: Missed::Skip,
            })
            .unwrap_err();
            assert!(
                matches!(error, ScheduleError::Cron { .. }),
                "{cron}: {error}"
            );
            assert!(error.to_string().contains("five fields"), "{error}");
        }
        let error = Schedule::new(&ScheduleSpec {
            cron: "@daily".into(),
            timezone: Some("Mars/Olympus".into()),
            missed: Missed::Skip,
        })
        .unwrap_err();
        assert_eq!(
            error,
            ScheduleError::TimeZone {
                name: "Mars/Olympus".into()
            }
        );
    }

    #[test]
    fn the_yaml_block_parses() {
        let spec: ScheduleSpec = yaml_serde::from_str(
            "cron: \"30 2 * * *\"\ntimezone: Europe/Paris\nmissed: run_once\n",
        )
        .unwrap();
        assert_eq!(
            spec,
            ScheduleSpec {
                cron: "30 2 * * *".into(),
                timezone: Some("Europe/Paris".into()),
                missed: Missed::RunOnce
            }
        );
        let spec: ScheduleSpec = yaml_serde::from_str("cron: \"@daily\"\n").unwrap();
        assert_eq!(spec.missed, Missed::Skip);
        assert!(
            yaml_serde::from_str::<ScheduleSpec>("cron: \"@daily\"\nmissed: sometimes\n").is_err()
        );
    }
}
