//! Restarting what stopped: `llmbasedos up`'s child servers and the
//! gateway's upstream MCP servers. Something that fails soon after it
//! started is started again after a delay that doubles with each such
//! failure, up to a cap, so a crash loop costs little; once a run lasted
//! long enough to count as healthy, the next restart comes quickly again.

use std::future::Future;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

/// The restart schedule. After a run shorter than `healthy_after` the
/// delay doubles (from `first`: 2, 4, 8… × `first`) up to `max`; after a
/// longer one it is `first` again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    healthy_after: Duration,
    current: Duration,
}

impl Backoff {
    pub const fn new(first: Duration, max: Duration, healthy_after: Duration) -> Backoff {
        Backoff {
            first,
            max,
            healthy_after,
            current: first,
        }
    }

    /// The delay before starting again something that stopped after
    /// running for `ran`.
    pub fn after_run(&mut self, ran: Duration) -> Duration {
        self.current = if ran >= self.healthy_after {
            self.first
        } else {
            (self.current * 2).min(self.max)
        };
        self.current
    }
}

/// What a supervised attempt asks for when it ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Start it again, after the backoff's delay.
    Restart,
    /// Do not (the stack is stopping, or starting again cannot help).
    Stop,
}

/// Runs one thing again and again with a [`Backoff`] between the runs,
/// until an attempt says [`Next::Stop`] or `stop` is cancelled.
#[derive(Debug)]
pub struct Supervisor {
    name: String,
    backoff: Backoff,
    stop: CancellationToken,
}

impl Supervisor {
    /// `name` says in the log what is restarted.
    pub fn new(name: impl Into<String>, backoff: Backoff, stop: CancellationToken) -> Supervisor {
        Supervisor {
            name: name.into(),
            backoff,
            stop,
        }
    }

    /// Runs `attempt` until it says [`Next::Stop`] or the stop token is
    /// cancelled. A running attempt is not interrupted (stopping it well,
    /// with a drain, is its own business); the wait between two attempts
    /// ends at once on the stop.
    pub async fn run<Attempt, Running>(mut self, mut attempt: Attempt)
    where
        Attempt: FnMut() -> Running,
        Running: Future<Output = Next>,
    {
        loop {
            let started = Instant::now();
            if attempt().await == Next::Stop || self.stop.is_cancelled() {
                return;
            }
            let delay = self.backoff.after_run(started.elapsed());
            tracing::info!("{}: restarting in {} s", self.name, delay.as_secs_f32());
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = self.stop.cancelled() => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn quick_failures_double_the_delay_up_to_the_cap_and_a_healthy_run_resets_it() {
        let mut backoff = Backoff::new(SECOND, 60 * SECOND, 30 * SECOND);
        let quick = Duration::from_millis(100);
        let schedule: Vec<u64> = (0..8).map(|_| backoff.after_run(quick).as_secs()).collect();
        assert_eq!(schedule, [2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(backoff.after_run(30 * SECOND), SECOND, "a healthy run");
        assert_eq!(backoff.after_run(quick), 2 * SECOND, "growing again");
        assert_eq!(
            backoff.after_run(29 * SECOND),
            4 * SECOND,
            "not yet healthy"
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn the_supervisor_restarts_until_told_to_stop_and_the_stop_ends_its_wait() {
        let stop = CancellationToken::new();
        let quick = Backoff::new(Duration::from_millis(1), Duration::from_millis(4), SECOND);
        let mut attempts = 0;
        Supervisor::new("test", quick, stop.clone())
            .run(|| {
                attempts += 1;
                let next = if attempts < 5 {
                    Next::Restart
                } else {
                    Next::Stop
                };
                async move { next }
            })
            .await;
        assert_eq!(attempts, 5, "restarted until an attempt said Stop");

        // A wait of an hour after the first attempt: only the stop ends it.
        let slow = Backoff::new(3600 * SECOND, 3600 * SECOND, 7200 * SECOND);
        let attempts = std::sync::atomic::AtomicUsize::new(0);
        let (started, mut starts) = tokio::sync::mpsc::unbounded_channel();
        let running = Supervisor::new("test", slow, stop.clone()).run(|| {
            attempts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let _ = started.send(());
            async { Next::Restart }
        });
        let stop_after_the_first = async {
            starts.recv().await;
            stop.cancel();
        };
        tokio::time::timeout(10 * SECOND, async {
            tokio::join!(running, stop_after_the_first)
        })
        .await
        .expect("the stop ended the wait between attempts");
        assert_eq!(attempts.load(std::sync::atomic::Ordering::Relaxed), 1);
    }
}
