//! `llmbasedos web`: mints a one-time sign-in URL for the web console
//! (`web::bootstrap::mint`) and prints it. The token is in the URL's
//! fragment, valid 5 minutes and usable once; only its SHA-256 is written,
//! to the console's bootstrap directory.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;

#[derive(clap::Args, Debug)]
pub(crate) struct WebArgs {
    /// The console's configuration (default: the one `llmbasedos up`
    /// wrote while it runs, else /etc/llmbasedos/web.yaml), read for its
    /// address and bootstrap directory.
    #[arg(long, env = "LLMBASEDOS_WEB_CONFIG")]
    config: Option<PathBuf>,
    /// Where the console looks for tokens [default: <runtime dir>/web
    /// while `llmbasedos up` runs, else web.yaml's bootstrap_dir].
    #[arg(long)]
    bootstrap_dir: Option<PathBuf>,
    /// The console's address as the browser reaches it [default:
    /// http://<web.yaml's listen>].
    #[arg(long)]
    url: Option<String>,
}

pub(crate) fn run(runtime_dir: &Path, args: &WebArgs) -> anyhow::Result<ExitCode> {
    let under_up = services::up_socket(runtime_dir).exists();
    // Under `up`, the configuration it wrote for its console.
    let written = runtime_dir.join("web.yaml");
    let config = match &args.config {
        None if under_up && written.is_file() => web::config::Config::load(Some(&written))?,
        given => web::config::Config::load(given.as_deref())?,
    };
    let dir = match &args.bootstrap_dir {
        Some(dir) => dir.clone(),
        None if under_up && std::env::var_os(web::config::BOOTSTRAP_DIR_VARIABLE).is_none() => {
            runtime_dir.join("web")
        }
        None => config.bootstrap_dir.clone(),
    };
    let minted = web::bootstrap::mint(&dir).context("cannot mint a sign-in link")?;
    let base = args
        .url
        .clone()
        .unwrap_or_else(|| format!("http://{}", config.listen));
    println!("{}", minted.url(&base));
    eprintln!("Open it in a browser on this machine within 5 minutes; it works once.");
    Ok(ExitCode::SUCCESS)
}
