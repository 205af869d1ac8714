//! The README's first command: `target-allocator demo` starts three real replicas from the
//! built-in example, prints the guide, and reports that nothing moved.

use std::process::Command;

#[test]
fn the_demo_starts_three_replicas_and_reports_no_moves() {
    let data = tempfile::tempdir().expect("temporary directory");
    let output = Command::new(env!("CARGO_BIN_EXE_target-allocator"))
        .args(["demo", "--run-for", "7", "--base-port", "18780", "--data-dir"])
        .arg(data.path())
        .output()
        .expect("the demo runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "demo failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(stdout.contains("Leader"), "no leader reported:\n{stdout}");
    assert!(
        stdout.contains("http://127.0.0.1:18780"),
        "no replica URL printed:\n{stdout}"
    );
    assert!(
        stdout.contains("targets moved since start: 0 of 14"),
        "expected the example's 14 targets and no moves:\n{stdout}"
    );
}
