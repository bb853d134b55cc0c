//! What each method does, over the wire.

use base64::Engine;
use serde_json::{Value, json};

use crate::support::{
    ALREADY_EXISTS, Client, DENIED, Fixture, INVALID_VALUE, Launch, NOT_EMPTY, NOT_FOUND, Server,
    TOO_LARGE,
};

fn paths(found: &Value, key: &str) -> Vec<String> {
    found[key]
        .as_array()
        .unwrap_or_else(|| panic!("no {key} in {found}"))
        .iter()
        .map(|item| item["path"].as_str().expect("path").to_owned())
        .collect()
}

fn start(fixture: &Fixture) -> (Server, Client) {
    let server = Server::start(fixture);
    let client = server.connect();
    (server, client)
}

#[test]
fn list_one_level_recursive_sorted_and_paginated() {
    let fixture = Fixture::new();
    fixture.write("/b.txt", "bb");
    fixture.write("/a.txt", "a");
    fixture.write("/dir/c.txt", "cccc");
    fixture.write("/dir/deeper/d.txt", "d");
    let (server, mut client) = start(&fixture);

    let top = client.ok("mcp.fs.list", json!({}));
    assert_eq!(paths(&top, "entries"), ["/a.txt", "/b.txt", "/dir"]);
    let first = &top["entries"][0];
    assert_eq!(
        (
            first["name"].as_str(),
            first["type"].as_str(),
            first["size"].as_u64()
        ),
        (Some("a.txt"), Some("file"), Some(1))
    );
    assert!(first["modified"].as_str().expect("modified").ends_with('Z'));
    assert_eq!(
        top["summary"],
        json!({"files": 2, "directories": 1, "other": 0, "total_size": 3})
    );

    let positional = client.ok("mcp.fs.list", json!(["/dir"]));
    assert_eq!(paths(&positional, "entries"), ["/dir/c.txt", "/dir/deeper"]);

    let recursive = client.ok("mcp.fs.list", json!({"recursive": true}));
    assert_eq!(
        paths(&recursive, "entries"),
        [
            "/a.txt",
            "/b.txt",
            "/dir",
            "/dir/c.txt",
            "/dir/deeper",
            "/dir/deeper/d.txt"
        ]
    );
    let depth_two = client.ok("mcp.fs.list", json!({"depth": 2}));
    assert_eq!(depth_two["total"], 5);

    let by_size = client.ok(
        "mcp.fs.list",
        json!({"path": "/dir", "recursive": true, "sort": "size", "descending": true}),
    );
    assert_eq!(paths(&by_size, "entries")[0], "/dir/c.txt");

    let mut pages = Vec::new();
    let mut cursor = None;
    loop {
        let mut params = json!({"recursive": true, "limit": 4});
        if let Some(cursor) = &cursor {
            params["cursor"] = json!(cursor);
        }
        let page = client.ok("mcp.fs.list", params);
        pages.push(paths(&page, "entries"));
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), [4, 2]);
    assert_eq!(pages.concat(), paths(&recursive, "entries"));
    server.assert_results_match_schemas();
}

/// Pages are cut on where the last one ended, not on offsets: in every
/// order, one level or recursive, the pages put together are the whole
/// listing; a cursor of another order or directory, or one not made here,
/// is refused; and a page goes on after an entry removed since.
#[test]
fn list_pages_in_every_order_make_the_whole_listing() {
    let fixture = Fixture::new();
    for index in 0..23 {
        // Sizes and times repeat, so ties are broken by path.
        fixture.write(&format!("/f{index:02}.txt"), "x".repeat(index % 5));
        fixture.write(&format!("/sub/g{index:02}"), "y".repeat(index % 3));
        let time = std::time::UNIX_EPOCH
            + std::time::Duration::from_secs(1_700_000_000 + (index as u64 % 4) * 60);
        for path in [format!("/f{index:02}.txt"), format!("/sub/g{index:02}")] {
            std::fs::File::options()
                .write(true)
                .open(fixture.at(&path))
                .and_then(|file| file.set_modified(time))
                .expect("set a modification time");
        }
    }
    let (server, mut client) = start(&fixture);
    let mut cases = 0;
    for sort in ["name", "size", "modified"] {
        for descending in [false, true] {
            for recursive in [false, true] {
                let params =
                    json!({"sort": sort, "descending": descending, "recursive": recursive});
                let mut whole = params.clone();
                whole["limit"] = json!(10_000);
                let whole = client.ok("mcp.fs.list", whole);
                assert!(whole.get("next_cursor").is_none(), "{whole}");
                let mut pages = Vec::new();
                let mut cursor: Option<String> = None;
                for _ in 0..20 {
                    let mut page = params.clone();
                    page["limit"] = json!(4);
                    if let Some(cursor) = &cursor {
                        page["cursor"] = json!(cursor);
                    }
                    let page = client.ok("mcp.fs.list", page);
                    assert_eq!(page["total"], whole["total"], "{params}");
                    assert_eq!(page["summary"], whole["summary"], "{params}");
                    pages.push(paths(&page, "entries"));
                    match page["next_cursor"].as_str() {
                        Some(next) => cursor = Some(next.to_owned()),
                        None => break,
                    }
                }
                let total = whole["total"].as_u64().expect("total") as usize;
                assert_eq!(pages.len(), total.div_ceil(4), "{params}");
                assert!(pages.iter().all(|page| page.len() <= 4), "{params}");
                assert_eq!(pages.concat(), paths(&whole, "entries"), "{params}");
                cases += 1;
            }
        }
    }
    assert_eq!(cases, 12);
    let by_size = client.ok("mcp.fs.list", json!({"sort": "size", "limit": 3}));
    assert_eq!(
        paths(&by_size, "entries"),
        ["/f00.txt", "/f05.txt", "/f10.txt"],
        "ties go by path: the directory (size 0) comes after /f*"
    );

    let first = client.ok("mcp.fs.list", json!({"limit": 2}));
    let cursor = first["next_cursor"]
        .as_str()
        .expect("a next page")
        .to_owned();
    let forged = |text: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text);
    let refused = [
        (json!({"cursor": cursor, "sort": "size"}), "another order"),
        (
            json!({"cursor": cursor, "descending": true}),
            "another order",
        ),
        (
            json!({"cursor": cursor, "path": "/sub"}),
            "another directory",
        ),
        (
            json!({"cursor": format!("{cursor}!")}),
            "not one this server gave",
        ),
        (
            json!({"cursor": forged("name\n0\n0\n/../etc")}),
            "not one this server gave",
        ),
        (
            json!({"cursor": forged("name\n0\nmany\n/f00.txt")}),
            "not one this server gave",
        ),
        (
            json!({"cursor": forged("name\n0\n0")}),
            "not one this server gave",
        ),
        (json!({"cursor": ""}), "not one this server gave"),
    ];
    for (params, expected) in refused {
        let error = client.err("mcp.fs.list", params.clone());
        assert_eq!(error.code, INVALID_VALUE, "{params}: {error}");
        assert!(error.message.contains(expected), "{params}: {error}");
    }
    // The cursor names the last entry shown: removing it loses nothing.
    assert_eq!(paths(&first, "entries"), ["/f00.txt", "/f01.txt"]);
    std::fs::remove_file(fixture.at("/f01.txt")).expect("remove");
    let next = client.ok("mcp.fs.list", json!({"limit": 2, "cursor": cursor}));
    assert_eq!(paths(&next, "entries"), ["/f02.txt", "/f03.txt"]);
    server.assert_results_match_schemas();
}

