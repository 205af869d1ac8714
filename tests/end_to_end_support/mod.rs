//! Harness of the end-to-end tests: real `target-allocator` replica processes, real Debian
//! `prometheus` servers acting as collectors, and tiny in-test `/metrics` servers for them to
//! scrape.
//!
//! - [`Exporters`]: one axum listener per target, each serving a counter on `/metrics`.
//! - [`Cluster`]: three replicas, each with its own config file (JSON, which is YAML), data
//!   directory, ports and log file (stdout and stderr). Faults are named methods: [`Cluster::kill`]
//!   (SIGKILL) and [`Cluster::restart`] (same data directory).
//! - [`Fleet`]: `prometheus` processes, each with its own TSDB directory, port, log file and a
//!   config whose jobs use `http_sd_configs` pointed at one replica with one `collector_id`,
//!   as the OpenTelemetry collector's Prometheus receiver configures them (docs/getting-started.md,
//!   "OpenTelemetry Collector"). [`Fleet::stop`] kills one (SIGKILL).
//! - [`eventually`]: every wait has a deadline and a failure message naming what was expected
//!   and what was last seen.
//!
//! When a test panics, dropping the cluster and the fleet prints the tail of every process's
//! log, then kills the processes.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::fmt;
use std::fs::File;
use std::path::Path;
use std::path::PathBuf;
use std::process::Child;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::MutexGuard;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;
use std::time::Duration;
use std::time::Instant;

use serde_json::Value;
use serde_json::json;
use target_allocator::api::ClusterStatus;
use target_allocator::url_escape::query_escape;

/// Raft timings small enough for a quick failover on a 2-core machine, and valid for
/// `ClusterConfig::validate` (heartbeat ≤ min/3, min < max ≤ lease).
pub const RAFT_TIMINGS: [(&str, &str); 4] = [
    ("heartbeat_interval", "100ms"),
    ("election_timeout_min", "600ms"),
    ("election_timeout_max", "900ms"),
    ("lease", "1500ms"),
];
/// Prometheus's http_sd refresh interval and scrape interval in every test.
pub const REFRESH: Duration = Duration::from_secs(1);
/// Lines of each log printed when a test fails.
const LOG_TAIL_LINES: usize = 60;

// ---------------------------------------------------------------------------------------------
// Test plumbing

/// The scenarios start up to six processes each with real election timeouts: on two cores they
/// run one at a time. The guard survives a failed test (the lock is not poisoned for the next).
pub fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A runtime for one scenario.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// The `prometheus` binary on `PATH`.
pub fn prometheus_binary() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("prometheus"))
        .find(|candidate| candidate.is_file())
}

/// The `prometheus` binary, or `None` after saying why the test is skipped. With
/// `TA_REQUIRE_PROMETHEUS` set (CI), a missing binary fails the test instead.
pub fn prometheus_or_skip(test: &str) -> Option<PathBuf> {
    if let Some(binary) = prometheus_binary() {
        return Some(binary);
    }
    if std::env::var_os("TA_REQUIRE_PROMETHEUS").is_some() {
        panic!(
            "{test}: the `prometheus` binary is not on PATH and TA_REQUIRE_PROMETHEUS is set; install Debian's prometheus package (apt-get install -y prometheus)"
        );
    }
    eprintln!(
        "SKIPPED {test}: the `prometheus` binary is not on PATH (apt-get install -y prometheus); set TA_REQUIRE_PROMETHEUS=1 to make this a failure"
    );
    None
}

