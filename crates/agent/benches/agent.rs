//! The workflow engine's cost, through the real processes: the gateway, the
//! test server (its `mcp.test.noop`) and the agent, all of this build.
//!
//! `cargo bench -p agent --bench agent` prints:
//! - the round trip of one `mcp.test.noop` through the gateway (the call a
//!   step makes), p50;
//! - a 100-step workflow of such calls, run with `wait: true`: time per
//!   step, and its overhead over the call itself (target ≤ 0.5 ms);
//! - a 1-step workflow's run minus one call: what runWorkflow costs before
//!   and after its first step (an upper bound of "runWorkflow → first step");
//! - 100 executions of a 10-step workflow started at once (`wait: false`,
//!   then the store polled until all are done): wall time and the agent's
//!   RSS and peak RSS.
//!
//! Bounded: a few runs each; `cargo test --benches` runs a smoke version.
//! Options (environment): `AGENT_BENCH_RUNS` (default 20).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bench_support::ChildProcess;
use bench_support::bench::{NulClient, connect_unix, nul_frame, sibling_binary};
use bench_support::measure::{env_number, micros, sequential, smoke};
use bench_support::process::Memory;
use serde_json::{Value, json};

fn main() {
    let smoke = smoke();
    let runs = if smoke {
        2
    } else {
        env_number("AGENT_BENCH_RUNS", 20)
    };
    let concurrent = if smoke { 5 } else { 100 };
    let dir = tempfile::tempdir().expect("tempdir");
    let mut stack = Stack::start(dir.path());

    let mut client = NulClient::new(connect_unix(&stack.gateway_socket));
    let noop = nul_frame("mcp.test.noop", json!({}));
    let call = sequential(
        if smoke { 10 } else { 200 },
        if smoke { 50 } else { 2000 },
        || {
            client.round_trip(&noop);
        },
    );
    let call_p50 = micros(call.p50);
    println!(
        "agent bench: gateway + test server + agent ({} build)",
        stack.profile
    );
    println!(
        "  mcp.test.noop through the gateway: p50 {call_p50:.1} µs, p99 {:.1} µs",
        micros(call.p99)
    );

    let hundred = nul_frame(
        "mcp.agent.runWorkflow",
        json!({"id": "hundred", "wait": true}),
    );
    let mut per_step = Vec::new();
    for _ in 0..runs {
        let started = Instant::now();
        let answer = client.round_trip(&hundred).to_vec();
        per_step.push(started.elapsed().as_secs_f64() * 1e6 / 100.0);
        assert_succeeded(&answer);
    }
    per_step.sort_by(f64::total_cmp);
    let step_p50 = per_step[per_step.len() / 2];
    println!(
        "  100-step workflow ({runs} runs): {step_p50:.1} µs per step (p50), overhead over the call {:.1} µs (target ≤ 500)",
        step_p50 - call_p50
    );

    let one = nul_frame("mcp.agent.runWorkflow", json!({"id": "one", "wait": true}));
    let mut first = Vec::new();
    for _ in 0..runs * 5 {
        let started = Instant::now();
        let answer = client.round_trip(&one).to_vec();
        first.push(started.elapsed().as_secs_f64() * 1e6 - call_p50);
        assert_succeeded(&answer);
    }
    first.sort_by(f64::total_cmp);
    println!(
        "  1-step workflow minus one call ({} runs): p50 {:.1} µs (runWorkflow → first step, and the answer after it)",
        first.len(),
        first[first.len() / 2]
    );

    // Many at once: started without waiting, then watched in the store.
    let ten = nul_frame("mcp.agent.runWorkflow", json!({"id": "ten"}));
    let started = Instant::now();
    let mut ids = Vec::new();
    for _ in 0..concurrent {
        let answer: Value = serde_json::from_slice(client.round_trip(&ten)).expect("JSON");
        ids.push(
            answer["result"]["execution_id"]
                .as_str()
                .expect("an execution id")
                .to_owned(),
        );
    }
    let list = nul_frame(
        "mcp.agent.listExecutions",
        json!({"workflow": "ten", "limit": 500}),
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let answer: Value = serde_json::from_slice(client.round_trip(&list)).expect("JSON");
        let executions = answer["result"]["executions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let done = executions
            .iter()
            .filter(|e| e["status"] == "succeeded")
            .count();
        assert!(
            executions.iter().all(|e| e["status"] != "failed"),
            "a run failed: {answer}"
        );
        if done >= ids.len() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the runs did not finish: {done} of {}",
            ids.len()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let wall = started.elapsed();
    let memory = Memory::of(stack.agent.process().id());
    println!(
        "  {concurrent} executions of a 10-step workflow at once: {:.1} ms wall; agent RSS {} KiB, peak {} KiB",
        wall.as_secs_f64() * 1000.0,
        memory.rss_kib,
        memory.peak_kib
    );
    if smoke {
        println!(
            "smoke run (cargo test): the benchmark works; `cargo bench -p agent --bench agent` gives the figures"
        );
    }
}

fn assert_succeeded(answer: &[u8]) {
    let answer: Value = serde_json::from_slice(answer).expect("JSON");
    assert_eq!(answer["result"]["status"], "succeeded", "{answer}");
}

struct Stack {
    profile: &'static str,
    gateway_socket: PathBuf,
    _gateway: ChildProcess,
    _test: ChildProcess,
    agent: ChildProcess,
}

fn steps(count: usize) -> String {
    let mut text = String::new();
    for index in 0..count {
        text.push_str(&format!(
            "  - id: s{index}\n    mcp: {{method: mcp.test.noop}}\n"
        ));
    }
    text
}

impl Stack {
    fn start(dir: &Path) -> Stack {
        let me = std::env::current_exe().expect("current exe");
        // Benches live in target/<profile>/deps; the binaries one level up.
        let beside = me
            .parent()
            .and_then(Path::parent)
            .expect("target dir")
            .join("bench");
        let binary =
            |name: &str| sibling_binary(&beside, name).unwrap_or_else(|error| panic!("{error}"));
        let profile = if beside.parent().is_some_and(|d| d.ends_with("debug")) {
            "debug"
        } else {
            "release"
        };
        let caps = dir.join("mcp");
        let workflows = dir.join("workflows");
        std::fs::create_dir_all(&caps).expect("caps dir");
        std::fs::create_dir_all(&workflows).expect("workflows dir");
        for (id, count) in [("hundred", 100), ("ten", 10), ("one", 1)] {
            std::fs::write(
                workflows.join(format!("{id}.yaml")),
                format!("id: {id}\nsteps:\n{}", steps(count)),
            )
            .expect("workflow");
        }
        for (service, name) in [
            ("test", "llmbasedos-test-server"),
            ("agent", "llmbasedos-agent"),
        ] {
            let printed = Command::new(binary(name))
                .arg("--print-caps")
                .output()
                .expect("print caps");
            std::fs::write(caps.join(format!("{service}.cap.json")), printed.stdout).expect("caps");
        }
        let gateway_socket = dir.join("gateway.sock");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("port")
            .local_addr()
            .expect("addr")
            .port();
        let config = dir.join("gateway.yaml");
        let mut file = std::fs::File::create(&config).expect("config");
        writeln!(
            file,
            "{}",
            json!({
                "listen": format!("127.0.0.1:{port}"),
                "unix_socket": gateway_socket,
                "caps_dir": caps,
                "auth": {"tokens": [{"name": "bench", "sha256": "0".repeat(64)}]},
                "limits": {"backend_timeout_secs": 60},
            })
        )
        .expect("write config");
        let backend = |name: &'static str, service: &str, env: &[(&str, PathBuf)]| {
            let socket = caps.join(format!("{service}.sock"));
            let mut command = Command::new(binary(name));
            command
                .args(["--socket"])
                .arg(&socket)
                .args(["--idle-timeout", "0"])
                .stdin(Stdio::null())
                .stdout(Stdio::null());
            for (key, value) in env {
                command.env(key, value);
            }
            let mut child =
                ChildProcess::spawn(name, &mut command, dir.join(format!("{service}.log")));
            child.wait_until("its socket", || {
                std::os::unix::net::UnixStream::connect(&socket).is_ok()
            });
            child
        };
        std::fs::write(dir.join("no-agent.yaml"), "{}\n").expect("agent config");
        let test = backend("llmbasedos-test-server", "test", &[]);
        let agent = backend(
            "llmbasedos-agent",
            "agent",
            &[
                ("LLMBASEDOS_AGENT_WORKFLOWS", workflows),
                ("LLMBASEDOS_AGENT_STATE_DIR", dir.join("state")),
                ("LLMBASEDOS_AGENT_GATEWAY_SOCKET", gateway_socket.clone()),
                ("LLMBASEDOS_AGENT_CONFIG", dir.join("no-agent.yaml")),
            ],
        );
        let mut command = Command::new(binary("llmbasedos-gateway"));
        command
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        let mut gateway = ChildProcess::spawn("gateway", &mut command, dir.join("gateway.log"));
        gateway.wait_until("its socket", || {
            std::os::unix::net::UnixStream::connect(&gateway_socket).is_ok()
        });
        Stack {
            profile,
            gateway_socket,
            _gateway: gateway,
            _test: test,
            agent,
        }
    }
}
