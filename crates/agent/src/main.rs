//! `llmbasedos-agent`: the workflow engine as a process. Loads the
//! configuration, opens the store, loads and watches the workflows, and
//! hands the server to `server_kit::run`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

#[derive(Parser, Debug)]
#[command(
    name = "llmbasedos-agent",
    about = "The llmbasedos workflow engine: YAML workflows over MCP methods, the LLM, HTTP and Docker"
)]
struct Args {
    #[command(flatten)]
    serve: server_kit::ServeArgs,
    /// Configuration file (default: /etc/llmbasedos/agent.yaml; a missing
    /// default file means the defaults).
    #[arg(long, env = "LLMBASEDOS_AGENT_CONFIG")]
    config: Option<PathBuf>,
    /// Print the service's caps.json and exit.
    #[arg(long)]
    print_caps: bool,
    /// Print the JSON Schema of the workflow format and exit.
    #[arg(long)]
    print_workflow_schema: bool,
    /// Check workflow files (errors with file, line and fix) and exit;
    /// several may follow one --check (as a shell glob expands).
    #[arg(long, value_name = "FILE", num_args = 1..)]
    check: Vec<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.print_caps {
        print!("{}", agent::CAPS);
        return ExitCode::SUCCESS;
    }
    if args.print_workflow_schema {
        print!("{}", agent::WORKFLOW_SCHEMA);
        return ExitCode::SUCCESS;
    }
    if !args.check.is_empty() {
        let templates = agent::template::Templates::new();
        let mut failed = false;
        for path in &args.check {
            let file = path.display().to_string();
            let outcome = std::fs::read_to_string(path)
                .map_err(|error| format!("{file}: {error}"))
                .and_then(|text| {
                    agent::load::parse(&text, &file, &templates).map_err(|e| e.to_string())
                });
            match outcome {
                Ok(workflow) => println!(
                    "{file}: workflow {} ({} steps) is valid",
                    workflow.id,
                    workflow.steps.len()
                ),
                Err(error) => {
                    eprintln!("{error}");
                    failed = true;
                }
            }
        }
        return if failed {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        };
    }
    let config = args.config.clone();
    server_kit::run("llmbasedos-agent", &args.serve, move || {
        let config = agent::config::Config::load(config.as_deref())?;
        let (engine, watcher) = agent::engine(&config)?;
        agent::run_schedules(engine.clone()).map_err(|error| error.to_string())?;
        agent::server(engine, watcher).map_err(|error| error.to_string())
    })
}
