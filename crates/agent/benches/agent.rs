//! The workflow engine's cost, through the real processes: the gateway, the
//! test server (its `mcp.test.noop`) and the agent, all of this build.
//!
//! `cargo bench -p agent --bench agent` prints, as medians of rounds that
//! interleave the measures (so the call and the steps see the same load):
//! - the round trip of one `mcp.test.noop` through the gateway: the call
//!   a step makes, the peer every step figure is printed beside;
//! - a 100-step workflow of such calls, run with `wait: true`: time per
//!   step beside the call, the overhead and the ratio (target: overhead
//!   ≤ 0.5 ms); also per step without the run's fixed cost (the 100-step
//!   run minus a 1-step run, over 99);
//! - a 1-step workflow's run minus one call: what runWorkflow costs before
//!   and after its first step (an upper bound of "runWorkflow → first
//!   step"), and runWorkflow's answer with the execution id alone;
//! - 100 executions of a 10-step workflow started at once (`wait: false`,
//!   then each one's status polled until it is over), five rounds: wall
//!   time, and the agent's RSS and peak RSS after them.
//!
//! Bounded: a few rounds; `cargo test --benches` runs a smoke version.
//! Options (environment): `AGENT_BENCH_RUNS` (rounds, default 20).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bench_support::ChildProcess;
use bench_support::bench::{NulClient, connect_unix, nul_frame, sibling_binary};
use bench_support::measure::{env_number, micros, percentile, smoke};
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
    let hundred = nul_frame(
        "mcp.agent.runWorkflow",
        json!({"id": "hundred", "wait": true}),
    );
    let one = nul_frame("mcp.agent.runWorkflow", json!({"id": "one", "wait": true}));
    let started_only = nul_frame("mcp.agent.runWorkflow", json!({"id": "one"}));
    let hundred_set = nul_frame(
        "mcp.agent.runWorkflow",
        json!({"id": "hundred-set", "wait": true}),
    );
    println!(
        "agent bench: gateway + test server + agent ({} build), {runs} rounds",
        stack.profile
    );

    // Warm every path once, then interleave: each round times 100 bare
    // calls, one 100-step run, five 1-step runs and five starts, so the
    // call and the steps are measured under the same load.
    for _ in 0..if smoke { 5 } else { 50 } {
        client.round_trip(&noop);
    }
    assert_succeeded(client.round_trip(&hundred));
    assert_succeeded(client.round_trip(&one));
    let mut calls = Vec::new();
    let mut hundreds = Vec::new();
    let mut ones = Vec::new();
    let mut starts = Vec::new();
    let mut sets = Vec::new();
    let timed = |client: &mut NulClient<_>, frame: &[u8]| {
        let started = Instant::now();
        let answer = client.round_trip(frame).to_vec();
        (started.elapsed(), answer)
    };
    for _ in 0..runs {
        for _ in 0..100 {
            calls.push(timed(&mut client, &noop).0);
        }
        let (elapsed, answer) = timed(&mut client, &hundred);
        assert_succeeded(&answer);
        hundreds.push(elapsed);
        let (elapsed, answer) = timed(&mut client, &hundred_set);
        assert_succeeded(&answer);
        sets.push(elapsed);
        for _ in 0..5 {
            let (elapsed, answer) = timed(&mut client, &one);
            assert_succeeded(&answer);
            ones.push(elapsed);
            let (elapsed, answer) = timed(&mut client, &started_only);
            let answer: Value = serde_json::from_slice(&answer).expect("JSON");
            assert!(answer["result"]["execution_id"].is_string(), "{answer}");
            starts.push(elapsed);
            // Untimed: the started run finishes before the next round trip.
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    let call = micros(median(&mut calls));
    let hundred_run = micros(median(&mut hundreds));
    let one_run = micros(median(&mut ones));
    let per_step = hundred_run / 100.0;
    // Per step in the steady state: the 100-step run without what a
    // 1-step run also pays (runWorkflow's round trip, start, answer).
    let marginal = (hundred_run - one_run) / 99.0;
    println!(
        "  the call alone: mcp.test.noop through the gateway, median {call:.1} µs ({} calls)",
        calls.len()
    );
    println!(
        "  100-step workflow of that call, median run {:.2} ms: {per_step:.1} µs per step beside the call's {call:.1} µs \
         (overhead {:.1} µs, ×{:.2}); without the run's fixed cost {marginal:.1} µs per step (overhead {:.1} µs, ×{:.2}); target ≤ 500 µs overhead",
        hundred_run / 1000.0,
        per_step - call,
        per_step / call,
        marginal - call,
        marginal / call,
    );
    println!(
        "  the engine alone: a 100-step workflow of set steps (no call), median run {:.2} ms, {:.1} µs per step",
        micros(median(&mut sets)) / 1000.0,
        micros(median(&mut sets)) / 100.0,
    );
    println!(
        "  runWorkflow → first step: a 1-step run minus the call, median {:.1} µs ({} runs; start, first step, the answer: an upper bound); \
         runWorkflow answering with the execution id, median {:.1} µs",
        one_run - call,
        ones.len(),
        micros(median(&mut starts)),
    );

    // Many at once: started without waiting, then each watched until it
    // is over (getWorkflowStatus of a live run reads memory, not the
    // store, so watching adds little to what is measured).
    let ten = nul_frame("mcp.agent.runWorkflow", json!({"id": "ten"}));
    let mut walls = Vec::new();
    for _ in 0..if smoke { 1 } else { 5 } {
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
        let deadline = Instant::now() + Duration::from_secs(120);
        for id in &ids {
            let status = nul_frame("mcp.agent.getWorkflowStatus", json!({"execution_id": id}));
            loop {
                let answer: Value =
                    serde_json::from_slice(client.round_trip(&status)).expect("JSON");
                match answer["result"]["status"].as_str() {
                    Some("succeeded") => break,
                    Some("running") => {}
                    _ => panic!("a run did not succeed: {answer}"),
                }
                assert!(Instant::now() < deadline, "run {id} did not finish");
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        walls.push(started.elapsed());
    }
    let memory = Memory::of(stack.agent.process().id());
    println!(
        "  {concurrent} executions of a 10-step workflow at once ({} rounds): median {:.1} ms wall ({:.1} µs per step); agent RSS {} KiB, peak {} KiB",
        walls.len(),
        micros(median(&mut walls)) / 1000.0,
        micros(median(&mut walls)) / (concurrent as f64 * 10.0),
        memory.rss_kib,
        memory.peak_kib
    );
    if smoke {
        println!(
            "smoke run (cargo test): the benchmark works; `cargo bench -p agent --bench agent` gives the figures"
        );
    }
}

fn median(samples: &mut [Duration]) -> Duration {
    samples.sort_unstable();
    percentile(samples, 0.5)
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

/// `count` steps, each `kind` (one line of YAML), one after the other.
fn steps(count: usize, kind: &str) -> String {
    let mut text = String::new();
    for index in 0..count {
        text.push_str(&format!("  - id: s{index}\n    {kind}\n"));
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
                format!(
                    "id: {id}\nsteps:\n{}",
                    steps(count, "mcp: {method: mcp.test.noop}")
                ),
            )
            .expect("workflow");
        }
        std::fs::write(
            workflows.join("hundred-set.yaml"),
            format!(
                "id: hundred-set\nsteps:\n{}",
                steps(100, "set: {done: true}")
            ),
        )
        .expect("workflow");
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
