//! Golden-output tests of the non-interactive shell: every file in
//! `tests/golden/` is one case, run against a real stack with fresh
//! fixture files. Its header says how to run it; below the `===` line is
//! what the shell printed and its exit status. `UPDATE_GOLDEN=1 cargo test
//! -p shell --test shell golden` rewrites that part from what the shell
//! prints now; review the diff.
//!
//! ```text
//! # a comment saying what the case shows
//! mode: -c            (-c: the input lines are the -c argument; stdin: they are piped in)
//! args: --json        (optional: more arguments, split at spaces)
//! stdin: some text    (optional, with -c: piped to standard input)
//! input:
//! ls
//! cat nope
//! ===
//! status: 1
//! --- stdout
//! …
//! --- stderr
//! …
//! ```

use std::path::{Path, PathBuf};

use crate::stack::Stack;

/// The files every case starts from.
const FIXTURE: &[(&str, &str)] = &[
    ("hello.txt", "line1\nline2\nline3\n"),
    ("notes/todo.md", "buy milk\ncall mum\n"),
    (
        "notes/ideas.md",
        "a shell for llmbasedos\nTODO: completion\n",
    ),
];

struct Case {
    header: String,
    mode: String,
    args: Vec<String>,
    stdin: Option<String>,
    input: String,
    expected: Option<String>,
}

fn parse_case(path: &Path, text: &str) -> Case {
    let (header, expected) = match text.split_once("\n===\n") {
        Some((header, expected)) => (header.to_owned(), Some(expected.to_owned())),
        None => (text.trim_end().to_owned(), None),
    };
    let (settings, input) = header
        .split_once("\ninput:\n")
        .unwrap_or_else(|| panic!("{}: no `input:` line", path.display()));
    let mut case = Case {
        header: header.clone(),
        mode: String::new(),
        args: Vec::new(),
        stdin: None,
        input: format!("{input}\n"),
        expected,
    };
    for line in settings.lines().filter(|line| !line.starts_with('#')) {
        match line.split_once(": ") {
            Some(("mode", mode)) => case.mode = mode.to_owned(),
            Some(("args", args)) => case.args = args.split(' ').map(str::to_owned).collect(),
            Some(("stdin", stdin)) => case.stdin = Some(format!("{stdin}\n")),
            _ => panic!("{}: unknown header line {line:?}", path.display()),
        }
    }
    assert!(
        case.mode == "-c" || case.mode == "stdin",
        "{}: mode is -c or stdin",
        path.display()
    );
    case
}

fn run_case(stack: &Stack, case: &Case) -> String {
    stack.reset_files(FIXTURE);
    let mut args: Vec<&str> = case.args.iter().map(String::as_str).collect();
    let output = if case.mode == "-c" {
        args.push("-c");
        args.push(case.input.trim_end());
        stack.shell(&args, case.stdin.as_deref())
    } else {
        stack.shell(&args, Some(&case.input))
    };
    let clean = |bytes: &[u8]| {
        String::from_utf8_lossy(bytes).replace(&stack.dir.path().display().to_string(), "<tmp>")
    };
    format!(
        "status: {}\n--- stdout\n{}--- stderr\n{}",
        output
            .status
            .code()
            .map_or("signal".to_owned(), |code| code.to_string()),
        clean(&output.stdout),
        clean(&output.stderr),
    )
}

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

#[test]
fn golden_outputs_of_scripts() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some_and(|value| value == "1");
    let stack = Stack::up();
    let mut files: Vec<PathBuf> = std::fs::read_dir(golden_dir())
        .expect("tests/golden")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.extension().is_some_and(|extension| extension == "txt"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no golden cases in tests/golden");
    let mut failures = Vec::new();
    for path in &files {
        let text = std::fs::read_to_string(path).expect("read case");
        let case = parse_case(path, &text);
        let actual = run_case(&stack, &case);
        if update {
            std::fs::write(path, format!("{}\n===\n{actual}", case.header)).expect("write case");
        } else if case.expected.as_deref() != Some(actual.as_str()) {
            failures.push(format!(
                "{}:\n--- expected\n{}\n--- actual\n{actual}",
                path.display(),
                case.expected.as_deref().unwrap_or("(nothing yet)")
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} golden case(s) differ (UPDATE_GOLDEN=1 rewrites them; review the diff):\n\n{}\n\nstack log:\n{}",
        failures.len(),
        failures.join("\n\n"),
        stack.log()
    );
}
