//! One chaos run, start to verdict: create the backend, configure and start the replicas,
//! warm up (every collector registered and served), then record while the workload churns and
//! the schedule injects faults, observe a quiet end, tear everything down, and judge the
//! history. Writes `history.json`, `report.json`, `report.md` and `timeline.svg`.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;

use rand::Rng;
use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio::sync::watch;

use crate::backend;
use crate::backend::Backend;
use crate::backend::BackendError;
use crate::backend::BackendKind;
use crate::backend::BackendOptions;
use crate::check;
use crate::cluster::Cluster;
use crate::cluster::ClusterError;
use crate::cluster_config::ClusterSettings;
use crate::cluster_config::replica_config;
use crate::faults;
use crate::faults::Fault;
use crate::faults::FaultError;
use crate::history::History;
use crate::history::PollOutcome;
use crate::history::RunParameters;
use crate::poller;
use crate::recorder::Recorder;
use crate::report::Report;
use crate::shutdown::Shutdown;
use crate::shutdown::sleep_or_cancel;
use crate::timeline;
use crate::workload;
use crate::workload::Workload;
use crate::workload::WorkloadSettings;

/// Which schedule to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Profile {
    /// Every fault once, in a seeded order; a few minutes.
    Ci,
    /// Seeded random faults until `--duration` is up.
    Soak,
}

#[derive(Debug, Clone)]
pub struct RunOptions {
    pub backend: BackendKind,
    pub profile: Profile,
    pub seed: u64,
    /// The soak's length; the CI profile ends when its schedule does.
    pub duration: Duration,
    pub replicas: usize,
    /// The release `target-allocator` binary.
    pub binary: PathBuf,
    /// Where the reports go.
    pub out_dir: PathBuf,
    /// Only these faults (the CI profile runs each once); empty for all.
    pub faults: Vec<Fault>,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error("fault: {0}")]
    Fault(#[from] FaultError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The run's outcome: the history, its verdict, and where the files are.
pub struct Outcome {
    pub history: History,
    pub report: Report,
    pub out_dir: PathBuf,
}

/// Settings of the harness itself.
const POLL_INTERVAL: Duration = Duration::from_millis(500);
/// Tolerance on every deadline for scheduling, request latency, and the followers' one-second
/// forwarding of registrations to the leader.
const SLACK: Duration = Duration::from_secs(2);
/// The quiet end: the workload stops, faults are over, the poller keeps watching so every
/// deadline started before it can be judged.
const QUIET_END: Duration = Duration::from_secs(15);
const STARTUP_WITHIN: Duration = Duration::from_secs(90);
const HEALTHY_WITHIN: Duration = Duration::from_secs(45);
/// Lines of each replica's log kept in the output directory when a run fails.
const LOG_LINES_KEPT: usize = 400;

/// Progress lines go to standard error, so standard output stays the report's.
macro_rules! progress {
    ($started:expr, $($argument:tt)*) => {
        eprintln!("[{:>7.1} s] {}", $started.elapsed().as_secs_f64(), format!($($argument)*))
    };
}

/// Run the chaos suite once. `interrupt` stops the schedule early (Ctrl-C); the run still
/// watches its quiet end, tears down and judges what it saw. A run that fails after recording
/// began still writes its history and report (and the replicas' last log lines) before
/// returning the error.
pub async fn run(options: RunOptions, interrupt: Shutdown) -> Result<Outcome, RunError> {
    let wall = Instant::now();
    let settings = ClusterSettings::default();
    let scratch = tempfile::Builder::new()
        .prefix("ta-chaos-")
        .tempdir()
        .map_err(|source| RunError::Io {
            path: std::env::temp_dir(),
            source,
        })?;
    let workload_dir = scratch.path().join("workload");
    let run_dir = scratch.path().join("backend");
    for dir in [&workload_dir, &run_dir, &options.out_dir] {
        std::fs::create_dir_all(dir).map_err(|source| RunError::Io {
            path: dir.clone(),
            source,
        })?;
    }
    let names: Vec<String> = (0..options.replicas).map(|index| format!("ta-{index}")).collect();
    let tag = format!("{:04x}", (u64::from(std::process::id()) ^ options.seed) & 0xffff);
    progress!(
        wall,
        "seed {} · backend {} · profile {:?} · {} replicas · tag {tag}",
        options.seed,
        options.backend,
        options.profile,
        options.replicas
    );
    let (workload, polled) = Workload::new(options.seed, &workload_dir).map_err(|source| RunError::Io {
        path: workload_dir.clone(),
        source,
    })?;

    let backend_options = BackendOptions {
        binary: options.binary.clone(),
        replicas: names.clone(),
        workload_dir,
        run_dir,
        tag,
    };
    let kind = options.backend;
    let backend: Arc<dyn Backend> = Arc::from(
        tokio::task::spawn_blocking(move || backend::create(kind, backend_options))
            .await
            .map_err(|error| BackendError::Other(error.to_string()))??,
    );
    let teardown = Teardown::armed(backend.clone());
    progress!(wall, "backend ready");

    let recorded = observe(&options, &settings, backend.clone(), workload, polled, &interrupt, wall).await;
    if recorded.failure.is_some() {
        // Before teardown, which removes the logs with the containers or namespaces.
        save_log_tails(backend.as_ref(), &names, &options.out_dir);
    }
    progress!(wall, "tearing down");
    teardown.now().await;

    let Some((history, mut notes)) = recorded.history else {
        return Err(recorded.failure.expect("a run without a history failed"));
    };
    if let Some(failure) = &recorded.failure {
        notes.push(format!("the run stopped early: {failure}"));
    }
    let mut report = check(&history);
    report.notes.append(&mut notes);
    write_outputs(&options.out_dir, &history, &report)?;
    progress!(
        wall,
        "{}: {} violations in {} polls; reports in {}",
        if report.passed() { "PASSED" } else { "FAILED" },
        report.violations.len(),
        report.polls,
        options.out_dir.display()
    );
    if let Some(failure) = recorded.failure {
        return Err(failure);
    }
    Ok(Outcome {
        history,
        report,
        out_dir: options.out_dir.clone(),
    })
}

/// Tears the backend down once: explicitly at the end of a run, or when dropped on a path
/// that never got there (a panic, an early error).
struct Teardown(Option<Arc<dyn Backend>>);

impl Teardown {
    fn armed(backend: Arc<dyn Backend>) -> Self {
        Teardown(Some(backend))
    }

    async fn now(mut self) {
        if let Some(backend) = self.0.take() {
            match tokio::task::spawn_blocking(move || backend.teardown()).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => eprintln!("teardown: {error}"),
                Err(error) => eprintln!("teardown panicked: {error}"),
            }
        }
    }
}