#[test]
fn read_text_base64_ranges_lines_mime_and_limits() {
    let fixture = Fixture::new();
    fixture.write("/notes.md", "one\ntwo\nthree\nfour\n");
    fixture.write("/blob.bin", [0_u8, 159, 146, 150, 1, 2]);
    fixture.write("/big.txt", "x".repeat(2000));
    let server = Launch::new().config("max_read_bytes: 1000").spawn(&fixture);
    let mut client = server.connect();

    let whole = client.ok("mcp.fs.read", json!({"path": "/notes.md"}));
    assert_eq!(whole["content"], "one\ntwo\nthree\nfour\n");
    assert_eq!(whole["encoding"], "text");
    assert_eq!(whole["mime_type"], "text/markdown");
    assert_eq!(
        (whole["size"].as_u64(), whole["truncated"].as_bool()),
        (Some(19), Some(false))
    );

    let table = [
        (json!({"path": "/notes.md", "head": 2}), "one\ntwo\n"),
        (json!({"path": "/notes.md", "tail": 2}), "three\nfour\n"),
        (
            json!({"path": "/notes.md", "offset": 4, "length": 3}),
            "two",
        ),
        (json!({"path": "/notes.md", "offset": 14}), "four\n"),
        (json!({"path": "/notes.md", "offset": 100}), ""),
        (json!(["/notes.md", "text"]), "one\ntwo\nthree\nfour\n"),
    ];
    for (params, expected) in table {
        let result = client.ok("mcp.fs.read", params.clone());
        assert_eq!(result["content"], expected, "{params}");
    }

    let blob = client.ok("mcp.fs.read", json!({"path": "/blob.bin"}));
    assert_eq!(blob["encoding"], "base64");
    assert_eq!(blob["mime_type"], "application/octet-stream");
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(blob["content"].as_str().expect("content"))
        .expect("base64");
    assert_eq!(decoded, [0_u8, 159, 146, 150, 1, 2]);
    let forced = client.ok(
        "mcp.fs.read",
        json!({"path": "/notes.md", "encoding": "base64"}),
    );
    assert_eq!(forced["content"], "b25lCnR3bwp0aHJlZQpmb3VyCg==");
    let not_text = client.err(
        "mcp.fs.read",
        json!({"path": "/blob.bin", "encoding": "text"}),
    );
    assert_eq!(not_text.code, INVALID_VALUE);
    assert!(
        not_text.message.contains("/blob.bin is not UTF-8 text"),
        "{not_text}"
    );

    let too_large = client.err("mcp.fs.read", json!({"path": "/big.txt"}));
    assert_eq!(too_large.code, TOO_LARGE);
    assert!(
        too_large
            .message
            .contains("/big.txt is 2000 bytes, more than the 1000-byte read limit"),
        "{too_large}"
    );
    assert!(too_large.message.contains("offset/length"), "{too_large}");
    let part = client.ok("mcp.fs.read", json!({"path": "/big.txt", "offset": 0}));
    assert_eq!(
        (part["bytes"].as_u64(), part["truncated"].as_bool()),
        (Some(1000), Some(true))
    );
    let head = client.ok("mcp.fs.read", json!({"path": "/big.txt", "head": 1}));
    assert_eq!(head["truncated"], true);

    let missing = client.err("mcp.fs.read", json!({"path": "/nope.txt"}));
    assert_eq!(missing.code, NOT_FOUND);
    assert!(
        missing.message.starts_with("/nope.txt does not exist"),
        "{missing}"
    );
    server.assert_results_match_schemas();
}

