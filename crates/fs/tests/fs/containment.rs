//! The containment table of issue 4: every way out of the root is refused,
//! and shown not to have read or changed anything outside it.

use std::ffi::CString;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{DENIED, Fixture, INVALID_VALUE, NOT_FOUND, SECRET, Server};

/// Lays out the fixture every containment case runs against.
fn escape_fixture() -> Fixture {
    let fixture = Fixture::new();
    let outside = fixture.outside();
    fixture.write("/inside.txt", "inside content\n");
    fixture.write("/sub/inner.txt", "inner content\n");
    fixture.symlink(outside.join("secret.txt"), "/abs_file");
    fixture.symlink("../outside/secret.txt", "/rel_file");
    fixture.symlink(&outside, "/abs_dir");
    fixture.symlink("../outside", "/rel_dir");
    fixture.symlink("../../outside", "/sub/deep_rel_dir");
    fixture.symlink("../outside/created-through-dangling.txt", "/dangling");
    fixture.symlink("/proc/self/root", "/proc_root");
    fixture.symlink(
        format!("/proc/self/root{}", outside.join("secret.txt").display()),
        "/proc_secret",
    );
    fixture.symlink("../../../../../../../../../../dev/zero", "/rel_zero");
    fixture.symlink("/dev/zero", "/abs_zero");
    // A hard link to an outside file (same file system: the same temp dir).
    std::fs::write(outside.join("linked.txt"), SECRET).expect("write the link target");
    std::fs::hard_link(outside.join("linked.txt"), fixture.at("/hardlink.txt"))
        .expect("create a hard link");
    fixture
}

/// One case: a request that must fail with one of `codes`.
struct Case {
    name: &'static str,
    method: &'static str,
    params: Value,
    codes: &'static [i32],
}

fn case(name: &'static str, method: &'static str, params: Value, codes: &'static [i32]) -> Case {
    Case {
        name,
        method,
        params,
        codes,
    }
}

const DENIED_ONLY: &[i32] = &[DENIED];
const MALFORMED: &[i32] = &[INVALID_VALUE];
/// An outside absolute host path names a (missing) file inside the root.
const ABSENT: &[i32] = &[NOT_FOUND];

