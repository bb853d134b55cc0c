//! `llm`: the answer streams to the terminal as the model writes it, through
//! the gateway's LLM proxy, from a local server speaking the OpenAI chat
//! completions wire format (what OpenAI, llama.cpp's llama-server and vLLM
//! send).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use crate::stack::{LUCA_SHELL, Stack};

const API_KEY: &str = "sk-test-5f1c";

/// What the stub was asked: the Authorization header and the JSON body.
type Seen = Arc<Mutex<Vec<(String, Value)>>>;

/// An OpenAI-compatible `/v1/chat/completions` on loopback. A prompt with
/// "slowly" holds its stream after the first piece until `release` gets a
/// message; a prompt with "fail" gets an API error.
struct OpenAiStub {
    url: String,
    seen: Seen,
    release: mpsc::Sender<()>,
}

impl OpenAiStub {
    fn start() -> OpenAiStub {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}/v1", listener.local_addr().expect("addr"));
        let seen: Seen = Arc::default();
        let (release, gate) = mpsc::channel::<()>();
        let gate = Arc::new(Mutex::new(gate));
        let recorded = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().map_while(Result::ok) {
                let recorded = recorded.clone();
                let gate = gate.clone();
                std::thread::spawn(move || answer(stream, &recorded, &gate));
            }
        });
        OpenAiStub { url, seen, release }
    }
}

fn answer(stream: TcpStream, seen: &Seen, gate: &Mutex<mpsc::Receiver<()>>) {
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut request_line = String::new();
    reader.read_line(&mut request_line).expect("request line");
    let (mut length, mut authorization) = (0, String::new());
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).expect("header");
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':').expect("header line");
        match name.to_ascii_lowercase().as_str() {
            "content-length" => length = value.trim().parse().expect("length"),
            "authorization" => value.trim().clone_into(&mut authorization),
            _ => {}
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).expect("body");
    let body: Value = serde_json::from_slice(&body).expect("a JSON body");
    seen.lock()
        .expect("seen")
        .push((authorization, body.clone()));
    assert!(
        request_line.starts_with("POST /v1/chat/completions "),
        "{request_line}"
    );
    let prompt = body["messages"][0]["content"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let mut stream = stream;
    if prompt.contains("fail") {
        let error =
            json!({ "error": { "message": "the model is overloaded", "type": "server_error" } })
                .to_string();
        let _ = write!(
            stream,
            "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{error}",
            error.len()
        );
        return;
    }
    let usage = json!({ "prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13 });
    if body["stream"] != json!(true) {
        let completion = json!({
            "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "tiny-1",
            "choices": [{ "index": 0, "message": { "role": "assistant", "content": "Hello, world!" }, "finish_reason": "stop" }],
            "usage": usage,
        })
        .to_string();
        let _ = write!(
            stream,
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{completion}",
            completion.len()
        );
        return;
    }
    let _ = write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nConnection: close\r\n\r\n"
    );
    let chunk = |delta: Value, finish: Value| {
        json!({
            "id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "tiny-1",
            "choices": [{ "index": 0, "delta": delta, "finish_reason": finish }],
        })
    };
    let mut events = vec![chunk(
        json!({ "role": "assistant", "content": "" }),
        Value::Null,
    )];
    for piece in ["Hel", "lo, ", "world!"] {
        events.push(chunk(json!({ "content": piece }), Value::Null));
    }
    events.push(chunk(json!({}), json!("stop")));
    events.push(json!({ "id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "tiny-1", "choices": [], "usage": usage }));
    for (index, event) in events.iter().enumerate() {
        if stream
            .write_all(format!("data: {event}\n\n").as_bytes())
            .is_err()
        {
            return;
        }
        let _ = stream.flush();
        if index == 1 && prompt.contains("slowly") {
            let _ = gate
                .lock()
                .expect("gate")
                .recv_timeout(Duration::from_secs(20));
        }
    }
    let _ = stream.write_all(b"data: [DONE]\n\n");
}

fn stack_with(stub: &OpenAiStub) -> Stack {
    Stack::up_with(
        &["--llm-url", &stub.url, "--llm-model", "tiny"],
        &[("LLMBASEDOS_LLM_API_KEY", API_KEY)],
    )
}

#[test]
fn the_answer_streams_as_it_is_written_and_is_whole_at_the_end() {
    let stub = OpenAiStub::start();
    let stack = stack_with(&stub);
    let mut shell = Command::new(LUCA_SHELL)
        .arg("--runtime-dir")
        .arg(stack.runtime_dir())
        .args(["-c", "llm say hello slowly"])
        .env_remove("LLMBASEDOS_GATEWAY_URL")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run luca-shell");
    let mut stdout = shell.stdout.take().expect("stdout");
    // The first piece arrives while the model still holds the rest.
    let mut first = [0u8; 3];
    stdout.read_exact(&mut first).expect("the first piece");
    assert_eq!(&first, b"Hel");
    stub.release.send(()).expect("release the stream");
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).expect("the rest");
    let status = shell.wait().expect("luca-shell");
    assert!(status.success(), "{status:?}");
    assert_eq!(format!("Hel{rest}"), "Hello, world!\n");

    let seen = stub.seen.lock().expect("seen").clone();
    let (authorization, body) = seen.last().expect("a request");
    assert_eq!(authorization, &format!("Bearer {API_KEY}"));
    assert_eq!(body["model"], "tiny");
    assert_eq!(body["stream"], true);
    assert_eq!(
        body["messages"],
        json!([{ "role": "user", "content": "say hello slowly" }])
    );
}

#[test]
fn json_mode_errors_and_no_secret_in_files_or_logs() {
    let stub = OpenAiStub::start();
    let stack = stack_with(&stub);
    let output = stack.shell(&["--json", "-c", "llm say hello"], None);
    assert!(output.status.success(), "{output:?}");
    let result: Value = serde_json::from_slice(&output.stdout).expect("one JSON line");
    assert_eq!(
        result["message"],
        json!({ "role": "assistant", "content": "Hello, world!" })
    );
    assert_eq!(result["usage"]["total_tokens"], 13);
    assert_eq!(result["model"], "tiny-1");

    let output = stack.shell(&["-c", "llm please fail"], None);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        "llm: the language model API answered HTTP 503: the model is overloaded\n"
    );
    // The gateway kept serving.
    let output = stack.shell(&["-c", "llm say hello"], None);
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "Hello, world!\n",
        "{output:?}"
    );

    let config = std::fs::read_to_string(stack.runtime_dir().join("gateway.yaml")).expect("config");
    assert!(config.contains("api_key_file"), "{config}");
    for (what, text) in [("gateway.yaml", config), ("the logs", stack.log())] {
        assert!(!text.contains(API_KEY), "the API key is in {what}");
    }
}
