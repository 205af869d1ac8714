//! The `docker` backend: each replica is a container of a `FROM scratch` image holding the
//! release binary and its shared libraries. It owns, for one tag, everything named
//! `ta-chaos-<tag>…`: the image, two bridge networks (`-peers` for Raft traffic, `-clients`
//! for the harness's polls), one container and one data volume per replica, and the iptables
//! rules of one-way cuts inside the containers' network namespaces.
//!
//! Both networks have explicit subnets and every container explicit addresses, so a replica
//! keeps its addresses across disconnect/connect, restarts and wipes, and its peers' URLs stay
//! valid. Isolation and cuts are recorded here, not only in the engine, so they survive the
//! replica being recreated (a wipe) or restarted (a new namespace without the rules) until
//! `heal_network`.
//!
//! Every command goes through [`run`], which turns a failure into [`BackendError::Command`]
//! with what the command printed.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;
use std::sync::MutexGuard;
use std::thread;
use std::time::Duration;
use std::time::Instant;

use super::Backend;
use super::BackendError;
use super::BackendKind;
use super::BackendOptions;
use super::Placement;
use super::command::run;
use super::command::run_with_environment;

/// Every name this backend gives starts with it, so leftovers of any run can be found.
const NAME_PREFIX: &str = "ta-chaos-";
/// The label key on every object, valued with the tag, so teardown finds objects whose name
/// it did not compute (none today, but a half-finished create must not leak).
const LABEL_KEY: &str = "ta-chaos";
const API_PORT: u16 = 8080;
const PEER_PORT: u16 = 8081;
/// The service drains within 20 s of SIGTERM; the engine's SIGKILL comes after this.
const STOP_GRACE_SECONDS: u32 = 25;
/// How long a SIGKILLed container may take to be reported as exited.
const KILL_DEADLINE: Duration = Duration::from_secs(15);
/// The first host address of a replica in each /24 (`.1` is the bridge's gateway).
const FIRST_HOST: usize = 10;
/// Subnets tried per network before giving up on finding one that no other network uses.
const SUBNET_ATTEMPTS: usize = 64;
/// The container paths the placements name.
const DATA_DIR: &str = "/data";
const WORKLOAD_DIR: &str = "/workload";
const CONFIG_DIR: &str = "/config";

/// The names of everything one tag owns.
#[derive(Debug, Clone)]
struct Names {
    tag: String,
    image: String,
    peers_network: String,
    clients_network: String,
    containers: Vec<String>,
    volumes: Vec<String>,
}

impl Names {
    fn new(tag: &str, replicas: &[String]) -> Self {
        let base = format!("{NAME_PREFIX}{tag}");
        Names {
            tag: tag.to_string(),
            image: base.clone(),
            peers_network: format!("{base}-peers"),
            clients_network: format!("{base}-clients"),
            containers: replicas.iter().map(|replica| format!("{base}-{replica}")).collect(),
            volumes: replicas
                .iter()
                .map(|replica| format!("{base}-{replica}-data"))
                .collect(),
        }
    }

    fn label(&self) -> String {
        format!("{LABEL_KEY}={}", self.tag)
    }
}

/// One replica's fixed addresses on the two networks.
#[derive(Debug, Clone)]
struct Addresses {
    peer_ip: String,
    client_ip: String,
}

/// A one-way cut: `to` drops peer connections coming from `from` (indices of replicas).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Cut {
    from: usize,
    to: usize,
}

/// The network faults in effect, by replica index. Also serialises the operations that
/// create, recreate or rewire containers, so a heal cannot interleave with a start.
#[derive(Debug, Default)]
struct Faults {
    isolated: BTreeSet<usize>,
    cuts: BTreeSet<Cut>,
}

pub struct DockerBackend {
    options: BackendOptions,
    names: Names,
    addresses: Vec<Addresses>,
    placements: Vec<Placement>,
    faults: Mutex<Faults>,
}

