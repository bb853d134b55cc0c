//! The wire as a client sees it: framing, malformed input, params
//! validation, error mapping, the message limit, notifications, half-close
//! and peer credentials.

use std::collections::BTreeMap;
use std::thread::sleep;
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use proto::{ErrorObject, RequestId, Response, code};
use serde_json::{Value, json};

use crate::support::{Client, PATIENCE, ServerProcess, frame, request, start_server, wait_until};

fn echo_frame(id: i64, text: &str) -> Vec<u8> {
    frame(&request(id, "mcp.test.echo", json!({ "text": text })).into())
}

fn echoed(id: i64, text: &str) -> Response {
    Response::success(RequestId::Number(id), json!({ "text": text }))
}

/// The error of a response that must have failed.
fn error_of(response: &Response) -> &ErrorObject {
    match &response.outcome {
        Err(error) => error,
        Ok(result) => panic!("expected an error, got the result {result}"),
    }
}

/// Reads `count` responses and returns them by id (answers may come in any order).
fn responses_by_id(client: &mut Client, count: usize) -> BTreeMap<RequestId, Response> {
    let mut responses = BTreeMap::new();
    for _ in 0..count {
        let response = client.response();
        let id = response.id.clone().expect("a response with an id");
        assert!(
            responses.insert(id, response.clone()).is_none(),
            "answered twice: {response:?}"
        );
    }
    responses
}

#[test]
fn frames_split_across_writes_or_sharing_one_are_all_answered() {
    let server = start_server(&[]);
    let mut client = server.connect();

    for byte in echo_frame(1, "one byte at a time") {
        client.write(&[byte]);
        sleep(Duration::from_millis(1));
    }
    assert_eq!(client.response(), echoed(1, "one byte at a time"));

    let texts = ["a", "b", "ü\"\\\n", "d", "e"];
    let mut together = Vec::new();
    for (id, text) in (2..).zip(texts) {
        together.extend(echo_frame(id, text));
    }
    client.write(&together);
    let expected: BTreeMap<RequestId, Response> = (2..)
        .zip(texts)
        .map(|(id, text)| (RequestId::Number(id), echoed(id, text)))
        .collect();
    assert_eq!(responses_by_id(&mut client, texts.len()), expected);
    client.expect_silence(Duration::from_millis(100));
}

#[test]
fn an_oversized_frame_is_refused_and_the_connection_goes_on() {
    const LIMIT: usize = 1024;
    let server = start_server(&["--max-message", "1024"]);
    // A well-formed request, so that a server which ignored the limit would answer id 99.
    let prefix = r#"{"jsonrpc":"2.0","id":99,"method":"mcp.test.echo","params":{"text":""#;
    let suffix = r#""}}"#;
    let mut oversized = prefix.as_bytes().to_vec();
    oversized.resize(4000 - suffix.len(), b'x');
    oversized.extend_from_slice(suffix.as_bytes());
    oversized.push(0);
    let mut stream = oversized.clone();
    stream.extend(echo_frame(1, "after"));

    // Where the stream is cut into separate writes.
    let cases: &[(&str, &[usize])] = &[
        ("everything in one write", &[]),
        ("the oversized frame, then the next request", &[4001]),
        (
            "the oversized frame in pieces",
            &[500, 1000, 1024, 1025, 2500, 3999, 4001],
        ),
        ("the delimiter arriving with the next request", &[4000]),
    ];
    for (name, cuts) in cases {
        let mut client = server.connect();
        let mut start = 0;
        for &cut in cuts.iter().chain([&stream.len()]) {
            client.write(&stream[start..cut]);
            start = cut;
            sleep(Duration::from_millis(20));
        }
        let refusal = client.response();
        assert_eq!(refusal.id, None, "{name}: {refusal:?}");
        let error = error_of(&refusal);
        assert_eq!(error.code, code::INVALID_REQUEST, "{name}: {error:?}");
        assert!(
            error.message.contains(&LIMIT.to_string()),
            "{name}: the message should state the limit: {error:?}"
        );
        assert_eq!(client.response(), echoed(1, "after"), "{name}");
        client.expect_silence(Duration::from_millis(100));
    }
}

