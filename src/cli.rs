//! Command-line interface of `target-allocator`.

use std::path::PathBuf;

use clap::Parser;
use clap::Subcommand;
use ta_raft::dev_api::ReplicaArgs;

/// A highly-available, upstream-compatible OpenTelemetry Target Allocator.
///
/// Three (or five) replicas form a Raft group that replicates the target→collector table,
/// so any replica serves the same answer and losing a replica moves no target.
#[derive(Parser, Debug)]
#[command(version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Start a local 3-replica cluster with a built-in example and a short guide; Ctrl-C stops it.
    Demo(DemoArgs),
    /// Run one replica of the replicated table with its development API.
    Replica(ReplicaArgs),
    /// Check a configuration file: list every problem (exit 64), or summarise it (exit 0).
    CheckConfig(crate::config::check::CheckConfigArgs),
}

/// Settings of `target-allocator demo`.
#[derive(clap::Args, Debug, Clone)]
pub struct DemoArgs {
    /// First port to use: peers listen on BASE..BASE+2, dev APIs on BASE+10..BASE+12.
    #[arg(long, default_value_t = 7400)]
    pub base_port: u16,
    /// Keep the replicas' data here instead of a temporary directory removed on exit.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}
