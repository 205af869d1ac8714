//! Helpers for the HTTP API tests: replicas of the real service run in-process
//! (`target_allocator::service::run`), each cluster with its own free ports and temporary
//! data directories, a plain HTTP client, and bounded waits that say what they expected and
//! what they last saw.

#![allow(dead_code)]

use std::future::Future;
use std::time::Duration;
use std::time::Instant;

use axum::http::HeaderMap;
use axum::http::StatusCode;
use target_allocator::config::UpstreamFlags;
use target_allocator::service::ServiceError;
use tempfile::TempDir;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub const REVISION: &str = "x-allocator-revision";
pub const REPLICA: &str = "x-allocator-replica";
pub const LEADER: &str = "x-allocator-leader";

/// Short Raft timings: elections in 600–900 ms, a 1.5 s lease.
pub const HEARTBEAT: Duration = Duration::from_millis(100);
pub const LEASE: Duration = Duration::from_millis(1500);

/// Bound on anything that normally takes a couple of seconds (startup, election, first plan).
pub const STARTUP_LIMIT: Duration = Duration::from_secs(20);
/// Bound on a replica's shutdown (the service's own deadline is 20 s).
const STOP_LIMIT: Duration = Duration::from_secs(25);

/// `n` distinct free TCP ports on 127.0.0.1 (all bound at once, then released).
pub fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<std::net::TcpListener> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port"))
        .collect();
    listeners
        .iter()
        .map(|listener| listener.local_addr().expect("local address").port())
        .collect()
}

/// One replica of a test cluster.
pub struct Replica {
    pub name: String,
    /// `http://127.0.0.1:PORT`, the client API.
    pub url: String,
    yaml: String,
    shutdown: CancellationToken,
    task: Option<JoinHandle<Result<(), ServiceError>>>,
}

impl Replica {
    pub fn running(&self) -> bool {
        self.task.as_ref().is_some_and(|task| !task.is_finished())
    }
}

/// A cluster of replicas sharing one `peers` map; each replica is started explicitly.
pub struct Cluster {
    pub replicas: Vec<Replica>,
    pub http: reqwest::Client,
    _dir: TempDir,
}

impl Cluster {
    /// Configure `size` replicas `ta-0..` whose configuration is the cluster section plus
    /// `document` (the rest of `targetallocator.yaml`: `collectors:`, `config:`, ...).
    pub fn new(size: usize, document: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("ta-api-test-")
            .tempdir()
            .expect("temporary directory");
        let ports = free_ports(size * 2);
        let (http_ports, peer_ports) = ports.split_at(size);
        let peers: String = peer_ports
            .iter()
            .enumerate()
            .map(|(i, port)| format!("    ta-{i}: http://127.0.0.1:{port}\n"))
            .collect();
        let replicas = (0..size)
            .map(|i| {
                let name = format!("ta-{i}");
                let yaml = format!(
                    "listen_addr: 127.0.0.1:{http}\n\
                     cluster:\n  \
                       name: {name}\n  \
                       data_dir: {data}\n  \
                       peer_listen_addr: 127.0.0.1:{peer}\n  \
                       peers:\n{peers}  \
                       raft:\n    \
                         heartbeat_interval: {heartbeat}ms\n    \
                         election_timeout_min: 600ms\n    \
                         election_timeout_max: 900ms\n    \
                         lease: {lease}ms\n\
                     {document}",
                    http = http_ports[i],
                    data = dir.path().join(&name).display(),
                    peer = peer_ports[i],
                    heartbeat = HEARTBEAT.as_millis(),
                    lease = LEASE.as_millis(),
                );
                Replica {
                    name,
                    url: format!("http://127.0.0.1:{}", http_ports[i]),
                    yaml,
                    shutdown: CancellationToken::new(),
                    task: None,
                }
            })
            .collect();
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .build()
            .expect("HTTP client");
        Cluster {
            replicas,
            http,
            _dir: dir,
        }
    }

    /// Start replica `i` in this process.
    pub fn start(&mut self, i: usize) {
        let replica = &mut self.replicas[i];
        let loaded = target_allocator::config::parse(
            &format!("{}.yaml", replica.name),
            &replica.yaml,
            &UpstreamFlags::default(),
            &|_| None,
        )
        .unwrap_or_else(|e| panic!("configuration of {} is invalid: {e}\n{}", replica.name, replica.yaml));
        replica.shutdown = CancellationToken::new();
        replica.task = Some(tokio::spawn(target_allocator::service::run(
            loaded.config,
            replica.shutdown.clone(),
        )));
    }

    pub fn start_all(&mut self) {
        for i in 0..self.replicas.len() {
            self.start(i);
        }
    }

