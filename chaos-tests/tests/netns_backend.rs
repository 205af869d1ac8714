//! The netns backend against real namespaces, a real bridge, real iptables and three real
//! `target-allocator` processes: every fault the harness uses, checked through the API the
//! way the harness sees it. Needs root and the release binary; skips with a message
//! otherwise, unless `TA_REQUIRE_NETNS=1`, when it fails instead.

mod support;

use std::path::PathBuf;
use std::time::Duration;
use std::time::Instant;

use chaos_tests::backend::Backend;
use chaos_tests::backend::BackendError;
use chaos_tests::backend::BackendOptions;
use chaos_tests::backend::Placement;
use chaos_tests::backend::netns::NetnsBackend;
use chaos_tests::cluster_config::ClusterSettings;

const REPLICAS: [&str; 3] = ["ta-0", "ta-1", "ta-2"];
const READY_WITHIN: Duration = Duration::from_secs(60);
/// How long a fault or its healing may take to show on the API: a lease (1.5 s) and an
/// election (≤ 0.9 s) with room for a slow machine.
const FAULT_WITHIN: Duration = Duration::from_secs(10);

/// Skip (or fail, when the environment requires the backend) with `reason`.
fn skip(reason: &str) {
    if std::env::var("TA_REQUIRE_NETNS").as_deref() == Ok("1") {
        panic!("TA_REQUIRE_NETNS=1 but the netns backend cannot run: {reason}");
    }
    eprintln!("skipping the netns backend test: {reason}");
}

/// The backend, torn down however the test ends, with every replica's log printed if it
/// ends in a panic.
struct Guard(NetnsBackend);

impl Drop for Guard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for replica in REPLICAS {
                eprintln!("--- {replica} log tail ---\n{}", self.0.log_tail(replica, 40));
            }
        }
        if let Err(error) = self.0.teardown() {
            eprintln!("teardown failed: {error}");
        }
    }
}

/// The harness's own replica config (the workload's `file_sd` file may be absent: no targets).
fn config(placements: &[Placement], index: usize) -> String {
    chaos_tests::cluster_config::replica_config(&ClusterSettings::default(), placements, index)
}

struct Api {
    http: reqwest::Client,
    runtime: tokio::runtime::Runtime,
    urls: Vec<String>,
}

impl Api {
    /// GET `route` of replica `index` within `timeout`: its status and body.
    fn get(&self, index: usize, route: &str, timeout: Duration) -> Result<(u16, String), String> {
        let url = format!("{}{route}", self.urls[index]);
        self.runtime.block_on(async {
            let response = self.http.get(&url).timeout(timeout).send().await.map_err(|error| {
                // reqwest's message leaves out its cause; the pause check needs to see it.
                let kind = if error.is_timeout() { "timeout: " } else { "" };
                format!("GET {url}: {kind}{error}")
            })?;
            let status = response.status().as_u16();
            let body = response
                .text()
                .await
                .map_err(|error| format!("GET {url}: body: {error}"))?;
            Ok((status, body))
        })
    }

    fn status_of(&self, index: usize, route: &str) -> Result<u16, String> {
        self.get(index, route, Duration::from_secs(2)).map(|(status, _)| status)
    }

    /// Wait until `probe` holds, at most `within`; how long it took.
    fn eventually(&self, what: &str, within: Duration, mut probe: impl FnMut() -> Result<(), String>) -> Duration {
        let started = Instant::now();
        loop {
            let last = match probe() {
                Ok(()) => return started.elapsed(),
                Err(seen) => seen,
            };
            assert!(
                started.elapsed() < within,
                "timed out after {within:?} waiting for {what}; last seen: {last}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn wait_ready(&self, among: &[usize]) -> Duration {
        self.eventually(&format!("/readyz 200 on {among:?}"), READY_WITHIN, || {
            for &index in among {
                match self.status_of(index, "/readyz")? {
                    200 => {}
                    other => return Err(format!("replica {index}: /readyz {other}")),
                }
            }
            Ok(())
        })
    }

    /// The replica `index` names as leader in its `/debug/status`.
    fn leader_seen_by(&self, index: usize) -> Result<String, String> {
        let (_, body) = self.get(index, "/debug/status", Duration::from_secs(2))?;
        let status: serde_json::Value = serde_json::from_str(&body).map_err(|error| format!("{error}: {body}"))?;
        status["replicas"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|row| row["role"] == "Leader")
            .and_then(|row| row["name"].as_str())
            .map(str::to_string)
            .ok_or_else(|| format!("no leader in {body}"))
    }
}

fn run_command(program: &str, args: &[&str]) -> (bool, String) {
    let output = std::process::Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|error| panic!("run {program}: {error}"));
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr),
    )
}

