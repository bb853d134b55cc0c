//! The token ledger: per client and period (day, month in the configured
//! time zone), the tokens charged, in a redb database in the gateway's
//! state directory.
//!
//! A call first *reserves* what it may spend (its prompt's tokens plus its
//! `max_tokens`) in one write transaction that checks the quotas and
//! charges the reservation at once: redb serialises write transactions, so
//! concurrent calls cannot both take the last tokens. The reservation is
//! on disk before the call leaves; after the answer, [`Ledger::settle`]
//! replaces it with the usage the provider reported. A gateway killed in
//! between keeps the whole reservation charged (at the next open it is
//! made final): usage is never lost, only ever over-counted by what a
//! killed call did not get to spend.

use std::path::Path;

use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Utc};
pub use chrono_tz::Tz;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::Serialize;

use crate::tiers::Quotas;

/// (client, period) → tokens charged, reservations included. Periods are
/// `d:YYYY-MM-DD` and `m:YYYY-MM`.
const USAGE: TableDefinition<'_, (&str, &str), u64> = TableDefinition::new("usage");
/// id → (client, day period, month period, tokens reserved).
const RESERVATIONS: TableDefinition<'_, u64, (&str, &str, &str, u64)> =
    TableDefinition::new("reservations");
const META: TableDefinition<'_, &str, u64> = TableDefinition::new("meta");
const NEXT_ID: &str = "next_reservation";

/// The file in the state directory.
pub const FILE: &str = "token-ledger.redb";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Period {
    Request,
    Day,
    Month,
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum QuotaError {
    #[error(
        "this request may use {asked} tokens (prompt and max_tokens) and the tier allows {limit} per request; ask for fewer max_tokens or a shorter prompt"
    )]
    TooLarge { asked: u64, limit: u64 },
    #[error(
        "the {period:?} token quota is spent: {used} of {limit} used and this request needs {asked}; it renews at {resets_at}"
    )]
    Exhausted {
        period: Period,
        limit: u64,
        used: u64,
        asked: u64,
        resets_at: DateTime<Utc>,
    },
    #[error("the token ledger cannot be used: {0}")]
    Storage(String),
}

fn storage(error: impl std::fmt::Display) -> QuotaError {
    QuotaError::Storage(error.to_string())
}

/// What a call is about to spend.
#[derive(Debug, Clone, Copy)]
pub struct Ask {
    pub prompt: u64,
    pub max_tokens: Option<u64>,
}

/// Tokens held for one call until it is settled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    pub id: u64,
    pub amount: u64,
    /// What the answer may take: the call's `max_tokens`, or, without
    /// one, what remains after the prompt (None: no quota applies).
    pub completion: Option<u64>,
}

/// The current day and month of a time zone, and when they end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Periods {
    pub day: String,
    pub month: String,
    pub day_resets: DateTime<Utc>,
    pub month_resets: DateTime<Utc>,
}

impl Periods {
    pub fn at(zone: Tz, now: DateTime<Utc>) -> Periods {
        let local = now.with_timezone(&zone).date_naive();
        let next_day = local.succ_opt().unwrap_or(local);
        let (year, month) = if local.month() == 12 {
            (local.year() + 1, 1)
        } else {
            (local.year(), local.month() + 1)
        };
        let next_month = NaiveDate::from_ymd_opt(year, month, 1).unwrap_or(next_day);
        Periods {
            day: format!("d:{}", local.format("%Y-%m-%d")),
            month: format!("m:{}", local.format("%Y-%m")),
            day_resets: midnight(zone, next_day),
            month_resets: midnight(zone, next_month),
        }
    }
}

/// The first instant of `date` in `zone` (a midnight that a DST change
/// skips is the first instant after it).
fn midnight(zone: Tz, date: NaiveDate) -> DateTime<Utc> {
    let mut time = date.and_hms_opt(0, 0, 0).expect("midnight exists");
    for _ in 0..4 {
        if let Some(instant) = zone.from_local_datetime(&time).earliest() {
            return instant.with_timezone(&Utc);
        }
        time += chrono::Duration::minutes(30);
    }
    time.and_utc()
}

/// One client's usage now.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Usage {
    pub day: u64,
    pub month: u64,
    /// Of those, held by calls still running.
    pub in_flight: u64,
}

