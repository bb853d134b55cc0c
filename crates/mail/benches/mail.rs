//! The mail server beside `mcp-email-server` (PyPI), in one run, against one
//! dovecot: both servers read the same maildir through the same IMAPS
//! listener.
//!
//! `cargo bench -p mail --bench mail` makes, in a temp dir, a self-signed
//! certificate, a maildir of 10,000 messages (every 100th has "Quarterly"
//! in its subject) and a folder `Big` holding one 5 MiB message; starts
//! Debian's dovecot on loopback (`dovecot -c CONF -F`, passwd-file auth),
//! `llmbasedos-mail` on its backend socket and `mcp-email-server stdio`
//! (its own venv, `target/mail-bench-venv`, made by
//! ./scripts/install-test-deps with the version pinned there; configured
//! with its documented `MCP_EMAIL_SERVER_*` variables, trusting the
//! certificate through `SSL_CERT_FILE`), and prints, for each server:
//! - a `listMessages` page of 50, newest first (theirs:
//!   `list_emails_metadata` page_size 50, order desc): p50/p99;
//! - a search by subject on the server (IMAP SEARCH) for "Quarterly"
//!   (theirs: the `subject` filter): p50/p99;
//! - reading the 5 MiB message, a body window of 20,000 characters
//!   (theirs: `get_emails_content` with max_body_length 20000): p50/p99;
//! - the RSS of each server process after each step;
//!
//! with the ratios theirs/ours at p50 beside the targets (≥ 5× faster, RSS
//! under 30 MiB). Both answer one request at a time, alternately per step,
//! so they meet the same dovecot caches.
//!
//! Beside them, dovecot's own share, in the same run: a minimal raw IMAP
//! client (plain TCP on loopback, no parsing beyond finding the tagged
//! reply) times the commands a step needs at the least — the `UID SEARCH`
//! and the `UID FETCH` of the page's 50 summaries — and the table prints
//! the ratio no client of that dovecot can beat: theirs over dovecot's
//! time alone.
//!
//! Without `--bench` (as under `cargo test --all-targets`) it runs a smoke
//! version on a tiny mailbox (200 messages and a 1 MiB message, one round)
//! that checks every answer's content and prints the same table; the
//! figures of a smoke run mean nothing. MAIL_BENCH_MESSAGES,
//! MAIL_BENCH_BIG_MIB and MAIL_BENCH_ROUNDS change the sizes. A missing
//! dovecot, openssl or venv fails the run with the command that provides
//! it. Every child is killed by pid when the run ends and dies with the
//! benchmark (`PR_SET_PDEATHSIG`).

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use bench_support::bench::{StdioPeer, answer_id, free_port};
use bench_support::measure::{Figures, env_number, micros, sequential, smoke};
use bench_support::process::{ChildProcess, Memory};
use bench_support::server::ServerProcess;
use bench_support::wire::Client;
use serde_json::{Value, json};

const USER: &str = "alice";
const PASSWORD: &str = "bench-Pa55-71c9";
const ACCOUNT: &str = "bench";
const PAGE: usize = 50;
const WINDOW: usize = 20_000;
const PEER_VERSION: &str = "1.13.3";
const RSS_TARGET_KIB: u64 = 30 * 1024;
const SPEED_TARGET: f64 = 5.0;

