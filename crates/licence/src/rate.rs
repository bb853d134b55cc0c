//! Request rates: one GCRA token bucket (`governor`) per client, with the
//! tier's rate: `requests` at once after a quiet window, then one more every
//! `window / requests`. The clock is a parameter, so tests drive time.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};

use crate::tiers::Rate;

/// One client's bucket.
pub struct RequestRate<C: Clock = DefaultClock> {
    limiter: RateLimiter<NotKeyed, InMemoryState, C, NoOpMiddleware<C::Instant>>,
    clock: C,
}

impl<C: Clock> std::fmt::Debug for RequestRate<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestRate").finish_non_exhaustive()
    }
}

impl RequestRate<DefaultClock> {
    pub fn new(rate: Rate) -> RequestRate<DefaultClock> {
        RequestRate::with_clock(rate, DefaultClock::default())
    }
}

impl<C: Clock + Clone> RequestRate<C> {
    pub fn with_clock(rate: Rate, clock: C) -> RequestRate<C> {
        let requests = NonZeroU32::new(rate.requests).unwrap_or(NonZeroU32::MIN);
        let period = (rate.window / requests.get()).max(Duration::from_nanos(1));
        let quota = Quota::with_period(period)
            .expect("a period of at least 1 ns")
            .allow_burst(requests);
        RequestRate {
            limiter: RateLimiter::direct_with_clock(quota, clock.clone()),
            clock,
        }
    }

    /// Takes one request from the bucket, or says how long until one is
    /// there (rounded up to the millisecond, never zero).
    pub fn check(&self) -> Result<(), Duration> {
        self.limiter.check().map_err(|not_until| {
            let wait = not_until.wait_time_from(self.clock.now());
            let millis = wait.as_nanos().div_ceil(1_000_000).max(1);
            Duration::from_millis(u64::try_from(millis).unwrap_or(u64::MAX))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;

    #[test]
    fn exactly_the_rate_then_a_retry_hint_that_holds() {
        let clock = FakeRelativeClock::default();
        let rate = Rate {
            requests: 5,
            window: Duration::from_secs(10),
        };
        let bucket = RequestRate::with_clock(rate, clock.clone());
        for _ in 0..5 {
            assert_eq!(bucket.check(), Ok(()));
        }
        let wait = bucket.check().unwrap_err();
        assert_eq!(wait, Duration::from_secs(2));
        clock.advance(wait - Duration::from_millis(1));
        assert!(bucket.check().is_err(), "not before the hint");
        clock.advance(Duration::from_millis(1));
        assert_eq!(bucket.check(), Ok(()));
        assert!(bucket.check().is_err());
        // After a whole quiet window the bucket is full again, not fuller.
        clock.advance(Duration::from_secs(60));
        for _ in 0..5 {
            assert_eq!(bucket.check(), Ok(()));
        }
        assert!(bucket.check().is_err());
    }

    #[test]
    fn two_clients_do_not_share_a_bucket() {
        let clock = FakeRelativeClock::default();
        let rate = Rate {
            requests: 2,
            window: Duration::from_secs(60),
        };
        let alice = RequestRate::with_clock(rate, clock.clone());
        let bob = RequestRate::with_clock(rate, clock);
        assert!(alice.check().is_ok() && alice.check().is_ok());
        assert!(alice.check().is_err());
        assert!(bob.check().is_ok() && bob.check().is_ok());
        assert!(bob.check().is_err());
    }
}
