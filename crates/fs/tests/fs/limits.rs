//! Issue 12's resource attacks: trees deeper than any walk should follow,
//! a line longer than any buffer should hold, and many heavy calls at
//! once. The server stays up, answers, and its memory stays bounded.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::support::{Client, Fixture, Launch, Server};

/// The one depth bound of the server's walks (levels beneath the start).
const DEPTH_LIMIT: usize = 256;

/// Removes a tree with `rm -rf` (iterative) before the fixture's own
/// removal, whose recursion a tree thousands of levels deep could overflow.
pub(crate) struct RemoveFirst(pub(crate) PathBuf);

impl Drop for RemoveFirst {
    fn drop(&mut self) {
        let _ = std::process::Command::new("rm")
            .arg("-rf")
            .arg(&self.0)
            .status();
    }
}

/// `levels` directories named `name`, one in the other, beneath `top`
/// (made through directory handles: the path is longer than PATH_MAX).
/// `files` (level, name, content) are written at their levels.
pub(crate) fn deep_tree(top: &Path, levels: usize, name: &str, files: &[(usize, &str, &str)]) {
    fs::create_dir_all(top).expect("create the top");
    let mut dir = cap_std::fs::Dir::open_ambient_dir(top, cap_std::ambient_authority())
        .expect("open the top");
    for level in 1..=levels {
        dir.create_dir(name).expect("create a level");
        dir = dir.open_dir(name).expect("open a level");
        for (at, file, content) in files {
            if *at == level {
                dir.write(file, content).expect("write a file");
            }
        }
    }
}

fn paths(result: &Value, key: &str) -> Vec<String> {
    result[key]
        .as_array()
        .unwrap_or_else(|| panic!("no {key} in {result}"))
        .iter()
        .map(|item| item["path"].as_str().expect("path").to_owned())
        .collect()
}

fn reasons(result: &Value) -> Vec<String> {
    result["skipped"]
        .as_array()
        .unwrap_or_else(|| panic!("no skipped in {result}"))
        .iter()
        .map(|item| item["reason"].as_str().expect("reason").to_owned())
        .collect()
}

fn still_serving(server: &mut Server, client: &mut Client) {
    assert!(server.is_running(), "the server died:\n{}", server.stderr());
    assert_eq!(
        client.ok("mcp.fs.stat", json!({"path": "/"}))["type"],
        "directory"
    );
    let mut other = server.connect();
    assert_eq!(
        other.ok("mcp.fs.stat", json!({"path": "/"}))["type"],
        "directory"
    );
}

/// Regression (issue 12): glob, grep, copy and delete recursed once per
/// directory level; a 2,040-level path made twice with mkdir and nested
/// with move overflowed the stack on `glob '**/x'`, and a tree made on
/// disk crashed grep at 2,000 levels, aborting the process.
#[test]
fn deep_trees_are_walked_within_one_bound_and_the_server_stays_up() {
    let fixture = Fixture::new();
    let _cleanup = RemoveFirst(fixture.root());
    deep_tree(
        &fixture.at("/disk"),
        3000,
        "d",
        &[
            (10, "needle.txt", "a needle\n"),
            (10, "x", ""),
            (2999, "x", "needle\n"),
        ],
    );
    let mut server = Server::start(&fixture);
    let mut client = server.connect();

    // Through the methods: two 2,040-level paths, the second moved to the
    // bottom of the first (4,081 levels).
    let first = format!("/m1{}", "/a".repeat(2040));
    let second = format!("/m2{}", "/a".repeat(2040));
    for path in [&first, &second] {
        client.ok("mcp.fs.mkdir", json!({"path": path, "parents": true}));
    }
    client.ok(
        "mcp.fs.write",
        json!({"path": format!("{second}/x"), "content": "needle"}),
    );
    client.ok(
        "mcp.fs.write",
        json!({"path": "/m1/a/x", "content": "a needle\n"}),
    );
    client.ok(
        "mcp.fs.move",
        json!({"from": "/m2", "to": format!("{first}/m2")}),
    );

    let shallow_disk_x = format!("/disk{}/x", "/d".repeat(10));
    let globbed = client.ok("mcp.fs.glob", json!({"pattern": "**/x", "path": "/"}));
    let found = paths(&globbed, "matches");
    assert!(
        found.contains(&"/m1/a/x".to_owned()) && found.contains(&shallow_disk_x),
        "{}",
        crate::support::shorten(&globbed)
    );
    assert!(
        reasons(&globbed)
            .iter()
            .any(|reason| reason.contains(&format!("{DEPTH_LIMIT} levels"))),
        "the walk does not say it stopped at the depth bound: {}",
        crate::support::shorten(&globbed)
    );
    still_serving(&mut server, &mut client);

    let grepped = client.ok("mcp.fs.grep", json!({"pattern": "needle", "path": "/"}));
    let found = paths(&grepped, "matches");
    assert!(
        found.contains(&"/m1/a/x".to_owned())
            && found.contains(&format!("/disk{}/needle.txt", "/d".repeat(10))),
        "{}",
        crate::support::shorten(&grepped)
    );
    assert!(
        reasons(&grepped)
            .iter()
            .any(|reason| reason.contains(&format!("{DEPTH_LIMIT} levels"))),
        "{}",
        crate::support::shorten(&grepped)
    );
    still_serving(&mut server, &mut client);

    // Regression: a 64-level tree nested its answer past the 128 levels
    // JSON parsers accept (the client could not read it); trees stop at 32.
    let tree = client.ok("mcp.fs.tree", json!({"path": "/disk", "depth": 32}));
    assert_eq!(
        tree["tree"]["children"][0]["name"],
        "d",
        "{}",
        crate::support::shorten(&tree)
    );
    let error = client.err("mcp.fs.tree", json!({"path": "/disk", "depth": 64}));
    assert_eq!(error.code, crate::support::INVALID_PARAMS, "{error:?}");
    client.ok("mcp.fs.list", json!({"path": "/disk", "depth": 64}));

    let copied = client.err(
        "mcp.fs.copy",
        json!({"from": "/disk", "to": "/copy", "recursive": true}),
    );
    assert!(
        copied.message.contains(&format!("{DEPTH_LIMIT} levels")),
        "{copied:?}"
    );
    still_serving(&mut server, &mut client);

    // Delete removes trees of any depth (what a client could make, it can remove).
    for path in ["/copy", "/disk", "/m1"] {
        let deleted = client.ok("mcp.fs.delete", json!({"path": path, "recursive": true}));
        assert!(deleted["directories"].as_u64() > Some(0), "{deleted}");
        assert!(!fixture.at(path).exists(), "{path} is still there");
        still_serving(&mut server, &mut client);
    }
}