impl Drop for Teardown {
    fn drop(&mut self) {
        if let Some(backend) = self.0.take()
            && let Err(error) = backend.teardown()
        {
            eprintln!("teardown: {error}");
        }
    }
}

/// The last lines of every replica's log, printed and saved as `<replica>.log` in `out_dir`.
fn save_log_tails(backend: &dyn Backend, names: &[String], out_dir: &std::path::Path) {
    for name in names {
        let tail = backend.log_tail(name, LOG_LINES_KEPT);
        let path = out_dir.join(format!("{name}.log"));
        if let Err(error) = std::fs::write(&path, &tail) {
            eprintln!("cannot write {}: {error}", path.display());
        }
        let shown: Vec<&str> = tail.lines().rev().take(30).collect();
        eprintln!("----- {name}: last lines (more in {}) -----", path.display());
        for line in shown.into_iter().rev() {
            eprintln!("{line}");
        }
    }
}

/// What `observe` leaves: the history if recording began, and what stopped the run early.
struct Recorded {
    history: Option<(History, Vec<String>)>,
    failure: Option<RunError>,
}

async fn observe(
    options: &RunOptions,
    settings: &ClusterSettings,
    backend: Arc<dyn Backend>,
    workload: Workload,
    polled: watch::Receiver<BTreeSet<String>>,
    interrupt: &Shutdown,
    wall: Instant,
) -> Recorded {
    let client = poller::http_client();
    let cluster = Cluster::new(backend, client.clone());
    if let Err(failure) = start_and_warm_up(settings, &cluster, &client, &polled, wall).await {
        return Recorded {
            history: None,
            failure: Some(failure),
        };
    }

    let parameters = RunParameters {
        grace_period: settings.grace_period,
        lease: settings.lease,
        coalesce_window: settings.coalesce_window,
        poll_interval: POLL_INTERVAL,
        departure_lag: settings.registration_ttl,
        slack: SLACK,
        ..RunParameters::default()
    };
    let recorder = Arc::new(Recorder::start(History::new(options.seed, cluster.names(), parameters)));
    let stop_polling = Shutdown::new();
    let stop_workload = Shutdown::new();
    let mut pollers = Vec::new();
    for placement in cluster.placements() {
        pollers.push(tokio::spawn(poller::run(
            client.clone(),
            placement.clone(),
            settings.static_collectors.clone(),
            polled.clone(),
            POLL_INTERVAL,
            recorder.clone(),
            stop_polling.clone(),
        )));
    }
    let workload_settings = WorkloadSettings {
        target_change_every: (Duration::from_secs(2), Duration::from_secs(6)),
        collector_change_every: (Duration::from_secs(8), Duration::from_secs(16)),
        // Noticed after about the ttl (less up to 1.5 s of forwarding), back about grace/2
        // later: the grace period itself is what keeps its targets in place.
        short_absence: (settings.registration_ttl + settings.grace_period / 2).saturating_sub(Duration::from_secs(1)),
        long_absence: settings.registration_ttl + settings.grace_period + Duration::from_secs(5),
    };
    let workload_task = tokio::spawn(workload::drive(
        workload,
        workload_settings,
        recorder.clone(),
        stop_workload.clone(),
    ));

    let schedule_result = run_schedule(options, settings.lease, &cluster, &recorder, interrupt, wall).await;

    stop_workload.cancel();
    let _ = workload_task.await;
    if schedule_result.is_ok() {
        // Not cut short by an interrupt: without it every deadline still running is unjudged.
        progress!(wall, "schedule done; watching a quiet {} s", QUIET_END.as_secs());
        tokio::time::sleep(QUIET_END).await;
    }
    stop_polling.cancel();
    for poller in pollers {
        let _ = poller.await;
    }
    Recorded {
        history: Some(recorder.finish()),
        failure: schedule_result.err(),
    }
}

