//! The chaos suite's CI profile, run by `cargo test`: every fault once against a real
//! three-replica cluster of the release binary, on Docker when the engine is usable and in
//! network namespaces otherwise. Fails on any violation and prints the seed; set
//! `TA_CHAOS_SEED` to replay one.
//!
//! Both backends need root. Without a usable one it says why and passes, unless
//! `TA_REQUIRE_CHAOS=1` (set by `.ci/test`) makes that a failure. `TA_CHAOS_BACKEND=netns`
//! forces a backend.

mod support;

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use chaos_tests::backend;
use chaos_tests::backend::BackendKind;
use chaos_tests::run::Profile;
use chaos_tests::run::RunOptions;

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The release binary: `$TA_CHAOS_BINARY` as given, else built if needed (a no-op when CI's
/// release build already made it).
fn release_binary() -> PathBuf {
    if let Some(binary) = std::env::var_os("TA_CHAOS_BINARY") {
        return PathBuf::from(binary);
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let mut build = Command::new(cargo);
    // The variables cargo sets for this test (`CARGO_PKG_NAME`, …) would reach the build
    // scripts of the build below, which then rebuild what `.ci/test` had just built.
    for (name, _) in std::env::vars_os() {
        let name_text = name.to_string_lossy();
        if name_text.starts_with("CARGO_") && name_text != "CARGO_HOME" && name_text != "CARGO_TARGET_DIR" {
            build.env_remove(&name);
        }
    }
    let status = build
        .current_dir(workspace())
        .args(["build", "--release", "--bin", "target-allocator"])
        .status()
        .expect("run cargo build");
    assert!(status.success(), "cargo build --release --bin target-allocator failed");
    support::release_binary().expect("cargo build --release made the binary")
}

#[test]
fn every_fault_once_loses_nothing_and_moves_nothing() {
    let required = std::env::var("TA_REQUIRE_CHAOS").is_ok_and(|value| value == "1");
    let backend = match std::env::var("TA_CHAOS_BACKEND").as_deref() {
        Ok("netns") => BackendKind::Netns,
        Ok("docker") => BackendKind::Docker,
        _ => match (
            backend::usable(BackendKind::Docker),
            backend::usable(BackendKind::Netns),
        ) {
            (Ok(()), _) => BackendKind::Docker,
            (Err(docker), Ok(())) => {
                eprintln!("{docker}; using the netns backend");
                BackendKind::Netns
            }
            (Err(docker), Err(netns)) => {
                assert!(!required, "the chaos suite cannot run here: {docker}; {netns}");
                eprintln!("skipped: {docker}; {netns}");
                return;
            }
        },
    };
    let seed = std::env::var("TA_CHAOS_SEED")
        .ok()
        .map(|seed| seed.parse().expect("TA_CHAOS_SEED must be a number"))
        .unwrap_or_else(rand::random);
    eprintln!("chaos CI profile: seed {seed} (replay with TA_CHAOS_SEED={seed}), backend {backend}");
    let options = RunOptions {
        backend,
        profile: Profile::Ci,
        seed,
        duration: std::time::Duration::ZERO,
        replicas: 3,
        binary: release_binary(),
        out_dir: workspace().join(format!("target/chaos/ci-{seed}")),
        faults: Vec::new(),
    };
    let started = Instant::now();
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let outcome = runtime
        .block_on(chaos_tests::run::run(options, chaos_tests::shutdown::Shutdown::new()))
        .unwrap_or_else(|error| panic!("the chaos run with seed {seed} failed: {error}"));
    eprintln!("{}", outcome.report.to_markdown());
    eprintln!(
        "chaos CI profile: seed {seed}, {:.0} s, reports in {}",
        started.elapsed().as_secs_f64(),
        outcome.out_dir.display()
    );
    assert!(
        outcome.report.passed(),
        "{} violations with seed {seed} (replay with TA_CHAOS_SEED={seed}); see {}",
        outcome.report.violations.len(),
        outcome.out_dir.display()
    );
}
