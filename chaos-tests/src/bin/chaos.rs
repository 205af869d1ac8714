//! `chaos`: the chaos suite's command line. Parses arguments and calls the library.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use chaos_tests::backend::BackendKind;
use chaos_tests::faults::Fault;
use chaos_tests::run::Profile;
use chaos_tests::run::RunOptions;
use clap::Parser;
use clap::Subcommand;

#[derive(Parser)]
#[command(
    name = "chaos",
    about = "Inject real faults into a real target-allocator cluster under target and collector churn, and check the invariants on what every replica served",
    long_about = None,
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start a cluster, run a fault schedule, and write the report (exit 1 on any violation).
    Run(RunArgs),
    /// Judge a saved history.json again and print its report.
    Check {
        /// A history.json written by `chaos run`.
        history: PathBuf,
    },
    /// Remove containers, networks, images, volumes and namespaces left by crashed runs.
    Cleanup,
}

#[derive(clap::Args)]
struct RunArgs {
    /// Where the replicas run.
    #[arg(long, value_enum, default_value_t = BackendKind::Docker)]
    backend: BackendKind,
    /// `ci`: every fault once (a few minutes). `soak`: random faults for --duration.
    #[arg(long, value_enum, default_value_t = Profile::Ci)]
    profile: Profile,
    /// Seed of the fault schedule and the workload; random (and printed) when absent.
    #[arg(long)]
    seed: Option<u64>,
    /// How long a soak injects faults, e.g. `30m`, `90s`, `1h`.
    #[arg(long, default_value = "30m", value_parser = parse_duration)]
    duration: Duration,
    /// Replicas in the cluster (3 or 5).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(3..=5))]
    replicas: u8,
    /// The release target-allocator binary.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../target/release/target-allocator"))]
    binary: PathBuf,
    /// Where to write history.json, report.json, report.md and timeline.svg
    /// [default: target/chaos/<seed>].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Only these faults (repeat the flag); all when absent.
    #[arg(long = "fault", value_enum)]
    faults: Vec<Fault>,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let split = text
        .find(|character: char| !character.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration like 30m"))?;
    let seconds = match unit {
        "" | "s" => number,
        "m" => number * 60,
        "h" => number * 3600,
        _ => return Err(format!("unknown unit `{unit}` in `{text}` (use s, m or h)")),
    };
    Ok(Duration::from_secs(seconds))
}

fn main() -> ExitCode {
    match run_cli() {
        Ok(code) => code,
        Err(error) => {
            eprintln!("chaos: {error:#}");
            ExitCode::from(2)
        }
    }
}

fn run_cli() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => run(args),
        Command::Check { history } => {
            let text = std::fs::read_to_string(&history).with_context(|| format!("reading {}", history.display()))?;
            let history: chaos_tests::History =
                serde_json::from_str(&text).with_context(|| format!("parsing {}", history.display()))?;
            let report = chaos_tests::check(&history);
            println!("{}", report.to_markdown());
            Ok(if report.passed() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Cleanup => {
            for removed in chaos_tests::backend::remove_leftovers() {
                println!("{removed}");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    if !args.binary.exists() {
        anyhow::bail!(
            "{} does not exist: build it with `cargo build --release --bin target-allocator` or pass --binary",
            args.binary.display()
        );
    }
    let seed = args.seed.unwrap_or_else(rand::random);
    let out = args.out.unwrap_or_else(|| {
        PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../target/chaos")).join(seed.to_string())
    });
    let options = RunOptions {
        backend: args.backend,
        profile: args.profile,
        seed,
        duration: args.duration,
        replicas: usize::from(args.replicas),
        binary: args.binary,
        out_dir: out,
        faults: args.faults,
    };
    let runtime = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
    let outcome = runtime.block_on(async move {
        let interrupt = chaos_tests::shutdown::Shutdown::new();
        let on_signal = interrupt.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!("interrupted: finishing the fault under way, then the quiet end, teardown and the verdict (Ctrl-C again to quit at once)");
                on_signal.cancel();
            }
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!("quitting without teardown: `chaos cleanup` removes what is left");
                std::process::exit(130);
            }
        });
        chaos_tests::run::run(options, interrupt).await
    });
    let outcome = outcome.with_context(|| format!("chaos run with seed {seed} failed"))?;
    println!("{}", outcome.report.to_markdown());
    eprintln!("seed {seed}; reports in {}", outcome.out_dir.display());
    Ok(if outcome.report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
