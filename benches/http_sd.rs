//! HTTP_SD serving: requests per second and latency of `/jobs/<job>/targets?collector_id=<c>`
//! on one replica (a cluster of one, in this process), against the budgets of docs/benchmarks.md ("HTTP_SD serving")
//! (≥ 20k requests/s per replica on 2 cores for a 1k-target response; p99 ≤ 5 ms at
//! 200 requests/s).
//!
//! The replica serves one job of `targets × collectors` static targets in groups of 5, each
//! group with 10 Kubernetes-style labels, allocated with `balanced` so every collector's
//! response holds exactly `targets` targets. The load generator is written here: a minimal
//! HTTP/1.1 client over keep-alive TCP connections (no parsing beyond the status line and
//! `Content-Length`, the body read and discarded), so the client costs as little as possible.
//!
//! - closed loop: `connections` connections, each sending its next request as soon as the
//!   previous answer is read, for `duration` → requests/s, p50/p99 latency;
//! - open loop: a fixed `rate` of requests/s spread over 4 connections on a fixed schedule;
//!   latency is measured from the scheduled send time when the connection was still busy then
//!   (no coordinated omission), else from the actual send → p50/p99/max.
//!
//! Both are run without and with `Accept-Encoding: gzip`, and the closed loop also on `/livez`
//! (the framework alone) and on an unknown collector (`[]`, the handler without the body), to
//! separate framework, handler and body costs. CPU time is read per thread from
//! `/proc/self/task/*/schedstat`, split between the server runtime (and every other thread of
//! the replica) and the client runtime: client and server share the machine's cores.
//!
//! Settings (environment): `HTTP_SD_DURATION` seconds per phase (10), `HTTP_SD_CONNECTIONS`
//! (16), `HTTP_SD_RATE` requests/s (200), `HTTP_SD_TARGETS` per collector (1000),
//! `HTTP_SD_COLLECTORS` (4), `HTTP_SD_SERVER_THREADS` (2), `HTTP_SD_CLIENT_THREADS` (1),
//! `HTTP_SD_PHASES` (comma-separated subset of `livez,empty,body,gzip,open-livez,open,open-gzip`).

use std::fmt::Write as _;
use std::io;
use std::time::Duration;
use std::time::Instant;

use target_allocator::config::UpstreamFlags;
use tokio::io::AsyncReadExt;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

const JOB: &str = "kubernetes-pods";
const GROUP_SIZE: usize = 5;
const CLIENT_THREAD: &str = "bench-client";
const SERVER_THREAD: &str = "bench-server";

struct Settings {
    duration: Duration,
    connections: usize,
    rate: u32,
    targets: usize,
    collectors: usize,
    server_threads: usize,
    client_threads: usize,
    phases: Vec<String>,
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(text) => text
            .parse()
            .unwrap_or_else(|_| panic!("{name}={text:?} is not a valid value")),
        Err(_) => default,
    }
}

impl Settings {
    fn from_env() -> Self {
        Settings {
            duration: Duration::from_secs_f64(env_or("HTTP_SD_DURATION", 10.0)),
            connections: env_or("HTTP_SD_CONNECTIONS", 16),
            rate: env_or("HTTP_SD_RATE", 200),
            targets: env_or("HTTP_SD_TARGETS", 1000),
            collectors: env_or("HTTP_SD_COLLECTORS", 4),
            server_threads: env_or("HTTP_SD_SERVER_THREADS", 2),
            client_threads: env_or("HTTP_SD_CLIENT_THREADS", 1),
            phases: env_or(
                "HTTP_SD_PHASES",
                "livez,empty,body,gzip,open-livez,open,open-gzip".to_string(),
            )
            .split(',')
            .map(|p| p.trim().to_string())
            .filter(|p| !p.is_empty())
            .collect(),
        }
    }
}

