//! `llmbasedos-test-server`: the framework's test server as a process.

use std::process::ExitCode;

use clap::Parser;

#[derive(Parser, Debug)]
#[command(
    name = "llmbasedos-test-server",
    about = "Test server for the llmbasedos server framework"
)]
struct Args {
    #[command(flatten)]
    serve: server_kit::ServeArgs,
    /// Print the service's caps.json and exit.
    #[arg(long)]
    print_caps: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.print_caps {
        print!("{}", test_server::CAPS);
        return ExitCode::SUCCESS;
    }
    server_kit::run("llmbasedos-test-server", &args.serve, test_server::server)
}
