//! One-time sign-in tokens. `llmbasedos web` (and `llmbasedos up`) mint
//! one: 32 random bytes, of which only the SHA-256 and the expiry are
//! written, as a file named by the hash in the console's bootstrap
//! directory. The token itself goes only into the printed URL's fragment
//! (`#t=…`), which browsers never send in a request line; the page's
//! script posts it to `/session`. Redeeming removes the file, so a token
//! works once, and only within [`LIFETIME`].

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

/// How long a minted token may be redeemed.
pub const LIFETIME: Duration = Duration::from_secs(300);
/// The files' suffix.
const SUFFIX: &str = ".token";

/// A freshly minted token.
pub struct Minted {
    /// 64 hex digits. Never log it.
    pub token: String,
    pub expires: SystemTime,
}

impl std::fmt::Debug for Minted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Minted")
            .field("token", &"<hidden>")
            .field("expires", &self.expires)
            .finish()
    }
}

impl Minted {
    /// The one-time URL for a console listening at `base`
    /// (`http://127.0.0.1:8081`).
    pub fn url(&self, base: &str) -> String {
        format!("{}/#t={}", base.trim_end_matches('/'), self.token)
    }
}

/// Why a token could not be minted or redeemed.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error(
        "cannot write to the bootstrap directory {dir}: {error}; run as a user who may (root or the console's group), or give the console's bootstrap_dir"
    )]
    Directory { dir: PathBuf, error: std::io::Error },
    #[error("cannot make a random token: {0}")]
    Random(String),
    /// Unknown, already used, or malformed: the same answer for each.
    #[error("this sign-in link is unknown or was used already; run `llmbasedos web` for a new one")]
    Unknown,
    #[error("this sign-in link expired (links last 5 minutes); run `llmbasedos web` for a new one")]
    Expired,
}

fn hash_name(token: &str) -> String {
    format!("{}{SUFFIX}", hex::encode(Sha256::digest(token.as_bytes())))
}

fn seconds(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

/// Mints a token valid for [`LIFETIME`], in `dir` (created 0700 if
/// missing). Expired tokens found there are removed.
pub fn mint(dir: &Path) -> Result<Minted, BootstrapError> {
    mint_at(dir, SystemTime::now())
}

fn mint_at(dir: &Path, now: SystemTime) -> Result<Minted, BootstrapError> {
    let directory = |error| BootstrapError::Directory {
        dir: dir.to_owned(),
        error,
    };
    if !dir.exists() {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(directory)?;
    }
    prune(dir, now);
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|error| BootstrapError::Random(error.to_string()))?;
    let token = hex::encode(bytes);
    let expires = now + LIFETIME;
    let name = hash_name(&token);
    // Written under a temporary name and renamed: the console never sees
    // half a file.
    let temporary = dir.join(format!(".{name}.tmp"));
    {
        use std::os::unix::fs::OpenOptionsExt;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o640)
            .open(&temporary)
            .map_err(directory)?;
        writeln!(file, "{}", seconds(expires)).map_err(directory)?;
        file.sync_all().map_err(directory)?;
    }
    std::fs::rename(&temporary, dir.join(&name)).map_err(directory)?;
    Ok(Minted { token, expires })
}

/// Redeems `token`: on success its file is gone, so a second use fails.
pub fn redeem(dir: &Path, token: &str) -> Result<(), BootstrapError> {
    redeem_at(dir, token, SystemTime::now())
}

fn redeem_at(dir: &Path, token: &str, now: SystemTime) -> Result<(), BootstrapError> {
    if token.len() != 64 || !token.bytes().all(|byte| byte.is_ascii_hexdigit()) {
        return Err(BootstrapError::Unknown);
    }
    let path = dir.join(hash_name(&token.to_ascii_lowercase()));
    let text = std::fs::read_to_string(&path).map_err(|_| BootstrapError::Unknown)?;
    // Whoever removes the file has redeemed it; a second request racing
    // this one fails here.
    std::fs::remove_file(&path).map_err(|_| BootstrapError::Unknown)?;
    let expires: u64 = text.trim().parse().map_err(|_| BootstrapError::Unknown)?;
    if seconds(now) >= expires {
        return Err(BootstrapError::Expired);
    }
    Ok(())
}

/// Removes the files of expired tokens (best effort).
fn prune(dir: &Path, now: SystemTime) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|ext| ext == "token")
            && let Ok(text) = std::fs::read_to_string(&path)
            && text
                .trim()
                .parse::<u64>()
                .is_ok_and(|expires| expires <= seconds(now))
        {
            let _ = std::fs::remove_file(&path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_works_once() {
        let dir = tempfile::tempdir().expect("dir");
        let minted = mint(dir.path()).expect("mint");
        assert_eq!(minted.token.len(), 64);
        assert!(
            minted
                .url("http://127.0.0.1:8081")
                .starts_with("http://127.0.0.1:8081/#t=")
        );
        // Only the hash is on disk.
        for entry in std::fs::read_dir(dir.path()).expect("list") {
            let text = std::fs::read_to_string(entry.expect("entry").path()).expect("read");
            assert!(!text.contains(&minted.token));
        }
        redeem(dir.path(), &minted.token).expect("first use");
        assert!(matches!(
            redeem(dir.path(), &minted.token),
            Err(BootstrapError::Unknown)
        ));
    }

    #[test]
    fn an_expired_or_made_up_token_is_refused() {
        let dir = tempfile::tempdir().expect("dir");
        let then = SystemTime::now() - Duration::from_secs(301);
        let minted = mint_at(dir.path(), then).expect("mint");
        assert!(matches!(
            redeem(dir.path(), &minted.token),
            Err(BootstrapError::Expired)
        ));
        assert!(matches!(
            redeem(dir.path(), "../../etc/passwd"),
            Err(BootstrapError::Unknown)
        ));
        assert!(matches!(
            redeem(dir.path(), &"0".repeat(64)),
            Err(BootstrapError::Unknown)
        ));
    }
}
