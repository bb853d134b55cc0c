//! The interactive shell in a pseudo-terminal, driven by tmux as a person
//! types: Tab completion, Ctrl-C, history across restarts, exit statuses,
//! type-ahead and pasted lines.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::stack::{LUCA_SHELL, Stack};

/// A tmux server of its own running luca-shell in one pane; killed when
/// dropped.
struct Terminal {
    /// Holds the tmux server's socket, so that nothing is left in /tmp.
    dir: tempfile::TempDir,
}

impl Terminal {
    /// Starts luca-shell against `stack`, with its history under `state`.
    fn start(stack: &Stack, state: &Path) -> Terminal {
        let found = Command::new("tmux").arg("-V").output();
        assert!(
            found.is_ok_and(|output| output.status.success()),
            "tmux is needed for the terminal tests: apt-get install tmux (scripts/install-test-deps does)"
        );
        let command = format!(
            "env XDG_STATE_HOME={} {LUCA_SHELL} --runtime-dir {}; echo \"luca-shell exited with $?\"; sleep 600",
            state.display(),
            stack.runtime_dir().display()
        );
        let terminal = Terminal {
            dir: tempfile::tempdir().expect("tmux dir"),
        };
        terminal.tmux(&[
            "new-session",
            "-d",
            "-s",
            "luca",
            "-x",
            "150",
            "-y",
            "50",
            &command,
        ]);
        terminal.wait_for("luca:/$ ");
        terminal
    }

    fn socket(&self) -> std::path::PathBuf {
        self.dir.path().join("tmux.sock")
    }

    fn tmux(&self, args: &[&str]) -> String {
        let output = Command::new("tmux")
            .arg("-S")
            .arg(self.socket())
            .arg("-f")
            .arg("/dev/null")
            .args(args)
            .output()
            .expect("run tmux");
        assert!(output.status.success(), "tmux {args:?}: {output:?}");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Types text as it is.
    fn type_text(&self, text: &str) {
        self.tmux(&["send-keys", "-t", "luca", "-l", text]);
    }

    /// Presses keys by tmux name: `Enter`, `Tab`, `C-c`, `C-d`, `Up`.
    fn press(&self, key: &str) {
        self.tmux(&["send-keys", "-t", "luca", key]);
    }

    /// Types a line and presses Enter.
    fn line(&self, text: &str) {
        self.type_text(text);
        self.press("Enter");
    }

    /// Everything the pane shows, scrollback included.
    fn screen(&self) -> String {
        self.tmux(&["capture-pane", "-p", "-J", "-S", "-", "-t", "luca"])
    }

    /// Waits until the pane shows `text` `count` times, and returns it.
    fn wait_for_count(&self, text: &str, count: usize) -> String {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let screen = self.screen();
            if screen.matches(text).count() >= count {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "the terminal never showed {text:?} {count} time(s):\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(30));
        }
    }

    fn wait_for(&self, text: &str) -> String {
        self.wait_for_count(text, 1)
    }

    /// Types a command at `prompt` and waits for the next prompt, so that
    /// what follows on the screen is this command's.
    fn command(&self, prompt: &str, text: &str) -> String {
        let before = self.screen().matches(prompt).count();
        self.line(text);
        self.wait_for_count(prompt, before + 1)
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .arg("-S")
            .arg(self.socket())
            .arg("kill-server")
            .output();
    }
}

#[test]
fn a_session_changes_real_files_completes_and_exits_with_status_0() {
    let stack = Stack::up();
    stack.reset_files(&[("notes/todo.md", "buy milk\n"), ("hello.txt", "hi\n")]);
    let state = tempfile::tempdir().expect("state dir");
    let terminal = Terminal::start(&stack, state.path());

    // Tab completes a command name, then a remote path.
    terminal.type_text("hist");
    terminal.press("Tab");
    terminal.wait_for("luca:/$ history");
    terminal.press("C-u");
    terminal.type_text("cd no");
    terminal.press("Tab");
    terminal.wait_for("luca:/$ cd notes/");
    terminal.press("Enter");
    terminal.wait_for("luca:/notes$ ");
    terminal.type_text("cat to");
    terminal.press("Tab");
    terminal.wait_for("luca:/notes$ cat todo.md");
    terminal.press("Enter");
    terminal.wait_for("buy milk");

    terminal.wait_for_count("luca:/notes$ ", 2);
    terminal.command("luca:/notes$ ", "write new.md written from the shell");
    terminal.command("luca:/notes$ ", "ls");
    terminal.wait_for("new.md\ntodo.md");
    assert_eq!(
        std::fs::read_to_string(stack.root().join("notes/new.md")).expect("written"),
        "written from the shell\n"
    );
    terminal.command("luca:/notes$ ", "rm todo.md");
    terminal.command("luca:/notes$ ", "pwd");
    terminal.wait_for("\n/notes\n");
    assert!(
        !stack.root().join("notes/todo.md").exists(),
        "rm deleted it"
    );

    let screen = terminal.command("luca:/notes$ ", "frobnicate");
    let after = screen
        .split("luca:/notes$ frobnicate\n")
        .nth(1)
        .expect("the command line");
    assert!(
        after.starts_with(
            "unknown command: frobnicate; type `help` for the commands\nluca:/notes$ "
        ),
        "one line, then the prompt:\n{screen}"
    );

    terminal.line("exit");
    terminal.wait_for("luca-shell exited with 0");
}

#[test]
fn ctrl_c_cancels_a_slow_call_and_the_shell_stays_usable() {
    let stack = Stack::up();
    let state = tempfile::tempdir().expect("state dir");
    let terminal = Terminal::start(&stack, state.path());
    terminal.line("mcp.test.sleep ms=30000");
    // The call is under way once the server counts it.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let stats = stack.shell(&["--json", "-c", "mcp.test.stats"], None);
        if String::from_utf8_lossy(&stats.stdout).contains("\"started\":1") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the sleep never started: {stats:?}"
        );
        std::thread::sleep(Duration::from_millis(30));
    }
    let started = Instant::now();
    terminal.press("C-c");
    terminal.wait_for("cancelled\nluca:/$ ");
    assert!(started.elapsed() < Duration::from_secs(10));

    terminal.line("mcp.test.stats");
    terminal.wait_for("\"cancelled\": 1");
    terminal.line("mcp.test.echo text=still-here");
    terminal.wait_for("\"text\": \"still-here\"");
    // A long call shows its progress on one line until it answers.
    terminal.line("test_progress steps=2 delay_ms=700");
    terminal.wait_for("1/2 step 1 of 2");
    terminal.wait_for("\"steps\": 2");
    terminal.press("C-d");
    terminal.wait_for("luca-shell exited with 0");
}

