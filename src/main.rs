//! `target-allocator`: parses arguments and hands them to the library.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = target_allocator::cli::Cli::parse();
    target_allocator::run(cli)
}
