//! `llmbasedos up`: the whole stack as supervised child processes, laid out
//! in one runtime directory as an installed system lays it out under /run.
//!
//! The runtime directory is made private and locked before anything is
//! written to it (`runtime_dir`). Every child gets only its own environment
//! (nothing else of `up`'s: not the LLM API key, which reaches the gateway
//! as a private file, nor any other secret the shell holds), and dies with
//! `up` (`PR_SET_PDEATHSIG`): a child outliving a SIGKILLed `up` kept its
//! port and socket, and the next `up` took the orphan for its own. A child
//! counts as ready when its socket is served by that very process (the
//! listener's pid by SO_PEERCRED), not when something answers there.

use std::ffi::OsString;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use server_kit::{Backoff, EXIT_CONFIG, ShutdownSignals};
use services::State;
use sha2::{Digest, Sha256};
use tokio::process::Command;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::control::{self, Board, LogStore, Unit};
use crate::runtime_dir;
use crate::stack::{self, BACKENDS, GATEWAY_BINARY, Layout, WEB_BINARY, WEB_CLIENT};

#[derive(clap::Args, Debug)]
pub(crate) struct UpArgs {
    /// The fs server's virtual root [default: root in --fs-config, else
    /// ~/.local/share/llmbasedos/files].
    #[arg(long)]
    root: Option<PathBuf>,
    /// An fs.yaml for the fs server (allow_hard_links, exclude, read_only,
    /// …; see config/fs.yaml). Checked before anything starts. Flags of
    /// `up` win over it: --root over its root; its index_dir and
    /// model_dir win over what `up` would choose, $LLMBASEDOS_FS_* over
    /// everything.
    #[arg(long, value_name = "FILE")]
    fs_config: Option<PathBuf>,
    /// The mail server's accounts (see config/mail_accounts.yaml) [default:
    /// ~/.config/llmbasedos/mail_accounts.yaml, else
    /// /etc/llmbasedos/mail_accounts.yaml; without one, mail is not
    /// started]. Secrets come from the Secret Service of this session or
    /// from `llmbasedos-mail add-secret`'s files.
    #[arg(long, value_name = "FILE")]
    mail_accounts: Option<PathBuf>,
    /// Address of the gateway's Streamable HTTP and WebSocket endpoints.
    #[arg(long, default_value = "127.0.0.1:8000")]
    listen: String,
    /// Address of the web console (when llmbasedos-web is built): its
    /// one-time sign-in URL is printed once it serves.
    #[arg(long, default_value = "127.0.0.1:8081")]
    web_listen: std::net::SocketAddr,
    /// Do not start the web console.
    #[arg(long)]
    no_web: bool,
    /// A YAML file holding the gateway's `licence:` section (key, tiers,
    /// keys_dir, allow_unsigned, state_dir, …, as in gateway.yaml; paths
    /// in it absolute): tiers, rates and quotas for the stack's clients.
    /// Without it every client may do everything.
    #[arg(long, value_name = "FILE")]
    licence: Option<PathBuf>,
    /// The console's tier, one of --licence's tiers [default: the
    /// licence's own]. The console's calls run as its own client,
    /// token:llmbasedos-web, whatever the tier.
    #[arg(long, value_name = "TIER", requires = "licence")]
    web_tier: Option<String>,
    /// Accept HTTP and WebSocket clients without a token (loopback only).
    #[arg(long)]
    no_auth: bool,
    /// Also start the framework's test server (echo, sleep, progress).
    #[arg(long)]
    with_test_server: bool,
    /// Directory holding the binaries [default: the directory of this
    /// binary, where cargo and pacman both put them].
    #[arg(long, env = "LLMBASEDOS_BIN_DIR")]
    bin_dir: Option<PathBuf>,
    /// Seconds each server gets to finish its requests when the stack stops.
    #[arg(long, default_value_t = 10)]
    drain_timeout: u64,
    /// An OpenAI-compatible API for `mcp.llm.chat` and luca-shell's `llm`,
    /// e.g. http://127.0.0.1:8080/v1 (llama.cpp's llama-server). Its key, if
    /// it needs one, comes from $LLMBASEDOS_LLM_API_KEY.
    #[arg(long, env = "LLMBASEDOS_LLM_URL", value_name = "URL")]
    llm_url: Option<String>,
    /// The model to ask for.
    #[arg(long, env = "LLMBASEDOS_LLM_MODEL", default_value = "default")]
    llm_model: String,
    /// The agent's workflow directory (watched; *.yaml) [default:
    /// ~/.config/llmbasedos/workflows].
    #[arg(long, value_name = "DIR")]
    workflows: Option<PathBuf>,
}

/// What the agent server gets from `up`: its workflows, the gateway's
/// socket (its mcp and llm steps call through it), a persistent state
/// directory, and Docker's address if one is set.
fn agent_env(args: &UpArgs, layout: &Layout) -> anyhow::Result<Vec<(OsString, OsString)>> {
    let home = std::env::var_os("HOME")
        .filter(|home| !home.is_empty())
        .map(PathBuf::from);
    let from = |variable: &str, under_home: &str| {
        std::env::var_os(variable)
            .filter(|dir| !dir.is_empty())
            .map(PathBuf::from)
            .or_else(|| home.as_ref().map(|home| home.join(under_home)))
            .unwrap_or_else(|| PathBuf::from("/tmp"))
    };
    let workflows = match &args.workflows {
        Some(dir) => {
            std::path::absolute(dir).with_context(|| format!("--workflows {}", dir.display()))?
        }
        None => from("XDG_CONFIG_HOME", ".config").join("llmbasedos/workflows"),
    };
    std::fs::create_dir_all(&workflows).with_context(|| {
        format!(
            "cannot create the workflow directory {}",
            workflows.display()
        )
    })?;
    let mut env = inherited_env(&["LLMBASEDOS_WORKER_THREADS", "DOCKER_HOST"], &[]);
    env.push(("LLMBASEDOS_AGENT_WORKFLOWS".into(), workflows.into()));
    env.push((
        "LLMBASEDOS_AGENT_GATEWAY_SOCKET".into(),
        layout.gateway_socket().into(),
    ));
    env.push((
        "LLMBASEDOS_AGENT_STATE_DIR".into(),
        from("XDG_STATE_HOME", ".local/state")
            .join("llmbasedos/agent")
            .into(),
    ));
    Ok(env)
}