#[test]
fn history_survives_a_restart() {
    let stack = Stack::up();
    let state = tempfile::tempdir().expect("state dir");
    {
        let terminal = Terminal::start(&stack, state.path());
        terminal.line("mcp.test.echo text=remembered");
        terminal.wait_for("\"text\": \"remembered\"");
        terminal.line("exit");
        terminal.wait_for("luca-shell exited with 0");
    }
    let history =
        std::fs::read_to_string(state.path().join("llmbasedos/history")).expect("the history file");
    assert!(
        history.contains("mcp.test.echo text=remembered"),
        "{history}"
    );

    let terminal = Terminal::start(&stack, state.path());
    terminal.press("Up");
    terminal.wait_for("luca:/$ exit");
    terminal.press("Up");
    terminal.wait_for("luca:/$ mcp.test.echo text=remembered");
    terminal.press("Enter");
    terminal.wait_for_count("\"text\": \"remembered\"", 1);
    terminal.line("history");
    terminal.wait_for("    1  mcp.test.echo text=remembered\n    2  exit\n");
}

#[test]
fn the_shell_reconnects_after_the_gateway_restarts() {
    let stack = Stack::up();
    stack.reset_files(&[("hello.txt", "hi\n")]);
    let state = tempfile::tempdir().expect("state dir");
    let terminal = Terminal::start(&stack, state.path());
    terminal.line("cat hello.txt");
    terminal.wait_for("\nhi\n");
    let first = *stack.gateway_pids().first().expect("a gateway was started");
    // SAFETY: signals the gateway of the stack this test started.
    assert_eq!(unsafe { libc::kill(first, libc::SIGTERM) }, 0);
    let deadline = Instant::now() + Duration::from_secs(30);
    while stack.gateway_pids().len() < 2 || !stack.runtime_dir().join("gateway.sock").exists() {
        assert!(
            Instant::now() < deadline,
            "the gateway was not restarted:\n{}",
            stack.log()
        );
        std::thread::sleep(Duration::from_millis(30));
    }
    let socket = stack.runtime_dir().join("gateway.sock");
    while std::os::unix::net::UnixStream::connect(&socket).is_err() {
        assert!(Instant::now() < deadline, "the new gateway never accepted");
        std::thread::sleep(Duration::from_millis(30));
    }
    // The shell's connection died with the old gateway: the next command
    // connects again, without a word about it.
    terminal.line("cat hello.txt");
    let screen = terminal.wait_for_count("luca:/$ ", 3);
    assert_eq!(screen.matches("\nhi\n").count(), 2, "{screen}");
    let screen = terminal.screen();
    assert!(!screen.contains("panicked"), "{screen}");
}