fn cases(fixture: &Fixture) -> Vec<Case> {
    let host_secret = fixture.outside().join("secret.txt").display().to_string();
    let host_evil = fixture
        .base()
        .join("data_evil/secret.txt")
        .display()
        .to_string();
    let host_outside = fixture.outside().display().to_string();
    vec![
        // `..` in every position.
        case(
            "dotdot first",
            "mcp.fs.read",
            json!({"path": "/../outside/secret.txt"}),
            DENIED_ONLY,
        ),
        case(
            "dotdot only",
            "mcp.fs.read",
            json!({"path": "/.."}),
            DENIED_ONLY,
        ),
        case(
            "dotdot middle",
            "mcp.fs.read",
            json!({"path": "/sub/../../outside/secret.txt"}),
            DENIED_ONLY,
        ),
        case(
            "dotdot last",
            "mcp.fs.list",
            json!({"path": "/sub/.."}),
            DENIED_ONLY,
        ),
        case(
            "dotdot deep",
            "mcp.fs.read",
            json!({"path": "/sub/../sub/../../outside/secret.txt"}),
            DENIED_ONLY,
        ),
        case(
            "dotdot relative",
            "mcp.fs.read",
            json!({"path": "../outside/secret.txt"}),
            MALFORMED,
        ),
        case(
            "dotdot trailing slash",
            "mcp.fs.list",
            json!({"path": "/../"}),
            DENIED_ONLY,
        ),
        case(
            "dotdot write",
            "mcp.fs.write",
            json!({"path": "/../outside/new.txt", "content": "x"}),
            DENIED_ONLY,
        ),
        case(
            "dotdot mkdir",
            "mcp.fs.mkdir",
            json!({"path": "/../outside/newdir", "parents": true}),
            DENIED_ONLY,
        ),
        case(
            "dotdot delete",
            "mcp.fs.delete",
            json!({"path": "/../outside/secret.txt"}),
            DENIED_ONLY,
        ),
        case(
            "dotdot list positional",
            "mcp.fs.list",
            json!(["/.."]),
            DENIED_ONLY,
        ),
        case(
            "dotdot grep",
            "mcp.fs.grep",
            json!({"pattern": "SECRET", "path": "/../outside"}),
            DENIED_ONLY,
        ),
        case(
            "dotdot glob",
            "mcp.fs.glob",
            json!({"pattern": "*", "path": "/.."}),
            DENIED_ONLY,
        ),
        case(
            "dotdot tree",
            "mcp.fs.tree",
            json!({"path": "/sub/../.."}),
            DENIED_ONLY,
        ),
        case(
            "dotdot stat",
            "mcp.fs.stat",
            json!({"path": "/../outside/secret.txt"}),
            DENIED_ONLY,
        ),
        case(
            "dotdot to prefix sibling",
            "mcp.fs.read",
            json!({"path": "/sub/../../data_evil/secret.txt"}),
            DENIED_ONLY,
        ),
        // Absolute paths outside the root are virtual paths inside it.
        case(
            "absolute host path",
            "mcp.fs.read",
            json!({"path": host_secret}),
            ABSENT,
        ),
        case(
            "absolute etc",
            "mcp.fs.read",
            json!({"path": "/etc/passwd"}),
            ABSENT,
        ),
        case(
            "absolute outside dir",
            "mcp.fs.list",
            json!({"path": host_outside}),
            ABSENT,
        ),
        // The sibling sharing the root's name as a prefix.
        case(
            "prefix sibling host path",
            "mcp.fs.read",
            json!({"path": host_evil}),
            ABSENT,
        ),
        case(
            "prefix sibling dotdot",
            "mcp.fs.read",
            json!({"path": "/../data_evil/secret.txt"}),
            DENIED_ONLY,
        ),
        case(
            "prefix sibling name",
            "mcp.fs.read",
            json!({"path": "_evil/secret.txt"}),
            MALFORMED,
        ),
        // Symlinks to outside files and directories, absolute and relative.
        case(
            "abs file link read",
            "mcp.fs.read",
            json!({"path": "/abs_file"}),
            DENIED_ONLY,
        ),
        case(
            "rel file link read",
            "mcp.fs.read",
            json!({"path": "/rel_file"}),
            DENIED_ONLY,
        ),
        case(
            "abs dir link read",
            "mcp.fs.read",
            json!({"path": "/abs_dir/secret.txt"}),
            DENIED_ONLY,
        ),
        case(
            "rel dir link read",
            "mcp.fs.read",
            json!({"path": "/rel_dir/secret.txt"}),
            DENIED_ONLY,
        ),
        case(
            "deep rel dir link read",
            "mcp.fs.read",
            json!({"path": "/sub/deep_rel_dir/secret.txt"}),
            DENIED_ONLY,
        ),
        case(
            "abs dir link list",
            "mcp.fs.list",
            json!({"path": "/abs_dir"}),
            DENIED_ONLY,
        ),
        case(
            "rel dir link list",
            "mcp.fs.list",
            json!({"path": "/rel_dir", "recursive": true}),
            DENIED_ONLY,
        ),
        case(
            "rel dir link tree",
            "mcp.fs.tree",
            json!({"path": "/rel_dir"}),
            DENIED_ONLY,
        ),
        case(
            "rel dir link glob",
            "mcp.fs.glob",
            json!({"pattern": "*", "path": "/rel_dir"}),
            DENIED_ONLY,
        ),
        case(
            "rel dir link grep",
            "mcp.fs.grep",
            json!({"pattern": "SECRET", "path": "/rel_dir"}),
            DENIED_ONLY,
        ),
        case(
            "rel file link grep",
            "mcp.fs.grep",
            json!({"pattern": "SECRET", "path": "/rel_file"}),
            DENIED_ONLY,
        ),
        case(
            "rel dir link stat",
            "mcp.fs.stat",
            json!({"path": "/rel_dir/secret.txt"}),
            DENIED_ONLY,
        ),
        case(
            "rel file link edit",
            "mcp.fs.edit",
            json!({"path": "/rel_file", "edits": [{"old_text": "TOP", "new_text": "x"}], "dry_run": true}),
            DENIED_ONLY,
        ),
        case(
            "rel file link copy",
            "mcp.fs.copy",
            json!({"from": "/rel_file", "to": "/stolen.txt"}),
            DENIED_ONLY,
        ),
        case(
            "rel dir link copy",
            "mcp.fs.copy",
            json!({"from": "/rel_dir", "to": "/stolen", "recursive": true}),
            DENIED_ONLY,
        ),
        case(
            "abs dir link delete inside",
            "mcp.fs.delete",
            json!({"path": "/abs_dir/secret.txt"}),
            DENIED_ONLY,
        ),
        // Writing through links.
        case(
            "dangling link write",
            "mcp.fs.write",
            json!({"path": "/dangling", "content": "x"}),
            DENIED_ONLY,
        ),
        case(
            "dangling link create",
            "mcp.fs.write",
            json!({"path": "/dangling", "content": "x", "mode": "create"}),
            DENIED_ONLY,
        ),
        case(
            "dangling link append",
            "mcp.fs.write",
            json!({"path": "/dangling", "content": "x", "mode": "append"}),
            DENIED_ONLY,
        ),
        case(
            "link to outside overwrite",
            "mcp.fs.write",
            json!({"path": "/rel_file", "content": "pwned"}),
            DENIED_ONLY,
        ),
        case(
            "abs link to outside overwrite",
            "mcp.fs.write",
            json!({"path": "/abs_file", "content": "pwned"}),
            DENIED_ONLY,
        ),
        case(
            "link to outside append",
            "mcp.fs.write",
            json!({"path": "/rel_file", "content": "pwned", "mode": "append"}),
            DENIED_ONLY,
        ),
        case(
            "link to outside edit",
            "mcp.fs.edit",
            json!({"path": "/rel_file", "edits": [{"old_text": "TOP", "new_text": "x"}]}),
            DENIED_ONLY,
        ),
        case(
            "write beneath dir link",
            "mcp.fs.write",
            json!({"path": "/rel_dir/new.txt", "content": "x"}),
            DENIED_ONLY,
        ),
        case(
            "write beneath dir link with parents",
            "mcp.fs.write",
            json!({"path": "/abs_dir/a/new.txt", "content": "x", "create_parents": true}),
            DENIED_ONLY,
        ),
        // mkdir -p through a symlinked intermediate directory.
        case(
            "mkdir -p through rel link",
            "mcp.fs.mkdir",
            json!({"path": "/rel_dir/made/deeper", "parents": true}),
            DENIED_ONLY,
        ),
        case(
            "mkdir -p through abs link",
            "mcp.fs.mkdir",
            json!({"path": "/abs_dir/made", "parents": true}),
            DENIED_ONLY,
        ),
        case(
            "mkdir through rel link",
            "mcp.fs.mkdir",
            json!({"path": "/rel_dir/made"}),
            DENIED_ONLY,
        ),
        // Hard links to outside files.
        case(
            "hard link read",
            "mcp.fs.read",
            json!({"path": "/hardlink.txt"}),
            DENIED_ONLY,
        ),
        case(
            "hard link overwrite",
            "mcp.fs.write",
            json!({"path": "/hardlink.txt", "content": "pwned"}),
            DENIED_ONLY,
        ),
        case(
            "hard link append",
            "mcp.fs.write",
            json!({"path": "/hardlink.txt", "content": "pwned", "mode": "append"}),
            DENIED_ONLY,
        ),
        case(
            "hard link edit",
            "mcp.fs.edit",
            json!({"path": "/hardlink.txt", "edits": [{"old_text": "TOP", "new_text": "x"}]}),
            DENIED_ONLY,
        ),
        case(
            "hard link copy",
            "mcp.fs.copy",
            json!({"from": "/hardlink.txt", "to": "/copy.txt"}),
            DENIED_ONLY,
        ),
        case(
            "hard link grep",
            "mcp.fs.grep",
            json!({"pattern": "SECRET", "path": "/hardlink.txt"}),
            DENIED_ONLY,
        ),
        // /proc magic links.
        case(
            "proc self root path",
            "mcp.fs.read",
            json!({"path": "/proc/self/root/etc/passwd"}),
            ABSENT,
        ),
        case(
            "proc self root host secret",
            "mcp.fs.read",
            json!({"path": format!("/proc/self/root{host_secret}")}),
            ABSENT,
        ),
        case(
            "link to proc self root",
            "mcp.fs.list",
            json!({"path": "/proc_root"}),
            DENIED_ONLY,
        ),
        case(
            "link to proc self root file",
            "mcp.fs.read",
            json!({"path": "/proc_root/etc/passwd"}),
            DENIED_ONLY,
        ),
        case(
            "link through proc to secret",
            "mcp.fs.read",
            json!({"path": "/proc_secret"}),
            DENIED_ONLY,
        ),
        // NUL bytes.
        case(
            "nul read",
            "mcp.fs.read",
            json!({"path": "/inside.txt\u{0}/etc/passwd"}),
            MALFORMED,
        ),
        case(
            "nul write",
            "mcp.fs.write",
            json!({"path": "/a\u{0}b", "content": "x"}),
            MALFORMED,
        ),
        case(
            "nul only",
            "mcp.fs.list",
            json!({"path": "\u{0}"}),
            MALFORMED,
        ),
        case(
            "nul move",
            "mcp.fs.move",
            json!({"from": "/inside.txt", "to": "/x\u{0}"}),
            MALFORMED,
        ),
        // Devices reached through symlinks (must not hang).
        case(
            "rel link to dev zero",
            "mcp.fs.read",
            json!({"path": "/rel_zero"}),
            DENIED_ONLY,
        ),
        case(
            "abs link to dev zero",
            "mcp.fs.read",
            json!({"path": "/abs_zero"}),
            DENIED_ONLY,
        ),
        case(
            "abs link to dev zero tail",
            "mcp.fs.read",
            json!({"path": "/abs_zero", "tail": 1}),
            DENIED_ONLY,
        ),
        // Move and copy with outside destinations.
        case(
            "move to dotdot",
            "mcp.fs.move",
            json!({"from": "/inside.txt", "to": "/../outside/moved.txt"}),
            DENIED_ONLY,
        ),
        case(
            "move into rel dir link",
            "mcp.fs.move",
            json!({"from": "/inside.txt", "to": "/rel_dir/moved.txt"}),
            DENIED_ONLY,
        ),
        case(
            "move into abs dir link",
            "mcp.fs.move",
            json!({"from": "/inside.txt", "to": "/abs_dir/moved.txt"}),
            DENIED_ONLY,
        ),
        case(
            "move over outside through link",
            "mcp.fs.move",
            json!({"from": "/inside.txt", "to": "/rel_dir/secret.txt", "overwrite": true}),
            DENIED_ONLY,
        ),
        case(
            "move from outside",
            "mcp.fs.move",
            json!({"from": "/rel_dir/secret.txt", "to": "/taken.txt"}),
            DENIED_ONLY,
        ),
        case(
            "copy to dotdot",
            "mcp.fs.copy",
            json!({"from": "/inside.txt", "to": "/../outside/copied.txt"}),
            DENIED_ONLY,
        ),
        case(
            "copy into rel dir link",
            "mcp.fs.copy",
            json!({"from": "/inside.txt", "to": "/rel_dir/copied.txt"}),
            DENIED_ONLY,
        ),
        case(
            "copy over outside through link",
            "mcp.fs.copy",
            json!({"from": "/inside.txt", "to": "/abs_dir/secret.txt", "overwrite": true}),
            DENIED_ONLY,
        ),
        case(
            "copy tree into link",
            "mcp.fs.copy",
            json!({"from": "/sub", "to": "/rel_dir/sub", "recursive": true}),
            DENIED_ONLY,
        ),
        case(
            "copy from outside",
            "mcp.fs.copy",
            json!({"from": "/abs_dir/secret.txt", "to": "/taken.txt"}),
            DENIED_ONLY,
        ),
        // The same escapes as MCP resource URIs.
        case(
            "resource dotdot",
            "mcp.fs.resource_read",
            json!({"uri": "file:///../outside/secret.txt"}),
            DENIED_ONLY,
        ),
        case(
            "resource encoded dotdot",
            "mcp.fs.resource_read",
            json!({"uri": "file:///%2e%2e/outside/secret.txt"}),
            DENIED_ONLY,
        ),
        case(
            "resource encoded slash dotdot",
            "mcp.fs.resource_read",
            json!({"uri": "file:///sub%2F..%2F..%2Foutside%2Fsecret.txt"}),
            DENIED_ONLY,
        ),
        case(
            "resource link to outside",
            "mcp.fs.resource_read",
            json!({"uri": "file:///rel_file"}),
            DENIED_ONLY,
        ),
        case(
            "resource hard link",
            "mcp.fs.resource_read",
            json!({"uri": "file:///hardlink.txt"}),
            DENIED_ONLY,
        ),
        case(
            "resource encoded nul",
            "mcp.fs.resource_read",
            json!({"uri": "file:///inside.txt%00"}),
            MALFORMED,
        ),
        case(
            "resource with host",
            "mcp.fs.resource_read",
            json!({"uri": format!("file://localhost{host_secret}")}),
            MALFORMED,
        ),
        case(
            "resource host path",
            "mcp.fs.resource_read",
            json!({"uri": format!("file://{host_secret}")}),
            ABSENT,
        ),
    ]
}