/// The LLM section of the generated gateway config, if one is wanted; the
/// API key goes to a private file beside the config, never into it.
fn llm_config(args: &UpArgs, layout: &Layout) -> anyhow::Result<String> {
    let Some(url) = &args.llm_url else {
        return Ok(String::new());
    };
    let mut section = format!(
        "llm:\n  url: {}\n  model: {}\n",
        serde_json::to_string(url)?,
        serde_json::to_string(&args.llm_model)?
    );
    let key_file = layout.runtime_dir.join("llm.key");
    match std::env::var("LLMBASEDOS_LLM_API_KEY") {
        Ok(key) if !key.trim().is_empty() => {
            write_private(&key_file, format!("{}\n", key.trim()).as_bytes())?;
            section.push_str(&format!("  api_key_file: {}\n", yaml_string(&key_file)));
        }
        _ => {
            let _ = std::fs::remove_file(&key_file);
        }
    }
    Ok(section)
}

/// When a server that stopped is started again: 1, 2, 4… s after quick
/// failures, up to 30 s; half a second after one that ran for 10 s.
const RESTART: Backoff = Backoff::new(
    Duration::from_millis(500),
    Duration::from_secs(30),
    Duration::from_secs(10),
);

/// One supervised child process.
#[derive(Clone, Debug)]
struct ChildSpec {
    name: String,
    program: PathBuf,
    args: Vec<OsString>,
    /// Its whole environment.
    env: Vec<(OsString, OsString)>,
    /// How to tell that it serves.
    ready: Ready,
    /// Whether the stack stops when it cannot start (every server but the
    /// console).
    essential: bool,
}

/// What every child takes from `up`'s environment: where it runs, its
/// locale, how it logs. Nothing else is passed on unless named for it.
const COMMON_ENV: &[&str] = &[
    "PATH",
    "HOME",
    "LANG",
    "LANGUAGE",
    "TZ",
    "TMPDIR",
    "JOURNAL_STREAM",
    "RUST_BACKTRACE",
    "LLMBASEDOS_LOG",
    "LLMBASEDOS_LOG_FORMAT",
];

/// The common variables, the locale's `LC_*`, and those of `names` and
/// `prefixes` that are set, from this process's environment.
/// The sync server's history under `up`:
/// `$XDG_STATE_HOME/llmbasedos/sync/<runtime directory's hash>`. It outlives
/// the runtime directory (which may be on a tmpfs), and each stack has its
/// own: one history is one server's (its database is locked while open).
fn sync_state_dir(runtime_dir: &Path) -> PathBuf {
    let runtime_dir = std::path::absolute(runtime_dir).unwrap_or_else(|_| runtime_dir.to_owned());
    // FNV-1a: stable across builds, unlike std's hasher.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in runtime_dir.as_os_str().as_encoded_bytes() {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".local/state")))
        .unwrap_or_else(|| PathBuf::from("/tmp"))
        .join("llmbasedos")
        .join("sync")
        .join(format!("{hash:016x}"))
}

fn inherited_env(names: &[&str], prefixes: &[&str]) -> Vec<(OsString, OsString)> {
    std::env::vars_os()
        .filter(|(name, _)| {
            let Some(name) = name.to_str() else {
                return false;
            };
            COMMON_ENV.contains(&name)
                || name.starts_with("LC_")
                || names.contains(&name)
                || prefixes.iter().any(|prefix| name.starts_with(prefix))
        })
        .collect()
}

