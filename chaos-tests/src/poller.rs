//! The poller: asks every replica, continuously, what collectors ask it, and records what each
//! replica served as one [`PollOutcome`] per poll.
//!
//! One poll of one replica is `/jobs`, `/scrape_configs`, each job's `/jobs/{job}/targets`
//! (every collector the replica knows, including one gone but within its grace period) and,
//! for each collector being played, each job's `…/targets?collector_id=…` — the request that
//! registers it. A collector's targets in the view are the union of both answers, so a target
//! the two disagree on shows up under two collectors (I1).
//!
//! All responses of a poll must carry the same `X-Allocator-Revision`; a poll that straddles
//! a change is asked again, and dropped (with a note) if it keeps straddling, so no view is
//! ever a mixture of two revisions.

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use reqwest::StatusCode;
use serde_json::Value;
use tokio::sync::watch;

use crate::backend::Placement;
use crate::history::PollOutcome;
use crate::history::ServedView;
use crate::history::TargetKey;
use crate::recorder::Recorder;
use crate::shutdown::Shutdown;
use crate::shutdown::sleep_or_cancel;

/// Each request's limit: a paused replica must not hold the poller longer than this.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(1);
/// Attempts at a poll whose responses straddle a revision change.
const ATTEMPTS: usize = 3;

/// The HTTP client every poller and probe shares.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .connect_timeout(REQUEST_TIMEOUT)
        // The replicas' addresses are private to this machine; a proxy from the environment
        // would only add a hop that can fail on its own.
        .no_proxy()
        // A poll sends about a dozen requests at once; keep their connections.
        .pool_max_idle_per_host(32)
        .build()
        .expect("a static client configuration")
}

/// Poll `placement` every `interval` until `shutdown`, as the collectors in `polled` plus the
/// static ones, and record each outcome.
pub async fn run(
    client: reqwest::Client,
    placement: Placement,
    static_collectors: Vec<String>,
    polled: watch::Receiver<BTreeSet<String>>,
    interval: Duration,
    recorder: Arc<Recorder>,
    shutdown: Shutdown,
) {
    let mut next = tokio::time::Instant::now();
    loop {
        let mut collectors: BTreeSet<String> = polled.borrow().clone();
        collectors.extend(static_collectors.iter().cloned());
        match poll(&client, &placement.api_url, &collectors, || recorder.now()).await {
            Ok((at, outcome)) => recorder.poll(&placement.name, at, outcome),
            Err(Straddled) => recorder.note(format!(
                "a poll of {} at {:.1} s was dropped: its responses kept carrying different revisions",
                placement.name,
                recorder.now().as_secs_f64()
            )),
        }
        next += interval;
        let now = tokio::time::Instant::now();
        if next < now {
            // A slow poll (a paused replica) does not make the next ones bunch up.
            next = now;
        }
        if !sleep_or_cancel(next - now, &shutdown).await {
            return;
        }
    }
}

/// A poll whose responses kept carrying different revisions.
#[derive(Debug)]
pub struct Straddled;

/// One poll of the replica at `api_url`, retried while it straddles a revision change, with
/// the time (by `now`) the attempt that produced it began.
pub async fn poll(
    client: &reqwest::Client,
    api_url: &str,
    collectors: &BTreeSet<String>,
    now: impl Fn() -> Duration,
) -> Result<(Duration, PollOutcome), Straddled> {
    for _ in 0..ATTEMPTS {
        let at = now();
        match poll_once(client, api_url, collectors).await {
            Attempt::Done(outcome) => return Ok((at, outcome)),
            Attempt::Straddled => continue,
        }
    }
    Err(Straddled)
}

enum Attempt {
    Done(PollOutcome),
    Straddled,
}

/// One answer: status, revision, leader headers, body.
struct Answer {
    status: StatusCode,
    revision: Option<u64>,
    leader: Option<String>,
    leader_term: Option<u64>,
    body: Vec<u8>,
}

enum Failure {
    Unreachable,
    Unavailable(u16),
}

