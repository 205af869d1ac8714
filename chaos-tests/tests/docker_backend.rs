//! The docker backend against a real engine and a real 3-replica cluster: every operation is
//! done once and its effect seen through the replicas' HTTP API (and iptables for cuts).
//!
//! Skips, saying why, when `docker info` fails or no release binary is found, unless
//! `TA_REQUIRE_DOCKER=1`, which turns a skip into a failure. The binary is
//! `$TA_CHAOS_BINARY`, else `release/target-allocator` under `$CARGO_TARGET_DIR` or the
//! workspace's `target`.

mod support;

use std::process::Command;
use std::time::Duration;
use std::time::Instant;
use std::time::SystemTime;
use std::time::UNIX_EPOCH;

use chaos_tests::backend::Backend;
use chaos_tests::backend::BackendKind;
use chaos_tests::backend::BackendOptions;
use chaos_tests::backend::Placement;
use chaos_tests::backend::docker::DockerBackend;
use chaos_tests::cluster_config::ClusterSettings;

const REPLICAS: [&str; 3] = ["ta-0", "ta-1", "ta-2"];
const READY_WITHIN: Duration = Duration::from_secs(60);
/// Longer than the 1.5 s lease plus an election, short enough for a quick test.
const FAULT_SEEN_WITHIN: Duration = Duration::from_secs(5);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(1);
const LOG_LINES: usize = 40;

/// Tears the backend down however the test ends, and prints the replicas' logs when it fails.
struct Teardown<'a> {
    backend: &'a DockerBackend,
}

impl Drop for Teardown<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for replica in REPLICAS {
                eprintln!("--- {replica} ---\n{}", self.backend.log_tail(replica, LOG_LINES));
            }
        }
        if let Err(error) = self.backend.teardown() {
            eprintln!("teardown failed: {error}");
        }
    }
}

fn skip_or_fail(reason: &str) {
    if std::env::var("TA_REQUIRE_DOCKER").as_deref() == Ok("1") {
        panic!("TA_REQUIRE_DOCKER=1 but {reason}");
    }
    eprintln!("skipping the docker backend test: {reason}");
}

/// The harness's own replica config (the workload's `file_sd` file may be absent: no targets).
fn config(placements: &[Placement], index: usize) -> String {
    chaos_tests::cluster_config::replica_config(&ClusterSettings::default(), placements, index)
}

/// What a GET answered: a status, or why there was none (a timeout, a refused connection).
#[derive(Debug, PartialEq, Eq)]
enum Answer {
    Status(u16),
    None(String),
}

struct Api {
    runtime: tokio::runtime::Runtime,
    http: reqwest::Client,
    urls: Vec<String>,
}

impl Api {
    fn get(&self, index: usize, path: &str) -> Answer {
        let url = format!("{}{path}", self.urls[index]);
        self.runtime.block_on(async {
            match self.http.get(&url).send().await {
                Ok(response) => Answer::Status(response.status().as_u16()),
                Err(error) => Answer::None(format!("{error:?}")),
            }
        })
    }

    fn text(&self, index: usize, path: &str) -> Option<String> {
        let url = format!("{}{path}", self.urls[index]);
        self.runtime
            .block_on(async { self.http.get(&url).send().await.ok()?.text().await.ok() })
    }