fn main() {
    let smoke = smoke();
    let messages = env_number("MAIL_BENCH_MESSAGES", if smoke { 200 } else { 10_000 }).max(200);
    let big_mib = env_number("MAIL_BENCH_BIG_MIB", if smoke { 1 } else { 5 }).max(1);
    let rounds = env_number("MAIL_BENCH_ROUNDS", if smoke { 1 } else { 10 }).max(1);
    let peer_python = workspace_root().join("target/mail-bench-venv/bin/mcp-email-server");
    assert!(
        peer_python.exists(),
        "{} is missing: run ./scripts/install-test-deps (it makes target/mail-bench-venv with \
         mcp-email-server=={PEER_VERSION})",
        peer_python.display()
    );

    let world = World::new(messages, big_mib);
    let mut ours = Ours::start(&world);
    let mut theirs = Theirs::start(&world, &peer_python);
    println!(
        "mail bench{}: {messages} messages in INBOX, one {big_mib} MiB message in Big, {rounds} \
         round(s) a step; peer {} {} over stdio",
        if smoke {
            " (smoke: figures mean nothing)"
        } else {
            ""
        },
        theirs.peer.server_name,
        theirs.peer.server_version
    );

    println!(
        "llmbasedos-mail before the first call: {}",
        breakdown(ours.server.pid())
    );
    // Each step's first call, outside the measurements, is checked in full.
    ours.check_page(messages);
    theirs.check_page(messages);
    let quarterly = (0..messages).filter(|index| index % 100 == 7).count();
    ours.check_search(quarterly);
    theirs.check_search(quarterly);
    ours.check_big(&world);
    theirs.check_big(&world);

    let mut raw = RawImap::connect(world.imap_port);
    let mut table = Vec::new();
    let warmup = usize::from(!smoke);
    let page_ours = sequential(warmup, rounds, || ours.page());
    let page_theirs = sequential(warmup, rounds, || theirs.page());
    let floor = raw.floor(warmup, rounds, "ALL", "INBOX", messages);
    table.push(Row::new(
        "listMessages page of 50",
        page_ours,
        page_theirs,
        &ours,
        &theirs,
        Some(floor),
    ));
    let search_ours = sequential(warmup, rounds, || ours.search());
    let search_theirs = sequential(warmup, rounds, || theirs.search());
    let floor = raw.floor(warmup, rounds, "SUBJECT \"Quarterly\"", "INBOX", messages);
    table.push(Row::new(
        "search subject (50 max)",
        search_ours,
        search_theirs,
        &ours,
        &theirs,
        Some(floor),
    ));
    let big_rounds = rounds.div_ceil(3);
    let big_ours = sequential(warmup, big_rounds, || ours.big());
    let big_theirs = sequential(warmup, big_rounds, || theirs.big());
    table.push(Row::new(
        &format!("read the {big_mib} MiB message"),
        big_ours,
        big_theirs,
        &ours,
        &theirs,
        None,
    ));
    print_table(&table);
    let peak = ours.server.memory().peak_kib;
    println!(
        "llmbasedos-mail peak RSS {} KiB ({}; target < {} KiB); now {}",
        peak,
        if peak < RSS_TARGET_KIB {
            "met"
        } else {
            "NOT met"
        },
        RSS_TARGET_KIB,
        breakdown(ours.server.pid())
    );
}