pub(crate) fn run(runtime_dir: &Path, args: &UpArgs) -> anyhow::Result<ExitCode> {
    server_kit::logging::init("llmbasedos");
    let layout = Layout::new(runtime_dir);
    // First of all: a second `up` on this directory stops here, before it
    // writes anything the running stack uses.
    let _lock = runtime_dir::prepare_and_lock(runtime_dir)?;
    let bin_dir = match &args.bin_dir {
        Some(dir) => dir.clone(),
        None => std::env::current_exe()
            .context("cannot find this binary's directory; pass --bin-dir")?
            .parent()
            .map(Path::to_owned)
            .context("this binary has no parent directory; pass --bin-dir")?,
    };
    let gateway = bin_dir.join(GATEWAY_BINARY);
    if !gateway.is_file() {
        bail!(
            "cannot find the gateway at {}; build the workspace first (`cargo build --release --workspace`) or pass --bin-dir",
            gateway.display()
        );
    }
    let fs_config = FsConfig::load(args.fs_config.as_deref())?;
    let root = args
        .root
        .clone()
        .or_else(|| fs_config.file.root.clone())
        .unwrap_or_else(stack::default_fs_root);
    std::fs::create_dir_all(&root)
        .with_context(|| format!("cannot create the fs root {}", root.display()))?;
    let root = root.canonicalize()?;
    prepare_private_dir(&layout.caps_dir())?;
    let token = load_or_create_token(&layout.token_file())?;
    let config = gateway_config(&layout, &args.listen, &token, args.web_tier.as_deref())?
        + &llm_config(args, &layout)?
        + &licence_config(args.licence.as_deref())?;
    write_private(&layout.gateway_config(), config.as_bytes())?;

    let semantic = SemanticSetup::find(&fs_config.file);
    let mut children = Vec::new();
    for backend in BACKENDS
        .iter()
        .filter(|backend| !backend.development_only || args.with_test_server)
    {
        let binary = bin_dir.join(backend.binary);
        if !binary.is_file() {
            println!(
                "{} server not built ({}): skipping it",
                backend.name,
                binary.display()
            );
            continue;
        }
        let socket = layout.backend_socket(backend.name);
        let mut child_args: Vec<OsString> = vec![
            "--socket".into(),
            socket.clone().into(),
            "--idle-timeout".into(),
            "0".into(),
            "--drain-timeout".into(),
            args.drain_timeout.to_string().into(),
        ];
        if backend.name == "fs"
            && let Some(path) = &fs_config.path
        {
            child_args.extend(["--config".into(), path.clone().into_os_string()]);
        }
        if backend.name == "sync" {
            // Under `up` the sync server runs the named jobs' schedules
            // itself (under systemd, the timer template does).
            child_args.push("--scheduler".into());
        }
        if backend.name == "mail" {
            let Some(accounts) = args
                .mail_accounts
                .clone()
                .or_else(stack::default_mail_accounts)
            else {
                println!(
                    "mail server: no mail_accounts.yaml (pass --mail-accounts FILE): skipping it"
                );
                continue;
            };
            let accounts = std::path::absolute(&accounts)
                .with_context(|| format!("--mail-accounts {}", accounts.display()))?;
            if !accounts.is_file() {
                bail!("--mail-accounts {}: no such file", accounts.display());
            }
            child_args.extend([
                "--accounts".into(),
                accounts.into_os_string(),
                "--secrets-dir".into(),
                stack::mail_secrets_dir().into_os_string(),
            ]);
        }
        children.push(ChildSpec {
            name: backend.name.to_owned(),
            program: binary,
            args: child_args,
            env: if backend.name == "fs" {
                let mut env = inherited_env(
                    &[
                        "ORT_DYLIB_PATH",
                        "XDG_CACHE_HOME",
                        "LLMBASEDOS_WORKER_THREADS",
                    ],
                    &["LLMBASEDOS_FS_"],
                );
                env.push(("LLMBASEDOS_FS_ROOT".into(), root.clone().into()));
                env.extend(semantic.env());
                env
            } else if backend.name == "sync" {
                let mut env = inherited_env(
                    &["LLMBASEDOS_WORKER_THREADS", "XDG_CONFIG_HOME"],
                    &["LLMBASEDOS_SYNC_"],
                );
                env.push(("STATE_DIRECTORY".into(), sync_state_dir(runtime_dir).into()));
                env
            } else if backend.name == "agent" {
                agent_env(args, &layout)?
            } else if backend.name == "mail" {
                // The session's Secret Service, and systemd credentials
                // when `up` itself runs as a unit with LoadCredential=.
                inherited_env(
                    &[
                        "LLMBASEDOS_WORKER_THREADS",
                        "DBUS_SESSION_BUS_ADDRESS",
                        "CREDENTIALS_DIRECTORY",
                    ],
                    &["LLMBASEDOS_MAIL_"],
                )
            } else {
                inherited_env(&["LLMBASEDOS_WORKER_THREADS"], &[])
            },
            ready: Ready::Unix(socket),
            essential: true,
        });
    }
    if let Some(fs) = children.iter().find(|child| child.name == "fs") {
        fs_config.check(&fs.env)?;
    }
    let mut gateway_args: Vec<OsString> = vec!["--config".into(), layout.gateway_config().into()];
    if args.no_auth {
        gateway_args.push("--no-auth".into());
    }
    children.push(ChildSpec {
        name: "gateway".to_owned(),
        program: gateway.clone(),
        args: gateway_args,
        env: inherited_env(&["LLMBASEDOS_GATEWAY_THREADS"], &[]),
        ready: Ready::Unix(layout.gateway_socket()),
        essential: true,
    });
    let web = web_child(args, &layout, &bin_dir)?;
    children.extend(web);

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let banner = Banner {
        layout: &layout,
        gateway: &gateway,
        listen: &args.listen,
        root: &root,
        no_auth: args.no_auth,
        semantic: &semantic,
        web: children
            .iter()
            .any(|child| child.name == "web")
            .then_some(args.web_listen),
    };
    runtime.block_on(supervise(
        &layout,
        children,
        Duration::from_secs(args.drain_timeout),
        &banner,
    ))
}

/// The web console, when it is built, wanted and its address is free: it
/// reads `<runtime>/web.yaml`, which points it at the gateway's socket,
/// at `up`'s control socket and at `<runtime>/web` for sign-in tokens.
fn web_child(args: &UpArgs, layout: &Layout, bin_dir: &Path) -> anyhow::Result<Option<ChildSpec>> {
    if args.no_web {
        return Ok(None);
    }
    let program = bin_dir.join(WEB_BINARY);
    if !program.is_file() {
        println!("web console not built ({}): skipping it", program.display());
        return Ok(None);
    }
    // Taken by something else, the address would look served by the
    // console; say so instead of printing a link to another program.
    if let Err(error) = std::net::TcpListener::bind(args.web_listen) {
        println!(
            "web console: cannot listen on {} ({error}): skipping it (choose another address with --web-listen)",
            args.web_listen
        );
        return Ok(None);
    }
    let config = format!(
        "# Written by `llmbasedos up`; rewritten at every start.\n\
         listen: \"{}\"\n\
         gateway_socket: {}\n\
         bootstrap_dir: {}\n\
         idle_exit_secs: 0\n\
         services: {}\n\
         gateway_identity: \"token:{WEB_CLIENT}\"\n",
        args.web_listen,
        yaml_string(&layout.gateway_socket()),
        yaml_string(&layout.web_bootstrap_dir()),
        serde_json::to_string(&format!("up:{}", layout.control_socket().display()))?,
    );
    write_private(&layout.web_config(), config.as_bytes())?;
    Ok(Some(ChildSpec {
        name: "web".to_owned(),
        program,
        args: vec!["--config".into(), layout.web_config().into()],
        env: inherited_env(&["LLMBASEDOS_WORKER_THREADS"], &[]),
        ready: Ready::Tcp(args.web_listen),
        essential: false,
    }))
}

/// Creates a directory reachable only by this user (mode 0700), inside the
/// runtime directory (already checked and locked).
fn prepare_private_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("cannot restrict {} to mode 0700", dir.display()))?;
    Ok(())
}

