//! The discovery manager over real sources (static groups, files on disk, an HTTP server on
//! 127.0.0.1): the combined view is synced only once every source is, lists errors and
//! unsupported sources, keeps unchanged groups' pointers across generations, and shuts down.

mod discovery_support;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::header;
use axum::routing::get;
use discovery_support::DEADLINE;
use discovery_support::Running;
use discovery_support::addresses;
use discovery_support::replace_file;
use discovery_support::wait_for;
use target_allocator::discovery::FileSdConfig;
use target_allocator::discovery::HttpSdConfig;
use target_allocator::discovery::Interner;
use target_allocator::discovery::Labels;
use target_allocator::discovery::ServiceDiscoveryConfig;
use target_allocator::discovery::TargetGroup;
use target_allocator::discovery::manager::DiscoveryManager;
use target_allocator::discovery::manager::DiscoveryOptions;
use target_allocator::discovery::static_sd::StaticProvider;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

const HOUR: Duration = Duration::from_secs(3600);

fn static_group(addresses: &[&str], labels: &[(&str, &str)]) -> TargetGroup {
    let mut interner = Interner::default();
    let address = interner.intern("__address__");
    TargetGroup {
        source: "set by the provider".into(),
        targets: addresses
            .iter()
            .map(|a| Labels::new(vec![(address.clone(), interner.intern(a))]))
            .collect(),
        labels: Labels::new(
            labels
                .iter()
                .map(|(n, v)| (interner.intern(n), interner.intern(v)))
                .collect(),
        ),
    }
}

fn file_source(pattern: String) -> ServiceDiscoveryConfig {
    ServiceDiscoveryConfig::File(FileSdConfig {
        files: vec![pattern],
        refresh_interval: HOUR,
    })
}

/// An http_sd endpoint whose answers are held back until `open` is set.
async fn gated_server(open: watch::Receiver<bool>) -> String {
    let router = Router::new().route(
        "/sd",
        get(move || {
            let mut open = open.clone();
            async move {
                let _ = open.wait_for(|open| *open).await;
                (
                    [(header::CONTENT_TYPE, "application/json")],
                    r#"[{"targets": ["gated:1"]}]"#,
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("local address");
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    format!("http://{address}/sd")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_groups_are_published_at_once_with_positional_sources() {
    let provider = StaticProvider::new(vec![
        static_group(&["a:1"], &[("env", "x")]),
        static_group(&["b:1"], &[]),
    ]);
    let mut running = Running::start(Box::new(provider));
    let first = running.wait_for("the static groups", |s| s.synced).await;
    let sources: Vec<String> = first.groups.iter().map(|g| g.source.to_string()).collect();
    assert_eq!(sources, ["0", "1"]);
    assert_eq!(addresses(&first.groups), ["a:1", "b:1"]);
    assert_eq!(first.groups[0].labels.get("env"), Some("x"));
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_combined_view_syncs_after_every_source_and_keeps_unchanged_groups() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let dir = directory.path();
    replace_file(&dir.join("good.json"), r#"[{"targets": ["file:1"]}]"#);
    replace_file(&dir.join("bad.yaml"), "- targets: [x:1]\n  nonsense: 1\n");
    let (gate, open) = watch::channel(false);
    let url = gated_server(open).await;

    let jobs = vec![
        (
            "web".to_string(),
            vec![
                ServiceDiscoveryConfig::Static(vec![static_group(&["static:1"], &[])]),
                file_source(format!("{}/*.json", dir.display())),
                // Files that do not exist: the source still syncs, with nothing.
                file_source(format!("{}/missing/*.json", dir.display())),
                ServiceDiscoveryConfig::Unsupported {
                    key: "kubernetes_sd_configs".into(),
                },
            ],
        ),
        (
            "api".to_string(),
            vec![
                file_source(format!("{}/*.yaml", dir.display())),
                ServiceDiscoveryConfig::Http(HttpSdConfig {
                    url: url.clone(),
                    refresh_interval: HOUR,
                }),
            ],
        ),
    ];
    let shutdown = CancellationToken::new();
    let manager = DiscoveryManager::start(jobs, &DiscoveryOptions::default(), &shutdown);
    let mut view = manager.subscribe();

    // Everything but the held-back HTTP source is in; the view is still not synced.
    let partial = wait_for(&mut view, "the file and static sources", |v| {
        addresses(&v.jobs["web"]) == ["static:1", "file:1"] && v.errors.len() == 1
    })
    .await;
    assert!(!partial.all_synced);
    assert_eq!(
        partial.unsupported,
        [("web".to_string(), "kubernetes_sd_configs".to_string())]
    );
    let (job, source, error) = &partial.errors[0];
    assert_eq!((job.as_str(), source.as_str()), ("api", "file_sd_configs[0]"));
    assert!(error.contains("nonsense"), "{error}");

    gate.send_replace(true);
    let synced = wait_for(&mut view, "every source synced", |v| v.all_synced).await;
    assert_eq!(addresses(&synced.jobs["api"]), ["gated:1"]);
    assert_eq!(synced.jobs["api"][0].labels.get("__meta_url"), Some(url.as_str()));
    let static_before = Arc::clone(&synced.jobs["web"][0]);
    let api_before = Arc::clone(&synced.jobs["api"][0]);

    // A change in one file source: a new generation in which every other group is the same
    // allocation as before.
    replace_file(&dir.join("more.json"), r#"[{"targets": ["file:2"]}]"#);
    let changed = wait_for(&mut view, "the new file", |v| {
        addresses(&v.jobs["web"]) == ["static:1", "file:1", "file:2"]
    })
    .await;
    assert!(changed.generation > synced.generation);
    assert!(changed.all_synced);
    assert!(Arc::ptr_eq(&changed.jobs["web"][0], &static_before));
    assert!(Arc::ptr_eq(&changed.jobs["api"][0], &api_before));

    // Shutdown ends every task, and with them the view's sender.
    tokio::time::timeout(DEADLINE, manager.shutdown())
        .await
        .expect("shutdown within the deadline");
    let closed = tokio::time::timeout(DEADLINE, async { while view.changed().await.is_ok() {} }).await;
    assert!(closed.is_ok(), "the view is closed after shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_with_only_unsupported_sources_are_synced_from_the_start() {
    let jobs = vec![(
        "k8s".to_string(),
        vec![ServiceDiscoveryConfig::Unsupported {
            key: "kubernetes_sd_configs".into(),
        }],
    )];
    let shutdown = CancellationToken::new();
    let manager = DiscoveryManager::start(jobs, &DiscoveryOptions::default(), &shutdown);
    let mut view = manager.subscribe();
    let first = wait_for(&mut view, "a synced view", |v| v.all_synced).await;
    assert_eq!(first.jobs["k8s"], Vec::<Arc<TargetGroup>>::new());
    assert_eq!(first.unsupported.len(), 1);
    // Cancelling the parent token stops the manager's tasks too.
    shutdown.cancel();
    tokio::time::timeout(DEADLINE, manager.shutdown())
        .await
        .expect("shutdown within the deadline");
}
