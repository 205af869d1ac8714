//! `http_sd_configs` against a real HTTP server on 127.0.0.1: the request Prometheus sends,
//! the groups built from a good answer, and every kind of bad answer keeping the last good
//! groups while reporting the problem.

mod discovery_support;

use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::http::StatusCode;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use discovery_support::Running;
use discovery_support::addresses;
use target_allocator::discovery::HttpSdConfig;
use target_allocator::discovery::http_sd::HttpProvider;

/// What the server answers next, and the headers of the last request it got.
#[derive(Clone)]
struct Answer {
    status: StatusCode,
    content_type: &'static str,
    body: String,
}

#[derive(Clone, Default)]
struct Server {
    answer: Arc<Mutex<Option<Answer>>>,
    last_request: Arc<Mutex<Option<HeaderMap>>>,
}

impl Server {
    fn answer(&self, status: StatusCode, content_type: &'static str, body: &str) {
        let answer = Answer {
            status,
            content_type,
            body: body.to_string(),
        };
        *self.answer.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(answer);
    }

    fn last_request(&self) -> Option<HeaderMap> {
        self.last_request
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Serve on 127.0.0.1 and return the discovery URL.
    async fn start(&self) -> String {
        async fn targets(State(server): State<Server>, headers: HeaderMap) -> impl IntoResponse {
            *server
                .last_request
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(headers);
            let answer = server
                .answer
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .clone();
            match answer {
                Some(answer) => (
                    answer.status,
                    [(header::CONTENT_TYPE, answer.content_type)],
                    answer.body,
                ),
                None => (
                    StatusCode::NOT_FOUND,
                    [(header::CONTENT_TYPE, "text/plain")],
                    String::new(),
                ),
            }
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("local address");
        let router = Router::new().route("/sd", get(targets)).with_state(self.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        format!("http://{address}/sd")
    }
}

const GOOD: &str =
    r#"[{"targets": ["10.0.0.1:80", "10.0.0.2:80"], "labels": {"env": "prod"}}, {"targets": ["10.0.0.3:80"]}]"#;

fn provider(url: &str) -> Box<HttpProvider> {
    let config = HttpSdConfig {
        url: url.to_string(),
        refresh_interval: Duration::from_millis(100),
    };
    Box::new(HttpProvider::new(config, "discovery-test/1".into(), u64::MAX))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_good_list_is_published_and_every_bad_answer_keeps_it() {
    let server = Server::default();
    server.answer(StatusCode::OK, "application/json; charset=utf-8", GOOD);
    let url = server.start().await;
    let mut running = Running::start(provider(&url));

    let good = running.wait_for("the first poll", |s| s.synced).await;
    assert_eq!(good.last_error, None);
    assert_eq!(addresses(&good.groups), ["10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"]);
    assert_eq!(good.groups[0].source, format!("{url}:0"));
    assert_eq!(good.groups[1].source, format!("{url}:1"));
    for group in good.groups.iter() {
        assert_eq!(group.labels.get("__meta_url"), Some(url.as_str()));
    }
    assert_eq!(good.groups[0].labels.get("env"), Some("prod"));

    let request = server.last_request().expect("a request was received");
    let header = |name: &str| request.get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
    assert_eq!(header("x-prometheus-refresh-interval-seconds").as_deref(), Some("0.1"));
    assert_eq!(header("user-agent").as_deref(), Some("discovery-test/1"));
    assert_eq!(header("accept").as_deref(), Some("application/json"));

    let cases = [
        (StatusCode::INTERNAL_SERVER_ERROR, "application/json", GOOD, "500"),
        (StatusCode::OK, "text/plain", GOOD, "content type"),
        (StatusCode::OK, "application/json", "[{\"targets\": [", "invalid JSON"),
        (StatusCode::OK, "application/json", "[{\"targets\": [1]}]", "targets"),
    ];
    for (status, content_type, body, expected) in cases {
        server.answer(status, content_type, body);
        let failed = running
            .wait_for(&format!("an error mentioning {expected:?}"), |s| {
                s.last_error.as_deref().is_some_and(|e| e.contains(expected))
            })
            .await;
        // The same groups, not merely equal ones: nothing downstream has to look at them.
        assert_eq!(failed.groups.len(), good.groups.len());
        assert!(
            failed
                .groups
                .iter()
                .zip(good.groups.iter())
                .all(|(a, b)| Arc::ptr_eq(a, b))
        );
    }

    server.answer(StatusCode::OK, "application/json", r#"[{"targets": ["10.0.0.9:80"]}]"#);
    running
        .wait_for("recovery with the new list", |s| {
            s.last_error.is_none() && addresses(&s.groups) == ["10.0.0.9:80"]
        })
        .await;
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_first_poll_still_syncs_with_nothing_known() {
    // A port that was just free: the connection is refused.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = listener.local_addr().expect("local address");
    drop(listener);
    let mut running = Running::start(provider(&format!("http://{address}/sd")));
    let first = running.wait_for("the first attempt", |s| s.synced).await;
    assert!(first.groups.is_empty());
    assert!(first.last_error.is_some());
    running.stop().await;
}