/// Poll `probe` every 100 ms until it returns `Ok`, or panic after `within` with `what` was
/// expected and the last thing seen (the `Err` text).
pub async fn eventually<T>(what: &str, within: Duration, mut probe: impl AsyncFnMut() -> Result<T, String>) -> T {
    let started = Instant::now();
    loop {
        let last = match probe().await {
            Ok(value) => return value,
            Err(seen) => seen,
        };
        if started.elapsed() >= within {
            panic!("timed out after {within:?} waiting for: {what}\n  last seen: {last}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `count` distinct free ports, with listeners holding them until the caller drops them
/// (asking for one free port at a time can return the same port twice).
fn reserve_ports(count: usize) -> (Vec<u16>, Vec<std::net::TcpListener>) {
    let holders: Vec<std::net::TcpListener> = (0..count)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port"))
        .collect();
    let ports = holders
        .iter()
        .map(|listener| listener.local_addr().expect("local address").port())
        .collect();
    (ports, holders)
}

fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .build()
        .expect("HTTP client")
}

fn log_file(path: &Path) -> (File, File) {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open log {}: {e}", path.display()));
    let second = file.try_clone().expect("clone log handle");
    (file, second)
}

fn print_log_tail(title: &str, path: &Path) {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| format!("(cannot read {}: {e})", path.display()));
    let lines: Vec<&str> = text.lines().collect();
    let from = lines.len().saturating_sub(LOG_TAIL_LINES);
    eprintln!(
        "----- {title}: last {} of {} lines of {} -----",
        lines.len() - from,
        lines.len(),
        path.display()
    );
    for line in &lines[from..] {
        eprintln!("{line}");
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn stop_child(child: &mut Child) {
    if let Ok(None) = child.try_wait() {
        let _ = child.kill();
    }
    let _ = child.wait();
}

// ---------------------------------------------------------------------------------------------
// Targets and assignments

/// A target as Prometheus and the allocator both know it: its job and `__address__`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TargetKey {
    pub job: String,
    pub address: String,
}

impl fmt::Display for TargetKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}@{}", self.job, self.address)
    }
}

/// Target → collector id.
pub type Assignment = BTreeMap<TargetKey, String>;

/// Every target of `assignment` owned by `collector`.
pub fn owned_by(assignment: &Assignment, collector: &str) -> BTreeSet<TargetKey> {
    assignment
        .iter()
        .filter(|(_, owner)| owner.as_str() == collector)
        .map(|(target, _)| target.clone())
        .collect()
}

/// A short, readable rendering of a set of targets.
pub fn show_targets<'a>(targets: impl IntoIterator<Item = &'a TargetKey>) -> String {
    let shown: Vec<String> = targets.into_iter().map(ToString::to_string).collect();
    format!("[{}]", shown.join(", "))
}

/// Per-collector counts, for messages.
pub fn show_assignment(assignment: &Assignment) -> String {
    let mut by_owner: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (target, owner) in assignment {
        by_owner.entry(owner).or_default().push(target.to_string());
    }
    by_owner
        .iter()
        .map(|(owner, targets)| format!("{owner}: {} [{}]", targets.len(), targets.join(", ")))
        .collect::<Vec<_>>()
        .join("; ")
}

/// One scrape job of the allocator's config: static targets, and optionally relabel rules.
#[derive(Debug, Clone)]
pub struct Job {
    pub name: String,
    pub targets: Vec<String>,
    pub relabel_configs: Option<Value>,
    /// Labels of the static group (every target of the job carries them).
    pub labels: Option<Value>,
}

impl Job {
    pub fn new(name: &str, targets: impl IntoIterator<Item = String>) -> Self {
        Self {
            name: name.to_string(),
            targets: targets.into_iter().collect(),
            relabel_configs: None,
            labels: None,
        }
    }

    pub fn keys(&self) -> impl Iterator<Item = TargetKey> + '_ {
        self.targets.iter().map(|address| TargetKey {
            job: self.name.clone(),
            address: address.clone(),
        })
    }
}

/// Every target of `jobs`.
pub fn all_targets(jobs: &[Job]) -> BTreeSet<TargetKey> {
    jobs.iter().flat_map(Job::keys).collect()
}

/// One target group of an http_sd response.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SdGroup {
    pub targets: Vec<String>,
    pub labels: BTreeMap<String, String>,
}

/// `{endpoint}/jobs/{url.QueryEscape(job)}/targets?collector_id={id}`: the URL the
/// collector's Prometheus receiver gives http_sd (the collector id is not escaped, §3.3).
pub fn http_sd_url(endpoint: &str, job: &str, collector_id: &str) -> String {
    format!(
        "{endpoint}/jobs/{}/targets?collector_id={collector_id}",
        query_escape(job)
    )
}

