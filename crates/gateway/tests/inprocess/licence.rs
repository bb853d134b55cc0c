//! The licence in the gateway: tier × path × transport, lists filtered per
//! client, rate limits per client with a retry hint, and the dispatcher's
//! method table held against the rights check (so that a new entry point
//! cannot skip it).
//!
//! The machine's licence is signed here (a key made for the test, trusted
//! in its keys directory) for ELITE; clients get lower tiers from the
//! configuration: the token `tests` and uid 4242 LIMITED, uid 4343 FREE.

use std::path::Path;

use gateway::config::{RawClientTier, RawConfig, RawLicence};
use serde_json::{Value, json};

use super::support::{DispatcherClient, Era, HttpClient, Stack, http_request, send};

const TIERS: &str = r#"
tiers:
  FREE:
    allow: []
  LIMITED:
    allow: ["mcp.test.echo", "test_echo", "mcp.test.resources.read", "mcp.test.prompts.get"]
    deny: ["mcp.test.noop"]
  SLOW:
    allow: ["*"]
    requests: 3
    window_secs: 3600
  ONE:
    allow: ["*"]
    concurrent: 1
  ELITE:
    allow: ["*"]
"#;

/// A stack whose machine holds a signed ELITE licence, with the clients'
/// tiers of the module's documentation; `configure` may change more.
fn licensed(dir: &Path, configure: impl FnOnce(&mut RawConfig)) -> Stack {
    let issuer = licence::Issuer::generate().expect("a key");
    let keys = dir.join("keys");
    std::fs::create_dir_all(&keys).expect("keys dir");
    std::fs::write(keys.join("vendor.pub"), issuer.public_text()).expect("public key");
    let terms = licence::Terms {
        tier: "ELITE".to_owned(),
        licensee: "the tests".to_owned(),
        issued: chrono::Utc::now() - chrono::Duration::days(1),
        expires: Some(chrono::Utc::now() + chrono::Duration::days(30)),
        features: Vec::new(),
    };
    std::fs::write(dir.join("lic.key"), issuer.issue(&terms)).expect("licence");
    std::fs::write(dir.join("tiers.yaml"), TIERS).expect("tiers");
    let dir = dir.to_owned();
    Stack::configured(&[], move |raw| {
        raw.auth.tokens[0].tier = Some("LIMITED".to_owned());
        raw.licence = Some(RawLicence {
            key: Some(dir.join("lic.key")),
            keys_dir: Some(keys),
            tiers: Some(dir.join("tiers.yaml")),
            state_dir: Some(dir.join("state")),
            clients: vec![
                RawClientTier {
                    uid: 4242,
                    tier: "LIMITED".to_owned(),
                },
                RawClientTier {
                    uid: 4343,
                    tier: "FREE".to_owned(),
                },
                RawClientTier {
                    uid: 4444,
                    tier: "SLOW".to_owned(),
                },
                RawClientTier {
                    uid: 4545,
                    tier: "SLOW".to_owned(),
                },
                RawClientTier {
                    uid: 4747,
                    tier: "ONE".to_owned(),
                },
            ],
            ..RawLicence::default()
        });
        configure(raw);
    })
}

/// One kind of call, and whether LIMITED may make it.
struct Path_ {
    name: &'static str,
    method: &'static str,
    params: Value,
    limited: bool,
}

fn paths() -> Vec<Path_> {
    vec![
        Path_ {
            name: "classic direct call",
            method: "mcp.test.echo",
            params: json!({"text": "hi"}),
            limited: true,
        },
        Path_ {
            name: "classic direct call, denied",
            method: "mcp.test.noop",
            params: json!({}),
            limited: false,
        },
        Path_ {
            name: "classic call outside the patterns",
            method: "mcp.test.whoami",
            params: json!({}),
            limited: false,
        },
        Path_ {
            name: "tools/call",
            method: "tools/call",
            params: json!({"name": "test_echo", "arguments": {"text": "hi"}}),
            limited: true,
        },
        Path_ {
            name: "tools/call of a tool outside the patterns",
            method: "tools/call",
            params: json!({"name": "test_whoami", "arguments": {}}),
            limited: false,
        },
        Path_ {
            name: "resources/read",
            method: "resources/read",
            params: json!({"uri": "test://greeting"}),
            limited: true,
        },
        Path_ {
            name: "prompts/get",
            method: "prompts/get",
            params: json!({"name": "test_greet", "arguments": {"who": "you"}}),
            limited: true,
        },
        Path_ {
            name: "the LLM relay",
            method: "mcp.llm.chat",
            params: json!({"messages": [{"role": "user", "content": "hi"}]}),
            limited: false,
        },
    ]
}

