//! `llmbasedos licence`: keys made, a licence issued and verified with the
//! binary, as an owner or a vendor does; a wrong key, a tampered licence
//! and an expired one fail verification and say why.

use std::path::Path;
use std::process::{Command, Output};

fn llmbasedos(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_llmbasedos"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run llmbasedos")
}

const TIERS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../config/licence_tiers.yaml"
);

fn verify(dir: &Path, licence: &str, keys: &str) -> (bool, String) {
    let out = llmbasedos(
        dir,
        &[
            "licence",
            "verify",
            licence,
            "--keys-dir",
            keys,
            "--tiers",
            TIERS,
        ],
    );
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn keygen_issue_verify() {
    let dir = tempfile::tempdir().expect("dir");
    let dir = dir.path();
    for name in ["vendor", "other"] {
        assert!(
            llmbasedos(dir, &["licence", "keygen", name])
                .status
                .success()
        );
    }
    // keygen never overwrites a key.
    assert!(
        !llmbasedos(dir, &["licence", "keygen", "vendor"])
            .status
            .success()
    );
    std::fs::create_dir(dir.join("keys")).expect("keys");
    std::fs::copy(dir.join("vendor.pub"), dir.join("keys/vendor.pub")).expect("trust");
    let issue = |key: &str, expires: &str, out: &str| {
        let status = llmbasedos(
            dir,
            &[
                "licence",
                "issue",
                "--key",
                key,
                "--tier",
                "PRO",
                "--licensee",
                "ACME",
                "--expires",
                expires,
                "--out",
                out,
            ],
        );
        assert!(status.status.success(), "{status:?}");
    };
    issue("vendor.key", "2099-12-31", "good.key");
    issue("other.key", "2099-12-31", "foreign.key");
    issue("vendor.key", "2001-01-01", "expired.key");
    let (ok, said) = verify(dir, "good.key", "keys");
    assert!(ok && said.starts_with("PRO:"), "{said}");
    let (ok, said) = verify(dir, "foreign.key", "keys");
    assert!(!ok && said.contains("not trusted"), "{said}");
    let (ok, said) = verify(dir, "expired.key", "keys");
    assert!(!ok && said.contains("expired"), "{said}");
    // Tampered: one character of the signed terms changed.
    let text = std::fs::read_to_string(dir.join("good.key")).expect("licence");
    let at = text.find("\"terms\": \"").expect("terms") + 12;
    let mut bytes = text.into_bytes();
    bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
    std::fs::write(dir.join("tampered.key"), bytes).expect("tampered");
    let (ok, said) = verify(dir, "tampered.key", "keys");
    assert!(!ok && said.starts_with("FREE:"), "{said}");
    let (ok, said) = verify(dir, "missing.key", "keys");
    assert!(!ok && said.contains("no licence"), "{said}");
}