/// Writes `size` bytes of `byte`, quickly, with no newline.
fn one_line_file(path: &Path, byte: u8, size: usize) {
    let mut file = fs::File::create(path).expect("create");
    let block = vec![byte; 1 << 20];
    for _ in 0..size / block.len() {
        file.write_all(&block).expect("write");
    }
    file.write_all(b"needle").expect("write");
}

fn receive_answers(client: &mut Client, count: usize) -> Vec<Value> {
    let mut answers = Vec::new();
    while answers.len() < count {
        if let proto::Message::Response(response) = client.receive() {
            answers.push(response.outcome.expect("grep answers"));
        }
    }
    answers
}

/// Regression (issue 12): a 1 GiB file without a newline took the server
/// from 99 to 1,329 MiB; four pipelined greps reached 5,066 MiB. A line
/// longer than the searcher's bound is skipped and reported, never held.
#[test]
fn a_line_longer_than_the_bound_is_skipped_and_memory_stays_bounded() {
    const PEAK_BOUND_KIB: u64 = 200 * 1024;
    let fixture = Fixture::new();
    fs::create_dir(fixture.at("/big")).expect("mkdir");
    // Sparse NULs: binary, no disk used.
    let sparse = fs::File::create(fixture.at("/big/sparse.bin")).expect("create");
    sparse.set_len(1 << 30).expect("set_len");
    drop(sparse);
    one_line_file(&fixture.at("/big/one-line.txt"), b'a', 256 << 20);
    fixture.write("/big/small.txt", "a needle here\n");
    let server = Server::start(&fixture);
    let mut client = server.connect();
    let before = server.peak_rss_kib();

    let grepped = client.ok("mcp.fs.grep", json!({"pattern": "needle", "path": "/big"}));
    let single = server.peak_rss_kib();
    assert!(
        single < PEAK_BOUND_KIB,
        "one grep took the server's peak RSS from {before} KiB to {single} KiB"
    );
    assert_eq!(paths(&grepped, "matches"), ["/big/small.txt"], "{grepped}");
    let skipped = &grepped["skipped"];
    assert_eq!(skipped[0]["path"], "/big/one-line.txt", "{grepped}");
    assert!(
        skipped[0]["reason"]
            .as_str()
            .is_some_and(|reason| reason.contains("longer than")),
        "{grepped}"
    );

    for _ in 0..4 {
        client.send_request("mcp.fs.grep", json!({"pattern": "needle", "path": "/big"}));
    }
    for answer in receive_answers(&mut client, 4) {
        assert_eq!(paths(&answer, "matches"), ["/big/small.txt"], "{answer}");
    }
    let pipelined = server.peak_rss_kib();
    assert!(
        pipelined < PEAK_BOUND_KIB,
        "four pipelined greps took the server's peak RSS from {before} KiB to {pipelined} KiB"
    );
    println!(
        "peak RSS: {before} KiB at start, {single} KiB after one grep, {pipelined} KiB after four"
    );
}