/// Writes a file readable only by this user (mode 0600), atomically.
fn write_private(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    let temporary = path.with_extension("tmp");
    let _ = std::fs::remove_file(&temporary);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temporary)
        .with_context(|| format!("cannot create {}", temporary.display()))?;
    file.write_all(contents)?;
    file.sync_all()?;
    std::fs::rename(&temporary, path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// The bearer token: kept across runs (so configured hosts keep working),
/// created on first use from the kernel's random source.
fn load_or_create_token(path: &Path) -> anyhow::Result<String> {
    if let Ok(existing) = std::fs::read_to_string(path) {
        let existing = existing.trim();
        if existing.len() >= 32
            && existing
                .chars()
                .all(|character| character.is_ascii_hexdigit())
        {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
            return Ok(existing.to_owned());
        }
    }
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).context("cannot read random bytes for the token")?;
    let token = hex::encode(bytes);
    write_private(path, format!("{token}\n").as_bytes())?;
    Ok(token)
}

/// The generated gateway.yaml: the user's bearer token, and the console's
/// client. The console runs as the user, like every other local client,
/// so its uid cannot tell it apart: it names its own client,
/// `token:llmbasedos-web`, in every call's `_meta` (as the agent names a
/// run's client), which the gateway takes from the user's uid because it
/// is a delegate, and never beyond that uid's own rights. The entry gives
/// that client its tier; its token is random bytes thrown away, so no
/// one can present it over HTTP.
fn gateway_config(
    layout: &Layout,
    listen: &str,
    token: &str,
    web_tier: Option<&str>,
) -> anyhow::Result<String> {
    let digest = hex::encode(Sha256::digest(token.as_bytes()));
    let mut unusable = [0u8; 32];
    getrandom::fill(&mut unusable).context("cannot read random bytes for the console's entry")?;
    let web_digest = hex::encode(Sha256::digest(hex::encode(unusable).as_bytes()));
    let web_tier = match web_tier {
        Some(tier) => format!("\n      tier: {}", serde_json::to_string(tier)?),
        None => String::new(),
    };
    // SAFETY: getuid cannot fail and touches no memory.
    let uid = unsafe { libc::getuid() };
    // The agent runs as the user here: it is the delegate whose workflow
    // calls act for the client that started them (that client's identity,
    // rights and quotas; its slots are the delegate's own).
    Ok(format!(
        "# Written by `llmbasedos up`; rewritten at every start.\n\
         listen: {listen}\n\
         unix_socket: {}\n\
         caps_dir: {}\n\
         supervisor: up\n\
         auth:\n  token_file: {}\n  tokens:\n    - name: llmbasedos-up\n      sha256: {digest}\n    \
         - name: {WEB_CLIENT}\n      sha256: {web_digest}{web_tier}\n  \
         delegates: [{uid}]\n",
        yaml_string(&layout.gateway_socket()),
        yaml_string(&layout.caps_dir()),
        yaml_string(&layout.token_file()),
    ))
}

/// The `licence:` section of the generated gateway.yaml, from `--licence`:
/// the file must be a YAML mapping (the gateway checks its keys and
/// values when it starts, and `up` stops with its message).
fn licence_config(path: Option<&Path>) -> anyhow::Result<String> {
    let Some(path) = path else {
        return Ok(String::new());
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("--licence {}: cannot read it", path.display()))?;
    let section: yaml_serde::Value = yaml_serde::from_str(&text)
        .with_context(|| format!("--licence {}: not valid YAML", path.display()))?;
    if !section.is_mapping() {
        bail!(
            "--licence {}: expected the gateway's licence section as a mapping (key: …, tiers: …)",
            path.display()
        );
    }
    let mut document = yaml_serde::Mapping::new();
    document.insert("licence".into(), section);
    Ok(yaml_serde::to_string(&document)?)
}

/// The entry for `claude_desktop_config.json`, laid out as people write it
/// (and as the README shows it): `command` before `args`, the arguments on
/// one line. `serde_json` would sort the keys and break the list up.
fn desktop_entry(gateway: &Path, socket: &Path) -> String {
    let quoted =
        |path: &Path| serde_json::to_string(&path.display().to_string()).unwrap_or_default();
    format!(
        "{{\n  \"mcpServers\": {{\n    \"llmbasedos\": {{\n      \"command\": {},\n      \"args\": [\"stdio\", \"--unix-socket\", {}]\n    }}\n  }}\n}}",
        quoted(gateway),
        quoted(socket)
    )
}

/// A path as a YAML double-quoted string.
fn yaml_string(path: &Path) -> String {
    serde_json::to_string(&path.display().to_string()).unwrap_or_default()
}

/// The fs server's configuration file given to `up`, if any.
struct FsConfig {
    /// Absolute, so the child finds it whatever its directory.
    path: Option<PathBuf>,
    file: fs::config::FileConfig,
}

impl FsConfig {
    /// Reads and parses the file with the fs server's own parser: a typo
    /// stops `up` here, with the file's error, not in a restart loop.
    fn load(path: Option<&Path>) -> anyhow::Result<FsConfig> {
        let Some(path) = path else {
            return Ok(FsConfig {
                path: None,
                file: fs::config::FileConfig::default(),
            });
        };
        let path =
            std::path::absolute(path).with_context(|| format!("--fs-config {}", path.display()))?;
        let file = fs::config::FileConfig::load(&path, true)
            .map_err(|error| anyhow::anyhow!("--fs-config: {error}"))?;
        Ok(FsConfig {
            path: Some(path),
            file,
        })
    }

    /// Resolves the file as the fs server will, with the environment it
    /// will have, so that values out of range and bad globs stop `up` too.
    fn check(&self, env: &[(OsString, OsString)]) -> anyhow::Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let variable = |name: &str| {
            env.iter()
                .find(|(key, _)| key == name)
                .and_then(|(_, value)| value.to_str().map(str::to_owned))
        };
        fs::config::Config::resolve(self.file.clone(), &path.display().to_string(), variable)
            .map(drop)
            .map_err(|error| anyhow::anyhow!("--fs-config: {error}"))
    }
}

