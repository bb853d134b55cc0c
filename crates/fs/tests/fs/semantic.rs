//! Semantic search through the server: `mcp.fs.embed` (a job with
//! progress), `mcp.fs.search`, `mcp.fs.index_status`, with the real model
//! and ONNX Runtime (found like the semantic crate's tests find them: a
//! test that cannot find them fails and says how to get them).

use std::path::PathBuf;

use serde_json::{Value, json};

use crate::support::{
    Client, DENIED, Fixture, INVALID_PARAMS, INVALID_VALUE, Launch, NOT_FOUND, SECRET,
};

/// The code of "semantic search unavailable" (fs.cap.json).
const UNAVAILABLE: i32 = -32017;

fn model_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("LLMBASEDOS_FS_MODEL_DIR").filter(|dir| !dir.is_empty()) {
        return PathBuf::from(dir);
    }
    semantic::locate::cached_model().unwrap_or_else(|| {
        panic!("the all-MiniLM-L6-v2 model is missing: run ./scripts/install-test-deps (or ./scripts/fetch-model), or set LLMBASEDOS_FS_MODEL_DIR")
    })
}

fn runtime() -> PathBuf {
    if let Some(path) = std::env::var_os("ORT_DYLIB_PATH").filter(|path| !path.is_empty()) {
        return PathBuf::from(path);
    }
    semantic::locate::cached_runtime().unwrap_or_else(|| {
        panic!("ONNX Runtime is missing: run ./scripts/install-test-deps (or ./scripts/fetch-onnxruntime), or set ORT_DYLIB_PATH")
    })
}

fn launch(fixture: &Fixture) -> Launch {
    Launch::new()
        .env(
            "LLMBASEDOS_FS_MODEL_DIR",
            &model_dir().display().to_string(),
        )
        .env("ORT_DYLIB_PATH", &runtime().display().to_string())
        .env(
            "LLMBASEDOS_FS_INDEX_DIR",
            &fixture.base().join("index").display().to_string(),
        )
}

const NOTES: &[(&str, &str)] = &[
    (
        "/notes/bread.md",
        "# Sourdough\n\nFeed the starter, knead the dough and bake it in a hot oven until the crust is crisp.",
    ),
    (
        "/notes/plumbing.md",
        "# Leaking tap\n\nTurn off the water, unscrew the handle and replace the worn washer so the faucet stops dripping.",
    ),
    (
        "/notes/sleep.md",
        "# Sleep\n\nKeep a regular bedtime, a dark cool bedroom and no coffee in the evening.",
    ),
    (
        "/work/interview.md",
        "# Interview\n\nResearch the company and prepare examples of past achievements before the job interview.",
    ),
    (
        "/work/taxes.md",
        "# Taxes\n\nCollect payslips and receipts and file the income tax return before the deadline.",
    ),
    (
        "/travel/japan.md",
        "# Japan\n\nTake the bullet train from Tokyo to Kyoto and visit the temples early.",
    ),
];

