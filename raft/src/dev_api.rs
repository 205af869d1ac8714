//! A minimal client API over one replica, for tests, benchmarks and manual poking until the
//! service's HTTP API exists: status, propose a command, read the table, hand over
//! leadership. JSON out; proposals in as bincode [`Command`]s.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::DefaultBodyLimit;
use axum::extract::Query;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::response::Response;
use axum::routing::get;
use axum::routing::post;
use serde::Deserialize;
use serde::Serialize;

use crate::command::Command;
use crate::config::ClusterConfig;
use crate::config::RaftTimings;
use crate::error::ProposeError;
use crate::error::StartError;
use crate::model::Table;
use crate::network::wire;
use crate::replica::Replica;

/// `GET /status`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct StatusView {
    pub node_id: u64,
    pub name: String,
    pub role: String,
    pub term: u64,
    pub leader: Option<u64>,
    pub last_log_index: Option<u64>,
    pub committed: Option<u64>,
    pub applied: Option<u64>,
    pub snapshot: Option<u64>,
    pub purged: Option<u64>,
    pub revision: u64,
    pub stale: bool,
    /// Voters as `(node id, name)`.
    pub voters: Vec<(u64, String)>,
}

/// `GET /table`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TableView {
    pub revision: u64,
    pub digest: u64,
    /// Target id → owning collector (`null` when unassigned).
    pub assignments: BTreeMap<u64, Option<String>>,
    pub collectors: Vec<String>,
}

impl From<&Table> for TableView {
    fn from(table: &Table) -> Self {
        Self {
            revision: table.revision,
            digest: table.digest(),
            assignments: table
                .targets()
                .iter()
                .map(|(id, t)| (id.0, t.collector.as_deref().map(str::to_string)))
                .collect(),
            collectors: table.collectors.keys().map(|c| c.to_string()).collect(),
        }
    }
}

/// `POST /propose` replies.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub enum ProposeReply {
    Committed { revision: u64, outcome: String },
    NotLeader { leader: Option<String> },
    Failed { error: String },
}

#[derive(Deserialize)]
struct TableQuery {
    consistency: Option<String>,
}

#[derive(Deserialize)]
struct ProposeQuery {
    /// `commit`: answer once the batch is durable on a quorum; default: once applied here.
    wait: Option<String>,
}

/// The router of the dev API.
pub fn router(replica: Arc<Replica>) -> Router {
    Router::new()
        .route("/status", get(status))
        .route("/table", get(table))
        .route(
            "/propose",
            post(propose).layer(DefaultBodyLimit::max(wire::APPEND_BODY_LIMIT)),
        )
        .route("/transfer-leadership", post(transfer_leadership))
        .with_state(replica)
}

/// Start a replica and serve the dev API on `client_addr` until `shutdown` resolves.
pub async fn run(
    config: ClusterConfig,
    client_addr: SocketAddr,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    let replica = Arc::new(Replica::start(config).await?);
    let listener = tokio::net::TcpListener::bind(client_addr)
        .await
        .map_err(|source| StartError::Bind {
            addr: client_addr,
            source,
        })?;
    tracing::info!(%client_addr, "dev API listening");
    let served = axum::serve(listener, router(Arc::clone(&replica)))
        .with_graceful_shutdown(shutdown)
        .await;
    if let Err(e) = served {
        tracing::error!(%e, "dev API server failed");
    }
    replica.shutdown().await;
    Ok(())
}

async fn status(State(replica): State<Arc<Replica>>) -> Json<StatusView> {
    let status = replica.status();
    Json(StatusView {
        node_id: status.node_id,
        name: status.name,
        role: format!("{:?}", status.role),
        term: status.term,
        leader: status.leader,
        last_log_index: status.last_log_index,
        committed: status.committed,
        applied: status.applied,
        snapshot: status.snapshot,
        purged: status.purged,
        revision: status.revision,
        stale: status.stale,
        voters: status.voters.into_iter().map(|(id, node)| (id, node.name)).collect(),
    })
}

async fn table(State(replica): State<Arc<Replica>>, Query(query): Query<TableQuery>) -> Response {
    if query.consistency.as_deref() == Some("linearizable") {
        return match replica.linearizable_table().await {
            Ok(table) => Json(TableView::from(&table)).into_response(),
            Err(e) => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
        };
    }
    Json(TableView::from(&replica.table())).into_response()
}