/// Where a process's resident memory is: anonymous (heap, stacks) or file
/// pages (the binary and libraries), and its thread count.
fn breakdown(pid: i32) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    ["RssAnon:", "RssFile:", "Threads:"]
        .iter()
        .filter_map(|name| status.lines().find(|line| line.starts_with(name)))
        .map(|line| line.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The certificate, the maildir and dovecot, in a temp dir dovecot's own
/// users can reach.
struct World {
    dir: tempfile::TempDir,
    cert: PathBuf,
    imaps_port: u16,
    /// Plain IMAP on loopback, for the raw client only.
    imap_port: u16,
    big_marker: String,
    big_bytes: usize,
    _dovecot: ChildProcess,
}

impl World {
    fn new(messages: usize, big_mib: usize) -> World {
        // As root, dovecot's auth and mail processes run as other users:
        // the directory must be reachable by them, not private to this run.
        let dir = tempfile::Builder::new()
            .prefix("llmbasedos-mail-bench-")
            .tempdir_in("/tmp")
            .expect("tempdir");
        set_mode(dir.path(), 0o755);
        let root = dir.path().to_path_buf();
        let cert = root.join("cert.pem");
        let key = root.join("key.pem");
        make_certificate(&cert, &key);
        let maildir = root.join("home").join(USER).join("Maildir");
        let base = 1_767_225_600; // 2026-01-01T00:00:00Z
        write_maildir(
            &maildir,
            (0..messages).map(|index| {
                let subject = if index % 100 == 7 {
                    format!("Quarterly report {index}")
                } else {
                    format!("Note {index}")
                };
                let stamp = base + 60 * index as i64;
                (
                    plain(index, &subject, stamp),
                    stamp,
                    if index % 3 == 0 { "" } else { "S" },
                )
            }),
        );
        let big_marker = "BIGMARK-5f0c".to_owned();
        let big = big_message(&big_marker, big_mib);
        let big_bytes = big.len();
        write_maildir(&maildir.join(".Big"), std::iter::once((big, base, "")));
        let (internal, login, uid, gid) = users();
        if unsafe { libc::geteuid() } == 0 {
            let status = Command::new("chown")
                .arg("-R")
                .arg(format!("{uid}:{gid}"))
                .arg(root.join("home"))
                .status()
                .expect("chown");
            assert!(status.success(), "chown of the maildir failed");
        }
        std::fs::write(
            root.join("passwd"),
            format!("{USER}:{{PLAIN}}{PASSWORD}::::::\n"),
        )
        .expect("passwd");
        let imaps_port = free_port();
        let imap_port = free_port();
        let config = root.join("dovecot.conf");
        std::fs::write(
            &config,
            dovecot_config(
                &root, &cert, &key, imaps_port, imap_port, &internal, &login, uid, gid,
            ),
        )
        .expect("dovecot.conf");
        let dovecot = which("dovecot").unwrap_or_else(|| {
            panic!("dovecot is missing: run ./scripts/install-test-deps (apt: dovecot-imapd)")
        });
        let mut command = Command::new(dovecot);
        command
            .arg("-c")
            .arg(&config)
            .arg("-F")
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        let mut process = ChildProcess::spawn("dovecot", &mut command, root.join("dovecot.out"));
        process.wait_until("its IMAPS port accepts connections", || {
            TcpStream::connect(("127.0.0.1", imaps_port)).is_ok()
        });
        World {
            dir,
            cert,
            imaps_port,
            imap_port,
            big_marker,
            big_bytes,
            _dovecot: process,
        }
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }
}

/// llmbasedos-mail on its backend socket.
struct Ours {
    server: ServerProcess,
    client: Client,
}

impl Ours {
    fn start(world: &World) -> Ours {
        let root = world.root();
        let accounts = root.join("mail_accounts.yaml");
        std::fs::write(
            &accounts,
            format!(
                "accounts:\n  {ACCOUNT}:\n    email: {USER}@example.org\n    username: {USER}\n    \
                 ca_file: {}\n    imap: {{host: 127.0.0.1, port: {}, security: tls}}\n",
                world.cert.display(),
                world.imaps_port
            ),
        )
        .expect("accounts");
        let secrets = root.join("secrets");
        std::fs::create_dir(&secrets).expect("secrets dir");
        set_mode(&secrets, 0o700);
        let secret = secrets.join(format!("{ACCOUNT}.password"));
        std::fs::write(&secret, format!("{PASSWORD}\n")).expect("secret");
        set_mode(&secret, 0o600);
        let socket = root.join("mail.sock");
        let mut server = ServerProcess::spawn(
            Command::new(env!("CARGO_BIN_EXE_llmbasedos-mail"))
                .arg("--socket")
                .arg(&socket)
                .args(["--idle-timeout", "0", "--accounts"])
                .arg(&accounts)
                .arg("--secrets-dir")
                .arg(&secrets),
            socket.clone(),
            root.join("mail.log"),
        );
        server.wait_until_serving();
        let client = Client::connect(&socket);
        Ours { server, client }
    }

    fn list(&mut self, search: Option<Value>) -> Value {
        let mut params = json!({"account": ACCOUNT, "folder": "INBOX", "limit": PAGE});
        if let Some(search) = search {
            params["search"] = search;
        }
        self.client.ok("mcp.mail.listMessages", params)
    }

    fn page(&mut self) {
        let page = self.list(None);
        assert_eq!(items(&page["messages"]).len(), PAGE, "a short page: {page}");
    }

    fn check_page(&mut self, messages: usize) {
        let page = self.list(None);
        let subjects = subjects(&page["messages"], "subject");
        let expected: Vec<String> = (messages - PAGE..messages).rev().map(subject_of).collect();
        assert_eq!(
            subjects, expected,
            "listMessages: not the newest 50, newest first"
        );
        assert_eq!(page["total"], messages, "listMessages total");
    }

    fn search(&mut self) {
        let found = self.list(Some(json!({"subject": "Quarterly"})));
        assert!(
            !items(&found["messages"]).is_empty(),
            "nothing found: {found}"
        );
    }

    fn check_search(&mut self, quarterly: usize) {
        let found = self.list(Some(json!({"subject": "Quarterly"})));
        let subjects = subjects(&found["messages"], "subject");
        assert_eq!(subjects.len(), quarterly.min(PAGE), "search: {found}");
        assert!(
            subjects
                .iter()
                .all(|subject| subject.starts_with("Quarterly report "))
        );
        assert_eq!(found["total"], quarterly, "search total");
    }

    fn read_big(&mut self) -> Value {
        self.client.ok(
            "mcp.mail.getMessage",
            json!({"account": ACCOUNT, "folder": "Big", "uid": 1, "max_body_chars": WINDOW}),
        )
    }

    fn big(&mut self) {
        let message = self.read_big();
        assert!(
            message["body"]["has_more"] == true,
            "a whole body: {}",
            message["subject"]
        );
    }

    fn check_big(&mut self, world: &World) {
        let message = self.read_big();
        let text = message["body"]["text"].as_str().expect("a body text");
        assert!(
            text.starts_with(&world.big_marker),
            "the big body: {}",
            &text[..text.len().min(80)]
        );
        assert_eq!(text.chars().count(), WINDOW, "the body window");
        assert!(message["body"]["has_more"] == true);
        assert!(world.big_bytes > 1024 * 1024);
    }

    fn memory(&self) -> Memory {
        self.server.memory()
    }
}

/// mcp-email-server over stdio, as a desktop host starts it.
struct Theirs {
    peer: StdioPeer,
    pid: u32,
    page_request: String,
    search_request: String,
    big_request: String,
}

impl Theirs {
    fn start(world: &World, program: &Path) -> Theirs {
        let root = world.root();
        let home = root.join("peer-home");
        std::fs::create_dir_all(&home).expect("peer home");
        let mut command = Command::new(program);
        command
            .arg("stdio")
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &home)
            .env("XDG_CONFIG_HOME", home.join(".config"))
            .env("XDG_DATA_HOME", home.join(".local/share"))
            .env("XDG_STATE_HOME", home.join(".local/state"))
            .env("XDG_CACHE_HOME", home.join(".cache"))
            .env("MCP_EMAIL_SERVER_CONFIG_PATH", home.join("config.toml"))
            .env("SSL_CERT_FILE", &world.cert)
            .env("MCP_EMAIL_SERVER_ACCOUNT_NAME", ACCOUNT)
            .env(
                "MCP_EMAIL_SERVER_EMAIL_ADDRESS",
                format!("{USER}@example.org"),
            )
            .env("MCP_EMAIL_SERVER_USER_NAME", USER)
            .env("MCP_EMAIL_SERVER_PASSWORD", PASSWORD)
            .env("MCP_EMAIL_SERVER_IMAP_HOST", "127.0.0.1")
            .env("MCP_EMAIL_SERVER_IMAP_PORT", world.imaps_port.to_string())
            .env("MCP_EMAIL_SERVER_IMAP_SSL", "true")
            .env("MCP_EMAIL_SERVER_IMAP_VERIFY_SSL", "true");
        let peer = StdioPeer::start("mcp-email-server", &mut command, root.join("peer.log"));
        let pid = child_pid("mcp-email-server").expect("the peer's pid among this run's children");
        Theirs {
            peer,
            pid,
            page_request: tool_call(
                "list_emails_metadata",
                json!({"account_name": ACCOUNT, "mailbox": "INBOX", "page": 1, "page_size": PAGE, "order": "desc"}),
            ),
            search_request: tool_call(
                "list_emails_metadata",
                json!({"account_name": ACCOUNT, "mailbox": "INBOX", "page": 1, "page_size": PAGE, "order": "desc", "subject": "Quarterly"}),
            ),
            big_request: tool_call(
                "get_emails_content",
                json!({"account_name": ACCOUNT, "mailbox": "Big", "email_ids": ["1"], "max_body_length": WINDOW}),
            ),
        }
    }

    /// One tools/call, its result parsed (an error result fails the run).
    fn call(&mut self, request: &str) -> Value {
        let id = self.peer.take_id();
        self.peer
            .send(&request.replacen("\"id\":0", &format!("\"id\":{id}"), 1));
        for _ in 0..64 {
            let line = self.peer.read_line();
            if answer_id(line) == Some(id) {
                let answer: Value = serde_json::from_slice(line).expect("a JSON answer");
                let result = &answer["result"];
                assert!(
                    answer.get("error").is_none() && result["isError"] != true,
                    "mcp-email-server failed: {}",
                    bench_support::wire::shorten(&answer)
                );
                return result.get("structuredContent").cloned().unwrap_or_else(|| {
                    let text = result["content"][0]["text"].as_str().unwrap_or("null");
                    serde_json::from_str(text).unwrap_or(Value::String(text.to_owned()))
                });
            }
        }
        panic!("no answer among mcp-email-server's messages");
    }

    fn page(&mut self) {
        let request = std::mem::take(&mut self.page_request);
        let page = self.call(&request);
        self.page_request = request;
        assert_eq!(
            items(&page["emails"]).len(),
            PAGE,
            "a short page: {}",
            shorten(&page)
        );
    }

    fn check_page(&mut self, messages: usize) {
        let request = self.page_request.clone();
        let page = self.call(&request);
        let subjects = subjects(&page["emails"], "subject");
        let expected: Vec<String> = (messages - PAGE..messages).rev().map(subject_of).collect();
        assert_eq!(
            subjects,
            expected,
            "theirs: not the newest 50, newest first: {}",
            shorten(&page)
        );
    }

    fn search(&mut self) {
        let request = std::mem::take(&mut self.search_request);
        let found = self.call(&request);
        self.search_request = request;
        assert!(
            !items(&found["emails"]).is_empty(),
            "nothing found: {}",
            shorten(&found)
        );
    }

    fn check_search(&mut self, quarterly: usize) {
        let request = self.search_request.clone();
        let found = self.call(&request);
        let subjects = subjects(&found["emails"], "subject");
        assert_eq!(
            subjects.len(),
            quarterly.min(PAGE),
            "theirs search: {}",
            shorten(&found)
        );
        assert!(
            subjects
                .iter()
                .all(|subject| subject.starts_with("Quarterly report "))
        );
    }

    fn big(&mut self) {
        let request = std::mem::take(&mut self.big_request);
        let content = self.call(&request);
        self.big_request = request;
        assert!(
            !items(&content["emails"]).is_empty(),
            "no message: {}",
            shorten(&content)
        );
    }

    fn check_big(&mut self, world: &World) {
        let request = self.big_request.clone();
        let content = self.call(&request);
        let body = content["emails"][0]["body"]
            .as_str()
            .unwrap_or_else(|| panic!("theirs: no body in {}", shorten(&content)));
        assert!(
            body.starts_with(&world.big_marker),
            "theirs: the big body: {}",
            &body[..body.len().min(80)]
        );
    }

    fn memory(&self) -> Memory {
        Memory::of(self.pid)
    }
}