/// Where the fs server's semantic search finds its model, ONNX Runtime and
/// index: what the environment or the system provides, else what
/// `scripts/fetch-model` and `scripts/fetch-onnxruntime` cached; the index
/// under the user's state directory, so it survives restarts.
#[derive(Debug)]
struct SemanticSetup {
    /// Variables to pass to the fs server (those not already set).
    env: Vec<(&'static str, OsString)>,
    /// One line for the banner.
    summary: String,
}

/// Where the model package and Arch's onnxruntime put their files.
const SYSTEM_MODEL_DIR: &str = "/usr/share/llmbasedos/models/all-MiniLM-L6-v2";
const SYSTEM_RUNTIME: &str = "/usr/lib/libonnxruntime.so";

impl SemanticSetup {
    /// `file` is the fs configuration given to `up`: what it sets, `up`
    /// does not choose.
    fn find(file: &fs::config::FileConfig) -> SemanticSetup {
        let set = |name: &str| std::env::var_os(name).filter(|value| !value.is_empty());
        let mut env = Vec::new();
        let mut missing = Vec::new();
        if set("LLMBASEDOS_FS_MODEL_DIR").is_none()
            && file.model_dir.is_none()
            && !Path::new(SYSTEM_MODEL_DIR).join("model.onnx").is_file()
        {
            match semantic::locate::cached_model() {
                Some(dir) => env.push(("LLMBASEDOS_FS_MODEL_DIR", dir.into())),
                None => missing.push("the model (scripts/fetch-model)"),
            }
        }
        if set("ORT_DYLIB_PATH").is_none() && !Path::new(SYSTEM_RUNTIME).is_file() {
            match semantic::locate::cached_runtime() {
                Some(path) => env.push(("ORT_DYLIB_PATH", path.into())),
                None => missing.push("ONNX Runtime (scripts/fetch-onnxruntime)"),
            }
        }
        if set("LLMBASEDOS_FS_INDEX_DIR").is_none() && file.index_dir.is_none() {
            let state_home = set("XDG_STATE_HOME")
                .map(PathBuf::from)
                .or_else(|| set("HOME").map(|home| Path::new(&home).join(".local/state")))
                .unwrap_or_else(|| PathBuf::from("/tmp"));
            env.push((
                "LLMBASEDOS_FS_INDEX_DIR",
                state_home.join("llmbasedos").join("fs-index").into(),
            ));
        }
        let summary = if missing.is_empty() {
            "ready (model loads on the first embed or search)".to_owned()
        } else {
            format!("needs {}", missing.join(" and "))
        };
        SemanticSetup { env, summary }
    }

    fn env(&self) -> Vec<(OsString, OsString)> {
        self.env
            .iter()
            .map(|(name, value)| (OsString::from(name), value.clone()))
            .collect()
    }
}

struct Banner<'a> {
    layout: &'a Layout,
    gateway: &'a Path,
    listen: &'a str,
    root: &'a Path,
    no_auth: bool,
    semantic: &'a SemanticSetup,
    web: Option<std::net::SocketAddr>,
}

impl Banner<'_> {
    fn print(&self) {
        let layout = self.layout;
        let desktop = desktop_entry(self.gateway, &layout.gateway_socket());
        let token = if self.no_auth {
            "none (--no-auth)".to_owned()
        } else {
            format!(
                "in {} (Authorization: Bearer <token>)",
                layout.token_file().display()
            )
        };
        println!(
            "\nllmbasedos is up — Ctrl-C stops it\n\
             \n  files (fs root)   {}\
             \n  semantic search   {}\
             \n  Streamable HTTP   http://{}/mcp\
             \n  WebSocket         ws://{}/ws\
             \n  UNIX socket       {}\
             \n  bearer token      {token}\
             \n  control socket    {}\
             \n\nClaude Desktop (claude_desktop_config.json):\n{}\n",
            self.root.display(),
            self.semantic.summary,
            self.listen,
            self.listen,
            layout.gateway_socket().display(),
            layout.control_socket().display(),
            desktop,
        );
    }

    /// The console's one-time sign-in URL, once it serves.
    fn print_web(&self) {
        let Some(listen) = self.web else {
            return;
        };
        match web::bootstrap::mint(&self.layout.web_bootstrap_dir()) {
            Ok(minted) => println!(
                "web console       {}\n  (sign-in link: works once, for 5 minutes; `llmbasedos web` prints another)",
                minted.url(&format!("http://{listen}"))
            ),
            Err(error) => println!("web console: cannot mint a sign-in link: {error}"),
        }
    }
}

async fn supervise(
    layout: &Layout,
    children: Vec<ChildSpec>,
    drain: Duration,
    banner: &Banner<'_>,
) -> anyhow::Result<ExitCode> {
    let signalled = ShutdownSignals::install()?.wait();
    tokio::pin!(signalled);
    let stop = CancellationToken::new();
    let (fatal_tx, mut fatal_rx) = mpsc::unbounded_channel::<String>();
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel::<String>();
    let logs = Arc::new(LogStore::new(control::MAX_LINES, control::MAX_BYTES));
    let units: Vec<Arc<Unit>> = children
        .iter()
        .map(|child| Arc::new(Unit::new(&child.name)))
        .collect();
    let board = Arc::new(Board::new(
        units.clone(),
        logs.clone(),
        drain + Duration::from_secs(10),
    ));
    let control_socket = layout.control_socket();
    let listener = control::bind(&control_socket)?;
    let server = tokio::spawn(control::serve(
        listener,
        board,
        client::cli::current_uid(),
        stop.clone(),
    ));
    let mut published = Vec::new();
    let mut supervisors = Vec::new();
    let mut essentials = Vec::new();
    for (child, unit) in children.into_iter().zip(units) {
        if child.name != "gateway" && child.name != "web" {
            published.push(publish_caps(layout, &child).await?);
        }
        if child.essential {
            essentials.push(child.name.clone());
        }
        supervisors.push(tokio::spawn(supervise_one(
            child,
            unit,
            logs.clone(),
            drain,
            stop.clone(),
            fatal_tx.clone(),
            ready_tx.clone(),
        )));
    }
    drop(fatal_tx);
    drop(ready_tx);
    let failure = tokio::select! {
        web_ready = wait_ready(essentials, &mut ready_rx) => {
            banner.print();
            if web_ready {
                banner.print_web();
            }
            loop {
                tokio::select! {
                    _ = &mut signalled => break None,
                    Some(failure) = fatal_rx.recv() => break Some(failure),
                    Some(name) = ready_rx.recv() => if name == "web" { banner.print_web() },
                }
            }
        }
        _ = &mut signalled => None,
        Some(failure) = fatal_rx.recv() => Some(failure),
    };
    println!("stopping llmbasedos");
    stop.cancel();
    for supervisor in supervisors {
        let _ = supervisor.await;
    }
    let _ = server.await;
    let _ = std::fs::remove_file(&control_socket);
    for path in published {
        let _ = std::fs::remove_file(path);
    }
    match failure {
        Some(failure) => {
            eprintln!("llmbasedos: {failure}");
            Ok(ExitCode::FAILURE)
        }
        None => Ok(ExitCode::SUCCESS),
    }
}

