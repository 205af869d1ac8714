//! End-to-end scale benchmark: three real replica processes of the release binary on
//! 127.0.0.1, as deployed (one configuration file and one data directory per replica, static
//! collectors `collector-0..9`, `consistent-hashing`), discovering targets for 10 jobs.
//!
//! Shapes (N targets split over the 10 jobs):
//! - **G**: `file_sd_configs`, one JSON file per job (written atomically: temp file + rename),
//!   groups of 10 targets sharing ~40 Kubernetes-style labels (8 per group), each target only
//!   an `__address__`;
//! - **S**: the same files with one target per group and 43 labels (8 unique per target: pod
//!   name, IP, uid, node...);
//! - **K**: `kubernetes_sd_configs` role `endpointslice` against the fake API server of
//!   `tests/support/fake_api_server.rs`, run inside this process (so it shares the CPU): per
//!   job a namespace with services of 20 slices of 5 endpoints, each endpoint a served pod.
//!
//! Per size and shape: **cold start** (spawn → every replica serves all N: the entries of
//! `/jobs/{job}/targets?collector_id=` over all jobs and collectors, fetched once the cheap
//! signals say so: the `/metrics` gauge of assigned targets is N and `/readyz` is 200; the
//! time is that of the `/readyz` answer, kept only if every body carries its revision);
//! **cold-start CPU** (seconds each replica used until then: on two cores shared by three
//! replicas, a steadier measure of the work than the time); **RSS** (VmRSS, and VmHWM of
//! the leader) once converged; **data directory** bytes on disk;
//! **churn** (1% of all targets replaced in job 0 → every replica serves the new set of the job
//! and N in all); **full restart** (SIGKILL all three, start all three → all serve N);
//! **elections** after the first leader (from `X-Allocator-Term` on every answer; a new term
//! right after the full restart is expected and not counted); **idle CPU** per replica over
//! `--idle-seconds` with nothing changing and nobody polling; **peer RTT**: `GET /cluster/status`
//! on each peer port every 50 ms during cold start and restart (the responsiveness of the peer
//! HTTP server while the replica plans and replicates, not the Raft heartbeat itself).
//!
//! With `prometheus` on PATH (Debian's package) shapes G and S are then given to Prometheus on
//! the same files, after our cluster stopped: its ready time, RSS and churn time.
//!
//! ```sh
//! cargo build --release --bin target-allocator
//! cargo bench --bench scale -- --sizes 10000,100000 --shapes G,S,K --refresh 5s \
//!     [--skip-prometheus] [--base-port 19000] [--idle-seconds 30] [--timeout 600] [--keep]
//! ```
//!
//! Progress goes to stderr, the Markdown tables to stdout.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;
use std::path::PathBuf;
use std::process::Child;
use std::process::Command;
use std::process::Stdio;
use std::sync::Mutex;
use std::time::Duration;
use std::time::Instant;

use axum::body::Bytes;
use clap::Parser;
use serde::Deserialize;
use serde_json::Value;
use serde_json::json;
use tokio_util::sync::CancellationToken;

#[allow(unused_imports)] // its unit tests' `use super::*`
#[path = "../tests/support/fake_api_server.rs"]
mod fake_api_server;
use fake_api_server::FakeApiServer;

type Error = Box<dyn std::error::Error + Send + Sync>;
type Result<T> = std::result::Result<T, Error>;

const REPLICAS: usize = 3;
const JOBS: usize = 10;
const COLLECTORS: usize = 10;
const GROUP_SIZE: usize = 10;
const SLICE_ENDPOINTS: usize = 5;
const SLICES_PER_SERVICE: usize = 20;
/// Added to a target's id when the churn replaces it: never collides with an original id.
const CHURN_OFFSET: usize = 1 << 23;
const POLL: Duration = Duration::from_millis(150);
const PROBE_EVERY: Duration = Duration::from_millis(50);
const MIB: f64 = 1048576.0;

#[derive(Parser, Debug)]
#[command(about = "End-to-end scale benchmark of a 3-replica cluster (see the module docs)")]
struct Args {
    /// Total targets per run, split over the 10 jobs (multiples of 1000).
    #[arg(long, value_delimiter = ',', default_value = "10000,100000")]
    sizes: Vec<usize>,
    /// Shapes: G (file_sd, groups of 10), S (file_sd, one target per group), K (kubernetes_sd).
    #[arg(long, value_delimiter = ',', default_value = "G,S,K")]
    shapes: Vec<String>,
    /// `refresh_interval` of every file_sd config (ours and Prometheus's).
    #[arg(long, default_value = "5s")]
    refresh: String,
    #[arg(long)]
    skip_prometheus: bool,
    /// HTTP ports are base..base+2, peer ports base+10..base+12, Prometheus base+20.
    #[arg(long, default_value_t = 19000)]
    base_port: u16,
    /// Keep the temporary directory (files, data, logs); also kept when something failed.
    #[arg(long)]
    keep: bool,
    #[arg(long, default_value_t = 30)]
    idle_seconds: u64,
    /// Limit of every wait (cold start, churn, restart, Prometheus), seconds.
    #[arg(long, default_value_t = 600)]
    timeout: u64,
    /// The target-allocator binary (default: target/release/target-allocator).
    #[arg(long, env = "TA_BINARY")]
    binary: Option<PathBuf>,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Shape {
    G,
    S,
    K,
}

/// The outcome of one timed wait.
#[derive(Clone, Debug, Default)]
enum Cell {
    #[default]
    NotRun,
    Done(Duration),
    Timeout(u64),
    Failed(String),
}

impl Cell {
    fn failed(e: &Error) -> Self {
        Cell::Failed(e.to_string().lines().next().unwrap_or("").chars().take(100).collect())
    }

    fn bad(&self) -> bool {
        matches!(self, Cell::Timeout(_) | Cell::Failed(_))
    }

    fn secs(&self) -> Option<f64> {
        match self {
            Cell::Done(d) => Some(d.as_secs_f64()),
            _ => None,
        }
    }
}

impl std::fmt::Display for Cell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Cell::NotRun => write!(f, "–"),
            Cell::Done(d) => write!(f, "{:.2} s", d.as_secs_f64()),
            Cell::Timeout(s) => write!(f, "timeout after {s} s"),
            Cell::Failed(e) => write!(f, "failed: {e}"),
        }
    }
}

#[derive(Default)]
struct Row {
    shape: String,
    size: usize,
    cold: Cell,
    churn: Cell,
    restart: Cell,
    /// (name, VmRSS, VmHWM) bytes, leader first.
    rss: Vec<(String, u64, u64)>,
    data_dirs: Vec<u64>,
    /// % of one core, leader first.
    idle_cpu: Vec<f64>,
    /// CPU seconds each replica used from its start until all served, leader first.
    cold_cpu: Vec<f64>,
    elections: u64,
    /// Peer round trips in ms, cold start and restart together.
    rtt: Vec<f64>,
    prometheus: Option<PromRow>,
}

