//! The upstream-compatible HTTP API, served by every replica from its own read model
//! (docs/compatibility.md, "The HTTP API"): `/scrape_configs`, `/jobs`, `/jobs/{job}/targets`,
//! `/livez`, `/readyz`, `/metrics`, the HTML pages, and `/debug/status` (ours, JSON, for
//! `target-allocator status`).
//!
//! Beyond upstream: `X-Allocator-Revision`, `X-Allocator-Replica`, `X-Allocator-Leader` and
//! `X-Allocator-Term` (the Raft term of the leader named, so a new term of the same leader is
//! visible from outside) on every response, an `ETag` honoured by `If-None-Match`, gzip when asked, and
//! `?consistency=linearizable`. A replica with nothing trustworthy to serve (never
//! configured, or stale past its lease, I6) answers 503 with a body that is not a YAML
//! mapping, so a collector keeps its last good config (§11.3). `/readyz` is also 503 while
//! collector pods (when collectors come from Kubernetes) have not been listed once.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;

use arc_swap::ArcSwap;
use axum::Router;
use axum::body::Body as HttpBody;
use axum::extract::MatchedPath;
use axum::extract::RawPathParams;
use axum::extract::RawQuery;
use axum::extract::Request;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::http::HeaderValue;
use axum::http::StatusCode;
use axum::http::header;
use axum::middleware::Next;
use axum::response::IntoResponse;
use axum::response::Response;
use axum::routing::get;
use serde::Serialize;
use ta_raft::Replica;
use tokio::sync::watch;

use crate::discovery::manager::Discovered;
use crate::kubernetes::collectors::CollectorDiscovery;
use crate::metrics::Metrics;
use crate::read_model::Body;
use crate::read_model::ReadModel;
use crate::registration::PollLog;
use crate::url_escape::query_unescape;
use crate::url_escape::query_value;

pub const REVISION_HEADER: &str = "x-allocator-revision";
pub const REPLICA_HEADER: &str = "x-allocator-replica";
pub const LEADER_HEADER: &str = "x-allocator-leader";
pub const TERM_HEADER: &str = "x-allocator-term";

/// How long `?consistency=linearizable` waits for the read model to catch up.
const LINEARIZABLE_WAIT: Duration = Duration::from_secs(5);

/// What the handlers share.
pub struct ApiContext {
    pub replica: Arc<Replica>,
    pub models: watch::Receiver<Arc<ReadModel>>,
    /// The leader's name and term, kept current by [`track_leader`].
    pub leader: Arc<ArcSwap<LeaderHeaders>>,
    pub replica_name: HeaderValue,
    pub allow_insecure_auth_secrets: bool,
    /// Set when `collectors.register_on_poll` is on.
    pub polls: Option<Arc<PollLog>>,
    /// Set when collectors come from Kubernetes: the replica is not ready before their pods
    /// have been listed.
    pub collector_discovery: Option<CollectorDiscovery>,
    pub metrics: Arc<Metrics>,
    pub strategy: &'static str,
    /// This replica's discovery view, for `/debug/status`.
    pub discovery: watch::Receiver<Discovered>,
    /// What the limits refuse, as the leader loop last saw it, for `/debug/status`.
    pub refusals: Arc<ArcSwap<Refusals>>,
}

/// What `limits:` refuses right now (docs/compatibility.md); empty on a follower.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Refusals {
    /// `(desired targets, limits.max_targets)` while discovery wants more targets than the
    /// limit: no target change is planned and the last good assignment is served.
    pub max_targets: Option<(usize, usize)>,
    /// Per job, discovered targets refused by `max_label_bytes` or `max_labels_per_target`.
    pub targets_by_job: BTreeMap<String, usize>,
}

type Api = State<Arc<ApiContext>>;

