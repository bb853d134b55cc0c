//! Malformed requests: each is refused with a message that says what was
//! wrong, the server keeps serving, and nothing is damaged.

use serde_json::json;

use crate::support::{DENIED, Fixture, INVALID_PARAMS, INVALID_VALUE, NOT_FOUND, Server};

#[test]
fn each_malformed_request_is_refused_usefully_and_changes_nothing() {
    let fixture = Fixture::new();
    fixture.write("/f.txt", "content\n");
    fixture.write("/dir/g.txt", "g\n");
    let server = Server::start(&fixture);
    let mut client = server.connect();
    let before = fixture.root_snapshot();
    let long_name = format!("/{}", "n".repeat(300));
    let cases = [
        (
            "mcp.fs.read",
            json!({}),
            INVALID_PARAMS,
            "\"path\" is a required property",
        ),
        (
            "mcp.fs.read",
            json!({"path": 5}),
            INVALID_PARAMS,
            "at /path",
        ),
        (
            "mcp.fs.read",
            json!({"path": "/f.txt", "bogus": 1}),
            INVALID_PARAMS,
            "bogus",
        ),
        (
            "mcp.fs.read",
            json!({"path": "/f.txt", "encoding": "utf-16"}),
            INVALID_PARAMS,
            "at /encoding",
        ),
        // Every enumerated param refuses a value its caps enum lacks,
        // naming the param (none falls through to a value chosen in code).
        (
            "mcp.fs.list",
            json!({"sort": "colour"}),
            INVALID_PARAMS,
            "at /sort",
        ),
        (
            "mcp.fs.write",
            json!({"path": "/n.txt", "content": "x", "mode": "replace"}),
            INVALID_PARAMS,
            "at /mode",
        ),
        (
            "mcp.fs.write",
            json!({"path": "/n.txt", "content": "x", "encoding": "auto"}),
            INVALID_PARAMS,
            "at /encoding",
        ),
        (
            "mcp.fs.read_many",
            json!({"paths": ["/f.txt"], "encoding": "hex"}),
            INVALID_PARAMS,
            "at /encoding",
        ),
        (
            "mcp.fs.read",
            json!({"path": "/f.txt", "offset": -1}),
            INVALID_PARAMS,
            "at /offset",
        ),
        (
            "mcp.fs.read",
            json!({"path": "/f.txt", "head": 1, "tail": 1}),
            INVALID_VALUE,
            "at most one of offset/length, head and tail",
        ),
        (
            "mcp.fs.read",
            json!({"path": ""}),
            INVALID_PARAMS,
            "at /path",
        ),
        (
            "mcp.fs.read",
            json!({"path": "f.txt"}),
            INVALID_VALUE,
            "paths start with \"/\"",
        ),
        (
            "mcp.fs.read",
            json!({"path": long_name}),
            INVALID_VALUE,
            "the limit is 255",
        ),
        (
            "mcp.fs.read",
            json!({"path": "/dir"}),
            INVALID_VALUE,
            "/dir: it is a directory; see what it holds with mcp.fs.list (path: \"/dir\")",
        ),
        (
            "mcp.fs.read",
            json!({"path": "/f.txt/x"}),
            INVALID_VALUE,
            "a component of it is a file",
        ),
        (
            "mcp.fs.read",
            json!(["/f.txt", "text", "extra"]),
            INVALID_PARAMS,
            "at most 2 positional params",
        ),
        (
            "mcp.fs.list",
            json!({"path": "/f.txt"}),
            INVALID_VALUE,
            "/f.txt: it is a file, not a directory",
        ),
        (
            "mcp.fs.list",
            json!({"cursor": "zzz"}),
            INVALID_VALUE,
            "cursor \"zzz\" is not one this server gave",
        ),
        (
            "mcp.fs.list",
            json!({"limit": 0}),
            INVALID_PARAMS,
            "at /limit",
        ),
        (
            "mcp.fs.list",
            json!({"path": "/nowhere"}),
            NOT_FOUND,
            "/nowhere does not exist",
        ),
        (
            "mcp.fs.write",
            json!({"path": "/f.txt"}),
            INVALID_PARAMS,
            "\"content\" is a required property",
        ),
        (
            "mcp.fs.write",
            json!({"path": "/f.txt", "content": "x", "mode": "truncate"}),
            INVALID_PARAMS,
            "at /mode",
        ),
        (
            "mcp.fs.write",
            json!({"path": "/f.txt", "content": "%%%", "encoding": "base64"}),
            INVALID_VALUE,
            "content is not valid base64",
        ),
        (
            "mcp.fs.write",
            json!({"path": "/", "content": "x"}),
            INVALID_VALUE,
            "cannot apply to the root",
        ),
        (
            "mcp.fs.write",
            json!({"path": "/dir", "content": "x"}),
            INVALID_VALUE,
            "/dir: it is a directory",
        ),
        (
            "mcp.fs.edit",
            json!({"path": "/f.txt", "edits": []}),
            INVALID_PARAMS,
            "at /edits",
        ),
        (
            "mcp.fs.edit",
            json!({"path": "/f.txt", "edits": [{"old_text": "", "new_text": "x"}]}),
            INVALID_PARAMS,
            "at /edits/0/old_text",
        ),
        (
            "mcp.fs.edit",
            json!({"path": "/f.txt", "edits": [{"old_text": "absent", "new_text": "x"}]}),
            INVALID_VALUE,
            "old_text was not found",
        ),
        (
            "mcp.fs.edit",
            json!({"path": "/missing.txt", "edits": [{"old_text": "a", "new_text": "x"}]}),
            NOT_FOUND,
            "/missing.txt does not exist",
        ),
        (
            "mcp.fs.grep",
            json!({"pattern": "(unclosed"}),
            INVALID_VALUE,
            "is not a valid regular expression",
        ),
        (
            "mcp.fs.grep",
            json!({"pattern": "x", "include": ["*.rs", "[z-a]"]}),
            INVALID_VALUE,
            "include[1] \"[z-a]\" is not a valid glob",
        ),
        (
            "mcp.fs.glob",
            json!({"pattern": "a[b"}),
            INVALID_VALUE,
            "is not a valid glob pattern",
        ),
        (
            "mcp.fs.tree",
            json!({"exclude": ["{a"]}),
            INVALID_VALUE,
            "is not a valid glob pattern",
        ),
        (
            "mcp.fs.tree",
            json!({"depth": 0}),
            INVALID_PARAMS,
            "at /depth",
        ),
        (
            "mcp.fs.delete",
            json!({"path": "/"}),
            INVALID_VALUE,
            "cannot apply to the root",
        ),
        (
            "mcp.fs.delete",
            json!({"path": "/dir"}),
            -32016,
            "/dir is a directory that is not empty",
        ),
        (
            "mcp.fs.move",
            json!({"from": "/", "to": "/x"}),
            INVALID_VALUE,
            "which is / itself or inside it",
        ),
        (
            "mcp.fs.move",
            json!({"from": "/dir", "to": "/dir/inner"}),
            INVALID_VALUE,
            "inside it",
        ),
        (
            "mcp.fs.copy",
            json!({"from": "/dir", "to": "/dir/inner", "recursive": true}),
            INVALID_VALUE,
            "inside it",
        ),
        (
            "mcp.fs.mkdir",
            json!({"path": "/f.txt/sub", "parents": true}),
            INVALID_VALUE,
            "/f.txt/sub",
        ),
        (
            "mcp.fs.stat",
            json!({"path": "/a/../f.txt"}),
            DENIED,
            "\"..\" is not allowed",
        ),
        (
            "mcp.fs.read_many",
            json!({"paths": []}),
            INVALID_PARAMS,
            "at /paths",
        ),
        ("mcp.fs.nonexistent", json!({}), -32601, "method not found"),
    ];
    let mut failures = Vec::new();
    for (method, params, code, expected) in cases {
        match client.outcome(method, params.clone()) {
            Err(error) if error.code == code && error.message.contains(expected) => {}
            other => failures.push(format!(
                "{method} {params}: expected {code} containing {expected:?}, got {other:?}"
            )),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // Malformed frames do not cost the connection either.
    client.write(b"{not json}\0");
    match client.receive() {
        proto::Message::Response(response) => {
            assert_eq!(response.outcome.expect_err("a parse error").code, -32700);
        }
        other => panic!("expected a parse error, got {other:?}"),
    }
    assert_eq!(
        fixture.root_snapshot(),
        before,
        "a refused request changed the root"
    );
    let still = client.ok("mcp.fs.read", json!({"path": "/f.txt"}));
    assert_eq!(still["content"], "content\n");
}
