//! The `netns` backend: every replica is a `target-allocator` process in a network namespace
//! of its own, `ta-chaos-<id>-<replica>`, joined by a veth pair to a host bridge `tac-<id>`
//! with an address on a free 10.x.y.0/24, so the harness on the host reaches every API over the
//! bridge. It owns those namespaces, veths and bridge, the host FORWARD rule that lets bridged
//! traffic through (tagged with the comment `ta-chaos-<id>`), the iptables rules inside its
//! namespaces that make the partitions, the replica processes, and under
//! [`BackendOptions::run_dir`] each replica's config, log and data directory.
//!
//! Processes in a namespace share the host's filesystem, so data directories and the workload
//! directory are host paths. Needs root, `ip` (iproute2) and `iptables`.

mod host;

use std::fs::OpenOptions;
use std::net::Ipv4Addr;
use std::path::Path;
use std::path::PathBuf;
use std::process::Child;
use std::process::Command;
use std::process::Stdio;
use std::sync::Mutex;
use std::sync::MutexGuard;
use std::time::Duration;
use std::time::Instant;

use super::Backend;
use super::BackendError;
use super::BackendKind;
use super::BackendOptions;
use super::Placement;

/// The port of the replica's API inside its namespace.
const API_PORT: u16 = 8080;
/// The port of the replica's peer (Raft) listener inside its namespace.
const PEER_PORT: u16 = 8081;
/// How long `stop` waits for a graceful shutdown before it SIGKILLs.
const STOP_TIMEOUT: Duration = Duration::from_secs(25);
/// How often a wait for a process to exit looks again.
const EXIT_POLL: Duration = Duration::from_millis(20);
/// The most of a log `log_tail` reads, so a huge log does not stall a failure message.
const LOG_TAIL_BYTES: u64 = 1 << 20;

pub struct NetnsBackend {
    binary: PathBuf,
    bridge: String,
    /// The comment on the host FORWARD rule, so teardown and `remove_leftovers` find it.
    rule_comment: String,
    replicas: Vec<Replica>,
    placements: Vec<Placement>,
}

struct Replica {
    name: String,
    namespace: String,
    host_veth: String,
    address: Ipv4Addr,
    /// `<run_dir>/<replica>`: config, log and data directory.
    directory: PathBuf,
    data_dir: PathBuf,
    /// The running process, kept (not just its pid) so it is reaped and its pid cannot be
    /// reused by another process while a signal is on its way to it.
    process: Mutex<Option<Child>>,
}

impl Replica {
    fn config_path(&self) -> PathBuf {
        self.directory.join("config.yaml")
    }

    fn log_path(&self) -> PathBuf {
        self.directory.join("replica.log")
    }

