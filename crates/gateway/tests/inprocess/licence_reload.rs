//! The licence read again while the gateway runs: installing a licence
//! upgrades running sessions from FREE without a restart; a broken new
//! file keeps the licence in force and says so; a FREE client's refusal
//! says how to get further.

use std::path::Path;

use gateway::config::{RawConfig, RawLicence};
use serde_json::{Value, json};

use super::support::{DispatcherClient, Era, Stack};
use super::wait_for;

const TIERS: &str = r#"
tiers:
  FREE:
    allow: []
  ELITE:
    allow: ["*"]
"#;

/// A stack whose keys directory trusts `issuer` and whose lic.key does
/// not exist yet: the machine runs FREE.
fn unlicensed(dir: &Path, issuer: &licence::Issuer) -> Stack {
    let keys = dir.join("keys");
    std::fs::create_dir_all(&keys).expect("keys dir");
    std::fs::write(keys.join("vendor.pub"), issuer.public_text()).expect("public key");
    std::fs::write(dir.join("tiers.yaml"), TIERS).expect("tiers");
    let dir = dir.to_owned();
    Stack::configured(&[], move |raw: &mut RawConfig| {
        raw.licence = Some(RawLicence {
            key: Some(dir.join("lic.key")),
            keys_dir: Some(keys),
            tiers: Some(dir.join("tiers.yaml")),
            state_dir: Some(dir.join("state")),
            ..RawLicence::default()
        });
    })
}

fn elite(issuer: &licence::Issuer) -> String {
    issuer.issue(&licence::Terms {
        tier: "ELITE".to_owned(),
        licensee: "the reload test".to_owned(),
        issued: chrono::Utc::now() - chrono::Duration::days(1),
        expires: Some(chrono::Utc::now() + chrono::Duration::days(30)),
        features: Vec::new(),
    })
}

/// Installs `text` as lic.key the way an owner's tools do: written aside,
/// renamed in.
fn install(dir: &Path, text: &str) {
    let aside = dir.join("lic.key.new");
    std::fs::write(&aside, text).expect("write the licence");
    std::fs::rename(&aside, dir.join("lic.key")).expect("rename the licence in");
}

async fn echo(client: &mut DispatcherClient) -> Value {
    client
        .request("mcp.test.echo", Some(json!({"text": "x"})))
        .await
}

#[tokio::test]
async fn installing_a_licence_upgrades_running_sessions_and_a_broken_one_keeps_it() {
    let dir = tempfile::tempdir().expect("dir");
    let issuer = licence::Issuer::generate().expect("a key");
    let stack = unlicensed(dir.path(), &issuer);
    let licensing = stack.gateway.licensing().expect("licensed").clone();
    tokio::spawn(licensing.clone().watch());
    // Long-lived sessions (a UNIX connection, a WebSocket): opened FREE.
    let mut plain = DispatcherClient::open_as(&stack.gateway, Era::Plain, "uid:5151").await;
    let mut modern = DispatcherClient::open_as(&stack.gateway, Era::Modern, "uid:5252").await;

    // FREE, and the refusal says exactly how to get further.
    let refused = echo(&mut plain).await;
    assert_eq!(refused["error"]["code"], -32002, "{refused}");
    let message = refused["error"]["message"].as_str().expect("a message");
    assert!(
        message.contains("install a licence: put a signed lic.key at")
            && message.contains(&dir.path().join("lic.key").display().to_string())
            && message.contains("remove the `licence:` section from gateway.yaml"),
        "{message}"
    );
    let further = refused["error"]["data"]["how_to_get_further"]
        .as_str()
        .expect("the data says it too");
    assert!(message.ends_with(further), "{refused}");
    let tool = modern
        .request(
            "tools/call",
            Some(json!({"name": "test_echo", "arguments": {"text": "x"}})),
        )
        .await;
    assert_eq!(tool["result"]["isError"], true, "{tool}");
    let text = tool["result"]["content"][0]["text"].as_str().expect("text");
    assert!(text.contains("install a licence"), "{text}");
    let check = plain.request("mcp.licence.check", None).await;
    assert_eq!(check["result"]["standing"], "missing", "{check}");
    assert!(
        check["result"]["how_to_get_further"]
            .as_str()
            .is_some_and(|further| further.contains("remove the `licence:` section")),
        "{check}"
    );

    // A licence installed: the same sessions are ELITE, without a restart.
    install(dir.path(), &elite(&issuer));
    wait_for("the licence to be read again", || async {
        licensing.current().machine.name == "ELITE"
    })
    .await;
    let allowed = echo(&mut plain).await;
    assert_eq!(allowed["result"], json!({"text": "x"}), "{allowed}");
    let tool = modern
        .request(
            "tools/call",
            Some(json!({"name": "test_echo", "arguments": {"text": "x"}})),
        )
        .await;
    assert_eq!(
        tool["result"]["structuredContent"],
        json!({"text": "x"}),
        "{tool}"
    );
    let check = modern.request("mcp.licence.check", None).await;
    assert_eq!(check["result"]["tier"], "ELITE", "{check}");
    assert_eq!(check["result"]["standing"], "valid", "{check}");

    // A broken new file: the licence in force stays, and the check says why.
    install(dir.path(), "{\"this is\": \"not a licence\"}");
    wait_for("the broken licence to be judged", || async {
        licensing.reload_error().is_some()
    })
    .await;
    assert_eq!(licensing.current().machine.name, "ELITE");
    let allowed = echo(&mut plain).await;
    assert_eq!(allowed["result"], json!({"text": "x"}), "{allowed}");
    let check = plain.request("mcp.licence.check", None).await;
    assert_eq!(check["result"]["tier"], "ELITE", "{check}");
    let reload = check["result"]["reload_error"].as_str().expect("said");
    assert!(reload.contains("stays in force"), "{reload}");

    // A tampered one too (signed, then changed); a good one clears the error.
    let broken = licensing.reload_error();
    let tampered = elite(&issuer).replace("ELITE", "ELITF");
    assert_ne!(tampered, elite(&issuer));
    install(dir.path(), &tampered);
    wait_for("the tampered licence to be judged", || async {
        licensing.reload_error() != broken
    })
    .await;
    assert_eq!(licensing.current().machine.name, "ELITE");
    install(dir.path(), &elite(&issuer));
    wait_for("the good licence to clear the error", || async {
        licensing.reload_error().is_none()
    })
    .await;
    assert_eq!(licensing.current().machine.name, "ELITE");
}

/// A reload is also a plain call (SIGHUP's path, without a signal): it
/// says whether the licence in force changed.
#[tokio::test]
async fn a_reload_says_whether_the_licence_changed() {
    let dir = tempfile::tempdir().expect("dir");
    let issuer = licence::Issuer::generate().expect("a key");
    let stack = unlicensed(dir.path(), &issuer);
    let licensing = stack.gateway.licensing().expect("licensed").clone();
    assert!(!licensing.reload(), "still missing: nothing changed");
    assert!(licensing.reload_error().is_none());
    std::fs::write(dir.path().join("lic.key"), elite(&issuer)).expect("licence");
    assert!(licensing.reload(), "a licence in force");
    assert_eq!(licensing.current().machine.name, "ELITE");
    assert!(!licensing.reload(), "the same licence again");
    std::fs::remove_file(dir.path().join("lic.key")).expect("remove");
    assert!(!licensing.reload(), "a removed licence is kept");
    assert!(
        licensing
            .reload_error()
            .is_some_and(|error| error.contains("stays in force")),
        "{:?}",
        licensing.reload_error()
    );
    assert_eq!(licensing.current().machine.name, "ELITE");
}
