//! `target-allocator check-config`, run as the built binary: exit codes 0, 64 and 66, the
//! problems as `FILE:LINE: key.path: message`, and the summary of a valid file.

use std::path::PathBuf;
use std::process::Command;
use std::process::Output;

fn testdata(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/testdata/config")
        .join(name)
}

fn check_config(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_target-allocator"));
    command
        .arg("check-config")
        .args(args)
        .env_remove("OTELCOL_NAMESPACE")
        .env_remove("ALLOW_INSECURE_AUTH_SECRETS")
        .env("HOSTNAME", "cli-host");
    for (k, v) in env {
        command.env(k, v);
    }
    command.output().expect("the binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn a_valid_file_exits_0_with_a_summary() {
    let file = testdata("full.yaml");
    let output = check_config(&[file.to_str().expect("utf-8 path")], &[]);
    let stdout = text(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "stdout:\n{stdout}\nstderr:\n{}",
        text(&output.stderr)
    );
    for expected in [
        "valid",
        "jobs: 4",
        "static-job: static: 2 targets; 3 relabel rules",
        "files: file_sd: 1; 0 relabel rules",
        "dns: dns_sd: 2",
        "strategy: per-node, fallback consistent-hashing",
        "filter strategy: relabel-config",
        "collectors: static: collector-0, collector-1",
        "register on poll (ttl 2m0s)",
        "cluster: this replica \"ta-1\"",
        "ta-2=http://ta-2.ta-peers:7500",
    ] {
        assert!(stdout.contains(expected), "summary lacks {expected:?}:\n{stdout}");
    }
}

#[test]
fn an_operator_file_reports_kubernetes_collectors_and_a_single_replica() {
    let file = testdata("operator.yaml");
    let output = check_config(
        &[file.to_str().expect("utf-8 path")],
        &[("OTELCOL_NAMESPACE", "monitoring")],
    );
    let stdout = text(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "stderr:\n{}", text(&output.stderr));
    assert!(stdout.contains("kubernetes_sd (pod): 1"), "{stdout}");
    assert!(
        stdout.contains("strategy: consistent-hashing (ring layout v1.0.0)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("kubernetes pods in namespace \"monitoring\""),
        "{stdout}"
    );
    assert!(
        stdout.contains("app.kubernetes.io/component=opentelemetry-collector"),
        "{stdout}"
    );
    assert!(
        stdout.contains("no cluster section: single replica \"cli-host\""),
        "{stdout}"
    );
}

#[test]
fn an_invalid_file_exits_64_listing_every_problem() {
    let file = testdata("several_problems.yaml");
    let path = file.to_str().expect("utf-8 path");
    let output = check_config(&[path], &[]);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(64), "stderr:\n{stderr}");
    for expected in [
        format!("{path}:1: allocation_strategy: unregistered strategy"),
        format!("{path}:12: config.scrape_configs[0].relabel_configs[0].regex: invalid regex"),
        format!("{path}:14: config.scrape_configs[1].job_name: found multiple scrape configs"),
        format!("{path}:22: cluster.raft.election_timeout_min:"),
    ] {
        assert!(stderr.contains(&expected), "missing {expected:?} in:\n{stderr}");
    }
    assert!(output.stdout.is_empty(), "no summary for an invalid file");
}

#[test]
fn warnings_are_printed_and_do_not_fail_the_check() {
    let file = testdata("unknown_keys.yaml");
    let path = file.to_str().expect("utf-8 path");
    let output = check_config(&[path], &[]);
    assert_eq!(output.status.code(), Some(0));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains(&format!("warning: {path}:5: https.enabeld: unknown key")),
        "{stderr}"
    );
}

#[test]
fn a_missing_file_exits_66_with_a_clear_message() {
    let output = check_config(&["/nonexistent/targetallocator.yaml"], &[]);
    assert_eq!(output.status.code(), Some(66));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("cannot read the configuration file /nonexistent/targetallocator.yaml"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn upstream_flags_are_accepted_and_the_file_can_come_from_config_file() {
    let file = testdata("minimal.yaml");
    let flag = format!("--config-file={}", file.to_str().expect("utf-8 path"));
    let output = check_config(
        &[
            &flag,
            "--listen-addr",
            ":9999",
            "--enable-https-server=false",
            "--zap-log-level=info",
            "--zap-encoder=json",
        ],
        &[],
    );
    assert_eq!(output.status.code(), Some(0), "stderr:\n{}", text(&output.stderr));
    assert!(text(&output.stdout).contains("node: static: 1 target; 0 relabel rules"));
}