/// The replica's configuration: one job, `collectors × targets` static targets.
fn config_yaml(settings: &Settings, data_dir: &std::path::Path, http_port: u16, peer_port: u16) -> String {
    let total = settings.targets * settings.collectors;
    let collectors: Vec<String> = (0..settings.collectors).map(|c| format!("c-{c}")).collect();
    let mut yaml = format!(
        "listen_addr: 127.0.0.1:{http_port}\n\
         allocation_strategy: balanced\n\
         coalesce_window: 200ms\n\
         collectors:\n  static: [{}]\n\
         cluster:\n  name: bench-0\n  data_dir: {}\n  peer_listen_addr: 127.0.0.1:{peer_port}\n  \
         peers:\n    bench-0: http://127.0.0.1:{peer_port}\n\
         config:\n  scrape_configs:\n  - job_name: {JOB}\n    static_configs:\n",
        collectors.join(", "),
        data_dir.display(),
    );
    for group in 0..total.div_ceil(GROUP_SIZE) {
        let addresses: Vec<String> = (group * GROUP_SIZE..((group + 1) * GROUP_SIZE).min(total))
            .map(|t| format!("10.{}.{}.{}:8080", t / 65536, (t / 256) % 256, t % 256))
            .collect();
        let app = format!("app-{}", group % 40);
        let _ = write!(
            yaml,
            "    - targets: [{}]\n      labels:\n        \
             __meta_kubernetes_namespace: team-{ns}\n        \
             __meta_kubernetes_service_name: {app}\n        \
             __meta_kubernetes_pod_name: {app}-7d9f8b6c5-{group:05}\n        \
             __meta_kubernetes_pod_node_name: node-{node:03}.eu-west-1.compute.internal\n        \
             __meta_kubernetes_pod_uid: 3f2a{group:08x}-9c1e-4b7a-8d2f-6e5b4a3c2d1e\n        \
             __meta_kubernetes_pod_controller_kind: ReplicaSet\n        \
             __meta_kubernetes_pod_controller_name: {app}-7d9f8b6c5\n        \
             __meta_kubernetes_pod_label_app_kubernetes_io_name: {app}\n        \
             __meta_kubernetes_endpointslice_name: {app}-{slice:05}\n        \
             __meta_kubernetes_endpoint_port_name: http-metrics\n",
            addresses.join(", "),
            ns = group % 20,
            node = group % 97,
            slice = group / 4,
        );
    }
    yaml
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("an ephemeral port")
        .port()
}

/// A keep-alive HTTP/1.1 connection that sends one fixed request and reads the answer.
struct Connection {
    stream: TcpStream,
    buffer: Vec<u8>,
}

/// What one answer was: its status and the body length.
struct Answer {
    status: u16,
    body_len: usize,
}

impl Connection {
    async fn open(port: u16) -> io::Result<Self> {
        let stream = TcpStream::connect(("127.0.0.1", port)).await?;
        stream.set_nodelay(true)?;
        Ok(Connection {
            stream,
            buffer: vec![0; 256 * 1024],
        })
    }

    async fn exchange(&mut self, request: &[u8]) -> io::Result<Answer> {
        self.stream.write_all(request).await?;
        let mut filled = 0;
        let header_end = loop {
            let read = self.stream.read(&mut self.buffer[filled..]).await?;
            if read == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed"));
            }
            filled += read;
            if let Some(end) = self.buffer[..filled].windows(4).position(|w| w == b"\r\n\r\n") {
                break end + 4;
            }
            if filled == self.buffer.len() {
                return Err(io::Error::other("response headers too long"));
            }
        };
        let head = std::str::from_utf8(&self.buffer[..header_end]).map_err(io::Error::other)?;
        let status: u16 = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| io::Error::other(format!("bad status line: {head:?}")))?;
        let body_len: usize = head
            .lines()
            .find_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse().ok())?
            })
            .ok_or_else(|| io::Error::other(format!("no Content-Length: {head:?}")))?;
        let mut remaining = (body_len + header_end).saturating_sub(filled);
        while remaining > 0 {
            let want = remaining.min(self.buffer.len());
            let read = self.stream.read(&mut self.buffer[..want]).await?;
            if read == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed in a body",
                ));
            }
            remaining -= read;
        }
        Ok(Answer { status, body_len })
    }
}

fn request_bytes(path: &str, gzip: bool) -> Vec<u8> {
    let encoding = if gzip { "Accept-Encoding: gzip\r\n" } else { "" };
    format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: http-sd-bench\r\n{encoding}\r\n").into_bytes()
}

