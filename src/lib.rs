//! The target allocator service: command line, and (in later issues) configuration,
//! discovery, allocation strategies, the leader loop and the upstream-compatible HTTP API.
//!
//! Today it runs replicas of the replicated assignment table (`ta-raft`) and a local demo,
//! and holds the first, self-contained parts of the allocation engine: duration syntaxes,
//! the relabel engine, target building and upstream's consistent-hashing ring.

pub mod allocation;
pub mod cli;
pub mod config;
pub mod demo;
pub mod discovery;
pub mod go_duration;
pub mod html;
pub mod pipeline;
pub mod prometheus_duration;
pub mod relabel;
pub mod secrets;
pub mod targets;

use std::process::ExitCode;

use cli::Cli;
use cli::Command;

/// Run the command line `cli`.
pub fn run(cli: Cli) -> ExitCode {
    ta_raft::dev_api::init_logging();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("target-allocator: cannot start the async runtime: {e}");
            return ExitCode::from(70);
        }
    };
    runtime.block_on(async {
        match cli.command {
            Command::Replica(args) => ta_raft::dev_api::run_until_signal(args).await,
            Command::CheckConfig(args) => config::check::run(&args),
            Command::Demo(args) => match demo::run(args).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("target-allocator demo: {e}");
                    ExitCode::from(1)
                }
            },
        }
    })
}
