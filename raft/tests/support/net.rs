//! The test network layer: one TCP proxy per directed link between replicas, so faults are
//! injected on real sockets between real processes.
//!
//! Replica `a` reaches replica `b` only through the proxy of link `(a, b)`; that link carries
//! `a`'s requests to `b` and `b`'s replies to them. Blocking it loses every RPC `a` sends to
//! `b` while `b`'s own RPCs to `a` (link `(b, a)`) still flow: a one-way failure.

#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::net::TcpStream;

#[derive(Default)]
struct Link {
    blocked: AtomicBool,
    delay_millis: AtomicU64,
}

/// All links of a cluster.
pub struct Network {
    size: usize,
    links: HashMap<(usize, usize), Arc<Link>>,
    ports: HashMap<(usize, usize), u16>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Network {
    /// Start a proxy for every ordered pair of `upstream_ports.len()` replicas.
    pub async fn start(upstream_ports: &[u16]) -> Self {
        let size = upstream_ports.len();
        let mut network = Self {
            size,
            links: HashMap::new(),
            ports: HashMap::new(),
            tasks: Vec::new(),
        };
        for from in 0..size {
            for (to, &upstream) in upstream_ports.iter().enumerate() {
                if from == to {
                    continue;
                }
                let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
                let port = listener.local_addr().unwrap().port();
                let link = Arc::new(Link::default());
                network.ports.insert((from, to), port);
                network.links.insert((from, to), Arc::clone(&link));
                network.tasks.push(tokio::spawn(serve(listener, upstream, link)));
            }
        }
        network
    }

    /// Port `from` uses to reach `to`.
    pub fn port(&self, from: usize, to: usize) -> u16 {
        self.ports[&(from, to)]
    }

    fn link(&self, from: usize, to: usize) -> &Link {
        &self.links[&(from, to)]
    }

    /// Lose everything `from` sends to `to` (and the replies to it); `to`→`from` still works.
    pub fn drop_one_way(&self, from: usize, to: usize) {
        tracing::info!(from, to, "fault: one-way loss");
        self.link(from, to).blocked.store(true, Ordering::SeqCst);
    }

    /// Cut the link between `a` and `b` in both directions.
    pub fn cut(&self, a: usize, b: usize) {
        tracing::info!(a, b, "fault: cut link");
        self.link(a, b).blocked.store(true, Ordering::SeqCst);
        self.link(b, a).blocked.store(true, Ordering::SeqCst);
    }

    /// Cut `node` off from every other replica.
    pub fn isolate(&self, node: usize) {
        tracing::info!(node, "fault: isolate");
        for other in 0..self.size {
            if other != node {
                self.link(node, other).blocked.store(true, Ordering::SeqCst);
                self.link(other, node).blocked.store(true, Ordering::SeqCst);
            }
        }
    }

    /// Delay every chunk `from` sends to `to`.
    pub fn delay(&self, from: usize, to: usize, delay: Duration) {
        tracing::info!(from, to, ?delay, "fault: delay");
        self.link(from, to)
            .delay_millis
            .store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    /// Remove every fault.
    pub fn heal(&self) {
        tracing::info!("heal all links");
        for link in self.links.values() {
            link.blocked.store(false, Ordering::SeqCst);
            link.delay_millis.store(0, Ordering::SeqCst);
        }
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

async fn serve(listener: TcpListener, upstream: u16, link: Arc<Link>) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            return;
        };
        if link.blocked.load(Ordering::SeqCst) {
            drop(client);
            continue;
        }
        let link = Arc::clone(&link);
        tokio::spawn(async move {
            let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)).await else {
                return;
            };
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            let (client_read, client_write) = client.into_split();
            let (server_read, server_write) = server.into_split();
            let forward = pump(client_read, server_write, Arc::clone(&link), true);
            let backward = pump(server_read, client_write, link, false);
            // Whichever side ends (or hits a fault) ends the connection.
            tokio::select! {
                _ = forward => {}
                _ = backward => {}
            }
        });
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    link: Arc<Link>,
    delayed: bool,
) {
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if link.blocked.load(Ordering::SeqCst) {
            return;
        }
        let delay = link.delay_millis.load(Ordering::SeqCst);
        if delayed && delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        if to.write_all(&buffer[..n]).await.is_err() {
            return;
        }
    }
}