async fn get(client: &reqwest::Client, url: String) -> Result<Answer, Failure> {
    let response = client.get(&url).send().await.map_err(|_| Failure::Unreachable)?;
    let status = response.status();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::to_string)
    };
    let revision = header("x-allocator-revision").and_then(|value| value.parse().ok());
    let leader = header("x-allocator-leader").filter(|value| !value.is_empty());
    let leader_term = header("x-allocator-term").and_then(|value| value.parse().ok());
    let body = response.bytes().await.map_err(|_| Failure::Unreachable)?.to_vec();
    if status != StatusCode::OK {
        return Err(Failure::Unavailable(status.as_u16()));
    }
    Ok(Answer {
        status,
        revision,
        leader,
        leader_term,
        body,
    })
}

async fn poll_once(client: &reqwest::Client, api_url: &str, collectors: &BTreeSet<String>) -> Attempt {
    let fail = |failure: Failure| {
        Attempt::Done(match failure {
            Failure::Unreachable => PollOutcome::Unreachable,
            Failure::Unavailable(status) => PollOutcome::Unavailable { status },
        })
    };
    let jobs_answer = match get(client, format!("{api_url}/jobs")).await {
        Ok(answer) => answer,
        Err(failure) => return fail(failure),
    };
    let Some(revision) = jobs_answer.revision else {
        return fail(Failure::Unavailable(jobs_answer.status.as_u16()));
    };
    // `/jobs` maps each job to its `_link`, the path collectors follow.
    let links: Vec<(String, String)> = match serde_json::from_slice::<BTreeMap<String, Value>>(&jobs_answer.body) {
        Ok(jobs) => jobs
            .into_iter()
            .filter_map(|(job, entry)| Some((job, entry.get("_link")?.as_str()?.to_string())))
            .collect(),
        Err(_) => return fail(Failure::Unavailable(jobs_answer.status.as_u16())),
    };

    let mut requests = vec![format!("{api_url}/scrape_configs")];
    for (_, link) in &links {
        requests.push(format!("{api_url}{link}"));
    }
    for (_, link) in &links {
        for collector in collectors {
            requests.push(format!("{api_url}{link}?collector_id={}", query_escape(collector)));
        }
    }
    let answers = join_all(requests.into_iter().map(|url| get(client, url))).await;
    let mut bodies = Vec::with_capacity(answers.len());
    for answer in answers {
        match answer {
            Ok(answer) if answer.revision == Some(revision) => bodies.push(answer.body),
            Ok(_) => return Attempt::Straddled,
            Err(failure) => return fail(failure),
        }
    }

    let mut assignment: BTreeMap<String, BTreeSet<TargetKey>> = BTreeMap::new();
    let mut bodies = bodies.into_iter().skip(1); // /scrape_configs: only its status counts.
    for (job, _) in &links {
        let body = bodies.next().expect("one body per request");
        let Ok(by_collector) = serde_json::from_slice::<BTreeMap<String, Value>>(&body) else {
            return fail(Failure::Unavailable(200));
        };
        for (collector, entry) in by_collector {
            let targets = entry.get("targets").map(addresses).unwrap_or_default();
            assignment
                .entry(collector)
                .or_default()
                .extend(targets.into_iter().map(|address| TargetKey::new(job.clone(), address)));
        }
    }
    for (job, _) in &links {
        for collector in collectors {
            let body = bodies.next().expect("one body per request");
            let Ok(groups) = serde_json::from_slice::<Value>(&body) else {
                return fail(Failure::Unavailable(200));
            };
            assignment.entry(collector.clone()).or_default().extend(
                addresses(&groups)
                    .into_iter()
                    .map(|address| TargetKey::new(job.clone(), address)),
            );
        }
    }
    Attempt::Done(PollOutcome::Served(ServedView {
        revision,
        leader: jobs_answer.leader,
        leader_term: jobs_answer.leader_term,
        assignment,
    }))
}

/// The addresses of http_sd target groups: `[{"targets": ["host:port", …], "labels": {…}}, …]`.
fn addresses(groups: &Value) -> Vec<String> {
    groups
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|group| group.get("targets")?.as_array())
        .flatten()
        .filter_map(|address| address.as_str().map(str::to_string))
        .collect()
}

/// Percent-encode a query value (collector ids are plain here, but a pod name may not be).
fn query_escape(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            escaped.push(byte as char);
        } else {
            escaped.push_str(&format!("%{byte:02X}"));
        }
    }
    escaped
}
