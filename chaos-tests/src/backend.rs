//! Backends: where the replicas of a chaos run live and how faults reach them. The harness
//! (workload, poller, checker) sees only this trait, so a backend is added without touching
//! them; `kubernetes` (delete pod, NetworkPolicy partitions) would be one more implementation.
//!
//! Every backend runs the release `target-allocator` binary, one process per replica, each
//! with its own address and data directory, and every operation acts on real processes and
//! real networks:
//!
//! | operation | docker | netns |
//! |---|---|---|
//! | `kill` | `docker kill -s KILL` | SIGKILL |
//! | `stop` / `start` | `docker stop` / `docker start` | SIGTERM, wait / spawn again |
//! | `pause` / `resume` | `docker pause` / `unpause` (cgroup freezer) | SIGSTOP / SIGCONT |
//! | `wipe` | remove and recreate the volume | delete the data directory |
//! | `isolate` | `docker network disconnect` from the peer network | iptables in its namespace |
//! | `cut` (one way) | iptables in the container's namespace | iptables in its namespace |
//!
//! Operations are blocking (they run commands) and are called from a blocking thread.

mod command;
pub mod docker;
pub mod netns;

use std::fmt;
use std::path::PathBuf;

/// Which backend to run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackendKind {
    Docker,
    Netns,
}

impl fmt::Display for BackendKind {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(match self {
            BackendKind::Docker => "docker",
            BackendKind::Netns => "netns",
        })
    }
}

/// What a backend needs to set a cluster up.
#[derive(Debug, Clone)]
pub struct BackendOptions {
    /// The release `target-allocator` binary to run.
    pub binary: PathBuf,
    /// Replica names, `ta-0`, `ta-1`, …
    pub replicas: Vec<String>,
    /// A host directory the harness writes its workload files into (the `file_sd` file).
    /// Every replica sees it, read-only, at [`Placement::workload_dir`].
    pub workload_dir: PathBuf,
    /// A host directory for everything else the backend keeps: configs, logs, data
    /// directories of the netns backend, the docker build context.
    pub run_dir: PathBuf,
    /// A short tag that makes the backend's names (containers, networks, namespaces,
    /// bridges) unique to this run, so two runs or a leftover of a crashed one do not clash.
    pub tag: String,
}

/// Where one replica lives, as the replica's config and the harness must name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub name: String,
    /// `listen_addr` for the replica's config (the API, as seen inside its host).
    pub listen_addr: String,
    /// `cluster.peer_listen_addr` for the replica's config.
    pub peer_listen_addr: String,
    /// The URL the other replicas reach its peer port at (`cluster.peers`).
    pub peer_url: String,
    /// The URL the harness reaches its API at, without a trailing slash.
    pub api_url: String,
    /// `cluster.data_dir` for the replica's config, as seen inside its host.
    pub data_dir: String,
    /// Where the replica sees [`BackendOptions::workload_dir`].
    pub workload_dir: String,
}

/// A failed backend operation: what was run and what it said.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("`{command}` failed: {output}")]
    Command { command: String, output: String },
    #[error("cannot run `{command}`: {source}")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no replica named {0}")]
    UnknownReplica(String),
    #[error("{0} is not running")]
    NotRunning(String),
    /// `start` or `wipe` of a replica whose process runs.
    #[error("{0} is running")]
    AlreadyRunning(String),
    /// The backend cannot run on this machine (no Docker engine, not root, …): what is missing.
    #[error("the {backend} backend cannot run here: {reason}")]
    Unusable { backend: BackendKind, reason: String },
    #[error("{0}")]
    Other(String),
}

/// A set of replicas and the faults that can be done to them. Each method acts on one
/// replica by name and returns once the fault is in effect.
pub trait Backend: Send + Sync {
    fn kind(&self) -> BackendKind;

    /// Every replica's placement, in the order of [`BackendOptions::replicas`]. Known as soon
    /// as the backend is created, before anything starts, so configs can be written.
    fn placements(&self) -> &[Placement];

    /// Store `config` (YAML) as the replica's config file; `start` runs with it.
    fn install_config(&self, replica: &str, config: &str) -> Result<(), BackendError>;

    /// Start the replica on its current data directory (created empty the first time).
    fn start(&self, replica: &str) -> Result<(), BackendError>;

    /// SIGTERM, and wait until the process has exited (its graceful shutdown). Nothing to do
    /// for a replica that is not running.
    fn stop(&self, replica: &str) -> Result<(), BackendError>;

    /// SIGKILL; returns once the process is gone. Nothing to do for a replica that is not
    /// running.
    fn kill(&self, replica: &str) -> Result<(), BackendError>;

    /// Freeze the process (SIGSTOP or the cgroup freezer): it keeps its sockets but runs no
    /// code, so peers and the harness get no answer until `resume`.
    fn pause(&self, replica: &str) -> Result<(), BackendError>;

    fn resume(&self, replica: &str) -> Result<(), BackendError>;

    /// Delete the data directory of a replica that is not running; the next `start` begins
    /// with an empty one (a new node id, which the leader swaps into the membership).
    fn wipe(&self, replica: &str) -> Result<(), BackendError>;

    /// Cut the replica off from every other replica, both ways, on the peer network only:
    /// the harness still reaches its API, so it can see the replica stop serving (I6).
    fn isolate(&self, replica: &str) -> Result<(), BackendError>;

    /// One-way partition: peer requests `from` → `to` are dropped (connection attempts from
    /// `from` to `to`'s peer port never arrive), while `to` can still call `from`.
    fn cut(&self, from: &str, to: &str) -> Result<(), BackendError>;

    /// Undo every `isolate` and `cut`.
    fn heal_network(&self) -> Result<(), BackendError>;

    /// Whether the replica's process is running (paused counts as running).
    fn is_running(&self, replica: &str) -> bool;

    /// The last lines of the replica's output, for a failure message.
    fn log_tail(&self, replica: &str, lines: usize) -> String;

    /// Stop everything and remove what the backend created (containers, networks, images,
    /// namespaces, rules). Called on every exit path; must tolerate a half-built setup.
    fn teardown(&self) -> Result<(), BackendError>;
}

/// Whether this machine can run the backend of `kind`, and if not, why.
pub fn usable(kind: BackendKind) -> Result<(), BackendError> {
    match kind {
        BackendKind::Docker => docker::check_usable(),
        BackendKind::Netns => netns::check_usable(),
    }
}

/// Create the backend of `kind`: checks the machine can run it, then builds what it needs
/// (image and networks, or namespaces and a bridge). Nothing is started yet.
pub fn create(kind: BackendKind, options: BackendOptions) -> Result<Box<dyn Backend>, BackendError> {
    Ok(match kind {
        BackendKind::Docker => Box::new(docker::DockerBackend::create(options)?),
        BackendKind::Netns => Box::new(netns::NetnsBackend::create(options)?),
    })
}

/// Remove what crashed runs of every backend left behind (names starting `ta-chaos-`), and
/// say what was removed; a backend that cannot run here has nothing to remove.
pub fn remove_leftovers() -> Vec<String> {
    let mut removed = Vec::new();
    for (backend, leftovers) in [
        (BackendKind::Docker, docker::remove_leftovers()),
        (BackendKind::Netns, netns::remove_leftovers()),
    ] {
        match leftovers {
            Ok(names) => removed.extend(names.into_iter().map(|name| format!("{backend}: removed {name}"))),
            Err(error) => removed.push(format!("{backend}: {error}")),
        }
    }
    removed
}