impl Row {
    fn failed(&self) -> bool {
        [&self.cold, &self.churn, &self.restart].iter().any(|c| c.bad())
            || self.prometheus.as_ref().is_some_and(|p| p.ready.bad() || p.churn.bad())
    }
}

#[derive(Default)]
struct PromRow {
    ready: Cell,
    churn: Cell,
    rss: Option<u64>,
}

// ---------------------------------------------------------------------------------------------
// Workloads

/// `name value` of the labels every target of job `{j}` shares, in the style of Kubernetes
/// service discovery.
const SHARED: &str = "\
    __meta_kubernetes_namespace team-{j}\n\
    __meta_kubernetes_service_name svc-{j}\n\
    __meta_kubernetes_service_label_app_kubernetes_io_name svc-{j}\n\
    __meta_kubernetes_service_label_app_kubernetes_io_instance svc-{j}-prod\n\
    __meta_kubernetes_service_label_app_kubernetes_io_part_of platform\n\
    __meta_kubernetes_service_label_app_kubernetes_io_managed_by Helm\n\
    __meta_kubernetes_service_labelpresent_app_kubernetes_io_name true\n\
    __meta_kubernetes_service_annotation_prometheus_io_scrape true\n\
    __meta_kubernetes_service_annotation_prometheus_io_port 8080\n\
    __meta_kubernetes_service_annotationpresent_prometheus_io_scrape true\n\
    __meta_kubernetes_endpointslice_address_type IPv4\n\
    __meta_kubernetes_endpointslice_port 8080\n\
    __meta_kubernetes_endpointslice_port_name http-metrics\n\
    __meta_kubernetes_endpointslice_port_protocol TCP\n\
    __meta_kubernetes_endpointslice_port_app_protocol http\n\
    __meta_kubernetes_endpointslice_endpoint_conditions_ready true\n\
    __meta_kubernetes_endpointslice_endpoint_conditions_serving true\n\
    __meta_kubernetes_endpointslice_endpoint_conditions_terminating false\n\
    __meta_kubernetes_endpointslice_address_target_kind Pod\n\
    __meta_kubernetes_pod_controller_kind ReplicaSet\n\
    __meta_kubernetes_pod_controller_name svc-{j}-6c8f9d7b4\n\
    __meta_kubernetes_pod_label_app_kubernetes_io_name svc-{j}\n\
    __meta_kubernetes_pod_label_app_kubernetes_io_instance svc-{j}-prod\n\
    __meta_kubernetes_pod_label_pod_template_hash 6c8f9d7b4\n\
    __meta_kubernetes_pod_labelpresent_app_kubernetes_io_name true\n\
    __meta_kubernetes_pod_labelpresent_pod_template_hash true\n\
    __meta_kubernetes_pod_annotation_kubectl_kubernetes_io_default_container app\n\
    __meta_kubernetes_pod_annotationpresent_kubectl_kubernetes_io_default_container true\n\
    __meta_kubernetes_pod_container_name app\n\
    __meta_kubernetes_pod_container_image registry.example.com/team-{j}/svc-{j}:1.42.0\n\
    __meta_kubernetes_pod_container_port_name http-metrics\n\
    __meta_kubernetes_pod_container_port_number 8080\n\
    __meta_kubernetes_pod_container_port_protocol TCP\n\
    __meta_kubernetes_pod_phase Running\n\
    __meta_kubernetes_pod_ready true";

fn ip(id: usize) -> String {
    format!("10.{}.{}.{}", (id >> 16) & 255, (id >> 8) & 255, id & 255)
}

fn address(id: usize) -> String {
    format!("{}:8080", ip(id))
}

fn pod_name(job: usize, id: usize) -> String {
    format!("svc-{job}-6c8f9d7b4-{id:07x}")
}

fn node(id: usize) -> String {
    format!("node-{:04}.eu-west-1.compute.internal", id % 500)
}

/// The 8 labels of one pod (`id`).
fn pod_labels(job: usize, id: usize) -> [(&'static str, String); 8] {
    [
        ("__meta_kubernetes_pod_name", pod_name(job, id)),
        ("__meta_kubernetes_pod_ip", ip(id)),
        (
            "__meta_kubernetes_pod_uid",
            format!("{id:08x}-4b7a-8d2f-9c1e-6e5b4a3c2d1e"),
        ),
        ("__meta_kubernetes_pod_node_name", node(id)),
        (
            "__meta_kubernetes_pod_host_ip",
            format!("192.168.{}.{}", id % 500 / 250, id % 250),
        ),
        (
            "__meta_kubernetes_endpointslice_name",
            format!("svc-{job}-{:05x}", id / 100),
        ),
        ("__meta_kubernetes_endpointslice_address_target_name", pod_name(job, id)),
        ("__meta_kubernetes_endpointslice_endpoint_node_name", node(id)),
    ]
}

fn labels_json<'a>(labels: impl Iterator<Item = (&'a str, String)>) -> String {
    let pairs: Vec<String> = labels.map(|(k, v)| format!("\"{k}\":\"{v}\"")).collect();
    pairs.join(",")
}

/// The targets of one size and shape, and where they are published.
struct Workload {
    shape: Shape,
    size: usize,
    sd_dir: PathBuf,
}

impl Workload {
    fn per_job(&self) -> usize {
        self.size / JOBS
    }

    /// The id of target `k` of `job`; the churn replaces every 10th target of the job (1% of
    /// all targets when it is one job of 10).
    fn id(&self, job: usize, k: usize, churned: bool) -> usize {
        let id = job * self.per_job() + k;
        if churned && k.is_multiple_of(10) {
            id + CHURN_OFFSET
        } else {
            id
        }
    }

    fn file(&self, job: usize) -> PathBuf {
        self.sd_dir.join(format!("job-{job}.json"))
    }

    /// Addresses of `job` that the churn removes, and those it adds.
    fn churn_sets(&self, job: usize) -> (HashSet<String>, HashSet<String>) {
        let ks = (0..self.per_job()).step_by(10);
        let removed = ks.clone().map(|k| address(self.id(job, k, false))).collect();
        (removed, ks.map(|k| address(self.id(job, k, true))).collect())
    }