/// Every error a handler can answer with, mapped to a response in one place.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Nothing trustworthy to serve (I6): 503, body not a YAML mapping.
    #[error("{0}")]
    NotServing(String),
    /// Upstream answers an undecodable job path with 500 and the error as a JSON string.
    #[error("{0}")]
    BadJobEscape(String),
    #[error("{0}")]
    BadRequest(String),
    /// A bug (a rendering task that panicked): 500 with the reason.
    #[error("{0}")]
    Internal(String),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            ApiError::NotServing(reason) => {
                // A JSON array: a collector's YAML parser cannot read it as its job map, and
                // an http_sd client rejects the status anyway.
                let body = serde_json::to_vec(&["not serving", reason.as_str()]).unwrap_or_default();
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    [(header::CONTENT_TYPE, "application/json"), (header::RETRY_AFTER, "1")],
                    body,
                )
                    .into_response()
            }
            ApiError::BadJobEscape(message) => {
                let mut body = serde_json::to_vec(&message).unwrap_or_default();
                body.push(b'\n');
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    [(header::CONTENT_TYPE, "application/json")],
                    body,
                )
                    .into_response()
            }
            ApiError::BadRequest(message) => (StatusCode::BAD_REQUEST, message).into_response(),
            ApiError::Internal(message) => (StatusCode::INTERNAL_SERVER_ERROR, message).into_response(),
        }
    }
}

/// The router, with the header and timing middleware.
pub fn router(context: Arc<ApiContext>) -> Router {
    Router::new()
        .route("/scrape_configs", get(scrape_configs))
        .route("/jobs", get(jobs))
        .route("/jobs/", get(|| async { redirect("/jobs") }))
        .route("/jobs/{job}/targets", get(job_targets))
        .route("/livez", get(|| async { StatusCode::OK }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/debug/status", get(status))
        .route("/", get(html_page))
        .route("/debug/{*page}", get(html_page))
        .fallback(not_found)
        .method_not_allowed_fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&context),
            common_headers,
        ))
        .with_state(context)
}

fn redirect(to: &'static str) -> Response {
    (StatusCode::MOVED_PERMANENTLY, [(header::LOCATION, to)]).into_response()
}

async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "text/plain")],
        "404 page not found",
    )
        .into_response()
}

/// Replica, leader and (if the handler did not set it) revision headers, timing, and 404 for
/// every method but GET.
async fn common_headers(State(context): Api, request: Request, next: Next) -> Response {
    let started = Instant::now();
    // Upstream routes GET only: other methods, HEAD included (which axum would answer on a
    // GET route), are unmatched.
    let get = request.method() == axum::http::Method::GET;
    let route = request.extensions().get::<MatchedPath>().filter(|_| get).cloned();
    let label = route.as_ref().map_or("", |path| route_label(path.as_str()));
    let mut response = if get {
        next.run(request).await
    } else {
        not_found().await
    };
    let headers = response.headers_mut();
    if !headers.contains_key(REVISION_HEADER) {
        let revision = context.models.borrow().revision;
        headers.insert(REVISION_HEADER, HeaderValue::from(revision));
    }
    headers.insert(REPLICA_HEADER, context.replica_name.clone());
    let leader = context.leader.load();
    headers.insert(LEADER_HEADER, leader.name.clone());
    headers.insert(TERM_HEADER, leader.term.clone());
    let elapsed = started.elapsed().as_secs_f64();
    context
        .metrics
        .http_duration
        .with_label_values(&[label])
        .observe(elapsed);
    context
        .metrics
        .http_request_duration
        .with_label_values(&[label])
        .observe(elapsed);
    response
}

/// The `path` label: upstream's gin route templates for our parameterised routes.
fn route_label(matched: &str) -> &str {
    match matched {
        "/jobs/{job}/targets" => "/jobs/:job_id/targets",
        "/debug/{*page}" => "/debug/*page",
        other => other,
    }
}

