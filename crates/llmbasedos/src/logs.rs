//! `llmbasedos logs`: the lines `llmbasedos up` captured from its
//! services, through its control socket (`services::Manager::up`), with
//! the filters the web console shows as its equivalent command.

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use services::{LogFilter, Manager};

#[derive(clap::Args, Debug)]
pub(crate) struct LogsArgs {
    /// Only this service's lines (`fs`, `gateway`); repeatable.
    #[arg(long = "service")]
    services: Vec<String>,
    /// The least important priority shown, 0 (emerg) to 7 (debug).
    #[arg(long, value_parser = clap::value_parser!(u8).range(0..=7))]
    priority: Option<u8>,
    /// Lines written at or after this time, `@<unix seconds>`.
    #[arg(long, value_parser = unix_time)]
    since: Option<SystemTime>,
    /// Lines written at or before this time, `@<unix seconds>`.
    #[arg(long, value_parser = unix_time)]
    until: Option<SystemTime>,
    /// Lines containing this text (plain, case-insensitive).
    #[arg(long)]
    grep: Option<String>,
    /// How many of the newest matching lines.
    #[arg(short = 'n', long, default_value_t = 100)]
    lines: usize,
    /// Then keep printing new matching lines until interrupted.
    #[arg(short, long)]
    follow: bool,
}

fn unix_time(text: &str) -> Result<SystemTime, String> {
    text.strip_prefix('@')
        .and_then(|seconds| seconds.parse::<u64>().ok())
        .map(|seconds| UNIX_EPOCH + Duration::from_secs(seconds))
        .ok_or_else(|| "write a time as @<seconds since 1970>, e.g. @1767225600".to_owned())
}

pub(crate) fn run(runtime_dir: &Path, args: &LogsArgs) -> anyhow::Result<ExitCode> {
    let filter = LogFilter {
        services: args.services.clone(),
        max_priority: args.priority,
        since: args.since,
        until: args.until,
        text: args.grep.clone(),
    };
    let manager = Manager::up(services::up_socket(runtime_dir));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let page = manager
            .logs(&filter, None, args.lines.clamp(1, services::MAX_PAGE))
            .await?;
        for entry in page.entries.iter().rev() {
            print(entry);
        }
        if args.follow {
            let mut entries = manager.follow(&filter).await?;
            while let Some(entry) = entries.recv().await {
                print(&entry);
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

fn print(entry: &services::LogEntry) {
    let time = chrono::DateTime::<chrono::Utc>::from(entry.time);
    println!(
        "{} {} <{}> {}",
        time.format("%Y-%m-%dT%H:%M:%S%.3fZ"),
        entry.service,
        entry.priority,
        terminal_safe(&entry.message)
    );
}

/// Control characters (ESC, carriage returns) written as escapes: a line
/// a service wrote sends nothing to the terminal.
fn terminal_safe(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}
