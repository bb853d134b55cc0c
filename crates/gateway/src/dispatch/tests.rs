//! The dispatcher in process, with no service: params are read at the
//! edge into their types, a malformed one is -32602 naming the method and
//! the param, and each era gets its own fields.

use std::sync::Arc;

use proto::{ErrorObject, Message, Request, RequestId, Response};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::{Gateway, Session};
use crate::config::RawConfig;
use crate::registry::Registry;

fn gateway(caps: &tempfile::TempDir) -> (Arc<Gateway>, Arc<Session>) {
    let config = RawConfig::parse("", "test.yaml")
        .and_then(|raw| raw.resolve("test.yaml"))
        .expect("the empty configuration resolves");
    let registry = Registry::new(caps.path(), 1, config.max_message);
    let gateway = Gateway::new(Arc::new(config), Arc::new(registry), None);
    let session = gateway.session("test".to_owned(), mpsc::channel(16).0);
    (gateway, session)
}

async fn call(gateway: &Gateway, session: &Arc<Session>, method: &str, params: Value) -> Response {
    let request = Request {
        id: RequestId::Number(1),
        method: method.to_owned(),
        params: Some(params),
    };
    gateway
        .handle(session, Message::Request(request))
        .await
        .expect("a request is answered")
}

const MODERN: &str = "2026-07-28";

fn modern(mut params: Value) -> Value {
    params["_meta"] = json!({
        "io.modelcontextprotocol/protocolVersion": MODERN,
        "io.modelcontextprotocol/clientCapabilities": {},
    });
    params
}

/// Each malformed param is invalid params, and the message names the
/// method and the param.
#[tokio::test]
async fn malformed_params_are_invalid_params_naming_the_param() {
    let caps = tempfile::tempdir().expect("temp dir");
    let (gateway, session) = gateway(&caps);
    let cases: &[(&str, Value, &[&str])] = &[
        ("tools/call", json!({}), &["tools/call", "`name`"]),
        (
            "tools/call",
            json!({ "name": 5 }),
            &["tools/call", "at name"],
        ),
        (
            "tools/call",
            json!({ "name": "fs_read", "arguments": "x" }),
            &["tools/call", "at arguments"],
        ),
        (
            "tools/list",
            json!({ "cursor": 3 }),
            &["tools/list", "at cursor"],
        ),
        (
            "resources/read",
            json!({ "uri": [] }),
            &["resources/read", "at uri"],
        ),
        (
            "resources/list",
            json!({ "cursor": {} }),
            &["resources/list", "at cursor"],
        ),
        ("prompts/get", json!({}), &["prompts/get", "`name`"]),
        (
            "logging/setLevel",
            json!({ "level": "loud" }),
            &["logging/setLevel", "at level"],
        ),
        (
            "completion/complete",
            json!({ "ref": {} }),
            &["completion/complete"],
        ),
        (
            "initialize",
            json!({ "protocolVersion": 1 }),
            &["initialize", "at protocolVersion"],
        ),
        (
            "resources/subscribe",
            json!({}),
            &["resources/subscribe", "`uri`"],
        ),
    ];
    for (method, params, mentions) in cases {
        let response = call(&gateway, &session, method, params.clone()).await;
        let error = response.outcome.expect_err(method);
        assert_eq!(
            error.code,
            proto::code::INVALID_PARAMS,
            "{method}: {error:?}"
        );
        for mention in *mentions {
            assert!(
                error.message.contains(mention),
                "{method}: {} lacks {mention}",
                error.message
            );
        }
    }
}

/// A 2026-07-28 list carries its kind, the server and cache hints; a
/// session's does not.
#[tokio::test]
async fn each_era_gets_its_fields() {
    let caps = tempfile::tempdir().expect("temp dir");
    let (gateway, session) = gateway(&caps);
    let listed = call(&gateway, &session, "tools/list", modern(json!({}))).await;
    let listed = listed.outcome.expect("tools/list");
    assert_eq!(listed["resultType"], "complete");
    assert_eq!(listed["ttlMs"], 0);
    assert_eq!(listed["cacheScope"], "private");
    assert_eq!(
        listed["_meta"]["io.modelcontextprotocol/serverInfo"]["name"],
        "llmbasedos"
    );

    let legacy = call(&gateway, &session, "tools/list", json!({})).await;
    assert_eq!(legacy.outcome.expect("tools/list"), json!({ "tools": [] }));

    let pong = call(&gateway, &session, "ping", json!({})).await;
    assert_eq!(pong.outcome.expect("ping"), json!({}));
    let refused = call(&gateway, &session, "ping", modern(json!({}))).await;
    assert_eq!(
        refused.outcome.expect_err("modern ping").code,
        proto::code::METHOD_NOT_FOUND
    );
}

/// No code of the range 2026-07-28 reserves reaches a modern client
/// unless the specification defines it.
#[test]
fn reserved_codes_do_not_reach_a_modern_client() {
    let mail = super::for_modern(ErrorObject::new(-32030, "mail failed"));
    assert_eq!(mail.code, proto::error::code::INTERNAL_ERROR);
    assert_eq!(mail.data.expect("data")["service_code"], -32030);
    let spec = super::for_modern(ErrorObject::new(-32022, "unsupported version"));
    assert_eq!(spec.code, -32022);
    let fs = super::for_modern(ErrorObject::new(-32012, "permission"));
    assert_eq!(fs.code, -32012);
    let licence = super::for_modern(ErrorObject::new(-32001, "rate"));
    assert_eq!(licence.code, -32001);
}