    fn process(&self) -> MutexGuard<'_, Option<Child>> {
        // A panic elsewhere while holding the lock leaves the slot itself intact.
        self.process.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl NetnsBackend {
    /// Check the machine can run the backend, then build the bridge, the namespaces and their
    /// veths. On a failure part-way, what was built is removed again.
    pub fn create(options: BackendOptions) -> Result<Self, BackendError> {
        check_usable()?;
        let id = host::short_id(&options.tag);
        let bridge = format!("{}{id}", host::BRIDGE_PREFIX);
        let rule_comment = format!("{}{id}", host::RULE_COMMENT_PREFIX);
        let replicas: Vec<Replica> = options
            .replicas
            .iter()
            .enumerate()
            .map(|(index, name)| {
                let directory = options.run_dir.join(name);
                Replica {
                    name: name.clone(),
                    namespace: format!("{}{id}-{name}", host::NAMESPACE_PREFIX),
                    host_veth: format!("{}{id}-{index}", host::VETH_PREFIX),
                    // Placeholder until the subnet is chosen below.
                    address: Ipv4Addr::UNSPECIFIED,
                    data_dir: directory.join("data"),
                    directory,
                    process: Mutex::new(None),
                }
            })
            .collect();
        if replicas.len() > 200 {
            return Err(BackendError::Other(format!(
                "{} replicas do not fit one /24",
                replicas.len()
            )));
        }
        let mut backend = Self {
            binary: options.binary.clone(),
            bridge,
            rule_comment,
            replicas,
            placements: Vec::new(),
        };
        // A crashed run with the same tag would make every `add` below fail.
        backend.remove_network()?;
        let subnet = host::free_subnet(&id)?;
        for (index, replica) in backend.replicas.iter_mut().enumerate() {
            replica.address = Ipv4Addr::new(subnet[0], subnet[1], subnet[2], 10 + index as u8);
        }
        backend.placements = backend
            .replicas
            .iter()
            .map(|replica| Placement {
                name: replica.name.clone(),
                listen_addr: format!("{}:{API_PORT}", replica.address),
                peer_listen_addr: format!("{}:{PEER_PORT}", replica.address),
                peer_url: format!("http://{}:{PEER_PORT}", replica.address),
                api_url: format!("http://{}:{API_PORT}", replica.address),
                data_dir: replica.data_dir.display().to_string(),
                workload_dir: options.workload_dir.display().to_string(),
            })
            .collect();
        let gateway = Ipv4Addr::new(subnet[0], subnet[1], subnet[2], 1);
        if let Err(error) = backend.build_network(gateway) {
            let _ = backend.teardown();
            return Err(error);
        }
        for replica in &backend.replicas {
            create_directory(&replica.directory)?;
        }
        Ok(backend)
    }

    fn build_network(&self, gateway: Ipv4Addr) -> Result<(), BackendError> {
        let bridge = self.bridge.as_str();
        host::run("ip", &["link", "add", "name", bridge, "type", "bridge"])?;
        host::run("ip", &["address", "add", &format!("{gateway}/24"), "dev", bridge])?;
        host::run("ip", &["link", "set", "dev", bridge, "up"])?;
        let mut accept = vec!["-w".to_string(), "-I".to_string(), "FORWARD".to_string()];
        accept.extend(host::forward_rule(bridge, &self.rule_comment));
        host::run("iptables", &as_strs(&accept))?;
        for replica in &self.replicas {
            let namespace = replica.namespace.as_str();
            // Named inside the namespace after the host end, so a listing maps one to the other.
            let inner = "eth0";
            host::run("ip", &["netns", "add", namespace])?;
            host::run(
                "ip",
                &[
                    "link",
                    "add",
                    "name",
                    &replica.host_veth,
                    "type",
                    "veth",
                    "peer",
                    "name",
                    inner,
                    "netns",
                    namespace,
                ],
            )?;
            host::run("ip", &["link", "set", "dev", &replica.host_veth, "master", bridge])?;
            host::run("ip", &["link", "set", "dev", &replica.host_veth, "up"])?;
            let in_namespace = |arguments: &[&str]| {
                let mut all = vec!["netns", "exec", namespace];
                all.extend_from_slice(arguments);
                host::run("ip", &all)
            };
            in_namespace(&["ip", "link", "set", "dev", "lo", "up"])?;
            in_namespace(&["ip", "address", "add", &format!("{}/24", replica.address), "dev", inner])?;
            in_namespace(&["ip", "link", "set", "dev", inner, "up"])?;
        }
        Ok(())
    }

    /// Remove the namespaces, veths, bridge and host rule of this run, whichever exist.
    fn remove_network(&self) -> Result<(), BackendError> {
        let mut first_error = None;
        let mut note = |result: Result<(), BackendError>| {
            if let Err(error) = result {
                first_error.get_or_insert(error);
            }
        };
        for replica in &self.replicas {
            note(host::delete_namespace(&replica.namespace));
            note(host::delete_link(&replica.host_veth));
        }
        note(host::delete_link(&self.bridge));
        note(host::delete_forward_rules(&self.rule_comment).map(drop));
        first_error.map_or(Ok(()), Err)
    }

    fn replica(&self, name: &str) -> Result<&Replica, BackendError> {
        self.replicas
            .iter()
            .find(|replica| replica.name == name)
            .ok_or_else(|| BackendError::UnknownReplica(name.to_string()))
    }

    /// Run `iptables` with `arguments` inside `replica`'s namespace.
    fn iptables(&self, replica: &Replica, arguments: &[&str]) -> Result<(), BackendError> {
        let mut all = vec!["netns", "exec", &replica.namespace, "iptables", "-w"];
        all.extend_from_slice(arguments);
        host::run("ip", &all).map(drop)
    }

    /// Send `signal` to the replica's process; an error if it is not running.
    fn signal(&self, name: &str, signal: &str) -> Result<(), BackendError> {
        let replica = self.replica(name)?;
        let mut slot = replica.process();
        let child = running(&mut slot, name)?;
        // Still unreaped (checked just above, under the lock), so the pid is still this process.
        host::run("kill", &[&format!("-{signal}"), &child.id().to_string()]).map(drop)
    }

    /// The pid of the replica's process while it runs; the allocator itself, since
    /// `ip netns exec` execs it in place.
    pub fn process_id(&self, name: &str) -> Option<u32> {
        let replica = self.replica(name).ok()?;
        let mut slot = replica.process();
        running(&mut slot, name).ok().map(|child| child.id())
    }

    /// The namespace a replica runs in, for a look with `ip netns exec`.
    pub fn namespace(&self, name: &str) -> Result<&str, BackendError> {
        Ok(&self.replica(name)?.namespace)
    }

    /// The host bridge of this run.
    pub fn bridge(&self) -> &str {
        &self.bridge
    }
}

/// Remove every namespace, bridge, veth and host rule any run of this backend left behind (a
/// run that crashed before its teardown), killing the processes inside those namespaces. Also
/// removes those of runs still going, so only for when none is. Returns what it removed.
pub fn remove_leftovers() -> Result<Vec<String>, BackendError> {
    let mut removed = Vec::new();
    for namespace in host::namespaces()? {
        if namespace.starts_with(host::NAMESPACE_PREFIX) {
            host::delete_namespace(&namespace)?;
            removed.push(format!("namespace {namespace}"));
        }
    }
    for kind in ["veth", "bridge"] {
        for link in host::links(kind)? {
            if link.starts_with(host::VETH_PREFIX) || link.starts_with(host::BRIDGE_PREFIX) {
                host::delete_link(&link)?;
                removed.push(format!("{kind} {link}"));
            }
        }
    }
    for rule in host::delete_forward_rules(host::RULE_COMMENT_PREFIX)? {
        removed.push(format!("iptables rule {rule}"));
    }
    Ok(removed)
}

/// Root, `ip netns` and `iptables` inside a namespace, tried for real on a throwaway namespace,
/// so a machine that cannot run the backend says why before anything is built.
pub(super) fn check_usable() -> Result<(), BackendError> {
    let unusable = |reason: String| BackendError::Unusable {
        backend: BackendKind::Netns,
        reason,
    };
    if !host::is_root().map_err(unusable)? {
        return Err(unusable("network namespaces and iptables need root".to_string()));
    }
    let probe = format!("{}probe-{}", host::NAMESPACE_PREFIX, std::process::id());
    let tried = host::run("ip", &["netns", "add", &probe]).and_then(|_| {
        let inside = host::run("ip", &["netns", "exec", &probe, "iptables", "-w", "-S"]);
        let removed = host::run("ip", &["netns", "delete", &probe]);
        inside.and(removed)
    });
    tried.map(drop).map_err(|error| unusable(error.to_string()))
}

/// The process in `slot` if it has not exited; reaps it (emptying the slot) if it has.
fn running<'a>(slot: &'a mut Option<Child>, name: &str) -> Result<&'a mut Child, BackendError> {
    let exited = match slot.as_mut() {
        None => true,
        Some(child) => !matches!(child.try_wait(), Ok(None)),
    };
    if exited {
        *slot = None;
        return Err(BackendError::NotRunning(name.to_string()));
    }
    slot.as_mut().ok_or_else(|| BackendError::NotRunning(name.to_string()))
}