struct Row {
    what: String,
    ours: Figures,
    theirs: Figures,
    ours_rss: u64,
    theirs_rss: u64,
    /// Dovecot's time alone for the step's commands.
    floor: Option<Floor>,
}

impl Row {
    fn new(
        what: &str,
        ours: Figures,
        theirs: Figures,
        a: &Ours,
        b: &Theirs,
        floor: Option<Floor>,
    ) -> Row {
        Row {
            what: what.to_owned(),
            ours,
            theirs,
            ours_rss: a.memory().rss_kib,
            theirs_rss: b.memory().rss_kib,
            floor,
        }
    }
}

/// Dovecot's times alone for a step (see [`RawImap::floor`]).
struct Floor {
    search: Figures,
    fetch: Figures,
    after_noop: Figures,
    after_examine: Figures,
}

/// A minimal IMAP client on plain loopback TCP: one command at a time,
/// read until its tagged reply, nothing parsed. What dovecot itself takes.
struct RawImap {
    stream: std::io::BufReader<TcpStream>,
    tag: u32,
}

impl RawImap {
    fn connect(port: u16) -> RawImap {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("dovecot's plain port");
        stream.set_nodelay(true).expect("nodelay");
        stream
            .set_read_timeout(Some(bench_support::PATIENCE))
            .expect("timeout");
        let mut raw = RawImap {
            stream: std::io::BufReader::with_capacity(256 * 1024, stream),
            tag: 0,
        };
        let mut greeting = Vec::new();
        std::io::BufRead::read_until(&mut raw.stream, b'\n', &mut greeting).expect("greeting");
        assert!(greeting.starts_with(b"* OK"), "dovecot's greeting");
        raw.command(&format!("LOGIN {USER} \"{PASSWORD}\""));
        raw
    }