/// CPU time of this process's threads so far, split between the client runtime and
/// everything else (the replica).
#[derive(Debug, Clone, Copy, Default)]
struct Cpu {
    /// On CPU, from `/proc/self/task/*/schedstat` (nanoseconds).
    client: Duration,
    server: Duration,
    /// Of the server's time, in the kernel (`stime` of `/proc/self/task/*/stat`, in ticks).
    server_kernel_ticks: u64,
    server_ticks: u64,
}

impl std::ops::Sub for Cpu {
    type Output = Cpu;
    fn sub(self, earlier: Cpu) -> Cpu {
        Cpu {
            client: self.client.saturating_sub(earlier.client),
            server: self.server.saturating_sub(earlier.server),
            server_kernel_ticks: self.server_kernel_ticks.saturating_sub(earlier.server_kernel_ticks),
            server_ticks: self.server_ticks.saturating_sub(earlier.server_ticks),
        }
    }
}

fn cpu_now() -> Cpu {
    let mut cpu = Cpu::default();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return cpu;
    };
    for task in tasks.flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        let on_cpu: u64 = std::fs::read_to_string(task.path().join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next().and_then(|n| n.parse().ok()))
            .unwrap_or(0);
        if comm.trim().starts_with(CLIENT_THREAD) {
            cpu.client += Duration::from_nanos(on_cpu);
            continue;
        }
        cpu.server += Duration::from_nanos(on_cpu);
        // Fields after the parenthesised command name: state is field 3, utime 14, stime 15.
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        let fields: Vec<u64> = stat
            .rsplit_once(')')
            .map(|(_, rest)| {
                rest.split_whitespace()
                    .skip(11)
                    .take(2)
                    .filter_map(|f| f.parse().ok())
                    .collect()
            })
            .unwrap_or_default();
        if let [user, kernel] = fields[..] {
            cpu.server_ticks += user + kernel;
            cpu.server_kernel_ticks += kernel;
        }
    }
    cpu
}

struct Measured {
    requests: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
    body_len: usize,
    cpu: Cpu,
}

impl Measured {
    fn percentile(&self, p: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let rank = ((p / 100.0) * self.latencies.len() as f64).ceil() as usize;
        self.latencies[rank.clamp(1, self.latencies.len()) - 1]
    }

    fn rate(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }

    fn per_request(&self, cpu: Duration) -> f64 {
        cpu.as_secs_f64() * 1e6 / self.requests.max(1) as f64
    }
}

fn check(answer: &Answer, expected_len: Option<usize>, what: &str) {
    assert_eq!(answer.status, 200, "{what}: status");
    if let Some(expected) = expected_len {
        assert_eq!(answer.body_len, expected, "{what}: body length");
    }
}

/// `connections` connections sending back to back for `duration` (after a 1 s warm-up).
async fn closed_loop(
    port: u16,
    request: Vec<u8>,
    expected_len: Option<usize>,
    connections: usize,
    duration: Duration,
) -> Measured {
    let request = std::sync::Arc::new(request);
    let mut tasks = tokio::task::JoinSet::new();
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(connections + 1));
    let stop = CancellationToken::new();
    let measuring = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    for _ in 0..connections {
        let request = std::sync::Arc::clone(&request);
        let barrier = std::sync::Arc::clone(&barrier);
        let stop = stop.clone();
        let measuring = std::sync::Arc::clone(&measuring);
        tasks.spawn(async move {
            let mut connection = Connection::open(port).await.expect("connect");
            barrier.wait().await;
            let mut latencies = Vec::with_capacity(1 << 16);
            let mut body_len = 0;
            while !stop.is_cancelled() {
                let sent = Instant::now();
                let answer = connection.exchange(&request).await.expect("exchange");
                let latency = sent.elapsed();
                check(&answer, expected_len, "closed loop");
                body_len = answer.body_len;
                if measuring.load(std::sync::atomic::Ordering::Relaxed) {
                    latencies.push(latency);
                }
            }
            (latencies, body_len)
        });
    }
    barrier.wait().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = cpu_now();
    measuring.store(true, std::sync::atomic::Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::sleep(duration).await;
    measuring.store(false, std::sync::atomic::Ordering::Relaxed);
    let elapsed = started.elapsed();
    let cpu = cpu_now() - before;
    stop.cancel();
    let (latencies, body_len) = gather(&mut tasks).await;
    Measured {
        requests: latencies.len(),
        elapsed,
        latencies,
        body_len,
        cpu,
    }
}