#[test]
fn a_frame_exactly_at_the_message_limit_is_accepted() {
    let server = start_server(&["--max-message", "1024"]);
    let mut client = server.connect();
    // (frame length without its NUL, whether it is answered)
    let cases = [(1023, true), (1024, true), (1025, false)];
    for (id, (length, answered)) in (1..).zip(cases) {
        let bare = echo_frame(id, "");
        let text = "y".repeat(length + 1 - bare.len());
        let bytes = echo_frame(id, &text);
        assert_eq!(bytes.len(), length + 1);
        client.write(&bytes);
        let response = client.response();
        if answered {
            assert_eq!(response, echoed(id, &text), "{length} bytes");
        } else {
            assert_eq!(response.id, None, "{length} bytes");
            assert_eq!(error_of(&response).code, code::INVALID_REQUEST);
        }
    }
}

#[test]
fn malformed_messages_get_precise_errors_and_the_connection_goes_on() {
    let server = start_server(&[]);
    let mut client = server.connect();
    struct Case {
        what: &'static str,
        frame: &'static [u8],
        code: i32,
        /// The id the error response carries.
        id: Option<RequestId>,
        /// Part of the error message.
        mentions: &'static str,
    }
    let cases = [
        Case {
            what: "invalid UTF-8",
            frame: b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"mcp.test.\xff\"}",
            code: code::PARSE_ERROR,
            id: None,
            mentions: "parse error",
        },
        Case {
            what: "invalid JSON",
            frame: br#"{"jsonrpc":"2.0","id":2,"method":"#,
            code: code::PARSE_ERROR,
            id: None,
            mentions: "parse error",
        },
        Case {
            what: "a batch",
            frame: br#"[{"jsonrpc":"2.0","id":3,"method":"mcp.test.noop"}]"#,
            code: code::INVALID_REQUEST,
            id: None,
            mentions: "batch",
        },
        Case {
            what: "a wrong version",
            frame: br#"{"jsonrpc":"1.0","id":"v1","method":"mcp.test.noop"}"#,
            code: code::INVALID_REQUEST,
            id: Some(RequestId::from("v1")),
            mentions: r#""2.0""#,
        },
        Case {
            what: "no version",
            frame: br#"{"id":5,"method":"mcp.test.noop"}"#,
            code: code::INVALID_REQUEST,
            id: Some(RequestId::Number(5)),
            mentions: "jsonrpc",
        },
        Case {
            what: "a fractional id",
            frame: br#"{"jsonrpc":"2.0","id":1.5,"method":"mcp.test.noop"}"#,
            code: code::INVALID_REQUEST,
            id: None,
            mentions: "id",
        },
        // JSON-RPC: params, when present, are an object or an array; any
        // other value makes the whole request invalid.
        Case {
            what: "params that are a string",
            frame: br#"{"jsonrpc":"2.0","id":"p1","method":"mcp.test.echo","params":"hi"}"#,
            code: code::INVALID_REQUEST,
            id: Some(RequestId::from("p1")),
            mentions: "\"params\" must be an object or an array, not a string",
        },
        Case {
            what: "params that are a number",
            frame: br#"{"jsonrpc":"2.0","id":"p2","method":"mcp.test.echo","params":5}"#,
            code: code::INVALID_REQUEST,
            id: Some(RequestId::from("p2")),
            mentions: "not a number",
        },
        Case {
            what: "params that are a boolean",
            frame: br#"{"jsonrpc":"2.0","id":"p3","method":"mcp.test.echo","params":true}"#,
            code: code::INVALID_REQUEST,
            id: Some(RequestId::from("p3")),
            mentions: "not a boolean",
        },
        Case {
            what: "an unknown method",
            frame: br#"{"jsonrpc":"2.0","id":7,"method":"mcp.test.nonexistent"}"#,
            code: code::METHOD_NOT_FOUND,
            id: Some(RequestId::Number(7)),
            mentions: "mcp.test.nonexistent",
        },
    ];
    for (index, case) in (1000..).zip(cases) {
        let what = case.what;
        client.write(&[case.frame, b"\0"].concat());
        let response = client.response();
        assert_eq!(response.id, case.id, "{what}: {response:?}");
        let error = error_of(&response);
        assert_eq!(error.code, case.code, "{what}: {error:?}");
        assert!(
            error.message.contains(case.mentions),
            "{what}: expected {:?} in {error:?}",
            case.mentions
        );
        assert_eq!(
            client.call(index, "mcp.test.echo", json!({"text": "still here"})),
            Ok(json!({"text": "still here"})),
            "after {what}"
        );
    }
}