    /// Write `job`'s file atomically (temp file + rename); the instant of the rename.
    fn write(&self, job: usize, churned: bool) -> Result<Instant> {
        let path = self.file(job);
        let temp = path.with_extension("json.tmp");
        let mut out = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&temp)?);
        let j = job.to_string();
        let shared = || {
            SHARED
                .lines()
                .filter_map(|l| l.trim().split_once(' '))
                .map(|(k, v)| (k, v.replace("{j}", &j)))
        };
        out.write_all(b"[")?;
        if self.shape == Shape::G {
            let common = labels_json(shared().take(32));
            for g in 0..self.per_job() / GROUP_SIZE {
                let targets: Vec<String> = (g * GROUP_SIZE..(g + 1) * GROUP_SIZE)
                    .map(|k| format!("\"{}\"", address(self.id(job, k, churned))))
                    .collect();
                let own = labels_json(pod_labels(job, job * self.per_job() + g).into_iter());
                let sep = if g == 0 { "" } else { "," };
                let targets = targets.join(",");
                write!(out, "{sep}{{\"targets\":[{targets}],\"labels\":{{{common},{own}}}}}")?;
            }
        } else {
            let common = labels_json(shared());
            for k in 0..self.per_job() {
                let id = self.id(job, k, churned);
                let own = labels_json(pod_labels(job, id).into_iter());
                let sep = if k == 0 { "" } else { "," };
                write!(
                    out,
                    "{sep}{{\"targets\":[\"{}\"],\"labels\":{{{common},{own}}}}}",
                    address(id)
                )?;
            }
        }
        out.write_all(b"]\n")?;
        out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        std::fs::rename(&temp, &path)?;
        Ok(Instant::now())
    }

    /// Shape K: services, pods and endpoint slices of every job (`churn`: only what the churn
    /// of job 0 changes: the pods replaced and the slices holding them).
    fn apply_k(&self, api: &FakeApiServer, churn: bool) {
        let jobs = if churn { 0..1 } else { 0..JOBS };
        for job in jobs {
            let ns = format!("team-{job}");
            let services = self.per_job() / (SLICE_ENDPOINTS * SLICES_PER_SERVICE);
            for v in (0..services).filter(|_| !churn) {
                let name = format!("svc-{job}-{v}");
                api.apply_json(
                    "v1",
                    "services",
                    json!({"apiVersion": "v1", "kind": "Service",
                    "metadata": {"name": name, "namespace": ns, "labels": {"app.kubernetes.io/name": name,
                        "app.kubernetes.io/part-of": "platform"}, "annotations": {"prometheus.io/scrape": "true"}},
                    "spec": {"selector": {"app.kubernetes.io/name": name}, "clusterIP": format!("172.20.{job}.{v}"),
                        "ports": [{"name": "http-metrics", "port": 8080, "protocol": "TCP"}]}}),
                );
            }
            for k in (0..self.per_job()).filter(|k| !churn || k.is_multiple_of(10)) {
                let (id, service) = (self.id(job, k, churn), k / (SLICE_ENDPOINTS * SLICES_PER_SERVICE));
                if churn {
                    api.delete_json("v1", "pods", Some(&ns), &pod_name(job, self.id(job, k, false)));
                }
                api.apply_json("v1", "pods", json!({"apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": pod_name(job, id), "namespace": ns,
                        "labels": {"app.kubernetes.io/name": format!("svc-{job}-{service}"), "pod-template-hash": "6c8f9d7b4"},
                        "annotations": {"kubectl.kubernetes.io/default-container": "app"},
                        "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "svc-6c8f9d7b4",
                            "uid": "rs", "controller": true}]},
                    "spec": {"nodeName": node(id), "containers": [{"name": "app", "image": "registry.example.com/app:1.42.0",
                        "ports": [{"name": "http-metrics", "containerPort": 8080, "protocol": "TCP"}]}]},
                    "status": {"podIP": ip(id), "hostIP": format!("192.168.{}.{}", id % 500 / 250, id % 250),
                        "phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}}));
            }
            for s in
                (0..self.per_job() / SLICE_ENDPOINTS).filter(|s| !churn || (s * SLICE_ENDPOINTS).is_multiple_of(10))
            {
                let service = format!("svc-{job}-{}", s / SLICES_PER_SERVICE);
                let endpoints: Vec<Value> = (s * SLICE_ENDPOINTS..(s + 1) * SLICE_ENDPOINTS)
                    .map(|k| self.id(job, k, churn))
                    .map(|id| {
                        json!({"addresses": [ip(id)], "nodeName": node(id), "zone": "eu-west-1a",
                        "conditions": {"ready": true, "serving": true, "terminating": false},
                        "targetRef": {"kind": "Pod", "name": pod_name(job, id), "namespace": ns}})
                    })
                    .collect();
                api.apply_json(
                    "discovery.k8s.io/v1",
                    "endpointslices",
                    json!({"apiVersion": "discovery.k8s.io/v1",
                    "kind": "EndpointSlice", "metadata": {"name": format!("{service}-{s:05}"), "namespace": ns,
                        "labels": {"kubernetes.io/service-name": service}},
                    "addressType": "IPv4", "endpoints": endpoints,
                    "ports": [{"name": "http-metrics", "port": 8080, "protocol": "TCP"}]}),
                );
            }
        }
    }

    /// The `scrape_configs` entries of the 10 jobs.
    fn jobs_yaml(&self, refresh: &str, kubeconfig: &Path) -> String {
        let mut yaml = String::new();
        for j in 0..JOBS {
            let _ = match self.shape {
                Shape::K => write!(
                    yaml,
                    "  - job_name: job-{j}\n    kubernetes_sd_configs:\n    - role: endpointslice\n      \
                     kubeconfig_file: {}\n      namespaces: {{names: [team-{j}]}}\n",
                    kubeconfig.display()
                ),
                _ => write!(
                    yaml,
                    "  - job_name: job-{j}\n    file_sd_configs:\n    - files: [{}]\n      refresh_interval: {refresh}\n",
                    self.file(j).display()
                ),
            };
        }
        yaml
    }
}

// ---------------------------------------------------------------------------------------------
// Processes

fn http_port(base: u16, i: usize) -> u16 {
    base + i as u16
}

fn peer_port(base: u16, i: usize) -> u16 {
    base + 10 + i as u16
}

fn ensure_free(port: u16) -> Result<()> {
    std::net::TcpListener::bind(("127.0.0.1", port))
        .map(drop)
        .map_err(|e| format!("port {port} is not free ({e}); pick another --base-port").into())
}