/// The model to answer from, or why there is none (I6).
async fn serving_model(context: &ApiContext, raw_query: Option<&str>) -> Result<Arc<ReadModel>, ApiError> {
    // Most requests carry only collector_id: skip decoding the query unless it may name
    // `consistency` (literally, or percent-encoded).
    let asks_consistency = raw_query.is_some_and(|query| query.contains("consistency") || query.contains('%'));
    if asks_consistency && query_value(raw_query, "consistency").as_deref() == Some("linearizable") {
        let table = context
            .replica
            .linearizable_table()
            .await
            .map_err(|e| ApiError::NotServing(format!("linearizable read failed - {e}")))?;
        let mut models = context.models.clone();
        let caught_up = tokio::time::timeout(
            LINEARIZABLE_WAIT,
            models.wait_for(|model| model.revision >= table.revision),
        )
        .await;
        if !matches!(caught_up, Ok(Ok(_))) {
            return Err(ApiError::NotServing(
                "read model did not catch up with the read index".into(),
            ));
        }
    }
    let model = Arc::clone(&context.models.borrow());
    if !model.configured {
        return Err(ApiError::NotServing(
            "no leader has written the scrape configs yet".into(),
        ));
    }
    match context.replica.freshness() {
        ta_raft::Freshness::Fresh { .. } => {}
        ta_raft::Freshness::Stale { since_contact } => {
            return Err(ApiError::NotServing(match since_contact {
                Some(since) => format!("stale - no contact with a leader for {:.1}s", since.as_secs_f64()),
                None => "stale - no contact with a leader yet".into(),
            }));
        }
        ta_raft::Freshness::CatchingUp { applied, needed } => {
            return Err(ApiError::NotServing(format!(
                "catching up - applied {} of the {needed} entries the leader had committed when contact resumed",
                applied.unwrap_or(0)
            )));
        }
    }
    Ok(model)
}

/// A pre-serialised body with its validators, gzip if asked, and the revision.
fn respond(request_headers: &HeaderMap, model: &ReadModel, body: &Arc<Body>, content_type: &'static str) -> Response {
    let revision = HeaderValue::from(model.revision);
    let gzip = request_headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|e| e.trim().split(';').next() == Some("gzip")));
    let tag = if gzip { &body.etag_gzip } else { &body.etag };
    let etag = HeaderValue::from_str(tag).unwrap_or_else(|_| HeaderValue::from_static("\"\""));
    if let Some(wanted) = request_headers.get(header::IF_NONE_MATCH)
        && wanted.to_str().is_ok_and(|list| {
            list.split(',')
                .any(|candidate| candidate.trim() == tag || candidate.trim() == "*")
        })
    {
        return (
            StatusCode::NOT_MODIFIED,
            [
                (header::ETAG, etag),
                (REVISION_HEADER.parse().expect("static"), revision),
                (header::VARY, HeaderValue::from_static("Accept-Encoding")),
            ],
        )
            .into_response();
    }
    let mut response = if gzip {
        let mut response = HttpBody::from(body.gzipped()).into_response();
        response
            .headers_mut()
            .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        response
    } else {
        HttpBody::from(body.bytes()).into_response()
    };
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::ETAG, etag);
    headers.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    headers.insert(REVISION_HEADER, revision);
    response
}

fn wants_html(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("text/html"))
}

async fn scrape_configs(
    State(context): Api,
    over_tls: Option<axum::Extension<crate::tls::OverTls>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    if wants_html(&headers) {
        return html(&context, "/scrape_configs", query.as_deref());
    }
    match serving_model(&context, query.as_deref()).await {
        Ok(model) => {
            // Real secret values only where upstream serves them: the mTLS listener, or
            // anywhere with allow_insecure_auth_secrets.
            let body = if over_tls.is_some() || context.allow_insecure_auth_secrets {
                &model.scrape_configs_with_secrets
            } else {
                &model.scrape_configs_masked
            };
            respond(&headers, &model, body, "application/json")
        }
        Err(e) => e.into_response(),
    }
}

async fn jobs(State(context): Api, RawQuery(query): RawQuery, headers: HeaderMap) -> Response {
    if wants_html(&headers) {
        return html(&context, "/jobs", query.as_deref());
    }
    match serving_model(&context, query.as_deref()).await {
        Ok(model) => respond(&headers, &model, &model.jobs, "application/json"),
        Err(e) => e.into_response(),
    }
}

async fn job_targets(
    State(context): Api,
    params: RawPathParams,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    // Matched on the raw path and decoded as a query component (§11.1): `%2F` is `/`, `+`
    // is a space.
    let raw_job = params.iter().next().map(|(_, value)| value).unwrap_or("");
    let job = match query_unescape(raw_job) {
        Ok(job) => job,
        Err(e) => return ApiError::BadJobEscape(e.to_string()).into_response(),
    };
    let model = match serving_model(&context, query.as_deref()).await {
        Ok(model) => model,
        Err(e) => return e.into_response(),
    };
    let collector = query_value(query.as_deref(), "collector_id");
    if let (Some(polls), Some(collector)) = (&context.polls, &collector) {
        polls.saw(collector);
    }
    // A body nobody asked for since it changed is rendered now: off the async workers, as a
    // large one takes long enough to delay heartbeats, and one at a time, so that a burst of
    // polls after a change cannot crowd the runtime's threads off the cores.
    let _permit;
    let body = if model.is_rendered(&job, collector.as_deref()) {
        job_body(&model, &job, collector.as_deref())
    } else {
        // Never closed, so acquiring cannot fail.
        _permit = RENDER_PERMITS.acquire().await.ok();
        let (model, job, collector) = (Arc::clone(&model), job.clone(), collector.clone());
        match tokio::task::spawn_blocking(move || job_body(&model, &job, collector.as_deref())).await {
            Ok(body) => body,
            Err(e) => return ApiError::Internal(format!("rendering the body failed: {e}")).into_response(),
        }
    };
    respond(&headers, &model, &body, "application/json")
}

