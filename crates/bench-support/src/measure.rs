//! Timing loops and their figures, one way for every benchmark.

use std::sync::Barrier;
use std::time::{Duration, Instant};

/// p50/p99 of a set of timed calls, how many and how fast.
#[derive(Clone, Copy, Debug)]
pub struct Figures {
    pub p50: Duration,
    pub p99: Duration,
    pub calls: usize,
    /// Calls over the wall-clock time they took together.
    pub per_second: f64,
}

impl Figures {
    /// The figures of `samples`, taken over `elapsed` of wall-clock time.
    pub fn of(mut samples: Vec<Duration>, elapsed: Duration) -> Figures {
        assert!(!samples.is_empty(), "no samples to take figures of");
        samples.sort_unstable();
        Figures {
            p50: percentile(&samples, 0.50),
            p99: percentile(&samples, 0.99),
            calls: samples.len(),
            per_second: samples.len() as f64 / elapsed.as_secs_f64(),
        }
    }
}

/// The sample at `fraction` (0 to 1) of `sorted`, nearest rank.
pub fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let index = ((sorted.len() as f64 - 1.0) * fraction).round() as usize;
    sorted[index]
}

pub fn micros(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e6
}

/// Sequential round trips: `warmup` untimed, then `calls` timed one by one.
pub fn sequential(warmup: usize, calls: usize, mut round_trip: impl FnMut()) -> Figures {
    for _ in 0..warmup {
        round_trip();
    }
    let mut samples = Vec::with_capacity(calls);
    let started = Instant::now();
    for _ in 0..calls {
        let start = Instant::now();
        round_trip();
        samples.push(start.elapsed());
    }
    Figures::of(samples, started.elapsed())
}

/// Clients connected up front, each calling sequentially on its own thread
/// from a common start line; returns the figures and the clients (still
/// connected, e.g. to measure memory under load).
pub fn concurrent<C: Send>(
    clients: Vec<C>,
    calls_per_client: usize,
    round_trip: impl Fn(&mut C) + Sync,
) -> (Figures, Vec<C>) {
    let start_line = Barrier::new(clients.len() + 1);
    std::thread::scope(|scope| {
        let threads: Vec<_> = clients
            .into_iter()
            .map(|mut client| {
                let (start_line, round_trip) = (&start_line, &round_trip);
                scope.spawn(move || {
                    start_line.wait();
                    let samples: Vec<Duration> = (0..calls_per_client)
                        .map(|_| {
                            let start = Instant::now();
                            round_trip(&mut client);
                            start.elapsed()
                        })
                        .collect();
                    (samples, client)
                })
            })
            .collect();
        start_line.wait();
        let started = Instant::now();
        let mut samples = Vec::with_capacity(threads.len() * calls_per_client);
        let mut clients = Vec::with_capacity(threads.len());
        for thread in threads {
            let (own, client) = thread.join().expect("a client thread failed");
            samples.extend(own);
            clients.push(client);
        }
        (Figures::of(samples, started.elapsed()), clients)
    })
}

/// Whether this is a smoke run: `cargo bench` passes `--bench`, `cargo
/// test --benches` (and `--all-targets`) does not. A smoke run takes every
/// path on small data, so a benchmark cannot rot.
pub fn smoke() -> bool {
    !std::env::args().any(|argument| argument == "--bench")
}

/// A count from the environment, `default` when unset or not a number.
pub fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_are_nearest_rank_percentiles() {
        let samples: Vec<Duration> = (1..=100).rev().map(Duration::from_micros).collect();
        let figures = Figures::of(samples, Duration::from_millis(50));
        assert_eq!(figures.p50, Duration::from_micros(51));
        assert_eq!(figures.p99, Duration::from_micros(99));
        assert_eq!(figures.calls, 100);
        assert!((figures.per_second - 2000.0).abs() < 1e-6);
        let one = [Duration::from_micros(7)];
        assert_eq!(percentile(&one, 0.99), Duration::from_micros(7));
    }
}
