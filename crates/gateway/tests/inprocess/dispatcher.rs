//! The dispatcher itself: [`gateway::dispatch::Gateway::handle`] on a
//! session, what every transport feeds.

use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::cases::{self, TEST_TOOLS};
use super::support::{DispatcherClient, Era, Stack, caps_without_server};

#[tokio::test]
async fn every_case_through_the_dispatcher() {
    let stack = Stack::new();
    let cases = cases::all();
    let mut failures = Vec::new();
    for case in &cases {
        let mut client = DispatcherClient::open(&stack.gateway, case.era).await;
        let response = client.request(case.method, case.params.clone()).await;
        if let Err(why) = case.check(&response) {
            failures.push(format!(
                "{} [{} {}]: {why}\n  answer: {response}",
                case.name, case.era, case.method
            ));
        }
    }
    super::report("dispatcher", cases.len(), &failures);
}

/// Tools come 100 to a page; following `nextCursor` gives each tool once,
/// in order, in both eras.
#[tokio::test]
async fn tools_list_pages_follow_their_cursors() {
    let stack = Stack::with_services(&[("many", caps_without_server("many", 120))]);
    let mut expected: Vec<String> = (0..120).map(|index| format!("many_m{index:03}")).collect();
    expected.extend(TEST_TOOLS.iter().map(|name| (*name).to_owned()));
    for era in [Era::LATEST_LEGACY, Era::Modern] {
        let mut client = DispatcherClient::open(&stack.gateway, era).await;
        let mut names = Vec::new();
        let mut pages = Vec::new();
        let mut cursor: Option<Value> = None;
        // Bounded: a cursor that never ends fails the test.
        for _ in 0..10 {
            let params = cursor.take().map(|cursor| json!({ "cursor": cursor }));
            let answer = client.request("tools/list", params).await;
            let result = &answer["result"];
            let tools = result["tools"].as_array().expect("tools");
            pages.push(tools.len());
            names.extend(
                tools
                    .iter()
                    .map(|tool| tool["name"].as_str().unwrap().to_owned()),
            );
            match result.get("nextCursor") {
                Some(next) => {
                    assert!(next.is_string(), "{era}: a cursor is a string: {next}");
                    cursor = Some(next.clone());
                }
                None => break,
            }
        }
        assert_eq!(pages, [100, 30], "{era}: page sizes");
        assert_eq!(names, expected, "{era}: every tool once, sorted");
    }
}

/// A request with a progress token gets the backend's progress under its
/// own token, all before the answer.
#[tokio::test]
async fn progress_reaches_the_session_before_the_answer() {
    let stack = Stack::new();
    for (era, token) in [
        (Era::LATEST_LEGACY, json!("legacy-1")),
        (Era::Modern, json!(42)),
    ] {
        let mut client = DispatcherClient::open(&stack.gateway, era).await;
        client.queued();
        let answer = client
            .request(
                "tools/call",
                Some(json!({
                    "name": "test_progress",
                    "arguments": { "steps": 3 },
                    "_meta": { "progressToken": token },
                })),
            )
            .await;
        assert_eq!(
            answer["result"]["structuredContent"],
            json!({ "steps": 3 }),
            "{era}: {answer}"
        );
        let progress: Vec<Value> = client
            .queued()
            .into_iter()
            .filter(|message| message["method"] == "notifications/progress")
            .map(|message| message["params"].clone())
            .collect();
        assert_eq!(progress.len(), 3, "{era}: {progress:?}");
        for (step, params) in progress.iter().enumerate() {
            assert_eq!(params["progressToken"], token, "{era}");
            assert_eq!(
                params["progress"].as_f64(),
                Some(step as f64 + 1.0),
                "{era}"
            );
            assert_eq!(params["total"].as_f64(), Some(3.0), "{era}");
            assert_eq!(
                params["message"],
                format!("step {} of 3", step + 1),
                "{era}"
            );
        }
    }
}

/// A service that is down: a tool error for an MCP host, -32006 for a
/// classic caller, and a warning record for a session that asked for
/// records of that level (`logging/setLevel`, or a modern request's
/// `logLevel`); none for one that asked for errors only.
#[tokio::test]
async fn a_service_that_is_down_is_reported_and_logged() {
    let stack = Stack::with_services(&[("other", caps_without_server("other", 1))]);
    let down = json!({ "name": "other_m000", "arguments": {} });

    let mut legacy = DispatcherClient::open(&stack.gateway, Era::LATEST_LEGACY).await;
    let set = legacy
        .request("logging/setLevel", Some(json!({ "level": "warning" })))
        .await;
    assert_eq!(set["result"], json!({}), "{set}");
    let answer = legacy.request("tools/call", Some(down.clone())).await;
    assert_eq!(answer["result"]["isError"], true, "{answer}");
    let text = answer["result"]["content"][0]["text"].as_str().unwrap();
    assert!(text.contains("the other service is not running"), "{text}");
    let records = log_records(&mut legacy);
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["level"], "warning");
    assert_eq!(records[0]["logger"], "llmbasedos-gateway");
    assert_eq!(records[0]["data"]["service"], "other");

    let mut modern = DispatcherClient::open(&stack.gateway, Era::Modern).await;
    let mut call = down.clone();
    call["_meta"] = json!({ "io.modelcontextprotocol/logLevel": "warning" });
    let answer = modern.request("tools/call", Some(call)).await;
    assert_eq!(answer["result"]["isError"], true, "{answer}");
    let records = log_records(&mut modern);
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["data"]["service"], "other");

    let mut quiet = DispatcherClient::open(&stack.gateway, Era::LATEST_LEGACY).await;
    quiet
        .request("logging/setLevel", Some(json!({ "level": "error" })))
        .await;
    quiet.request("tools/call", Some(down)).await;
    assert_eq!(log_records(&mut quiet), Vec::<Value>::new());

    let mut classic = DispatcherClient::open(&stack.gateway, Era::Plain).await;
    let answer = classic.request("mcp.other.m000", None).await;
    assert_eq!(answer["error"]["code"], -32006, "{answer}");
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("the other service is not running"),
        "{message}"
    );
    assert!(
        message.contains("systemctl start llmbasedos-other.socket"),
        "{message}"
    );
}

