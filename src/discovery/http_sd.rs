//! `http_sd_configs`: target groups polled from a URL, as Prometheus's `discovery/http`
//! (docs/compatibility.md, "http_sd"). A `GET` every `refresh_interval` (the first at
//! start), with `Accept: application/json`, a `User-Agent` and
//! `X-Prometheus-Refresh-Interval-Seconds`, and the refresh interval as timeout. Success needs status 200, a JSON content type
//! (`application/json`, optionally `; charset=utf-8`) and a JSON list of groups; each group
//! gets the source `"{url}:{index}"` and the label `__meta_url`.
//!
//! On any failure the last good groups stay published and the failure is in `last_error`.
//! The provider is synced after its first attempt even if it failed: Prometheus's refresh
//! loop also treats a failed first refresh as done, with nothing known (no update is sent,
//! and the scrape manager proceeds without the source's targets). Waiting for a success
//! instead would let one unreachable endpoint block every removal forever (I7,
//! docs/architecture.md).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::ACCEPT;
use reqwest::header::CONTENT_TYPE;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::HttpSdConfig;
use super::Interner;
use super::Provider;
use super::ProviderSnapshot;
use super::TargetGroup;
use super::error_chain;
use super::group_list;
use super::group_list::GroupListError;
use super::publish_round;
use super::refresh_ticker;
use super::share_unchanged;

/// The label naming the URL a group came from.
pub const URL_LABEL: &str = "__meta_url";
/// The header telling the server how often we poll.
pub const REFRESH_INTERVAL_HEADER: &str = "X-Prometheus-Refresh-Interval-Seconds";

/// Why one poll failed.
#[derive(Debug, thiserror::Error)]
pub enum HttpSdError {
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
    #[error("{url}: the body is longer than limits.max_source_bytes ({max} bytes); not read")]
    TooLarge { url: String, max: u64 },
    #[error("request to {url} failed: {message}")]
    Request { url: String, message: String },
    #[error("{url} returned HTTP status {status}")]
    Status { url: String, status: String },
    #[error("{url} returned unsupported content type {content_type:?}")]
    ContentType { url: String, content_type: String },
    #[error("reading the body from {url} failed: {message}")]
    Body { url: String, message: String },
    #[error("{url}: {source}")]
    Parse { url: String, source: GroupListError },
}

/// Provider for one `http_sd_configs` entry.
pub struct HttpProvider {
    config: HttpSdConfig,
    user_agent: String,
    max_bytes: u64,
}

impl HttpProvider {
    /// A provider that reads no body larger than `max_bytes` (`limits.max_source_bytes`).
    pub fn new(config: HttpSdConfig, user_agent: String, max_bytes: u64) -> Self {
        Self {
            config,
            user_agent,
            max_bytes,
        }
    }
}

impl Provider for HttpProvider {
    fn run(
        self: Box<Self>,
        publish: watch::Sender<ProviderSnapshot>,
        shutdown: CancellationToken,
    ) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(run(*self, publish, shutdown))
    }
}