/// Configure and start every replica, then wait for the state before the first fault.
async fn start_and_warm_up(
    settings: &ClusterSettings,
    cluster: &Cluster,
    client: &reqwest::Client,
    polled: &watch::Receiver<BTreeSet<String>>,
    wall: Instant,
) -> Result<(), RunError> {
    for (index, placement) in cluster.placements().iter().enumerate() {
        let config = replica_config(settings, cluster.placements(), index);
        let name = placement.name.clone();
        cluster
            .act(move |backend| backend.install_config(&name, &config))
            .await?;
    }
    for name in cluster.names() {
        cluster.act(move |backend| backend.start(&name)).await?;
    }
    let leader = cluster.wait_healthy(STARTUP_WITHIN).await?;
    progress!(wall, "cluster ready, leader {leader}");
    warm_up(cluster, client, settings, polled).await?;
    progress!(wall, "every collector registered and served; recording starts");
    Ok(())
}

/// Poll (unrecorded) as every collector until each replica serves every target, each
/// collector holds some, and replicas agree: the state before the first fault.
async fn warm_up(
    cluster: &Cluster,
    client: &reqwest::Client,
    settings: &ClusterSettings,
    polled: &watch::Receiver<BTreeSet<String>>,
) -> Result<(), RunError> {
    let mut collectors = polled.borrow().clone();
    collectors.extend(settings.static_collectors.iter().cloned());
    let deadline = tokio::time::Instant::now() + STARTUP_WITHIN;
    let mut stable_since: Option<tokio::time::Instant> = None;
    loop {
        let mut views = Vec::new();
        for placement in cluster.placements() {
            if let Ok((_, PollOutcome::Served(view))) =
                poller::poll(client, &placement.api_url, &collectors, Duration::default).await
            {
                views.push(view);
            }
        }
        let settled = views.len() == cluster.placements().len()
            && views.windows(2).all(|pair| pair[0].same_assignment(&pair[1]))
            && collectors.iter().all(|collector| {
                views[0]
                    .assignment
                    .get(collector)
                    .is_some_and(|targets| !targets.is_empty())
            });
        let now = tokio::time::Instant::now();
        if settled {
            // Settled for a few polls: no move is still coming from the registrations.
            let since = *stable_since.get_or_insert(now);
            if now - since >= settings.coalesce_window * 3 {
                return Ok(());
            }
        } else {
            stable_since = None;
        }
        if now >= deadline {
            return Err(ClusterError::Timeout {
                what: "every collector registered and served the same way by every replica".to_string(),
                within: STARTUP_WITHIN,
            }
            .into());
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

async fn run_schedule(
    options: &RunOptions,
    lease: Duration,
    cluster: &Cluster,
    recorder: &Recorder,
    interrupt: &Shutdown,
    wall: Instant,
) -> Result<(), RunError> {
    // The schedule's own stream: the workload draws from another.
    let mut rng = StdRng::seed_from_u64(options.seed);
    let catalogue: Vec<Fault> = if options.faults.is_empty() {
        Fault::ALL.to_vec()
    } else {
        options.faults.clone()
    };
    let planned: Option<Vec<Fault>> = match options.profile {
        Profile::Ci => Some(
            faults::every_fault_once(&mut rng)
                .into_iter()
                .filter(|fault| catalogue.contains(fault))
                .collect(),
        ),
        Profile::Soak => None,
    };
    let total = planned.as_ref().map(Vec::len);
    let soak_ends = recorder.now() + options.duration;
    let mut number = 0;
    loop {
        let fault = match &planned {
            Some(planned) => match planned.get(number) {
                Some(fault) => *fault,
                None => return Ok(()),
            },
            None if recorder.now() >= soak_ends => return Ok(()),
            None => loop {
                let fault = faults::any_fault(&mut rng);
                if catalogue.contains(&fault) {
                    break fault;
                }
            },
        };
        number += 1;
        // Let the workload move things between faults, as it does in production.
        let gap = Duration::from_millis(rng.gen_range(2_000..6_000));
        if !sleep_or_cancel(gap, interrupt).await {
            return Ok(());
        }
        // Every fault heals what it did, so a replica not running now died on its own.
        for name in cluster.names() {
            let backend = cluster.backend().clone();
            let probed = name.clone();
            let running = tokio::task::spawn_blocking(move || backend.is_running(&probed))
                .await
                .unwrap_or(false);
            if !running {
                progress!(wall, "{name} is not running: it exited on its own");
                recorder.note(format!(
                    "{name} was found not running at {:.1} s: it exited on its own (see its log)",
                    recorder.now().as_secs_f64()
                ));
            }
        }
        let injected = faults::inject(fault, cluster, recorder, &mut rng, lease).await?;
        let healed_at = Instant::now();
        let leader = cluster.wait_healthy(HEALTHY_WITHIN).await;
        let counter = match total {
            Some(total) => format!("{number}/{total}"),
            None => format!("{number}"),
        };
        match leader {
            Ok(leader) => progress!(
                wall,
                "fault {counter}: {injected}; all replicas ready {:.1} s after the heal, leader {leader}",
                healed_at.elapsed().as_secs_f64()
            ),
            Err(error) => {
                progress!(wall, "fault {counter}: {injected}; NOT healthy after the heal: {error}");
                recorder.note(format!("after {injected}: {error}"));
            }
        }
    }
}

fn write_outputs(out_dir: &std::path::Path, history: &History, report: &Report) -> Result<(), RunError> {
    let write = |name: &str, text: String| {
        let path = out_dir.join(name);
        std::fs::write(&path, text).map_err(|source| RunError::Io { path, source })
    };
    write(
        "history.json",
        serde_json::to_string(history).expect("a history always serialises"),
    )?;
    write("report.json", report.to_json().expect("a report always serialises"))?;
    write("report.md", report.to_markdown())?;
    write("timeline.svg", timeline::render_svg(history, report))?;
    Ok(())
}