#[test]
fn read_many_reports_each_file() {
    let fixture = Fixture::new();
    fixture.write("/a.txt", "A");
    fixture.write("/b.txt", "B");
    let (server, mut client) = start(&fixture);
    let result = client.ok(
        "mcp.fs.read_many",
        json!({"paths": ["/a.txt", "/missing", "/b.txt", "bad"]}),
    );
    let items = result["results"].as_array().expect("results");
    assert_eq!(items[0]["result"]["content"], "A");
    assert_eq!(items[1]["error"]["code"], NOT_FOUND);
    assert_eq!(items[2]["result"]["content"], "B");
    assert_eq!(items[3]["error"]["code"], INVALID_VALUE);
    assert_eq!(items.iter().filter(|item| item["ok"] == true).count(), 2);
    server.assert_results_match_schemas();
}

#[test]
fn write_modes_parents_and_base64() {
    let fixture = Fixture::new();
    let (server, mut client) = start(&fixture);

    let created = client.ok(
        "mcp.fs.write",
        json!({"path": "/new.txt", "content": "hello"}),
    );
    assert_eq!(
        created,
        json!({"path": "/new.txt", "bytes_written": 5, "created": true})
    );
    let replaced = client.ok("mcp.fs.write", json!(["/new.txt", "bye"]));
    assert_eq!(replaced["created"], false);
    assert_eq!(fixture.read("/new.txt"), b"bye");

    client.ok(
        "mcp.fs.write",
        json!({"path": "/new.txt", "content": " now", "mode": "append"}),
    );
    assert_eq!(fixture.read("/new.txt"), b"bye now");
    client.ok(
        "mcp.fs.write",
        json!({"path": "/log.txt", "content": "1", "mode": "append"}),
    );
    assert_eq!(fixture.read("/log.txt"), b"1");

    let exists = client.err(
        "mcp.fs.write",
        json!({"path": "/new.txt", "content": "x", "mode": "create"}),
    );
    assert_eq!(exists.code, ALREADY_EXISTS);
    assert!(
        exists.message.contains("/new.txt already exists"),
        "{exists}"
    );
    client.ok(
        "mcp.fs.write",
        json!({"path": "/only.txt", "content": "x", "mode": "create"}),
    );

    let no_parent = client.err(
        "mcp.fs.write",
        json!({"path": "/a/b/c.txt", "content": "x"}),
    );
    assert_eq!(no_parent.code, NOT_FOUND);
    assert!(
        no_parent.message.contains("/a/b does not exist")
            && no_parent
                .message
                .contains("create it with mcp.fs.mkdir (parents: true, path: \"/a/b\")")
            && no_parent.data.as_ref().and_then(|data| data.get("kind"))
                == Some(&json!("not_found")),
        "{no_parent}"
    );
    client.ok(
        "mcp.fs.write",
        json!({"path": "/a/b/c.txt", "content": "x", "create_parents": true}),
    );
    assert_eq!(fixture.read("/a/b/c.txt"), b"x");

    client.ok(
        "mcp.fs.write",
        json!({"path": "/bin", "content": "AAEC/w==", "encoding": "base64"}),
    );
    assert_eq!(fixture.read("/bin"), [0, 1, 2, 255]);

    // Permissions of a replaced file are kept; no temporary file is left.
    let path = fixture.at("/new.txt");
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .expect("chmod");
    client.ok(
        "mcp.fs.write",
        json!({"path": "/new.txt", "content": "again"}),
    );
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&path).expect("stat").permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    let leftovers: Vec<_> = std::fs::read_dir(fixture.root())
        .expect("read the root")
        .filter_map(Result::ok)
        .filter(|entry| entry.file_name().to_string_lossy().contains(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    let onto_dir = client.err("mcp.fs.write", json!({"path": "/a", "content": "x"}));
    assert_eq!(onto_dir.code, INVALID_VALUE, "{onto_dir}");
    server.assert_results_match_schemas();
}

#[test]
fn edit_replaces_exact_text_and_dry_run_shows_a_diff() {
    let fixture = Fixture::new();
    fixture.write(
        "/code.rs",
        "fn main() {\n    println!(\"hi\");\n    let x = 1;\n    let x = 1;\n}\n",
    );
    let (server, mut client) = start(&fixture);
    let before = fixture.read("/code.rs");

    let dry = client.ok(
        "mcp.fs.edit",
        json!({"path": "/code.rs", "dry_run": true, "edits": [{"old_text": "\"hi\"", "new_text": "\"hello\""}]}),
    );
    assert_eq!(dry["applied"], false);
    let diff = dry["diff"].as_str().expect("diff");
    assert!(diff.starts_with("--- /code.rs\n+++ /code.rs\n@@"), "{diff}");
    assert!(
        diff.contains("-    println!(\"hi\");\n+    println!(\"hello\");\n"),
        "{diff}"
    );
    assert_eq!(fixture.read("/code.rs"), before);

    let ambiguous = client.err("mcp.fs.edit", json!({"path": "/code.rs", "edits": [{"old_text": "let x = 1;", "new_text": "let y = 2;"}]}));
    assert_eq!(ambiguous.code, INVALID_VALUE);
    assert!(
        ambiguous.message.contains("occurs 2 times") && ambiguous.message.contains("replace_all"),
        "{ambiguous}"
    );
    let absent = client.err("mcp.fs.edit", json!({"path": "/code.rs", "edits": [{"old_text": "\"hi\"", "new_text": "1"}, {"old_text": "nowhere", "new_text": ""}]}));
    assert!(
        absent
            .message
            .contains("edit 2 for /code.rs: old_text was not found"),
        "{absent}"
    );
    assert_eq!(
        fixture.read("/code.rs"),
        before,
        "a failed edit must not write anything"
    );

    let applied = client.ok(
        "mcp.fs.edit",
        json!({"path": "/code.rs", "edits": [
            {"old_text": "\"hi\"", "new_text": "\"hello\""},
            {"old_text": "let x = 1;", "new_text": "let y = 2;", "replace_all": true}
        ]}),
    );
    assert_eq!(
        (
            applied["applied"].as_bool(),
            applied["replacements"].as_u64()
        ),
        (Some(true), Some(3))
    );
    assert_eq!(
        String::from_utf8(fixture.read("/code.rs")).expect("utf-8"),
        "fn main() {\n    println!(\"hello\");\n    let y = 2;\n    let y = 2;\n}\n"
    );
    server.assert_results_match_schemas();
}

#[test]
fn mkdir_move_copy_delete() {
    let fixture = Fixture::new();
    fixture.write("/src/a.txt", "a");
    fixture.write("/src/nested/b.txt", "b");
    let (server, mut client) = start(&fixture);

    assert_eq!(
        client.ok("mcp.fs.mkdir", json!({"path": "/x"}))["created"],
        true
    );
    assert_eq!(
        client.err("mcp.fs.mkdir", json!({"path": "/x"})).code,
        ALREADY_EXISTS
    );
    assert_eq!(
        client.ok("mcp.fs.mkdir", json!(["/x", true]))["created"],
        false
    );
    client.ok("mcp.fs.mkdir", json!({"path": "/p/q/r", "parents": true}));
    assert!(fixture.at("/p/q/r").is_dir());
    assert_eq!(
        client.err("mcp.fs.mkdir", json!({"path": "/m/n"})).code,
        NOT_FOUND
    );

    let copied = client.ok(
        "mcp.fs.copy",
        json!({"from": "/src", "to": "/copy", "recursive": true}),
    );
    assert_eq!(
        (
            copied["files"].as_u64(),
            copied["directories"].as_u64(),
            copied["bytes"].as_u64()
        ),
        (Some(2), Some(2), Some(2))
    );
    assert_eq!(fixture.read("/copy/nested/b.txt"), b"b");
    let needs_recursive = client.err("mcp.fs.copy", json!({"from": "/src", "to": "/copy2"}));
    assert!(
        needs_recursive.message.contains("recursive: true"),
        "{needs_recursive}"
    );
    let into_itself = client.err(
        "mcp.fs.copy",
        json!({"from": "/src", "to": "/src/inner", "recursive": true}),
    );
    assert_eq!(into_itself.code, INVALID_VALUE);
    client.ok(
        "mcp.fs.copy",
        json!({"from": "/src/a.txt", "to": "/a-copy.txt"}),
    );
    assert_eq!(
        client
            .err("mcp.fs.copy", json!(["/src/a.txt", "/a-copy.txt"]))
            .code,
        ALREADY_EXISTS
    );
    fixture.write("/src/a.txt", "A2");
    client.ok(
        "mcp.fs.copy",
        json!({"from": "/src/a.txt", "to": "/a-copy.txt", "overwrite": true}),
    );
    assert_eq!(fixture.read("/a-copy.txt"), b"A2");

    client.ok(
        "mcp.fs.move",
        json!({"from": "/a-copy.txt", "to": "/x/moved.txt"}),
    );
    assert!(!fixture.at("/a-copy.txt").exists());
    assert_eq!(fixture.read("/x/moved.txt"), b"A2");
    fixture.write("/other.txt", "other");
    let taken = client.err("mcp.fs.move", json!(["/other.txt", "/x/moved.txt"]));
    assert_eq!(taken.code, ALREADY_EXISTS);
    assert!(taken.message.contains("overwrite: true"), "{taken}");
    client.ok(
        "mcp.fs.move",
        json!({"from": "/other.txt", "to": "/x/moved.txt", "overwrite": true}),
    );
    assert_eq!(fixture.read("/x/moved.txt"), b"other");
    assert_eq!(
        client
            .err("mcp.fs.move", json!({"from": "/x", "to": "/x/y"}))
            .code,
        INVALID_VALUE
    );
    assert_eq!(
        client
            .err("mcp.fs.move", json!({"from": "/ghost", "to": "/y"}))
            .code,
        NOT_FOUND
    );

    let not_empty = client.err("mcp.fs.delete", json!({"path": "/copy"}));
    assert_eq!(not_empty.code, NOT_EMPTY);
    assert!(not_empty.message.contains("recursive: true"), "{not_empty}");
    let deleted = client.ok("mcp.fs.delete", json!({"path": "/copy", "recursive": true}));
    assert_eq!(
        (deleted["files"].as_u64(), deleted["directories"].as_u64()),
        (Some(2), Some(2))
    );
    assert!(!fixture.at("/copy").exists());
    client.ok("mcp.fs.delete", json!(["/x/moved.txt"]));
    client.ok("mcp.fs.delete", json!({"path": "/p/q/r"}));
    let root = client.err("mcp.fs.delete", json!({"path": "/", "recursive": true}));
    assert_eq!(root.code, INVALID_VALUE);
    assert!(fixture.root().is_dir());
    // Deleting a symlink removes the link, not its target.
    fixture.symlink("src/a.txt", "/link");
    client.ok("mcp.fs.delete", json!({"path": "/link"}));
    assert!(fixture.at("/src/a.txt").exists());
    server.assert_results_match_schemas();
}

#[test]
fn stat_describes_files_dirs_and_links() {
    let fixture = Fixture::new();
    fixture.write("/f.txt", "12345");
    fixture.symlink("f.txt", "/link");
    fixture.symlink("../outside/secret.txt", "/out");
    let (server, mut client) = start(&fixture);
    let file = client.ok("mcp.fs.stat", json!({"path": "/f.txt"}));
    assert_eq!(
        (
            file["type"].as_str(),
            file["size"].as_u64(),
            file["nlink"].as_u64()
        ),
        (Some("file"), Some(5), Some(1))
    );
    assert_eq!(file["permissions"].as_str().map(str::len), Some(4));
    let root = client.ok("mcp.fs.stat", json!(["/"]));
    assert_eq!(
        (root["type"].as_str(), root["name"].as_str()),
        (Some("directory"), Some("/"))
    );
    let link = client.ok("mcp.fs.stat", json!({"path": "/link"}));
    assert_eq!(
        (link["type"].as_str(), link["target_type"].as_str()),
        (Some("symlink"), Some("file"))
    );
    let out = client.ok("mcp.fs.stat", json!({"path": "/out"}));
    assert_eq!(out["type"], "symlink");
    assert!(out.get("target_type").is_none(), "{out}");
    // Listings show links as links, whatever they point to.
    let listing = client.ok("mcp.fs.list", json!({}));
    let types: Vec<(&str, &str)> = listing["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|entry| {
            (
                entry["name"].as_str().expect("name"),
                entry["type"].as_str().expect("type"),
            )
        })
        .collect();
    assert_eq!(
        types,
        [("f.txt", "file"), ("link", "symlink"), ("out", "symlink")]
    );
    server.assert_results_match_schemas();
}