#[derive(Debug)]
pub struct Ledger {
    db: Database,
    zone: Tz,
}

impl Ledger {
    /// Opens (or creates) the ledger; reservations left by a gateway that
    /// stopped mid-call become final usage.
    pub fn open(path: &Path, zone: Tz) -> Result<Ledger, QuotaError> {
        let db = Database::create(path)
            .map_err(|error| QuotaError::Storage(format!("{}: {error}", path.display())))?;
        let txn = db.begin_write().map_err(storage)?;
        {
            txn.open_table(USAGE).map_err(storage)?;
            txn.open_table(META).map_err(storage)?;
            let mut reservations = txn.open_table(RESERVATIONS).map_err(storage)?;
            reservations.retain(|_, _| false).map_err(storage)?;
        }
        txn.commit().map_err(storage)?;
        Ok(Ledger { db, zone })
    }

    pub fn zone(&self) -> Tz {
        self.zone
    }

    /// Reserves what `ask` may spend under `quotas`, or says which quota
    /// it does not fit in. Atomic: concurrent calls never overspend.
    pub fn reserve(
        &self,
        client: &str,
        ask: Ask,
        quotas: &Quotas,
        now: DateTime<Utc>,
    ) -> Result<Reservation, QuotaError> {
        let periods = Periods::at(self.zone, now);
        if let (Some(limit), Some(max)) = (quotas.per_request, ask.max_tokens)
            && ask.prompt + max > limit
        {
            return Err(QuotaError::TooLarge {
                asked: ask.prompt + max,
                limit,
            });
        }
        if let Some(limit) = quotas.per_request
            && ask.prompt >= limit
        {
            return Err(QuotaError::TooLarge {
                asked: ask.prompt + 1,
                limit,
            });
        }
        let txn = self.db.begin_write().map_err(storage)?;
        let reservation = {
            let mut usage = txn.open_table(USAGE).map_err(storage)?;
            let used = |period: &str| -> Result<u64, QuotaError> {
                Ok(usage
                    .get((client, period))
                    .map_err(storage)?
                    .map(|guard| guard.value())
                    .unwrap_or(0))
            };
            let used_day = used(&periods.day)?;
            let used_month = used(&periods.month)?;
            // Room left in each limited period, tightest first.
            let mut rooms = Vec::new();
            if let Some(limit) = quotas.per_day {
                rooms.push((
                    Period::Day,
                    limit,
                    used_day,
                    limit.saturating_sub(used_day),
                    periods.day_resets,
                ));
            }
            if let Some(limit) = quotas.per_month {
                rooms.push((
                    Period::Month,
                    limit,
                    used_month,
                    limit.saturating_sub(used_month),
                    periods.month_resets,
                ));
            }
            rooms.sort_by_key(|room| room.3);
            let tightest = rooms.first().copied();
            let completion = match (ask.max_tokens, tightest) {
                (Some(max), _) => Some(max),
                (None, Some((_, _, _, room, _))) => {
                    let left = room.saturating_sub(ask.prompt);
                    Some(match quotas.per_request {
                        Some(limit) => left.min(limit - ask.prompt),
                        None => left,
                    })
                }
                (None, None) => quotas.per_request.map(|limit| limit - ask.prompt),
            };
            let amount = ask.prompt + completion.unwrap_or(0);
            if let Some((period, limit, used, room, resets_at)) = tightest
                && (amount > room || completion == Some(0))
            {
                return Err(QuotaError::Exhausted {
                    period,
                    limit,
                    used,
                    asked: amount.max(ask.prompt + 1),
                    resets_at,
                });
            }
            usage
                .insert((client, periods.day.as_str()), used_day + amount)
                .map_err(storage)?;
            usage
                .insert((client, periods.month.as_str()), used_month + amount)
                .map_err(storage)?;
            let mut meta = txn.open_table(META).map_err(storage)?;
            let id = meta
                .get(NEXT_ID)
                .map_err(storage)?
                .map(|guard| guard.value())
                .unwrap_or(1);
            meta.insert(NEXT_ID, id + 1).map_err(storage)?;
            let mut reservations = txn.open_table(RESERVATIONS).map_err(storage)?;
            reservations
                .insert(
                    id,
                    (client, periods.day.as_str(), periods.month.as_str(), amount),
                )
                .map_err(storage)?;
            Reservation {
                id,
                amount,
                completion,
            }
        };
        txn.commit().map_err(storage)?;
        Ok(reservation)
    }

