//! Atomic overwrites: the server is SIGKILLed in the middle of large
//! overwrites, many times; the target always holds wholly the old or
//! wholly the new content. An append that fails on a full file system
//! leaves the file as it was.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::{Fixture, Launch, Server};

const SIZE: usize = 6 * 1024 * 1024;
const KILLS: u32 = 30;
const EXTRA: u32 = 20;

fn content(letter: u8) -> String {
    String::from_utf8(vec![letter; SIZE]).expect("ASCII")
}

/// Which generation the file holds: its letter, if it is whole.
fn whole_letter(data: &[u8]) -> Option<u8> {
    let first = *data.first()?;
    (data.len() == SIZE && data.iter().all(|byte| *byte == first)).then_some(first)
}

#[test]
fn a_killed_overwrite_leaves_the_old_or_the_new_file_never_a_mix() {
    let fixture = Fixture::new();
    fixture.write("/big.txt", content(b'a'));
    // How long the server works on one overwrite once it has the request
    // (sending 6 MiB blocks until the server has read it), to spread the
    // kills over that time.
    let full = {
        let server = Server::start(&fixture);
        let mut client = server.connect();
        client.send_request(
            "mcp.fs.write",
            json!({"path": "/big.txt", "content": content(b'b')}),
        );
        let started = Instant::now();
        match client.receive() {
            proto::Message::Response(response) => {
                response.outcome.expect("the first overwrite succeeds");
            }
            other => panic!("expected the response, got {other:?}"),
        }
        started.elapsed()
    };
    assert_eq!(whole_letter(&fixture.read("/big.txt")), Some(b'b'));
    let (mut old, mut new) = (0, 0);
    let mut current = b'b';
    // The first KILLS kills spread from at once to twice the time a whole
    // write took; if none landed after the rename (a loaded machine is
    // slower than the measurement), later ones wait longer and longer, up to
    // EXTRA more, until one does.
    let mut kill = 0;
    while kill < KILLS || (new == 0 && kill < KILLS + EXTRA) {
        let next = if current == b'z' { b'a' } else { current + 1 };
        let server = Server::start(&fixture);
        let mut client = server.connect();
        let request = json!({"path": "/big.txt", "content": content(next)});
        client.send_request("mcp.fs.write", request);
        let delay = if kill < KILLS {
            full.mul_f64(2.0 * f64::from(kill) / f64::from(KILLS))
        } else {
            full.mul_f64(2.0 * f64::from(kill - KILLS + 2))
        };
        std::thread::sleep(delay.min(Duration::from_secs(10)));
        server.kill();
        let data = fixture.read("/big.txt");
        match whole_letter(&data) {
            Some(letter) if letter == current => old += 1,
            Some(letter) if letter == next => {
                new += 1;
                current = next;
            }
            other => panic!(
                "kill {kill} after {delay:?}: the file is neither the old ({}) nor the new ({}) content: {} bytes, whole letter {other:?}",
                current as char,
                next as char,
                data.len()
            ),
        }
        kill += 1;
    }
    let leftovers = std::fs::read_dir(fixture.root())
        .expect("read the root")
        .filter(|entry| {
            entry
                .as_ref()
                .is_ok_and(|entry| entry.file_name() != "big.txt")
        })
        .count();
    println!(
        "{KILLS} kills: {old} left the old content, {new} the new, {leftovers} temporary names left (one write took {full:?})"
    );
    assert_eq!(old + new, kill);
    assert!(
        old > 0 && new > 0,
        "the kills never landed on both sides: {old} old, {new} new (one write took {full:?})"
    );
}

/// Regression (issue 12): on a full file system, appending 900 KB
/// reported `No space left on device` but the file had grown from 60,000
/// to 278,528 bytes, so a retry duplicated data. A failed append leaves
/// the file as it was. The server runs in a private mount namespace whose
/// root is a 1 MiB tmpfs (needs root and util-linux's unshare).
#[test]
fn a_failed_append_leaves_the_file_as_it_was() {
    // SAFETY: geteuid cannot fail.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "this test mounts a small tmpfs in a private mount namespace to fill it: run it as root"
    );
    let found = std::process::Command::new("sh")
        .args(["-c", "command -v unshare && command -v mount"])
        .output()
        .is_ok_and(|output| output.status.success());
    assert!(
        found,
        "unshare or mount is missing: apt-get install util-linux"
    );
    let fixture = Fixture::new();
    let root = fixture.root().display().to_string();
    let server = Launch::new()
        .wrapped(&[
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            "mount -t tmpfs -o size=1m tmpfs \"$1\" && shift && exec \"$@\"",
            "full-fs",
            &root,
        ])
        .spawn(&fixture);
    // The server's view of its root (the tmpfs), from outside its namespace.
    let inside =
        |name: &str| std::path::PathBuf::from(format!("/proc/{}/root{root}/{name}", server.pid()));
    let mut client = server.connect();
    let original: String = (0..60_000)
        .map(|index| char::from(b'a' + (index % 26) as u8))
        .collect();
    client.ok(
        "mcp.fs.write",
        json!({"path": "/log.txt", "content": original}),
    );
    client.ok(
        "mcp.fs.write",
        json!({"path": "/filler", "content": "f".repeat(700_000)}),
    );
    assert_eq!(
        std::fs::read(inside("log.txt")).expect("read through /proc"),
        original.as_bytes(),
        "the test cannot see the server's tmpfs"
    );
    let appended = "n".repeat(900_000);
    let error = client.err(
        "mcp.fs.write",
        json!({"path": "/log.txt", "content": appended, "mode": "append"}),
    );
    let message = error.message.to_lowercase();
    assert!(
        message.contains("no space left on the device") && message.contains("as it was"),
        "{error:?}"
    );
    let after = std::fs::read(inside("log.txt")).expect("read through /proc");
    assert_eq!(
        after.len(),
        original.len(),
        "the failed append changed the file's length"
    );
    assert_eq!(
        after,
        original.as_bytes(),
        "the failed append changed the file"
    );
    // With room again, the retry appends exactly once.
    client.ok("mcp.fs.delete", json!({"path": "/filler"}));
    client.ok(
        "mcp.fs.write",
        json!({"path": "/log.txt", "content": appended, "mode": "append"}),
    );
    let retried = std::fs::read(inside("log.txt")).expect("read through /proc");
    assert_eq!(retried.len(), original.len() + appended.len());
    assert!(retried.starts_with(original.as_bytes()) && retried.ends_with(appended.as_bytes()));
}
