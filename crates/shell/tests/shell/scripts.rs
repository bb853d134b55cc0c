//! Scripts change the real files, and stop at the first failure.

use crate::stack::Stack;

#[test]
fn commands_change_the_real_files_and_a_script_stops_at_its_first_failure() {
    let stack = Stack::up();
    stack.reset_files(&[("notes/todo.md", "buy milk\n")]);
    let root = stack.root();
    let output = stack.shell(
        &[
            "-c",
            "cd notes; write new.md hello there; mkdir -p a/b; cp new.md a/b/copy.md; mv todo.md done.md; rm new.md",
        ],
        None,
    );
    assert!(output.status.success(), "{output:?}");
    let read = |path: &str| std::fs::read_to_string(root.join(path)).ok();
    assert_eq!(read("notes/a/b/copy.md").as_deref(), Some("hello there\n"));
    assert_eq!(read("notes/done.md").as_deref(), Some("buy milk\n"));
    assert_eq!(read("notes/todo.md"), None);
    assert_eq!(read("notes/new.md"), None);

    let output = stack.shell(
        &[
            "-c",
            "rm notes/done.md; cat nothing.md; rm notes/a/b/copy.md",
        ],
        None,
    );
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert_eq!(
        read("notes/done.md"),
        None,
        "the command before the failure ran"
    );
    assert!(
        root.join("notes/a/b/copy.md").is_file(),
        "the command after the failure did not run"
    );
}

#[test]
fn tools_lists_every_tool_with_its_first_sentence() {
    let stack = Stack::up();
    let output = stack.shell(&["-c", "tools"], None);
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    // Names are padded to the longest, which depends on the services.
    let rows: Vec<String> = stdout
        .lines()
        .map(|line| line.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    for expected in [
        "test_echo Returns the text it is given.",
        "test_sleep Waits the given number of milliseconds, then returns.",
    ] {
        assert!(
            rows.iter().any(|row| row == expected),
            "{expected:?} in\n{stdout}"
        );
    }
    assert!(
        stdout.lines().any(|line| line.starts_with("fs_read ")),
        "{stdout}"
    );
}

#[test]
fn long_listings_and_binary_files() {
    let stack = Stack::up();
    stack.reset_files(&[("notes/todo.md", "buy milk\n")]);
    std::fs::write(stack.root().join("blob.bin"), [0xff, 0xfe, 0x00, 0x01]).expect("binary");
    let output = stack.shell(&["-c", "ls -l"], None);
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert!(
        lines[0].starts_with("- 4  ") && lines[0].ends_with("  blob.bin"),
        "{stdout}"
    );
    assert!(
        lines[1].starts_with("d ") && lines[1].ends_with("  notes/"),
        "{stdout}"
    );

    let output = stack.shell(&["-c", "cat blob.bin"], None);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        "cat: /blob.bin is not text (4 bytes); `call mcp.fs.read path=/blob.bin encoding=base64` gives its bytes\n"
    );
}

#[test]
fn the_socket_can_come_from_the_environment() {
    let stack = Stack::up();
    let output = std::process::Command::new(crate::stack::LUCA_SHELL)
        .args(["-c", "mcp.test.echo text=via-env"])
        .env(
            "LLMBASEDOS_GATEWAY_SOCKET",
            stack.runtime_dir().join("gateway.sock"),
        )
        .env("LLMBASEDOS_RUNTIME_DIR", "/nonexistent")
        .output()
        .expect("run luca-shell");
    assert!(output.status.success(), "{output:?}");
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("via-env"),
        "{output:?}"
    );
}