    /// One command; the bytes of its answer (untagged lines and literals).
    fn command(&mut self, command: &str) -> Vec<u8> {
        use std::io::{BufRead, Read};
        self.tag += 1;
        let tag = format!("r{}", self.tag);
        self.stream
            .get_mut()
            .write_all(format!("{tag} {command}\r\n").as_bytes())
            .expect("write");
        let mut answer = Vec::new();
        loop {
            let start = answer.len();
            let read = self.stream.read_until(b'\n', &mut answer).expect("read");
            assert!(read > 0, "dovecot closed the raw connection");
            let line = &answer[start..];
            if line.starts_with(tag.as_bytes()) && line.get(tag.len()) == Some(&b' ') {
                assert!(
                    line[tag.len() + 1..].starts_with(b"OK"),
                    "raw {command}: {}",
                    String::from_utf8_lossy(line)
                );
                return answer;
            }
            // A literal `{n}` ends the line: its n bytes follow.
            let trimmed = line.strip_suffix(b"\r\n").unwrap_or(line);
            if trimmed.ends_with(b"}")
                && let Some(open) = trimmed.iter().rposition(|&byte| byte == b'{')
            {
                let length: usize = std::str::from_utf8(&trimmed[open + 1..trimmed.len() - 1])
                    .ok()
                    .and_then(|digits| digits.parse().ok())
                    .unwrap_or(0);
                let at = answer.len();
                answer.resize(at + length, 0);
                self.stream.read_exact(&mut answer[at..]).expect("literal");
            }
        }
    }