/// Bodies rendered at once per replica (see `job_targets`).
static RENDER_PERMITS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(1);

/// `/jobs/{job}/targets`, for one collector or (without one) for all.
fn job_body(model: &ReadModel, job: &str, collector: Option<&str>) -> Arc<Body> {
    match collector {
        Some(collector) => model.targets_of(job, collector),
        None => model.all_targets_of(job).unwrap_or_else(|| {
            Arc::new(Body::new(crate::read_model::all_collectors_body(
                &model.table,
                job,
                |_| None,
            )))
        }),
    }
}

async fn readyz(State(context): Api) -> Response {
    if let Some(reason) = context
        .collector_discovery
        .as_ref()
        .and_then(CollectorDiscovery::not_ready_reason)
    {
        return (StatusCode::SERVICE_UNAVAILABLE, reason).into_response();
    }
    match serving_model(&context, None).await {
        Ok(_) => StatusCode::OK.into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    }
}

async fn metrics(State(context): Api, headers: HeaderMap) -> Response {
    context.metrics.observe_raft(&context.replica.status());
    let model = Arc::clone(&context.models.borrow());
    record_allocation(&context, &model);
    let body = Arc::new(Body::new(context.metrics.render()));
    let mut response = respond(&headers, &model, &body, "text/plain; version=0.0.4; charset=utf-8");
    response.headers_mut().remove(header::ETAG);
    response
}

/// Per-collector gauges from the table every replica agrees on.
fn record_allocation(context: &ApiContext, model: &ReadModel) {
    let metrics = &context.metrics;
    // Collectors that left have no series (upstream records 0 for them instead).
    metrics.targets_per_collector.reset();
    for collector in model.table.collectors.keys() {
        let count = model
            .targets_per_collector
            .get(&Some(collector.clone()))
            .copied()
            .unwrap_or(0);
        metrics
            .targets_per_collector
            .with_label_values(&[collector.as_ref(), context.strategy])
            .set(count as f64);
    }
    let unassigned = model.targets_per_collector.get(&None).copied().unwrap_or(0);
    metrics.targets_unassigned.set(unassigned as f64);
    metrics
        .collectors_allocatable
        .with_label_values(&[context.strategy])
        .set(model.table.collectors.len() as f64);
}

fn html(context: &ApiContext, path: &str, query: Option<&str>) -> Response {
    let model = Arc::clone(&context.models.borrow());
    match crate::html::render(&model.table, &model.masked_configs, path, query) {
        Some(page) => {
            let mut response = (
                StatusCode::from_u16(page.status).unwrap_or(StatusCode::OK),
                [(header::CONTENT_TYPE, page.content_type)],
                page.body,
            )
                .into_response();
            if page.nosniff {
                response
                    .headers_mut()
                    .insert("x-content-type-options", HeaderValue::from_static("nosniff"));
            }
            response
        }
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn html_page(State(context): Api, request: Request) -> Response {
    let path = request.uri().path().to_string();
    let query = request.uri().query().map(str::to_string);
    let response = html(&context, &path, query.as_deref());
    if response.status() == StatusCode::NOT_FOUND && response.headers().get(header::CONTENT_TYPE).is_none() {
        return not_found().await;
    }
    response
}

/// `/debug/status`: what `target-allocator status` prints.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct ClusterStatus {
    pub replicas: Vec<ReplicaRow>,
    pub collectors: usize,
    pub targets: usize,
    pub unassigned: usize,
    pub balance: Option<f64>,
    pub strategy: String,
    /// This replica's target discovery (absent in answers from older versions).
    #[serde(default)]
    pub discovery: DiscoveryStatus,
    /// What the limits refuse on this replica (absent in answers from older versions).
    #[serde(default)]
    pub refused: Refusals,
}

/// Whether every discovery source has completed its first round, and which sources' latest
/// round failed: a source that cannot list (e.g. a 403 from the Kubernetes API) keeps its
/// last good targets, and removes nothing before its first list (I7), so its error is only
/// visible here and in the logs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct DiscoveryStatus {
    /// Discovery runs on the leader only; a follower reports `false` (and not synced).
    #[serde(default)]
    pub running: bool,
    pub synced: bool,
    pub errors: Vec<DiscoveryError>,
}

