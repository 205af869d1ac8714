//! Upstream's HTML debugging UI (docs/compatibility.md, "The HTML pages"), rendered from one revision of the
//! replicated table: the index, scrape configs, jobs, one job, targets, one target and one
//! collector, with upstream's markup, status codes and quirks.
//!
//! Pure: the server decides when a request gets HTML (always for `/` and `/debug/*`, on
//! `Accept: text/html` for `/scrape_configs` and `/jobs`) and turns an [`HtmlResponse`] into
//! an HTTP response. Where upstream's order is random (scrape config rows), rows are sorted
//! by job name.

mod go_json;
mod markup;

use std::collections::BTreeMap;
use std::collections::BTreeSet;

use serde_json::Value;
use ta_raft::Table;
use ta_raft::TargetId;
use ta_raft::model::Target;

use crate::allocation::desired::node_of;
use crate::url_escape;
use markup::Cell;
use markup::Page;

/// Content type of every page but the index.
pub const CONTENT_TYPE_UTF8: &str = "text/html; charset=utf-8";
/// Content type of the index page (upstream sets no charset there).
pub const CONTENT_TYPE_INDEX: &str = "text/html";

const ENDPOINT_SLICE_NAME_LABEL: &str = "__meta_kubernetes_endpointslice_name";

/// One rendered page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HtmlResponse {
    pub status: u16,
    pub body: String,
    /// [`CONTENT_TYPE_INDEX`] for `/`, [`CONTENT_TYPE_UTF8`] otherwise.
    pub content_type: &'static str,
    /// Whether to send `X-Content-Type-Options: nosniff` (every page but the index).
    pub nosniff: bool,
}

impl HtmlResponse {
    fn page(status: u16, body: String) -> Self {
        Self {
            status,
            body,
            content_type: CONTENT_TYPE_UTF8,
            nosniff: true,
        }
    }
}

/// Render the page for the request `path` (e.g. `/`, `/debug/targets`, `/scrape_configs`,
/// `/jobs`) with `raw_query` the still-encoded query string, if any. `scrape_configs` is the
/// masked per-job scrape config, as served on plain HTTP. `None` when `path` is not an HTML
/// route.
pub fn render(
    table: &Table,
    scrape_configs: &BTreeMap<String, Value>,
    path: &str,
    raw_query: Option<&str>,
) -> Option<HtmlResponse> {
    let response = match path {
        "/" => index(table, scrape_configs),
        "/debug/scrape_configs" | "/scrape_configs" => scrape_configs_page(scrape_configs),
        "/debug/jobs" | "/jobs" => jobs_page(table),
        "/debug/job" => job_page(table, raw_query),
        "/debug/targets" => targets_page(table),
        "/debug/target" => target_page(table, raw_query),
        "/debug/collector" => collector_page(table, raw_query),
        _ => return None,
    };
    Some(response)
}

fn index(table: &Table, scrape_configs: &BTreeMap<String, Value>) -> HtmlResponse {
    let mut page = Page::with_header("OpenTelemetry Target Allocator");
    let jobs: BTreeSet<&str> = table.targets().values().map(|target| target.job.as_ref()).collect();
    page.table(
        &["Category", "Count"],
        [
            vec![
                Cell::link("/scrape_configs", "Scrape Configs"),
                Cell::text(scrape_configs.len().to_string()),
            ],
            vec![Cell::link("/debug/jobs", "Jobs"), Cell::text(jobs.len().to_string())],
            vec![
                Cell::link("/debug/targets", "Targets"),
                Cell::text(table.targets().len().to_string()),
            ],
        ],
    );

    let mut per_collector: BTreeMap<&str, (BTreeSet<&str>, usize)> = BTreeMap::new();
    for target in table.targets().values() {
        if let Some(collector) = target.collector.as_deref() {
            let (jobs, targets) = per_collector.entry(collector).or_default();
            jobs.insert(&target.job);
            *targets += 1;
        }
    }
    page.table(
        &["Collector", "Job Count", "Target Count"],
        table.collectors.keys().map(|collector| {
            let (job_count, target_count) = per_collector
                .get(collector.as_ref())
                .map_or((0, 0), |(jobs, targets)| (jobs.len(), *targets));
            vec![
                collector_link(collector),
                Cell::text(job_count.to_string()),
                Cell::text(target_count.to_string()),
            ]
        }),
    );
    HtmlResponse {
        status: 200,
        body: page.finish(),
        content_type: CONTENT_TYPE_INDEX,
        nosniff: false,
    }
}

