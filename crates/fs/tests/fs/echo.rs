//! Issue 12: an error text quoted the whole invalid value back — a 12 MiB
//! string where a number belongs, a 2.5 MB list of paths where at most 100
//! are allowed. Through the real fs server, each is refused with a short
//! message that still says what was wrong, and the server keeps serving.

use serde_json::{Value, json};

use crate::support::{Fixture, INVALID_PARAMS, Server};

/// The most an error may take on the wire, whatever the client sent.
const SHORT: usize = 2048;

#[test]
fn errors_about_huge_values_are_short_and_say_what_was_wrong() {
    let fixture = Fixture::new();
    fixture.write("/f.txt", "content\n");
    let server = Server::start(&fixture);
    let mut client = server.connect();
    // 100 000 paths of 24 bytes: 2.6 MB of JSON.
    let paths: Vec<Value> = (0..100_000)
        .map(|index| json!(format!("/notes/2026/{index:07}.md")))
        .collect();
    let cases = [
        (
            "a 12 MiB string where a number is expected",
            "mcp.fs.read",
            json!({ "path": "/f.txt", "offset": "9".repeat(12 << 20) }),
            &["mcp.fs.read", "/offset", "integer", "bytes)"][..],
        ),
        (
            "2.5 MB of paths where at most 100 are allowed",
            "mcp.fs.read_many",
            json!({ "paths": paths }),
            &[
                "mcp.fs.read_many",
                "/paths",
                "100000 items",
                "more than 100",
            ][..],
        ),
    ];
    for (what, method, params, says) in cases {
        let error = client.err(method, params);
        let wire = serde_json::to_string(&error).expect("serialize the error");
        assert!(
            wire.len() < SHORT,
            "{what}: the error takes {} bytes: {}…",
            wire.len(),
            &wire[..300.min(wire.len())]
        );
        assert_eq!(error.code, INVALID_PARAMS, "{what}: {error:?}");
        for text in says {
            assert!(
                error.message.contains(text),
                "{what}: expected {text:?} in {error:?}"
            );
        }
        let still = client.ok("mcp.fs.read", json!({"path": "/f.txt"}));
        assert_eq!(still["content"], "content\n", "{what}: the server after it");
    }
}