    /// Replaces a reservation with what the call used (charged in the
    /// periods it was reserved in). Settling twice changes nothing.
    pub fn settle(&self, reservation: &Reservation, used: u64) -> Result<(), QuotaError> {
        let txn = self.db.begin_write().map_err(storage)?;
        {
            let mut reservations = txn.open_table(RESERVATIONS).map_err(storage)?;
            let Some(held) = reservations.remove(reservation.id).map_err(storage)? else {
                return Ok(());
            };
            let (client, day, month, amount) = held.value();
            let (client, day, month) = (client.to_owned(), day.to_owned(), month.to_owned());
            drop(held);
            let mut usage = txn.open_table(USAGE).map_err(storage)?;
            for period in [&day, &month] {
                let current = usage
                    .get((client.as_str(), period.as_str()))
                    .map_err(storage)?
                    .map(|guard| guard.value())
                    .unwrap_or(0);
                let settled = current.saturating_sub(amount) + used;
                usage
                    .insert((client.as_str(), period.as_str()), settled)
                    .map_err(storage)?;
            }
        }
        txn.commit().map_err(storage)
    }

    /// A client's usage in the current day and month.
    pub fn usage(&self, client: &str, now: DateTime<Utc>) -> Result<Usage, QuotaError> {
        let periods = Periods::at(self.zone, now);
        let txn = self.db.begin_read().map_err(storage)?;
        let usage = txn.open_table(USAGE).map_err(storage)?;
        let get = |period: &str| -> Result<u64, QuotaError> {
            Ok(usage
                .get((client, period))
                .map_err(storage)?
                .map(|guard| guard.value())
                .unwrap_or(0))
        };
        let mut result = Usage {
            day: get(&periods.day)?,
            month: get(&periods.month)?,
            in_flight: 0,
        };
        let reservations = txn.open_table(RESERVATIONS).map_err(storage)?;
        for entry in reservations.iter().map_err(storage)? {
            let (_, held) = entry.map_err(storage)?;
            let (holder, _, _, amount) = held.value();
            if holder == client {
                result.in_flight += amount;
            }
        }
        Ok(result)
    }

    /// Every client with usage this month.
    pub fn clients(&self, now: DateTime<Utc>) -> Result<Vec<String>, QuotaError> {
        let periods = Periods::at(self.zone, now);
        let txn = self.db.begin_read().map_err(storage)?;
        let usage = txn.open_table(USAGE).map_err(storage)?;
        let mut clients = Vec::new();
        for entry in usage.iter().map_err(storage)? {
            let (key, _) = entry.map_err(storage)?;
            let (client, period) = key.value();
            if period == periods.month && !clients.iter().any(|known| known == client) {
                clients.push(client.to_owned());
            }
        }
        Ok(clients)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn quotas(day: u64) -> Quotas {
        Quotas {
            per_request: Some(500),
            per_day: Some(day),
            per_month: Some(10 * day),
        }
    }

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    #[test]
    fn reserve_settle_and_refuse_what_cannot_fit() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::open(&dir.path().join(FILE), chrono_tz::UTC).unwrap();
        let now = at("2026-06-01T10:00:00Z");
        let ask = Ask {
            prompt: 50,
            max_tokens: Some(200),
        };
        let held = ledger.reserve("alice", ask, &quotas(1000), now).unwrap();
        assert_eq!(held.amount, 250);
        assert_eq!(ledger.usage("alice", now).unwrap().in_flight, 250);
        ledger.settle(&held, 120).unwrap();
        ledger.settle(&held, 120).unwrap();
        let usage = ledger.usage("alice", now).unwrap();
        assert_eq!((usage.day, usage.month, usage.in_flight), (120, 120, 0));
        // Too large for one request: refused before anything is charged.
        let big = Ask {
            prompt: 10,
            max_tokens: Some(600),
        };
        assert!(matches!(
            ledger.reserve("alice", big, &quotas(1000), now),
            Err(QuotaError::TooLarge { limit: 500, .. })
        ));
        // Without max_tokens the answer gets what remains.
        let open = Ask {
            prompt: 30,
            max_tokens: None,
        };
        let held = ledger.reserve("alice", open, &quotas(300), now).unwrap();
        assert_eq!(held.completion, Some(300 - 120 - 30));
        ledger.settle(&held, 180).unwrap();
        let refused = ledger
            .reserve("alice", open, &quotas(300), now)
            .unwrap_err();
        assert!(
            matches!(refused, QuotaError::Exhausted { period: Period::Day, used: 300, resets_at, .. } if resets_at == at("2026-06-02T00:00:00Z")),
            "{refused:?}"
        );
        // Another client has its own quota.
        assert!(ledger.reserve("bob", open, &quotas(300), now).is_ok());
    }

