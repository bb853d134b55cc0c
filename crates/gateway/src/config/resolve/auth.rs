//! `auth`: the bearer tokens (their SHA-256 checked), the UNIX groups
//! and the delegates, by name or number, resolved on this system.

use super::super::{ConfigError, RawToken, Token, UserRef};
use super::Error;

/// `auth.tokens`: each a name and a 32-byte digest.
pub(super) fn tokens(raw: Vec<RawToken>, error: Error<'_>) -> Result<Vec<Token>, ConfigError> {
    let mut tokens = Vec::with_capacity(raw.len());
    for (index, token) in raw.into_iter().enumerate() {
        let key = format!("auth.tokens[{index}].sha256");
        let digest = hex::decode(token.sha256.trim())
            .ok()
            .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
            .ok_or_else(|| {
                error(&key, "must be 64 hex digits: the SHA-256 of the token (llmbasedos-gateway hash-token prints it)".to_owned())
            })?;
        if token.name.trim().is_empty() {
            return Err(error(
                &format!("auth.tokens[{index}].name"),
                "must name who holds the token".to_owned(),
            ));
        }
        tokens.push(Token {
            name: token.name,
            sha256: digest,
            tier: token.tier,
        });
    }
    Ok(tokens)
}

/// `auth.unix_allowed_groups`: gids, by name or number.
pub(super) fn groups(raw: &[String], error: Error<'_>) -> Result<Vec<u32>, ConfigError> {
    let mut unix_allowed_gids = Vec::new();
    for (index, group) in raw.iter().enumerate() {
        let gid = resolve_group(group).ok_or_else(|| {
            error(
                &format!("auth.unix_allowed_groups[{index}]"),
                format!("no group {group:?} on this system (create it, or give a gid)"),
            )
        })?;
        unix_allowed_gids.push(gid);
    }
    Ok(unix_allowed_gids)
}

/// `auth.delegates`: uids, by user name or number.
pub(super) fn delegates(raw: &[UserRef], error: Error<'_>) -> Result<Vec<u32>, ConfigError> {
    let mut delegates = Vec::new();
    for (index, user) in raw.iter().enumerate() {
        let uid = match user {
            UserRef::Uid(uid) => *uid,
            UserRef::Name(name) => resolve_user(name).ok_or_else(|| {
                error(
                    &format!("auth.delegates[{index}]"),
                    format!(
                        "no user {:?} on this system (create it, or give a uid)",
                        proto::text::echo(name)
                    ),
                )
            })?,
        };
        delegates.push(uid);
    }
    Ok(delegates)
}

fn resolve_group(group: &str) -> Option<u32> {
    if let Ok(gid) = group.parse() {
        return Some(gid);
    }
    let name = std::ffi::CString::new(group).ok()?;
    // SAFETY: getgrnam reads a NUL-terminated name; the result is only read
    // before any other getgr* call on this thread.
    let entry = unsafe { libc::getgrnam(name.as_ptr()) };
    // SAFETY: a non-null result points to a valid group entry.
    (!entry.is_null()).then(|| unsafe { (*entry).gr_gid })
}

/// A user name's uid (a number is a uid as written), by `getpwnam_r`.
fn resolve_user(user: &str) -> Option<u32> {
    if let Ok(uid) = user.parse() {
        return Some(uid);
    }
    let name = std::ffi::CString::new(user).ok()?;
    let mut buffer = vec![0 as libc::c_char; 4096];
    loop {
        // SAFETY: an all-zero passwd is a valid value to be overwritten.
        let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
        let mut found: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the call; the strings the
        // entry points to live in `buffer`, which outlives the read below.
        let status = unsafe {
            libc::getpwnam_r(
                name.as_ptr(),
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
        return (status == 0 && !found.is_null()).then_some(entry.pw_uid);
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{RawConfig, hash_token};

    #[test]
    fn delegates_are_uids_or_user_names() {
        // root is uid 0 on every system this runs on.
        let raw = RawConfig::parse("auth: {delegates: [1000, root, \"4242\"]}", "g.yaml")
            .expect("parses");
        let config = raw.resolve("g.yaml").expect("resolves");
        assert_eq!(config.delegates, [1000, 0, 4242]);
        let raw = RawConfig::parse("auth: {delegates: [0, no-such-user-here]}", "g.yaml")
            .expect("parses");
        let error = raw.resolve("g.yaml").expect_err("unknown user").to_string();
        assert!(
            error.contains("auth.delegates[1]")
                && error.contains("no user \"no-such-user-here\"")
                && error.contains("give a uid"),
            "{error}"
        );
    }

    #[test]
    fn tokens_are_checked_against_their_hash_and_no_auth_needs_loopback() {
        let hash = hex::encode(hash_token("s3cret"));
        let text =
            format!("listen: 0.0.0.0:8000\nauth: {{tokens: [{{name: desktop, sha256: {hash}}}]}}");
        let mut config = RawConfig::parse(&text, "g")
            .and_then(|raw| raw.resolve("g"))
            .expect("valid");
        assert_eq!(config.token_holder("s3cret"), Some("desktop"));
        assert_eq!(config.token_holder("s3cret "), None);
        assert!(config.allow_no_auth().is_err());
        let mut local = RawConfig::default().resolve("g").expect("defaults");
        assert!(local.allow_no_auth().is_ok());
    }
}
