//! `target-allocator recover`, run as the built binary: its refusals and their exit codes
//! (the recovery itself is tested in ta-raft: raft/src/recover.rs and raft/tests/recover.rs).

use std::process::Command;
use std::process::Output;

fn recover(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_target-allocator"))
        .arg("recover")
        .args(args)
        .output()
        .expect("the binary runs")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn refuses_without_the_confirmation_flag_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let output_dir = dir.path().join("out");
    let output = recover(&[
        "--data-dir",
        dir.path().to_str().unwrap(),
        "--output",
        output_dir.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(64), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("--yes-form-a-new-cluster-from-this-replica"),
        "{}",
        stderr(&output)
    );
    assert!(!output_dir.exists());
}

#[test]
fn refuses_a_directory_without_replica_state() {
    let dir = tempfile::tempdir().unwrap();
    let output = recover(&[
        "--data-dir",
        dir.path().to_str().unwrap(),
        "--in-place",
        "--yes-form-a-new-cluster-from-this-replica",
    ]);
    assert_eq!(output.status.code(), Some(65), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("not a replica data directory"),
        "{}",
        stderr(&output)
    );
    assert!(
        std::fs::read_dir(dir.path()).unwrap().next().is_none(),
        "recover wrote into it"
    );
}

#[test]
fn needs_exactly_one_of_output_and_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_str().unwrap();
    let neither = recover(&["--data-dir", data_dir, "--yes-form-a-new-cluster-from-this-replica"]);
    assert_eq!(neither.status.code(), Some(2), "{}", stderr(&neither));
    let both = recover(&[
        "--data-dir",
        data_dir,
        "--output",
        "/tmp/x",
        "--in-place",
        "--yes-form-a-new-cluster-from-this-replica",
    ]);
    assert_eq!(both.status.code(), Some(2), "{}", stderr(&both));
}
