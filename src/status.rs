//! `target-allocator status --endpoint URL`: one line per replica (role, term, revision,
//! lag) and the allocation every replica agrees on (collectors, targets, balance), from any
//! replica's `/debug/status`.

use std::process::ExitCode;
use std::time::Duration;

use crate::api::ClusterStatus;
use crate::cli::StatusArgs;

/// Fetch and print; exit 1 when the endpoint cannot be read.
pub async fn run(args: &StatusArgs) -> ExitCode {
    let url = format!("{}/debug/status", args.endpoint.trim_end_matches('/'));
    let client = match reqwest::Client::builder().timeout(Duration::from_secs(5)).build() {
        Ok(client) => client,
        Err(e) => {
            eprintln!("target-allocator status: {e}");
            return ExitCode::from(1);
        }
    };
    let response = match client.get(&url).send().await {
        Ok(response) => response,
        Err(e) => {
            eprintln!("target-allocator status: cannot reach {url}: {e}");
            return ExitCode::from(1);
        }
    };
    let status: ClusterStatus = match response.json().await {
        Ok(status) => status,
        Err(e) => {
            eprintln!("target-allocator status: {url} did not answer with a status: {e}");
            return ExitCode::from(1);
        }
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&status).unwrap_or_default());
    } else {
        print!("{}", render(&status));
    }
    ExitCode::SUCCESS
}

/// The status as a table.
pub fn render(status: &ClusterStatus) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "{:<20} {:<12} {:>6} {:>10} {:>6}  {}\n",
        "REPLICA", "ROLE", "TERM", "REVISION", "LAG", "NOTE"
    ));
    for row in &status.replicas {
        let lag = row.lag.map_or("-".to_string(), |lag| lag.to_string());
        let note = match (&row.error, row.stale) {
            (Some(e), _) => e.clone(),
            (None, true) => "stale: not serving (503)".to_string(),
            (None, false) => String::new(),
        };
        out.push_str(&format!(
            "{:<20} {:<12} {:>6} {:>10} {:>6}  {}\n",
            row.name, row.role, row.term, row.revision, lag, note
        ));
    }
    let balance = status
        .balance
        .map_or("-".to_string(), |balance| format!("{balance:.3}"));
    out.push_str(&format!(
        "\nstrategy {}: {} collectors, {} targets ({} unassigned), balance max/mean {}\n",
        status.strategy, status.collectors, status.targets, status.unassigned, balance
    ));
    // Only the replica answering: every replica runs its own discovery.
    if !status.discovery.synced {
        out.push_str("discovery: not every source has completed its first round yet\n");
    }
    for failing in &status.discovery.errors {
        out.push_str(&format!(
            "discovery error: job {} {}: {}\n",
            failing.job, failing.source, failing.error
        ));
    }
    out
}
