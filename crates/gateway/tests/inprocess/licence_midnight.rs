//! The day's token quota resets at midnight of the configured time zone,
//! seen through the gateway (`mcp.licence.check`) with the licensing's
//! clock injected: no sleeping across a real midnight.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use gateway::config::{RawConfig, RawLicence};
use serde_json::Value;

use super::support::{DispatcherClient, Era, Stack};

const TIERS: &str = r#"
tiers:
  FREE:
    allow: []
  PRO:
    allow: ["*"]
    llm:
      access: true
      tokens_per_day: 1000
      tokens_per_month: 5000
"#;

fn at(text: &str) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(text)
        .expect("an RFC 3339 time")
        .with_timezone(&chrono::Utc)
}

#[tokio::test]
async fn the_day_resets_at_midnight_in_paris_the_month_does_not() {
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(dir.path().join("tiers.yaml"), TIERS).expect("tiers");
    std::fs::write(dir.path().join("lic.key"), "tier: PRO\nuser_id: clock\n").expect("licence");
    let root = dir.path().to_owned();
    let stack = Stack::configured(&[], move |raw: &mut RawConfig| {
        raw.licence = Some(RawLicence {
            key: Some(root.join("lic.key")),
            keys_dir: Some(root.join("keys")),
            tiers: Some(root.join("tiers.yaml")),
            allow_unsigned: true,
            time_zone: Some("Europe/Paris".to_owned()),
            state_dir: Some(root.join("state")),
            ..RawLicence::default()
        });
    });
    let licensing = stack.gateway.licensing().expect("licensed").clone();
    // 23:59 in Paris (CET, UTC+1) on 10 March 2026.
    let seconds = Arc::new(AtomicI64::new(at("2026-03-10T22:59:00Z").timestamp()));
    let clock = seconds.clone();
    licensing.set_clock(Arc::new(move || {
        chrono::DateTime::from_timestamp(clock.load(Ordering::SeqCst), 0).expect("a time")
    }));
    let identity = "uid:6161";
    let mut client = DispatcherClient::open_as(&stack.gateway, Era::Plain, identity).await;
    let quotas = licensing.client(identity).tier().quotas;
    // 300 tokens spent a minute before midnight (what a chat reserves and
    // settles, at the gateway's time).
    let reservation = licensing
        .ledger
        .reserve(
            identity,
            licence::Ask {
                prompt: 100,
                max_tokens: Some(200),
            },
            &quotas,
            licensing.now(),
        )
        .expect("fits");
    licensing.ledger.settle(&reservation, 300).expect("settled");
    let check = |answer: Value| answer["result"].clone();
    let before = check(client.request("mcp.licence.check", None).await);
    assert_eq!(before["usage"]["day"], 300, "{before}");
    assert_eq!(before["usage"]["month"], 300, "{before}");
    assert_eq!(before["remaining"]["day"], 700, "{before}");
    assert_eq!(
        before["remaining"]["day_resets"], "2026-03-10T23:00:00+00:00",
        "{before}"
    );
    // 700 left: 800 more cannot be reserved before midnight.
    let refused = licensing.ledger.reserve(
        identity,
        licence::Ask {
            prompt: 100,
            max_tokens: Some(700),
        },
        &quotas,
        licensing.now(),
    );
    assert!(refused.is_err(), "{refused:?}");

    // Thirty seconds after Paris midnight: a new day, the same month.
    seconds.store(at("2026-03-10T23:00:30Z").timestamp(), Ordering::SeqCst);
    let after = check(client.request("mcp.licence.check", None).await);
    assert_eq!(after["usage"]["day"], 0, "{after}");
    assert_eq!(after["usage"]["month"], 300, "{after}");
    assert_eq!(after["remaining"]["day"], 1000, "{after}");
    assert_eq!(after["remaining"]["month"], 4700, "{after}");
    assert_eq!(
        after["remaining"]["day_resets"], "2026-03-11T23:00:00+00:00",
        "{after}"
    );
    assert!(
        licensing
            .ledger
            .reserve(
                identity,
                licence::Ask {
                    prompt: 100,
                    max_tokens: Some(700),
                },
                &quotas,
                licensing.now(),
            )
            .is_ok(),
        "the new day has room"
    );
}