/// Wait until `child` exits, at most `timeout`; whether it did.
fn wait_for_exit(child: &mut Child, timeout: Duration) -> Result<bool, BackendError> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => return Ok(true),
            Ok(None) if Instant::now() >= deadline => return Ok(false),
            Ok(None) => std::thread::sleep(EXIT_POLL),
            Err(source) => {
                return Err(BackendError::Spawn {
                    command: format!("wait for pid {}", child.id()),
                    source,
                });
            }
        }
    }
}

/// SIGKILL `child` and reap it.
fn kill_and_reap(child: &mut Child) -> Result<(), BackendError> {
    let pid = child.id();
    let io_error = |source| BackendError::Spawn {
        command: format!("kill -KILL {pid}"),
        source,
    };
    // Fails only when it has already been reaped, which `wait` below then says at once.
    let _ = child.kill();
    child.wait().map(drop).map_err(io_error)
}

fn create_directory(path: &Path) -> Result<(), BackendError> {
    std::fs::create_dir_all(path).map_err(|source| BackendError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn as_strs(words: &[String]) -> Vec<&str> {
    words.iter().map(String::as_str).collect()
}

impl Backend for NetnsBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Netns
    }

    fn placements(&self) -> &[Placement] {
        &self.placements
    }

    fn install_config(&self, replica: &str, config: &str) -> Result<(), BackendError> {
        let replica = self.replica(replica)?;
        create_directory(&replica.directory)?;
        let path = replica.config_path();
        std::fs::write(&path, config).map_err(|source| BackendError::Io { path, source })
    }

    fn start(&self, name: &str) -> Result<(), BackendError> {
        let replica = self.replica(name)?;
        let mut slot = replica.process();
        if running(&mut slot, name).is_ok() {
            return Err(BackendError::AlreadyRunning(name.to_string()));
        }
        let config = replica.config_path();
        if !config.is_file() {
            return Err(BackendError::Other(format!(
                "{name} has no config yet ({} is missing)",
                config.display()
            )));
        }
        create_directory(&replica.data_dir)?;
        let log_path = replica.log_path();
        let io_error = |source| BackendError::Io {
            path: log_path.clone(),
            source,
        };
        let stdout = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(io_error)?;
        let stderr = stdout.try_clone().map_err(io_error)?;
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &replica.namespace])
            .arg(&self.binary)
            .arg("--config-file")
            .arg(&config)
            .env("RUST_LOG", "info,openraft=error")
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr);
        let child = command.spawn().map_err(|source| BackendError::Spawn {
            command: format!(
                "ip netns exec {} {} --config-file {}",
                replica.namespace,
                self.binary.display(),
                config.display()
            ),
            source,
        })?;
        *slot = Some(child);
        Ok(())
    }

    fn stop(&self, name: &str) -> Result<(), BackendError> {
        let replica = self.replica(name)?;
        let mut slot = replica.process();
        // Like `docker stop`: nothing to do for a replica that is not running.
        let Ok(child) = running(&mut slot, name) else {
            return Ok(());
        };
        let pid = child.id().to_string();
        host::run("kill", &["-TERM", &pid])?;
        // A paused process holds SIGTERM pending until it runs again.
        host::run("kill", &["-CONT", &pid])?;
        if !wait_for_exit(child, STOP_TIMEOUT)? {
            kill_and_reap(child)?;
        }
        *slot = None;
        Ok(())
    }

    fn kill(&self, name: &str) -> Result<(), BackendError> {
        let replica = self.replica(name)?;
        let mut slot = replica.process();
        if let Ok(child) = running(&mut slot, name) {
            kill_and_reap(child)?;
        }
        *slot = None;
        Ok(())
    }

    fn pause(&self, replica: &str) -> Result<(), BackendError> {
        self.signal(replica, "STOP")
    }

    fn resume(&self, replica: &str) -> Result<(), BackendError> {
        self.signal(replica, "CONT")
    }

    fn wipe(&self, name: &str) -> Result<(), BackendError> {
        let replica = self.replica(name)?;
        let mut slot = replica.process();
        if running(&mut slot, name).is_ok() {
            return Err(BackendError::AlreadyRunning(name.to_string()));
        }
        match std::fs::remove_dir_all(&replica.data_dir) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(BackendError::Io {
                path: replica.data_dir.clone(),
                source: error,
            }),
            _ => Ok(()),
        }
    }

    fn isolate(&self, name: &str) -> Result<(), BackendError> {
        let replica = self.replica(name)?;
        // Only the peers' addresses: the host's, the bridge's, must still reach the API.
        for peer in self.replicas.iter().filter(|peer| peer.name != replica.name) {
            let address = peer.address.to_string();
            self.iptables(replica, &["-A", "INPUT", "-s", &address, "-j", "DROP"])?;
            self.iptables(replica, &["-A", "OUTPUT", "-d", &address, "-j", "DROP"])?;
        }
        Ok(())
    }

    fn cut(&self, from: &str, to: &str) -> Result<(), BackendError> {
        let source = self.replica(from)?.address.to_string();
        let target = self.replica(to)?;
        // Matching the destination port alone (no connection state) also stalls connections
        // `from` already has open to `to`, while `to`'s own connections to `from` (source
        // port 8081 on the way back) are untouched.
        let port = PEER_PORT.to_string();
        self.iptables(
            target,
            &[
                "-A", "INPUT", "-s", &source, "-p", "tcp", "--dport", &port, "-j", "DROP",
            ],
        )
    }

    fn heal_network(&self) -> Result<(), BackendError> {
        // The filter table of our namespaces holds nothing but partition rules.
        for replica in &self.replicas {
            self.iptables(replica, &["-F"])?;
        }
        Ok(())
    }

    fn is_running(&self, name: &str) -> bool {
        self.replica(name)
            .map(|replica| running(&mut replica.process(), name).is_ok())
            .unwrap_or(false)
    }

    fn log_tail(&self, name: &str, lines: usize) -> String {
        let Ok(replica) = self.replica(name) else {
            return format!("(no replica named {name})");
        };
        let path = replica.log_path();
        match read_tail(&path, LOG_TAIL_BYTES) {
            Ok(text) => {
                let all: Vec<&str> = text.lines().collect();
                all[all.len().saturating_sub(lines)..].join("\n")
            }
            Err(error) => format!("(cannot read {}: {error})", path.display()),
        }
    }

    fn teardown(&self) -> Result<(), BackendError> {
        let mut first_error = None;
        for replica in &self.replicas {
            let mut slot = replica.process();
            if let Some(child) = slot.as_mut()
                && let Err(error) = kill_and_reap(child)
            {
                first_error.get_or_insert(error);
            }
            *slot = None;
        }
        let removed = self.remove_network();
        match first_error {
            Some(error) => Err(error),
            None => removed,
        }
    }
}

/// The last `limit` bytes of the file at `path`, from the first whole line on.
fn read_tail(path: &Path, limit: u64) -> std::io::Result<String> {
    use std::io::Read;
    use std::io::Seek;
    use std::io::SeekFrom;
    let mut file = std::fs::File::open(path)?;
    let length = file.metadata()?.len();
    let start = length.saturating_sub(limit);
    file.seek(SeekFrom::Start(start))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    let text = String::from_utf8_lossy(&bytes).into_owned();
    if start == 0 {
        return Ok(text);
    }
    Ok(text
        .split_once('\n')
        .map(|(_, rest)| rest.to_string())
        .unwrap_or_default())
}

impl Drop for NetnsBackend {
    /// The harness calls `teardown`; this is for when it did not get to (a panic), so no
    /// namespace or process outlives the run.
    fn drop(&mut self) {
        let _ = self.teardown();
    }
}