    /// The uids `UID SEARCH criteria` answers, highest first.
    fn search(&mut self, criteria: &str) -> Vec<u32> {
        let answer = self.command(&format!("UID SEARCH {criteria}"));
        let text = String::from_utf8_lossy(&answer);
        let mut uids: Vec<u32> = text
            .lines()
            .filter_map(|line| line.strip_prefix("* SEARCH"))
            .flat_map(|rest| rest.split_whitespace().filter_map(|uid| uid.parse().ok()))
            .collect();
        uids.sort_unstable_by(|a, b| b.cmp(a));
        uids
    }

    /// Dovecot's time for a listMessages step at the least: the search,
    /// then the fetch of the newest 50 summaries (the items ours asks);
    /// and the search again after the command a client sends first to see
    /// the folder's latest state: NOOP in the open folder (as ours does) or
    /// a fresh EXAMINE (as a client that opens the folder for every call).
    fn floor(
        &mut self,
        warmup: usize,
        rounds: usize,
        criteria: &str,
        folder: &str,
        messages: usize,
    ) -> Floor {
        self.command(&format!("EXAMINE {folder}"));
        let uids = self.search(criteria);
        assert!(!uids.is_empty() && uids.len() <= messages);
        let set = uids
            .iter()
            .take(PAGE)
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let search = sequential(warmup, rounds, || {
            self.search(criteria);
        });
        let fetch = format!(
            "UID FETCH {set} (UID FLAGS INTERNALDATE RFC822.SIZE BODYSTRUCTURE BODY.PEEK[HEADER.FIELDS (DATE FROM TO CC SUBJECT MESSAGE-ID MIME-VERSION CONTENT-TYPE CONTENT-TRANSFER-ENCODING)] BODY.PEEK[TEXT]<0.2048>)"
        );
        let fetched = sequential(warmup, rounds, || {
            self.command(&fetch);
        });
        let after_noop = sequential(warmup, rounds, || {
            self.command("NOOP");
            self.search(criteria);
        });
        let examine = format!("EXAMINE {folder}");
        let after_examine = sequential(warmup, rounds, || {
            self.command(&examine);
            self.search(criteria);
        });
        Floor {
            search,
            fetch: fetched,
            after_noop,
            after_examine,
        }
    }
}

