//! Running the commands backends are made of (`docker`, `ip`, `iptables`, `nsenter`, `kill`):
//! one way to run them and one error for what they printed when they fail.

use std::process::Command;

use super::BackendError;

/// Run a command to completion: its trimmed stdout, or [`BackendError::Command`] with what it
/// printed on both streams when it exits non-zero.
pub fn run(program: &str, arguments: &[&str]) -> Result<String, BackendError> {
    run_with_environment(program, arguments, &[])
}

/// Whether the command exits with success; for probes whose failure is an answer.
pub fn succeeds(program: &str, arguments: &[&str]) -> bool {
    run(program, arguments).is_ok()
}

/// [`run`] with extra environment variables.
pub fn run_with_environment(
    program: &str,
    arguments: &[&str],
    environment: &[(&str, &str)],
) -> Result<String, BackendError> {
    let command = std::iter::once(program)
        .chain(arguments.iter().copied())
        .collect::<Vec<_>>()
        .join(" ");
    let output = Command::new(program)
        .args(arguments)
        .envs(environment.iter().copied())
        .output()
        .map_err(|source| BackendError::Spawn {
            command: command.clone(),
            source,
        })?;
    let stdout = String::from_utf8_lossy(&output.stdout).trim().to_string();
    if output.status.success() {
        return Ok(stdout);
    }
    let stderr = String::from_utf8_lossy(&output.stderr).trim().to_string();
    let printed = [stderr.as_str(), stdout.as_str()]
        .into_iter()
        .filter(|text| !text.is_empty())
        .collect::<Vec<_>>()
        .join("\n");
    Err(BackendError::Command {
        command,
        output: format!("{} ({})", printed, output.status),
    })
}
