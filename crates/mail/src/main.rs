//! `llmbasedos-mail`: the mail service as a process. Loads the accounts and
//! hands the server to `server_kit::run`; `add-secret ACCOUNT` stores an
//! account's secret read from the terminal (never from an MCP call).

use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use mail::accounts::{Accounts, AuthKind, DEFAULT_PATH};
use mail::imap::Timeouts;
use mail::secrets::{Secret, SecretSources};

#[derive(Parser, Debug)]
#[command(
    name = "llmbasedos-mail",
    about = "The llmbasedos mail service: IMAP, SMTP and calendars behind a send policy"
)]
struct Args {
    #[command(flatten)]
    serve: server_kit::ServeArgs,
    /// The accounts file.
    #[arg(long, env = "LLMBASEDOS_MAIL_ACCOUNTS", default_value = DEFAULT_PATH)]
    accounts: PathBuf,
    /// Directory of private secret files (default: $STATE_DIRECTORY/secrets,
    /// else /var/lib/llmbasedos/mail/secrets).
    #[arg(long, env = "LLMBASEDOS_MAIL_SECRETS_DIR")]
    secrets_dir: Option<PathBuf>,
    /// Seconds to wait for a TCP connection.
    #[arg(long, env = "LLMBASEDOS_MAIL_CONNECT_TIMEOUT", default_value_t = 10)]
    connect_timeout: u64,
    /// Seconds to wait for the greeting, TLS and login.
    #[arg(long, env = "LLMBASEDOS_MAIL_LOGIN_TIMEOUT", default_value_t = 15)]
    login_timeout: u64,
    /// Seconds to wait for one IMAP command's answer.
    #[arg(long, env = "LLMBASEDOS_MAIL_COMMAND_TIMEOUT", default_value_t = 60)]
    command_timeout: u64,
    /// Print the service's caps.json and exit.
    #[arg(long)]
    print_caps: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Store ACCOUNT's password (or OAuth2 refresh token) read from stdin:
    /// in the Secret Service when a session bus is there, else in a private
    /// file in the secrets directory.
    AddSecret {
        account: String,
        #[arg(long, value_enum, default_value_t = Kind::Password)]
        kind: Kind,
    },
    /// Get ACCOUNT's first OAuth2 refresh token with the device
    /// authorization grant (RFC 8628): open the address shown, enter the
    /// code; the refresh token is stored like add-secret stores one.
    Authorize { account: String },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Kind {
    Password,
    /// An OAuth2 refresh token (normally `authorize` stores it).
    Oauth2,
    /// An OAuth2 client secret, for providers that want one.
    ClientSecret,
}

/// Async workers when `--worker-threads` is not given. The service waits
/// on IMAP and SMTP servers and does little work of its own (parsing one
/// message at a time): two workers are plenty, and one per core would give
/// every core its own allocator arena and stack on a big machine.
const DEFAULT_WORKERS: usize = 2;

/// glibc's malloc arenas at most: with the threads above, more arenas only
/// hold freed memory apart (`M_ARENA_MAX`; glibc's default is 8 per core).
const MALLOC_ARENAS: libc::c_int = 2;

fn main() -> ExitCode {
    let mut args = Args::parse();
    args.serve.worker_threads.get_or_insert(DEFAULT_WORKERS);
    limit_malloc_arenas();
    if args.print_caps {
        print!("{}", mail::CAPS);
        return ExitCode::SUCCESS;
    }
    let sources = SecretSources::from_environment(args.secrets_dir.clone());
    match &args.command {
        Some(Command::AddSecret { account, kind }) => {
            return add_secret(&args, sources, account, *kind);
        }
        Some(Command::Authorize { account }) => return authorize(&args, sources, account),
        None => {}
    }
    let timeouts = Timeouts {
        connect: Duration::from_secs(args.connect_timeout.max(1)),
        login: Duration::from_secs(args.login_timeout.max(1)),
        command: Duration::from_secs(args.command_timeout.max(1)),
    };
    let path = args.accounts.clone();
    server_kit::run("llmbasedos-mail", &args.serve, move || {
        let accounts = Accounts::load(&path).map_err(|error| error.to_string())?;
        tracing::info!(accounts = accounts.accounts.len(), file = %path.display(), "mail accounts");
        mail::server(accounts, sources, timeouts).map_err(|error| error.to_string())
    })
}

fn add_secret(args: &Args, sources: SecretSources, account: &str, kind: Kind) -> ExitCode {
    let accounts = match Accounts::load(&args.accounts) {
        Ok(accounts) => accounts,
        Err(error) => {
            eprintln!("llmbasedos-mail: {error}");
            return ExitCode::from(server_kit::EXIT_CONFIG);
        }
    };
    if !accounts.accounts.contains_key(account) {
        eprintln!(
            "llmbasedos-mail: {} has no account {account}; add it there first",
            args.accounts.display()
        );
        return ExitCode::from(server_kit::EXIT_CONFIG);
    }
    let suffix = match kind {
        Kind::Password => mail::secrets::kind_name(AuthKind::Password),
        Kind::Oauth2 => mail::secrets::kind_name(AuthKind::Oauth2),
        Kind::ClientSecret => "client_secret",
    };
    let stdin = std::io::stdin();
    let terminal = stdin.is_terminal();
    if terminal {
        eprint!("secret for {account} (not echoed): ");
    }
    let echo = terminal.then(EchoOff::new).flatten();
    let mut line = String::new();
    let read = stdin.lock().read_line(&mut line);
    drop(echo);
    if terminal {
        eprintln!();
    }
    if read.is_err() || line.trim_end_matches(['\r', '\n']).is_empty() {
        eprintln!("llmbasedos-mail: no secret was read from stdin");
        return ExitCode::FAILURE;
    }
    let secret = Secret::new(line.trim_end_matches(['\r', '\n']).to_owned());
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("llmbasedos-mail: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(sources.store_named(account, suffix, &secret)) {
        Ok(place) => {
            eprintln!("llmbasedos-mail: stored the secret of {account} in {place}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("llmbasedos-mail: {error}");
            ExitCode::FAILURE
        }
    }
}

fn authorize(args: &Args, sources: SecretSources, account: &str) -> ExitCode {
    let accounts = match Accounts::load(&args.accounts) {
        Ok(accounts) => accounts,
        Err(error) => {
            eprintln!("llmbasedos-mail: {error}");
            return ExitCode::from(server_kit::EXIT_CONFIG);
        }
    };
    let Some(found) = accounts.accounts.get(account) else {
        eprintln!(
            "llmbasedos-mail: {} has no account {account}",
            args.accounts.display()
        );
        return ExitCode::from(server_kit::EXIT_CONFIG);
    };
    if found.oauth2.is_none() {
        eprintln!(
            "llmbasedos-mail: account {account} does not use OAuth2 (auth: oauth2 with an oauth2 block)"
        );
        return ExitCode::from(server_kit::EXIT_CONFIG);
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("llmbasedos-mail: {error}");
            return ExitCode::FAILURE;
        }
    };
    let clients = match mail::auth::OAuthClients::new(&accounts, &sources) {
        Ok(clients) => clients,
        Err(error) => {
            eprintln!("llmbasedos-mail: {error}");
            return ExitCode::from(server_kit::EXIT_CONFIG);
        }
    };
    let result = runtime.block_on(async {
        let client = clients.get(found).map_err(|error| error.to_string())?;
        let device = client.start_device_authorization().await.map_err(|error| error.to_string())?;
        eprintln!(
            "To let llmbasedos read the mail of {account}, open\n    {}\nand enter the code\n    {}\n(waiting up to {} s)",
            device.verification_uri_complete.as_deref().unwrap_or(&device.verification_uri),
            device.user_code,
            device.expires_in.as_secs()
        );
        client.finish_device_authorization(&device).await.map_err(|error| error.to_string())
    });
    match result {
        Ok(()) => {
            eprintln!(
                "llmbasedos-mail: account {account} is authorized; its refresh token is stored"
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("llmbasedos-mail: {error}");
            ExitCode::FAILURE
        }
    }
}

/// The terminal's echo turned off while a secret is typed, back on when
/// dropped.
struct EchoOff(libc::termios);

impl EchoOff {
    fn new() -> Option<EchoOff> {
        // SAFETY: tcgetattr/tcsetattr on stdin with a termios we own.
        unsafe {
            let mut saved: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(0, &raw mut saved) != 0 {
                return None;
            }
            let mut quiet = saved;
            quiet.c_lflag &= !libc::ECHO;
            if libc::tcsetattr(0, libc::TCSANOW, &raw const quiet) != 0 {
                return None;
            }
            Some(EchoOff(saved))
        }
    }
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        // SAFETY: restores the settings read in `new`.
        unsafe {
            libc::tcsetattr(0, libc::TCSANOW, &raw const self.0);
        }
    }
}

/// Before any thread starts (see [`MALLOC_ARENAS`]).
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; it runs before
    // any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, MALLOC_ARENAS);
    }
}