fn print_table(rows: &[Row]) {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<26} {:>11} {:>11} {:>11} {:>11} {:>7} {:>10} {:>10}",
        "step", "ours p50", "ours p99", "theirs p50", "theirs p99", "×p50", "ours RSS", "their RSS"
    );
    for row in rows {
        let ratio = micros(row.theirs.p50) / micros(row.ours.p50);
        let _ = writeln!(
            out,
            "{:<26} {:>9.0}µs {:>9.0}µs {:>9.0}µs {:>9.0}µs {:>6.1}× {:>7}KiB {:>7}KiB  {}; {}",
            row.what,
            micros(row.ours.p50),
            micros(row.ours.p99),
            micros(row.theirs.p50),
            micros(row.theirs.p99),
            ratio,
            row.ours_rss,
            row.theirs_rss,
            if ratio >= SPEED_TARGET {
                "≥5× met"
            } else {
                "≥5× NOT met"
            },
            if row.ours_rss < RSS_TARGET_KIB {
                "RSS < 30 MiB met"
            } else {
                "RSS < 30 MiB NOT met"
            },
        );
    }
    for row in rows {
        let Some(raw) = &row.floor else {
            continue;
        };
        let floor = micros(raw.search.p50) + micros(raw.fetch.p50);
        let _ = writeln!(
            out,
            "  {}: dovecot alone (raw IMAP, plain loopback) UID SEARCH p50 {:.0}µs + UID FETCH of the page p50 {:.0}µs = {:.0}µs; ours is {:.1}× that; the most any client can beat theirs by: {:.1}×; NOOP + UID SEARCH in the open folder p50 {:.0}µs, a fresh EXAMINE + UID SEARCH p50 {:.0}µs",
            row.what,
            micros(raw.search.p50),
            micros(raw.fetch.p50),
            floor,
            micros(row.ours.p50) / floor,
            micros(row.theirs.p50) / floor,
            micros(raw.after_noop.p50),
            micros(raw.after_examine.p50),
        );
    }
    print!("{out}");
    let _ = std::io::stdout().flush();
}

fn tool_call(name: &str, arguments: Value) -> String {
    json!({"jsonrpc": "2.0", "id": 0, "method": "tools/call", "params": {"name": name, "arguments": arguments}})
        .to_string()
}

fn items(value: &Value) -> &[Value] {
    value.as_array().map_or(&[], Vec::as_slice)
}

fn subjects(list: &Value, field: &str) -> Vec<String> {
    items(list)
        .iter()
        .map(|item| item[field].as_str().unwrap_or("?").to_owned())
        .collect()
}

fn subject_of(index: usize) -> String {
    if index % 100 == 7 {
        format!("Quarterly report {index}")
    } else {
        format!("Note {index}")
    }
}

fn shorten(value: &Value) -> String {
    bench_support::wire::shorten(value)
}

/// A small text message, dated `stamp` (seconds since the epoch).
fn plain(index: usize, subject: &str, stamp: i64) -> Vec<u8> {
    let date = chrono::DateTime::from_timestamp(stamp, 0)
        .expect("a date")
        .to_rfc2822();
    let mut body = String::new();
    for line in 0..12 {
        let _ = write!(
            body,
            "Hello Alice, this is line {line} of message {index}, about nothing much.\r\n"
        );
    }
    format!(
        "From: Sender {n} <sender{n}@example.org>\r\nTo: Alice <alice@example.org>\r\n\
         Subject: {subject}\r\nDate: {date}\r\nMessage-ID: <bench{index}@example.org>\r\n\
         MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}",
        n = index % 20
    )
    .into_bytes()
}

/// One message whose text body is `mib` MiB, starting with `marker`.
fn big_message(marker: &str, mib: usize) -> Vec<u8> {
    let mut message = String::from(
        "From: Eve <eve@example.org>\r\nTo: Alice <alice@example.org>\r\nSubject: Big\r\n\
         Date: Thu, 01 Jan 2026 00:00:00 +0000\r\nMessage-ID: <big@example.org>\r\n\
         MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n",
    );
    message.push_str(marker);
    let mut line = 0;
    while message.len() < mib * 1024 * 1024 {
        let _ = write!(
            message,
            " line {line} of a long report, to read in windows.\r\n"
        );
        line += 1;
    }
    message.into_bytes()
}

