//! Sessions: a random id in an `HttpOnly; SameSite=Strict` cookie, kept
//! here only as its SHA-256, each with its own CSRF token that the pages
//! carry in a `<meta>` element and the script sends back in
//! [`CSRF_HEADER`] on every state-changing request.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The session cookie's name.
pub const COOKIE: &str = "llmbasedos_session";
/// The header a state-changing request carries its CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// Most sessions kept at once; the least recently used goes first.
const MAX_SESSIONS: usize = 64;

#[derive(Debug)]
struct Entry {
    csrf: String,
    last_used: Instant,
}

/// A valid session, as a handler sees it.
#[derive(Clone, Debug)]
pub struct Session {
    pub csrf: String,
}

/// Every live session.
#[derive(Debug)]
pub struct Sessions {
    idle: Duration,
    entries: Mutex<HashMap<[u8; 32], Entry>>,
}

fn random_hex() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the kernel's random source");
    hex::encode(bytes)
}

fn key(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

impl Sessions {
    pub fn new(idle: Duration) -> Sessions {
        Sessions {
            idle,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Entry>> {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Opens a session: its cookie value (never logged) and CSRF token.
    pub fn open(&self) -> (String, Session) {
        let id = random_hex();
        let csrf = random_hex();
        let mut entries = self.entries();
        let now = Instant::now();
        entries.retain(|_, entry| now.duration_since(entry.last_used) < self.idle);
        if entries.len() >= MAX_SESSIONS
            && let Some(oldest) = entries
                .iter()
                .min_by_key(|(_, entry)| entry.last_used)
                .map(|(key, _)| *key)
        {
            entries.remove(&oldest);
        }
        entries.insert(
            key(&id),
            Entry {
                csrf: csrf.clone(),
                last_used: now,
            },
        );
        (id, Session { csrf })
    }

    /// The session of a cookie value, touched, if it is live.
    pub fn find(&self, id: &str) -> Option<Session> {
        let mut entries = self.entries();
        let key = key(id);
        let now = Instant::now();
        let entry = entries.get_mut(&key)?;
        if now.duration_since(entry.last_used) >= self.idle {
            entries.remove(&key);
            return None;
        }
        entry.last_used = now;
        Some(Session {
            csrf: entry.csrf.clone(),
        })
    }

    /// Whether any session was used within `within`.
    pub fn any_used_within(&self, within: Duration) -> bool {
        let now = Instant::now();
        self.entries()
            .values()
            .any(|entry| now.duration_since(entry.last_used) < within.min(self.idle))
    }

    /// Ends a session.
    pub fn close(&self, id: &str) {
        self.entries().remove(&key(id));
    }
}

impl Session {
    /// Whether `presented` is this session's CSRF token (constant time).
    pub fn csrf_matches(&self, presented: &str) -> bool {
        self.csrf.len() == presented.len()
            && bool::from(self.csrf.as_bytes().ct_eq(presented.as_bytes()))
    }
}

/// The session id in a `Cookie` header, if any.
pub fn cookie_value(header: &str) -> Option<&str> {
    header.split(';').find_map(|pair| {
        let (name, value) = pair.trim().split_once('=')?;
        (name == COOKIE).then_some(value)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_is_found_by_its_cookie_and_expires() {
        let sessions = Sessions::new(Duration::from_millis(200));
        let (id, session) = sessions.open();
        let header = format!("other=1; {COOKIE}={id}");
        assert_eq!(cookie_value(&header), Some(id.as_str()));
        let found = sessions.find(&id).expect("live");
        assert!(found.csrf_matches(&session.csrf));
        assert!(!found.csrf_matches("x"));
        assert!(sessions.find("nope").is_none());
        std::thread::sleep(Duration::from_millis(250));
        assert!(sessions.find(&id).is_none());
    }
}