    /// Stop the replicas `which` (all signalled first, then awaited) and check they stopped
    /// cleanly.
    pub async fn stop(&mut self, which: &[usize]) {
        for &i in which {
            self.replicas[i].shutdown.cancel();
        }
        for &i in which {
            let replica = &mut self.replicas[i];
            let Some(task) = replica.task.take() else { continue };
            match tokio::time::timeout(STOP_LIMIT, task).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(e))) => panic!("{} stopped with an error: {e}", replica.name),
                Ok(Err(e)) => panic!("{} panicked or was aborted: {e}", replica.name),
                Err(_) => panic!("{} did not stop within {STOP_LIMIT:?}", replica.name),
            }
        }
    }

    pub async fn stop_all(&mut self) {
        let running: Vec<usize> = (0..self.replicas.len())
            .filter(|&i| self.replicas[i].task.is_some())
            .collect();
        self.stop(&running).await;
    }

    /// GET `path` (with its query) from replica `i`.
    pub async fn get(&self, i: usize, path: &str) -> Fetched {
        self.request(i, reqwest::Method::GET, path, &[]).await
    }

    pub async fn get_with(&self, i: usize, path: &str, headers: &[(&str, &str)]) -> Fetched {
        self.request(i, reqwest::Method::GET, path, headers).await
    }

    pub async fn request(&self, i: usize, method: reqwest::Method, path: &str, headers: &[(&str, &str)]) -> Fetched {
        let url = format!("{}{path}", self.replicas[i].url);
        match self.try_request(method.clone(), &url, headers).await {
            Ok(fetched) => fetched,
            Err(e) => panic!("{method} {url} failed: {e}"),
        }
    }

    pub async fn try_request(
        &self,
        method: reqwest::Method,
        url: &str,
        headers: &[(&str, &str)],
    ) -> Result<Fetched, String> {
        let mut request = self.http.request(method, url);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.map_err(|e| e.to_string())?;
        let status = StatusCode::from_u16(response.status().as_u16()).expect("valid status");
        let mut header_map = HeaderMap::new();
        for (name, value) in response.headers() {
            header_map.append(
                axum::http::HeaderName::from_bytes(name.as_str().as_bytes()).expect("header name"),
                axum::http::HeaderValue::from_bytes(value.as_bytes()).expect("header value"),
            );
        }
        let body = response.bytes().await.map_err(|e| e.to_string())?.to_vec();
        Ok(Fetched {
            status,
            headers: header_map,
            body,
        })
    }

    /// GET that may fail (a replica not listening yet); for waits.
    pub async fn try_get(&self, i: usize, path: &str) -> Result<Fetched, String> {
        let url = format!("{}{path}", self.replicas[i].url);
        self.try_request(reqwest::Method::GET, &url, &[]).await
    }

    /// Wait until replica `i` answers `/readyz` with 200.
    pub async fn wait_ready(&self, i: usize) {
        let name = self.replicas[i].name.clone();
        eventually(&format!("{name} answers /readyz 200"), STARTUP_LIMIT, || async {
            let fetched = self.try_get(i, "/readyz").await?;
            if fetched.status == StatusCode::OK {
                Ok(())
            } else {
                Err(format!("{} {}", fetched.status, fetched.text()))
            }
        })
        .await
    }

    /// Wait until replica `i` knows a leader; returns the leader's index.
    pub async fn wait_leader(&self, i: usize) -> usize {
        let name = self.replicas[i].name.clone();
        let leader = eventually(&format!("{name} names a leader"), STARTUP_LIMIT, || async {
            let fetched = self.try_get(i, "/livez").await?;
            match fetched.header(LEADER) {
                Some(leader) if !leader.is_empty() => Ok(leader.to_string()),
                other => Err(format!("leader header {other:?}")),
            }
        })
        .await;
        self.index_of(&leader)
    }

    pub fn index_of(&self, name: &str) -> usize {
        self.replicas
            .iter()
            .position(|r| r.name == name)
            .unwrap_or_else(|| panic!("{name:?} is not a replica of this cluster"))
    }

    /// Wait until replica `i` serves every target of `job`, each assigned: returns how many
    /// targets each collector has, from `/jobs/{job}/targets`.
    pub async fn wait_allocated(&self, i: usize, escaped_job: &str, targets: usize) -> serde_json::Value {
        let path = format!("/jobs/{escaped_job}/targets");
        eventually(
            &format!("{} serves {targets} assigned targets on {path}", self.replicas[i].name),
            STARTUP_LIMIT,
            || async {
                let fetched = self.try_get(i, &path).await?;
                if fetched.status != StatusCode::OK {
                    return Err(format!("{} {}", fetched.status, fetched.text()));
                }
                let map: serde_json::Value = serde_json::from_slice(&fetched.body).map_err(|e| e.to_string())?;
                let count: usize = map
                    .as_object()
                    .map(|collectors| {
                        collectors
                            .values()
                            .map(|c| c["targets"].as_array().map_or(0, Vec::len))
                            .sum()
                    })
                    .unwrap_or(0);
                if count == targets {
                    Ok(map)
                } else {
                    Err(format!("{count} assigned targets: {}", fetched.text()))
                }
            },
        )
        .await
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for replica in &self.replicas {
            replica.shutdown.cancel();
        }
    }
}

/// One response, read whole.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Fetched {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.text()))
    }

    pub fn revision(&self) -> u64 {
        self.header(REVISION)
            .and_then(|r| r.parse().ok())
            .unwrap_or_else(|| panic!("no numeric {REVISION} header in {:?}", self.headers))
    }

    /// The three `X-Allocator-*` headers are present; the revision is a number.
    pub fn assert_allocator_headers(&self, replica: &str, what: &str) {
        assert_eq!(
            self.header(REPLICA),
            Some(replica),
            "{what}: {REPLICA} in {:?}",
            self.headers
        );
        assert!(
            self.header(LEADER).is_some(),
            "{what}: no {LEADER} in {:?}",
            self.headers
        );
        assert!(
            self.header(REVISION).is_some_and(|r| r.parse::<u64>().is_ok()),
            "{what}: {REVISION} missing or not a number in {:?}",
            self.headers
        );
    }
}

/// Retry `attempt` every 100 ms until it succeeds; panic after `limit` with `what` and the
/// last failure.
pub async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut attempt: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let started = Instant::now();
    let mut last = String::from("no attempt finished");
    loop {
        match tokio::time::timeout(limit.saturating_sub(started.elapsed()), attempt()).await {
            Ok(Ok(value)) => return value,
            Ok(Err(seen)) => last = seen,
            Err(_) => {}
        }
        if started.elapsed() >= limit {
            panic!("expected {what} within {limit:?}; last seen: {last}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