/// `rate` requests/s on a fixed schedule over 4 connections for `duration` (after a 1 s
/// warm-up at the same rate); latency from the scheduled send time.
async fn open_loop(
    port: u16,
    request: Vec<u8>,
    expected_len: Option<usize>,
    rate: u32,
    duration: Duration,
) -> Measured {
    const CONNECTIONS: u32 = 4;
    let request = std::sync::Arc::new(request);
    let period = Duration::from_secs(1) / rate;
    let warm_up = Duration::from_secs(1);
    let start = tokio::time::Instant::now() + Duration::from_millis(100);
    let measure_from = start + warm_up;
    let end = measure_from + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..CONNECTIONS {
        let request = std::sync::Arc::clone(&request);
        tasks.spawn(async move {
            let mut connection = Connection::open(port).await.expect("connect");
            let mut latencies = Vec::new();
            let mut body_len = 0;
            let mut n = 0u32;
            loop {
                let scheduled = start + period * (c + n * CONNECTIONS);
                if scheduled >= end {
                    break;
                }
                // Late because the previous answer was slow: timed from the schedule (no
                // coordinated omission). Free before the schedule: timed from the actual send,
                // so the timer's millisecond granularity is not counted as server latency.
                let free_before_schedule = tokio::time::Instant::now() <= scheduled;
                tokio::time::sleep_until(scheduled).await;
                let sent = tokio::time::Instant::now();
                let answer = connection.exchange(&request).await.expect("exchange");
                let latency = if free_before_schedule {
                    sent.elapsed()
                } else {
                    scheduled.elapsed()
                };
                check(&answer, expected_len, "open loop");
                body_len = answer.body_len;
                if scheduled >= measure_from {
                    latencies.push(latency);
                }
                n += 1;
            }
            (latencies, body_len)
        });
    }
    tokio::time::sleep_until(measure_from).await;
    let before = cpu_now();
    let (latencies, body_len) = gather(&mut tasks).await;
    let cpu = cpu_now() - before;
    Measured {
        requests: latencies.len(),
        elapsed: duration,
        latencies,
        body_len,
        cpu,
    }
}

fn ms(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1e3)
}