/// Sends a request with a progress token; returns the progress
/// notifications seen and the outcome.
fn call_with_progress(client: &mut Client, method: &str, mut params: Value) -> (usize, Value) {
    params["_meta"] = json!({"progressToken": "embed-1"});
    client.send_request(method, params);
    let mut progress = 0;
    loop {
        match client.receive() {
            proto::Message::Notification(notification) => {
                assert_eq!(notification.method, "notifications/progress");
                let params = notification.params.expect("params");
                assert_eq!(params["progressToken"], "embed-1");
                assert!(params["total"].as_f64().is_some(), "{params}");
                progress += 1;
            }
            proto::Message::Response(response) => {
                let result = response
                    .outcome
                    .unwrap_or_else(|error| panic!("{method} failed: {error:?}"));
                return (progress, result);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[test]
fn embed_then_search_finds_by_meaning() {
    let fixture = Fixture::new();
    for (path, text) in NOTES {
        fixture.write(path, text);
    }
    fixture.write("/notes/.hidden.md", "hidden notes about bread");
    fixture.write("/bin/blob.dat", b"\0\x01\x02binary");
    let server = launch(&fixture).spawn(&fixture);
    let mut client = server.connect();

    let status = client.ok("mcp.fs.index_status", json!({}));
    assert_eq!(
        (status["files"].clone(), status["model_loaded"].clone()),
        (json!(0), json!(false))
    );

    let (progress, result) = call_with_progress(&mut client, "mcp.fs.embed", json!({}));
    assert!(progress >= 1, "no progress notification");
    assert_eq!(result["files_embedded"], NOTES.len(), "{result}");
    assert_eq!(result["files_skipped"], 1, "{result}");
    assert_eq!(result["index"]["files"], NOTES.len(), "{result}");
    assert_eq!(result["index"]["model"], "all-MiniLM-L6-v2");

    let cases = [
        (json!({"query": "my faucet drips"}), "/notes/plumbing.md"),
        (
            json!({"query": "how to bake bread", "top_k": 3}),
            "/notes/bread.md",
        ),
        (
            json!({"query": "filing my tax return", "scope": "/work"}),
            "/work/taxes.md",
        ),
        (
            json!(["trains between Japanese cities", 2]),
            "/travel/japan.md",
        ),
    ];
    for (params, expected) in cases {
        let found = client.ok("mcp.fs.search", params.clone());
        let results = found["results"].as_array().expect("results");
        assert_eq!(results[0]["path"], expected, "{params}: {found}");
        assert_eq!(results[0]["start_line"], 1);
        assert!(
            results[0]["snippet"]
                .as_str()
                .expect("snippet")
                .starts_with('#')
        );
    }
    let scoped = client.ok(
        "mcp.fs.search",
        json!({"query": "bread", "scope": "/travel", "top_k": 10}),
    );
    let paths: Vec<&str> = scoped["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|hit| hit["path"].as_str().expect("path"))
        .collect();
    assert_eq!(paths, ["/travel/japan.md"]);

    // Again: nothing read, nothing embedded; a file changed: it alone.
    let again = client.ok("mcp.fs.embed", json!({"path": "/"}));
    assert_eq!(
        (
            again["files_embedded"].clone(),
            again["files_unchanged"].clone()
        ),
        (json!(0), json!(NOTES.len()))
    );
    fixture.write("/notes/sleep.md", "# Sleep\n\nA nap after lunch helps.");
    let changed = client.ok("mcp.fs.embed", json!({"path": "/notes", "recursive": true}));
    assert_eq!(changed["files_embedded"], 1, "{changed}");
    // A new text: embedded, nothing to reuse.
    assert_eq!(
        (
            changed["chunks_embedded"].clone(),
            changed["chunks_reused"].clone()
        ),
        (json!(1), json!(0)),
        "{changed}"
    );
    let status = client.ok("mcp.fs.index_status", json!({}));
    assert_eq!(status["files"], NOTES.len());
    assert_eq!(status["model_loaded"], true);
    assert!(status["updated"].as_str().expect("updated").ends_with('Z'));
    server.assert_results_match_schemas();
}

#[test]
fn malformed_semantic_requests_are_refused_and_the_server_keeps_serving() {
    let fixture = Fixture::new();
    fixture.write("/a.md", "some text about gardening");
    std::os::unix::fs::symlink(fixture.outside(), fixture.at("/escape")).expect("symlink");
    let server = launch(&fixture).spawn(&fixture);
    let mut client = server.connect();
    client.ok("mcp.fs.embed", json!({}));
    let cases = [
        (
            "mcp.fs.search",
            json!({}),
            INVALID_PARAMS,
            "\"query\" is a required property",
        ),
        (
            "mcp.fs.search",
            json!({"query": ""}),
            INVALID_PARAMS,
            "at /query",
        ),
        (
            "mcp.fs.search",
            json!({"query": "   "}),
            INVALID_VALUE,
            "query is empty",
        ),
        (
            "mcp.fs.search",
            json!({"query": "x", "top_k": 0}),
            INVALID_PARAMS,
            "at /top_k",
        ),
        (
            "mcp.fs.search",
            json!({"query": "x", "top_k": 1000}),
            INVALID_PARAMS,
            "at /top_k",
        ),
        (
            "mcp.fs.search",
            json!({"query": "x", "top_k": "5"}),
            INVALID_PARAMS,
            "at /top_k",
        ),
        (
            "mcp.fs.search",
            json!({"query": "x", "scope": "/../etc"}),
            DENIED,
            "/../etc",
        ),
        (
            "mcp.fs.search",
            json!({"query": "x", "bogus": 1}),
            INVALID_PARAMS,
            "bogus",
        ),
        (
            "mcp.fs.embed",
            json!({"path": "/nope"}),
            NOT_FOUND,
            "/nope does not exist",
        ),
        (
            "mcp.fs.embed",
            json!({"path": "/a/../../outside"}),
            DENIED,
            "\"..\" is not allowed",
        ),
        (
            "mcp.fs.embed",
            json!({"path": "/escape"}),
            INVALID_VALUE,
            "/escape is not a regular file or a directory",
        ),
        (
            "mcp.fs.embed",
            json!({"recursive": "yes"}),
            INVALID_PARAMS,
            "at /recursive",
        ),
        ("mcp.fs.index_status", json!({"x": 1}), INVALID_PARAMS, "x"),
    ];
    for (method, params, code, needle) in cases {
        let error = client.err(method, params.clone());
        assert_eq!(error.code, code, "{method} {params}: {error:?}");
        assert!(
            error.message.contains(needle),
            "{method} {params}: {}",
            error.message
        );
        assert!(!error.message.contains(SECRET));
    }
    // Still serving, and nothing outside was indexed.
    let found = client.ok("mcp.fs.search", json!({"query": "secret", "top_k": 100}));
    for hit in found["results"].as_array().expect("results") {
        assert_eq!(hit["path"], "/a.md");
    }
    assert_eq!(
        client.ok("mcp.fs.read", json!({"path": "/a.md"}))["content"],
        "some text about gardening"
    );
}

#[test]
fn a_missing_model_or_runtime_fails_only_embed_and_search() {
    let fixture = Fixture::new();
    fixture.write("/a.md", "text");
    let index = fixture.base().join("index").display().to_string();
    let missing_model = Launch::new()
        .env("LLMBASEDOS_FS_MODEL_DIR", "/nonexistent/minilm")
        .env("ORT_DYLIB_PATH", &runtime().display().to_string())
        .env("LLMBASEDOS_FS_INDEX_DIR", &index);
    let missing_runtime = Launch::new()
        .env(
            "LLMBASEDOS_FS_MODEL_DIR",
            &model_dir().display().to_string(),
        )
        .env("ORT_DYLIB_PATH", "/nonexistent/libonnxruntime.so")
        .env("LLMBASEDOS_FS_INDEX_DIR", &index);
    let expectations = [
        (
            missing_model,
            [
                "model not found in /nonexistent/minilm",
                "install llmbasedos-model-minilm",
            ],
        ),
        (
            missing_runtime,
            [
                "semantic search needs ONNX Runtime",
                "pacman -S onnxruntime",
            ],
        ),
    ];
    for (launch, needles) in expectations {
        let server = launch.spawn(&fixture);
        let mut client = server.connect();
        for (method, params) in [
            ("mcp.fs.embed", json!({})),
            ("mcp.fs.search", json!({"query": "text"})),
        ] {
            let error = client.err(method, params);
            assert_eq!(error.code, UNAVAILABLE, "{method}: {error:?}");
            for needle in needles {
                assert!(
                    error.message.contains(needle),
                    "{method}: {}",
                    error.message
                );
            }
        }
        assert_eq!(
            client.ok("mcp.fs.read", json!({"path": "/a.md"}))["content"],
            "text"
        );
        assert_eq!(
            client.ok("mcp.fs.index_status", json!({}))["model_loaded"],
            false
        );
    }
}

/// Watch mode: after an embed, new, changed and deleted files beneath the
/// embedded directory reach the index by themselves.
#[test]
fn watch_mode_keeps_the_index_fresh() {
    let fixture = Fixture::new();
    for (path, text) in NOTES {
        fixture.write(path, text);
    }
    let server = launch(&fixture)
        .env("LLMBASEDOS_FS_WATCH", "true")
        .spawn(&fixture);
    let mut client = server.connect();
    client.ok("mcp.fs.embed", json!({"path": "/notes"}));
    let top = |client: &mut Client, query: &str| -> Vec<String> {
        let found = client.ok("mcp.fs.search", json!({"query": query, "top_k": 3}));
        found["results"]
            .as_array()
            .expect("results")
            .iter()
            .map(|hit| hit["path"].as_str().expect("path").to_owned())
            .collect()
    };
    let eventually = |client: &mut Client, what: &str, check: &dyn Fn(&mut Client) -> bool| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !check(client) {
            assert!(
                std::time::Instant::now() < deadline,
                "watch mode did not {what}; stderr:\n{}",
                server.stderr()
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    };
    fixture.write(
        "/notes/deep/violin.md",
        "# Violin\n\nRosin the bow and tune the strings before practising scales.",
    );
    eventually(&mut client, "index a new file", &|client| {
        top(client, "tuning a violin").first().map(String::as_str) == Some("/notes/deep/violin.md")
    });
    std::fs::remove_file(fixture.at("/notes/plumbing.md")).expect("delete");
    eventually(&mut client, "drop a deleted file", &|client| {
        !top(client, "my faucet drips").contains(&"/notes/plumbing.md".to_owned())
    });
    // Outside the watched directory nothing is indexed.
    fixture.write(
        "/work/new.md",
        "# Violin too\n\nA second note about violin strings.",
    );
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert!(!top(&mut client, "violin strings").contains(&"/work/new.md".to_owned()));

    // Regression: reads (a client's, the refresh's own) are not changes;
    // they used to start a refresh, whose reads started the next.
    let refreshes = || server.stderr().matches("index refreshed").count();
    let before = refreshes();
    for _ in 0..5 {
        client.ok("mcp.fs.read", json!({"path": "/notes/deep/violin.md"}));
        client.ok("mcp.fs.list", json!({"path": "/notes"}));
    }
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert_eq!(
        refreshes(),
        before,
        "reads started refreshes:\n{}",
        server.stderr()
    );
}

/// A cancelled embed stops soon, keeps what it committed, and a search on
/// another connection is answered while an embed runs.
#[test]
fn an_embed_can_be_cancelled_and_searches_run_meanwhile() {
    const FILES: usize = 400;
    let fixture = Fixture::new();
    for index in 0..FILES {
        fixture.write(
            &format!("/many/d{}/f{index:03}.md", index % 10),
            format!("# Note {index}\n\nA paragraph about subject number {index} and its details."),
        );
    }
    let server = launch(&fixture).spawn(&fixture);
    let mut client = server.connect();
    let mut other = server.connect();
    // Load the model and index one file, so the search below has something.
    client.ok("mcp.fs.embed", json!({"path": "/many/d0/f000.md"}));
    let id = client.send_request(
        "mcp.fs.embed",
        json!({"path": "/many", "_meta": {"progressToken": "job"}}),
    );
    match client.receive() {
        proto::Message::Notification(notification) => {
            assert_eq!(notification.method, "notifications/progress");
        }
        other => panic!("expected progress before the embed ends, got {other:?}"),
    }
    let started = std::time::Instant::now();
    let found = other.ok(
        "mcp.fs.search",
        json!({"query": "subject number zero", "top_k": 1}),
    );
    assert!(!found["results"].as_array().expect("results").is_empty());
    client.notify("notifications/cancelled", json!({"requestId": id}));
    // The job stops: its files stop growing in the index.
    let files = |client: &mut Client| {
        client.ok("mcp.fs.index_status", json!({}))["files"]
            .as_u64()
            .expect("files")
    };
    std::thread::sleep(std::time::Duration::from_millis(800));
    let settled = files(&mut other);
    std::thread::sleep(std::time::Duration::from_millis(800));
    assert_eq!(
        files(&mut other),
        settled,
        "the embed went on after it was cancelled"
    );
    assert!(
        (settled as usize) < FILES,
        "all {FILES} files were embedded before the cancel took effect ({:?})",
        started.elapsed()
    );
    // What it did stays; the next embed does the rest.
    let rest = client.ok("mcp.fs.embed", json!({"path": "/many"}));
    assert_eq!(rest["index"]["files"], FILES, "{rest}");
    assert_eq!(
        rest["files_unchanged"].as_u64().expect("count")
            + rest["files_embedded"].as_u64().expect("count"),
        FILES as u64
    );
    assert!(
        rest["files_unchanged"].as_u64() >= Some(settled - 1),
        "{rest}"
    );
}

const FALCON: &str = "The vault combination for project Falcon is 31-17-42";

fn snippets(found: &Value) -> Vec<String> {
    found["results"]
        .as_array()
        .unwrap_or_else(|| panic!("no results in {found}"))
        .iter()
        .map(|hit| hit["snippet"].as_str().expect("snippet").to_owned())
        .collect()
}

fn falcon_found(client: &mut Client) -> bool {
    let found = client.ok(
        "mcp.fs.search",
        json!({"query": "vault combination for project Falcon", "top_k": 50}),
    );
    snippets(&found)
        .iter()
        .any(|snippet| snippet.contains("31-17-42"))
}

/// Regression (issue 12): the index directory was the same for every
/// root: after embedding root A, a search on root B returned A's private
/// passage, B's embed deleted A's index, and two servers at once failed
/// with "Database already open". Each root has its own index in the one
/// index_dir, which says which root it was built for.
#[test]
fn an_index_belongs_to_its_root() {
    let fixture = Fixture::new();
    fixture.write("/vault.md", format!("# Vault\n\n{FALCON}.\n"));
    fixture.write(
        "/notes.md",
        "# Garden\n\nWater the tomatoes every morning.\n",
    );
    let other = fixture.base().join("other-root");
    std::fs::create_dir(&other).expect("mkdir");
    std::fs::write(
        other.join("recipes.md"),
        "# Soup\n\nSimmer the onions slowly before adding the stock.\n",
    )
    .expect("write");
    let root_a = std::fs::canonicalize(fixture.root()).expect("canonical");
    let root_b = std::fs::canonicalize(&other).expect("canonical");

    {
        let a = launch(&fixture).named("a").spawn(&fixture);
        let mut client = a.connect();
        client.ok("mcp.fs.embed", json!({}));
        assert!(
            falcon_found(&mut client),
            "A's own search misses its passage"
        );
        a.assert_results_match_schemas();
    }
    {
        let b = launch(&fixture).root(&other).named("b").spawn(&fixture);
        let mut client = b.connect();
        let status = client.ok("mcp.fs.index_status", json!({}));
        assert!(
            !falcon_found(&mut client),
            "B's search returned A's passage"
        );
        assert_eq!(status["files"], 0, "B sees another root's index: {status}");
        let embedded = client.ok("mcp.fs.embed", json!({}));
        assert_eq!(
            embedded["files_removed"], 0,
            "B's embed removed A's files: {embedded}"
        );
        assert!(
            !falcon_found(&mut client),
            "B's search returned A's passage"
        );
        assert_eq!(status["root"], root_b.display().to_string(), "{status}");
        b.assert_results_match_schemas();
    }
    // Both at once, on one index_dir; A's index is whole.
    let a = launch(&fixture).named("a").spawn(&fixture);
    let b = launch(&fixture).root(&other).named("b").spawn(&fixture);
    let (mut client_a, mut client_b) = (a.connect(), b.connect());
    assert!(falcon_found(&mut client_a), "A's index lost its passage");
    let status = client_a.ok("mcp.fs.index_status", json!({}));
    assert_eq!(status["files"], 2, "{status}");
    assert_eq!(status["root"], root_a.display().to_string(), "{status}");
    assert!(!falcon_found(&mut client_b));
    client_a.ok("mcp.fs.embed", json!({}));
    client_b.ok("mcp.fs.embed", json!({}));
    assert_eq!(client_b.ok("mcp.fs.index_status", json!({}))["files"], 1);

    // A second server on A's root: a clear error, not "Database already open".
    let twin = launch(&fixture).named("twin").spawn(&fixture);
    let mut client_twin = twin.connect();
    let error = client_twin.err("mcp.fs.search", json!({"query": "vault"}));
    assert!(
        error.message.contains(&format!(
            "the index of {} is in use by another fs server",
            root_a.display()
        )),
        "{error:?}"
    );
    assert!(!error.message.contains("31-17-42"));
    assert_eq!(
        client_twin.ok("mcp.fs.read", json!({"path": "/notes.md"}))["content"],
        "# Garden\n\nWater the tomatoes every morning.\n"
    );
}

/// An index found where another root's belongs (copied or renamed by
/// hand) is refused, never searched, never deleted; an index of the old
/// flat layout (no root recorded) is left alone and not used.
#[test]
fn an_index_of_another_root_or_of_no_known_root_is_never_used() {
    let fixture = Fixture::new();
    fixture.write("/vault.md", format!("# Vault\n\n{FALCON}.\n"));
    let other = fixture.base().join("other-root");
    std::fs::create_dir(&other).expect("mkdir");
    std::fs::write(other.join("b.md"), "# B\n\nNothing secret here.\n").expect("write");
    let index_dir = fixture.base().join("index");

    // The old layout: one flat index for whatever root, built here for A.
    {
        let embedder =
            semantic::Embedder::load(&model_dir(), &runtime(), semantic::Precision::default())
                .expect("load the model");
        let index = semantic::Index::open(&index_dir).expect("open a flat index");
        let source = semantic::source::DirSource::new(fixture.root());
        index
            .update(
                &embedder,
                semantic::Target {
                    source: &source,
                    path: "/",
                    recursive: true,
                },
                &semantic::Settings::default(),
                &mut |_| {},
                &|| false,
            )
            .expect("index A in the flat layout");
    }
    let flat: Vec<_> = std::fs::read_dir(&index_dir)
        .expect("read the index dir")
        .map(|entry| entry.expect("entry").file_name())
        .collect();
    {
        let b = launch(&fixture).root(&other).named("b").spawn(&fixture);
        let mut client = b.connect();
        assert!(!falcon_found(&mut client), "B searched the old flat index");
        client.ok("mcp.fs.embed", json!({}));
        assert!(
            b.stderr().contains("older layout"),
            "the old index is not mentioned in the log:\n{}",
            b.stderr()
        );
    }
    for name in &flat {
        assert!(
            index_dir.join(name).exists(),
            "{name:?} of the old index was deleted"
        );
    }
    // A's index appears; then it is moved by hand to where B's belongs.
    {
        let a = launch(&fixture).named("a").spawn(&fixture);
        let mut client = a.connect();
        client.ok("mcp.fs.embed", json!({}));
        assert!(falcon_found(&mut client));
    }
    let roots = index_dir.join("roots");
    let mut dirs: Vec<_> = std::fs::read_dir(&roots)
        .expect("per-root index directories")
        .map(|entry| entry.expect("entry").path())
        .collect();
    dirs.sort();
    assert_eq!(dirs.len(), 2, "{dirs:?}");
    let holds = |dir: &std::path::Path, root: &std::path::Path| {
        std::fs::read_to_string(dir.join("root.json"))
            .is_ok_and(|text| text.contains(&format!("\"{}\"", root.display())))
    };
    let root_a = std::fs::canonicalize(fixture.root()).expect("canonical");
    let (dir_a, dir_b) = if holds(&dirs[0], &root_a) {
        (dirs[0].clone(), dirs[1].clone())
    } else {
        (dirs[1].clone(), dirs[0].clone())
    };
    std::fs::remove_dir_all(&dir_b).expect("remove B's index");
    std::fs::rename(&dir_a, &dir_b).expect("move A's index to B's place");
    let b = launch(&fixture).root(&other).named("b").spawn(&fixture);
    let mut client = b.connect();
    for (method, params) in [
        (
            "mcp.fs.search",
            json!({"query": "vault combination Falcon"}),
        ),
        ("mcp.fs.embed", json!({})),
        ("mcp.fs.index_status", json!({})),
    ] {
        let error = client.err(method, params);
        assert!(
            error
                .message
                .contains(&format!("built for {}", root_a.display())),
            "{method}: {error:?}"
        );
        assert!(!error.message.contains("31-17-42"));
    }
    assert!(
        dir_b.join("root.json").exists(),
        "the foreign index was deleted"
    );
}

/// Issue 12: the indexer's walk keeps the one depth bound of every walk:
/// a tree 3,000 levels deep is indexed down to the bound, the log says
/// what was left out, and the server goes on.
#[test]
fn embedding_a_deep_tree_stops_at_the_depth_bound() {
    let fixture = Fixture::new();
    let _cleanup = crate::limits::RemoveFirst(fixture.root());
    crate::limits::deep_tree(
        &fixture.at("/deep"),
        3000,
        "d",
        &[
            (
                5,
                "shallow.md",
                "# Lighthouse\n\nThe keeper trims the lamp at dusk.\n",
            ),
            (300, "deep.md", "# Deep\n\nBelow the bound.\n"),
        ],
    );
    let server = launch(&fixture).spawn(&fixture);
    let mut client = server.connect();
    let embedded = client.ok("mcp.fs.embed", json!({}));
    assert_eq!(embedded["files_embedded"], 1, "{embedded}");
    let found = client.ok(
        "mcp.fs.search",
        json!({"query": "lighthouse keeper", "top_k": 1}),
    );
    assert!(
        found["results"][0]["path"]
            .as_str()
            .is_some_and(|path| path.ends_with("/shallow.md")),
        "{found}"
    );
    assert!(
        server
            .stderr()
            .contains("levels beneath the root are not indexed"),
        "{}",
        server.stderr()
    );
    assert_eq!(
        client.ok("mcp.fs.stat", json!({"path": "/deep"}))["type"],
        "directory"
    );
}

#[test]
fn a_search_scope_that_does_not_exist_is_an_error_not_empty_results() {
    let fixture = Fixture::new();
    for (path, text) in NOTES {
        fixture.write(path, text);
    }
    let server = launch(&fixture).spawn(&fixture);
    let mut client = server.connect();
    client.ok("mcp.fs.embed", json!({}));
    let found = client.ok(
        "mcp.fs.search",
        json!({"query": "baking bread", "scope": "/notes"}),
    );
    assert!(
        !found["results"].as_array().expect("results").is_empty(),
        "{found}"
    );
    let error = client.err(
        "mcp.fs.search",
        json!({"query": "baking bread", "scope": "/nots"}),
    );
    assert_eq!(error.code, NOT_FOUND, "{}", error.message);
    assert!(
        error.message.contains("/nots does not exist"),
        "{}",
        error.message
    );
}

#[test]
fn embed_lists_the_files_it_skipped_with_why() {
    let fixture = Fixture::new();
    fixture.write("/notes/bread.md", NOTES[0].1);
    fixture.write(
        "/notes/recipe.md",
        "Spaghetti carbonara with eggs and cheese.",
    );
    std::fs::hard_link(
        fixture.at("/notes/recipe.md"),
        fixture.at("/notes/recipe-again.md"),
    )
    .expect("hard link");
    fixture.write("/notes/blob.dat", b"\0\x01\x02binary");
    let server = launch(&fixture).spawn(&fixture);
    let mut client = server.connect();
    let result = client.ok("mcp.fs.embed", json!({}));
    assert_eq!(result["files_embedded"], 1, "{result}");
    assert_eq!(result["files_skipped"], 3, "{result}");
    let mut skipped: Vec<(String, String)> = result["skipped"]
        .as_array()
        .expect("skipped")
        .iter()
        .map(|entry| {
            (
                entry["path"].as_str().expect("path").to_owned(),
                entry["reason"].as_str().expect("reason").to_owned(),
            )
        })
        .collect();
    skipped.sort();
    let paths: Vec<&str> = skipped.iter().map(|(path, _)| path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/notes/blob.dat",
            "/notes/recipe-again.md",
            "/notes/recipe.md"
        ],
        "{result}"
    );
    assert!(skipped[0].1.contains("not text"), "{result}");
    for (_, reason) in &skipped[1..] {
        assert!(
            reason.contains("hard link") && reason.contains("llmbasedos up --fs-config"),
            "{result}"
        );
    }
    server.assert_results_match_schemas();
}