#[test]
fn without_up_s_socket_the_shell_tries_the_system_gateway_s() {
    // No --socket, no --runtime-dir: `up`'s runtime directory (from
    // XDG_RUNTIME_DIR) holds no socket, so the shell goes on to the socket
    // the packaged units listen on.
    let xdg = tempfile::tempdir().expect("runtime dir");
    let output = std::process::Command::new(crate::stack::LUCA_SHELL)
        .args(["-c", "ls /"])
        .env("XDG_RUNTIME_DIR", xdg.path())
        .env_remove("LLMBASEDOS_GATEWAY_SOCKET")
        .env_remove("LLMBASEDOS_GATEWAY_URL")
        .env_remove("LLMBASEDOS_RUNTIME_DIR")
        .output()
        .expect("run luca-shell");
    let system = std::path::Path::new("/run/llmbasedos/gateway.sock");
    if system.exists() {
        // A system gateway runs on this machine: the shell reached it.
        assert!(
            output.status.success()
                || String::from_utf8_lossy(&output.stderr).contains(&system.display().to_string()),
            "{output:?}"
        );
        return;
    }
    assert_eq!(output.status.code(), Some(69), "{output:?}");
    let up = xdg.path().join("llmbasedos/gateway.sock");
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        format!(
            "cannot connect to the gateway at {} nor at {} (no such socket); start it with `llmbasedos up` or `systemctl start llmbasedos-gateway.socket`\n",
            up.display(),
            system.display()
        )
    );
}

#[test]
fn edit_writes_back_what_the_editor_saved_and_nothing_when_it_fails() {
    let stack = Stack::up();
    stack.reset_files(&[("notes/todo.md", "buy milk\n")]);
    let read = || std::fs::read_to_string(stack.root().join("notes/todo.md")).expect("todo.md");
    let cases: &[(&str, &str, Option<i32>, &str, &str)] = &[
        // (what, editor, exit status, in the output, the file afterwards)
        (
            "an edit",
            "sed -i s/milk/bread/",
            Some(0),
            "",
            "buy bread\n",
        ),
        (
            "no change",
            "true",
            Some(0),
            "/notes/todo.md: unchanged",
            "buy bread\n",
        ),
        (
            "a failing editor",
            "false",
            Some(1),
            "nothing was written",
            "buy bread\n",
        ),
    ];
    for (what, editor, status, says, after) in cases {
        let output = stack.shell_with(
            &["-c", "cd notes; edit todo.md"],
            None,
            &[("EDITOR", editor)],
        );
        assert_eq!(output.status.code(), *status, "{what}: {output:?}");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(text.contains(says), "{what}: {says:?} in {text:?}");
        assert_eq!(read(), *after, "{what}");
    }
    // A new file starts empty.
    let output = stack.shell_with(
        &["-c", "edit /notes/new.md"],
        None,
        &[("EDITOR", "sh -c 'echo fresh > \"$0\"'")],
    );
    assert!(output.status.success(), "{output:?}");
    assert_eq!(
        std::fs::read_to_string(stack.root().join("notes/new.md")).expect("new.md"),
        "fresh\n"
    );
}