#[test]
fn wrong_params_are_refused_naming_the_offending_field() {
    let server = start_server(&[]);
    let mut client = server.connect();
    // (what, method, raw params, what the message must name)
    let cases: &[(&str, &str, &str, &[&str])] = &[
        (
            "a wrong type",
            "mcp.test.echo",
            r#"{"text":5}"#,
            &["mcp.test.echo", "text", "string"],
        ),
        (
            "a missing required field",
            "mcp.test.sleep",
            "{}",
            &["mcp.test.sleep", "ms"],
        ),
        (
            "an extra property",
            "mcp.test.echo",
            r#"{"text":"a","colour":"red"}"#,
            &["colour"],
        ),
        (
            "a value out of range",
            "mcp.test.echo",
            r#"{"text":"a","repeat":0}"#,
            &["repeat"],
        ),
        (
            "too many positional params",
            "mcp.test.echo",
            r#"["a",2,3]"#,
            &["mcp.test.echo", "at most 2", "text, repeat"],
        ),
        (
            "positional params to a method without positional",
            "mcp.test.blocking",
            "[5]",
            &["mcp.test.blocking", "named params"],
        ),
        (
            "a wrong type given positionally",
            "mcp.test.echo",
            "[5]",
            &["text"],
        ),
    ];
    check_invalid_params(&mut client, cases);
}

/// JSON-RPC calls `params` that is not structured an invalid request, but
/// the backend wire (DESIGN.md 4.1) answers every params problem with
/// -32602, as `Server::prepare_params` intends for this very case.
/// Sends each (what, method, raw params, names) case and expects -32602
/// carrying the request's id and naming every one of `names`.
fn check_invalid_params(client: &mut Client, cases: &[(&str, &str, &str, &[&str])]) {
    for (id, (what, method, params, names)) in (1..).zip(cases) {
        let message =
            format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"{method}","params":{params}}}"#);
        let mut bytes = message.into_bytes();
        bytes.push(0);
        client.write(&bytes);
        let response = client.response();
        assert_eq!(response.id, Some(RequestId::Number(id)), "{what}");
        let error = error_of(&response);
        assert_eq!(error.code, code::INVALID_PARAMS, "{what}: {error:?}");
        for name in *names {
            assert!(
                error.message.contains(name),
                "{what}: expected {name:?} in {error:?}"
            );
        }
    }
}

#[test]
fn params_are_named_or_positional_in_the_caps_order() {
    let server = start_server(&[]);
    let mut client = server.connect();
    let cases = [
        (json!(["hi", 2]), "hihi"),
        (json!(["hi"]), "hi"),
        (json!(["hi", null]), "hi"),
        (json!({"text": "hi", "repeat": 3}), "hihihi"),
        (
            json!({"text": "hi", "_meta": {"progressToken": "ignored"}}),
            "hi",
        ),
    ];
    for (id, (params, expected)) in (1..).zip(cases) {
        assert_eq!(
            client.call(id, "mcp.test.echo", params.clone()),
            Ok(json!({ "text": expected })),
            "params {params}"
        );
    }
}

#[test]
fn handler_errors_map_to_their_codes_and_internals_stay_in_the_log() {
    const SECRETS: &[&str] = &[
        "secret-internal-detail",
        "/var/lib/llmbasedos/token",
        "asked to panic",
    ];
    let server = start_server(&[]);
    let mut client = server.connect();
    let cases: &[(&str, i32, &str, Option<Value>)] = &[
        ("invalid_value", -32091, "the value is not usable", None),
        ("permission_denied", -32092, "not allowed", None),
        ("not_found", -32093, "no such thing", None),
        ("failed", -32090, "the operation failed", None),
        (
            "custom",
            -32094,
            "a documented service failure",
            Some(json!({"hint": "see caps.json"})),
        ),
        // An internal error names the request, so that the log entry can be found.
        ("internal", code::INTERNAL_ERROR, "request 6", None),
        ("panic", code::INTERNAL_ERROR, "request 7", None),
    ];
    for (id, (kind, expected_code, expected_text, expected_data)) in (1..).zip(cases) {
        let error = client
            .call(id, "mcp.test.fail", json!({ "kind": kind }))
            .expect_err(kind);
        assert_eq!(error.code, *expected_code, "{kind}: {error:?}");
        assert!(
            error.message.contains(expected_text),
            "{kind}: expected {expected_text:?} in {error:?}"
        );
        assert_eq!(&error.data, expected_data, "{kind}");
        for secret in SECRETS {
            assert!(!error.message.contains(secret), "{kind} leaks: {error:?}");
        }
        assert_eq!(
            client.call(100 + id, "mcp.test.echo", json!({"text": "alive"})),
            Ok(json!({"text": "alive"})),
            "the connection after {kind}"
        );
    }
    let mut fresh = server.connect();
    assert_eq!(
        fresh.call(1, "mcp.test.echo", json!({"text": "alive"})),
        Ok(json!({"text": "alive"})),
        "a new connection after a panic"
    );
    wait_until(PATIENCE, "the internal error is logged", || {
        server.stderr().contains("secret-internal-detail")
    });
}

