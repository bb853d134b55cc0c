//! What keeps the front standing when clients misbehave: the descriptor
//! budget the connection caps come from, the backoff of a listener whose
//! `accept` fails, and a bounded rate of log lines about refused clients.
//!
//! Every TCP or UNIX connection costs a descriptor, and so does every
//! backend connection, the caps watcher, an upstream's pipes. When
//! unauthenticated TCP connections may take them all, nothing else can be
//! opened: the UNIX socket stops accepting, backends cannot be reached (the
//! bug of issue 12: 20,200 idle connections, `Too many open files`). So the
//! connections of each listener are capped, and the caps are derived from
//! `RLIMIT_NOFILE` minus a [`Budget::reserve`] for everything else; a
//! configured cap must fit the same budget.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::config::Config;

/// Descriptors kept for what is not a client connection: stdio, the
/// listeners, the runtime's epoll and wakers, the caps watcher, the LLM
/// proxy's and HTTP upstreams' sockets, one spare connection the accept
/// loops hold while they wait for a slot.
const FIXED_RESERVE: u64 = 64;
/// Services the reserve counts backend connections for.
const RESERVED_SERVICES: u64 = 16;
/// Descriptors an upstream child costs (stdin, stdout, stderr, pidfd).
const PER_UPSTREAM: u64 = 4;
/// The share of the client descriptors that goes to the UNIX socket when
/// its cap is derived: local clients are few, TCP ones many.
const UNIX_SHARE: u64 = 8;
/// Client connections below this would make a useless gateway: refused at
/// start with the fix.
const MIN_CONNECTIONS: u64 = 8;

/// Raises the soft `RLIMIT_NOFILE` to the hard one (the soft default, 1024,
/// is a relic of `select(2)`; tokio uses epoll) and returns the limit in
/// force. Under systemd `LimitNOFILE=` in the unit sets both; a seccomp
/// filter may refuse `setrlimit`, and then the soft limit stays.
pub fn raise_descriptor_limit() -> io::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: setrlimit reads the struct it is given.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raw const raised) } == 0 {
            limit.rlim_cur = limit.rlim_max;
        } else {
            tracing::debug!(error = %io::Error::last_os_error(), "cannot raise the soft descriptor limit");
        }
    }
    Ok(limit.rlim_cur)
}

/// How the descriptors are shared out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    /// `RLIMIT_NOFILE`.
    pub limit: u64,
    /// Kept for backends, upstreams and the gateway itself.
    pub reserve: u64,
    pub http_connections: usize,
    pub unix_connections: usize,
}

impl Budget {
    /// The budget for `config` under the descriptor limit `limit`. An error
    /// says what to raise or lower.
    pub fn plan(config: &Config, limit: u64) -> Result<Budget, String> {
        let reserve = FIXED_RESERVE
            + RESERVED_SERVICES * config.backend_connections as u64
            + PER_UPSTREAM * config.upstreams.len() as u64;
        let clients = limit.saturating_sub(reserve);
        let unix = config
            .max_unix_connections
            .map_or(clients / UNIX_SHARE, |cap| cap as u64);
        let http = config
            .max_http_connections
            .map_or(clients.saturating_sub(unix), |cap| cap as u64);
        if clients < MIN_CONNECTIONS || unix == 0 || http == 0 || unix + http > clients {
            return Err(format!(
                "the descriptor limit ({limit}) leaves {clients} for clients after {reserve} kept for backends and the gateway itself, \
                 which cannot hold limits.max_http_connections ({http}) and limits.max_unix_connections ({unix}): \
                 raise LimitNOFILE= (ulimit -n) or lower those limits"
            ));
        }
        Ok(Budget {
            limit,
            reserve,
            http_connections: http as usize,
            unix_connections: unix as usize,
        })
    }
}

/// How a listener waits after `accept` failed. Out of descriptors or
/// memory (`EMFILE`, `ENFILE`, `ENOBUFS`, `ENOMEM`), trying again at once
/// spins and fills the log (625 lines in 30 s before): the wait doubles up
/// to a second while it lasts, and one line per [`LOG_EVERY`] says so with
/// the count. A connection that died in the backlog (`ECONNABORTED`) is
/// nobody's problem: next.
#[derive(Debug)]
pub struct AcceptBackoff {
    listener: &'static str,
    delay: Duration,
    failures: u64,
    logged: Option<Instant>,
}

/// At most one line per listener this often about accept failures.
pub const LOG_EVERY: Duration = Duration::from_secs(10);
const FIRST_DELAY: Duration = Duration::from_millis(10);
const MAX_DELAY: Duration = Duration::from_secs(1);

impl AcceptBackoff {
    pub fn new(listener: &'static str) -> AcceptBackoff {
        AcceptBackoff {
            listener,
            delay: FIRST_DELAY,
            failures: 0,
            logged: None,
        }
    }