#[test]
fn every_fault_acts_on_real_namespaces_and_processes() {
    let Some(binary) = support::release_binary() else {
        return skip("no release binary (cargo build --release --bin target-allocator, or set TA_CHAOS_BINARY)");
    };
    let run_dir = tempfile::Builder::new()
        .prefix("ta-netns-run-")
        .tempdir()
        .expect("run dir");
    let workload_dir = tempfile::Builder::new()
        .prefix("ta-netns-workload-")
        .tempdir()
        .expect("workload dir");
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.subsec_nanos())
        .unwrap_or(0);
    let tag = format!("t{:06x}", (std::process::id() ^ nanos) & 0xff_ffff);
    let options = BackendOptions {
        binary: binary.clone(),
        replicas: REPLICAS.iter().map(|name| name.to_string()).collect(),
        workload_dir: workload_dir.path().to_path_buf(),
        run_dir: run_dir.path().to_path_buf(),
        tag,
    };
    let created = Instant::now();
    let backend = match NetnsBackend::create(options) {
        Ok(backend) => backend,
        Err(BackendError::Unusable { reason, .. }) => return skip(&reason),
        Err(error) => panic!("create: {error}"),
    };
    eprintln!("create took {:?}", created.elapsed());
    let backend = Guard(backend);
    let netns = &backend.0;
    let placements = netns.placements().to_vec();
    assert_eq!(placements.len(), 3);
    let api = Api {
        http: reqwest::Client::builder().no_proxy().build().expect("HTTP client"),
        runtime: tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime"),
        urls: placements.iter().map(|placement| placement.api_url.clone()).collect(),
    };
    for (i, replica) in REPLICAS.iter().enumerate() {
        netns
            .install_config(replica, &config(&placements, i))
            .expect("install config");
    }

    let started = Instant::now();
    for replica in REPLICAS {
        netns.start(replica).expect("start");
    }
    api.wait_ready(&[0, 1, 2]);
    eprintln!("start to ready (all three) took {:?}", started.elapsed());

    // The pid the backend signals is the allocator itself, not an `ip netns exec` wrapper.
    for replica in REPLICAS {
        let pid = netns.process_id(replica).expect("running");
        let exe = std::fs::read_link(format!("/proc/{pid}/exe")).expect("exe of the pid");
        assert_eq!(exe, binary.canonicalize().expect("binary path"), "{replica}");
    }

    // isolate: the isolated replica goes stale while the other two keep serving; it stays
    // reachable from the host, so it answers 503 rather than not at all.
    let leader = api.leader_seen_by(0).expect("a leader");
    let isolated = REPLICAS.iter().position(|r| *r == leader).expect("leader is a replica");
    let others: Vec<usize> = (0..3).filter(|&i| i != isolated).collect();
    netns.isolate(&leader).expect("isolate");
    let took = api.eventually(&format!("{leader} isolated: 503, the others 200"), FAULT_WITHIN, || {
        match api.status_of(isolated, "/jobs")? {
            503 => {}
            other => return Err(format!("{leader} /jobs {other}")),
        }
        for &i in &others {
            match api.status_of(i, "/jobs")? {
                200 => {}
                other => return Err(format!("{} /jobs {other}", REPLICAS[i])),
            }
        }
        Ok(())
    });
    eprintln!("isolate of the leader {leader}: stale after {took:?}");
    netns.heal_network().expect("heal");
    let took = api.eventually("healed: 200 everywhere", FAULT_WITHIN, || {
        for (i, replica) in REPLICAS.iter().enumerate() {
            match api.status_of(i, "/jobs")? {
                200 => {}
                other => return Err(format!("{replica} /jobs {other}")),
            }
        }
        Ok(())
    });
    eprintln!("heal: serving again after {took:?}");

    // pause: no answer at all; resume: answers again.
    netns.pause("ta-1").expect("pause");
    assert!(netns.is_running("ta-1"), "paused counts as running");
    let answer = api.get(1, "/readyz", Duration::from_secs(1));
    assert!(
        matches!(&answer, Err(e) if e.contains("timeout: ")),
        "a paused replica answered: {answer:?}"
    );
    netns.resume("ta-1").expect("resume");
    api.eventually("ta-1 answers after resume", FAULT_WITHIN, || {
        match api.status_of(1, "/readyz")? {
            200 => Ok(()),
            other => Err(format!("/readyz {other}")),
        }
    });

    // kill: gone at once; start: ready again on its data.
    netns.kill("ta-2").expect("kill");
    assert!(!netns.is_running("ta-2"));
    assert!(api.status_of(2, "/readyz").is_err(), "a killed replica answered");
    let restarted = Instant::now();
    netns.start("ta-2").expect("restart");
    api.wait_ready(&[2]);
    eprintln!("kill, start: ready after {:?}", restarted.elapsed());

    // stop, wipe, start: rejoins with an empty data directory.
    let stopping = Instant::now();
    netns.stop("ta-0").expect("stop");
    eprintln!("stop (SIGTERM to exit) took {:?}", stopping.elapsed());
    assert!(!netns.is_running("ta-0"));
    assert!(netns.wipe("ta-1").is_err(), "wipe of a running replica must be refused");
    netns.wipe("ta-0").expect("wipe");
    assert!(
        !PathBuf::from(&placements[0].data_dir).exists(),
        "data directory still there"
    );
    let restarted = Instant::now();
    netns.start("ta-0").expect("start after wipe");
    api.wait_ready(&[0]);
    eprintln!("stop, wipe, start: ready after {:?}", restarted.elapsed());
    api.eventually("ta-0 a member again in /debug/status", FAULT_WITHIN, || {
        let (_, body) = api.get(0, "/debug/status", Duration::from_secs(2))?;
        let status: serde_json::Value = serde_json::from_str(&body).map_err(|error| format!("{error}: {body}"))?;
        let rows = status["replicas"].as_array().cloned().unwrap_or_default();
        let healthy = rows
            .iter()
            .filter(|row| row["error"].is_null() && (row["role"] == "Leader" || row["role"] == "Follower"))
            .count();
        let own = rows.iter().find(|row| row["name"] == "ta-0");
        match own {
            Some(row) if healthy == 3 && row["stale"] == false => Ok(()),
            _ => Err(body),
        }
    });

    // cut: one rule in the target's namespace, gone after heal.
    netns.cut("ta-0", "ta-1").expect("cut");
    let namespace = netns.namespace("ta-1").expect("namespace").to_string();
    let from_ip = placements[0]
        .listen_addr
        .split(':')
        .next()
        .expect("address")
        .to_string();
    let rule = format!("-A INPUT -s {from_ip}/32 -p tcp -m tcp --dport 8081 -j DROP");
    let (ok, rules) = run_command("ip", &["netns", "exec", &namespace, "iptables", "-S"]);
    assert!(ok && rules.contains(&rule), "no `{rule}` in:\n{rules}");
    netns.heal_network().expect("heal");
    let (ok, rules) = run_command("ip", &["netns", "exec", &namespace, "iptables", "-S"]);
    assert!(ok && !rules.contains("DROP"), "rules left after heal:\n{rules}");

    // teardown: nothing of the run is left, and a second teardown is harmless.
    let bridge = netns.bridge().to_string();
    netns.teardown().expect("teardown");
    netns.teardown().expect("teardown again");
    for replica in REPLICAS {
        assert!(!netns.is_running(replica));
    }
    let (_, namespaces) = run_command("ip", &["netns", "list"]);
    let prefix = format!("ta-chaos-{}-", bridge.trim_start_matches("tac-"));
    assert!(!namespaces.contains(&prefix), "namespaces left:\n{namespaces}");
    let (bridge_left, _) = run_command("ip", &["link", "show", "dev", &bridge]);
    assert!(!bridge_left, "bridge {bridge} left");
    let (_, forward) = run_command("iptables", &["-S", "FORWARD"]);
    assert!(!forward.contains(&bridge), "host rule left:\n{forward}");
}
