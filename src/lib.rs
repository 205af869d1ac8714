//! The target allocator service: configuration, discovery, relabeling, allocation
//! strategies and the planner, the leader loop, the read model and the upstream-compatible
//! HTTP API, metrics, and the command line (`serve` by default, `demo`, `status`,
//! `check-config`, `recover`).
//!
//! ```text
//!  config ─► discovery ─► pipeline (desired targets) ─► leader (planner) ─► ta_raft::Replica
//!                                                                              │ table
//!                                          api ◄── read_model ◄───────────────┘
//! ```

pub mod allocation;
pub mod api;
pub mod blocking;
pub mod cli;
pub mod config;
pub mod demo;
pub mod discovery;
pub mod go_duration;
pub mod html;
pub mod kubernetes;
pub mod leader;
pub mod memory;
pub mod metrics;
pub mod pipeline;
pub mod prometheus_duration;
pub mod read_model;
pub mod registration;
pub mod relabel;
pub mod secrets;
pub mod service;
pub mod status;
pub mod targets;
pub mod tls;
pub mod url_escape;

use std::process::ExitCode;

use cli::Cli;
use cli::Command;

/// Run the command line `cli`.
pub fn run(cli: Cli) -> ExitCode {
    memory::tune_allocator();
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
            None => serve(&cli.upstream).await,
            Some(Command::Replica(args)) => ta_raft::dev_api::run_until_signal(args).await,
            Some(Command::CheckConfig(args)) => config::check::run(&args),
            Some(Command::Status(args)) => status::run(&args).await,
            Some(Command::Recover(args)) => recover(args).await,
            Some(Command::Demo(args)) => match demo::run(args).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("target-allocator demo: {e}");
                    ExitCode::from(1)
                }
            },
        }
    })
}

/// `target-allocator recover`: the work is `ta_raft::recover`; this maps its outcome to
/// output and sysexits-style codes (64 usage, 65 data, 75 try again once the replica stops).
async fn recover(args: cli::RecoverArgs) -> ExitCode {
    use ta_raft::recover::Destination;
    use ta_raft::recover::RecoverError;
    let request = ta_raft::recover::RecoverRequest {
        data_dir: args.data_dir,
        destination: match args.output {
            Some(output) => Destination::NewDirectory(output),
            None => Destination::InPlace,
        },
        confirmed_new_cluster: args.yes_form_a_new_cluster_from_this_replica,
    };
    match ta_raft::recover::recover(request).await {
        Ok(report) => {
            println!("{report}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("target-allocator recover: {error}");
            ExitCode::from(match error {
                RecoverError::NotConfirmed
                | RecoverError::OutputNotEmpty { .. }
                | RecoverError::OutputIsDataDirectory { .. } => 64,
                RecoverError::NotADataDirectory { .. }
                | RecoverError::NoIdentity { .. }
                | RecoverError::NothingApplied { .. } => 65,
                RecoverError::ReplicaRunning { .. } => 75,
                _ => 1,
            })
        }
    }
}

/// Load the configuration (every problem reported, before any port opens), then run one
/// replica until SIGTERM or SIGINT.
async fn serve(flags: &config::UpstreamFlags) -> ExitCode {
    let loaded = match config::load(flags, &config::process_environment) {
        Ok(loaded) => loaded,
        Err(config::LoadError::Invalid { problems, warnings }) => {
            for warning in &warnings {
                eprintln!("warning: {warning}");
            }
            for problem in &problems {
                eprintln!("{problem}");
            }
            eprintln!(
                "{}: {} problem(s); not starting",
                flags.config_file.display(),
                problems.len()
            );
            return ExitCode::from(config::check::EXIT_INVALID);
        }
        Err(unreadable @ config::LoadError::Unreadable { .. }) => {
            eprintln!("{unreadable}");
            return ExitCode::from(config::check::EXIT_UNREADABLE);
        }
    };
    for warning in &loaded.warnings {
        tracing::warn!(%warning, "configuration");
    }
    match service::run(loaded.config, service::shutdown_on_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("target-allocator: {e}");
            ExitCode::from(1)
        }
    }
}
