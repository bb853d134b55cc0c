//! The client against a real server (the framework's test server, served
//! in-process on a real UNIX socket in a temp dir).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use client::{CallError, ConnectOptions, Connection, Pool};
use serde_json::{Value, json};
use server_kit::{ServeOptions, Stopped};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Serves the test server on `path` until `stop` fires.
fn serve(path: &Path, options: ServeOptions) -> (oneshot::Sender<()>, JoinHandle<Stopped>) {
    let listener = tokio::net::UnixListener::bind(path).expect("bind");
    let server = Arc::new(test_server::server().expect("test server"));
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(server.serve(
        listener,
        async move {
            let _ = stopped.await;
        },
        options,
    ));
    (stop, task)
}

async fn stats(connection: &Connection) -> Value {
    connection
        .call("mcp.test.stats", None, None)
        .await
        .expect("stats")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_calls_share_one_connection() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("t.sock");
    let _server = serve(&path, ServeOptions::default());
    let connection = Connection::connect(&path, ConnectOptions::default())
        .await
        .expect("connect");
    let calls = (0..200).map(|index| {
        let connection = connection.clone();
        tokio::spawn(async move {
            let text = format!("call {index}");
            let result = connection
                .call("mcp.test.echo", Some(json!({ "text": text })), None)
                .await
                .expect("echo");
            assert_eq!(result, json!({ "text": text }));
        })
    });
    for call in calls {
        call.await.expect("task");
    }
    let error = connection
        .call("mcp.test.fail", Some(json!({"kind": "not_found"})), None)
        .await
        .expect_err("fails");
    match error {
        CallError::Server(object) => assert_eq!(object.code, -32093),
        other => panic!("expected a server error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_is_forwarded_in_order_and_dropping_a_call_cancels_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("t.sock");
    let _server = serve(&path, ServeOptions::default());
    let connection = Connection::connect(&path, ConnectOptions::default())
        .await
        .expect("connect");
    let (progress, mut updates) = tokio::sync::mpsc::unbounded_channel();
    let result = connection
        .call(
            "mcp.test.progress",
            Some(json!({"steps": 20})),
            Some(progress),
        )
        .await
        .expect("call");
    assert_eq!(result, json!({"steps": 20}));
    let mut seen = Vec::new();
    while let Ok(update) = updates.try_recv() {
        seen.push(update["progress"].as_f64().expect("progress"));
    }
    assert_eq!(seen, (1..=20).map(f64::from).collect::<Vec<_>>());

    let slow = connection.call("mcp.test.sleep", Some(json!({"ms": 30_000})), None);
    assert!(
        tokio::time::timeout(Duration::from_millis(200), slow)
            .await
            .is_err()
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let counts = stats(&connection).await;
        if counts["cancelled"] == 1 {
            assert_eq!(counts["completed"], 0);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the server never saw the cancellation: {counts}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pool_reconnects_and_lets_an_idle_server_exit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("t.sock");
    let pool = Pool::new(&path, 2, proto::DEFAULT_MAX_MESSAGE);
    match pool.call("mcp.test.noop", None, None).await {
        Err(CallError::Connect(_)) => {}
        other => panic!("expected a connect error with no server, got {other:?}"),
    }

    let options = ServeOptions {
        idle_timeout: Some(Duration::from_millis(300)),
        ..ServeOptions::default()
    };
    let (_stop, task) = serve(&path, options);
    for _ in 0..4 {
        pool.call("mcp.test.noop", None, None).await.expect("noop");
    }
    assert_eq!(pool.open_connections(), 2);
    // Held connections keep the server from going idle; closing them lets it.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !task.is_finished(),
        "the server went idle while the pool held connections"
    );
    pool.close_idle(Duration::ZERO).await;
    assert_eq!(pool.open_connections(), 0);
    let stopped = tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("server exits")
        .expect("task");
    assert_eq!(stopped, Stopped::Idle);

    // The server comes back (as systemd would start it): the pool reconnects.
    std::fs::remove_file(&path).expect("remove the old socket");
    let _server = serve(&path, ServeOptions::default());
    let result = pool
        .call("mcp.test.echo", Some(json!({"text": "back"})), None)
        .await
        .expect("echo after restart");
    assert_eq!(result, json!({"text": "back"}));
}

/// Connections a counting server accepted, and how many are still open.
#[derive(Default)]
struct Accepted {
    total: std::sync::atomic::AtomicUsize,
    open: std::sync::atomic::AtomicUsize,
}

/// A minimal NUL-framed JSON-RPC server that answers every request with
/// `{}` after a short pause (so that calls overlap) and counts its
/// connections: what the pool opens and closes, seen from the other side.
fn counting_server(path: &Path) -> Arc<Accepted> {
    use std::sync::atomic::Ordering;
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let listener = tokio::net::UnixListener::bind(path).expect("bind");
    let accepted = Arc::new(Accepted::default());
    let counts = accepted.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            counts.total.fetch_add(1, Ordering::SeqCst);
            counts.open.fetch_add(1, Ordering::SeqCst);
            let counts = counts.clone();
            tokio::spawn(async move {
                let (read, write) = stream.into_split();
                let write = Arc::new(tokio::sync::Mutex::new(write));
                let mut read = BufReader::new(read);
                loop {
                    let mut frame = Vec::new();
                    match read.read_until(0, &mut frame).await {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {}
                    }
                    frame.pop();
                    let request: Value = serde_json::from_slice(&frame).expect("a request");
                    let write = write.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        let mut answer = serde_json::to_vec(
                            &json!({"jsonrpc": "2.0", "id": request["id"], "result": {}}),
                        )
                        .expect("answer");
                        answer.push(0);
                        let _ = write.lock().await.write_all(&answer).await;
                    });
                }
                counts.open.fetch_sub(1, Ordering::SeqCst);
            });
        }
    });
    accepted
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_calls_on_an_empty_pool_open_one_connection_per_slot_and_idle_close_closes_them()
{
    use std::sync::atomic::Ordering;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("counting.sock");
    let accepted = counting_server(&path);
    let pool = Arc::new(Pool::new(&path, 4, proto::DEFAULT_MAX_MESSAGE));
    for burst in 0..3 {
        let calls: Vec<_> = (0..64)
            .map(|_| {
                let pool = pool.clone();
                tokio::spawn(async move { pool.call("anything", None, None).await })
            })
            .collect();
        for call in calls {
            call.await.expect("task").expect("call");
        }
        assert_eq!(
            accepted.total.load(Ordering::SeqCst),
            4 * (burst + 1),
            "64 concurrent calls on an empty pool of 4 opened more than 4 connections (burst {burst})"
        );
        pool.close_idle(Duration::ZERO).await;
        assert_eq!(pool.open_connections(), 0);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while accepted.open.load(Ordering::SeqCst) != 0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} connections still open after the pool closed its idle ones (burst {burst})",
                accepted.open.load(Ordering::SeqCst)
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_last_handle_closes_the_socket() {
    use std::sync::atomic::Ordering;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("counting.sock");
    let accepted = counting_server(&path);
    let connection = Connection::connect(&path, ConnectOptions::default())
        .await
        .expect("connect");
    connection.call("anything", None, None).await.expect("call");
    assert_eq!(accepted.open.load(Ordering::SeqCst), 1);
    drop(connection);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while accepted.open.load(Ordering::SeqCst) != 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the server still sees the connection after its last handle was dropped"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