struct Replica {
    name: String,
    url: String,
    peer_url: String,
    config: PathBuf,
    data: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl Replica {
    /// Whether the process has exited (a zombie not reaped yet, or gone), without needing
    /// `&mut` to its `Child`.
    fn exited(&self) -> bool {
        let Some(child) = &self.child else {
            return false;
        };
        match std::fs::read_to_string(format!("/proc/{}/stat", child.id())) {
            // The state follows the parenthesised command name.
            Ok(stat) => stat.rsplit_once(") ").is_some_and(|(_, rest)| rest.starts_with('Z')),
            Err(_) => true,
        }
    }
}

/// The three replica processes; killed when dropped (also on panic).
struct Cluster {
    binary: PathBuf,
    base_port: u16,
    replicas: Vec<Replica>,
}

impl Cluster {
    fn new(binary: &Path, dir: &Path, base_port: u16, jobs: &str) -> Result<Self> {
        let peers: Vec<String> = (0..REPLICAS)
            .map(|j| format!("ta-{j}: http://127.0.0.1:{}", peer_port(base_port, j)))
            .collect();
        let collectors: Vec<String> = (0..COLLECTORS).map(|c| format!("collector-{c}")).collect();
        let mut replicas = Vec::new();
        for i in 0..REPLICAS {
            let name = format!("ta-{i}");
            let (data, config) = (dir.join(&name), dir.join(format!("{name}.yaml")));
            let text = format!(
                "listen_addr: 127.0.0.1:{http}\nallocation_strategy: consistent-hashing\n\
                 collectors:\n  static: [{collectors}]\n\
                 cluster:\n  name: {name}\n  data_dir: {data}\n  peer_listen_addr: 127.0.0.1:{peer}\n  peers: {{{peers}}}\n\
                 config:\n  global:\n    scrape_interval: 30s\n  scrape_configs:\n{jobs}",
                http = http_port(base_port, i),
                peer = peer_port(base_port, i),
                collectors = collectors.join(", "),
                data = data.display(),
                peers = peers.join(", "),
            );
            std::fs::write(&config, text)?;
            replicas.push(Replica {
                url: format!("http://127.0.0.1:{}", http_port(base_port, i)),
                peer_url: format!("http://127.0.0.1:{}", peer_port(base_port, i)),
                log: dir.join(format!("{name}.log")),
                name,
                config,
                data,
                child: None,
            });
        }
        Ok(Cluster {
            binary: binary.to_path_buf(),
            base_port,
            replicas,
        })
    }

    fn start(&mut self) -> Result<()> {
        for i in 0..REPLICAS {
            ensure_free(http_port(self.base_port, i))?;
            ensure_free(peer_port(self.base_port, i))?;
        }
        for r in &mut self.replicas {
            let log = std::fs::OpenOptions::new().create(true).append(true).open(&r.log)?;
            let child = Command::new(&self.binary)
                .arg("--config-file")
                .arg(&r.config)
                .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()))
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()
                .map_err(|e| format!("cannot start {} ({}): {e}", r.name, self.binary.display()))?;
            r.child = Some(child);
        }
        Ok(())
    }

    /// SIGKILL every replica and reap it.
    fn kill(&mut self) {
        for mut child in self.replicas.iter_mut().filter_map(|r| r.child.take()) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// An error naming a replica that exited, with the tail of its log.
    fn check_alive(&mut self) -> Result<()> {
        for r in &mut self.replicas {
            if let Some(child) = &mut r.child
                && let Ok(Some(status)) = child.try_wait()
            {
                let text = std::fs::read_to_string(&r.log).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                let tail = lines[lines.len().saturating_sub(15)..].join("\n");
                return Err(format!(
                    "{} exited ({status}); last lines of {}:\n{tail}",
                    r.name,
                    r.log.display()
                )
                .into());
            }
        }
        Ok(())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A child process killed when dropped (Prometheus).
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn proc_status(pid: u32, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with(key))?;
    Some(line.split_whitespace().nth(1)?.parse::<u64>().ok()? * 1024)
}

/// utime + stime in clock ticks.
fn cpu_ticks(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = text.rsplit_once(')')?.1.split_whitespace().collect();
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

fn clock_ticks_per_second() -> f64 {
    let output = Command::new("getconf").arg("CLK_TCK").output().ok();
    output
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// Bytes on disk (allocated blocks) under `path`.
fn disk_usage(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    let children = std::fs::read_dir(path).into_iter().flatten().flatten();
    meta.blocks() * 512
        + if meta.is_dir() {
            children.map(|e| disk_usage(&e.path())).sum()
        } else {
            0
        }
}

// ---------------------------------------------------------------------------------------------
// HTTP

/// Leader terms seen in `X-Allocator-Term`: changes after the first leader are elections.
#[derive(Default)]
struct Terms {
    last: Option<u64>,
    /// The next term seen is the expected one after a full restart.
    expect_new: bool,
    changes: u64,
    leader: Option<String>,
}

struct Http {
    client: reqwest::Client,
    terms: Mutex<Terms>,
}

#[derive(Deserialize)]
struct Group {
    targets: Vec<String>,
}

/// What a replica serves for some jobs, and the `X-Allocator-Revision`s of the answers.
struct Served {
    addresses: Vec<String>,
    revisions: HashSet<Option<String>>,
}

impl Http {
    fn terms(&self) -> std::sync::MutexGuard<'_, Terms> {
        self.terms.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Status, `X-Allocator-Revision` and body (asked gzipped, as collectors do); notes the
    /// leader and its term.
    async fn get(&self, url: &str) -> Result<(u16, Option<String>, Bytes)> {
        let response = self.client.get(url).header("accept-encoding", "gzip").send().await?;
        let header = |name: &str| {
            let value = response.headers().get(name).and_then(|v| v.to_str().ok());
            value.filter(|v| !v.is_empty()).map(str::to_string)
        };
        let revision = header("x-allocator-revision");
        let term = header("x-allocator-term").and_then(|t| t.parse::<u64>().ok());
        if let (Some(term), Some(leader)) = (term, header("x-allocator-leader")) {
            let mut terms = self.terms();
            // Only a newer term is news. A replica just restarted can still name the leader of
            // the term it persisted until it hears of the new one; that must not count as the
            // expected new term, or the new term that follows would count as an election.
            if terms.last.is_none_or(|last| term > last) {
                if let Some(last) = terms.last
                    && !terms.expect_new
                {
                    terms.changes += 1;
                    eprintln!("  leader election: term {last} → {term} ({leader} leads)");
                }
                (terms.last, terms.expect_new, terms.leader) = (Some(term), false, Some(leader));
            }
        }
        let (status, gzip) = (
            response.status().as_u16(),
            header("content-encoding").as_deref() == Some("gzip"),
        );
        let body = response.bytes().await?;
        if !gzip {
            return Ok((status, revision, body));
        }
        let mut plain = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&body[..]), &mut plain)?;
        Ok((status, revision, plain.into()))
    }

    /// Targets this replica assigns (its `/metrics` gauge), when it answers.
    async fn gauge(&self, url: &str) -> Option<usize> {
        let (_, _, body) = self.get(&format!("{url}/metrics")).await.ok()?;
        Some(sum_metric(&body, "opentelemetry_allocator_targets_per_collector{") as usize)
    }

    /// Every address served for `jobs` over all collectors; None while it answers 503.
    async fn served(&self, url: &str, jobs: std::ops::Range<usize>) -> Result<Option<Served>> {
        let mut served = Served {
            addresses: Vec::new(),
            revisions: HashSet::new(),
        };
        for job in jobs {
            for c in 0..COLLECTORS {
                let (status, revision, body) = self
                    .get(&format!("{url}/jobs/job-{job}/targets?collector_id=collector-{c}"))
                    .await?;
                if status != 200 {
                    return Ok(None);
                }
                let groups: Vec<Group> = serde_json::from_slice(&body)?;
                served.addresses.extend(groups.into_iter().flat_map(|g| g.targets));
                served.revisions.insert(revision);
            }
        }
        Ok(Some(served))
    }
}

/// Sum of the samples of every series starting with `prefix` in a text exposition.
fn sum_metric(body: &[u8], prefix: &str) -> f64 {
    let text = String::from_utf8_lossy(body);
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// `GET /cluster/status` on every peer port every 50 ms, on its own thread and runtime so the
/// benchmark's own work (parsing bodies) does not delay it; round trips in ms.
struct Prober {
    stop: CancellationToken,
    thread: std::thread::JoinHandle<Vec<f64>>,
}

impl Prober {
    fn start(peers: Vec<String>) -> Self {
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
                return Vec::new();
            };
            let Ok(client) = reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .no_proxy()
                .build()
            else {
                return Vec::new();
            };
            let probe = async |peer: String| {
                let mut samples = Vec::new();
                let mut tick = tokio::time::interval(PROBE_EVERY);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = stopped.cancelled() => return samples,
                        _ = tick.tick() => {}
                    }
                    let sent = Instant::now();
                    if let Ok(r) = client.get(format!("{peer}/cluster/status")).send().await
                        && r.status().is_success()
                        && r.bytes().await.is_ok()
                    {
                        samples.push(sent.elapsed().as_secs_f64() * 1000.0);
                    }
                }
            };
            runtime
                .block_on(futures::future::join_all(peers.into_iter().map(probe)))
                .concat()
        });
        Prober { stop, thread }
    }

    fn finish(self) -> Vec<f64> {
        self.stop.cancel();
        self.thread.join().unwrap_or_default()
    }
}

