//! One running replica of the service: the replicated table, discovery, the leader loop, the
//! read model and the HTTP API, started in order and stopped by one shutdown signal.
//!
//! ```text
//!  discovery ─► leader loop (plans on the leader) ─► Replica (Raft, sled) ─► table watch
//!  collector pods (Kubernetes) ─► leader loop, and /readyz until first listed
//!  polls ─► PollLog ─► forwarder ─► leader's forward handler ─┘               │
//!                                                    read model task ◄───────┘
//!                                                          │ watch
//!                                                    HTTP API (every replica)
//! ```
//!
//! Shutdown (SIGTERM/SIGINT): a leader hands leadership to another voter first, then the
//! HTTP server stops accepting and drains, then the loops and Raft stop, all within
//! [`SHUTDOWN_DEADLINE`], shorter than a pod's default 30 s grace period.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use axum::http::HeaderValue;
use ta_raft::Replica;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::api::ApiContext;
use crate::config::Config;
use crate::discovery::manager::DiscoveryOptions;
use crate::kubernetes::client::ClientSource;
use crate::kubernetes::collectors::CollectorDiscovery;
use crate::kubernetes::collectors::CollectorPods;
use crate::kubernetes::collectors::CollectorWatcher;
use crate::kubernetes::prometheus_cr::combined::JobSet;
use crate::kubernetes::prometheus_cr::watcher::CrSettings;
use crate::kubernetes::prometheus_cr::watcher::PrometheusCrWatcher;
use crate::kubernetes::watch_error::WatchFailure;
use crate::leader::LeaderLoop;
use crate::metrics::Metrics;
use crate::registration::PollLog;