fn scrape_configs_page(scrape_configs: &BTreeMap<String, Value>) -> HtmlResponse {
    let mut page = Page::with_header("OpenTelemetry Target Allocator - Scrape Configs");
    page.table(
        &["Job", "Scrape Config"],
        scrape_configs
            .iter()
            .map(|(job, config)| vec![job_link(job), Cell::Preformatted(go_json::to_indented(config))]),
    );
    HtmlResponse::page(200, page.finish())
}

fn jobs_page(table: &Table) -> HtmlResponse {
    let mut targets_per_job: BTreeMap<&str, usize> = BTreeMap::new();
    for target in table.targets().values() {
        *targets_per_job.entry(&target.job).or_default() += 1;
    }
    let mut page = Page::with_header("OpenTelemetry Target Allocator - Jobs");
    page.table(
        &["Job", "Target Count"],
        targets_per_job
            .into_iter()
            .map(|(job, count)| vec![job_link(job), Cell::text(count.to_string())]),
    );
    HtmlResponse::page(200, page.finish())
}

fn job_page(table: &Table, raw_query: Option<&str>) -> HtmlResponse {
    // Upstream answers a missing or repeated `job_id` with a bare status and no body.
    let values = url_escape::query_values(raw_query, "job_id");
    let [job] = values.as_slice() else {
        return HtmlResponse::page(400, String::new());
    };
    let mut targets_per_collector: BTreeMap<&str, usize> = BTreeMap::new();
    for target in table
        .targets()
        .values()
        .filter(|target| target.job.as_ref() == job.as_str())
    {
        if let Some(collector) = target.collector.as_deref() {
            *targets_per_collector.entry(collector).or_default() += 1;
        }
    }
    let mut page = Page::with_header(&format!("Job: {job}"));
    page.table(
        &["Collector", "Target Count"],
        table.collectors.keys().map(|collector| {
            let count = targets_per_collector.get(collector.as_ref()).copied().unwrap_or(0);
            vec![collector_link(collector), Cell::text(count.to_string())]
        }),
    );
    HtmlResponse::page(200, page.finish())
}

fn targets_page(table: &Table) -> HtmlResponse {
    let mut page = Page::with_header("OpenTelemetry Target Allocator - Targets");
    // The table is keyed by target hash, so iteration is already upstream's order.
    page.table(
        &["Job", "Target", "Collector", "Endpoint Slice"],
        table.targets().iter().map(|(id, target)| {
            vec![
                job_link(&target.job),
                target_link(*id, target),
                collector_link(target.collector.as_deref().unwrap_or("")),
                Cell::text(target.labels.get(ENDPOINT_SLICE_NAME_LABEL).unwrap_or("")),
            ]
        }),
    );
    HtmlResponse::page(200, page.finish())
}

fn target_page(table: &Table, raw_query: Option<&str>) -> HtmlResponse {
    let hash_text = url_escape::query_values(raw_query, "target_hash")
        .into_iter()
        .next()
        .unwrap_or_default();
    let mut page = Page::default();
    if hash_text.is_empty() || hash_text == "0" {
        page.bad_request(
            "Expected target_hash in the query string",
            "/debug/target?target_hash=my-target-42",
        );
        return HtmlResponse::page(400, page.into_body());
    }
    let mut status = None;
    let hash = parse_go_uint64(&hash_text).unwrap_or_else(|fallback| {
        // Upstream writes this page and then carries on with the value `ParseUint` returned
        // (0, or the maximum on overflow); the status written first is the one sent.
        page.bad_request("Expected target_hash to be a number", "/debug/target?target_hash=42");
        status = Some(400);
        fallback
    });
    let Some(target) = table.targets().get(&TargetId(hash)) else {
        page.not_found("Target", &hash_text);
        return HtmlResponse::page(status.unwrap_or(404), page.into_body());
    };
    let mut body = page.into_body();
    body.push_str(&target_details(target));
    HtmlResponse::page(status.unwrap_or(200), body)
}