/// Whether Prometheus's http_sd accepts this `Content-Type` (discovery/http/http.go).
pub fn http_sd_content_type_ok(content_type: &str) -> bool {
    regex::Regex::new(r#"(?i)^application/json(;\s*charset=("utf-8"|utf-8))?$"#)
        .expect("static regex")
        .is_match(content_type)
}

/// GET an http_sd URL and check it as Prometheus's http_sd client does: status exactly 200,
/// a JSON content type, a JSON array of `{targets, labels}` groups.
pub async fn fetch_http_sd(http: &reqwest::Client, url: &str) -> Result<Vec<SdGroup>, String> {
    let response = http
        .get(url)
        .header("Accept", "application/json")
        .header("X-Prometheus-Refresh-Interval-Seconds", "1")
        .send()
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    let status = response.status();
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body = response.text().await.map_err(|e| format!("GET {url}: body: {e}"))?;
    if status != reqwest::StatusCode::OK {
        return Err(format!("GET {url}: status {status}, body {body:?}"));
    }
    if !http_sd_content_type_ok(&content_type) {
        return Err(format!(
            "GET {url}: Content-Type {content_type:?} is not one http_sd accepts"
        ));
    }
    serde_json::from_str(&body).map_err(|e| format!("GET {url}: not a JSON array of target groups ({e}): {body:?}"))
}

// ---------------------------------------------------------------------------------------------
// Exporters: the targets

/// Tiny HTTP servers, one per target, serving `/metrics` with a counter of their scrapes.
pub struct Exporters {
    pub addresses: Vec<String>,
    scrapes: Vec<Arc<AtomicU64>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Exporters {
    /// Start `count` servers on free ports (in the current runtime).
    pub async fn start(count: usize) -> Self {
        let mut addresses = Vec::new();
        let mut scrapes = Vec::new();
        let mut tasks = Vec::new();
        for index in 0..count {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind an exporter");
            let address = listener.local_addr().expect("exporter address").to_string();
            let counter = Arc::new(AtomicU64::new(0));
            let served = Arc::clone(&counter);
            let app = axum::Router::new().route(
                "/metrics",
                axum::routing::get(move || {
                    let served = Arc::clone(&served);
                    async move {
                        let count = served.fetch_add(1, Ordering::Relaxed) + 1;
                        (
                            [(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                            format!(
                                "# HELP e2e_scrapes_total Scrapes of this test target.\n# TYPE e2e_scrapes_total counter\ne2e_scrapes_total{{exporter=\"{index}\"}} {count}\n"
                            ),
                        )
                    }
                }),
            );
            tasks.push(tokio::spawn(async move {
                let _ = axum::serve(listener, app).await;
            }));
            addresses.push(address);
            scrapes.push(counter);
        }
        Self {
            addresses,
            scrapes,
            tasks,
        }
    }

    /// How often the exporter at `address` has been scraped.
    pub fn scrapes(&self, address: &str) -> u64 {
        self.addresses
            .iter()
            .position(|a| a == address)
            .map_or(0, |i| self.scrapes[i].load(Ordering::Relaxed))
    }
}

impl Drop for Exporters {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The allocator cluster

/// How collectors become known to the allocator.
#[derive(Debug, Clone)]
pub enum Collectors {
    /// `collectors.static`.
    Static(Vec<String>),
    /// `collectors.register_on_poll` with this ttl (a Go duration).
    RegisterOnPoll { ttl: &'static str },
}

/// What every replica's config says, apart from its own name, ports and data directory.
#[derive(Debug, Clone)]
pub struct ClusterSpec {
    pub strategy: &'static str,
    pub grace_period: &'static str,
    pub collectors: Collectors,
    pub jobs: Vec<Job>,
}

struct ReplicaProcess {
    name: String,
    http_port: u16,
    peer_port: u16,
    data_dir: PathBuf,
    config: PathBuf,
    log: PathBuf,
    child: Mutex<Option<Child>>,
}

/// Three allocator replicas (child processes of the test).
pub struct Cluster {
    root: tempfile::TempDir,
    replicas: Vec<ReplicaProcess>,
    http: reqwest::Client,
    pub spec: ClusterSpec,
}

impl Cluster {
    pub const SIZE: usize = 3;

    /// Write every replica's config and start all of them.
    pub fn start(spec: ClusterSpec) -> Self {
        Self::start_only(spec, &[0, 1, 2])
    }

    /// Write every replica's config (all three are peers) but start only `which`.
    pub fn start_only(spec: ClusterSpec, which: &[usize]) -> Self {
        let root = tempfile::Builder::new()
            .prefix("ta-e2e-")
            .tempdir()
            .expect("temporary directory");
        let (ports, holders) = reserve_ports(2 * Self::SIZE);
        let replicas: Vec<ReplicaProcess> = (0..Self::SIZE)
            .map(|i| {
                let name = format!("ta-{i}");
                ReplicaProcess {
                    http_port: ports[i],
                    peer_port: ports[Self::SIZE + i],
                    data_dir: root.path().join(&name),
                    config: root.path().join(format!("{name}.yaml")),
                    log: root.path().join(format!("{name}.log")),
                    name,
                    child: Mutex::new(None),
                }
            })
            .collect();
        let cluster = Self {
            root,
            replicas,
            http: http_client(),
            spec,
        };
        for i in 0..Self::SIZE {
            let config = cluster.config_document(i);
            let text = serde_json::to_string_pretty(&config).expect("config JSON");
            std::fs::write(&cluster.replicas[i].config, text).expect("write a replica config");
        }
        drop(holders);
        for &i in which {
            cluster.spawn(i);
        }
        cluster
    }

    /// Replica `i`'s config file, as JSON (JSON is YAML; the allocator reads it as YAML).
    fn config_document(&self, i: usize) -> Value {
        let replica = &self.replicas[i];
        let peers: serde_json::Map<String, Value> = self
            .replicas
            .iter()
            .map(|r| (r.name.clone(), json!(format!("http://127.0.0.1:{}", r.peer_port))))
            .collect();
        let raft: serde_json::Map<String, Value> = RAFT_TIMINGS
            .iter()
            .map(|(key, value)| (key.to_string(), json!(value)))
            .collect();
        let collectors = match &self.spec.collectors {
            Collectors::Static(ids) => json!({ "static": ids }),
            Collectors::RegisterOnPoll { ttl } => json!({ "register_on_poll": { "enabled": true, "ttl": ttl } }),
        };
        let scrape_configs: Vec<Value> = self
            .spec
            .jobs
            .iter()
            .map(|job| {
                let mut scrape = json!({
                    "job_name": job.name,
                    "scrape_interval": "1s",
                    "scrape_timeout": "1s",
                    "static_configs": [{ "targets": job.targets }],
                });
                if let Some(labels) = &job.labels {
                    scrape["static_configs"][0]["labels"] = labels.clone();
                }
                if let Some(rules) = &job.relabel_configs {
                    scrape["relabel_configs"] = rules.clone();
                }
                scrape
            })
            .collect();
        json!({
            "listen_addr": format!("127.0.0.1:{}", replica.http_port),
            "allocation_strategy": self.spec.strategy,
            "collector_not_ready_grace_period": self.spec.grace_period,
            "coalesce_window": "200ms",
            "collectors": collectors,
            "cluster": {
                "name": replica.name,
                "data_dir": replica.data_dir.display().to_string(),
                "peer_listen_addr": format!("127.0.0.1:{}", replica.peer_port),
                "peers": peers,
                "raft": raft,
            },
            "config": { "scrape_configs": scrape_configs },
        })
    }

    fn spawn(&self, i: usize) {
        let replica = &self.replicas[i];
        let mut slot = lock(&replica.child);
        assert!(slot.is_none(), "{} is already running", replica.name);
        let (stdout, stderr) = log_file(&replica.log);
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_target-allocator"))
            .arg("--config-file")
            .arg(&replica.config)
            .env("RUST_LOG", "info,openraft=error")
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", replica.name));
        *slot = Some(child);
    }

    /// SIGKILL replica `i`: no shutdown, no leadership handover, no flush.
    pub fn kill(&self, i: usize) {
        let replica = &self.replicas[i];
        eprintln!("fault: SIGKILL {}", replica.name);
        let mut child = lock(&replica.child)
            .take()
            .unwrap_or_else(|| panic!("kill {}: it is not running", replica.name));
        child.kill().expect("SIGKILL");
        let _ = child.wait();
    }

    /// SIGTERM replica `i` and wait for it to exit; returns its exit status and how long it
    /// took to exit.
    pub fn terminate(&self, i: usize) -> (std::process::ExitStatus, Duration) {
        let replica = &self.replicas[i];
        eprintln!("SIGTERM {}", replica.name);
        let mut child = lock(&replica.child)
            .take()
            .unwrap_or_else(|| panic!("terminate {}: it is not running", replica.name));
        let started = Instant::now();
        let sent = std::process::Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status()
            .expect("kill -TERM runs");
        assert!(sent.success(), "kill -TERM {} failed", replica.name);
        let status = child.wait().expect("wait for the replica");
        (status, started.elapsed())
    }

    /// Start a killed replica again on the same data directory and config.
    pub fn restart(&self, i: usize) {
        eprintln!("restart {}", self.replicas[i].name);
        self.spawn(i);
    }

    pub fn name(&self, i: usize) -> &str {
        &self.replicas[i].name
    }

    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.replicas.iter().position(|r| r.name == name)
    }

    /// `http://127.0.0.1:PORT` of replica `i`'s HTTP API.
    pub fn endpoint(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.replicas[i].http_port)
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// Print the tail of every replica's log.
    pub fn dump_logs(&self) {
        for replica in &self.replicas {
            print_log_tail(&format!("replica {}", replica.name), &replica.log);
        }
    }

    /// Panic at once if a replica that should run has exited (a crash or a refused config).
    pub fn check_alive(&self) {
        for replica in &self.replicas {
            if let Some(child) = lock(&replica.child).as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!("replica {} exited unexpectedly: {status}", replica.name);
            }
        }
    }

    /// GET `route` of replica `i`: status and body.
    pub async fn get(
        &self,
        i: usize,
        route: &str,
    ) -> Result<(reqwest::StatusCode, reqwest::header::HeaderMap, String), String> {
        let url = format!("{}{route}", self.endpoint(i));
        let response = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|e| format!("GET {url}: {e}"))?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.text().await.map_err(|e| format!("GET {url}: body: {e}"))?;
        Ok((status, headers, body))
    }

    /// `GET /cluster/status` on replica `i`'s peer port: how quickly its peer server answers.
    #[allow(dead_code)]
    pub async fn peer_status(&self, i: usize) -> Result<(), String> {
        let url = format!("http://127.0.0.1:{}/cluster/status", self.replicas[i].peer_port);
        let response = self
            .http
            .get(&url)
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .map_err(|e| format!("GET {url}: {e}"))?;
        response.bytes().await.map_err(|e| format!("GET {url}: body: {e}"))?;
        Ok(())
    }

    /// `/debug/status` of replica `i`.
    pub async fn status(&self, i: usize) -> Result<ClusterStatus, String> {
        let (status, _, body) = self.get(i, "/debug/status").await?;
        if status != reqwest::StatusCode::OK {
            return Err(format!("{}: /debug/status answered {status}: {body}", self.name(i)));
        }
        serde_json::from_str(&body)
            .map_err(|e| format!("{}: /debug/status is not a ClusterStatus ({e}): {body}", self.name(i)))
    }

    /// The leader replica `i` reports in `/debug/status` (the row whose role is `Leader`).
    pub async fn leader_seen_by(&self, i: usize) -> Result<String, String> {
        let status = self.status(i).await?;
        let leaders: Vec<&str> = status
            .replicas
            .iter()
            .filter(|row| row.role == "Leader")
            .map(|row| row.name.as_str())
            .collect();
        match leaders.as_slice() {
            [leader] => Ok(leader.to_string()),
            _ => Err(format!(
                "{} sees leaders {leaders:?}; roles: {}",
                self.name(i),
                status
                    .replicas
                    .iter()
                    .map(|row| format!("{}={}", row.name, row.role))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        }
    }

    /// The leader every replica in `among` names, if they agree and it is one of them.
    pub async fn agreed_leader(&self, among: &[usize]) -> Result<usize, String> {
        let mut seen = Vec::new();
        for &i in among {
            seen.push((self.name(i).to_string(), self.leader_seen_by(i).await?));
        }
        let first = &seen[0].1;
        if seen.iter().any(|(_, leader)| leader != first) {
            return Err(format!("replicas disagree on the leader: {seen:?}"));
        }
        match self.index_of(first) {
            Some(leader) if among.contains(&leader) => Ok(leader),
            _ => Err(format!(
                "the agreed leader {first} is not among the live replicas: {seen:?}"
            )),
        }
    }

    /// Wait until every replica in `among` answers `/readyz` with 200.
    pub async fn wait_ready(&self, among: &[usize], within: Duration) {
        let what = format!(
            "/readyz 200 on {:?}",
            among.iter().map(|&i| self.name(i)).collect::<Vec<_>>()
        );
        let this = self;
        eventually(&what, within, async || {
            this.check_alive();
            let mut not_ready = Vec::new();
            for &i in among {
                match this.get(i, "/readyz").await {
                    Ok((status, _, _)) if status == reqwest::StatusCode::OK => {}
                    Ok((status, _, body)) => not_ready.push(format!("{}: {status} {body:?}", this.name(i))),
                    Err(e) => not_ready.push(e),
                }
            }
            if not_ready.is_empty() {
                Ok(())
            } else {
                Err(not_ready.join("; "))
            }
        })
        .await;
    }

    /// The assignment as replica `i` serves it to the collectors `collectors` through the
    /// http_sd endpoint (`/jobs/<job>/targets?collector_id=`). Fails on any non-200 answer or
    /// on a target served to two collectors.
    pub async fn assignment_via_http_sd(&self, i: usize, collectors: &[String]) -> Result<Assignment, String> {
        let mut assignment = Assignment::new();
        for job in &self.spec.jobs {
            for collector in collectors {
                let url = http_sd_url(&self.endpoint(i), &job.name, collector);
                for group in fetch_http_sd(&self.http, &url).await? {
                    for address in group.targets {
                        let key = TargetKey {
                            job: job.name.clone(),
                            address,
                        };
                        if let Some(other) = assignment.insert(key.clone(), collector.clone()) {
                            return Err(format!(
                                "{}: target {key} is served to both {other} and {collector}",
                                self.name(i)
                            ));
                        }
                    }
                }
            }
        }
        Ok(assignment)
    }

    /// The assignment as replica `i` shows it on `/jobs/<job>/targets` without a
    /// `collector_id` (which, unlike an http_sd poll, registers no collector).
    pub async fn assignment_via_debug(&self, i: usize) -> Result<Assignment, String> {
        #[derive(serde::Deserialize)]
        struct PerCollector {
            targets: Vec<SdGroup>,
        }
        let mut assignment = Assignment::new();
        for job in &self.spec.jobs {
            let route = format!("/jobs/{}/targets", query_escape(&job.name));
            let (status, _, body) = self.get(i, &route).await?;
            if status != reqwest::StatusCode::OK {
                return Err(format!("{}: GET {route}: {status} {body:?}", self.name(i)));
            }
            let map: BTreeMap<String, PerCollector> = serde_json::from_str(&body)
                .map_err(|e| format!("{}: GET {route}: unexpected body ({e}): {body}", self.name(i)))?;
            for (collector, entry) in map {
                for address in entry.targets.into_iter().flat_map(|g| g.targets) {
                    let key = TargetKey {
                        job: job.name.clone(),
                        address,
                    };
                    if let Some(other) = assignment.insert(key.clone(), collector.clone()) {
                        return Err(format!(
                            "{}: target {key} is listed under both {other} and {collector}",
                            self.name(i)
                        ));
                    }
                }
            }
        }
        Ok(assignment)
    }

    /// Wait until replica `i` serves every configured target to one of `collectors` (via
    /// http_sd), and return that assignment.
    pub async fn wait_fully_assigned(&self, i: usize, collectors: &[String], within: Duration) -> Assignment {
        let expected = all_targets(&self.spec.jobs);
        eventually(
            &format!(
                "{} to serve all {} targets, each to one collector",
                self.name(i),
                expected.len()
            ),
            within,
            async || {
                let assignment = self.assignment_via_http_sd(i, collectors).await?;
                let served: BTreeSet<TargetKey> = assignment.keys().cloned().collect();
                if served == expected {
                    Ok(assignment)
                } else {
                    Err(format!(
                        "missing {}; unexpected {}",
                        show_targets(expected.difference(&served)),
                        show_targets(served.difference(&expected))
                    ))
                }
            },
        )
        .await
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.dump_logs();
            eprintln!(
                "(replica configs and data kept until exit in {})",
                self.root.path().display()
            );
        }
        for replica in &self.replicas {
            if let Some(mut child) = lock(&replica.child).take() {
                stop_child(&mut child);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Prometheus servers: the collectors

/// One target in Prometheus's `/api/v1/targets`.
#[derive(Debug, Clone)]
pub struct ActiveTarget {
    pub key: TargetKey,
    pub health: String,
    pub last_error: String,
}

struct PrometheusProcess {
    collector_id: String,
    port: u16,
    config: PathBuf,
    log: PathBuf,
    child: Mutex<Option<Child>>,
}

/// Prometheus servers, each acting as one collector.
pub struct Fleet {
    root: tempfile::TempDir,
    members: Vec<PrometheusProcess>,
    http: reqwest::Client,
}

impl Fleet {
    /// Start one Prometheus per `(collector_id, allocator endpoint)`; each scrapes every job of
    /// `jobs` through http_sd against its own endpoint, as the collector's receiver does.
    pub fn start(binary: &Path, collectors: &[(String, String)], jobs: &[Job]) -> Self {
        let root = tempfile::Builder::new()
            .prefix("ta-e2e-prometheus-")
            .tempdir()
            .expect("temporary directory");
        let (ports, holders) = reserve_ports(collectors.len());
        let mut members = Vec::new();
        for (index, (collector_id, endpoint)) in collectors.iter().enumerate() {
            let scrape_configs: Vec<Value> = jobs
                .iter()
                .map(|job| {
                    json!({
                        "job_name": job.name,
                        "scrape_interval": "1s",
                        "scrape_timeout": "1s",
                        "http_sd_configs": [{
                            "url": http_sd_url(endpoint, &job.name, collector_id),
                            "refresh_interval": format!("{}s", REFRESH.as_secs()),
                        }],
                    })
                })
                .collect();
            let config = json!({
                "global": { "scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1m" },
                "scrape_configs": scrape_configs,
            });
            let config_path = root.path().join(format!("{collector_id}.yml"));
            std::fs::write(&config_path, serde_json::to_string_pretty(&config).expect("JSON")).expect("write config");
            members.push(PrometheusProcess {
                collector_id: collector_id.clone(),
                port: ports[index],
                config: config_path,
                log: root.path().join(format!("{collector_id}.log")),
                child: Mutex::new(None),
            });
        }
        drop(holders);
        for member in &mut members {
            let (stdout, stderr) = log_file(&member.log);
            let tsdb = root.path().join(format!("{}-tsdb", member.collector_id));
            let child = std::process::Command::new(binary)
                .arg(format!("--config.file={}", member.config.display()))
                .arg(format!("--storage.tsdb.path={}", tsdb.display()))
                .arg(format!("--web.listen-address=127.0.0.1:{}", member.port))
                .arg("--storage.tsdb.retention.time=1h")
                .arg("--log.level=info")
                .stdin(Stdio::null())
                .stdout(stdout)
                .stderr(stderr)
                .spawn()
                .unwrap_or_else(|e| panic!("spawn {} for {}: {e}", binary.display(), member.collector_id));
            *lock(&member.child) = Some(child);
        }
        Self {
            root,
            members,
            http: http_client(),
        }
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn collector_id(&self, i: usize) -> &str {
        &self.members[i].collector_id
    }

    /// SIGKILL Prometheus `i`: it stops polling (and scraping) at once.
    pub fn stop(&self, i: usize) {
        let member = &self.members[i];
        eprintln!("fault: SIGKILL prometheus {}", member.collector_id);
        let mut child = lock(&member.child)
            .take()
            .unwrap_or_else(|| panic!("stop prometheus {}: not running", member.collector_id));
        child.kill().expect("SIGKILL");
        let _ = child.wait();
    }

    pub fn dump_logs(&self) {
        for member in &self.members {
            print_log_tail(&format!("prometheus {}", member.collector_id), &member.log);
        }
    }

    /// Wait until every running Prometheus answers `/-/ready`.
    pub async fn wait_ready(&self, within: Duration) {
        let this = self;
        eventually("every Prometheus to answer /-/ready with 200", within, async || {
            this.check_alive();
            let mut not_ready = Vec::new();
            for member in this.members.iter().filter(|m| this.is_running(m)) {
                let url = format!("http://127.0.0.1:{}/-/ready", member.port);
                match this.http.get(&url).send().await {
                    Ok(response) if response.status() == reqwest::StatusCode::OK => {}
                    Ok(response) => not_ready.push(format!("{}: {}", member.collector_id, response.status())),
                    Err(e) => not_ready.push(format!("{}: {e}", member.collector_id)),
                }
            }
            if not_ready.is_empty() {
                Ok(())
            } else {
                Err(not_ready.join("; "))
            }
        })
        .await;
    }

    fn is_running(&self, member: &PrometheusProcess) -> bool {
        lock(&member.child).is_some()
    }

    /// Panic at once if a Prometheus that should run has exited.
    pub fn check_alive(&self) {
        for member in &self.members {
            if let Some(child) = lock(&member.child).as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!("prometheus {} exited unexpectedly: {status}", member.collector_id);
            }
        }
    }

    /// Prometheus `i`'s active targets (`/api/v1/targets?state=active`).
    pub async fn active_targets(&self, i: usize) -> Result<Vec<ActiveTarget>, String> {
        let member = &self.members[i];
        let url = format!("http://127.0.0.1:{}/api/v1/targets?state=active", member.port);
        let response = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|e| format!("prometheus {}: GET {url}: {e}", member.collector_id))?;
        let body: Value = response
            .json()
            .await
            .map_err(|e| format!("prometheus {}: GET {url}: {e}", member.collector_id))?;
        let targets = body["data"]["activeTargets"]
            .as_array()
            .ok_or_else(|| format!("prometheus {}: no data.activeTargets in {body}", member.collector_id))?;
        targets
            .iter()
            .map(|target| {
                let job = target["scrapePool"].as_str();
                let address = target["discoveredLabels"]["__address__"].as_str();
                match (job, address) {
                    (Some(job), Some(address)) => Ok(ActiveTarget {
                        key: TargetKey {
                            job: job.to_string(),
                            address: address.to_string(),
                        },
                        health: target["health"].as_str().unwrap_or("").to_string(),
                        last_error: target["lastError"].as_str().unwrap_or("").to_string(),
                    }),
                    _ => Err(format!(
                        "prometheus {}: unexpected target {target}",
                        member.collector_id
                    )),
                }
            })
            .collect()
    }

    /// The set of targets Prometheus `i` has active.
    pub async fn active_set(&self, i: usize) -> Result<BTreeSet<TargetKey>, String> {
        Ok(self.active_targets(i).await?.into_iter().map(|t| t.key).collect())
    }

    /// Wait until each running Prometheus scrapes exactly the targets `assignment` gives its
    /// collector id, and every one of them is healthy ("up").
    pub async fn wait_scraping(&self, assignment: &Assignment, within: Duration) {
        let running: Vec<usize> = (0..self.len()).filter(|&i| self.is_running(&self.members[i])).collect();
        eventually(
            "each running Prometheus to scrape exactly the targets assigned to its collector id, all with health \"up\"",
            within,
            async || {
                self.check_alive();
                let mut problems = Vec::new();
                for &i in &running {
                    let id = self.collector_id(i);
                    let wanted = owned_by(assignment, id);
                    let active = self.active_targets(i).await?;
                    let keys: BTreeSet<TargetKey> = active.iter().map(|t| t.key.clone()).collect();
                    if keys.len() != active.len() {
                        problems.push(format!("{id} lists a target twice"));
                    }
                    if keys != wanted {
                        problems.push(format!(
                            "{id}: missing {}, not its own {}",
                            show_targets(wanted.difference(&keys)),
                            show_targets(keys.difference(&wanted))
                        ));
                    }
                    let unhealthy: Vec<String> = active
                        .iter()
                        .filter(|t| t.health != "up")
                        .map(|t| format!("{} {} {:?}", t.key, t.health, t.last_error))
                        .collect();
                    if !unhealthy.is_empty() {
                        problems.push(format!("{id}: not up: {}", unhealthy.join(", ")));
                    }
                }
                if problems.is_empty() {
                    Ok(())
                } else {
                    Err(problems.join("; "))
                }
            },
        )
        .await;
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.dump_logs();
        }
        for member in &self.members {
            if let Some(mut child) = lock(&member.child).take() {
                stop_child(&mut child);
            }
        }
    }
}