#[test]
fn a_result_over_the_message_limit_is_an_error_not_a_dropped_connection() {
    let server = start_server(&["--max-message", "4096"]);
    let mut client = server.connect();
    // (bytes of data, whether the response fits)
    let cases = [(5000, false), (100, true), (1_000_000, false), (4000, true)];
    for (id, (bytes, fits)) in (1..).zip(cases) {
        let outcome = client.call(id, "mcp.test.big", json!({ "bytes": bytes }));
        if fits {
            assert_eq!(outcome, Ok(json!({ "data": "x".repeat(bytes) })));
        } else {
            let error = outcome.expect_err("over the limit");
            assert_eq!(error.code, code::INTERNAL_ERROR, "{bytes}: {error:?}");
            assert!(error.message.contains("4096"), "{bytes}: {error:?}");
        }
    }
}

#[test]
fn a_request_id_in_use_is_refused_until_its_request_is_answered() {
    let server = start_server(&[]);
    let mut client = server.connect();
    client.request(7, "mcp.test.sleep", json!({"ms": 500}));
    client.request(7, "mcp.test.echo", json!({"text": "duplicate"}));
    let refusal = client.response();
    assert_eq!(refusal.id, Some(RequestId::Number(7)));
    let error = error_of(&refusal);
    assert_eq!(error.code, code::INVALID_REQUEST, "{error:?}");
    assert!(error.message.contains("already in use"), "{error:?}");
    assert_eq!(
        client.response(),
        Response::success(RequestId::Number(7), json!({"slept_ms": 500}))
    );
    assert_eq!(
        client.call(7, "mcp.test.echo", json!({"text": "reused"})),
        Ok(json!({"text": "reused"}))
    );
}

#[test]
fn notifications_get_no_response() {
    let server = start_server(&[]);
    let mut client = server.connect();
    client.notify("notifications/initialized", json!({}));
    client.notify("mcp.test.echo", json!({"text": "nobody asked"}));
    client.notify("notifications/cancelled", json!({"requestId": 12345}));
    client.notify("notifications/cancelled", json!({"requestId": [1]}));
    assert_eq!(
        client.call(1, "mcp.test.noop", Value::Null),
        Ok(json!({})),
        "the first frame must answer the request"
    );
    client.expect_silence(Duration::from_millis(300));
}

#[test]
fn a_peer_that_half_closes_still_gets_its_answers() {
    let server = start_server(&[]);
    let cases: &[(&str, Vec<u8>, &[i64])] = &[
        ("a last frame without its NUL", echo_frame(1, "last"), &[1]),
        ("a last frame with its NUL", echo_frame(1, "last"), &[1]),
        (
            "two frames, the last without its NUL",
            [echo_frame(1, "last"), echo_frame(2, "last")].concat(),
            &[1, 2],
        ),
    ];
    for (index, (what, bytes, ids)) in cases.iter().enumerate() {
        let mut bytes = bytes.clone();
        if index != 1 {
            assert_eq!(bytes.pop(), Some(0));
        }
        let mut client = server.connect();
        client.write(&bytes);
        client.shutdown_write();
        let expected: BTreeMap<RequestId, Response> = ids
            .iter()
            .map(|&id| (RequestId::Number(id), echoed(id, "last")))
            .collect();
        assert_eq!(responses_by_id(&mut client, ids.len()), expected, "{what}");
        client.expect_closed();
    }
}

#[test]
fn whoami_reports_this_process_as_the_peer() {
    let server = start_server(&[]);
    let mut client = server.connect();
    // SAFETY: getuid and getgid cannot fail.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    assert_eq!(
        client.call(1, "mcp.test.whoami", json!({})),
        Ok(json!({"uid": uid, "gid": gid, "pid": std::process::id()}))
    );
}