/// Fails unless `text` (a whole response) carries no outside content and
/// no host path of the fixture.
fn assert_no_leak(fixture: &Fixture, name: &str, params: &Value, text: &str) {
    assert!(
        !text.contains(SECRET),
        "{name}: the response leaks outside content: {text}"
    );
    let base = fixture.base().display().to_string();
    // A case that sends a host path gets it echoed as the virtual path it is.
    if !params.to_string().contains(&base) {
        assert!(
            !text.contains(&base),
            "{name}: the response shows a host path: {text}"
        );
    }
}

#[test]
fn every_escape_is_refused_and_nothing_outside_is_read_or_changed() {
    let fixture = escape_fixture();
    let server = Server::start(&fixture);
    let mut client = server.connect();
    let outside_before = fixture.outside_snapshot();
    let mut failures = Vec::new();
    for case in cases(&fixture) {
        let root_before = fixture.root_snapshot();
        let outcome = client.outcome(case.method, case.params.clone());
        let text = match &outcome {
            Ok(result) => result.to_string(),
            Err(error) => format!("{} {}", error.code, error.message),
        };
        assert_no_leak(&fixture, case.name, &case.params, &text);
        match &outcome {
            Err(error) if case.codes.contains(&error.code) => {
                assert!(!error.message.is_empty(), "{}: empty message", case.name);
            }
            _ => failures.push(format!(
                "{} ({} {}): expected one of {:?}, got {text}",
                case.name, case.method, case.params, case.codes
            )),
        }
        assert_eq!(
            fixture.outside_snapshot(),
            outside_before,
            "{}: something outside the root changed",
            case.name
        );
        assert_eq!(
            fixture.root_snapshot(),
            root_before,
            "{}: a refused request changed the root",
            case.name
        );
    }
    assert!(
        failures.is_empty(),
        "cases that were not refused as expected:\n{}",
        failures.join("\n")
    );
    assert!(
        !fixture
            .outside()
            .join("created-through-dangling.txt")
            .exists(),
        "a write through a dangling link created a file outside"
    );
}