    /// A connection was accepted: the next failure waits briefly again.
    pub fn succeeded(&mut self) {
        self.delay = FIRST_DELAY;
    }

    /// Waits as long as `error` warrants.
    pub async fn failed(&mut self, error: &io::Error) {
        let exhausted = matches!(
            error.raw_os_error(),
            Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
        );
        if !exhausted {
            tracing::debug!(listener = self.listener, %error, "accept failed");
            return;
        }
        self.failures += 1;
        if self.logged.is_none_or(|at| at.elapsed() >= LOG_EVERY) {
            tracing::warn!(
                listener = self.listener, %error, failures = self.failures,
                "cannot accept connections: out of descriptors; waiting (raise LimitNOFILE= or lower the connection limits)"
            );
            self.logged = Some(Instant::now());
            self.failures = 0;
        }
        tokio::time::sleep(self.delay).await;
        self.delay = (self.delay * 2).min(MAX_DELAY);
    }
}

/// A bounded rate of log lines about refused clients: a client that is
/// refused is worth a line (who, from where, why), but a flood of them
/// must not flood the log. Up to [`RefusalLog::BURST`] lines per
/// [`LOG_EVERY`], then one line saying how many were not logged.
#[derive(Debug, Default)]
pub struct RefusalLog {
    /// Seconds since `epoch` when the current window started, and the lines
    /// in it, packed (window << 16 | count) so that one atomic holds both.
    state: AtomicU64,
    epoch: std::sync::OnceLock<Instant>,
    suppressed: AtomicU64,
}

impl RefusalLog {
    pub const BURST: u64 = 20;

    /// Logs a refused client, at most at this rate: the transport, the
    /// peer, and the reason (never a token).
    pub fn refused(
        &self,
        transport: &str,
        peer: &dyn std::fmt::Display,
        reason: &dyn std::fmt::Display,
    ) {
        let (allowed, missed) = self.admit();
        if missed > 0 {
            tracing::warn!(
                missed,
                "refused clients not logged in the last {} s",
                LOG_EVERY.as_secs()
            );
        }
        if allowed {
            tracing::warn!(transport, %peer, %reason, "refused a client");
        }
    }

    /// Whether this refusal may be logged; when a new window starts, the
    /// count of refusals not logged in the last one is returned too.
    fn admit(&self) -> (bool, u64) {
        let epoch = *self.epoch.get_or_init(Instant::now);
        let window = epoch.elapsed().as_secs() / LOG_EVERY.as_secs();
        let mut current = self.state.load(Ordering::Relaxed);
        loop {
            let (started, count) = (current >> 16, current & 0xffff);
            let (next, allowed) = if started == window {
                (
                    current + u64::from(count < Self::BURST),
                    count < Self::BURST,
                )
            } else {
                ((window << 16) | 1, true)
            };
            match self.state.compare_exchange_weak(
                current,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    let missed = if started != window {
                        self.suppressed.swap(0, Ordering::Relaxed)
                    } else {
                        0
                    };
                    if !allowed {
                        self.suppressed.fetch_add(1, Ordering::Relaxed);
                    }
                    return (allowed, missed);
                }
                Err(actual) => current = actual,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(yaml: &str) -> Config {
        let raw: crate::config::RawConfig = yaml_serde::from_str(yaml).unwrap();
        raw.resolve("test").unwrap()
    }

    #[test]
    fn caps_come_from_the_limit_minus_the_reserve() {
        let budget = Budget::plan(&config("{}"), 65536).unwrap();
        assert_eq!(budget.reserve, 64 + 16 * 4);
        let clients = 65536 - budget.reserve as usize;
        assert_eq!(budget.unix_connections, clients / 8);
        assert_eq!(budget.http_connections + budget.unix_connections, clients);
        let small = Budget::plan(&config("{}"), 256).unwrap();
        assert_eq!((small.http_connections, small.unix_connections), (112, 16));
    }

    #[test]
    fn caps_that_do_not_fit_are_refused_with_the_fix() {
        let error =
            Budget::plan(&config("limits: {max_http_connections: 5000}"), 1024).unwrap_err();
        assert!(error.contains("raise LimitNOFILE="), "{error}");
        assert!(Budget::plan(&config("{}"), 100).is_err());
        let fits = Budget::plan(
            &config("limits: {max_http_connections: 100, max_unix_connections: 20}"),
            1024,
        )
        .unwrap();
        assert_eq!((fits.http_connections, fits.unix_connections), (100, 20));
    }

    #[test]
    fn refusals_are_logged_at_a_bounded_rate() {
        let log = RefusalLog::default();
        let allowed = (0..1000).filter(|_| log.admit().0).count() as u64;
        assert_eq!(allowed, RefusalLog::BURST);
    }
}
