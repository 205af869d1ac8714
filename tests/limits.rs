//! `limits:` end to end, on a real single-replica service: a file_sd source that suddenly
//! wants ten times its targets above `max_targets`, and targets whose labels are too long or
//! too many. The refused input is named in `/debug/status` and on `/metrics`, and the last
//! good assignment keeps being served; once the input is back under the limits, it is used.

mod api_support;

use std::path::Path;
use std::time::Duration;

use api_support::Cluster;
use api_support::eventually;

fn write_targets(path: &Path, addresses: &[String], labels: &str) {
    let targets: Vec<String> = addresses.iter().map(|a| format!("\"{a}\"")).collect();
    let text = format!("[{{\"targets\": [{}], \"labels\": {{{labels}}}}}]", targets.join(","));
    let temporary = path.with_extension("tmp");
    std::fs::write(&temporary, text).expect("write the targets");
    std::fs::rename(&temporary, path).expect("rename the targets into place");
}

fn addresses(count: usize, offset: usize) -> Vec<String> {
    (0..count)
        .map(|i| format!("10.0.{}.{}:9100", (offset + i) / 250, (offset + i) % 250))
        .collect()
}

async fn status(cluster: &Cluster) -> serde_json::Value {
    cluster.get(0, "/debug/status").await.json()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn input_above_the_limits_is_refused_and_the_last_good_assignment_served() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let good = dir.path().join("good.json");
    let odd = dir.path().join("odd.json");
    write_targets(&good, &addresses(8, 0), "\"team\": \"a\"");
    write_targets(&odd, &addresses(2, 100), "\"team\": \"b\"");
    let document = format!(
        "collectors:\n  static: [collector-0, collector-1]\n\
         coalesce_window: 100ms\n\
         limits:\n  max_targets: 20\n  max_label_bytes: 64\n\
         config:\n  scrape_configs:\n  \
           - job_name: files\n    \
             file_sd_configs:\n    \
               - files: ['{}/*.json']\n      \
                 refresh_interval: 1h\n",
        dir.path().display()
    );
    let mut cluster = Cluster::new(1, &document);
    cluster.start(0);
    cluster.wait_ready(0).await;
    cluster.wait_allocated(0, "files", 10).await;

    // One file now wants 100 targets: above max_targets (20), so nothing about targets is
    // planned and the 10 stay served.
    write_targets(&good, &addresses(100, 0), "\"team\": \"a\"");
    let refused = eventually("max_targets reported", Duration::from_secs(20), || async {
        let status = status(&cluster).await;
        if status["refused"]["max_targets"] == serde_json::json!([102, 20]) {
            Ok(status)
        } else {
            Err(format!("status: {status}"))
        }
    })
    .await;
    assert_eq!(refused["targets"], 10, "the last good assignment stays: {refused}");
    let metrics = cluster.get(0, "/metrics").await.text();
    assert!(
        metrics.contains("target_allocator_limit_exceeded{limit=\"max_targets\"} 1"),
        "{metrics}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    cluster.wait_allocated(0, "files", 10).await;

    // Back under the limit, with one target's label value too long: that target alone is
    // refused and counted; the rest is planned.
    write_targets(&good, &addresses(5, 0), "\"team\": \"a\"");
    let long = "x".repeat(100);
    write_targets(&odd, &addresses(1, 100), &format!("\"team\": \"{long}\""));
    cluster.wait_allocated(0, "files", 5).await;
    let status = status(&cluster).await;
    assert_eq!(status["refused"]["max_targets"], serde_json::Value::Null, "{status}");
    assert_eq!(status["refused"]["targets_by_job"]["files"], 1, "{status}");
    let metrics = cluster.get(0, "/metrics").await.text();
    assert!(
        metrics.contains("target_allocator_targets_refused{job_name=\"files\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("target_allocator_limit_exceeded{limit=\"max_targets\"} 0"),
        "{metrics}"
    );
}
