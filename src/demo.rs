//! `target-allocator demo`: a local 3-replica cluster with a built-in example.
//!
//! Each replica runs as a child process of this binary (`target-allocator replica ...`), so
//! killing one is a real crash. The demo commits a small example table, prints every
//! replica's URL and a short guide, then reports roles, revisions and whether any target moved
//! until Ctrl-C, when it stops the replicas and cleans up.

use std::path::Path;
use std::path::PathBuf;
use std::process::Child;
use std::process::Stdio;
use std::time::Duration;
use std::time::Instant;

use ta_raft::CollectorState;
use ta_raft::CommandBuilder;
use ta_raft::Expect;
use ta_raft::TargetId;
use ta_raft::dev_api::StatusView;
use ta_raft::dev_api::TableView;

use crate::cli::DemoArgs;

const REPLICAS: usize = 3;
const COLLECTORS: [&str; 3] = ["collector-0", "collector-1", "collector-2"];
const STARTUP_LIMIT: Duration = Duration::from_secs(20);

/// Why the demo could not run.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("cannot prepare the data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start replica {name}: {source}")]
    Spawn {
        name: String,
        #[source]
        source: std::io::Error,
    },
    #[error("replica {name} exited during startup; last lines of {log}:\n{tail}")]
    ReplicaExited { name: String, log: PathBuf, tail: String },
    #[error("no leader was elected within {0:?}")]
    NoLeader(Duration),
    #[error("the example could not be committed: {0}")]
    Example(String),
}

struct Replica {
    name: String,
    client_url: String,
    log: PathBuf,
    child: Child,
}

/// Run the demo until Ctrl-C.
pub async fn run(args: DemoArgs) -> Result<(), DemoError> {
    let temporary;
    let root: PathBuf = match &args.data_dir {
        Some(dir) => dir.clone(),
        None => {
            temporary = tempfile::Builder::new()
                .prefix("target-allocator-demo-")
                .tempdir()
                .map_err(|source| DemoError::DataDir {
                    path: std::env::temp_dir(),
                    source,
                })?;
            temporary.path().to_path_buf()
        }
    };
    std::fs::create_dir_all(&root).map_err(|source| DemoError::DataDir {
        path: root.clone(),
        source,
    })?;
    println!("starting {REPLICAS} replicas (data and logs in {})", root.display());
    let mut replicas = spawn_replicas(&root, args.base_port)?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("static client configuration");

    let outcome = async {
        let leader = wait_for_leader(&http, &mut replicas).await?;
        commit_example(&http, &replicas, leader).await?;
        print_guide(&http, &replicas).await;
        watch(&http, &mut replicas).await;
        Ok(())
    }
    .await;

    println!("\nstopping the replicas");
    for replica in &mut replicas {
        terminate(&mut replica.child);
    }
    outcome
}

fn spawn_replicas(root: &Path, base_port: u16) -> Result<Vec<Replica>, DemoError> {
    let exe = std::env::current_exe().map_err(|source| DemoError::Spawn {
        name: "ta-0".into(),
        source,
    })?;
    let peer_port = |i: usize| base_port + i as u16;
    let client_port = |i: usize| base_port + 10 + i as u16;
    let mut replicas = Vec::new();
    for i in 0..REPLICAS {
        let name = format!("ta-{i}");
        let log = root.join(format!("{name}.log"));
        let log_file = std::fs::File::create(&log).map_err(|source| DemoError::DataDir {
            path: log.clone(),
            source,
        })?;
        let mut command = std::process::Command::new(&exe);
        command
            .arg("replica")
            .arg("--name")
            .arg(&name)
            .arg("--data-dir")
            .arg(root.join(&name))
            .arg("--peer-listen")
            .arg(format!("127.0.0.1:{}", peer_port(i)))
            .arg("--client-listen")
            .arg(format!("127.0.0.1:{}", client_port(i)))
            .stdout(Stdio::null())
            .stderr(log_file);
        for j in 0..REPLICAS {
            command
                .arg("--peer")
                .arg(format!("ta-{j}=http://127.0.0.1:{}", peer_port(j)));
        }
        let child = command.spawn().map_err(|source| DemoError::Spawn {
            name: name.clone(),
            source,
        })?;
        replicas.push(Replica {
            name,
            client_url: format!("http://127.0.0.1:{}", client_port(i)),
            log,
            child,
        });
    }
    Ok(replicas)
}

fn terminate(child: &mut Child) {
    let Ok(None) = child.try_wait() else {
        return;
    };
    let _ = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

async fn get_json<T: serde::de::DeserializeOwned>(http: &reqwest::Client, replica: &Replica, route: &str) -> Option<T> {
    let response = http.get(format!("{}{route}", replica.client_url)).send().await.ok()?;
    response.json().await.ok()
}

async fn status(http: &reqwest::Client, replica: &Replica) -> Option<StatusView> {
    get_json(http, replica, "/status").await
}

async fn table(http: &reqwest::Client, replica: &Replica) -> Option<TableView> {
    get_json(http, replica, "/table").await
}

fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(10)..].join("\n")
}