#[test]
fn tree_glob_and_grep() {
    let fixture = Fixture::new();
    fixture.write("/proj/src/main.rs", "fn main() {\n    // TODO: start\n}\n");
    fixture.write("/proj/src/lib.rs", "pub fn lib() {}\n// todo later\n");
    fixture.write("/proj/README.md", "TODO: write docs\n");
    fixture.write("/proj/target/debug/out.rs", "// TODO generated\n");
    fixture.write("/proj/.gitignore", "target/\n*.log\n");
    fixture.write("/proj/build.log", "TODO in a log\n");
    fixture.write("/proj/src/.ignore", "!keep.log\n");
    fixture.write("/proj/src/keep.log", "TODO kept\n");
    fixture.write("/proj/bin.dat", b"TODO\x00binary");
    fixture.write("/proj/node_modules/m/index.js", "TODO in deps\n");
    let server = Launch::new()
        .config("exclude: [node_modules]")
        .spawn(&fixture);
    let mut client = server.connect();

    let tree = client.ok(
        "mcp.fs.tree",
        json!({"path": "/proj", "depth": 2, "exclude": ["target", "*.log"]}),
    );
    let names: Vec<&str> = tree["tree"]["children"]
        .as_array()
        .expect("children")
        .iter()
        .map(|node| node["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, [".gitignore", "README.md", "bin.dat", "src"]);
    let src = &tree["tree"]["children"][3];
    assert_eq!(src["children"].as_array().map(Vec::len), Some(3), "{src}");
    let shallow = client.ok("mcp.fs.tree", json!({"path": "/proj", "depth": 1}));
    let shallow_src = shallow["tree"]["children"]
        .as_array()
        .expect("children")
        .iter()
        .find(|node| node["name"] == "src")
        .expect("src is shown");
    assert_eq!(shallow_src["truncated"], true, "{shallow}");

    let glob = client.ok("mcp.fs.glob", json!({"pattern": "*.rs", "path": "/proj"}));
    assert_eq!(
        paths(&glob, "matches"),
        [
            "/proj/src/lib.rs",
            "/proj/src/main.rs",
            "/proj/target/debug/out.rs"
        ]
    );
    let rooted = client.ok(
        "mcp.fs.glob",
        json!({"pattern": "src/*.rs", "path": "/proj"}),
    );
    assert_eq!(
        paths(&rooted, "matches"),
        ["/proj/src/lib.rs", "/proj/src/main.rs"]
    );
    let limited = client.ok("mcp.fs.glob", json!({"pattern": "*", "max_results": 2}));
    assert_eq!(
        (
            limited["matches"].as_array().map(Vec::len),
            limited["truncated"].as_bool()
        ),
        (Some(2), Some(true))
    );
    let reason = limited["truncated_reason"].as_str().expect("a reason");
    assert!(reason.starts_with("max_results (2) matches"), "{reason}");
    assert!(glob.get("truncated_reason").is_none(), "{glob}");
    // glob matches names, not contents.
    assert!(
        paths(
            &client.ok("mcp.fs.glob", json!({"pattern": "TODO"})),
            "matches"
        )
        .is_empty()
    );

    let grep = client.ok("mcp.fs.grep", json!({"pattern": "TODO", "path": "/proj"}));
    let found: Vec<(String, u64)> = grep["matches"]
        .as_array()
        .expect("matches")
        .iter()
        .map(|m| {
            (
                m["path"].as_str().expect("path").to_owned(),
                m["line"].as_u64().expect("line"),
            )
        })
        .collect();
    assert_eq!(
        found,
        [
            ("/proj/README.md".to_owned(), 1),
            ("/proj/src/keep.log".to_owned(), 1),
            ("/proj/src/main.rs".to_owned(), 2)
        ],
        "{grep}"
    );
    assert_eq!(grep["matches"][2]["text"], "    // TODO: start");
    let insensitive = client.ok("mcp.fs.grep", json!({"pattern": "todo", "path": "/proj/src", "case_insensitive": true, "include": ["*.rs"]}));
    assert_eq!(
        paths(&insensitive, "matches"),
        ["/proj/src/lib.rs", "/proj/src/main.rs"]
    );
    let everything = client.ok(
        "mcp.fs.grep",
        json!({"pattern": "TODO", "path": "/proj", "ignore_files": false}),
    );
    assert_eq!(
        everything["matches"].as_array().map(Vec::len),
        Some(5),
        "{everything}"
    );
    let literal = client.ok(
        "mcp.fs.grep",
        json!({"pattern": "fn lib() {}", "fixed_strings": true}),
    );
    assert_eq!(paths(&literal, "matches"), ["/proj/src/lib.rs"]);
    let limited = client.ok(
        "mcp.fs.grep",
        json!({"pattern": "TODO", "path": "/proj", "max_results": 1}),
    );
    assert_eq!(
        (
            limited["matches"].as_array().map(Vec::len),
            limited["truncated"].as_bool()
        ),
        (Some(1), Some(true))
    );
    let reason = limited["truncated_reason"].as_str().expect("a reason");
    assert!(reason.starts_with("max_results (1) matches"), "{reason}");
    let one_file = client.ok(
        "mcp.fs.grep",
        json!({"pattern": "later", "path": "/proj/src/lib.rs"}),
    );
    assert_eq!(one_file["matches"][0]["line"], 2);
    server.assert_results_match_schemas();
}

#[test]
fn hidden_files_and_hard_links_follow_the_config() {
    let fixture = Fixture::new();
    fixture.write("/.hidden", "h");
    fixture.write("/shown", "s");
    std::fs::hard_link(fixture.at("/shown"), fixture.at("/second-name")).expect("hard link");
    let server = Launch::new()
        .config("show_hidden: false\nallow_hard_links: true")
        .spawn(&fixture);
    let mut client = server.connect();
    let listing = client.ok("mcp.fs.list", json!({}));
    assert_eq!(paths(&listing, "entries"), ["/second-name", "/shown"]);
    // Hidden means not listed; the exact path still works.
    assert_eq!(
        client.ok("mcp.fs.read", json!({"path": "/.hidden"}))["content"],
        "h"
    );
    assert_eq!(
        client.ok("mcp.fs.read", json!({"path": "/second-name"}))["content"],
        "s"
    );
    server.assert_results_match_schemas();
}

#[test]
fn read_only_mode_refuses_every_change() {
    let fixture = Fixture::new();
    fixture.write("/f.txt", "keep");
    let server = Launch::new()
        .env("LLMBASEDOS_FS_READ_ONLY", "true")
        .spawn(&fixture);
    let mut client = server.connect();
    let before = fixture.root_snapshot();
    for (method, params) in [
        ("mcp.fs.write", json!({"path": "/f.txt", "content": "x"})),
        ("mcp.fs.write", json!({"path": "/g.txt", "content": "x"})),
        (
            "mcp.fs.edit",
            json!({"path": "/f.txt", "edits": [{"old_text": "keep", "new_text": "x"}]}),
        ),
        ("mcp.fs.mkdir", json!({"path": "/d"})),
        ("mcp.fs.move", json!({"from": "/f.txt", "to": "/g.txt"})),
        ("mcp.fs.copy", json!({"from": "/f.txt", "to": "/g.txt"})),
        ("mcp.fs.delete", json!({"path": "/f.txt"})),
    ] {
        let error = client.err(method, params);
        assert_eq!(error.code, DENIED, "{method}: {error}");
        assert!(error.message.contains("read-only"), "{error}");
    }
    assert_eq!(fixture.root_snapshot(), before);
    assert_eq!(
        client.ok("mcp.fs.read", json!({"path": "/f.txt"}))["content"],
        "keep"
    );
    let dry = client.ok("mcp.fs.edit", json!({"path": "/f.txt", "dry_run": true, "edits": [{"old_text": "keep", "new_text": "x"}]}));
    assert_eq!(dry["applied"], false);
}

#[test]
fn long_walks_report_progress() {
    let fixture = Fixture::new();
    for index in 0..600 {
        fixture.write(&format!("/many/f{index:03}.txt"), "needle\n");
    }
    let (_server, mut client) = start(&fixture);
    client.send_request(
        "mcp.fs.grep",
        json!({"pattern": "needle", "max_results": 10000, "_meta": {"progressToken": "p1"}}),
    );
    let mut progress = 0;
    loop {
        match client.receive() {
            proto::Message::Notification(notification) => {
                assert_eq!(notification.method, "notifications/progress");
                assert_eq!(
                    notification.params.as_ref().expect("params")["progressToken"],
                    "p1"
                );
                progress += 1;
            }
            proto::Message::Response(response) => {
                let result = response.outcome.expect("grep succeeds");
                assert_eq!(result["matches"].as_array().map(Vec::len), Some(600));
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(progress >= 2, "only {progress} progress notifications");
}

/// A cancelled recursive copy stops: the destination stops growing well
/// before the whole tree is copied, and no response is sent for it.
#[test]
fn a_cancelled_recursive_copy_stops() {
    const FILES: usize = 3000;
    let fixture = Fixture::new();
    for index in 0..FILES {
        fixture.write(&format!("/tree/d{}/f{index:04}.txt", index % 10), "data\n");
    }
    let (_server, mut client) = start(&fixture);
    let id = client.send_request(
        "mcp.fs.copy",
        json!({"from": "/tree", "to": "/copy", "recursive": true, "_meta": {"progressToken": 7}}),
    );
    // Wait for the first progress report, then cancel.
    match client.receive() {
        proto::Message::Notification(notification) => {
            assert_eq!(notification.method, "notifications/progress");
        }
        other => panic!("expected progress before the copy ends, got {other:?}"),
    }
    client.notify("notifications/cancelled", json!({"requestId": id}));
    let count = || walk_count(&fixture.at("/copy"));
    std::thread::sleep(std::time::Duration::from_millis(500));
    let settled = count();
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_eq!(count(), settled, "the copy went on after it was cancelled");
    assert!(
        settled < FILES,
        "the whole tree was copied ({settled} files) before the cancel took effect"
    );
    // The connection goes on; the cancelled request gets no answer.
    let listing = client.ok("mcp.fs.list", json!({"path": "/"}));
    assert_eq!(paths(&listing, "entries"), ["/copy", "/tree"]);
}

fn walk_count(path: &std::path::Path) -> usize {
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|entry| {
            if entry.file_type().is_ok_and(|kind| kind.is_dir()) {
                walk_count(&entry.path())
            } else {
                1
            }
        })
        .sum()
}

#[test]
fn files_are_mcp_resources() {
    let fixture = Fixture::new();
    fixture.write("/notes/a b.md", "# title\n");
    fixture.write("/pic.png", [0x89_u8, b'P', b'N', b'G', 0, 1, 2]);
    fixture.write("/1/2/3/4/too-deep.txt", "deep");
    let (server, mut client) = start(&fixture);
    let listing = client.ok("mcp.fs.resources_list", json!({}));
    let uris: Vec<&str> = listing["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .map(|resource| resource["uri"].as_str().expect("uri"))
        .collect();
    assert_eq!(uris, ["file:///notes/a%20b.md", "file:///pic.png"]);
    assert_eq!(listing["resources"][0]["mimeType"], "text/markdown");
    assert_eq!(listing["resources"][1]["size"], 7);

    let text = client.ok(
        "mcp.fs.resource_read",
        json!({"uri": "file:///notes/a%20b.md"}),
    );
    assert_eq!(
        text,
        json!({"contents": [{"uri": "file:///notes/a%20b.md", "mimeType": "text/markdown", "text": "# title\n"}]})
    );
    let blob = client.ok("mcp.fs.resource_read", json!({"uri": "file:///pic.png"}));
    assert_eq!(blob["contents"][0]["blob"], "iVBORwABAg==");
    // Deeper files are reached through the template.
    let deep = client.ok(
        "mcp.fs.resource_read",
        json!({"uri": "file:///1/2/3/4/too-deep.txt"}),
    );
    assert_eq!(deep["contents"][0]["text"], "deep");
    let missing = client.err("mcp.fs.resource_read", json!({"uri": "file:///nope"}));
    assert_eq!(missing.code, NOT_FOUND);
    let foreign = client.err(
        "mcp.fs.resource_read",
        json!({"uri": "https://example.invalid/x"}),
    );
    assert_eq!(foreign.code, INVALID_VALUE);
    assert!(
        foreign.message.contains("file:///notes/todo.md"),
        "{foreign}"
    );

    for index in 0..450 {
        fixture.write(&format!("/many/f{index:03}"), "x");
    }
    let (mut pages, mut seen) = (0, 0);
    let mut cursor: Option<String> = None;
    loop {
        let params = cursor
            .as_ref()
            .map_or_else(|| json!({}), |cursor| json!({"cursor": cursor}));
        let page = client.ok("mcp.fs.resources_list", params);
        seen += page["resources"].as_array().map_or(0, Vec::len);
        pages += 1;
        match page["nextCursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!((pages, seen), (3, 452));
    server.assert_results_match_schemas();
}

#[test]
fn images_and_audio_come_back_as_media_content() {
    let fixture = Fixture::new();
    let png = [0x89_u8, b'P', b'N', b'G', 13, 10, 26, 10, 0, 0];
    fixture.write("/pic.png", png);
    fixture.write("/sound.wav", [b'R', b'I', b'F', b'F', 0, 0, 0, 0]);
    fixture.write("/icon.svg", "<svg/>");
    let (server, mut client) = start(&fixture);
    // Content blocks only for an MCP host (the gateway's tools/call asks).
    let blocks = json!({ proto::mcp::meta_key::CONTENT_BLOCKS: true });
    let classic = client.ok("mcp.fs.read", json!({"path": "/pic.png"}));
    assert!(
        classic.get("_content").is_none() && classic["content"].is_string(),
        "{classic}"
    );
    let image = client.ok("mcp.fs.read", json!({"path": "/pic.png", "_meta": blocks}));
    assert!(image.get("content").is_none(), "{image}");
    assert_eq!(image["_content"][0]["type"], "image");
    assert_eq!(image["_content"][0]["mimeType"], "image/png");
    let data = base64::engine::general_purpose::STANDARD
        .decode(image["_content"][0]["data"].as_str().expect("data"))
        .expect("base64");
    assert_eq!(data, png);
    let audio = client.ok(
        "mcp.fs.read",
        json!({"path": "/sound.wav", "_meta": blocks}),
    );
    assert_eq!(audio["_content"][0]["type"], "audio");
    // Asked for base64, a client gets base64 text; a text image stays text.
    let explicit = client.ok(
        "mcp.fs.read",
        json!({"path": "/pic.png", "encoding": "base64", "_meta": blocks}),
    );
    assert!(
        explicit.get("_content").is_none() && explicit["content"].is_string(),
        "{explicit}"
    );
    let svg = client.ok("mcp.fs.read", json!({"path": "/icon.svg"}));
    assert_eq!(
        (svg["content"].as_str(), svg["mime_type"].as_str()),
        (Some("<svg/>"), Some("image/svg+xml"))
    );
    server.assert_results_match_schemas();
}

#[test]
fn grep_lists_the_files_it_could_not_open_with_why_and_counts_them() {
    let fixture = Fixture::new();
    fixture.write("/recipes/carbonara.txt", "spaghetti carbonara\n");
    fixture.write("/recipes/plain.txt", "carbonara again\n");
    std::fs::hard_link(
        fixture.at("/recipes/carbonara.txt"),
        fixture.at("/recipes/second-name.txt"),
    )
    .expect("hard link");
    let (server, mut client) = start(&fixture);
    let result = client.ok("mcp.fs.grep", json!({"pattern": "carbonara"}));
    assert_eq!(
        paths(&result, "matches"),
        ["/recipes/plain.txt"],
        "{result}"
    );
    assert_eq!(result["skipped_count"], 2, "{result}");
    let mut skipped = paths(&result, "skipped");
    skipped.sort();
    assert_eq!(
        skipped,
        ["/recipes/carbonara.txt", "/recipes/second-name.txt"],
        "{result}"
    );
    // The reason says how each kind of install allows such files.
    let reason = result["skipped"][0]["reason"].as_str().expect("reason");
    for needle in [
        "more than one hard link",
        "allow_hard_links: true",
        "llmbasedos up --fs-config FILE",
        "/etc/llmbasedos/fs.yaml",
    ] {
        assert!(reason.contains(needle), "{needle:?} not in {reason:?}");
    }
    // The same policy read directly gives the same hint.
    let read = client.err("mcp.fs.read", json!({"path": "/recipes/carbonara.txt"}));
    assert_eq!(read.code, DENIED);
    assert!(
        read.message.contains("llmbasedos up --fs-config"),
        "{}",
        read.message
    );
    server.assert_results_match_schemas();
}

#[test]
fn lists_of_globs_have_one_shape_in_every_tool() {
    let fixture = Fixture::new();
    fixture.write("/src/main.rs", "// TODO rust\n");
    fixture.write("/Cargo.toml", "# TODO toml\n");
    fixture.write("/notes.md", "TODO markdown\n");
    let (server, mut client) = start(&fixture);
    let result = client.ok(
        "mcp.fs.grep",
        json!({"pattern": "TODO", "include": ["*.rs", "*.toml"]}),
    );
    let mut found = paths(&result, "matches");
    found.sort();
    assert_eq!(found, ["/Cargo.toml", "/src/main.rs"], "{result}");
    let caps = printed_caps();
    let mut shapes = Vec::new();
    for method in caps["methods"].as_array().expect("methods") {
        for (name, schema) in method["params_schema"]["properties"]
            .as_object()
            .expect("properties")
        {
            if name == "include" || name == "exclude" {
                shapes.push((
                    method["name"].as_str().expect("name").to_owned(),
                    schema["type"].clone(),
                    schema["items"]["type"].clone(),
                ));
            }
        }
    }
    assert!(shapes.len() >= 2, "{shapes:?}");
    for (method, kind, items) in &shapes {
        assert_eq!(
            (kind, items),
            (&json!("array"), &json!("string")),
            "{method}: {shapes:?}"
        );
    }
    server.assert_results_match_schemas();
}

#[test]
fn copy_is_annotated_destructive_since_overwrite_replaces_files() {
    let caps = printed_caps();
    let copy = caps["methods"]
        .as_array()
        .expect("methods")
        .iter()
        .find(|method| method["name"] == "mcp.fs.copy")
        .expect("mcp.fs.copy");
    assert_eq!(copy["annotations"]["destructiveHint"], true, "{copy}");
    assert!(copy["params_schema"]["properties"]["overwrite"].is_object());
}

/// The caps the binary prints (what `llmbasedos up` publishes).
fn printed_caps() -> Value {
    let output = std::process::Command::new(crate::support::BINARY)
        .arg("--print-caps")
        .output()
        .expect("run llmbasedos-fs --print-caps");
    assert!(output.status.success(), "{output:?}");
    serde_json::from_slice(&output.stdout).expect("the printed caps are JSON")
}