#[test]
fn read_many_refuses_each_escape_on_its_own() {
    let fixture = escape_fixture();
    let server = Server::start(&fixture);
    let mut client = server.connect();
    let result = client.ok(
        "mcp.fs.read_many",
        json!({"paths": ["/inside.txt", "/rel_file", "/abs_dir/secret.txt", "/../outside/secret.txt", "/hardlink.txt", "/sub/inner.txt"]}),
    );
    assert_no_leak(&fixture, "read_many", &json!({}), &result.to_string());
    let oks: Vec<bool> = result["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|item| item["ok"].as_bool().expect("ok flag"))
        .collect();
    assert_eq!(oks, [true, false, false, false, false, true]);
    for item in &result["results"].as_array().expect("results")[1..5] {
        assert_eq!(item["error"]["code"], DENIED, "{item}");
    }
}

/// A symlink swapped between an inside and an outside target by another
/// thread while 300 reads run: no read ever returns the outside file.
#[test]
fn a_symlink_swapped_during_300_reads_never_leaks() {
    let fixture = escape_fixture();
    let server = Server::start(&fixture);
    let mut client = server.connect();
    let link = fixture.at("/swap");
    let staging = fixture.at("/.swap-staging");
    std::os::unix::fs::symlink("inside.txt", &link).expect("create the link");
    let stop = Arc::new(AtomicBool::new(false));
    let swapper = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut swaps = 0_u64;
            while !stop.load(Ordering::Relaxed) {
                let target = if swaps.is_multiple_of(2) {
                    "../outside/secret.txt"
                } else {
                    "inside.txt"
                };
                let _ = std::fs::remove_file(&staging);
                std::os::unix::fs::symlink(target, &staging).expect("stage a link");
                std::fs::rename(&staging, &link).expect("swap the link");
                swaps += 1;
            }
            swaps
        })
    };
    let (mut inside, mut refused) = (0, 0);
    for _ in 0..300 {
        match client.outcome("mcp.fs.read", json!({"path": "/swap"})) {
            Ok(result) => {
                let content = result["content"].as_str().expect("content");
                assert!(!content.contains(SECRET), "leak: {result}");
                assert_eq!(content, "inside content\n");
                inside += 1;
            }
            Err(error) => {
                assert!(!error.message.contains(SECRET), "leak: {error}");
                assert!(
                    [DENIED, NOT_FOUND].contains(&error.code),
                    "unexpected error: {error}"
                );
                refused += 1;
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    let swaps = swapper.join().expect("the swapper thread");
    // The race must really have run: the link changed many times, and
    // reads met both targets.
    assert!(swaps > 20, "the link was swapped only {swaps} times");
    assert!(
        inside > 0,
        "the inside target was never in place during a read"
    );
    assert_eq!(inside + refused, 300);
    assert!(
        refused > 0,
        "the outside target was never in place during a read"
    );
}

/// FIFOs and device nodes inside the root are refused at once, never opened
/// in a way that blocks, and walks over them do not hang.
#[test]
fn fifos_and_devices_are_refused_without_hanging() {
    let fixture = escape_fixture();
    let fifo = CString::new(fixture.at("/fifo").display().to_string()).expect("path");
    // SAFETY: mkfifo with a valid C string.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0, "mkfifo");
    let device = CString::new(fixture.at("/zero_node").display().to_string()).expect("path");
    // SAFETY: as above.
    let result =
        unsafe { libc::mknod(device.as_ptr(), libc::S_IFCHR | 0o644, libc::makedev(1, 5)) };
    assert_eq!(
        result,
        0,
        "mknod of a /dev/zero node failed ({}): this test needs CAP_MKNOD (run the tests as root, as CI does)",
        std::io::Error::last_os_error()
    );
    fixture.symlink("fifo", "/fifo_link");
    let fifo_in_tree = CString::new(fixture.at("/sub/fifo").display().to_string()).expect("path");
    // SAFETY: as above.
    assert_eq!(
        unsafe { libc::mkfifo(fifo_in_tree.as_ptr(), 0o644) },
        0,
        "mkfifo"
    );
    let server = Server::start(&fixture);
    let mut client = server.connect();
    let started = Instant::now();
    for (method, params) in [
        ("mcp.fs.read", json!({"path": "/fifo"})),
        ("mcp.fs.read", json!({"path": "/fifo_link"})),
        ("mcp.fs.read", json!({"path": "/fifo", "tail": 3})),
        ("mcp.fs.read", json!({"path": "/zero_node"})),
        (
            "mcp.fs.read",
            json!({"path": "/zero_node", "offset": 0, "length": 10}),
        ),
        (
            "mcp.fs.write",
            json!({"path": "/fifo", "content": "x", "mode": "append"}),
        ),
        ("mcp.fs.write", json!({"path": "/fifo", "content": "x"})),
        (
            "mcp.fs.write",
            json!({"path": "/zero_node", "content": "x", "mode": "append"}),
        ),
        (
            "mcp.fs.edit",
            json!({"path": "/fifo", "edits": [{"old_text": "a", "new_text": "b"}]}),
        ),
        (
            "mcp.fs.copy",
            json!({"from": "/zero_node", "to": "/zero_copy"}),
        ),
        ("mcp.fs.grep", json!({"pattern": "x", "path": "/fifo"})),
    ] {
        let error = client.err(method, params.clone());
        assert_eq!(error.code, DENIED, "{method} {params}: {error}");
        assert!(error.message.contains("FIFO, socket or device"), "{error}");
    }
    // Walks list them as "other" and never open them.
    let grep = client.ok("mcp.fs.grep", json!({"pattern": "content"}));
    assert_eq!(
        grep["matches"].as_array().expect("matches").len(),
        2,
        "{grep}"
    );
    let listing = client.ok("mcp.fs.list", json!({"path": "/"}));
    let fifo_entry = listing["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .find(|entry| entry["name"] == "fifo")
        .expect("the fifo is listed");
    assert_eq!(fifo_entry["type"], "other");
    let copy = client.ok(
        "mcp.fs.copy",
        json!({"from": "/sub", "to": "/copy", "recursive": true}),
    );
    assert_eq!(
        copy["skipped"],
        json!(["/sub/deep_rel_dir", "/sub/fifo"]),
        "{copy}"
    );
    assert_eq!(copy["files"], 1, "{copy}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
}

/// Loops of symlinks (to `.`, to `..`, to each other) cannot hang walks.
#[test]
fn symlink_loops_do_not_hang_tree_glob_grep_or_list() {
    let fixture = escape_fixture();
    fixture.write("/loops/file.txt", "content in the loop\n");
    fixture.symlink(".", "/loops/self");
    fixture.symlink("..", "/loops/up");
    fixture.symlink("b", "/loops/a");
    fixture.symlink("a", "/loops/b");
    let server = Server::start(&fixture);
    let mut client = server.connect();
    let started = Instant::now();
    let tree = client.ok("mcp.fs.tree", json!({"path": "/", "depth": 32}));
    let glob = client.ok("mcp.fs.glob", json!({"pattern": "**/*.txt"}));
    let grep = client.ok("mcp.fs.grep", json!({"pattern": "content"}));
    let list = client.ok(
        "mcp.fs.list",
        json!({"path": "/", "recursive": true, "depth": 64}),
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    for result in [&tree, &glob, &grep, &list] {
        assert_no_leak(&fixture, "walk", &json!({}), &result.to_string());
        assert_eq!(result["truncated"], false, "{result}");
    }
    let grep_paths: Vec<&str> = grep["matches"]
        .as_array()
        .expect("matches")
        .iter()
        .map(|found| found["path"].as_str().expect("path"))
        .collect();
    assert_eq!(
        grep_paths,
        ["/inside.txt", "/loops/file.txt", "/sub/inner.txt"]
    );
    let glob_paths: Vec<&str> = glob["matches"]
        .as_array()
        .expect("matches")
        .iter()
        .map(|found| found["path"].as_str().expect("path"))
        .collect();
    // glob lists names: a hard-linked file's name is listed, never opened.
    assert_eq!(
        glob_paths,
        [
            "/hardlink.txt",
            "/inside.txt",
            "/loops/file.txt",
            "/sub/inner.txt"
        ]
    );
    // Reading through the loop is refused, not followed forever.
    let error = client.err("mcp.fs.read", json!({"path": "/loops/a"}));
    assert_eq!(error.code, INVALID_VALUE, "{error}");
    assert!(error.message.contains("loop"), "{error}");
}

#[test]
fn an_absolute_symlink_inside_the_root_is_refused_and_the_error_says_why_and_what_to_do() {
    let fixture = Fixture::new();
    fixture.write("/docs/guide.md", "inside the root");
    // Absolute, but naming a file inside the root: RESOLVE_BENEATH cannot
    // tell, and refuses it; a relative link to the same file works.
    fixture.symlink(fixture.at("/docs/guide.md"), "/absolute-link.md");
    fixture.symlink("docs/guide.md", "/relative-link.md");
    let server = Server::start(&fixture);
    let mut client = server.connect();
    let error = client.err("mcp.fs.read", json!({"path": "/absolute-link.md"}));
    assert_eq!(error.code, DENIED, "{}", error.message);
    for needle in [
        "Absolute symbolic links are refused even when they point inside the root",
        "make the link relative",
    ] {
        assert!(
            error.message.contains(needle),
            "{needle:?} not in {}",
            error.message
        );
    }
    let read = client.ok("mcp.fs.read", json!({"path": "/relative-link.md"}));
    assert_eq!(read["content"], "inside the root", "{read}");
}