/// Whether an answer is a permission refusal, in either form: the
/// original's -32002 with its kind, or an `isError` tool result with it.
fn refused(answer: &Value) -> bool {
    let error = &answer["error"];
    if !error.is_null() {
        return error["code"] == -32002 && error["data"]["kind"] == "permission_denied";
    }
    // 2025-03-26 has no structuredContent: the text says it.
    answer["result"]["isError"] == true
        && (answer["result"]["structuredContent"]["kind"] == "permission_denied"
            || answer["result"]["content"][0]["text"]
                .as_str()
                .is_some_and(|text| text.contains("is not allowed for this client's tier")))
}

/// Whether an answer is a success (not an error, not an error result).
fn succeeded(answer: &Value) -> bool {
    answer["error"].is_null() && answer["result"]["isError"] != true
}

fn tool_names(answer: &Value) -> Vec<String> {
    answer["result"]["tools"]
        .as_array()
        .map(|tools| {
            tools
                .iter()
                .filter_map(|tool| tool["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn the_matrix_tier_by_path_by_transport() {
    let dir = tempfile::tempdir().expect("dir");
    let stack = licensed(dir.path(), |_| {});
    let mut failures = Vec::new();
    // Through the dispatcher (what the UNIX socket and WebSocket feed),
    // as three clients of three tiers, in each era.
    for (identity, tier) in [
        ("uid:4242", "LIMITED"),
        ("uid:4343", "FREE"),
        ("uid:0", "ELITE"),
    ] {
        for era in [Era::Plain, Era::LATEST_LEGACY, Era::Modern] {
            let mut client = DispatcherClient::open_as(&stack.gateway, era, identity).await;
            for path in paths() {
                let classic = !path.method.contains('/');
                if classic && era == Era::LATEST_LEGACY {
                    continue;
                }
                let expected = match tier {
                    "LIMITED" => path.limited,
                    "FREE" => false,
                    _ => true,
                };
                let answer = client.request(path.method, Some(path.params.clone())).await;
                let llm = path.method == "mcp.llm.chat";
                if refused(&answer) == expected || (expected && !llm && !succeeded(&answer)) {
                    failures.push(format!(
                        "{tier} {era} {}: expected {}: {answer}",
                        path.name,
                        if expected { "allowed" } else { "refused" }
                    ));
                }
            }
            let check = client.request("mcp.licence.check", None).await;
            if era == Era::Plain && check["result"]["tier"] != tier {
                failures.push(format!("{tier}: licence.check says {check}"));
            }
        }
    }
    // Through the HTTP router (the raw fast path): the token `tests`, LIMITED.
    let router = stack.router();
    for era in [Era::Plain, Era::LATEST_LEGACY, Era::Modern] {
        let mut client = HttpClient::open(&router, era).await;
        for path in paths() {
            if !path.method.contains('/') && era == Era::LATEST_LEGACY {
                continue;
            }
            let (_, answer) = client.request(path.method, Some(path.params.clone())).await;
            if refused(&answer) == path.limited || (path.limited && !succeeded(&answer)) {
                failures.push(format!(
                    "LIMITED over HTTP {era} {}: expected {}: {answer}",
                    path.name,
                    if path.limited { "allowed" } else { "refused" }
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn lists_show_a_client_only_what_it_may_use() {
    let dir = tempfile::tempdir().expect("dir");
    let stack = licensed(dir.path(), |_| {});
    let mut limited = DispatcherClient::open_as(&stack.gateway, Era::Modern, "uid:4242").await;
    let tools = tool_names(&limited.request("tools/list", None).await);
    assert_eq!(tools, ["licence_check", "test_echo"], "LIMITED's tools");
    let prompts = limited.request("prompts/list", None).await;
    assert_eq!(prompts["result"]["prompts"][0]["name"], "test_greet");
    let resources = limited.request("resources/list", None).await;
    assert_eq!(
        resources["result"]["resources"][0]["uri"],
        "test://greeting"
    );
    let caps = limited.request("mcp.listCapabilities", None).await;
    let methods: Vec<&str> = caps["result"]["services"][0]["methods"]
        .as_array()
        .expect("methods")
        .iter()
        .filter_map(|method| method["name"].as_str())
        .collect();
    assert_eq!(methods, ["mcp.test.echo"]);

    let mut free = DispatcherClient::open_as(&stack.gateway, Era::Modern, "uid:4343").await;
    let tools = tool_names(&free.request("tools/list", None).await);
    assert_eq!(tools, ["licence_check"], "FREE's tools");
    let prompts = free.request("prompts/list", None).await;
    assert_eq!(prompts["result"]["prompts"], json!([]));
    let resources = free.request("resources/list", None).await;
    assert_eq!(resources["result"]["resources"], json!([]));
    // The licence_check tool answers for MCP hosts.
    let check = free
        .request(
            "tools/call",
            Some(json!({"name": "licence_check", "arguments": {}})),
        )
        .await;
    assert_eq!(
        check["result"]["structuredContent"]["tier"], "FREE",
        "{check}"
    );
    assert_eq!(check["result"]["structuredContent"]["standing"], "valid");

    // Every client's usage is for the owner, not for FREE.
    let status = free.request("mcp.licence.status", None).await;
    assert_eq!(status["error"]["code"], -32002, "{status}");
    let mut owner = DispatcherClient::open_as(&stack.gateway, Era::Plain, "uid:0").await;
    let status = owner.request("mcp.licence.status", None).await;
    let clients = status["result"]["clients"].as_array().expect("clients");
    assert!(
        clients
            .iter()
            .any(|client| client["client"] == "uid:4343" && client["tier"] == "FREE"),
        "{status}"
    );
    let mut elite = DispatcherClient::open_as(&stack.gateway, Era::Modern, "uid:0").await;
    let tools = tool_names(&elite.request("tools/list", None).await);
    assert!(tools.len() > 5 && tools.contains(&"test_noop".to_owned()));
}

/// A client gets exactly its rate, then refusals with a retry hint
/// (-32001 with `retry_after_ms`, an `isError` tool result, `Retry-After`
/// over HTTP); another client of the same tier has its own bucket.
#[tokio::test]
async fn rates_are_per_client_with_a_retry_hint() {
    let dir = tempfile::tempdir().expect("dir");
    let stack = licensed(dir.path(), |raw| {
        raw.auth.tokens[0].tier = Some("SLOW".to_owned());
    });
    let mut slow = DispatcherClient::open_as(&stack.gateway, Era::Plain, "uid:4444").await;
    for _ in 0..3 {
        let answer = slow
            .request("mcp.test.echo", Some(json!({"text": "x"})))
            .await;
        assert!(answer["error"].is_null(), "{answer}");
    }
    let refused = slow
        .request("mcp.test.echo", Some(json!({"text": "x"})))
        .await;
    assert_eq!(refused["error"]["code"], -32001, "{refused}");
    assert_eq!(refused["error"]["data"]["kind"], "rate_limited");
    let retry = refused["error"]["data"]["retry_after_ms"]
        .as_u64()
        .expect("a retry hint");
    // One request every 1200 s: the hint is at most that, and not nothing.
    assert!(retry > 1_000_000 && retry <= 1_200_000, "{retry}");
    let mut modern = DispatcherClient::open_as(&stack.gateway, Era::Modern, "uid:4444").await;
    let tool = modern
        .request(
            "tools/call",
            Some(json!({"name": "test_echo", "arguments": {"text": "x"}})),
        )
        .await;
    assert_eq!(tool["result"]["isError"], true, "{tool}");
    assert_eq!(tool["result"]["structuredContent"]["kind"], "rate_limited");
    assert!(tool["error"].is_null());

    // The other SLOW client's bucket is full.
    let mut other = DispatcherClient::open_as(&stack.gateway, Era::Plain, "uid:4545").await;
    let answer = other
        .request("mcp.test.echo", Some(json!({"text": "x"})))
        .await;
    assert!(answer["error"].is_null(), "{answer}");

    // Over HTTP: the same refusal, with Retry-After.
    let router = stack.router();
    let client = HttpClient::open(&router, Era::Plain).await;
    let mut last = None;
    for id in 0..4 {
        let body = super::support::jsonrpc(id, "mcp.test.echo", Some(json!({"text": "x"})));
        last = Some(
            send(
                &router,
                http_request("POST", "/mcp", &client.headers(), body),
            )
            .await,
        );
    }
    let last = last.expect("answers");
    assert_eq!(last.json()["error"]["code"], -32001, "{:?}", last.json());
    let seconds: u64 = last
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .expect("seconds");
    assert!(seconds > 1000 && seconds <= 1200, "{seconds}");
}

/// The dispatcher's method table: every MCP method `route` matches is in
/// the rights table, and `route` and the raw path call `authorize` before
/// anything else, so an entry point cannot be added without a decision.
#[test]
fn every_dispatcher_entry_point_passes_the_rights_check() {
    let source = |file: &str| {
        std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("src/dispatch")
                .join(file),
        )
        .expect("dispatcher source")
    };
    let route = source("mod.rs");
    let rights = source("rights.rs");
    let body = route
        .split("async fn route(")
        .nth(1)
        .expect("route is in dispatch/mod.rs");
    let check = body
        .find("self.authorize(session, name")
        .expect("route calls authorize");
    let first_arm = body.find("method::INITIALIZE =>").expect("route's table");
    assert!(check < first_arm, "authorize comes before the method table");
    let mut arms = 0;
    for line in body.lines() {
        let line = line.trim();
        if let Some(constant) = line.strip_prefix("method::")
            && let Some((constant, _)) = constant.split_once(" =>")
        {
            arms += 1;
            assert!(
                rights.contains(&format!("(method::{constant}, Subject::")),
                "route handles method::{constant} but dispatch/rights.rs ROUTED does not say what names it"
            );
        }
        if line.starts_with("_ =>") {
            break;
        }
    }
    assert!(arms >= 14, "route's table was read ({arms} arms)");
    let classic = source("classic.rs");
    let raw = classic
        .split("async fn request_raw(")
        .nth(1)
        .expect("the raw path");
    let check = raw.find("self.authorize(").expect("the raw path checks");
    let call = raw.find("call_backend_raw").expect("the raw path's call");
    assert!(check < call, "the raw path checks before it calls");
    // Every other dispatcher file reaches backends only from handlers that
    // route dispatches: none has an entry point of its own.
    for file in [
        "tools.rs",
        "resources.rs",
        "prompts.rs",
        "relay.rs",
        "backend.rs",
        "lifecycle.rs",
        "session.rs",
        "era.rs",
    ] {
        let text = source(file);
        assert!(
            !text.contains("pub fn handle") && !text.contains("pub async fn handle"),
            "{file} has its own entry point"
        );
    }
}

/// A batch's entries are each checked (over HTTP, 2025-03-26).
#[tokio::test]
async fn a_batch_is_checked_entry_by_entry() {
    let dir = tempfile::tempdir().expect("dir");
    let stack = licensed(dir.path(), |_| {});
    let router = stack.router();
    let client = HttpClient::open(&router, Era::OLDEST_LEGACY).await;
    let body = json!([
        {"jsonrpc": "2.0", "id": 1, "method": "mcp.test.echo", "params": {"text": "a"}},
        {"jsonrpc": "2.0", "id": 2, "method": "mcp.test.noop", "params": {}},
        {"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "test_whoami", "arguments": {}}},
    ])
    .to_string();
    let answer = send(
        &router,
        http_request("POST", "/mcp", &client.headers(), body),
    )
    .await;
    let answers = answer.json();
    let by_id = |id: i64| {
        answers
            .as_array()
            .expect("an array")
            .iter()
            .find(|entry| entry["id"] == id)
            .cloned()
            .expect("each entry answered")
    };
    assert!(succeeded(&by_id(1)), "{answers}");
    assert!(refused(&by_id(2)), "{answers}");
    assert!(refused(&by_id(3)), "{answers}");
}

/// `on_behalf_of` only from a configured delegate, with the named
/// client's rights, never more than the delegate's own.
#[tokio::test]
async fn a_delegate_acts_with_the_clients_rights_and_never_more_than_its_own() {
    let dir = tempfile::tempdir().expect("dir");
    let stack = licensed(dir.path(), |raw| {
        // 4646: an ELITE delegate (the licence's tier); 4343: a FREE one.
        raw.auth.delegates = vec![
            gateway::config::UserRef::Uid(4646),
            gateway::config::UserRef::Uid(4343),
        ];
    });
    let on_behalf = |client: &str, text: bool| {
        let mut params = json!({"_meta": {"llmbasedos/on_behalf_of": client}});
        if text {
            params["text"] = json!("x");
        }
        Some(params)
    };
    let mut delegate = DispatcherClient::open_as(&stack.gateway, Era::Plain, "uid:4646").await;
    // For LIMITED: echo is allowed, whoami is not, though the delegate may.
    let answer = delegate
        .request("mcp.test.echo", on_behalf("uid:4242", true))
        .await;
    assert!(succeeded(&answer), "{answer}");
    let answer = delegate
        .request("mcp.test.whoami", on_behalf("uid:4242", false))
        .await;
    assert!(refused(&answer), "{answer}");
    let answer = delegate.request("mcp.test.whoami", None).await;
    assert!(succeeded(&answer), "the delegate itself may: {answer}");
    // The licence check names the client acted for.
    let check = delegate
        .request("mcp.licence.check", on_behalf("uid:4242", false))
        .await;
    assert_eq!(check["result"]["tier"], "LIMITED", "{check}");
    // A FREE delegate cannot lend an ELITE client's rights to itself.
    let mut free = DispatcherClient::open_as(&stack.gateway, Era::Plain, "uid:4343").await;
    let answer = free
        .request("mcp.test.echo", on_behalf("uid:0", true))
        .await;
    assert!(refused(&answer), "{answer}");
    // A client that is not a delegate cannot use on_behalf_of at all.
    let mut limited = DispatcherClient::open_as(&stack.gateway, Era::Plain, "uid:4242").await;
    let answer = limited
        .request("mcp.test.echo", on_behalf("uid:0", true))
        .await;
    assert_eq!(answer["error"]["code"], -32002, "{answer}");
    assert_eq!(answer["error"]["data"]["kind"], "delegation_refused");
    // The refusal says exactly what to add to gateway.yaml, by user name
    // when the uid has one (uid 4242 has none here; 0 is root).
    let message = answer["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("may not act on behalf of uid:0")
            && message.contains("add `auth.delegates: [4242]` to gateway.yaml"),
        "{answer}"
    );
    let mut root = DispatcherClient::open_as(&stack.gateway, Era::Plain, "uid:0").await;
    let answer = root
        .request("mcp.test.echo", on_behalf("token:tests", true))
        .await;
    assert_eq!(answer["error"]["data"]["kind"], "delegation_refused");
    let message = answer["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("uid:0 (root) may not act on behalf of token:tests")
            && message.contains("add `auth.delegates: [root]` to gateway.yaml"),
        "{answer}"
    );
    // Naming one's own identity is no delegation: accepted from anyone,
    // with the sender's own rights (LIMITED may echo, may not whoami).
    let answer = limited
        .request("mcp.test.echo", on_behalf("uid:4242", true))
        .await;
    assert!(succeeded(&answer), "{answer}");
    let answer = limited
        .request("mcp.test.whoami", on_behalf("uid:4242", false))
        .await;
    assert!(refused(&answer), "{answer}");
    assert_eq!(
        answer["error"]["data"]["kind"], "permission_denied",
        "{answer}"
    );
    // Nor over HTTP with a token (a delegate is a UNIX peer).
    let router = stack.router();
    let mut client = HttpClient::open(&router, Era::Modern).await;
    let (_, answer) = client
        .request(
            "tools/call",
            Some(json!({"name": "test_echo", "arguments": {"text": "x"},
                        "_meta": {"llmbasedos/on_behalf_of": "uid:0"}})),
        )
        .await;
    assert_eq!(answer["result"]["isError"], true, "{answer}");
    assert_eq!(
        answer["result"]["structuredContent"]["kind"],
        "delegation_refused"
    );
}

/// The tier's `concurrent` bounds a client's request slots (shared by its
/// sessions), below the gateway's own limit.
#[tokio::test]
async fn a_tier_bounds_the_requests_a_client_runs_at_once() {
    let dir = tempfile::tempdir().expect("dir");
    let stack = licensed(dir.path(), |_| {});
    let one = DispatcherClient::open_as(&stack.gateway, Era::Plain, "uid:4747").await;
    let other = DispatcherClient::open_as(&stack.gateway, Era::Plain, "uid:4747").await;
    let held = one.session.try_permit().expect("one slot");
    assert!(
        other.session.try_permit().is_none(),
        "ONE allows one at a time"
    );
    drop(held);
    assert!(other.session.try_permit().is_some());
    let elite = DispatcherClient::open_as(&stack.gateway, Era::Plain, "uid:0").await;
    let slots: Vec<_> = (0..4).filter_map(|_| elite.session.try_permit()).collect();
    assert_eq!(slots.len(), 4);
}