/// Everything must be stopped within this after the signal.
pub const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(20);
/// How long a leader waits for another voter to take over before stopping anyway.
const LEADERSHIP_HANDOVER_LIMIT: Duration = Duration::from_secs(3);

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("listen_addr {0:?} is not an address to listen on (such as :8080 or 0.0.0.0:8080)")]
    ListenAddress(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("the allocation strategy cannot run: {0}")]
    Strategy(String),
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error(transparent)]
    Replica(#[from] ta_raft::StartError),
    #[error("Kubernetes discovery (collectors or Prometheus CRs) cannot start: {0}")]
    Kubernetes(#[from] crate::kubernetes::client::ClientError),
}

/// Upstream's Go-style listen address: `:8080` means every interface.
pub fn listen_address(text: &str) -> Result<SocketAddr, ServiceError> {
    let full = if text.starts_with(':') {
        format!("0.0.0.0{text}")
    } else {
        text.to_string()
    };
    full.parse()
        .or_else(|_| {
            // `localhost:8080` and other names.
            std::net::ToSocketAddrs::to_socket_addrs(&full)
                .ok()
                .and_then(|mut addrs| addrs.next())
                .ok_or(())
        })
        .map_err(|_| ServiceError::ListenAddress(text.to_string()))
}

/// Run one replica until `shutdown` is cancelled.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), ServiceError> {
    let config = Arc::new(config);
    let strategy =
        crate::allocation::strategy::build(&config.strategy).map_err(|e| ServiceError::Strategy(e.to_string()))?;
    let listen_addr = listen_address(&config.listen_addr)?;
    // A kubeconfig that cannot be used is a configuration problem: reported before any port
    // opens. Reaching the API server is the watcher's business (it retries).
    let kubernetes_client = match config.collectors.uses_kubernetes() || config.prometheus_cr.enabled {
        true => {
            let source = ClientSource::from_kube_config_file_path(&config.kube_config_file_path);
            tracing::info!(%source, "connecting to Kubernetes for collector or Prometheus CR discovery");
            Some(crate::kubernetes::client::build(&source).await?)
        }
        false => None,
    };
    // Certificates are checked before any port opens.
    let https = match config.https.enabled {
        true => Some((
            listen_address(&config.https.listen_addr)?,
            crate::tls::server_config(&config.https)?,
        )),
        false => None,
    };
    let bind = |addr: SocketAddr| async move {
        tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| ServiceError::Bind { addr, source })
    };
    let listener = bind(listen_addr).await?;
    let https = match https {
        Some((addr, tls)) => Some((bind(addr).await?, tls)),
        None => None,
    };
    let cluster = config.cluster_or_single();
    let coalesce_window = config.coalesce_window;
    let replica = Arc::new(Replica::start(cluster).await?);
    let metrics = Arc::new(Metrics::new());
    metrics.events.with_label_values(&["EventSourceConfigMap"]).inc();
    metrics.create_leader_series(config.strategy.strategy.as_str());

    let models = crate::read_model::spawn(replica.subscribe());
    let (registrations, registrations_in) = mpsc::channel(256);
    replica.set_forward_handler(crate::registration::forward_handler(registrations));

    let inner = CancellationToken::new();
    let mut tasks = tokio::task::JoinSet::new();
    // Discovery runs on the leader only (discovery/gate.rs); it stops with the inner tasks,
    // after leadership has been handed over.
    let (leading_publish, leading) = tokio::sync::watch::channel(false);
    tasks.spawn(follow_leadership(Arc::clone(&replica), leading_publish, inner.clone()));
    let (discovery, discovery_task) = crate::discovery::gate::spawn(
        config
            .scrape_configs()
            .iter()
            .map(|scrape| (scrape.job.name.clone(), scrape.discovery.clone()))
            .collect(),
        DiscoveryOptions {
            max_source_bytes: config.limits.max_source_bytes,
            ..DiscoveryOptions::default()
        },
        leading,
        inner.clone(),
    );
    // Every replica watches the collector pods, so a new leader starts with them listed.
    // Prometheus CRs: their jobs join the file's (file jobs win on a name clash), with
    // their own discovery; without them the job set is the file's, fixed.
    let (jobs, discovery_view) = match (&kubernetes_client, config.prometheus_cr.enabled) {
        (Some(client), true) => {
            for resource in ["servicemonitors", "podmonitors", "namespaces"] {
                for reason in [WatchFailure::Forbidden, WatchFailure::Expired, WatchFailure::Other] {
                    metrics
                        .kubernetes_watch_errors
                        .with_label_values(&[resource, reason.as_str()]);
                }
            }
            let (watcher, view) = PrometheusCrWatcher::new(
                client.clone(),
                CrSettings::from_config(&config),
                Some(metrics.kubernetes_watch_errors.clone()),
            );
            tasks.spawn(watcher.run(inner.clone()));
            let events = metrics.events.with_label_values(&["EventSourcePrometheusCR"]);
            let (combined, task) = crate::kubernetes::prometheus_cr::combined::spawn(
                config.scrape_configs().to_vec(),
                discovery.clone(),
                view,
                DiscoveryOptions {
                    max_source_bytes: config.limits.max_source_bytes,
                    ..DiscoveryOptions::default()
                },
                move || events.inc(),
                inner.clone(),
            );
            tasks.spawn(async move {
                if let Err(error) = task.await {
                    tracing::warn!(%error, "the job set task ended abnormally");
                }
            });
            (combined.jobs, combined.discovery)
        }
        _ => (
            tokio::sync::watch::channel(JobSet::from_file(config.scrape_configs())).1,
            discovery.clone(),
        ),
    };
    let collector_discovery = kubernetes_client
        .filter(|_| config.collectors.uses_kubernetes())
        .map(|client| {
            // Every series exists from the start (at zero), so a rate alert sees the first error.
            for reason in [WatchFailure::Forbidden, WatchFailure::Expired, WatchFailure::Other] {
                metrics
                    .kubernetes_watch_errors
                    .with_label_values(&["pods", reason.as_str()]);
            }
            let (watcher, discovery) = CollectorWatcher::new(
                client,
                CollectorPods::from_config(&config),
                Some(metrics.kubernetes_watch_errors.clone()),
            );
            tasks.spawn(watcher.run(inner.clone()));
            discovery
        });
    let refusals = Arc::new(ArcSwap::from_pointee(crate::api::Refusals::default()));
    tasks.spawn(
        LeaderLoop {
            refusals: Arc::clone(&refusals),
            replica: Arc::clone(&replica),
            config: Arc::clone(&config),
            strategy,
            discovery: discovery_view,
            jobs,
            registrations: registrations_in,
            kubernetes_collectors: collector_discovery.as_ref().map(CollectorDiscovery::subscribe),
            metrics: Arc::clone(&metrics),
            coalesce_window,
        }
        .run(inner.clone()),
    );
    let polls = config
        .collectors
        .register_on_poll
        .enabled
        .then(|| Arc::new(PollLog::default()));
    if let Some(polls) = &polls {
        tasks.spawn(crate::registration::forward(
            Arc::clone(polls),
            Arc::clone(&replica),
            config.collectors.register_on_poll.ttl,
            inner.clone(),
        ));
    }
    let leader = Arc::new(ArcSwap::from_pointee(crate::api::LeaderHeaders::default()));
    tasks.spawn(crate::api::track_leader(
        Arc::clone(&replica),
        Arc::clone(&leader),
        inner.clone(),
    ));

    let replica_name = HeaderValue::from_str(&replica.identity().name).unwrap_or_else(|_| HeaderValue::from_static(""));
    let context = Arc::new(ApiContext {
        replica: Arc::clone(&replica),
        models,
        leader,
        replica_name,
        allow_insecure_auth_secrets: config.allow_insecure_auth_secrets,
        polls,
        collector_discovery,
        metrics,
        strategy: config.strategy.strategy.as_str(),
        discovery,
        refusals,
    });
    let http_stop = CancellationToken::new();
    let router = crate::api::router(context);
    if let Some((listener, tls)) = https {
        tracing::info!(addr = ?listener.local_addr().ok(), "serving the API over mTLS too");
        tasks.spawn(crate::tls::serve(listener, tls, router.clone(), http_stop.clone()));
    }
    let server = {
        let http_stop = http_stop.clone();
        tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async move { http_stop.cancelled().await })
                .await
        })
    };
    tracing::info!(
        name = %replica.identity().name,
        %listen_addr,
        peer_addr = %replica.peer_addr(),
        strategy = config.strategy.strategy.as_str(),
        jobs = config.scrape_configs().len(),
        "target allocator replica serving"
    );

    shutdown.cancelled().await;
    tracing::info!("shutting down");
    let stopping = async {
        if replica.transfer_leadership().await {
            let handed_over = tokio::time::timeout(LEADERSHIP_HANDOVER_LIMIT, async {
                while replica.raft().is_leader() {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            })
            .await;
            tracing::info!(handed_over = handed_over.is_ok(), "leadership transfer");
        }
        http_stop.cancel();
        inner.cancel();
        match server.await {
            Ok(Err(e)) => tracing::warn!(%e, "HTTP server stopped with an error"),
            Err(e) => tracing::warn!(%e, "HTTP server task failed"),
            Ok(Ok(())) => {}
        }
        while tasks.join_next().await.is_some() {}
        if let Err(error) = discovery_task.await {
            tracing::warn!(%error, "the discovery task ended abnormally");
        }
        replica.shutdown().await;
    };
    if tokio::time::timeout(SHUTDOWN_DEADLINE, stopping).await.is_err() {
        tracing::warn!(deadline = ?SHUTDOWN_DEADLINE, "shutdown deadline passed; exiting anyway");
    }
    tracing::info!("stopped");
    Ok(())
}

/// Publish whether this replica is the Raft leader, as it changes.
async fn follow_leadership(
    replica: Arc<Replica>,
    publish: tokio::sync::watch::Sender<bool>,
    shutdown: CancellationToken,
) {
    use openraft::async_runtime::watch::WatchReceiver;
    let mut metrics = replica.raft().metrics();
    loop {
        let leading = metrics.borrow_watched().state == openraft::ServerState::Leader;
        publish.send_if_modified(|current| std::mem::replace(current, leading) != leading);
        tokio::select! {
            () = shutdown.cancelled() => return,
            changed = metrics.changed() => if changed.is_err() { return },
        }
    }
}

/// A token cancelled by the first SIGTERM or SIGINT.
pub fn shutdown_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        ta_raft::dev_api::shutdown_signal().await;
        cancel.cancel();
    });
    token
}