/// A source whose latest round failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct DiscoveryError {
    pub job: String,
    /// The configuration key and position, e.g. `kubernetes_sd_configs[0]`.
    pub source: String,
    pub error: String,
}

impl DiscoveryStatus {
    fn of(discovered: &Discovered) -> Self {
        DiscoveryStatus {
            running: discovered.running,
            synced: discovered.all_synced,
            errors: discovered
                .errors
                .iter()
                .map(|(job, source, error)| DiscoveryError {
                    job: job.clone(),
                    source: source.clone(),
                    error: error.clone(),
                })
                .collect(),
        }
    }
}

/// One replica's line in the status table.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct ReplicaRow {
    pub name: String,
    pub role: String,
    pub term: u64,
    pub revision: u64,
    pub applied: Option<u64>,
    /// Entries the leader has that this replica has not applied.
    pub lag: Option<u64>,
    pub stale: bool,
    pub error: Option<String>,
}

async fn status(State(context): Api) -> Response {
    let statuses = context.replica.cluster_status().await;
    let leader_last = statuses
        .iter()
        .filter_map(|(_, s)| s.as_ref().ok())
        .find(|s| s.role == openraft::ServerState::Leader)
        .and_then(|s| s.last_log_index);
    let replicas = statuses
        .into_iter()
        .map(|(name, answer)| match answer {
            Ok(s) => ReplicaRow {
                name,
                role: format!("{:?}", s.role),
                term: s.term,
                revision: s.revision,
                applied: s.applied,
                lag: leader_last.map(|last| last.saturating_sub(s.applied.unwrap_or(0))),
                stale: s.stale,
                error: None,
            },
            Err(e) => ReplicaRow {
                name,
                role: "unreachable".into(),
                term: 0,
                revision: 0,
                applied: None,
                lag: None,
                stale: true,
                error: Some(e),
            },
        })
        .collect();
    let model = Arc::clone(&context.models.borrow());
    let status = ClusterStatus {
        replicas,
        collectors: model.table.collectors.len(),
        targets: model.table.targets().len(),
        unassigned: model.targets_per_collector.get(&None).copied().unwrap_or(0),
        balance: model.balance(),
        strategy: context.strategy.to_string(),
        discovery: DiscoveryStatus::of(&context.discovery.borrow()),
        refused: Refusals::clone(&context.refusals.load()),
    };
    axum::Json(status).into_response()
}

/// The leader as every response names it: both values empty while there is none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderHeaders {
    pub name: HeaderValue,
    pub term: HeaderValue,
}

impl Default for LeaderHeaders {
    fn default() -> Self {
        LeaderHeaders {
            name: HeaderValue::from_static(""),
            term: HeaderValue::from_static(""),
        }
    }
}

/// Keep `leader` naming the current leader and its term (empty while there is none).
pub async fn track_leader(
    replica: Arc<Replica>,
    leader: Arc<ArcSwap<LeaderHeaders>>,
    shutdown: tokio_util::sync::CancellationToken,
) {
    use openraft::async_runtime::watch::WatchReceiver;
    let mut metrics = replica.raft().metrics();
    loop {
        let current = match replica.leader_and_term() {
            Some((name, term)) => LeaderHeaders {
                name: HeaderValue::from_str(&name).unwrap_or_else(|_| HeaderValue::from_static("")),
                term: HeaderValue::from(term),
            },
            None => LeaderHeaders::default(),
        };
        if **leader.load() != current {
            leader.store(Arc::new(current));
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            changed = metrics.changed() => if changed.is_err() { return },
        }
    }
}