impl DockerBackend {
    /// Check the engine, build the image and the two networks. On any failure, removes what
    /// it had built before returning the error.
    pub fn create(options: BackendOptions) -> Result<Self, BackendError> {
        check_usable()?;
        let options = absolute_directories(options)?;
        let names = Names::new(&options.tag, &options.replicas);
        match build(&options, &names) {
            Ok(addresses) => {
                let placements = placements(&options.replicas, &addresses);
                Ok(DockerBackend {
                    options,
                    names,
                    addresses,
                    placements,
                    faults: Mutex::new(Faults::default()),
                })
            }
            Err(error) => {
                // The build error is what the caller needs; a cleanup failure would hide it.
                let _ = remove_tagged(&names);
                Err(error)
            }
        }
    }

    fn index(&self, replica: &str) -> Result<usize, BackendError> {
        self.options
            .replicas
            .iter()
            .position(|name| name == replica)
            .ok_or_else(|| BackendError::UnknownReplica(replica.to_string()))
    }

    /// The fault record stays meaningful after a panic elsewhere, so a poisoned lock is used.
    fn faults(&self) -> MutexGuard<'_, Faults> {
        self.faults.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn config_directory(&self, replica: &str) -> PathBuf {
        self.options.run_dir.join(replica)
    }

    fn container_exists(&self, index: usize) -> Result<bool, BackendError> {
        match docker(&[
            "container",
            "inspect",
            "--format",
            "{{.Id}}",
            &self.names.containers[index],
        ]) {
            Ok(_) => Ok(true),
            Err(error) if is_no_such(&error) => Ok(false),
            Err(error) => Err(error),
        }
    }

    fn running(&self, index: usize) -> Result<bool, BackendError> {
        match docker(&[
            "container",
            "inspect",
            "--format",
            "{{.State.Running}}",
            &self.names.containers[index],
        ]) {
            Ok(output) => Ok(output == "true"),
            Err(error) if is_no_such(&error) => Ok(false),
            Err(error) => Err(error),
        }
    }

    /// The host pid of the container's process while it runs (paused included), for
    /// entering its network namespace.
    fn pid(&self, index: usize) -> Result<Option<u32>, BackendError> {
        if !self.running(index)? {
            return Ok(None);
        }
        let output = docker(&[
            "container",
            "inspect",
            "--format",
            "{{.State.Pid}}",
            &self.names.containers[index],
        ])?;
        let pid: u32 = output
            .parse()
            .map_err(|_| BackendError::Other(format!("docker reported pid {output:?}")))?;
        Ok((pid != 0).then_some(pid))
    }

    fn on_peers_network(&self, index: usize) -> Result<bool, BackendError> {
        let template = format!(
            "{{{{if index .NetworkSettings.Networks \"{}\"}}}}yes{{{{end}}}}",
            self.names.peers_network
        );
        let output = docker(&[
            "container",
            "inspect",
            "--format",
            &template,
            &self.names.containers[index],
        ])?;
        Ok(output == "yes")
    }

    fn connect_peers(&self, index: usize) -> Result<(), BackendError> {
        docker(&[
            "network",
            "connect",
            "--ip",
            &self.addresses[index].peer_ip,
            &self.names.peers_network,
            &self.names.containers[index],
        ])
        .map(drop)
    }

    /// A new container on a fresh (or kept) volume, wired to the client network, and to the
    /// peer network unless the replica is isolated, all before its process starts.
    fn create_container(&self, index: usize, isolated: bool) -> Result<(), BackendError> {
        let replica = &self.options.replicas[index];
        let label = self.names.label();
        let volume = &self.names.volumes[index];
        docker(&["volume", "create", "--label", &label, volume])?;
        let config_mount = format!(
            "type=bind,source={},target={CONFIG_DIR},readonly",
            self.config_directory(replica).display()
        );
        let workload_mount = format!(
            "type=bind,source={},target={WORKLOAD_DIR},readonly",
            self.options.workload_dir.display()
        );
        let data_mount = format!("type=volume,source={volume},target={DATA_DIR}");
        let config_file = format!("{CONFIG_DIR}/config.yaml");
        docker(&[
            "container",
            "create",
            "--name",
            &self.names.containers[index],
            "--label",
            &label,
            "--hostname",
            replica,
            "--network",
            &self.names.clients_network,
            "--ip",
            &self.addresses[index].client_ip,
            "--mount",
            &data_mount,
            "--mount",
            &config_mount,
            "--mount",
            &workload_mount,
            "--env",
            "RUST_LOG=info,openraft=error",
            &self.names.image,
            "/target-allocator",
            "--config-file",
            &config_file,
        ])?;
        if !isolated {
            self.connect_peers(index)?;
        }
        Ok(())
    }

