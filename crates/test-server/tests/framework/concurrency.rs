//! Many requests at once: pipelining, the in-flight bound, cancellation,
//! progress and many connections.

use std::collections::HashMap;
use std::io::Write;
use std::time::{Duration, Instant};

use proto::{Message, RequestId, Response};
use serde_json::{Value, json};

use crate::support::{PATIENCE, frame, request, start_server, wait_until};

/// A small deterministic generator: the tests need varied, not random, input.
struct XorShift(u64);

impl XorShift {
    fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % bound
    }
}

#[test]
fn pipelined_requests_are_each_answered_once_in_completion_order() {
    const REQUESTS: i64 = 1000;
    let server = start_server(&[]);
    let mut client = server.connect();
    let mut random = XorShift(0x9E37_79B9_7F4A_7C15);
    let mut expected: HashMap<RequestId, Value> = HashMap::new();
    let mut stream = Vec::new();
    for id in 0..REQUESTS {
        // Request 0 sleeps longer than the echo right behind it takes, so at
        // least that pair is answered out of order.
        let (method, params, result) = if id == 0 {
            ("mcp.test.sleep", json!({"ms": 50}), json!({"slept_ms": 50}))
        } else if id % 2 == 1 {
            let text = format!("text {id}");
            (
                "mcp.test.echo",
                json!({ "text": text }),
                json!({ "text": text }),
            )
        } else {
            let ms = random.below(21);
            (
                "mcp.test.sleep",
                json!({ "ms": ms }),
                json!({ "slept_ms": ms }),
            )
        };
        stream.extend(frame(&request(id, method, params).into()));
        expected.insert(RequestId::Number(id), result);
    }
    let mut writer = client.writer();
    let writing = std::thread::spawn(move || writer.write_all(&stream));

    let mut arrival = Vec::new();
    for _ in 0..REQUESTS {
        let response = client.response();
        let id = response.id.clone().expect("a response with an id");
        let Some(result) = expected.remove(&id) else {
            panic!("unexpected or repeated answer: {response:?}");
        };
        assert_eq!(response, Response::success(id.clone(), result));
        arrival.push(id);
    }
    writing
        .join()
        .expect("the writer thread")
        .expect("write the requests");
    assert!(expected.is_empty());
    let position = |id: i64| {
        arrival
            .iter()
            .position(|arrived| *arrived == RequestId::Number(id))
            .expect("answered")
    };
    assert!(
        position(1) < position(0),
        "the echo must not wait for the sleep before it"
    );
    client.expect_silence(Duration::from_millis(100));
}

#[test]
fn requests_beyond_max_in_flight_wait_for_a_free_slot() {
    let server = start_server(&["--max-in-flight", "4"]);
    let mut client = server.connect();
    let mut stream = Vec::new();
    for id in 1..=8 {
        stream.extend(frame(
            &request(id, "mcp.test.sleep", json!({"ms": 300})).into(),
        ));
    }
    let started = Instant::now();
    client.write(&stream);
    let mut arrival = Vec::new();
    for _ in 1..=8 {
        let response = client.response();
        assert_eq!(response.outcome, Ok(json!({"slept_ms": 300})));
        arrival.push(response.id.expect("an id"));
    }
    let elapsed = started.elapsed();
    // Four at a time: the second four start when the first four end.
    assert!(
        elapsed >= Duration::from_millis(550),
        "8 sleeps of 300 ms with 4 in flight took {elapsed:?}: more than 4 ran at once"
    );
    let mut first_round: Vec<RequestId> = arrival[..4].to_vec();
    first_round.sort();
    assert_eq!(
        first_round,
        (1..=4).map(RequestId::Number).collect::<Vec<_>>(),
        "queued requests start in the order they arrived"
    );
}

/// Threads of `pid` sleeping in the kernel (nanosleep or clock_nanosleep):
/// the blocking handler's thread while it runs. Idle runtime threads wait in
/// epoll or futex instead.
fn threads_in_nanosleep(pid: i32) -> usize {
    let sleeping = [libc::SYS_nanosleep, libc::SYS_clock_nanosleep];
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("syscall")).ok())
        .filter(|syscall| {
            syscall
                .split_whitespace()
                .next()
                .and_then(|number| number.parse::<libc::c_long>().ok())
                .is_some_and(|number| sleeping.contains(&number))
        })
        .count()
}