/// Writes messages into a maildir's `cur`, in order (so uids follow it),
/// each file's mtime (dovecot's INTERNALDATE) set to its stamp.
fn write_maildir(path: &Path, messages: impl Iterator<Item = (Vec<u8>, i64, &'static str)>) {
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(path.join(sub)).expect("maildir");
    }
    for (index, (data, stamp, flags)) in messages.enumerate() {
        let file = path
            .join("cur")
            .join(format!("{stamp}.M{index}P1.llmbasedos:2,{flags}"));
        std::fs::write(&file, data).expect("a message");
        let time =
            std::time::UNIX_EPOCH + Duration::from_secs(u64::try_from(stamp).expect("after 1970"));
        std::fs::File::options()
            .write(true)
            .open(&file)
            .and_then(|handle| handle.set_modified(time))
            .expect("mtime");
    }
}

fn make_certificate(cert: &Path, key: &Path) {
    let openssl = which("openssl")
        .unwrap_or_else(|| panic!("openssl is missing: run ./scripts/install-test-deps"));
    let output = Command::new(openssl)
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
        ])
        .arg(key)
        .arg("-out")
        .arg(cert)
        .args([
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            "basicConstraints=critical,CA:FALSE",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-addext",
            "keyUsage=critical,digitalSignature",
            "-addext",
            "extendedKeyUsage=serverAuth",
        ])
        .output()
        .expect("run openssl");
    assert!(
        output.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    set_mode(key, 0o644);
}

/// dovecot's internal and login users and the mail owner's uid/gid: as
/// root, Debian's `dovecot`, `dovenull` and `nobody`; otherwise this user.
fn users() -> (String, String, u32, u32) {
    // SAFETY: geteuid/getegid cannot fail.
    let (euid, egid) = unsafe { (libc::geteuid(), libc::getegid()) };
    if euid == 0 {
        let passwd = std::fs::read_to_string("/etc/passwd").expect("/etc/passwd");
        let nobody = passwd
            .lines()
            .find(|line| line.starts_with("nobody:"))
            .expect("a nobody user");
        let fields: Vec<&str> = nobody.split(':').collect();
        (
            "dovecot".to_owned(),
            "dovenull".to_owned(),
            fields[2].parse().expect("uid"),
            fields[3].parse().expect("gid"),
        )
    } else {
        let name = std::env::var("USER").unwrap_or_else(|_| euid.to_string());
        (name.clone(), name, euid, egid)
    }
}

#[allow(clippy::too_many_arguments)]
fn dovecot_config(
    root: &Path,
    cert: &Path,
    key: &Path,
    port: u16,
    plain_port: u16,
    internal: &str,
    login: &str,
    uid: u32,
    gid: u32,
) -> String {
    let root = root.display();
    format!(
        "base_dir = {root}/run\nstate_dir = {root}/state\nlog_path = {root}/dovecot.log\n\
         instance_name = llmbasedos-bench-{port}\nprotocols = imap\nlisten = 127.0.0.1\n\
         default_internal_user = {internal}\ndefault_login_user = {login}\nfirst_valid_uid = 1\n\
         auth_failure_delay = 0\nlogin_trusted_networks = 127.0.0.0/8\nssl = yes\n\
         ssl_cert = <{cert}\nssl_key = <{key}\nssl_min_protocol = TLSv1.2\n\
         disable_plaintext_auth = yes\nauth_mechanisms = plain login\n\
         passdb {{\n  driver = passwd-file\n  args = scheme=PLAIN username_format=%u {root}/passwd\n}}\n\
         userdb {{\n  driver = static\n  args = uid={uid} gid={gid} home={root}/home/%u\n}}\n\
         mail_location = maildir:~/Maildir\n\
         namespace inbox {{\n  inbox = yes\n  separator = /\n}}\n\
         service imap-login {{\n  inet_listener imap {{\n    address = 127.0.0.1\n    port = {plain_port}\n  }}\n\
         \x20 inet_listener imaps {{\n    address = 127.0.0.1\n    port = {port}\n    ssl = yes\n  }}\n}}\n\
         protocol imap {{\n  mail_max_userip_connections = 100\n}}\n",
        cert = cert.display(),
        key = key.display(),
    )
}

/// The pid of this process's child whose command line contains `name`.
fn child_pid(name: &str) -> Option<u32> {
    let me = std::process::id();
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // The parent's pid is the second field after the command's ")".
        let parent = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|field| field.parse::<u32>().ok());
        let command = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        if parent == Some(me) && String::from_utf8_lossy(&command).contains(name) {
            return Some(pid);
        }
    }
    None
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// The workspace's root (two above this crate).
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("the workspace root")
        .to_path_buf()
}