    /// The rule in `cut.to`'s namespace, if it runs; a stopped replica gets it on `start`.
    fn apply_cut(&self, cut: Cut) -> Result<(), BackendError> {
        let Some(pid) = self.pid(cut.to)? else {
            return Ok(());
        };
        let rule = cut_rule(&self.addresses[cut.from].peer_ip);
        if !rule_present(pid, &rule)? {
            iptables_in(pid, "-A", &rule)?;
        }
        Ok(())
    }

    /// Deletes the rule if it is there: a replica restarted since the cut has a new namespace
    /// without it, and a stopped one has no namespace at all.
    fn remove_cut(&self, cut: Cut) -> Result<(), BackendError> {
        let Some(pid) = self.pid(cut.to)? else {
            return Ok(());
        };
        let rule = cut_rule(&self.addresses[cut.from].peer_ip);
        while rule_present(pid, &rule)? {
            iptables_in(pid, "-D", &rule)?;
        }
        Ok(())
    }

    /// The iptables rules of `replica`'s network namespace (`iptables -S`), for checks.
    pub fn rules(&self, replica: &str) -> Result<String, BackendError> {
        let index = self.index(replica)?;
        let pid = self
            .pid(index)?
            .ok_or_else(|| BackendError::Other(format!("{replica} is not running")))?;
        run("nsenter", &[&namespace_argument(pid), IPTABLES, "-w", "-S"])
    }

    /// The host pid of `replica`'s process, if it runs, so a caller can enter its namespaces.
    pub fn process_id(&self, replica: &str) -> Result<Option<u32>, BackendError> {
        self.pid(self.index(replica)?)
    }

    /// The names of the objects this backend owns: containers, volumes, networks, image.
    pub fn owned_names(&self) -> Vec<String> {
        let mut names = self.names.containers.clone();
        names.extend(self.names.volumes.iter().cloned());
        names.push(self.names.peers_network.clone());
        names.push(self.names.clients_network.clone());
        names.push(self.names.image.clone());
        names
    }
}