impl Terminal {
    /// Presses several keys in one tmux command, as fast as a person who
    /// types ahead: `["cd /notes", "Enter", "pwd", "Enter"]`.
    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "luca"];
        args.extend_from_slice(keys);
        self.tmux(&args);
    }

    /// Pastes `text` as a terminal does without bracketed paste: all at
    /// once, each newline a carriage return.
    fn paste(&self, text: &str) {
        self.tmux(&["set-buffer", "-b", "paste", "--", text]);
        self.tmux(&["paste-buffer", "-b", "paste", "-d", "-t", "luca"]);
    }
}

#[test]
fn keys_typed_while_a_command_runs_are_kept() {
    let stack = Stack::up();
    stack.reset_files(&[("notes/todo.md", "buy milk\n"), ("hello.txt", "hi\n")]);
    let state = tempfile::tempdir().expect("state dir");
    let terminal = Terminal::start(&stack, state.path());

    // Three lines typed in one go: the second and third arrive while the
    // first runs.
    terminal.keys(&["cd /notes", "Enter", "pwd", "Enter", "ls", "Enter"]);
    let screen = terminal.wait_for("todo.md\nluca:/notes$ ");
    assert!(screen.contains("\n/notes\n"), "pwd ran:\n{screen}");

    // A slow call, then keys typed while it runs.
    terminal.line("mcp.test.sleep ms=1500");
    terminal.keys(&["cd /", "Enter", "cat hello.txt", "Enter"]);
    let screen = terminal.wait_for("\nhi\nluca:/$ ");
    assert!(!screen.contains("panicked"), "{screen}");

    // A multi-line paste runs every line.
    terminal.paste("write pasted.md one\nmkdir pasted-dir\ncat pasted.md\n");
    let screen = terminal.wait_for("\none\nluca:/$ ");
    assert!(
        stack.root().join("pasted.md").is_file() && stack.root().join("pasted-dir").is_dir(),
        "every pasted line ran:\n{screen}"
    );
    terminal.line("exit");
    terminal.wait_for("luca-shell exited with 0");
}

#[test]
fn tab_completes_names_with_spaces_quotes_and_non_ascii_letters() {
    let stack = Stack::up();
    stack.reset_files(&[
        ("name with spaces.txt", "spaced out\n"),
        ("café crème.md", "non-ascii\n"),
        ("it's; odd.txt", "quoted\n"),
        ("Ünïcödé/résumé.txt", "nested\n"),
    ]);
    let state = tempfile::tempdir().expect("state dir");
    let terminal = Terminal::start(&stack, state.path());

    terminal.type_text("cat nam");
    terminal.press("Tab");
    terminal.wait_for(r"luca:/$ cat name\ with\ spaces.txt");
    terminal.press("Enter");
    terminal.wait_for("\nspaced out\n");

    terminal.type_text("cat caf");
    terminal.press("Tab");
    terminal.wait_for(r"luca:/$ cat café\ crème.md");
    terminal.press("Enter");
    terminal.wait_for("\nnon-ascii\n");

    terminal.type_text("cat it");
    terminal.press("Tab");
    terminal.wait_for(r"luca:/$ cat it\'s\;\ odd.txt");
    terminal.press("Enter");
    terminal.wait_for("\nquoted\n");

    // Completion goes on inside a name already escaped, and after
    // non-ASCII letters typed before the cursor.
    terminal.type_text(r"cat Ünï");
    terminal.press("Tab");
    terminal.wait_for("luca:/$ cat Ünïcödé/");
    terminal.type_text("ré");
    terminal.press("Tab");
    terminal.wait_for("luca:/$ cat Ünïcödé/résumé.txt");
    terminal.press("Enter");
    terminal.wait_for("\nnested\n");

    terminal.type_text(r"cat name\ w");
    terminal.press("Tab");
    terminal.wait_for_count(r"luca:/$ cat name\ with\ spaces.txt", 2);
    terminal.press("Enter");
    let screen = terminal.wait_for_count("\nspaced out\n", 2);
    assert!(!screen.contains("not found"), "{screen}");
    terminal.line("exit");
    terminal.wait_for("luca-shell exited with 0");
}