/// Completes once every essential child has reported that it serves (a
/// child that dies first is restarted and reports later); says which are
/// late. Returns whether the console reported too.
async fn wait_ready(mut waiting: Vec<String>, ready: &mut mpsc::UnboundedReceiver<String>) -> bool {
    let late = tokio::time::sleep(Duration::from_secs(30));
    tokio::pin!(late);
    let mut warned = false;
    let mut web = false;
    while !waiting.is_empty() {
        tokio::select! {
            name = ready.recv() => match name {
                Some(name) => {
                    web |= name == "web";
                    waiting.retain(|waiting| *waiting != name);
                }
                // Every supervisor gave up: the failure is reported elsewhere.
                None => std::future::pending().await,
            },
            () = &mut late, if !warned => {
                warned = true;
                tracing::warn!(services = ?waiting, "not serving after 30 s; see their logs above");
            }
        }
    }
    web
}

/// When a child counts as serving.
#[derive(Clone, Debug)]
enum Ready {
    /// Its UNIX socket is served by that very process: the listener's
    /// credentials, which the kernel recorded when it called listen(), name
    /// it. Another process answering on the path (an orphan of an earlier
    /// stack, an impostor) does not count.
    Unix(PathBuf),
    /// Its TCP address accepts connections (the console: TCP has no peer
    /// credentials).
    Tcp(std::net::SocketAddr),
}