/// Heavy operations queue for `max_heavy_operations` slots: with one slot,
/// a glob sent while a long grep runs is answered after the grep.
#[test]
fn heavy_operations_queue_for_their_slots() {
    let fixture = Fixture::new();
    for index in 0..4000 {
        fixture.write(
            &format!("/many/d{}/f{index:04}.txt", index % 20),
            "needle\n",
        );
    }
    let server = Launch::new()
        .config("max_heavy_operations: 1\n")
        .spawn(&fixture);
    let mut client = server.connect();
    let grep = client.send_request(
        "mcp.fs.grep",
        json!({"pattern": "needle", "max_results": 10000, "_meta": {"progressToken": "grep"}}),
    );
    // The grep holds the one slot once it reports progress.
    match client.receive() {
        proto::Message::Notification(notification) => {
            assert_eq!(notification.method, "notifications/progress");
        }
        other => panic!("expected the grep's progress, got {other:?}"),
    }
    let glob = client.send_request("mcp.fs.glob", json!({"pattern": "f0001.txt"}));
    let mut order = Vec::new();
    while order.len() < 2 {
        if let proto::Message::Response(response) = client.receive() {
            response.outcome.expect("both succeed");
            order.push(response.id.expect("an id"));
        }
    }
    assert_eq!(order, [grep, glob], "the glob ran beside the grep");
}

/// The ignore files of the directories a search has open are held within
/// one budget (1 MiB): compiled, each MiB of patterns costs tens of MiB,
/// and each of 256 levels may have its own. What the budget cuts is
/// reported, and searched rather than left out.
#[test]
fn ignore_files_are_held_within_one_budget() {
    let fixture = Fixture::new();
    let rules: String = (0..45_000)
        .map(|index| format!("rule-{index:07}\n"))
        .collect();
    assert!(rules.len() > 512 * 1024);
    fixture.write("/tree/.gitignore", &rules);
    fixture.write("/tree/a/.gitignore", format!("{rules}ignored.txt\n"));
    fixture.write("/tree/a/ignored.txt", "needle\n");
    fixture.write("/tree/a/b/kept.txt", "needle\n");
    let server = Server::start(&fixture);
    let mut client = server.connect();
    let grepped = client.ok("mcp.fs.grep", json!({"pattern": "needle", "path": "/tree"}));
    assert_eq!(
        paths(&grepped, "matches"),
        ["/tree/a/b/kept.txt", "/tree/a/ignored.txt"],
        "{}",
        crate::support::shorten(&grepped)
    );
    assert_eq!(grepped["skipped"][0]["path"], "/tree/a", "{grepped}");
    assert!(
        reasons(&grepped)[0].contains("read only in part"),
        "{grepped}"
    );
    let peak = server.peak_rss_kib();
    assert!(peak < 200 * 1024, "peak RSS {peak} KiB");
}

/// A directory wider than a tree answer holds: the tree stops at its node
/// limit and says why, a page of a listing holds its page and counts the
/// rest, and glob walks it all.
#[test]
fn wide_directories_are_answered_within_their_limits_and_say_so() {
    const WIDE: usize = 20_100;
    let fixture = Fixture::new();
    let wide = fixture.at("/wide");
    fs::create_dir_all(&wide).expect("create /wide");
    for index in 0..WIDE {
        fs::write(wide.join(format!("w{index:05}.txt")), "w").expect("write an entry");
    }
    let mut server = Server::start(&fixture);
    let mut client = server.connect();

    let tree = client.ok("mcp.fs.tree", json!({"depth": 3}));
    assert_eq!(
        (&tree["nodes"], &tree["truncated"]),
        (&json!(20_000), &json!(true))
    );
    let reason = tree["truncated_reason"].as_str().expect("a reason");
    assert!(reason.contains("at most 20000 nodes"), "{reason}");

    let page = client.ok("mcp.fs.list", json!({"path": "/wide", "limit": 100}));
    let names: Vec<&str> = page["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|entry| entry["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names.len(), 100);
    assert_eq!((names[0], names[99]), ("w00000.txt", "w00099.txt"));
    assert_eq!(
        (
            &page["total"],
            &page["summary"]["files"],
            &page["truncated"]
        ),
        (&json!(WIDE), &json!(WIDE), &json!(false))
    );
    let last = client.ok(
        "mcp.fs.list",
        json!({"path": "/wide", "limit": 100, "sort": "name", "descending": true}),
    );
    assert_eq!(last["entries"][0]["name"], "w20099.txt");

    let glob = client.ok(
        "mcp.fs.glob",
        json!({"pattern": "w*9.txt", "max_results": 10_000}),
    );
    assert_eq!(
        (glob["matches"].as_array().map(Vec::len), &glob["truncated"]),
        (Some(WIDE / 10), &json!(false))
    );
    still_serving(&mut server, &mut client);
    server.assert_results_match_schemas();
}