    /// Poll until every replica in `which` satisfies `expected` on `path`; returns how long it
    /// took, or panics with the last answers.
    fn wait(
        &self,
        which: &[usize],
        path: &str,
        within: Duration,
        what: &str,
        expected: impl Fn(&Answer) -> bool,
    ) -> Duration {
        let started = Instant::now();
        loop {
            let answers: Vec<(usize, Answer)> = which.iter().map(|&index| (index, self.get(index, path))).collect();
            if answers.iter().all(|(_, answer)| expected(answer)) {
                return started.elapsed();
            }
            if started.elapsed() > within {
                panic!("{what}: not within {within:?}; last answers to {path}: {answers:?}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn wait_ready(&self, which: &[usize], what: &str) -> Duration {
        self.wait(which, "/readyz", READY_WITHIN, what, |answer| {
            *answer == Answer::Status(200)
        })
    }
}

fn timed<T>(what: &str, operation: impl FnOnce() -> T) -> T {
    let started = Instant::now();
    let result = operation();
    eprintln!("{what}: {:?}", started.elapsed());
    result
}

fn docker_lines(arguments: &[&str]) -> Vec<String> {
    let output = Command::new("docker").args(arguments).output().expect("docker runs");
    assert!(output.status.success(), "docker {arguments:?}: {output:?}");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// Whether a TCP connection from inside `pid`'s network namespace to `address` opens within
/// two seconds.
fn connects_from(pid: u32, address: &str) -> bool {
    let (host, port) = address.rsplit_once(':').expect("host:port");
    let probe = format!("exec 3<>/dev/tcp/{host}/{port}");
    Command::new("nsenter")
        .args([
            &format!("--net=/proc/{pid}/ns/net"),
            "timeout",
            "2",
            "bash",
            "-c",
            &probe,
        ])
        .output()
        .map(|output| output.status.success())
        .unwrap_or(false)
}

fn peer_address(placement: &Placement) -> String {
    placement.peer_url.trim_start_matches("http://").to_string()
}

/// The node id of the last "created a new node identity" line in a log, colour codes removed.
fn created_node_id(log: &str) -> Option<String> {
    let plain = strip_colour(log);
    plain
        .lines()
        .rfind(|line| line.contains("created a new node identity"))
        .and_then(|line| line.split("node_id=").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .map(str::to_string)
}

fn strip_colour(text: &str) -> String {
    let mut plain = String::with_capacity(text.len());
    let mut characters = text.chars();
    while let Some(character) = characters.next() {
        if character == '\u{1b}' {
            for terminator in characters.by_ref() {
                if terminator.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            plain.push(character);
        }
    }
    plain
}

#[test]
fn every_operation_acts_on_a_real_cluster() {
    if let Err(reason) = chaos_tests::backend::usable(BackendKind::Docker) {
        return skip_or_fail(&reason.to_string());
    }
    let Some(binary) = support::release_binary() else {
        return skip_or_fail("no release target-allocator binary (build it or set TA_CHAOS_BINARY)");
    };

    let directory = tempfile::tempdir().expect("temporary directory");
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().subsec_nanos();
    let tag = format!("test{}-{nanos:x}", std::process::id());
    let options = BackendOptions {
        binary,
        replicas: REPLICAS.iter().map(|name| name.to_string()).collect(),
        workload_dir: directory.path().join("workload"),
        run_dir: directory.path().join("run"),
        tag: tag.clone(),
    };
    let backend = timed("create (image and networks)", || DockerBackend::create(options)).expect("create");
    let _teardown = Teardown { backend: &backend };
    let placements = backend.placements().to_vec();
    eprintln!("placements: {placements:#?}");

    let api = Api {
        runtime: tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime"),
        http: reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .expect("client"),
        urls: placements.iter().map(|placement| placement.api_url.clone()).collect(),
    };

    for (index, replica) in REPLICAS.iter().enumerate() {
        backend
            .install_config(replica, &config(&placements, index))
            .expect("install_config");
    }
    timed("start all three", || {
        for replica in REPLICAS {
            backend.start(replica).expect("start");
        }
    });
    let took = api.wait_ready(&[0, 1, 2], "first start");
    eprintln!("start to ready (all three): {took:?}");
    for replica in REPLICAS {
        assert!(backend.is_running(replica), "{replica} runs");
    }
    let first_id = created_node_id(&backend.log_tail("ta-2", 1000));
    assert!(
        first_id.is_some(),
        "ta-2 logged its node id: {}",
        backend.log_tail("ta-2", 50)
    );

    // isolate: the isolated replica goes stale past its lease, the others keep serving.
    timed("isolate ta-0", || backend.isolate("ta-0")).expect("isolate");
    let took = api.wait(
        &[0],
        "/jobs",
        FAULT_SEEN_WITHIN,
        "isolated ta-0 answers 503",
        |answer| *answer == Answer::Status(503),
    );
    eprintln!("isolate to 503: {took:?}");
    let pid_1 = backend.process_id("ta-1").unwrap().expect("ta-1 runs");
    assert!(
        !connects_from(pid_1, &peer_address(&placements[0])),
        "ta-1 reaches isolated ta-0's peer port"
    );
    api.wait(&[1, 2], "/jobs", FAULT_SEEN_WITHIN, "the majority serves", |answer| {
        *answer == Answer::Status(200)
    });
    for _ in 0..10 {
        assert_eq!(api.get(1, "/jobs"), Answer::Status(200));
        assert_eq!(api.get(2, "/jobs"), Answer::Status(200));
        std::thread::sleep(Duration::from_millis(100));
    }
    timed("heal_network", || backend.heal_network()).expect("heal");
    let took = api.wait(&[0, 1, 2], "/jobs", FAULT_SEEN_WITHIN * 2, "healed", |answer| {
        *answer == Answer::Status(200)
    });
    eprintln!("heal to 200: {took:?}");

    // pause: no answer at all; resume: serving again.
    timed("pause ta-1", || backend.pause("ta-1")).expect("pause");
    assert!(backend.is_running("ta-1"), "paused counts as running");
    match api.get(1, "/jobs") {
        Answer::None(error) => assert!(error.contains("TimedOut") || error.contains("timed out"), "{error}"),
        answer => panic!("paused ta-1 answered {answer:?}"),
    }
    timed("resume ta-1", || backend.resume("ta-1")).expect("resume");
    let took = api.wait(&[1], "/jobs", FAULT_SEEN_WITHIN * 2, "resumed", |answer| {
        *answer == Answer::Status(200)
    });
    eprintln!("resume to 200: {took:?}");

    // kill: unreachable; start: ready again on the same data.
    timed("kill ta-1", || backend.kill("ta-1")).expect("kill");
    assert!(!backend.is_running("ta-1"));
    assert!(matches!(api.get(1, "/jobs"), Answer::None(_)), "killed ta-1 answers");
    timed("start ta-1 again", || backend.start("ta-1")).expect("restart");
    let took = api.wait_ready(&[1], "restarted");
    eprintln!("restart to ready: {took:?}");

    // stop, wipe, start: ready again under a new node id, which the leader swapped in.
    // Stopped while paused, the hardest case for a graceful stop.
    backend.pause("ta-2").expect("pause ta-2");
    timed("stop paused ta-2", || backend.stop("ta-2")).expect("stop");
    assert!(!backend.is_running("ta-2"));
    assert!(backend.wipe("ta-0").is_err(), "wiping a running replica is refused");
    timed("wipe ta-2", || backend.wipe("ta-2")).expect("wipe");
    timed("start wiped ta-2", || backend.start("ta-2")).expect("start after wipe");
    let took = api.wait_ready(&[0, 1, 2], "wiped and restarted");
    eprintln!("wiped start to ready: {took:?}");
    let second_id = created_node_id(&backend.log_tail("ta-2", 1000));
    assert!(second_id.is_some(), "the wiped ta-2 created a new identity");
    assert_ne!(first_id, second_id, "the wiped ta-2 kept its node id");
    // During the swap the membership lists the old and the new ta-2; afterwards one each.
    let started = Instant::now();
    loop {
        let status = api.text(2, "/debug/status").unwrap_or_default();
        let names: Option<Vec<String>> = serde_json::from_str::<serde_json::Value>(&status)
            .ok()
            .and_then(|status| {
                status["replicas"].as_array().map(|rows| {
                    rows.iter()
                        .map(|row| row["name"].as_str().unwrap_or("").to_string())
                        .collect()
                })
            });
        if names.as_deref() == Some(&REPLICAS.map(str::to_string)[..]) {
            eprintln!("wiped start to a membership of three: {:?}", started.elapsed());
            break;
        }
        assert!(
            started.elapsed() < READY_WITHIN,
            "ta-2 /debug/status after the wipe: {status}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let started = Instant::now();
    while !REPLICAS[..2]
        .iter()
        .any(|replica| strip_colour(&backend.log_tail(replica, 1000)).contains("replica returned under a new node id"))
    {
        assert!(
            started.elapsed() < READY_WITHIN,
            "no replica swapped in ta-2's new node id"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // cut ta-0 → ta-1: the rule is in ta-1's namespace; ta-0 cannot reach ta-1's peer port,
    // ta-1 still reaches ta-0's; heal removes the rule.
    timed("cut ta-0 -> ta-1", || backend.cut("ta-0", "ta-1")).expect("cut");
    let rules = backend.rules("ta-1").expect("rules");
    let source = format!("-s {}/32", peer_address(&placements[0]).split(':').next().unwrap());
    assert!(
        rules.contains(&source) && rules.contains("--dport 8081 -j DROP"),
        "{rules}"
    );
    let pid_0 = backend.process_id("ta-0").unwrap().expect("ta-0 runs");
    let pid_1 = backend.process_id("ta-1").unwrap().expect("ta-1 runs");
    assert!(
        !connects_from(pid_0, &peer_address(&placements[1])),
        "ta-0 reaches ta-1 across the cut"
    );
    assert!(
        connects_from(pid_1, &peer_address(&placements[0])),
        "ta-1 cannot reach ta-0"
    );
    assert!(
        connects_from(pid_0, &peer_address(&placements[2])),
        "ta-0 cannot reach ta-2"
    );
    timed("heal_network (cut)", || backend.heal_network()).expect("heal cut");
    let rules = backend.rules("ta-1").expect("rules");
    assert!(!rules.contains(&source), "{rules}");
    assert!(
        connects_from(pid_0, &peer_address(&placements[1])),
        "ta-0 still cut from ta-1"
    );
    api.wait_ready(&[0, 1, 2], "after the cut");

    // teardown: nothing of the tag is left, and a second teardown is fine.
    timed("teardown", || backend.teardown()).expect("teardown");
    backend.teardown().expect("a second teardown");
    let prefix = format!("ta-chaos-{tag}");
    let left = engine_objects_named(&prefix);
    assert!(left.is_empty(), "left after teardown: {left:?}");
}

/// A run that never tore down (its backend forgotten, as a crash would) is removed by
/// `remove_leftovers`. Ignored by default: it removes every `ta-chaos-*` object on the engine,
/// those of runs going on at the same time included.
#[test]
#[ignore = "removes every ta-chaos-* object on the engine, concurrent runs' too"]
fn leftovers_of_a_crashed_run_are_removed() {
    let Some(binary) = support::release_binary() else {
        return skip_or_fail("no release target-allocator binary (build it or set TA_CHAOS_BINARY)");
    };
    let directory = tempfile::tempdir().expect("temporary directory");
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().subsec_nanos();
    let tag = format!("crash{}-{nanos:x}", std::process::id());
    let backend = DockerBackend::create(BackendOptions {
        binary,
        replicas: REPLICAS.iter().map(|name| name.to_string()).collect(),
        workload_dir: directory.path().join("workload"),
        run_dir: directory.path().join("run"),
        tag: tag.clone(),
    })
    .expect("create");
    let placements = backend.placements().to_vec();
    backend
        .install_config("ta-0", &config(&placements, 0))
        .expect("install_config");
    backend.start("ta-0").expect("start");
    std::mem::forget(backend);

    let removed = chaos_tests::backend::docker::remove_leftovers().expect("remove_leftovers");
    eprintln!("removed: {removed:?}");
    let prefix = format!("ta-chaos-{tag}");
    assert!(removed.iter().any(|name| name.starts_with(&prefix)), "{removed:?}");
    let left = engine_objects_named("ta-chaos-");
    assert!(left.is_empty(), "left: {left:?}");
}

/// The engine's containers, networks, volumes and images whose names start with `prefix`.
fn engine_objects_named(prefix: &str) -> Vec<String> {
    [
        docker_lines(&["ps", "--all", "--format", "{{.Names}}"]),
        docker_lines(&["network", "ls", "--format", "{{.Name}}"]),
        docker_lines(&["volume", "ls", "--format", "{{.Name}}"]),
        docker_lines(&["image", "ls", "--format", "{{.Repository}}"]),
    ]
    .into_iter()
    .flatten()
    .filter(|name| name.starts_with(prefix))
    .collect()
}
