//! Delegation and the caller block: a delegate (a UNIX peer named in
//! `auth.delegates`, the agent) may run a request as another client with
//! `_meta["llmbasedos/on_behalf_of"]`; a `wants_caller` service learns
//! who calls from `_meta["llmbasedos/caller"]`.

use std::sync::Arc;

use proto::mcp;
use serde_json::{Value, json};

use super::rights::log_refusal;
use super::{Gateway, Session};
use crate::licensing::Refusal;

pub(crate) use proto::mcp::meta_key::{CALLER, ON_BEHALF_OF};

/// Puts the calling client into a backend call's `_meta` (object params
/// only; positional ones carry no `_meta`).
pub(super) fn add_caller(session: &Session, params: &mut Option<Value>) {
    let params = params.get_or_insert_with(|| Value::Object(mcp::JsonObject::new()));
    let Value::Object(object) = params else {
        return;
    };
    let meta = object
        .entry("_meta")
        .or_insert_with(|| Value::Object(mcp::JsonObject::new()));
    if let Value::Object(meta) = meta {
        meta.insert(
            CALLER.to_owned(),
            json!({
                "client": session.identity(),
                "tier": session.client().map(|client| client.tier().name.clone()),
            }),
        );
    }
}

impl Gateway {
    /// A request with `_meta["llmbasedos/on_behalf_of"]`: only a UNIX peer
    /// named in `auth.delegates` may send it, the delegate's own rights are
    /// checked first, and the request then runs as the named client (its
    /// rights, its bucket, its quotas): never more than the delegate's own.
    /// From anyone else it is refused when licensing is on, and ignored
    /// (the request runs as its sender) when it is off. Naming the sender's
    /// own identity is no delegation at all: accepted from anyone, as if
    /// nothing were named (the agent started by a client with its own uid,
    /// luca-shell as llmuser, say, passes that uid on).
    pub(super) fn delegated(
        &self,
        session: &Arc<Session>,
        name: &str,
        params: Option<&Value>,
        on_behalf_of: &Value,
    ) -> Result<Arc<Session>, Refusal> {
        if on_behalf_of.as_str() == Some(session.identity()) {
            return Ok(session.clone());
        }
        let delegate = session
            .identity()
            .strip_prefix("uid:")
            .and_then(|uid| uid.parse::<u32>().ok())
            .filter(|uid| self.config.delegates.contains(uid));
        let refuse = |reason: String| {
            let refusal = Refusal::Delegation { reason };
            if let Some(client) = session.client() {
                log_refusal(client, name, params, &refusal);
            } else {
                tracing::info!(client = %proto::text::escaped(session.identity()), path = %proto::text::escaped(name), reason = "delegation refused", "refused");
            }
            refusal
        };
        if delegate.is_none() && self.licensing.is_none() {
            // Without a licence there are no rights to gain and none to
            // lose: the request runs as its sender (its own slots and
            // identity), as if it named no one. A non-delegate never gains
            // anything from `on_behalf_of`.
            tracing::debug!(client = %proto::text::escaped(session.identity()), path = %proto::text::escaped(name), "on_behalf_of from a non-delegate ignored: licensing is off");
            return Ok(session.clone());
        }
        if delegate.is_none() {
            return Err(refuse(not_a_delegate(
                session.identity(),
                &on_behalf_of
                    .as_str()
                    .map_or_else(|| proto::text::echo_value(on_behalf_of), str::to_owned),
            )));
        }
        let Some(identity) = on_behalf_of
            .as_str()
            .filter(|identity| !identity.is_empty())
        else {
            return Err(refuse(format!(
                "_meta[\"{ON_BEHALF_OF}\"] must be the client's identity, e.g. \"token:alice\" or \"uid:1000\""
            )));
        };
        // The delegate's own rights first.
        self.authorize(session, name, params)?;
        let client = self
            .licensing
            .as_ref()
            .map(|licensing| licensing.client(identity));
        Ok(session.on_behalf_of(identity.to_owned(), client))
    }
}

/// Why `identity`, not in `auth.delegates`, may not act for another
/// client, and the exact fix: a UNIX peer is named by its user name when it
/// has one (the packaged agent runs as llmuser: `auth.delegates: [llmuser]`).
fn not_a_delegate(identity: &str, for_whom: &str) -> String {
    let Some(uid) = identity
        .strip_prefix("uid:")
        .and_then(|uid| uid.parse::<u32>().ok())
    else {
        return format!(
            "{} may not act on behalf of {}: only UNIX peers named in gateway.yaml's auth.delegates may send _meta[\"{ON_BEHALF_OF}\"]",
            proto::text::echo(identity),
            proto::text::echo(for_whom)
        );
    };
    let user = user_name(uid).unwrap_or_else(|| uid.to_string());
    format!(
        "{} ({}) may not act on behalf of {}: it is not a delegate; to let it (the agent server running a workflow another client started), add `auth.delegates: [{}]` to gateway.yaml and restart the gateway",
        proto::text::echo(identity),
        proto::text::echo(&user),
        proto::text::echo(for_whom),
        proto::text::echo(&user)
    )
}

/// A uid's user name, by `getpwuid_r`; `None` for a uid without one.
fn user_name(uid: u32) -> Option<String> {
    let mut buffer = vec![0 as libc::c_char; 4096];
    loop {
        // SAFETY: an all-zero passwd is a valid value to be overwritten.
        let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
        let mut found: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the call; the strings the entry
        // points to live in `buffer`, which outlives the read below.
        let status = unsafe {
            libc::getpwuid_r(
                uid,
                &mut entry,
                buffer.as_mut_ptr(),
                buffer.len(),
                &mut found,
            )
        };
        if status == libc::ERANGE && buffer.len() < 1 << 20 {
            buffer.resize(buffer.len() * 2, 0);
            continue;
        }
        if status != 0 || found.is_null() || entry.pw_name.is_null() {
            return None;
        }
        // SAFETY: pw_name is a NUL-terminated string inside `buffer`.
        let name = unsafe { std::ffi::CStr::from_ptr(entry.pw_name) };
        return name.to_str().ok().map(str::to_owned);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wants_caller_service_learns_who_calls() {
        let permits = Arc::new(tokio::sync::Semaphore::new(1));
        let session = Session::new(
            "token:alice".to_owned(),
            tokio::sync::mpsc::channel(1).0,
            permits,
            None,
            None,
        );
        let mut params = Some(json!({"text": "x", "_meta": {"progressToken": 1}}));
        add_caller(&session, &mut params);
        let params = params.expect("params");
        assert_eq!(params["_meta"][CALLER]["client"], "token:alice");
        assert_eq!(params["_meta"]["progressToken"], 1);
        assert_eq!(params["text"], "x");
        let mut none = None;
        add_caller(&session, &mut none);
        assert_eq!(
            none.expect("made")["_meta"][CALLER]["client"],
            "token:alice"
        );
        let mut positional = Some(json!(["a"]));
        add_caller(&session, &mut positional);
        assert_eq!(positional, Some(json!(["a"])));
    }
}
