//! Runs one replica of the replicated table with the dev API (for tests and benchmarks).

use clap::Parser;
use ta_raft::dev_api::ReplicaArgs;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    ta_raft::dev_api::init_logging();
    let args = ReplicaArgs::parse();
    ta_raft::dev_api::run_until_signal(args).await
}