async fn run(provider: HttpProvider, publish: watch::Sender<ProviderSnapshot>, shutdown: CancellationToken) {
    let mut poller = Poller::new(provider.config.clone(), &provider.user_agent, provider.max_bytes);
    let mut groups: Vec<Arc<TargetGroup>> = Vec::new();
    let mut ticker = refresh_ticker(provider.config.refresh_interval);
    // The problems of the last round published, once one was.
    let mut published: Option<Option<String>> = None;
    loop {
        let outcome = tokio::select! {
            () = shutdown.cancelled() => return,
            outcome = poller.poll() => outcome,
        };
        let fresh_body = matches!(outcome, Ok(Some(_)));
        let last_error = match outcome {
            Ok(Some(fresh)) => {
                groups = share_unchanged(&groups, fresh);
                None
            }
            // The same body as last time: the same groups, not parsed again.
            Ok(None) => None,
            Err(error) => {
                tracing::warn!(%error, "http_sd: keeping the last good target groups");
                Some(error.to_string())
            }
        };
        // The same body and the same problems as the last round: nothing to publish. At a
        // million one-target groups, collecting every group's reference again only to find
        // them equal was most of an idle replica's CPU (as in file_sd).
        if fresh_body || published.as_ref() != Some(&last_error) {
            publish_round(&publish, groups.clone(), last_error.clone());
            published = Some(last_error);
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
    }
}

/// The client side of one `http_sd_configs` entry.
struct Poller {
    config: HttpSdConfig,
    client: Result<reqwest::Client, String>,
    interner: Interner,
    /// xxh3 of the last body parsed successfully.
    last_body: Option<u64>,
    /// A longer body is refused as it arrives, never held whole.
    max_bytes: u64,
}

impl Poller {
    fn new(config: HttpSdConfig, user_agent: &str, max_bytes: u64) -> Self {
        let client = reqwest::Client::builder()
            .user_agent(user_agent)
            .timeout(config.refresh_interval.max(Duration::from_millis(1)))
            .build()
            .map_err(|e| error_chain(&e));
        Self {
            config,
            client,
            interner: Interner::default(),
            last_body: None,
            max_bytes,
        }
    }

    /// The groups of a fresh response, or `None` when its body is the last one's.
    async fn poll(&mut self) -> Result<Option<Vec<TargetGroup>>, HttpSdError> {
        let url = self.config.url.clone();
        let client = self
            .client
            .as_ref()
            .map_err(|message| HttpSdError::Client(message.clone()))?;
        let response = client
            .get(&url)
            .header(ACCEPT, "application/json")
            .header(
                REFRESH_INTERVAL_HEADER,
                refresh_interval_seconds(self.config.refresh_interval),
            )
            .send()
            .await
            .map_err(|e| HttpSdError::Request {
                url: url.clone(),
                message: error_chain(&e),
            })?;
        if response.status() != reqwest::StatusCode::OK {
            return Err(HttpSdError::Status {
                url,
                status: response.status().to_string(),
            });
        }
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
            .unwrap_or_default();
        if !is_json_content_type(&content_type) {
            return Err(HttpSdError::ContentType { url, content_type });
        }
        let too_large = |url: &str| HttpSdError::TooLarge {
            url: url.to_string(),
            max: self.max_bytes,
        };
        if response.content_length().is_some_and(|len| len > self.max_bytes) {
            return Err(too_large(&url));
        }
        let mut response = response;
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| HttpSdError::Body {
            url: url.clone(),
            message: error_chain(&e),
        })? {
            if (body.len() + chunk.len()) as u64 > self.max_bytes {
                return Err(too_large(&url));
            }
            body.extend_from_slice(&chunk);
        }
        let hash = xxhash_rust::xxh3::xxh3_64(&body);
        if self.last_body == Some(hash) {
            return Ok(None);
        }
        // Parsing a large body takes long enough to stall the async workers.
        let _permit = super::PARSE_PERMITS.acquire().await.ok();
        let mut interner = std::mem::take(&mut self.interner);
        let parse_url = url.clone();
        let (interner, parsed) = tokio::task::spawn_blocking(move || {
            let parsed = group_list::parse_json_groups(&body, &parse_url, (URL_LABEL, &parse_url), &mut interner);
            if parsed.is_ok() {
                interner.collect_garbage();
            }
            (interner, parsed)
        })
        .await
        .map_err(|e| HttpSdError::Body {
            url: url.clone(),
            message: format!("parsing the body failed: {e}"),
        })?;
        self.interner = interner;
        let groups = parsed.map_err(|source| HttpSdError::Parse { url, source })?;
        self.last_body = Some(hash);
        Ok(Some(groups))
    }
}

/// Seconds as Go's `strconv.FormatFloat(s, 'f', -1, 64)` writes them: `60`, `0.2`.
pub fn refresh_interval_seconds(interval: Duration) -> String {
    format!("{}", interval.as_secs_f64())
}

/// Prometheus's `^application/json(;\s*charset=("utf-8"|utf-8))?$`, case-insensitive, on the
/// trimmed header.
pub fn is_json_content_type(header: &str) -> bool {
    let header = header.trim().to_ascii_lowercase();
    let Some(rest) = header.strip_prefix("application/json") else {
        return false;
    };
    if rest.is_empty() {
        return true;
    }
    let Some(parameter) = rest.strip_prefix(';') else {
        return false;
    };
    matches!(
        parameter.trim_start_matches(|c: char| c.is_ascii_whitespace()),
        "charset=utf-8" | "charset=\"utf-8\""
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types_are_matched_as_prometheus_does() {
        for accepted in [
            "application/json",
            "Application/JSON",
            " application/json ",
            "application/json; charset=utf-8",
            "application/json;charset=\"UTF-8\"",
        ] {
            assert!(is_json_content_type(accepted), "{accepted:?}");
        }
        for rejected in [
            "",
            "text/plain",
            "application/jsonx",
            "application/json; charset=latin1",
            "application/json, text/plain",
        ] {
            assert!(!is_json_content_type(rejected), "{rejected:?}");
        }
    }

    #[test]
    fn the_refresh_header_prints_seconds_like_go() {
        assert_eq!(refresh_interval_seconds(Duration::from_secs(60)), "60");
        assert_eq!(refresh_interval_seconds(Duration::from_millis(200)), "0.2");
        assert_eq!(refresh_interval_seconds(Duration::from_millis(1500)), "1.5");
    }
}