/// Sends `texts` as echo requests (named or positional params), cut into
/// writes at `cuts`, and checks that exactly the expected answers come back.
fn check_echo_stream(
    server: &ServerProcess,
    texts: &[(String, bool)],
    cuts: &[usize],
) -> Result<(), TestCaseError> {
    let mut stream = Vec::new();
    let mut expected = BTreeMap::new();
    for (id, (text, positional)) in (1..).zip(texts) {
        let params = if *positional {
            json!([text])
        } else {
            json!({ "text": text })
        };
        stream.extend(frame(&request(id, "mcp.test.echo", params).into()));
        expected.insert(RequestId::Number(id), echoed(id, text));
    }
    let mut client = server.connect();
    let mut start = 0;
    for &cut in cuts {
        let cut = cut.clamp(start, stream.len());
        client.write(&stream[start..cut]);
        start = cut;
    }
    client.write(&stream[start..]);
    prop_assert_eq!(responses_by_id(&mut client, texts.len()), expected);
    client.shutdown_write();
    client.expect_closed();
    Ok(())
}

#[test]
fn echo_streams_are_answered_exactly_whatever_the_write_boundaries() {
    // Every case talks to a real process: few cases, one server for all.
    let server = start_server(&[]);
    let mut runner = TestRunner::new(Config {
        cases: 32,
        failure_persistence: None,
        ..Config::default()
    });
    let texts = proptest::collection::vec((any::<String>(), any::<bool>()), 1..20);
    let cuts = proptest::collection::vec(0_usize..2000, 0..16).prop_map(|mut cuts| {
        cuts.sort_unstable();
        cuts
    });
    runner
        .run(&(texts, cuts), |(texts, cuts)| {
            check_echo_stream(&server, &texts, &cuts)
        })
        .unwrap_or_else(|failure| panic!("{failure}"));
}

/// The most an error message may take on the wire, whatever the client sent.
const SHORT_MESSAGE: usize = 2048;

/// Issue 12: an error text used to quote the whole invalid value back (a 12
/// MiB string where a number belongs came back as a 12 MiB message).
/// Every case still says what was wrong, in a short message, and the
/// server keeps serving.
#[test]
fn error_messages_quote_huge_values_only_in_part() {
    let server = start_server(&[]);
    let mut client = server.connect();
    let huge = "9".repeat(12 << 20);
    let many_keys: serde_json::Map<String, Value> = (0..100_000)
        .map(|key| (format!("key{key}"), json!(1)))
        .collect();
    // (what, method, params, expected code, what the message must say)
    let cases: Vec<(&str, &str, Value, i32, &[&str])> = vec![
        (
            "a 12 MiB string where a number is expected",
            "mcp.test.sleep",
            json!({ "ms": huge }),
            code::INVALID_PARAMS,
            &["mcp.test.sleep", "/ms", "integer", "bytes)"],
        ),
        (
            "a 12 MiB string outside an enum",
            "mcp.test.fail",
            json!({ "kind": huge }),
            code::INVALID_PARAMS,
            &["/kind", "invalid_value"],
        ),
        (
            "a property with a 12 MiB name",
            "mcp.test.echo",
            json!({ "text": "a", huge.clone(): 1 }),
            code::INVALID_PARAMS,
            &["mcp.test.echo", "not allowed", "bytes)"],
        ),
        (
            "100 000 unexpected properties",
            "mcp.test.noop",
            Value::Object(many_keys),
            code::INVALID_PARAMS,
            &["mcp.test.noop", "not allowed", "key0"],
        ),
        (
            "a 12 MiB method name",
            &huge,
            json!({}),
            code::METHOD_NOT_FOUND,
            &["method not found", "bytes)"],
        ),
        (
            "a handler that quotes a 12 MiB value in its message and data",
            "mcp.test.fail",
            json!({ "kind": "custom", "detail": huge }),
            -32094,
            &["a documented service failure"],
        ),
        (
            "a handler that quotes a 12 MiB value in its message",
            "mcp.test.fail",
            json!({ "kind": "not_found", "detail": huge }),
            -32093,
            &["no such thing"],
        ),
    ];
    for (id, (what, method, params, expected_code, says)) in (1..).zip(cases) {
        let error = client.call(id, method, params).expect_err(what);
        let wire = serde_json::to_string(&error).expect("serialize the error");
        assert!(
            wire.len() < SHORT_MESSAGE,
            "{what}: the error takes {} bytes on the wire: {}…",
            wire.len(),
            &wire[..300.min(wire.len())]
        );
        assert_eq!(error.code, expected_code, "{what}: {error:?}");
        for text in says {
            assert!(
                error.message.contains(text),
                "{what}: expected {text:?} in {error:?}"
            );
        }
        assert_eq!(
            client.call(100 + id, "mcp.test.echo", json!({"text": "alive"})),
            Ok(json!({"text": "alive"})),
            "the connection after {what}"
        );
    }
}