#[test]
fn a_websocket_url_with_a_token_reaches_the_same_gateway() {
    let stack = Stack::up();
    stack.reset_files(&[("notes/todo.md", "buy milk\n")]);
    let url = format!("ws://{}/ws", stack.listen);
    let token_file = stack.runtime_dir().join("gateway.token");
    let token_file = token_file.to_str().expect("utf-8 path");
    let nowhere = stack.dir.path().join("nowhere");
    let nowhere = nowhere.to_str().expect("utf-8 path");
    type Case<'a> = (
        &'a str,
        &'a [&'a str],
        &'a [(&'a str, &'a str)],
        Option<i32>,
        &'a str,
    );
    let cases: &[Case<'_>] = &[
        // (what, args, environment, exit status, in stdout or stderr)
        (
            "a token file",
            &[
                "--url",
                &url,
                "--token-file",
                token_file,
                "-c",
                "cat notes/todo.md; mcp.test.echo text=over-ws",
            ],
            &[],
            Some(0),
            "buy milk\n",
        ),
        (
            "the token of llmbasedos up, found in its runtime dir",
            &["--url", &url, "-c", "mcp.test.echo text=found"],
            &[],
            Some(0),
            "found",
        ),
        (
            "the URL from the environment",
            &["-c", "ls notes"],
            &[("LLMBASEDOS_GATEWAY_URL", &url)],
            Some(0),
            "todo.md",
        ),
        (
            "no token",
            &["--url", &url, "--runtime-dir", nowhere, "-c", "ls"],
            &[],
            Some(77),
            "the gateway wants a bearer token (--token-file or LLMBASEDOS_TOKEN)\n",
        ),
        (
            "a wrong token",
            &["--url", &url, "-c", "ls"],
            &[("LLMBASEDOS_TOKEN", "not-the-token")],
            Some(77),
            "the gateway refused the bearer token; check the one given",
        ),
        (
            "nothing listening",
            &["--url", "ws://127.0.0.1:1/ws", "-c", "ls"],
            &[],
            Some(69),
            "cannot connect to the gateway at ws://127.0.0.1:1/ws (nothing is listening); start it with",
        ),
        (
            "not a WebSocket URL",
            &["--url", "http://127.0.0.1:1/mcp", "-c", "ls"],
            &[],
            Some(69),
            "is not a WebSocket URL: give ws://HOST:PORT/ws\n",
        ),
    ];
    for (what, args, env, status, says) in cases {
        let output = stack.shell_with(args, None, env);
        assert_eq!(output.status.code(), *status, "{what}: {output:?}");
        let printed = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(printed.contains(says), "{what}: {says:?} in {printed:?}");
        if *status != Some(0) {
            assert_eq!(
                output.stderr.iter().filter(|byte| **byte == b'\n').count(),
                1,
                "{what}: one line: {printed:?}"
            );
            assert!(
                !printed.contains("not-the-token"),
                "{what}: the token leaked: {printed:?}"
            );
        }
    }
}

/// A path the environment must give: `scripts/test` exports both.
fn required_env(name: &str, how: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|value| !value.is_empty())
        .unwrap_or_else(|| panic!("{name} is not set: {how}"))
}

#[test]
fn search_lists_its_results_with_path_lines_score_and_snippet() {
    let model = required_env(
        "LLMBASEDOS_FS_MODEL_DIR",
        "export LLMBASEDOS_FS_MODEL_DIR=$(./scripts/fetch-model) (./scripts/install-test-deps fetches it)",
    );
    let runtime = required_env(
        "ORT_DYLIB_PATH",
        "export ORT_DYLIB_PATH=$(./scripts/fetch-onnxruntime) (./scripts/install-test-deps fetches it)",
    );
    let stack = Stack::up_with(
        &[],
        &[
            ("LLMBASEDOS_FS_MODEL_DIR", model.as_str()),
            ("ORT_DYLIB_PATH", runtime.as_str()),
        ],
    );
    stack.reset_files(&[
        (
            "bills/invoice.md",
            "Invoice 2026-11 from the plumber\nTotal due: 120 euros, pay by December\n",
        ),
        ("notes/garden.md", "Tomatoes need water every evening\n"),
    ]);
    let embed = stack.shell(&["-c", "mcp.fs.embed path=/"], None);
    assert!(embed.status.success(), "{embed:?}");

    let output = stack.shell(&["-c", "search how much do I owe the plumber"], None);
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let mut lines = stdout.lines();
    let first = lines.next().unwrap_or_default();
    assert!(
        first.starts_with("/bills/invoice.md  lines 1-2  score 0."),
        "the best result first, with its lines and score:\n{stdout}"
    );
    assert_eq!(
        lines.next(),
        Some("    Invoice 2026-11 from the plumber"),
        "{stdout}"
    );
    assert_eq!(
        lines.next(),
        Some("    Total due: 120 euros, pay by December"),
        "{stdout}"
    );
    assert!(
        stdout.contains("\n/notes/garden.md  line 1  score "),
        "{stdout}"
    );

    // --json keeps the answer as it is.
    let output = stack.shell(&["--json", "-c", "search plumber"], None);
    let answer: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("one JSON answer");
    assert_eq!(answer["query"], "plumber", "{answer}");
    assert_eq!(
        answer["results"][0]["path"], "/bills/invoice.md",
        "{answer}"
    );
}