fn main() {
    let settings = Settings::from_env();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let data = tempfile::Builder::new()
        .prefix("http-sd-bench-")
        .tempdir()
        .expect("a temporary directory");
    let http_port = free_port();
    let peer_port = free_port();
    let yaml = config_yaml(&settings, &data.path().join("bench-0"), http_port, peer_port);
    let loaded = target_allocator::config::parse("bench.yaml", &yaml, &UpstreamFlags::default(), &|_| None)
        .unwrap_or_else(|e| panic!("benchmark configuration: {e}"));

    let server = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(settings.server_threads)
        .thread_name(SERVER_THREAD)
        .enable_all()
        .build()
        .expect("server runtime");
    let shutdown = CancellationToken::new();
    let service = server.spawn(target_allocator::service::run(loaded.config, shutdown.clone()));

    let client = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(settings.client_threads)
        .thread_name(CLIENT_THREAD)
        .enable_all()
        .build()
        .expect("client runtime");

    let body_path = format!("/jobs/{JOB}/targets?collector_id=c-0");
    let (body_len, gzip_len) = client.block_on(wait_ready(http_port, &body_path, settings.targets));

    println!("HTTP_SD serving benchmark");
    println!(
        "machine: {cores} cores, shared by the server runtime ({} worker threads, plus the replica's Raft, \
         sled and blocking threads) and the load generator ({} client thread(s)); loopback TCP, keep-alive",
        settings.server_threads, settings.client_threads
    );
    println!(
        "response: {body_path}: {} targets, 11 labels each (__address__ + 10 group labels): {body_len} bytes, \
         {gzip_len} bytes gzipped",
        settings.targets
    );
    println!(
        "closed loop: {} connections, {:?} per phase after 1 s warm-up; open loop: {} requests/s over 4 \
         connections, {:?}",
        settings.connections, settings.duration, settings.rate, settings.duration
    );
    println!();
    println!(
        "| phase | request | body bytes | requests | requests/s | p50 ms | p99 ms | max ms | server CPU µs/req | of which kernel | client CPU µs/req |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let empty_path = format!("/jobs/{JOB}/targets?collector_id=nobody");
    for phase in &settings.phases {
        let (label, path, gzip, open) = match phase.as_str() {
            "livez" => ("closed", "/livez", false, false),
            "empty" => ("closed", empty_path.as_str(), false, false),
            "body" => ("closed", body_path.as_str(), false, false),
            "gzip" => ("closed", body_path.as_str(), true, false),
            "open-livez" => ("open", "/livez", false, true),
            "open" => ("open", body_path.as_str(), false, true),
            "open-gzip" => ("open", body_path.as_str(), true, true),
            other => panic!("unknown phase {other:?}"),
        };
        let request = request_bytes(path, gzip);
        let expected_len = match (path == body_path, gzip) {
            (true, false) => Some(body_len),
            (true, true) => Some(gzip_len),
            (false, _) => None,
        };
        let measured = client.block_on(async {
            if open {
                open_loop(http_port, request, expected_len, settings.rate, settings.duration).await
            } else {
                closed_loop(
                    http_port,
                    request,
                    expected_len,
                    settings.connections,
                    settings.duration,
                )
                .await
            }
        });
        let shown_path = if path == empty_path {
            "collector_id=nobody ([])".to_string()
        } else if path == body_path {
            format!("collector_id=c-0{}", if gzip { " gzip" } else { "" })
        } else {
            path.to_string()
        };
        println!(
            "| {label} | {shown_path} | {} | {} | {:.0} | {} | {} | {} | {:.1} | {:.0}% | {:.1} |",
            measured.body_len,
            measured.requests,
            measured.rate(),
            ms(measured.percentile(50.0)),
            ms(measured.percentile(99.0)),
            ms(measured.latencies.last().copied().unwrap_or_default()),
            measured.per_request(measured.cpu.server),
            measured.cpu.server_kernel_ticks as f64 * 100.0 / measured.cpu.server_ticks.max(1) as f64,
            measured.per_request(measured.cpu.client),
        );
    }
    println!();
    println!(
        "server CPU µs/req counts every thread but the client's (HTTP workers, Raft, sled, read model); \
         {cores} cores / that = the rate a replica with the cores to itself could reach if CPU-bound."
    );

    shutdown.cancel();
    let _ = client.block_on(async { tokio::time::timeout(Duration::from_secs(25), service).await });
}

/// Wait until the replica serves `targets` groups on `path`; returns the body's length
/// without and with gzip.
async fn wait_ready(port: u16, path: &str, targets: usize) -> (usize, usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = String::from("nothing yet");
    while Instant::now() < deadline {
        if let Ok(mut connection) = Connection::open(port).await {
            let counted = async {
                // Count groups with a second, parsing read (once, outside any measurement).
                let mut stream = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
                stream
                    .write_all(
                        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").as_bytes(),
                    )
                    .await
                    .ok()?;
                let mut raw = Vec::new();
                stream.read_to_end(&mut raw).await.ok()?;
                let start = raw.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
                let groups: Vec<serde_json::Value> = serde_json::from_slice(&raw[start..]).ok()?;
                Some(groups.len())
            }
            .await;
            match counted {
                Some(n) if n == targets => {
                    let plain = connection.exchange(&request_bytes(path, false)).await;
                    let gzipped = connection.exchange(&request_bytes(path, true)).await;
                    if let (Ok(plain), Ok(gzipped)) = (plain, gzipped) {
                        check(&plain, None, "ready");
                        check(&gzipped, None, "ready (gzip)");
                        return (plain.body_len, gzipped.body_len);
                    }
                }
                other => last = format!("{other:?} groups"),
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("the replica did not serve {targets} targets on {path} within 60 s; last: {last}");
}

/// Every connection's latencies, sorted, and the body length seen.
async fn gather(tasks: &mut tokio::task::JoinSet<(Vec<Duration>, usize)>) -> (Vec<Duration>, usize) {
    let mut latencies = Vec::new();
    let mut body_len = 0;
    while let Some(result) = tasks.join_next().await {
        let (mut some, len) = result.expect("a connection task");
        latencies.append(&mut some);
        body_len = len;
    }
    latencies.sort_unstable();
    (latencies, body_len)
}
