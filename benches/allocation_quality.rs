//! Prints the allocation-quality table (docs/benchmarks.md, "Allocation quality") for all four strategies
//! side by side, from one run: max/mean, RSD, fraction moved on a join and on a leave, and a
//! rolling restart of every collector beyond and within the grace period.
//!
//! `cargo bench --bench allocation_quality` (sizes: 10/30/100 collectors, 10k/100k targets);
//! `-- --quick` for 10/30 collectors and 10k targets only.

use std::time::Instant;

use target_allocator::allocation::simulation::quality_report;

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (collectors, targets): (&[usize], &[usize]) = if quick {
        (&[10, 30], &[10_000])
    } else {
        (&[10, 30, 100], &[10_000, 100_000])
    };
    let started = Instant::now();
    let report = quality_report(collectors, targets, 42, |step| {
        eprintln!("[{:>6.1}s] measuring {step}", started.elapsed().as_secs_f64());
    });
    match report {
        Ok(table) => println!("{table}"),
        Err(e) => {
            eprintln!("allocation_quality: {e}");
            std::process::exit(1);
        }
    }
}