async fn propose(State(replica): State<Arc<Replica>>, Query(query): Query<ProposeQuery>, body: Bytes) -> Response {
    let command: Command = match wire::decode(&body, wire::APPEND_BODY_LIMIT) {
        Ok(command) => command,
        Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    };
    let result = match query.wait.as_deref() {
        Some("commit") => match replica.submit(command).await {
            Ok(mut proposal) => match proposal.committed().await {
                Ok(index) => Ok(crate::command::Response {
                    revision: index,
                    outcome: crate::command::Outcome::Unchanged,
                }),
                Err(_) => proposal.applied().await,
            },
            Err(e) => Err(e),
        },
        _ => replica.propose(command).await,
    };
    match result {
        Ok(response) => Json(ProposeReply::Committed {
            revision: response.revision,
            outcome: format!("{:?}", response.outcome),
        })
        .into_response(),
        Err(ProposeError::NotLeader { leader }) => (
            StatusCode::MISDIRECTED_REQUEST,
            Json(ProposeReply::NotLeader {
                leader: leader.map(|(_, node)| node.name),
            }),
        )
            .into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(ProposeReply::Failed { error: e.to_string() }),
        )
            .into_response(),
    }
}

async fn transfer_leadership(State(replica): State<Arc<Replica>>) -> Json<bool> {
    Json(replica.transfer_leadership().await)
}

/// Command-line settings of one replica with the dev API.
#[derive(clap::Parser, Debug, Clone)]
#[command(
    version,
    about = "One replica of the replicated assignment table, with a small JSON client API"
)]
pub struct ReplicaArgs {
    /// This replica's stable name; must be one of the --peer names.
    #[arg(long)]
    pub name: String,
    /// Data directory (created if missing).
    #[arg(long)]
    pub data_dir: PathBuf,
    /// Address of the peer (Raft) server.
    #[arg(long)]
    pub peer_listen: SocketAddr,
    /// Address of the dev client API.
    #[arg(long)]
    pub client_listen: SocketAddr,
    /// An initial member as NAME=URL; repeat for every replica (this one included).
    #[arg(long = "peer", value_parser = parse_peer, required = true)]
    pub peers: Vec<(String, String)>,
    /// Heartbeat interval in milliseconds (default 150).
    #[arg(long)]
    pub heartbeat_ms: Option<u64>,
    /// Minimum election timeout in milliseconds (default 500).
    #[arg(long)]
    pub election_min_ms: Option<u64>,
    /// Maximum election timeout in milliseconds (default 900).
    #[arg(long)]
    pub election_max_ms: Option<u64>,
    /// Staleness lease in milliseconds (default 3000).
    #[arg(long)]
    pub lease_ms: Option<u64>,
    /// Build a snapshot after this many entries (default 5000).
    #[arg(long)]
    pub snapshot_after_entries: Option<u64>,
    /// Entries kept in the log behind a snapshot (default 1000).
    #[arg(long)]
    pub keep_behind_snapshot: Option<u64>,
}

fn parse_peer(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(n, u)| (n.to_string(), u.to_string()))
        .ok_or_else(|| format!("{s:?} is not NAME=URL"))
}

impl ReplicaArgs {
    /// The cluster configuration these arguments describe.
    pub fn cluster_config(&self) -> ClusterConfig {
        let defaults = RaftTimings::default();
        let ms = |v: Option<u64>, d: Duration| v.map(Duration::from_millis).unwrap_or(d);
        let timings = RaftTimings {
            heartbeat_interval: ms(self.heartbeat_ms, defaults.heartbeat_interval),
            election_timeout_min: ms(self.election_min_ms, defaults.election_timeout_min),
            election_timeout_max: ms(self.election_max_ms, defaults.election_timeout_max),
            lease: ms(self.lease_ms, defaults.lease),
            snapshot_after_entries: self.snapshot_after_entries.unwrap_or(defaults.snapshot_after_entries),
            log_entries_kept_behind_snapshot: self
                .keep_behind_snapshot
                .unwrap_or(defaults.log_entries_kept_behind_snapshot),
            ..defaults
        };
        ClusterConfig {
            name: self.name.clone(),
            data_dir: self.data_dir.clone(),
            peer_listen_addr: self.peer_listen,
            peers: self.peers.iter().cloned().collect::<BTreeMap<_, _>>(),
            timings,
        }
    }
}

/// Log to stderr, filtered by `RUST_LOG` (default: info, openraft warnings).
pub fn init_logging() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,openraft=warn".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// Run one replica until SIGTERM or SIGINT; exit code 1 (with the reason) if it cannot start.
pub async fn run_until_signal(args: ReplicaArgs) -> std::process::ExitCode {
    let config = args.cluster_config();
    match run(config, args.client_listen, shutdown_signal()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("replica {}: {e}", args.name);
            std::process::ExitCode::from(1)
        }
    }
}

/// Resolves on the first SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    use tokio::signal::unix::SignalKind;
    use tokio::signal::unix::signal;
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