#[test]
fn cancellation_stops_the_running_handler_and_suppresses_its_response() {
    // (method, whether the handler sleeps on a thread of the blocking pool)
    let cases = [("mcp.test.sleep", false), ("mcp.test.blocking", true)];
    for (method, on_a_thread) in cases {
        let server = start_server(&[]);
        let mut client = server.connect();
        client.request(1, method, json!({"ms": 30000}));
        wait_until(PATIENCE, "the handler starts", || {
            server.connect().call(1, "mcp.test.stats", json!({}))
                == Ok(json!({"started": 1, "completed": 0, "cancelled": 0}))
        });
        if on_a_thread {
            wait_until(
                PATIENCE,
                "the blocking handler sleeps on its thread",
                || threads_in_nanosleep(server.pid()) == 1,
            );
        }
        client.notify(
            "notifications/cancelled",
            json!({"requestId": 1, "reason": "the test changed its mind"}),
        );
        assert_eq!(
            client.call(2, "mcp.test.stats", json!({})),
            Ok(json!({"started": 1, "completed": 0, "cancelled": 1})),
            "{method}"
        );
        client.expect_silence(Duration::from_millis(300));
        if on_a_thread {
            wait_until(
                PATIENCE,
                "the blocking handler sees the token and stops",
                || threads_in_nanosleep(server.pid()) == 0,
            );
        }
        assert_eq!(
            client.call(1, "mcp.test.echo", json!({"text": "the id is free"})),
            Ok(json!({"text": "the id is free"})),
            "{method}"
        );
    }
}

/// A client that closes its connection is gone: its running requests are
/// cancelled (Context::is_cancelled says "or the connection closed") instead
/// of running to completion for nobody, holding the connection open against
/// idle exit and drain.
#[test]
fn closing_the_connection_cancels_its_running_requests() {
    let server = start_server(&[]);
    let mut client = server.connect();
    client.request(1, "mcp.test.sleep", json!({"ms": 30000}));
    wait_until(PATIENCE, "the handler starts", || {
        server.connect().call(1, "mcp.test.stats", json!({}))
            == Ok(json!({"started": 1, "completed": 0, "cancelled": 0}))
    });
    drop(client);
    wait_until(PATIENCE, "the abandoned request is cancelled", || {
        server.connect().call(1, "mcp.test.stats", json!({}))
            == Ok(json!({"started": 1, "completed": 0, "cancelled": 1}))
    });
}

#[test]
fn a_cancelled_queued_request_never_starts() {
    let server = start_server(&["--max-in-flight", "1"]);
    let mut client = server.connect();
    client.request(1, "mcp.test.sleep", json!({"ms": 300}));
    client.request(2, "mcp.test.sleep", json!({"ms": 30000}));
    client.notify("notifications/cancelled", json!({"requestId": 2}));
    assert_eq!(
        client.response(),
        Response::success(RequestId::Number(1), json!({"slept_ms": 300}))
    );
    assert_eq!(
        client.call(3, "mcp.test.stats", json!({})),
        Ok(json!({"started": 1, "completed": 1, "cancelled": 0}))
    );
    client.expect_silence(Duration::from_millis(300));
}

#[test]
fn progress_notifications_come_in_order_before_the_response() {
    let server = start_server(&[]);
    let mut client = server.connect();
    // (progress token, steps); steps beyond the outgoing queue's 256 exercise its backpressure.
    let cases = [
        (Some(json!("tok")), 50),
        (Some(json!(7)), 50),
        (None, 50),
        (Some(json!("many")), 1000),
    ];
    for (id, (token, steps)) in (1..).zip(cases) {
        let mut params = json!({ "steps": steps });
        if let Some(token) = &token {
            params["_meta"] = json!({ "progressToken": token });
        }
        client.request(id, "mcp.test.progress", params);
        let mut reported = Vec::new();
        let response = loop {
            match client.receive() {
                Message::Notification(notification) => {
                    assert_eq!(notification.method, "notifications/progress");
                    let params = notification.params.expect("progress params");
                    assert_eq!(Some(&params["progressToken"]), token.as_ref());
                    assert_eq!(params["total"].as_f64(), Some(f64::from(steps)));
                    reported.push(params["progress"].as_f64().expect("a number"));
                }
                Message::Response(response) => break response,
                Message::Request(request) => panic!("unexpected request {request:?}"),
            }
        };
        assert_eq!(
            response,
            Response::success(RequestId::Number(id), json!({ "steps": steps }))
        );
        let expected: Vec<f64> = match token {
            Some(_) => (1..=steps).map(f64::from).collect(),
            None => Vec::new(),
        };
        assert_eq!(reported, expected, "token {token:?}");
        client.expect_silence(Duration::from_millis(50));
    }
}

#[test]
fn many_connections_at_once_are_all_answered() {
    const CONNECTIONS: usize = 8;
    const CALLS: i64 = 100;
    // With --max-connections 2 the other clients wait in the listen queue.
    for args in [&[][..], &["--max-connections", "2"][..]] {
        let server = start_server(args);
        std::thread::scope(|scope| {
            for connection in 0..CONNECTIONS {
                let server = &server;
                scope.spawn(move || {
                    let mut client = server.connect();
                    for id in 0..CALLS {
                        let text = format!("connection {connection} call {id}");
                        assert_eq!(
                            client.call(id, "mcp.test.echo", json!({ "text": text })),
                            Ok(json!({ "text": text })),
                            "{args:?}"
                        );
                    }
                });
            }
        });
    }
}
