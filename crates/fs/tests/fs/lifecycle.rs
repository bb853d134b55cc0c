//! Starting up: configuration errors exit 78 with a clear message, the
//! caps are printed as shipped.

use std::process::Command;

use crate::support::{BINARY, Fixture, Launch, PATIENCE};

#[test]
fn start_up_configuration_errors_exit_78_with_a_clear_message() {
    let fixture = Fixture::new();
    let missing = fixture.base().join("no-such-root");
    let cases = [
        (Launch::new().root(&missing), "cannot be used"),
        (Launch::new().config("rooot: /srv"), "unknown field `rooot`"),
        (
            Launch::new().config("max_read_bytes: 0"),
            "max_read_bytes: 0 is out of range",
        ),
        (
            Launch::new().env("LLMBASEDOS_FS_READ_ONLY", "maybe"),
            "LLMBASEDOS_FS_READ_ONLY",
        ),
    ];
    for (launch, expected) in cases {
        let mut server = launch.without_waiting().spawn(&fixture);
        let status = server.wait_exit(PATIENCE);
        assert_eq!(status.code(), Some(78), "{expected}: {}", server.stderr());
        assert!(
            server.stderr().contains(expected),
            "expected {expected:?} in:\n{}",
            server.stderr()
        );
    }
    let mut server = Launch::new()
        .root(&missing)
        .without_waiting()
        .spawn(&fixture);
    server.wait_exit(PATIENCE);
    assert!(
        server.stderr().contains(&missing.display().to_string()),
        "{}",
        server.stderr()
    );
    assert!(!server.is_running());
}

#[test]
fn print_caps_prints_the_shipped_file() {
    let output = Command::new(BINARY)
        .arg("--print-caps")
        .output()
        .expect("run llmbasedos-fs");
    assert!(output.status.success());
    let shipped = include_str!("../../fs.cap.json");
    assert_eq!(String::from_utf8_lossy(&output.stdout), shipped);
    let caps = proto::CompiledCaps::from_json(shipped, "fs.cap.json").expect("the caps compile");
    assert_eq!(caps.service(), "fs");
    assert_eq!(caps.caps().error_base, Some(-32010));
    for name in caps.method_names() {
        let spec = &caps.method(name).expect("declared").spec;
        assert!(spec.result_schema.is_some(), "{name} has no result_schema");
        let annotations = spec.annotations.as_ref().expect("annotations");
        assert!(annotations.contains_key("readOnlyHint"), "{name}");
    }
}

#[test]
fn a_killed_server_is_replaced_by_the_next_one() {
    // The socket a killed server leaves behind is replaced by the next one.
    let fixture = Fixture::new();
    let first = Launch::new().spawn(&fixture);
    first.kill();
    let second = Launch::new().spawn(&fixture);
    let mut client = second.connect();
    client.ok("mcp.fs.list", serde_json::json!({}));
}