impl Backend for DockerBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Docker
    }

    fn placements(&self) -> &[Placement] {
        &self.placements
    }

    fn install_config(&self, replica: &str, config: &str) -> Result<(), BackendError> {
        self.index(replica)?;
        let directory = self.config_directory(replica);
        fs::create_dir_all(&directory).map_err(|source| io_error(&directory, source))?;
        let path = directory.join("config.yaml");
        fs::write(&path, config).map_err(|source| io_error(&path, source))
    }

    fn start(&self, replica: &str) -> Result<(), BackendError> {
        let index = self.index(replica)?;
        let config = self.config_directory(replica).join("config.yaml");
        if !config.is_file() {
            return Err(BackendError::Other(format!(
                "{replica} has no config: call install_config first ({} is missing)",
                config.display()
            )));
        }
        let faults = self.faults();
        if !self.container_exists(index)? {
            self.create_container(index, faults.isolated.contains(&index))?;
        }
        docker(&["container", "start", &self.names.containers[index]])?;
        // A new process is a new namespace without the rules; there is a moment before they
        // are back in which it can reach the peer it is cut from.
        for cut in faults.cuts.iter().filter(|cut| cut.to == index) {
            self.apply_cut(*cut)?;
        }
        Ok(())
    }

    fn stop(&self, replica: &str) -> Result<(), BackendError> {
        let index = self.index(replica)?;
        if !self.running(index)? {
            return Ok(());
        }
        // A frozen process cannot act on SIGTERM: thawed, it drains as a running one does.
        let paused = docker(&[
            "container",
            "inspect",
            "--format",
            "{{.State.Paused}}",
            &self.names.containers[index],
        ])?;
        if paused == "true" {
            docker(&["container", "unpause", &self.names.containers[index]])?;
        }
        let grace = STOP_GRACE_SECONDS.to_string();
        docker(&["container", "stop", "--time", &grace, &self.names.containers[index]]).map(drop)
    }

    fn kill(&self, replica: &str) -> Result<(), BackendError> {
        let index = self.index(replica)?;
        if !self.running(index)? {
            return Ok(());
        }
        docker(&["container", "kill", "--signal", "KILL", &self.names.containers[index]])?;
        let deadline = Instant::now() + KILL_DEADLINE;
        while self.running(index)? {
            if Instant::now() > deadline {
                return Err(BackendError::Other(format!(
                    "{replica} still runs {KILL_DEADLINE:?} after SIGKILL"
                )));
            }
            thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    fn pause(&self, replica: &str) -> Result<(), BackendError> {
        let index = self.index(replica)?;
        docker(&["container", "pause", &self.names.containers[index]]).map(drop)
    }

    fn resume(&self, replica: &str) -> Result<(), BackendError> {
        let index = self.index(replica)?;
        docker(&["container", "unpause", &self.names.containers[index]]).map(drop)
    }

    fn wipe(&self, replica: &str) -> Result<(), BackendError> {
        let index = self.index(replica)?;
        let _faults = self.faults();
        if self.running(index)? {
            return Err(BackendError::Other(format!("cannot wipe {replica}: it is running")));
        }
        ignore_no_such(docker(&["container", "rm", "--force", &self.names.containers[index]]))?;
        ignore_no_such(docker(&["volume", "rm", "--force", &self.names.volumes[index]]))
    }

    fn isolate(&self, replica: &str) -> Result<(), BackendError> {
        let index = self.index(replica)?;
        let mut faults = self.faults();
        if self.container_exists(index)? && self.on_peers_network(index)? {
            docker(&[
                "network",
                "disconnect",
                "--force",
                &self.names.peers_network,
                &self.names.containers[index],
            ])?;
        }
        // Recorded even when there is no container yet: `start` creates it unconnected.
        faults.isolated.insert(index);
        Ok(())
    }

    fn cut(&self, from: &str, to: &str) -> Result<(), BackendError> {
        let cut = Cut {
            from: self.index(from)?,
            to: self.index(to)?,
        };
        if cut.from == cut.to {
            return Err(BackendError::Other(format!("cannot cut {from} from itself")));
        }
        let mut faults = self.faults();
        faults.cuts.insert(cut);
        self.apply_cut(cut)
    }

    fn heal_network(&self) -> Result<(), BackendError> {
        let mut faults = self.faults();
        let mut first_error = None;
        // A fault whose undoing failed stays recorded, so a second heal retries it.
        let isolated: Vec<usize> = faults.isolated.iter().copied().collect();
        for index in isolated {
            let result = match self.container_exists(index) {
                Ok(true) => match self.on_peers_network(index) {
                    Ok(true) => Ok(()),
                    Ok(false) => self.connect_peers(index),
                    Err(error) => Err(error),
                },
                Ok(false) => Ok(()),
                Err(error) => Err(error),
            };
            match result {
                Ok(()) => {
                    faults.isolated.remove(&index);
                }
                Err(error) => {
                    first_error.get_or_insert(error);
                }
            }
        }
        let cuts: Vec<Cut> = faults.cuts.iter().copied().collect();
        for cut in cuts {
            match self.remove_cut(cut) {
                Ok(()) => {
                    faults.cuts.remove(&cut);
                }
                Err(error) => {
                    first_error.get_or_insert(error);
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    fn is_running(&self, replica: &str) -> bool {
        self.index(replica)
            .and_then(|index| self.running(index))
            .unwrap_or(false)
    }

    fn log_tail(&self, replica: &str, lines: usize) -> String {
        let Ok(index) = self.index(replica) else {
            return format!("no replica named {replica}");
        };
        let tail = lines.to_string();
        let command = ["logs", "--tail", &tail, &self.names.containers[index]];
        match Command::new("docker").args(command).output() {
            // The container's stdout and stderr come back on ours; the service logs to one.
            Ok(output) => format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ),
            Err(error) => format!("cannot run `docker {}`: {error}", command.join(" ")),
        }
    }

    fn teardown(&self) -> Result<(), BackendError> {
        let result = remove_tagged(&self.names);
        let mut faults = self.faults();
        faults.isolated.clear();
        faults.cuts.clear();
        result
    }
}

/// Remove everything named `ta-chaos-…` or labelled `ta-chaos`: containers, volumes,
/// networks and images of earlier runs that did not tear down. Also removes those of a run
/// going on right now, so it is for when none is. Returns the names it removed.
pub fn remove_leftovers() -> Result<Vec<String>, BackendError> {
    let mut removed = Vec::new();
    let label_filter = format!("label={LABEL_KEY}");
    let name_filter = format!("name={NAME_PREFIX}");

    let mut containers = listed(&[
        "container",
        "ls",
        "--all",
        "--filter",
        &name_filter,
        "--format",
        "{{.Names}}",
    ])?;
    containers.extend(listed(&[
        "container",
        "ls",
        "--all",
        "--filter",
        &label_filter,
        "--format",
        "{{.Names}}",
    ])?);
    let mut volumes = listed(&["volume", "ls", "--quiet", "--filter", &name_filter])?;
    volumes.extend(listed(&["volume", "ls", "--quiet", "--filter", &label_filter])?);
    let mut networks = listed(&["network", "ls", "--filter", &name_filter, "--format", "{{.Name}}"])?;
    networks.extend(listed(&[
        "network",
        "ls",
        "--filter",
        &label_filter,
        "--format",
        "{{.Name}}",
    ])?);
    let images = listed(&["image", "ls", "--format", "{{.Repository}}"])?;

    let ours = |names: Vec<String>| -> BTreeSet<String> {
        names.into_iter().filter(|name| name.starts_with(NAME_PREFIX)).collect()
    };
    let mut first_error = None;
    let removals: [(BTreeSet<String>, &[&str]); 4] = [
        (ours(containers), &["container", "rm", "--force"]),
        (ours(volumes), &["volume", "rm", "--force"]),
        (ours(networks), &["network", "rm"]),
        (ours(images), &["image", "rm", "--force"]),
    ];
    for (names, command) in removals {
        for name in names {
            let mut arguments = command.to_vec();
            arguments.push(&name);
            match ignore_no_such(docker(&arguments)) {
                Ok(()) => removed.push(name),
                Err(error) => {
                    first_error.get_or_insert(error);
                }
            }
        }
    }
    first_error.map_or(Ok(removed), Err)
}

/// The engine answers and this process may enter namespaces and run iptables.
pub(super) fn check_usable() -> Result<(), BackendError> {
    let unusable = |reason: String| BackendError::Unusable {
        backend: BackendKind::Docker,
        reason,
    };
    docker(&["version", "--format", "{{.Server.Version}}"]).map_err(|error| unusable(error.to_string()))?;
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    let user = status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().next())
        .unwrap_or("");
    if user != "0" {
        return Err(unusable(
            "cuts need root (nsenter and iptables in the containers' namespaces)".to_string(),
        ));
    }
    for (program, argument) in [("nsenter", "--version"), (IPTABLES, "--version")] {
        run(program, &[argument]).map_err(|error| unusable(error.to_string()))?;
    }
    Ok(())
}

/// Bind mounts need absolute paths; both directories must exist for the engine to mount them.
fn absolute_directories(mut options: BackendOptions) -> Result<BackendOptions, BackendError> {
    for directory in [&mut options.run_dir, &mut options.workload_dir] {
        fs::create_dir_all(&*directory).map_err(|source| io_error(directory, source))?;
        *directory = fs::canonicalize(&*directory).map_err(|source| io_error(directory, source))?;
    }
    Ok(options)
}

/// The image and the two networks; the replicas' addresses on them.
fn build(options: &BackendOptions, names: &Names) -> Result<Vec<Addresses>, BackendError> {
    build_image(options, names)?;
    let seed = fnv1a(&names.tag);
    let peers = create_network(&names.peers_network, &names.label(), 29, seed)?;
    let clients = create_network(&names.clients_network, &names.label(), 30, seed)?;
    Ok((0..options.replicas.len())
        .map(|index| Addresses {
            peer_ip: format!("{peers}.{}", FIRST_HOST + index),
            client_ip: format!("{clients}.{}", FIRST_HOST + index),
        })
        .collect())
}

/// `FROM scratch` with the binary at `/target-allocator` and the shared libraries it loads
/// at the paths the loader looks them up at.
fn build_image(options: &BackendOptions, names: &Names) -> Result<(), BackendError> {
    let context = options.run_dir.join("docker-image");
    if context.exists() {
        fs::remove_dir_all(&context).map_err(|source| io_error(&context, source))?;
    }
    let root = context.join("rootfs");
    // The service may create temporary files; scratch has no /tmp.
    let temporary = root.join("tmp");
    fs::create_dir_all(&temporary).map_err(|source| io_error(&temporary, source))?;
    copy_file(&options.binary, &root.join("target-allocator"))?;
    for library in shared_libraries(&options.binary)? {
        let relative = library.strip_prefix("/").unwrap_or(&library);
        copy_file(&library, &root.join(relative))?;
    }
    let dockerfile = context.join("Dockerfile");
    fs::write(&dockerfile, "FROM scratch\nCOPY rootfs/ /\n").map_err(|source| io_error(&dockerfile, source))?;
    let label = names.label();
    let context_argument = context.display().to_string();
    let arguments = [
        "build",
        "--quiet",
        "--label",
        &label,
        "--tag",
        &names.image,
        &context_argument,
    ];
    // The legacy builder needs no buildx plugin, which this engine's machines may lack.
    run_with_environment("docker", &arguments, &[("DOCKER_BUILDKIT", "0")]).map(drop)
}

/// The files `ldd` resolves the binary's libraries to, the loader included; none for a
/// static binary.
fn shared_libraries(binary: &Path) -> Result<Vec<PathBuf>, BackendError> {
    let binary_argument = binary.display().to_string();
    let output = match run("ldd", &[&binary_argument]) {
        Ok(output) => output,
        Err(BackendError::Command { output, .. }) if output.contains("not a dynamic executable") => {
            return Ok(Vec::new());
        }
        Err(error) => return Err(error),
    };
    Ok(output
        .lines()
        .filter_map(|line| {
            let resolved = match line.split_once("=>") {
                Some((_, right)) => right,
                None => line,
            };
            resolved
                .split_whitespace()
                .next()
                .filter(|path| path.starts_with('/'))
                .map(PathBuf::from)
        })
        .collect())
}

/// A bridge network on the first free `172.<second>.<n>.0/24`, `n` walking from `seed`: the
/// engine refuses a subnet that overlaps another network's, which is the cue to try the next.
/// Returns the subnet's first three octets.
fn create_network(name: &str, label: &str, second: u8, seed: u32) -> Result<String, BackendError> {
    let mut last_error = None;
    for attempt in 0..SUBNET_ATTEMPTS {
        let third = (seed as usize + attempt) % 256;
        let prefix = format!("172.{second}.{third}");
        let subnet = format!("{prefix}.0/24");
        let gateway = format!("{prefix}.1");
        let result = docker(&[
            "network",
            "create",
            "--driver",
            "bridge",
            "--subnet",
            &subnet,
            "--gateway",
            &gateway,
            "--label",
            label,
            name,
        ]);
        match result {
            Ok(_) => return Ok(prefix),
            Err(error) if mentions(&error, "overlaps") => last_error = Some(error),
            Err(error) => return Err(error),
        }
    }
    Err(last_error.unwrap_or_else(|| BackendError::Other(format!("no free subnet for {name}"))))
}

fn placements(replicas: &[String], addresses: &[Addresses]) -> Vec<Placement> {
    replicas
        .iter()
        .zip(addresses)
        .map(|(name, addresses)| Placement {
            name: name.clone(),
            listen_addr: format!("0.0.0.0:{API_PORT}"),
            peer_listen_addr: format!("0.0.0.0:{PEER_PORT}"),
            peer_url: format!("http://{}:{PEER_PORT}", addresses.peer_ip),
            api_url: format!("http://{}:{API_PORT}", addresses.client_ip),
            data_dir: DATA_DIR.to_string(),
            workload_dir: WORKLOAD_DIR.to_string(),
        })
        .collect()
}

/// Remove the containers (with their processes), volumes, networks and image of `names`, and
/// anything else labelled with its tag; what does not exist is skipped, so it can run on a
/// half-built setup and run twice. Tries everything, then returns the first failure.
fn remove_tagged(names: &Names) -> Result<(), BackendError> {
    let label_filter = format!("label={}", names.label());
    let mut first_error = None;
    let mut note = |result: Result<(), BackendError>| {
        if let Err(error) = result {
            first_error.get_or_insert(error);
        }
    };

    let mut containers: BTreeSet<String> = names.containers.iter().cloned().collect();
    match listed(&["container", "ls", "--all", "--quiet", "--filter", &label_filter]) {
        Ok(ids) => containers.extend(ids),
        Err(error) => note(Err(error)),
    }
    for container in &containers {
        note(ignore_no_such(docker(&["container", "rm", "--force", container])));
    }

    let mut volumes: BTreeSet<String> = names.volumes.iter().cloned().collect();
    match listed(&["volume", "ls", "--quiet", "--filter", &label_filter]) {
        Ok(found) => volumes.extend(found),
        Err(error) => note(Err(error)),
    }
    for volume in &volumes {
        note(ignore_no_such(docker(&["volume", "rm", "--force", volume])));
    }

    for network in [&names.peers_network, &names.clients_network] {
        note(ignore_no_such(docker(&["network", "rm", network])));
    }
    note(ignore_no_such(docker(&["image", "rm", "--force", &names.image])));
    first_error.map_or(Ok(()), Err)
}

/// The iptables of the host, run inside a container's namespace: its nf_tables backend
/// works there (checked on Docker 20.10 with iptables 1.8.9).
const IPTABLES: &str = "iptables";

fn namespace_argument(pid: u32) -> String {
    format!("--net=/proc/{pid}/ns/net")
}

/// The INPUT rule that drops new and established peer traffic from `from_ip`.
fn cut_rule(from_ip: &str) -> Vec<String> {
    let port = PEER_PORT.to_string();
    ["INPUT", "-s", from_ip, "-p", "tcp", "--dport", &port, "-j", "DROP"]
        .iter()
        .map(|argument| argument.to_string())
        .collect()
}

fn iptables_in(pid: u32, action: &str, rule: &[String]) -> Result<String, BackendError> {
    let namespace = namespace_argument(pid);
    let mut arguments = vec![namespace.as_str(), IPTABLES, "-w", action];
    arguments.extend(rule.iter().map(String::as_str));
    run("nsenter", &arguments)
}

/// `iptables -C` exits 1 when the rule is absent; anything else is a real failure.
fn rule_present(pid: u32, rule: &[String]) -> Result<bool, BackendError> {
    match iptables_in(pid, "-C", rule) {
        Ok(_) => Ok(true),
        Err(BackendError::Command { ref output, .. })
            if output.contains("does a matching rule exist") || output.contains("Bad rule") =>
        {
            Ok(false)
        }
        Err(error) => Err(error),
    }
}

fn docker(arguments: &[&str]) -> Result<String, BackendError> {
    run("docker", arguments)
}

/// Lines of a listing command's output, blank ones dropped.
fn listed(arguments: &[&str]) -> Result<Vec<String>, BackendError> {
    Ok(docker(arguments)?
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(str::to_string)
        .collect())
}

/// Whether a command failed printing `text`.
fn mentions(error: &BackendError, text: &str) -> bool {
    matches!(error, BackendError::Command { output, .. } if output.contains(text))
}

/// The engine's answer for an object that does not exist: "No such container/volume/image",
/// but "network … not found".
fn is_no_such(error: &BackendError) -> bool {
    mentions(error, "No such") || mentions(error, " not found")
}

fn ignore_no_such(result: Result<String, BackendError>) -> Result<(), BackendError> {
    match result {
        Ok(_) => Ok(()),
        Err(error) if is_no_such(&error) => Ok(()),
        Err(error) => Err(error),
    }
}

fn copy_file(source: &Path, destination: &Path) -> Result<(), BackendError> {
    if let Some(parent) = destination.parent() {
        fs::create_dir_all(parent).map_err(|error| io_error(parent, error))?;
    }
    fs::copy(source, destination)
        .map(drop)
        .map_err(|error| io_error(source, error))
}

fn io_error(path: &Path, source: std::io::Error) -> BackendError {
    BackendError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A hash stable across Rust releases (unlike the standard library's), so a tag always
/// starts its subnet search at the same place.
fn fnv1a(text: &str) -> u32 {
    text.bytes().fold(0x811c_9dc5, |hash, byte| {
        (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193)
    })
}