fn log_records(client: &mut DispatcherClient) -> Vec<Value> {
    client
        .queued()
        .into_iter()
        .filter(|message| message["method"] == "notifications/message")
        .map(|message| message["params"].clone())
        .collect()
}

/// Notifications get no answer, whatever they are, and the session goes on.
#[tokio::test]
async fn notifications_get_no_answer() {
    let stack = Stack::new();
    let mut client = DispatcherClient::open(&stack.gateway, Era::LATEST_LEGACY).await;
    for (method, params) in [
        ("notifications/initialized", None),
        (
            "notifications/cancelled",
            Some(json!({ "requestId": 99, "reason": "not running" })),
        ),
        (
            "notifications/cancelled",
            Some(json!({ "requestId": { "not": "an id" } })),
        ),
        ("notifications/no-such-thing", Some(json!({}))),
    ] {
        assert_eq!(client.notify(method, params).await, None, "{method}");
    }
    let answer = client.request("ping", None).await;
    assert_eq!(answer["result"], json!({}), "{answer}");
}

/// `resources/subscribe` needs somewhere to send updates: a session whose
/// notification channel is gone is told so.
#[tokio::test]
async fn subscribing_needs_a_session_to_send_on() {
    let stack = Stack::new();
    let (outgoing, receiver) = mpsc::channel(1);
    drop(receiver);
    let session = stack.gateway.session("tests".to_owned(), outgoing);
    let request = proto::Request {
        id: proto::RequestId::Number(1),
        method: "resources/subscribe".to_owned(),
        params: Some(json!({ "uri": "test://greeting" })),
    };
    let response = stack
        .gateway
        .handle(&session, proto::Message::Request(request))
        .await
        .expect("answered");
    let error = response.outcome.expect_err("refused");
    assert_eq!(error.code, -32600);
    assert!(
        error.message.contains("needs a session"),
        "{}",
        error.message
    );
}

/// A call whose client asked for progress is given up only after the
/// backend timeout passes with nothing at all: each progress notification
/// starts it again (a sync job followed to its end runs for hours). Eight
/// steps 400 ms apart take three times the 1 s timeout.
#[tokio::test]
async fn progress_keeps_a_long_call_alive_past_the_backend_timeout() {
    let stack = Stack::configured(&[], |raw| raw.limits.backend_timeout_secs = Some(1));
    let long = json!({ "steps": 8, "delay_ms": 400, "_meta": { "progressToken": "p" } });
    let mut host = DispatcherClient::open(&stack.gateway, Era::LATEST_LEGACY).await;
    let mut classic = DispatcherClient::open(&stack.gateway, Era::Plain).await;
    let arguments = json!({ "steps": 8, "delay_ms": 400 });
    let (tool, direct) = tokio::join!(
        host.request(
            "tools/call",
            Some(json!({ "name": "test_progress", "arguments": arguments, "_meta": { "progressToken": "t" } })),
        ),
        classic.request("mcp.test.progress", Some(long)),
    );
    assert_ne!(tool["result"]["isError"], true, "{tool}");
    assert!(tool.get("error").is_none(), "{tool}");
    assert!(direct.get("error").is_none(), "{direct}");
    assert!(direct.get("result").is_some(), "{direct}");
}

/// A backend that does not answer within the backend timeout: a tool
/// error for an MCP host, -32007 for a classic caller, both saying how
/// long the gateway waited.
#[tokio::test]
async fn a_backend_that_does_not_answer_in_time_is_reported() {
    let stack = Stack::configured(&[], |raw| raw.limits.backend_timeout_secs = Some(1));
    // A slow progress, not a sleep: the sleeps' counters are the
    // cancellation test's.
    let slow = json!({ "steps": 1, "delay_ms": 5_000 });
    let mut host = DispatcherClient::open(&stack.gateway, Era::LATEST_LEGACY).await;
    let mut classic = DispatcherClient::open(&stack.gateway, Era::Plain).await;
    let (tool, direct) = tokio::join!(
        host.request(
            "tools/call",
            Some(json!({ "name": "test_progress", "arguments": slow.clone() })),
        ),
        classic.request("mcp.test.progress", Some(slow.clone())),
    );
    assert_eq!(tool["result"]["isError"], true, "{tool}");
    let text = tool["result"]["content"][0]["text"].as_str().unwrap();
    assert!(
        text.contains("the test service did not answer within 1 s"),
        "{text}"
    );
    assert_eq!(direct["error"]["code"], -32007, "{direct}");
    let message = direct["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("the test service did not answer within 1 s"),
        "{message}"
    );
}