impl Ready {
    async fn served_by(&self, pid: u32) {
        loop {
            match self {
                Ready::Unix(socket) => {
                    if let Ok(stream) = tokio::net::UnixStream::connect(socket).await
                        && client::cli::peer_credentials(&stream)
                            .is_ok_and(|peer| u32::try_from(peer.pid) == Ok(pid))
                    {
                        return;
                    }
                }
                Ready::Tcp(address) => {
                    if tokio::net::TcpStream::connect(address).await.is_ok() {
                        return;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A child process with only its own environment, its stdin closed, that
/// dies with this process.
///
/// `PR_SET_PDEATHSIG` fires when the thread that forked the child exits:
/// every child is forked from the main thread (the runtime is
/// current-thread), which lives as long as `up`. A parent that died between
/// the fork and the prctl is caught by comparing the parent pid.
fn child_command(program: &Path, env: &[(OsString, OsString)]) -> Command {
    let mut command = Command::new(program);
    command
        .env_clear()
        .envs(env.iter().map(|(name, value)| (name, value)))
        .stdin(Stdio::null())
        .kill_on_drop(true);
    // SAFETY: getpid is async-signal-safe; so are prctl and getppid, all the
    // pre-exec hook calls, and it allocates nothing.
    let parent = unsafe { libc::getpid() };
    // SAFETY: see above.
    unsafe {
        command.pre_exec(move || {
            // SIGKILL: nobody is left to supervise a graceful stop, and the
            // next `up` must find the port and sockets free.
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::getppid() != parent {
                return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
    command
}

/// Writes the server's caps next to its socket, as tmpfiles.d links them
/// into /run/mcp on an installed system. Written to a temporary file and
/// renamed, so that the gateway never reads half a file.
async fn publish_caps(layout: &Layout, child: &ChildSpec) -> anyhow::Result<PathBuf> {
    let output = child_command(&child.program, &child.env)
        .arg("--print-caps")
        .output()
        .await
        .with_context(|| format!("cannot run {} --print-caps", child.program.display()))?;
    if !output.status.success() {
        bail!(
            "{} --print-caps failed: {}",
            child.program.display(),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    proto::CompiledCaps::from_json(
        &String::from_utf8_lossy(&output.stdout),
        &child.program.display().to_string(),
    )?;
    let path = layout.caps_file(&child.name);
    let temporary = path.with_extension("tmp");
    std::fs::write(&temporary, &output.stdout)?;
    std::fs::rename(&temporary, &path)?;
    Ok(path)
}

/// Keeps one child running until `stop`, then stops it with SIGTERM
/// (SIGKILL after the drain time and a grace second); restarts it with
/// [`RESTART`]'s delays when it exits. The operator's commands on the
/// control socket stop it (it stays stopped until started), start it, or
/// restart it at once. A child that reports a configuration error
/// ([`EXIT_CONFIG`]) is not restarted: for an essential child the stack
/// stops and says why; the console is only marked failed. `ready` hears
/// the child's name the first time it serves.
async fn supervise_one(
    child: ChildSpec,
    unit: Arc<Unit>,
    logs: Arc<LogStore>,
    drain: Duration,
    stop: CancellationToken,
    fatal: mpsc::UnboundedSender<String>,
    ready: mpsc::UnboundedSender<String>,
) {
    let mut commands = unit.commands();
    let mut backoff = RESTART;
    let mut announced = false;
    loop {
        let command = *commands.borrow_and_update();
        if !command.wanted {
            unit.set(State::Inactive, None, None, command.generation);
            tokio::select! {
                changed = commands.changed() => if changed.is_err() { return },
                () = stop.cancelled() => return,
            }
            continue;
        }
        let started = Instant::now();
        let run = Run {
            child: &child,
            unit: &unit,
            logs: &logs,
            generation: command.generation,
        };
        let waiting = match run
            .once(drain, &stop, &mut commands, &ready, &mut announced)
            .await
        {
            Ended::Stopping => return,
            Ended::Commanded => continue,
            Ended::Config(reason) => {
                if child.essential {
                    let _ = fatal.send(format!(
                        "{} cannot start with this configuration (see its message above)",
                        child.name
                    ));
                    return;
                }
                println!(
                    "{}: {reason}; not restarted (start it from the console or fix its configuration)",
                    child.name
                );
                unit.set(State::Failed, None, Some(reason), command.generation);
                None
            }
            Ended::Exited(reason) => {
                let delay = backoff.after_run(started.elapsed());
                tracing::warn!(service = %child.name, %reason, "server exited; restarting in {} s", delay.as_secs_f32());
                unit.set(
                    State::Activating,
                    None,
                    Some(format!("{reason}; restarting")),
                    command.generation,
                );
                Some(delay)
            }
        };
        let delay = async {
            match waiting {
                Some(delay) => tokio::time::sleep(delay).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = delay => {}
            changed = commands.changed() => if changed.is_err() { return },
            () = stop.cancelled() => return,
        }
    }
}

/// How one run of a child ended.
enum Ended {
    /// The stack stops.
    Stopping,
    /// The operator stopped or restarted it.
    Commanded,
    /// It exited with [`EXIT_CONFIG`] (or could not be started).
    Config(String),
    /// It exited otherwise.
    Exited(String),
}

/// One run of one child.
struct Run<'a> {
    child: &'a ChildSpec,
    unit: &'a Unit,
    logs: &'a Arc<LogStore>,
    generation: u64,
}

impl Run<'_> {
    /// Runs the child until it exits, the stack stops or a command changes
    /// what is wanted of it; its stdout and stderr go to the log store (and
    /// on to `up`'s own).
    async fn once(
        &self,
        drain: Duration,
        stop: &CancellationToken,
        commands: &mut watch::Receiver<control::Command>,
        ready: &mpsc::UnboundedSender<String>,
        announced: &mut bool,
    ) -> Ended {
        let child = self.child;
        let mut command = child_command(&child.program, &child.env);
        command
            .args(&child.args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut process = match command.spawn() {
            Ok(process) => process,
            Err(error) => {
                return Ended::Config(format!("cannot start {}: {error}", child.program.display()));
            }
        };
        let pid = process.id().unwrap_or_default();
        println!("started {} (pid {pid})", child.name);
        if let Some(stdout) = process.stdout.take() {
            tokio::spawn(capture(
                stdout,
                child.name.clone(),
                self.logs.clone(),
                false,
            ));
        }
        if let Some(stderr) = process.stderr.take() {
            tokio::spawn(capture(stderr, child.name.clone(), self.logs.clone(), true));
        }
        self.unit
            .set(State::Activating, Some(pid), None, self.generation);
        let mut serving = false;
        let status = loop {
            tokio::select! {
                status = process.wait() => break status,
                () = stop.cancelled() => {
                    self.unit.set(State::Deactivating, Some(pid), None, self.generation);
                    stop_child(&mut process, pid, drain).await;
                    return Ended::Stopping;
                }
                changed = commands.changed() => {
                    let now = *commands.borrow();
                    if changed.is_err() || !now.wanted || now.generation != self.generation {
                        self.unit.set(State::Deactivating, Some(pid), None, self.generation);
                        stop_child(&mut process, pid, drain).await;
                        return Ended::Commanded;
                    }
                }
                () = child.ready.served_by(pid), if !serving => {
                    serving = true;
                    self.unit.set(State::Running, Some(pid), None, self.generation);
                    if !*announced {
                        *announced = true;
                        let _ = ready.send(child.name.clone());
                    }
                }
            }
        };
        match status {
            Ok(status) if status.code() == Some(i32::from(EXIT_CONFIG)) => Ended::Config(format!(
                "exited with status {} (a configuration error)",
                EXIT_CONFIG
            )),
            Ok(status) => Ended::Exited(exit_text(status)),
            Err(error) => Ended::Exited(format!("lost track of it: {error}")),
        }
    }
}

/// How a process ended, as the overview says it.
fn exit_text(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt as _;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        (None, None) => format!("ended ({status})"),
    }
}

/// Copies a child's output line by line into `logs` and on to this
/// process's stdout or stderr.
async fn capture(
    output: impl tokio::io::AsyncRead + Unpin,
    service: String,
    logs: Arc<LogStore>,
    is_stderr: bool,
) {
    let mut reader = tokio::io::BufReader::new(output);
    let mut line = Vec::new();
    while let Ok(Some(_)) = control::read_line(&mut reader, &mut line, control::MAX_LINE).await {
        let text = String::from_utf8_lossy(&line);
        logs.push(&service, control::priority_of(&text), &text);
        // Echoed as written; a closed terminal must not stop the capture.
        let _ = if is_stderr {
            writeln!(std::io::stderr().lock(), "{text}")
        } else {
            writeln!(std::io::stdout().lock(), "{text}")
        };
    }
}

async fn stop_child(child: &mut tokio::process::Child, pid: u32, drain: Duration) {
    if let Ok(pid) = i32::try_from(pid) {
        // SAFETY: kill only sends a signal, to a child this process started and has not reaped.
        unsafe { libc::kill(pid, libc::SIGTERM) };
    }
    if tokio::time::timeout(drain + Duration::from_secs(1), child.wait())
        .await
        .is_err()
    {
        tracing::warn!(pid, "server did not stop in time; killing it");
        let _ = child.kill().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn until(
        unit: &Unit,
        what: &str,
        test: impl Fn(&control::Status) -> bool,
    ) -> control::Status {
        for _ in 0..1000 {
            let status = unit.status();
            if test(&status) {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("timed out waiting for {what}: {:?}", unit.status());
    }

    /// A real child under the real supervisor, controlled through the real
    /// socket: its output is captured with priorities, stop and start take
    /// effect, and a killed child is seen and restarted.
    #[tokio::test(flavor = "current_thread")]
    async fn a_supervised_child_is_captured_controlled_and_restarted() {
        let dir = tempfile::tempdir().expect("temp dir");
        let held = std::net::TcpListener::bind("127.0.0.1:0").expect("listener");
        let child = ChildSpec {
            name: "fs".to_owned(),
            program: PathBuf::from("/bin/sh"),
            args: vec![
                "-c".into(),
                "echo 'started  INFO hello'; echo '2026-01-01T00:00:00Z  WARN careful' >&2; exec sleep 600"
                    .into(),
            ],
            env: inherited_env(&[], &[]),
            ready: Ready::Tcp(held.local_addr().expect("address")),
            essential: true,
        };
        let unit = Arc::new(Unit::new("fs"));
        let logs = Arc::new(LogStore::new(100, 100_000));
        let board = Arc::new(Board::new(
            vec![unit.clone()],
            logs.clone(),
            Duration::from_secs(10),
        ));
        let path = dir.path().join("up.sock");
        let stop = CancellationToken::new();
        let server = tokio::spawn(control::serve(
            control::bind(&path).expect("bind"),
            board,
            client::cli::current_uid(),
            stop.clone(),
        ));
        let (fatal, _fatal_rx) = mpsc::unbounded_channel();
        let (ready, mut ready_rx) = mpsc::unbounded_channel();
        let supervisor = tokio::spawn(supervise_one(
            child,
            unit.clone(),
            logs,
            Duration::from_secs(1),
            stop.clone(),
            fatal,
            ready,
        ));
        assert_eq!(ready_rx.recv().await.as_deref(), Some("fs"));
        let manager = services::Manager::up(path.clone());
        let first = until(&unit, "running", |s| s.state == State::Running).await;
        let pid = first.pid.expect("a pid");

        let warnings = services::LogFilter {
            max_priority: Some(4),
            ..services::LogFilter::default()
        };
        let mut page = services::LogPage::default();
        for _ in 0..500 {
            page = manager.logs(&warnings, None, 10).await.expect("logs");
            if !page.entries.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(page.entries.len(), 1, "{page:?}");
        assert_eq!(page.entries[0].priority, 4);
        assert!(page.entries[0].message.ends_with("WARN careful"));

        manager
            .control("fs", services::Action::Stop)
            .await
            .expect("stop");
        let listed = manager.list().await.expect("list");
        assert_eq!(listed[0].state, State::Inactive);
        assert_eq!(listed[0].pid, None);
        // SAFETY: signal 0 only checks that the process exists.
        assert_ne!(unsafe { libc::kill(pid as i32, 0) }, 0, "the child is gone");

        manager
            .control("up:fs", services::Action::Start)
            .await
            .expect("start");
        let second = unit.status();
        assert_eq!(second.state, State::Running);
        let second_pid = second.pid.expect("a pid");
        assert_ne!(second_pid, pid);

        // SAFETY: kills the child this test's supervisor started.
        unsafe { libc::kill(second_pid as i32, libc::SIGKILL) };
        let killed = until(&unit, "the restart", |s| s.last_error.is_some()).await;
        assert!(
            killed
                .last_error
                .as_deref()
                .is_some_and(|e| e.contains("killed by signal 9")),
            "{killed:?}"
        );
        let third = until(&unit, "running again", |s| {
            s.state == State::Running && s.pid.is_some_and(|p| p != second_pid)
        })
        .await;

        manager
            .control("fs", services::Action::Restart)
            .await
            .expect("restart");
        let fourth = unit.status();
        assert!(
            fourth.state == State::Running && fourth.pid != third.pid,
            "{fourth:?}"
        );

        stop.cancel();
        supervisor.await.expect("supervisor");
        server.await.expect("server");
    }

    /// The console's client has a tier only with a licence, and an entry
    /// whose token nobody holds; `--licence` goes in whole under
    /// `licence:`, and anything but a mapping stops `up`.
    #[test]
    fn the_console_is_a_client_of_its_own_in_the_generated_config() {
        let layout = Layout::new(Path::new("/run/user/1000/llmbasedos"));
        let config = gateway_config(&layout, "127.0.0.1:8000", &"a".repeat(64), Some("CONSOLE"))
            .expect("config");
        let document: yaml_serde::Value = yaml_serde::from_str(&config).expect("YAML");
        let tokens = document["auth"]["tokens"].as_sequence().expect("tokens");
        let console = tokens
            .iter()
            .find(|token| token["name"].as_str() == Some(WEB_CLIENT))
            .expect("the console's entry");
        assert_eq!(console["tier"].as_str(), Some("CONSOLE"));
        assert_ne!(console["sha256"], tokens[0]["sha256"]);
        let again =
            gateway_config(&layout, "127.0.0.1:8000", &"a".repeat(64), None).expect("config");
        assert!(!again.contains("tier:"), "{again}");
        assert!(!again.contains(console["sha256"].as_str().expect("a digest")));

        let dir = tempfile::tempdir().expect("dir");
        let file = dir.path().join("licence.yaml");
        std::fs::write(&file, "key: /etc/lic.key\nallow_unsigned: true\n").expect("write");
        let section: yaml_serde::Value =
            yaml_serde::from_str(&licence_config(Some(&file)).expect("a mapping")).expect("YAML");
        assert_eq!(section["licence"]["allow_unsigned"].as_bool(), Some(true));
        std::fs::write(&file, "- key\n").expect("write");
        let error = licence_config(Some(&file)).expect_err("a list");
        assert!(error.to_string().contains("mapping"), "{error}");
        assert_eq!(licence_config(None).expect("none"), "");
    }

    #[test]
    fn the_desktop_entry_is_json_laid_out_as_the_readme_shows_it() {
        let entry = desktop_entry(
            Path::new("/path/to/target/release/llmbasedos-gateway"),
            Path::new("/run/user/1000/llmbasedos/gateway.sock"),
        );
        let parsed: serde_json::Value = serde_json::from_str(&entry).expect("valid JSON");
        assert_eq!(
            parsed["mcpServers"]["llmbasedos"]["args"],
            serde_json::json!([
                "stdio",
                "--unix-socket",
                "/run/user/1000/llmbasedos/gateway.sock"
            ])
        );
        let readme = include_str!("../../../README.md");
        assert!(
            readme.contains(&entry),
            "README.md should show this entry:\n{entry}"
        );
    }
}