fn percentile(samples: &[f64], p: f64) -> Option<f64> {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((p * sorted.len() as f64).ceil() as usize).max(1);
    sorted.get(rank - 1).copied()
}

// ---------------------------------------------------------------------------------------------
// The benchmark

/// One replica's state in a wait: passed at an instant, or what it is at.
enum Check {
    Passed(Instant),
    Waiting(String),
}

struct Bench {
    args: Args,
    binary: PathBuf,
    http: Http,
    clock_ticks: f64,
    timeout: Duration,
}

impl Bench {
    /// Run `step` every 150 ms until it yields the instant of success (or the timeout); `step`
    /// also says where things are, printed every 2 s.
    async fn poll(
        &self,
        t0: Instant,
        what: &str,
        mut step: impl AsyncFnMut() -> Result<(Option<Instant>, String)>,
    ) -> Result<Cell> {
        let mut progress = Instant::now();
        loop {
            let (passed, state) = step().await?;
            if let Some(at) = passed {
                return Ok(Cell::Done(at - t0));
            }
            if progress.elapsed() >= Duration::from_secs(2) {
                progress = Instant::now();
                eprintln!("[{what}] {state} ... {:.1} s", t0.elapsed().as_secs_f64());
            }
            if t0.elapsed() > self.timeout {
                eprintln!("[{what}] timeout after {} s ({state})", self.timeout.as_secs());
                return Ok(Cell::Timeout(self.timeout.as_secs()));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Poll every replica with `check` until all passed; when the last one did. Each replica
    /// is polled on its own schedule, as collectors poll it: a slow answer from one (a body
    /// rendered on first request, say) must not delay the checks of the others.
    async fn wait_all(
        &self,
        cluster: &mut Cluster,
        what: &str,
        t0: Instant,
        check: impl AsyncFn(usize, &Replica) -> Result<Check>,
    ) -> Result<Cell> {
        enum Outcome {
            Done,
            Timeout,
            Exited,
        }
        let done: Vec<std::sync::Mutex<Option<Instant>>> = (0..REPLICAS).map(|_| Default::default()).collect();
        let states: Vec<std::sync::Mutex<String>> = (0..REPLICAS).map(|_| Default::default()).collect();
        let outcome = {
            let replicas = &cluster.replicas;
            let (done, states, check) = (&done, &states, &check);
            let each = futures::future::try_join_all((0..replicas.len()).map(|i| async move {
                loop {
                    match check(i, &replicas[i]).await? {
                        Check::Passed(at) => {
                            *done[i].lock().expect("never poisoned") = Some(at);
                            *states[i].lock().expect("never poisoned") = "done".into();
                            eprintln!(
                                "[{what}] {} passed after {:.2} s",
                                replicas[i].name,
                                (at - t0).as_secs_f64()
                            );
                            return Ok::<(), Error>(());
                        }
                        Check::Waiting(state) => *states[i].lock().expect("never poisoned") = state,
                    }
                    tokio::time::sleep(POLL).await;
                }
            }));
            let monitor = async {
                let mut progress = Instant::now();
                loop {
                    tokio::time::sleep(POLL).await;
                    let summary = || {
                        replicas
                            .iter()
                            .zip(states)
                            .map(|(r, s)| format!("{} on {}", s.lock().expect("never poisoned"), r.name))
                            .collect::<Vec<_>>()
                            .join(", ")
                    };
                    if replicas.iter().any(Replica::exited) {
                        return Outcome::Exited;
                    }
                    if t0.elapsed() > self.timeout {
                        eprintln!("[{what}] timeout after {} s ({})", self.timeout.as_secs(), summary());
                        return Outcome::Timeout;
                    }
                    if progress.elapsed() >= Duration::from_secs(2) {
                        progress = Instant::now();
                        eprintln!("[{what}] {} ... {:.1} s", summary(), t0.elapsed().as_secs_f64());
                    }
                }
            };
            tokio::select! {
                result = each => result.map(|_| Outcome::Done)?,
                outcome = monitor => outcome,
            }
        };
        match outcome {
            Outcome::Done => {
                let last = done.iter().filter_map(|d| *d.lock().expect("never poisoned")).max();
                Ok(last.map_or(Cell::NotRun, |at| Cell::Done(at - t0)))
            }
            Outcome::Timeout => Ok(Cell::Timeout(self.timeout.as_secs())),
            Outcome::Exited => {
                cluster.check_alive()?;
                Err(format!("[{what}] a replica exited").into())
            }
        }
    }

    /// Until every replica serves all `n` targets (cold start, restart).
    async fn wait_served(&self, cluster: &mut Cluster, what: &str, n: usize, t0: Instant) -> Result<Cell> {
        let waiting = |s: String| -> Result<Check> { Ok(Check::Waiting(s)) };
        self.wait_all(cluster, what, t0, async |_, r: &Replica| {
            let Some(gauge) = self.http.gauge(&r.url).await else {
                return waiting("not answering".into());
            };
            if gauge != n {
                return waiting(format!("{gauge}/{n} assigned"));
            }
            let Ok((200, revision, _)) = self.http.get(&format!("{}/readyz", r.url)).await else {
                return waiting(format!("{n}/{n} assigned, not ready"));
            };
            let at = Instant::now();
            match self.http.served(&r.url, 0..JOBS).await? {
                Some(s) if s.addresses.len() == n && s.revisions == HashSet::from([revision]) => Ok(Check::Passed(at)),
                Some(s) => waiting(format!("{}/{n} served", s.addresses.len())),
                None => waiting("503".into()),
            }
        })
        .await
    }

    /// Until every replica serves the churned job 0: all added addresses, none of the removed,
    /// the job's count, and N in all.
    async fn wait_churn(&self, cluster: &mut Cluster, what: &str, w: &Workload, t0: Instant) -> Result<Cell> {
        let (removed, added) = w.churn_sets(0);
        let checked: Vec<std::sync::Mutex<Option<String>>> = (0..REPLICAS).map(|_| Default::default()).collect();
        self.wait_all(cluster, what, t0, async |i, r: &Replica| {
            let Ok((200, revision, _)) = self.http.get(&format!("{}/jobs", r.url)).await else {
                return Ok(Check::Waiting("not serving".into()));
            };
            let at = Instant::now();
            let seen = checked[i].lock().expect("never poisoned").clone();
            if revision.is_some() && revision == seen {
                return Ok(Check::Waiting(format!(
                    "old set at revision {}",
                    revision.unwrap_or_default()
                )));
            }
            let Some(served) = self.http.served(&r.url, 0..1).await? else {
                return Ok(Check::Waiting("503".into()));
            };
            if served.revisions != HashSet::from([revision.clone()]) {
                return Ok(Check::Waiting("revision moved".into()));
            }
            *checked[i].lock().expect("never poisoned") = revision.clone();
            let set: HashSet<&String> = served.addresses.iter().collect();
            let new = added.iter().filter(|a| set.contains(a)).count();
            let old = removed.iter().filter(|a| set.contains(a)).count();
            if served.addresses.len() == w.per_job()
                && new == added.len()
                && old == 0
                && self.http.gauge(&r.url).await == Some(w.size)
            {
                return Ok(Check::Passed(at));
            }
            Ok(Check::Waiting(format!("{new}/{} new, {old} old", added.len())))
        })
        .await
    }

    /// One size and shape: our cluster, then Prometheus on the same files.
    async fn run(&self, root: &Path, shape: Shape, size: usize) -> Result<Row> {
        let label = format!("{shape:?} {size}");
        let dir = root.join(format!("{shape:?}-{size}"));
        let w = Workload {
            shape,
            size,
            sd_dir: dir.join("sd"),
        };
        std::fs::create_dir_all(&w.sd_dir)?;
        let started = Instant::now();
        let kubeconfig = dir.join("kubeconfig");
        let api = if shape == Shape::K {
            let api = FakeApiServer::start().await;
            std::fs::write(&kubeconfig, api.kubeconfig("default"))?;
            w.apply_k(&api, false);
            eprintln!(
                "[{label}] fake API server {} holds the objects ({:.1} s)",
                api.url(),
                started.elapsed().as_secs_f64()
            );
            Some(api)
        } else {
            for job in 0..JOBS {
                w.write(job, false)?;
            }
            let mib = disk_usage(&w.sd_dir) as f64 / MIB;
            eprintln!(
                "[{label}] wrote {JOBS} files, {mib:.1} MiB, in {:.1} s",
                started.elapsed().as_secs_f64()
            );
            None
        };
        *self.http.terms() = Terms::default();
        let mut row = Row {
            shape: format!("{shape:?}"),
            size,
            ..Row::default()
        };
        let jobs = w.jobs_yaml(&self.args.refresh, &kubeconfig);
        let mut cluster = Cluster::new(&self.binary, &dir, self.args.base_port, &jobs)?;
        let outcome = self
            .measure_cluster(&mut cluster, &label, &w, api.as_ref(), &mut row)
            .await;
        row.elections = self.http.terms().changes;
        cluster.kill(); // before Prometheus starts: they must not share the CPU
        if let Err(e) = outcome {
            eprintln!("[{label}] failed: {e}");
            let mut cells = [&mut row.cold, &mut row.churn, &mut row.restart].into_iter();
            if let Some(cell) = cells.find(|c| matches!(c, Cell::NotRun)) {
                *cell = Cell::failed(&e);
            }
        }
        if row.failed() {
            eprintln!("[{label}] replica logs: {}/ta-*.log", dir.display());
        }
        if !self.args.skip_prometheus && shape != Shape::K && matches!(row.cold, Cell::Done(_)) {
            row.prometheus = self.prometheus(&dir, &w, &label).await;
        }
        Ok(row)
    }

    async fn measure_cluster(
        &self,
        cluster: &mut Cluster,
        label: &str,
        w: &Workload,
        api: Option<&FakeApiServer>,
        row: &mut Row,
    ) -> Result<()> {
        let peers: Vec<String> = cluster.replicas.iter().map(|r| r.peer_url.clone()).collect();
        // Cold start.
        let prober = Prober::start(peers.clone());
        let t0 = Instant::now();
        cluster.start()?;
        let cold = self
            .wait_served(cluster, &format!("{label} cold start"), w.size, t0)
            .await;
        row.rtt.extend(prober.finish());
        row.cold = cold?;
        if !matches!(row.cold, Cell::Done(_)) {
            return Ok(());
        }
        // Memory and disk once converged, leader first.
        let _ = self.http.get(&format!("{}/jobs", cluster.replicas[0].url)).await;
        let leader = self.http.terms().leader.clone().unwrap_or_default();
        let mut order: Vec<&Replica> = cluster.replicas.iter().collect();
        order.sort_by_key(|r| r.name != leader);
        let pids: Vec<u32> = order.iter().filter_map(|r| r.child.as_ref().map(Child::id)).collect();
        row.cold_cpu = pids
            .iter()
            .map(|&p| cpu_ticks(p).map_or(f64::NAN, |t| t as f64 / self.clock_ticks))
            .collect();
        for (r, &pid) in order.iter().zip(&pids) {
            let (rss, peak) = (
                proc_status(pid, "VmRSS:").unwrap_or(0),
                proc_status(pid, "VmHWM:").unwrap_or(0),
            );
            row.rss.push((r.name.clone(), rss, peak));
        }
        row.data_dirs = cluster.replicas.iter().map(|r| disk_usage(&r.data)).collect();
        let rss: Vec<String> = row
            .rss
            .iter()
            .map(|(n, rss, _)| format!("{n} {:.0} MiB", *rss as f64 / MIB))
            .collect();
        eprintln!("[{label}] leader {leader}; RSS {}", rss.join(", "));
        // Churn: 1% of all targets replaced in job 0.
        let t0 = match api {
            Some(api) => {
                let t0 = Instant::now();
                w.apply_k(api, true);
                eprintln!(
                    "[{label} churn] the API changes took {:.2} s to apply",
                    t0.elapsed().as_secs_f64()
                );
                t0
            }
            None => w.write(0, true)?,
        };
        row.churn = self.wait_churn(cluster, &format!("{label} churn"), w, t0).await?;
        // Idle CPU, nobody polling.
        let before: Vec<Option<u64>> = pids.iter().map(|&p| cpu_ticks(p)).collect();
        eprintln!("[{label}] idle: measuring CPU for {} s", self.args.idle_seconds);
        let idle = Instant::now();
        tokio::time::sleep(Duration::from_secs(self.args.idle_seconds)).await;
        let seconds = idle.elapsed().as_secs_f64();
        row.idle_cpu = (pids.iter().zip(&before))
            .map(|(&p, b)| match (b, cpu_ticks(p)) {
                (Some(b), Some(a)) => a.saturating_sub(*b) as f64 / self.clock_ticks / seconds * 100.0,
                _ => f64::NAN,
            })
            .collect();
        for r in &cluster.replicas {
            let _ = self.http.get(&format!("{}/jobs", r.url)).await; // terms after the idle time
        }
        // Full restart.
        cluster.kill();
        self.http.terms().expect_new = true;
        let prober = Prober::start(peers);
        let t0 = Instant::now();
        cluster.start()?;
        let restart = self.wait_served(cluster, &format!("{label} restart"), w.size, t0).await;
        row.rtt.extend(prober.finish());
        row.restart = restart?;
        Ok(())
    }

    /// Prometheus on the same files: ready time, RSS, churn. None when it is not installed.
    async fn prometheus(&self, dir: &Path, w: &Workload, label: &str) -> Option<PromRow> {
        let Some(binary) = which("prometheus") else {
            eprintln!("[{label}] prometheus: not on PATH, comparison skipped (apt-get install prometheus)");
            return None;
        };
        let mut row = PromRow::default();
        if let Err(e) = self.prometheus_measure(&binary, dir, w, label, &mut row).await {
            eprintln!(
                "[{label}] prometheus failed: {e}; its log: {}/prometheus.log",
                dir.display()
            );
            let cell = if matches!(row.ready, Cell::NotRun) {
                &mut row.ready
            } else {
                &mut row.churn
            };
            *cell = Cell::failed(&e);
        }
        Some(row)
    }

    async fn prometheus_measure(
        &self,
        binary: &Path,
        dir: &Path,
        w: &Workload,
        label: &str,
        row: &mut PromRow,
    ) -> Result<()> {
        w.write(0, false)?; // back to the set our cluster started from
        let port = self.args.base_port + 20;
        ensure_free(port)?;
        // proxy_url: the scrapes (1 h apart, spread over the hour) go to a closed local port,
        // not to the made-up 10.x addresses.
        let mut config = String::from("global:\n  scrape_interval: 1h\nscrape_configs:\n");
        for j in 0..JOBS {
            let _ = write!(
                config,
                "- job_name: job-{j}\n  proxy_url: http://127.0.0.1:9\n  file_sd_configs:\n  - files: [{}]\n    \
                 refresh_interval: {}\n",
                w.file(j).display(),
                self.args.refresh
            );
        }
        let config_path = dir.join("prometheus.yml");
        std::fs::write(&config_path, config)?;
        let log = std::fs::File::create(dir.join("prometheus.log"))?;
        let t0 = Instant::now();
        let mut prometheus = Guard(
            Command::new(binary)
                .arg(format!("--config.file={}", config_path.display()))
                .arg(format!("--storage.tsdb.path={}", dir.join("prometheus-data").display()))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()?,
        );
        let url = format!("http://127.0.0.1:{port}");
        let metric = async |prefix: &str| match self.http.get(&format!("{url}/metrics")).await {
            Ok((_, _, body)) => sum_metric(&body, prefix),
            Err(_) => -1.0,
        };
        let active = async |job: usize| -> Result<Vec<String>> {
            let url = format!("{url}/api/v1/targets?state=active&scrapePool=job-{job}");
            let answer: Value = serde_json::from_slice(&self.http.get(&url).await?.2)?;
            let targets = answer["data"]["activeTargets"].as_array().into_iter().flatten();
            Ok(targets
                .filter_map(|t| Some(t["labels"]["instance"].as_str()?.to_string()))
                .collect())
        };
        // Ready: its scrape pools hold N targets (a cheap gauge), verified once on the API.
        let (pid, mut rss) = (prometheus.0.id(), None);
        row.ready = self
            .poll(t0, &format!("{label} prometheus ready"), async || {
                if let Ok(Some(status)) = prometheus.0.try_wait() {
                    return Err(format!("prometheus exited ({status})").into());
                }
                let pooled = metric("prometheus_target_scrape_pool_targets{").await;
                let at = Instant::now();
                if pooled == w.size as f64 {
                    // Before the targets API, whose large answers grow its heap: collectors never ask it.
                    rss = proc_status(pid, "VmRSS:");
                    let mut total = 0;
                    for job in 0..JOBS {
                        total += active(job).await?.len();
                    }
                    if total == w.size {
                        return Ok((Some(at), String::new()));
                    }
                }
                Ok((None, format!("{pooled}/{} in scrape pools", w.size)))
            })
            .await?;
        eprintln!("[{label}] prometheus ready: {}", row.ready);
        if !matches!(row.ready, Cell::Done(_)) {
            return Ok(());
        }
        row.rss = rss;
        // Churn: the same change; a sync of job-0's scrape pool is the signal to look.
        let syncs = "prometheus_target_sync_length_seconds_count{scrape_job=\"job-0\"}";
        let (removed, added) = w.churn_sets(0);
        let mut last = metric(syncs).await;
        let t0 = w.write(0, true)?;
        row.churn = self
            .poll(t0, &format!("{label} prometheus churn"), async || {
                let now = metric(syncs).await;
                let at = Instant::now();
                if now != last {
                    last = now;
                    let served: HashSet<String> = active(0).await?.into_iter().collect();
                    if served.len() == w.per_job() && added.is_subset(&served) && removed.is_disjoint(&served) {
                        return Ok((Some(at), String::new()));
                    }
                }
                Ok((None, "old set".into()))
            })
            .await?;
        eprintln!("[{label}] prometheus churn: {}", row.churn);
        Ok(())
    }
}

fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// `--binary`, else `target-allocator` beside this benchmark's `deps/` directory, else under
/// `$CARGO_TARGET_DIR/release` or `target/release`.
fn locate_binary(explicit: Option<&Path>) -> Result<PathBuf> {
    let mut candidates: Vec<PathBuf> = explicit.map(Path::to_path_buf).into_iter().collect();
    if explicit.is_none() {
        let exe = std::env::current_exe().ok();
        candidates.extend(exe.and_then(|e| Some(e.parent()?.parent()?.join("target-allocator"))));
        let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| PathBuf::from("target"), PathBuf::from);
        candidates.push(target.join("release").join("target-allocator"));
    }
    candidates.iter().find(|p| p.is_file()).cloned().ok_or_else(|| {
        let looked: Vec<String> = candidates.iter().map(|p| p.display().to_string()).collect();
        format!(
            "the target-allocator binary is missing (looked at {}); build it first: \
             cargo build --release --bin target-allocator",
            looked.join(", ")
        )
        .into()
    })
}

fn mib(bytes: u64) -> String {
    format!("{:.0}", bytes as f64 / MIB)
}

fn print_tables(rows: &[Row]) {
    println!("\n## target-allocator, 3 replicas (10 jobs, 10 static collectors, consistent-hashing)\n");
    println!(
        "| shape | targets | cold start | cold-start CPU s leader / followers | churn 1% | full restart | RSS MiB leader (peak) | \
         RSS MiB followers | data dir MiB per replica | idle CPU % leader / followers | elections after the first | \
         peer RTT ms p99 / max (n) |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        let leader = r.rss.first().map_or("–".into(), |(n, rss, peak)| {
            format!("{} ({}) {n}", mib(*rss), mib(*peak))
        });
        let followers: Vec<String> = r.rss.iter().skip(1).map(|(_, rss, _)| mib(*rss)).collect();
        let data: Vec<String> = r.data_dirs.iter().map(|b| format!("{:.1}", *b as f64 / MIB)).collect();
        let cpu: Vec<String> = r.idle_cpu.iter().map(|c| format!("{c:.1}")).collect();
        let cold_cpu: Vec<String> = r.cold_cpu.iter().map(|c| format!("{c:.1}")).collect();
        let rtt = match (percentile(&r.rtt, 0.99), r.rtt.iter().copied().reduce(f64::max)) {
            (Some(p99), Some(max)) => format!("{p99:.1} / {max:.1} ({})", r.rtt.len()),
            _ => "–".into(),
        };
        println!(
            "| {} | {} | {} | {} | {} | {} | {leader} | {} | {} | {} | {} | {rtt} |",
            r.shape,
            r.size,
            r.cold,
            cold_cpu.join(" / "),
            r.churn,
            r.restart,
            followers.join(", "),
            data.join(", "),
            cpu.join(" / "),
            r.elections,
        );
    }
    println!(
        "\ncold start: spawn → every replica serves all N (sum of `/jobs/{{job}}/targets?collector_id=` entries); \
         churn: rename of the file (K: first API change) → every replica serves the new set; peer RTT: \
         `GET /cluster/status` on the peer ports every 50 ms during cold start and restart (the peer HTTP server's \
         responsiveness, not the Raft heartbeat itself)."
    );
    if rows.iter().all(|r| r.prometheus.is_none()) {
        return;
    }
    println!("\n## Prometheus on the same files (run after our cluster stopped)\n");
    println!(
        "| shape | targets | ready: ours / Prometheus (ratio) | churn 1%: ours / Prometheus (ratio) | \
         RSS MiB: our leader / Prometheus (ratio) |"
    );
    println!("|---|---:|---:|---:|---:|");
    let ratio = |ours: Option<f64>, theirs: Option<f64>| match (ours, theirs) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}×", a / b),
        _ => "–".into(),
    };
    for r in rows {
        let Some(p) = &r.prometheus else { continue };
        let ours = r.rss.first().map(|(_, rss, _)| *rss);
        println!(
            "| {} | {} | {} / {} ({}) | {} / {} ({}) | {} / {} ({}) |",
            r.shape,
            r.size,
            r.cold,
            p.ready,
            ratio(r.cold.secs(), p.ready.secs()),
            r.churn,
            p.churn,
            ratio(r.churn.secs(), p.churn.secs()),
            ours.map_or("–".into(), mib),
            p.rss.map_or("–".into(), mib),
            ratio(ours.map(|b| b as f64), p.rss.map(|b| b as f64)),
        );
    }
    println!(
        "\nPrometheus ready: spawn → `prometheus_target_scrape_pool_targets` sums to N, verified on \
         `/api/v1/targets?state=active&scrapePool=` (its RSS is read before that API's large answers); its churn: \
         rename → the job's active targets are the new set (its discovery and scrape managers each pass updates \
         on at most every 5 s)."
    );
}