async fn wait_for_leader(http: &reqwest::Client, replicas: &mut [Replica]) -> Result<usize, DemoError> {
    let deadline = Instant::now() + STARTUP_LIMIT;
    while Instant::now() < deadline {
        for (i, replica) in replicas.iter_mut().enumerate() {
            if let Ok(Some(_)) = replica.child.try_wait() {
                return Err(DemoError::ReplicaExited {
                    name: replica.name.clone(),
                    log: replica.log.clone(),
                    tail: log_tail(&replica.log),
                });
            }
            if status(http, replica).await.is_some_and(|s| s.role == "Leader") {
                return Ok(i);
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(DemoError::NoLeader(STARTUP_LIMIT))
}

/// Three collectors and three jobs of static targets, spread round-robin. (Placement by the
/// real strategies arrives with the allocation engine.)
fn example() -> ta_raft::Command {
    let mut builder = CommandBuilder::new();
    for collector in COLLECTORS {
        builder.set_collector(collector, None, CollectorState::Ready);
    }
    let jobs: [(&str, usize, u16); 3] = [
        ("node-exporter", 6, 9100),
        ("kube-state-metrics", 2, 8080),
        ("app/api", 7, 8000),
    ];
    let mut n = 0;
    for (job, count, port) in jobs {
        builder.set_scrape_config(job, format!(r#"{{"job_name":"{job}","scrape_interval":"30s"}}"#));
        for i in 0..count {
            let address = format!("10.0.{}.{}:{port}", n / 250, 10 + i);
            let id = TargetId::compute(job, [("__address__", address.as_str()), ("job", job)]);
            builder.upsert_target(
                id,
                job,
                [("__address__", address.as_str()), ("env", "demo")],
                Some(COLLECTORS[n % COLLECTORS.len()]),
                Expect::Absent,
            );
            n += 1;
        }
    }
    builder.build()
}

async fn commit_example(http: &reqwest::Client, replicas: &[Replica], mut leader: usize) -> Result<(), DemoError> {
    let body = ta_raft::network::wire::encode(&example());
    let deadline = Instant::now() + STARTUP_LIMIT;
    loop {
        let reply = http
            .post(format!("{}/propose", replicas[leader].client_url))
            .body(body.clone())
            .send()
            .await;
        if let Ok(response) = reply
            && response.status().is_success()
        {
            println!("committed the example: 3 collectors, 3 jobs, 15 targets");
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(DemoError::Example(format!(
                "leader {} did not accept it",
                replicas[leader].name
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        for (i, replica) in replicas.iter().enumerate() {
            if status(http, replica).await.is_some_and(|s| s.role == "Leader") {
                leader = i;
            }
        }
    }
}

async fn print_guide(http: &reqwest::Client, replicas: &[Replica]) {
    println!("\nreplicas:");
    for replica in replicas {
        let role = status(http, replica)
            .await
            .map(|s| s.role)
            .unwrap_or_else(|| "?".into());
        println!(
            "  {:<5} pid {:<7} {:<9} {}",
            replica.name,
            replica.child.id(),
            role,
            replica.client_url
        );
    }
    let first = &replicas[0].client_url;
    println!(
        "\ntry:\n  curl -s {first}/status\n  curl -s '{first}/table?consistency=linearizable'\n  \
         kill -9 <pid of the leader>    # a new leader within ~2 s; the next lines report whether any target moved\n\n\
         Ctrl-C stops the demo.\n"
    );
}

async fn watch(http: &reqwest::Client, replicas: &mut [Replica]) {
    let mut baseline: Option<TableView> = None;
    let mut ticker = tokio::time::interval(Duration::from_secs(2));
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return,
            _ = ticker.tick() => {}
        }
        let mut line = Vec::new();
        let mut current = None;
        for replica in replicas.iter_mut() {
            if let Ok(Some(exit)) = replica.child.try_wait() {
                line.push(format!("{}: exited ({exit})", replica.name));
                continue;
            }
            match status(http, replica).await {
                Some(s) => line.push(format!(
                    "{}: {} term {} rev {}{}",
                    replica.name,
                    s.role,
                    s.term,
                    s.revision,
                    if s.stale { " STALE" } else { "" }
                )),
                None => line.push(format!("{}: not answering", replica.name)),
            }
            if current.is_none() {
                current = table(http, replica).await;
            }
        }
        let moved = match (&baseline, &current) {
            (Some(before), Some(now)) => {
                let moved = before
                    .assignments
                    .iter()
                    .filter(|(id, owner)| now.assignments.get(id) != Some(owner))
                    .count();
                format!("targets moved since start: {moved}")
            }
            _ => String::new(),
        };
        if baseline.is_none() {
            baseline = current;
        }
        println!("{} | {moved}", line.join(" | "));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_example_applies_cleanly() {
        let transition = ta_raft::apply::apply(&ta_raft::Table::new(), 1, &example());
        assert!(
            matches!(transition.outcome, ta_raft::Outcome::Applied { .. }),
            "{:?}",
            transition.outcome
        );
        assert_eq!(transition.table.targets.len(), 15);
        assert_eq!(transition.table.collectors.len(), 3);
        assert!(transition.table.targets.values().all(|t| t.collector.is_some()));
    }
}
