//! Permission bits of what the server creates: new and replaced files and
//! directories never carry setuid, setgid or sticky bits, whatever the
//! source or the file replaced had.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

use serde_json::json;

use crate::support::{Fixture, Server};

const SPECIAL_BITS: u32 = 0o7000;

fn chmod(fixture: &Fixture, path: &str, mode: u32) {
    fs::set_permissions(fixture.at(path), fs::Permissions::from_mode(mode)).expect("chmod");
}

/// Regression (issue 12): `mcp.fs.copy` of a nobody-owned 4755 file gave
/// `-rwsr-xr-x root root`; overwriting a 2777 file with `mcp.fs.write`
/// kept setgid with the client's content.
#[test]
fn new_and_replaced_files_never_carry_setuid_setgid_or_sticky_bits() {
    let fixture = Fixture::new();
    fixture.write("/suid", "setuid program\n");
    fixture.write("/sgid", "setgid data\n");
    fixture.write("/sticky", "sticky text\n");
    fixture.write("/append", "appended to: ");
    fixture.write("/tree/suid", "inner setuid\n");
    fixture.write("/tree/odd/sgid", "inner setgid\n");
    chmod(&fixture, "/suid", 0o4755);
    chmod(&fixture, "/sgid", 0o2777);
    chmod(&fixture, "/sticky", 0o1777);
    chmod(&fixture, "/append", 0o6755);
    chmod(&fixture, "/tree/suid", 0o4755);
    chmod(&fixture, "/tree/odd/sgid", 0o2755);
    chmod(&fixture, "/tree/odd", 0o3777);
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        // As in the issue: a file of another user, copied by a root server.
        std::os::unix::fs::chown(fixture.at("/suid"), Some(65_534), Some(65_534))
            .expect("chown to nobody");
        chmod(&fixture, "/suid", 0o4755);
    }
    let server = Server::start(&fixture);
    let mut client = server.connect();
    client.ok("mcp.fs.copy", json!({"from": "/suid", "to": "/suid-copy"}));
    client.ok(
        "mcp.fs.write",
        json!({"path": "/sgid", "content": "the client's content\n"}),
    );
    client.ok(
        "mcp.fs.edit",
        json!({"path": "/sticky", "edits": [{"old_text": "sticky", "new_text": "edited"}]}),
    );
    client.ok(
        "mcp.fs.write",
        json!({"path": "/append", "content": "the client", "mode": "append"}),
    );
    client.ok(
        "mcp.fs.copy",
        json!({"from": "/tree", "to": "/tree-copy", "recursive": true}),
    );
    client.ok(
        "mcp.fs.copy",
        json!({"from": "/suid", "to": "/sgid", "overwrite": true}),
    );
    let expected = [
        ("/suid-copy", "setuid program\n"),
        ("/sgid", "setuid program\n"),
        ("/sticky", "edited text\n"),
        ("/append", "appended to: the client"),
        ("/tree-copy/suid", "inner setuid\n"),
        ("/tree-copy/odd/sgid", "inner setgid\n"),
    ];
    let mut failures = Vec::new();
    for (path, content) in expected {
        let metadata = fs::metadata(fixture.at(path)).expect("stat");
        let mode = metadata.permissions().mode();
        if mode & SPECIAL_BITS != 0 {
            failures.push(format!(
                "{path}: mode {:o}, owner {}",
                mode & 0o7777,
                metadata.uid()
            ));
        }
        assert_eq!(
            String::from_utf8_lossy(&fixture.read(path)),
            content,
            "{path}"
        );
    }
    for dir in ["/tree-copy", "/tree-copy/odd"] {
        let mode = fs::metadata(fixture.at(dir))
            .expect("stat")
            .permissions()
            .mode();
        if mode & SPECIAL_BITS != 0 {
            failures.push(format!("{dir}: mode {:o}", mode & 0o7777));
        }
    }
    assert!(
        failures.is_empty(),
        "files the server made or replaced carry setuid/setgid/sticky bits:\n{}",
        failures.join("\n")
    );
    // The sources are left as they were.
    assert_eq!(
        fs::metadata(fixture.at("/suid"))
            .expect("stat")
            .permissions()
            .mode()
            & 0o7777,
        0o4755
    );
}
