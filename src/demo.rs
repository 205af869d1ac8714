//! `target-allocator demo`: a local 3-replica cluster with a built-in example.
//!
//! Each replica is a child process of this binary running the real service
//! (`target-allocator --config-file ta-N.yaml`), so killing one is a real crash. The example
//! is an ordinary configuration: three jobs of static targets (one with a CR-style name
//! containing `/`) and three static collectors. The demo prints every replica's URL and a
//! short guide, then reports roles, revisions and whether any target moved, until Ctrl-C,
//! when it stops the replicas (SIGTERM, so the leader hands over first) and cleans up.

use std::collections::BTreeMap;
use std::path::Path;
use std::path::PathBuf;
use std::process::Child;
use std::process::Stdio;
use std::time::Duration;
use std::time::Instant;

use crate::api::ClusterStatus;
use crate::cli::DemoArgs;
use crate::url_escape::query_escape;

const REPLICAS: usize = 3;
const STARTUP_LIMIT: Duration = Duration::from_secs(30);

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
    #[error("the replicas were not all ready within {0:?} (see the logs beside the data)")]
    NotReady(Duration),
}

struct Replica {
    name: String,
    url: String,
    log: PathBuf,
    child: Child,
}

/// The built-in example for replica `index` of a cluster whose ports start at `base_port`.
pub fn example_config(index: usize, base_port: u16, data_dir: &Path) -> String {
    let peers: Vec<String> = (0..REPLICAS)
        .map(|j| format!("ta-{j}: http://127.0.0.1:{}", peer_port(base_port, j)))
        .collect();
    format!(
        r#"# Built-in example of `target-allocator demo` (replica ta-{index}).
listen_addr: 127.0.0.1:{http}
allocation_strategy: consistent-hashing
collector_not_ready_grace_period: 30s
collectors:
  static: [collector-0, collector-1, collector-2]
cluster:
  name: ta-{index}
  data_dir: {data}
  peer_listen_addr: 127.0.0.1:{peer}
  peers: {{{peers}}}
config:
  global:
    scrape_interval: 30s
  scrape_configs:
  - job_name: node-exporter
    static_configs:
    - targets: [10.0.0.10:9100, 10.0.0.11:9100, 10.0.0.12:9100, 10.0.0.13:9100, 10.0.0.14:9100, 10.0.0.15:9100]
      labels: {{env: demo, team: platform}}
  - job_name: kube-state-metrics
    static_configs:
    - targets: [10.0.1.10:8080, 10.0.1.11:8080]
  - job_name: serviceMonitor/shop/api/0
    basic_auth: {{username: scraper, password: not-shown-on-plain-http}}
    static_configs:
    - targets: [10.0.2.10:8000, 10.0.2.11:8000, 10.0.2.12:8000, 10.0.2.13:8000, 10.0.2.14:8000, 10.0.2.15:8000, 10.0.2.16:8000]
      labels: {{env: demo, team: shop}}
    relabel_configs:
    - source_labels: [__address__]
      regex: 10\.0\.2\.16:.*
      action: drop
"#,
        http = http_port(base_port, index),
        peer = peer_port(base_port, index),
        data = data_dir.join(format!("ta-{index}")).display(),
        peers = peers.join(", "),
    )
}

fn http_port(base_port: u16, index: usize) -> u16 {
    base_port + index as u16
}

fn peer_port(base_port: u16, index: usize) -> u16 {
    base_port + 10 + index as u16
}

/// Run the demo until Ctrl-C (or for `args.run_for`).
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
    println!(
        "starting {REPLICAS} replicas (configs, data and logs in {})",
        root.display()
    );
    let mut replicas = spawn_replicas(&root, args.base_port)?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("static client configuration");

    let outcome = async {
        wait_until_ready(&http, &mut replicas).await?;
        print_guide(&http, &replicas, &root).await;
        watch(&http, &mut replicas, args.run_for.map(Duration::from_secs)).await;
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
    let mut replicas = Vec::new();
    for i in 0..REPLICAS {
        let name = format!("ta-{i}");
        let config_path = root.join(format!("{name}.yaml"));
        std::fs::write(&config_path, example_config(i, base_port, root)).map_err(|source| DemoError::DataDir {
            path: config_path.clone(),
            source,
        })?;
        let log = root.join(format!("{name}.log"));
        let log_file = std::fs::File::create(&log).map_err(|source| DemoError::DataDir {
            path: log.clone(),
            source,
        })?;
        let child = std::process::Command::new(&exe)
            .arg("--config-file")
            .arg(&config_path)
            .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()))
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .map_err(|source| DemoError::Spawn {
                name: name.clone(),
                source,
            })?;
        replicas.push(Replica {
            name,
            url: format!("http://127.0.0.1:{}", http_port(base_port, i)),
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

fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(10)..].join("\n")
}

async fn ready(http: &reqwest::Client, replica: &Replica) -> bool {
    http.get(format!("{}/readyz", replica.url))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
}

async fn cluster_status(http: &reqwest::Client, replica: &Replica) -> Option<ClusterStatus> {
    let response = http.get(format!("{}/debug/status", replica.url)).send().await.ok()?;
    response.json().await.ok()
}

