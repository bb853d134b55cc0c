//! `llmbasedos licence keygen | issue | verify | show`: make signing keys,
//! issue signed licences, and check one as the gateway will; and
//! `llmbasedos status` (also `llmbasedos licence status`): every client's
//! tier, limits and token usage, from the running gateway
//! (`mcp.licence.status`), and, when the licence is not in force, how to
//! get further.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use licence::{Issuer, Terms, Tiers, TrustedKeys};
use serde_json::Value;

#[derive(clap::Args, Debug)]
pub(crate) struct LicenceArgs {
    #[command(subcommand)]
    command: LicenceCommand,
}

#[derive(clap::Subcommand, Debug)]
enum LicenceCommand {
    /// Make a signing key: NAME.key (secret, mode 0600) and NAME.pub (to
    /// put in /etc/llmbasedos/licence-keys/ of the machines it licenses).
    Keygen {
        /// Path without extension, e.g. ./vendor
        name: PathBuf,
    },
    /// Issue a signed licence with a secret key.
    Issue {
        /// The secret key (NAME.key from keygen).
        #[arg(long)]
        key: PathBuf,
        #[arg(long)]
        tier: String,
        #[arg(long)]
        licensee: String,
        /// Expiry: a date (the end of that day, UTC) or an RFC 3339 time;
        /// none: never.
        #[arg(long)]
        expires: Option<String>,
        /// Optional features, comma-separated.
        #[arg(long, value_delimiter = ',')]
        features: Vec<String>,
        /// Where to write it [default: standard output].
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Check a licence as the gateway does; exit 0 only if it is in force.
    Verify(CheckArgs),
    /// Print a licence's terms and the verdict on it.
    Show(CheckArgs),
    /// The running gateway's licence and every client's tier, limits and
    /// token usage (as `llmbasedos status`).
    Status,
}

#[derive(clap::Args, Debug)]
struct CheckArgs {
    #[arg(default_value = "/etc/llmbasedos/lic.key")]
    licence: PathBuf,
    #[arg(long, default_value = "/etc/llmbasedos/licence-keys")]
    keys_dir: PathBuf,
    #[arg(long, default_value = "/etc/llmbasedos/licence_tiers.yaml")]
    tiers: PathBuf,
    /// Accept the original's unsigned YAML key (as licence.allow_unsigned).
    #[arg(long)]
    allow_unsigned: bool,
}

pub(crate) fn run(runtime_dir: &Path, args: &LicenceArgs) -> anyhow::Result<ExitCode> {
    match &args.command {
        LicenceCommand::Status => status(runtime_dir),
        LicenceCommand::Keygen { name } => {
            let issuer = Issuer::generate()?;
            let secret = name.with_extension("key");
            let public = name.with_extension("pub");
            write_new(&secret, issuer.secret_text().as_bytes(), 0o600)?;
            write_new(&public, issuer.public_text().as_bytes(), 0o644)?;
            println!(
                "key {}: secret {} (keep it), public {} (install in /etc/llmbasedos/licence-keys/)",
                issuer.key_id(),
                secret.display(),
                public.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        LicenceCommand::Issue {
            key,
            tier,
            licensee,
            expires,
            features,
            out,
        } => {
            let issuer = Issuer::load(key)?;
            let expires = match expires {
                None => None,
                Some(text) => Some(licence::document::parse_when(text).with_context(|| {
                    format!("--expires {text:?}: give a date (2027-12-31) or an RFC 3339 time")
                })?),
            };
            let terms = Terms {
                tier: tier.clone(),
                licensee: licensee.clone(),
                issued: chrono::Utc::now(),
                expires,
                features: features.clone(),
            };
            let text = issuer.issue(&terms);
            match out {
                Some(path) => {
                    write_new(path, text.as_bytes(), 0o644)?;
                    eprintln!("wrote {} ({tier} for {licensee})", path.display());
                }
                None => print!("{text}"),
            }
            Ok(ExitCode::SUCCESS)
        }
        LicenceCommand::Verify(check) | LicenceCommand::Show(check) => {
            let tiers = Tiers::load(&check.tiers)?;
            let keys = TrustedKeys::load_dir(&check.keys_dir)?;
            let verdict = licence::document::judge(
                &check.licence,
                &keys,
                &tiers,
                check.allow_unsigned,
                chrono::Utc::now(),
            );
            if matches!(args.command, LicenceCommand::Show(_)) {
                println!("{}", serde_json::to_string_pretty(&verdict)?);
            } else {
                println!("{}: {}", verdict.tier, verdict.reason);
            }
            Ok(if verdict.is_valid() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}

/// Writes a file that must not exist yet, with `mode` from its creation.
fn write_new(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("{}: cannot create it (it must not exist)", path.display()))?;
    file.write_all(bytes)?;
    file.sync_all()?;
    Ok(())
}

/// `llmbasedos status`: the licence and every client's limits and usage.
pub(crate) fn status(runtime_dir: &Path) -> anyhow::Result<ExitCode> {
    let answer = crate::call::request(runtime_dir, "mcp.licence.status", None, 30)?;
    let status = match answer {
        Ok(status) => status,
        Err(error) => bail!("error {}: {}", error.code, error.message),
    };
    if status["licensed"] != true {
        println!("no licence section in the gateway's configuration: no limits");
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "licence: {} ({})",
        text(&status["machine_tier"]),
        text(&status["reason"])
    );
    // Not in force: what to do about it, as the gateway says it.
    if let Some(further) = status["how_to_get_further"].as_str() {
        println!("to get further: {further}");
    }
    if let Some(error) = status["reload_error"].as_str() {
        println!("reload: {error}");
    }
    println!(
        "{:<24} {:<8} {:>12} {:>12} {:>14} {:>14}",
        "client", "tier", "rate", "day used", "day left", "month left"
    );
    for client in status["clients"].as_array().into_iter().flatten() {
        let rate = &client["limits"]["rate"];
        let rate = if rate.is_null() {
            "-".to_owned()
        } else {
            format!("{}/{}s", rate["requests"], rate["window_secs"])
        };
        println!(
            "{:<24} {:<8} {:>12} {:>12} {:>14} {:>14}",
            text(&client["client"]),
            text(&client["tier"]),
            rate,
            client["usage"]["day"],
            left(&client["remaining"]["day"]),
            left(&client["remaining"]["month"]),
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn text(value: &Value) -> String {
    value
        .as_str()
        .map_or_else(|| value.to_string(), str::to_owned)
}

fn left(value: &Value) -> String {
    if value.is_null() {
        "unlimited".to_owned()
    } else {
        value.to_string()
    }
}