fn target_details(target: &Target) -> String {
    let label = |name: &str| Cell::text(target.labels.get(name).unwrap_or(""));
    let mut page = Page::with_header(&format!("Target: {}", target_url(target)));
    page.table(
        &["", ""],
        [
            vec![
                Cell::text("Collector"),
                collector_link(target.collector.as_deref().unwrap_or("")),
            ],
            vec![Cell::text("Job"), job_link(&target.job)],
            vec![Cell::text("Namespace"), label("__meta_kubernetes_namespace")],
            vec![Cell::text("Service Name"), label("__meta_kubernetes_service_name")],
            vec![Cell::text("Service Port"), label("__meta_kubernetes_service_port")],
            vec![Cell::text("Pod Name"), label("__meta_kubernetes_pod_name")],
            vec![
                Cell::text("Container Name"),
                label("__meta_kubernetes_pod_container_name"),
            ],
            vec![
                Cell::text("Container Port Name"),
                label("__meta_kubernetes_pod_container_port_name"),
            ],
            vec![
                Cell::text("Node Name"),
                Cell::text(node_of(&target.labels).unwrap_or("")),
            ],
            vec![Cell::text("Endpoint Slice Name"), label(ENDPOINT_SLICE_NAME_LABEL)],
        ],
    );
    page.table(
        &["Label", "Value"],
        target
            .labels
            .iter()
            .map(|(name, value)| vec![Cell::text(name), Cell::text(value)]),
    );
    page.finish()
}

fn collector_page(table: &Table, raw_query: Option<&str>) -> HtmlResponse {
    let values = url_escape::query_values(raw_query, "collector_id");
    let collector = match values.as_slice() {
        [only] => only.as_str(),
        _ => "",
    };
    let mut page = Page::default();
    if collector.is_empty() {
        page.bad_request(
            "Expected collector_id in the query string",
            "/debug/collector?collector_id=my-collector-42",
        );
        return HtmlResponse::page(400, page.into_body());
    }
    if !table.collectors.contains_key(collector) {
        page.not_found("Collector", collector);
        return HtmlResponse::page(404, page.into_body());
    }
    let mut page = Page::with_header(&format!("Collector: {collector}"));
    page.table(
        &["Job", "Target", "Endpoint Slice"],
        table
            .targets()
            .iter()
            .filter(|(_, target)| target.collector.as_deref() == Some(collector))
            .map(|(id, target)| {
                vec![
                    job_link(&target.job),
                    target_link(*id, target),
                    Cell::text(target.labels.get(ENDPOINT_SLICE_NAME_LABEL).unwrap_or("")),
                ]
            }),
    );
    HtmlResponse::page(200, page.finish())
}

/// `strconv.ParseUint(text, 10, 64)`: ASCII digits only (no sign, no underscores). The error
/// carries the value Go returns alongside it: 0 for bad syntax, `u64::MAX` on overflow.
fn parse_go_uint64(text: &str) -> Result<u64, u64> {
    if text.is_empty() || !text.bytes().all(|byte| byte.is_ascii_digit()) {
        return Err(0);
    }
    text.bytes().try_fold(0u64, |value, digit| {
        value
            .checked_mul(10)
            .and_then(|value| value.checked_add(u64::from(digit - b'0')))
            .ok_or(u64::MAX)
    })
}

/// What upstream calls the target URL: its `__address__`.
fn target_url(target: &Target) -> &str {
    target.labels.get("__address__").unwrap_or("")
}

fn job_link(job: &str) -> Cell {
    Cell::link(format!("/debug/job?job_id={}", url_escape::query_escape(job)), job)
}

fn collector_link(collector: &str) -> Cell {
    Cell::link(
        format!("/debug/collector?collector_id={}", url_escape::query_escape(collector)),
        collector,
    )
}

fn target_link(id: TargetId, target: &Target) -> Cell {
    Cell::link(format!("/debug/target?target_hash={id}"), target_url(target))
}
