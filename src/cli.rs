//! Command-line interface of `target-allocator`.

use std::path::PathBuf;

use clap::Parser;
use clap::Subcommand;
use ta_raft::dev_api::ReplicaArgs;

use crate::config::UpstreamFlags;

/// A highly-available, upstream-compatible OpenTelemetry Target Allocator.
///
/// Without a subcommand, runs one replica with upstream's flags (`--config-file`,
/// `--listen-addr`, ...). Three (or five) replicas form a Raft group that replicates the
/// target→collector table, so any replica serves the same answer and losing a replica moves
/// no target.
#[derive(Parser, Debug)]
#[command(version, propagate_version = true, args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(flatten)]
    pub upstream: UpstreamFlags,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Start a local 3-replica cluster with a built-in example and a short guide; Ctrl-C stops it.
    Demo(DemoArgs),
    /// Print a table of every replica: role, term, revision, lag, collectors, targets, balance.
    Status(StatusArgs),
    /// Check a configuration file: list every problem (exit 64), or summarise it (exit 0).
    CheckConfig(crate::config::check::CheckConfigArgs),
    /// OFFLINE quorum-loss recovery: turn a stopped replica's data into the sole member of a
    /// NEW cluster holding the table it had applied; the other replicas then rejoin with
    /// empty volumes. See docs/operations.md, "Quorum loss".
    Recover(RecoverArgs),
    /// Run one bare replica of the replicated table with its development API (for the
    /// storage and Raft test suites; not the allocator).
    #[command(hide = true)]
    Replica(ReplicaArgs),
}

/// Settings of `target-allocator demo`.
#[derive(clap::Args, Debug, Clone)]
pub struct DemoArgs {
    /// First port to use: replicas serve HTTP on BASE..BASE+2 and talk Raft on BASE+10..BASE+12.
    #[arg(long, default_value_t = 8480)]
    pub base_port: u16,
    /// Keep the replicas' data here instead of a temporary directory removed on exit.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Stop after this many seconds instead of waiting for Ctrl-C (for scripted runs).
    #[arg(long, hide = true)]
    pub run_for: Option<u64>,
}

/// Settings of `target-allocator status`.
#[derive(clap::Args, Debug, Clone)]
pub struct StatusArgs {
    /// Any replica's HTTP address, e.g. http://127.0.0.1:8480.
    #[arg(long, default_value = "http://127.0.0.1:8480")]
    pub endpoint: String,
    /// Print the raw JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Settings of `target-allocator recover`.
#[derive(clap::Args, Debug, Clone)]
pub struct RecoverArgs {
    /// The surviving replica's data directory (its `cluster.data_dir`). The replica must be
    /// stopped.
    #[arg(long)]
    pub data_dir: PathBuf,
    /// Write the new state to this new or empty directory and leave --data-dir untouched
    /// (the safer choice when the directory can be swapped afterwards).
    #[arg(long, required_unless_present = "in_place", conflicts_with = "in_place")]
    pub output: Option<PathBuf>,
    /// Replace the state inside --data-dir (for a volume's mount point). The old state is
    /// moved to <data-dir>/pre-recovery-<millis>/, never deleted.
    #[arg(long)]
    pub in_place: bool,
    /// Confirm that this forms a new cluster from this replica alone: the other replicas must
    /// be wiped, and entries this replica had not applied are lost.
    #[arg(long)]
    pub yes_form_a_new_cluster_from_this_replica: bool,
}
