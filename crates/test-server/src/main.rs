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
    /// Also offer this many plain tools (`mcp.test.extra_001` …) that write
    /// log lines: a long tool list and a log source for benchmarks.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u16).range(0..=1000))]
    extra_tools: u16,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let extra = usize::from(args.extra_tools);
    if args.print_caps {
        print!("{}", test_server::caps_with_extra_tools(extra));
        return ExitCode::SUCCESS;
    }
    server_kit::run("llmbasedos-test-server", &args.serve, || {
        test_server::server_with_extra_tools(extra)
    })
}