    #[test]
    fn the_day_resets_at_midnight_of_the_configured_zone() {
        let dir = tempfile::tempdir().unwrap();
        let zone: Tz = "Europe/Paris".parse().unwrap();
        let ledger = Ledger::open(&dir.path().join(FILE), zone).unwrap();
        let ask = Ask {
            prompt: 0,
            max_tokens: Some(100),
        };
        let limits = Quotas {
            per_request: None,
            per_day: Some(100),
            per_month: None,
        };
        // 23:30 in Paris (summer time, UTC+2) is 21:30 UTC.
        let evening = at("2026-06-01T21:30:00Z");
        ledger.reserve("c", ask, &limits, evening).unwrap();
        let refused = ledger.reserve("c", ask, &limits, evening).unwrap_err();
        let QuotaError::Exhausted { resets_at, .. } = refused else {
            panic!("{refused:?}")
        };
        assert_eq!(resets_at, at("2026-06-01T22:00:00Z"));
        // One minute before Paris midnight: still refused; at it: renewed.
        assert!(
            ledger
                .reserve("c", ask, &limits, at("2026-06-01T21:59:00Z"))
                .is_err()
        );
        assert!(
            ledger
                .reserve("c", ask, &limits, at("2026-06-01T22:00:00Z"))
                .is_ok()
        );
        let periods = Periods::at(zone, at("2026-12-31T23:30:00Z"));
        assert_eq!(periods.month, "m:2027-01");
        assert_eq!(periods.month_resets, at("2027-01-31T23:00:00Z"));
    }

    #[test]
    fn usage_and_reservations_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE);
        let now = at("2026-06-01T10:00:00Z");
        let ask = Ask {
            prompt: 10,
            max_tokens: Some(90),
        };
        {
            let ledger = Ledger::open(&path, chrono_tz::UTC).unwrap();
            let settled = ledger.reserve("a", ask, &quotas(1000), now).unwrap();
            ledger.settle(&settled, 40).unwrap();
            // Left unsettled, as a killed gateway leaves it.
            ledger.reserve("a", ask, &quotas(1000), now).unwrap();
        }
        let ledger = Ledger::open(&path, chrono_tz::UTC).unwrap();
        let usage = ledger.usage("a", now).unwrap();
        assert_eq!((usage.day, usage.in_flight), (140, 0));
        assert_eq!(ledger.clients(now).unwrap(), ["a"]);
    }

    #[test]
    fn sixty_four_racing_clients_overspend_by_zero() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Arc::new(Ledger::open(&dir.path().join(FILE), chrono_tz::UTC).unwrap());
        let now = at("2026-06-01T10:00:00Z");
        let limits = Quotas {
            per_request: None,
            per_day: Some(1000),
            per_month: None,
        };
        let ask = Ask {
            prompt: 7,
            max_tokens: Some(40),
        };
        let threads: Vec<_> = (0..64)
            .map(|_| {
                let ledger = ledger.clone();
                std::thread::spawn(move || ledger.reserve("shared", ask, &limits, now).is_ok())
            })
            .collect();
        let granted = threads
            .into_iter()
            .map(|thread| thread.join().unwrap())
            .filter(|granted| *granted)
            .count() as u64;
        assert_eq!(granted, 1000 / 47);
        let usage = ledger.usage("shared", now).unwrap();
        assert_eq!(usage.day, granted * 47);
        assert!(usage.day <= 1000);
    }
}