async fn run_all(args: Args) -> Result<()> {
    let binary = locate_binary(args.binary.as_deref())?;
    let mut shapes = Vec::new();
    for name in &args.shapes {
        shapes.push(match name.trim().to_ascii_uppercase().as_str() {
            "G" => Shape::G,
            "S" => Shape::S,
            "K" => Shape::K,
            other => return Err(format!("unknown shape {other:?} (G, S or K)").into()),
        });
    }
    if let Some(bad) = args.sizes.iter().find(|s| !s.is_multiple_of(1000) || **s == 0) {
        return Err(format!("size {bad} is not a positive multiple of 1000").into());
    }
    let root = tempfile::Builder::new().prefix("ta-scale-").tempdir()?;
    eprintln!(
        "binary {}; files, data and logs under {}",
        binary.display(),
        root.path().display()
    );
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .no_proxy()
        .build()?;
    let bench = Bench {
        timeout: Duration::from_secs(args.timeout),
        args,
        binary,
        http: Http {
            client,
            terms: Mutex::default(),
        },
        clock_ticks: clock_ticks_per_second(),
    };
    let (mut rows, mut failed) = (Vec::new(), false);
    for &size in &bench.args.sizes {
        for &shape in &shapes {
            let row = bench.run(root.path(), shape, size).await.unwrap_or_else(|e| {
                eprintln!("[{shape:?} {size}] cannot run: {e}");
                Row {
                    shape: format!("{shape:?}"),
                    size,
                    cold: Cell::failed(&e),
                    ..Row::default()
                }
            });
            failed |= row.failed() || matches!(row.cold, Cell::Failed(_));
            rows.push(row);
        }
    }
    print_tables(&rows);
    if bench.args.keep || failed {
        eprintln!("kept {} (files, data directories, logs)", root.keep().display());
    }
    Ok(())
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let outcome = tokio::select! {
        outcome = run_all(args) => outcome,
        _ = tokio::signal::ctrl_c() => Err("interrupted".into()),
    };
    if let Err(e) = outcome {
        eprintln!("scale: {e}");
        std::process::exit(1);
    }
}