async fn wait_until_ready(http: &reqwest::Client, replicas: &mut [Replica]) -> Result<(), DemoError> {
    let deadline = Instant::now() + STARTUP_LIMIT;
    loop {
        let mut all_ready = true;
        for replica in replicas.iter_mut() {
            if let Ok(Some(_)) = replica.child.try_wait() {
                return Err(DemoError::ReplicaExited {
                    name: replica.name.clone(),
                    log: replica.log.clone(),
                    tail: log_tail(&replica.log),
                });
            }
            all_ready &= ready(http, replica).await;
        }
        if all_ready {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(DemoError::NotReady(STARTUP_LIMIT));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn get_json(http: &reqwest::Client, url: String) -> Option<BTreeMap<String, serde_json::Value>> {
    http.get(url).send().await.ok()?.json().await.ok()
}

/// (job, target address) → collector, as one replica serves it.
async fn assignments(http: &reqwest::Client, replica: &Replica) -> Option<BTreeMap<(String, String), String>> {
    let jobs = get_json(http, format!("{}/jobs", replica.url)).await?;
    let mut owners = BTreeMap::new();
    for job in jobs.keys() {
        let by_collector = get_json(http, format!("{}/jobs/{}/targets", replica.url, query_escape(job))).await?;
        for (collector, entry) in by_collector {
            for group in entry["targets"].as_array().into_iter().flatten() {
                for address in group["targets"].as_array().into_iter().flatten() {
                    owners.insert(
                        (job.clone(), address.as_str().unwrap_or_default().to_string()),
                        collector.clone(),
                    );
                }
            }
        }
    }
    Some(owners)
}

async fn print_guide(http: &reqwest::Client, replicas: &[Replica], root: &Path) {
    let status = cluster_status(http, &replicas[0]).await;
    println!("\nreplicas (each serves the same answers):");
    for replica in replicas {
        let role = status
            .as_ref()
            .and_then(|s| s.replicas.iter().find(|r| r.name == replica.name))
            .map_or("?".to_string(), |r| r.role.clone());
        println!(
            "  {:<5} pid {:<7} {:<9} {}",
            replica.name,
            replica.child.id(),
            role,
            replica.url
        );
    }
    if let Some(status) = &status {
        println!(
            "\nexample: 3 jobs, {} targets on {} static collectors ({}), configs in {}",
            status.targets,
            status.collectors,
            status.strategy,
            root.display()
        );
    }
    let first = &replicas[0].url;
    let second = &replicas[1].url;
    println!(
        "\ntry:\n  \
         curl -s {first}/jobs\n  \
         curl -s '{second}/jobs/node-exporter/targets?collector_id=collector-0'\n  \
         curl -s '{first}/jobs/serviceMonitor%2Fshop%2Fapi%2F0/targets?collector_id=collector-1'\n  \
         curl -s {first}/scrape_configs        # the basic_auth password is masked\n  \
         target-allocator status --endpoint {second}\n  \
         open {first}/ in a browser             # the upstream HTML pages\n  \
         kill -9 <pid of the Leader>            # a new leader within seconds; nothing moves (see below)\n\n\
         Ctrl-C stops the demo.\n"
    );
}

async fn watch(http: &reqwest::Client, replicas: &mut [Replica], run_for: Option<Duration>) {
    let started = Instant::now();
    let mut baseline: Option<BTreeMap<(String, String), String>> = None;
    let mut ticker = tokio::time::interval(Duration::from_secs(2));
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return,
            _ = ticker.tick() => {}
        }
        if run_for.is_some_and(|limit| started.elapsed() >= limit) {
            return;
        }
        let mut line = Vec::new();
        let mut current = None;
        let mut status = None;
        let mut exited = Vec::new();
        for replica in replicas.iter_mut() {
            if let Ok(Some(exit)) = replica.child.try_wait() {
                line.push(format!("{}: exited ({exit})", replica.name));
                exited.push(replica.name.clone());
                continue;
            }
            if status.is_none() {
                status = cluster_status(http, replica).await;
            }
            if current.is_none() {
                current = assignments(http, replica).await;
            }
        }
        if let Some(status) = &status {
            for row in status.replicas.iter().filter(|row| !exited.contains(&row.name)) {
                if row.error.is_some() {
                    line.push(format!("{}: down", row.name));
                } else {
                    line.push(format!(
                        "{}: {} term {} rev {}{}",
                        row.name,
                        row.role,
                        row.term,
                        row.revision,
                        if row.stale { " STALE" } else { "" }
                    ));
                }
            }
        }
        let moved = match (&baseline, &current) {
            (Some(before), Some(now)) => {
                let moved = before
                    .iter()
                    .filter(|(target, owner)| now.get(*target) != Some(owner))
                    .count();
                format!("targets moved since start: {moved} of {}", before.len())
            }
            _ => String::new(),
        };
        // The baseline is the first assignment that has targets: the first tick can come
        // after the replicas are ready (scrape configs in) and before the first plan of
        // targets, and an empty baseline would report "0 of 0" for the whole run.
        if baseline.as_ref().is_none_or(BTreeMap::is_empty) {
            baseline = current;
        }
        println!("{} | {moved}", line.join(" | "));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_example_is_a_valid_configuration() {
        for index in 0..REPLICAS {
            let text = example_config(index, 8480, Path::new("/tmp/demo"));
            let loaded = crate::config::parse("demo.yaml", &text, &crate::config::UpstreamFlags::default(), &|_| None)
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(loaded.config.scrape_configs().len(), 3);
            assert_eq!(loaded.config.collectors.static_ids.len(), 3);
            assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
        }
    }
}
