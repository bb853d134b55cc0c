//! Atomic overwrites: the server is SIGKILLed in the middle of large
//! overwrites, many times; the target always holds wholly the old or
//! wholly the new content.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::{Fixture, Server};

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
        client.send(
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
        client.send("mcp.fs.write", request);
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
