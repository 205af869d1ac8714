//! `file_sd_configs` against real files in a temporary directory: changes must arrive through
//! file-system notifications (the refresh interval is an hour), and separately through the
//! refresh interval alone when no notification can be seen.

mod discovery_support;

use std::sync::Arc;
use std::time::Duration;

use discovery_support::Running;
use discovery_support::addresses;
use discovery_support::group;
use discovery_support::replace_file;
use target_allocator::discovery::FileSdConfig;
use target_allocator::discovery::file_sd::FileProvider;

const HOUR: Duration = Duration::from_secs(3600);

fn provider(files: Vec<String>, refresh_interval: Duration) -> Box<FileProvider> {
    provider_limited(files, refresh_interval, u64::MAX)
}

fn provider_limited(files: Vec<String>, refresh_interval: Duration, max_bytes: u64) -> Box<FileProvider> {
    Box::new(FileProvider::new(
        FileSdConfig {
            files,
            refresh_interval,
        },
        max_bytes,
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_larger_than_the_limit_is_refused_unread_and_its_last_good_groups_kept() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let file = directory.path().join("a.json");
    replace_file(&file, r#"[{"targets": ["10.0.0.1:80"]}]"#);
    let files = vec![format!("{}/*.json", directory.path().display())];
    let mut running = Running::start(provider_limited(files, HOUR, 1024));
    let first = running.wait_for("the first round", |s| s.synced).await;
    assert_eq!(addresses(&first.groups), ["10.0.0.1:80"]);

    // Ten times the targets, and more bytes than the limit: refused, the last good kept.
    let many: Vec<String> = (0..100).map(|i| format!("\"10.0.1.{i}:80\"")).collect();
    replace_file(&file, &format!("[{{\"targets\": [{}]}}]", many.join(",")));
    let refused = running
        .wait_for("the oversized file reported", |s| {
            s.last_error.as_deref().is_some_and(|e| e.contains("max_source_bytes"))
        })
        .await;
    assert_eq!(addresses(&refused.groups), ["10.0.0.1:80"]);

    // Back under the limit: read again, the error clears.
    replace_file(&file, r#"[{"targets": ["10.0.0.2:80"]}]"#);
    let back = running
        .wait_for("the file under the limit again", |s| {
            s.last_error.is_none() && addresses(&s.groups) == ["10.0.0.2:80"]
        })
        .await;
    assert!(back.synced);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_and_yaml_files_are_followed_through_notifications() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let dir = directory.path();
    let json = dir.join("a.json");
    let yaml = dir.join("b.yml");
    replace_file(
        &json,
        r#"[{"targets": ["10.0.0.1:80", "10.0.0.2:80"], "labels": {"env": "prod"}}]"#,
    );
    replace_file(&yaml, "- targets: ['10.0.1.1:9100']\n  labels:\n    team: infra\n");
    let (json_path, yaml_path) = (json.display().to_string(), yaml.display().to_string());
    let files = vec![format!("{}/*.json", dir.display()), format!("{}/*.yml", dir.display())];
    let mut running = Running::start(provider(files, HOUR));

    // Initial sync: both files, with their sources and the file path label.
    let first = running.wait_for("the first round", |s| s.synced).await;
    assert_eq!(first.last_error, None);
    assert_eq!(
        addresses(&first.groups),
        ["10.0.0.1:80", "10.0.0.2:80", "10.0.1.1:9100"]
    );
    let json_group = group(&first, &format!("{json_path}:0")).expect("the JSON file's group");
    assert_eq!(json_group.labels.get("__meta_filepath"), Some(json_path.as_str()));
    assert_eq!(json_group.labels.get("env"), Some("prod"));
    let yaml_group = Arc::clone(group(&first, &format!("{yaml_path}:0")).expect("the YAML file's group"));
    assert_eq!(yaml_group.labels.get("team"), Some("infra"));

    // Edit: the new content replaces the old; the untouched file's group keeps its pointer.
    replace_file(&json, r#"[{"targets": ["10.0.0.3:80"]}, {"targets": ["10.0.0.4:80"]}]"#);
    let edited = running
        .wait_for("the edited JSON file", |s| {
            addresses(&s.groups) == ["10.0.0.3:80", "10.0.0.4:80", "10.0.1.1:9100"]
        })
        .await;
    assert!(group(&edited, &format!("{json_path}:1")).is_some());
    assert!(Arc::ptr_eq(
        group(&edited, &format!("{yaml_path}:0")).expect("YAML group"),
        &yaml_group
    ));

    // Garbage: the last good groups stay, the problem is reported.
    replace_file(&json, "[{\"targets\": [\"10.0.0.9:80\"");
    let broken = running
        .wait_for("the malformed file reported", |s| {
            s.last_error.as_deref().is_some_and(|e| e.contains("a.json"))
        })
        .await;
    assert_eq!(
        addresses(&broken.groups),
        ["10.0.0.3:80", "10.0.0.4:80", "10.0.1.1:9100"]
    );

    // Fixed: the error clears and the new content is used.
    replace_file(&json, r#"[{"targets": ["10.0.0.5:80"]}]"#);
    running
        .wait_for("the fixed file", |s| {
            s.last_error.is_none() && addresses(&s.groups) == ["10.0.0.5:80", "10.0.1.1:9100"]
        })
        .await;

    // Deleted: its groups disappear.
    std::fs::remove_file(&yaml).expect("delete the YAML file");
    running
        .wait_for("the deleted file's groups gone", |s| {
            addresses(&s.groups) == ["10.0.0.5:80"]
        })
        .await;

    // New file matching the glob: picked up.
    replace_file(&dir.join("c.json"), r#"[{"targets": ["10.0.2.1:80"]}]"#);
    let grown = running
        .wait_for("the new file", |s| {
            addresses(&s.groups) == ["10.0.0.5:80", "10.0.2.1:80"]
        })
        .await;
    assert_eq!(grown.last_error, None);

    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_refresh_interval_alone_picks_up_a_file_no_notification_announced() {
    // The directory does not exist at start, so it cannot be watched and its creation is
    // not seen: only the periodic re-read can find the file.
    let directory = tempfile::tempdir().expect("temporary directory");
    let late = directory.path().join("late");
    let files = vec![format!("{}/*.yaml", late.display())];
    let mut running = Running::start(provider(files, Duration::from_millis(200)));
    let first = running.wait_for("the first round", |s| s.synced).await;
    assert!(first.groups.is_empty());
    assert_eq!(first.last_error, None);

    std::fs::create_dir(&late).expect("create the directory");
    replace_file(&late.join("targets.yaml"), "- targets: [late:1]\n");
    running
        .wait_for("the file found by a periodic round", |s| {
            addresses(&s.groups) == ["late:1"]
        })
        .await;
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_file_at_start_syncs_with_nothing_and_an_error() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let path = directory.path().join("bad.yaml");
    replace_file(&path, "- targets: [a:1]\n  unexpected: field\n");
    let missing = directory.path().join("missing.json");
    let files = vec![path.display().to_string(), missing.display().to_string()];
    let mut running = Running::start(provider(files, HOUR));
    let first = running.wait_for("the first round", |s| s.synced).await;
    assert!(first.groups.is_empty());
    let error = first.last_error.expect("the malformed file is reported");
    assert!(error.contains("bad.yaml") && error.contains("unexpected"), "{error}");
    running.stop().await;
}

/// A round costs a `stat` for a file whose metadata did not change and a hash for one whose
/// bytes did not; a write that keeps size and timestamp tick is still seen (the "racy"
/// window), and so is any real change.
#[test]
fn unchanged_files_are_not_parsed_again_and_same_size_rewrites_are_still_seen() {
    use target_allocator::discovery::file_sd::FileDiscovery;
    let directory = tempfile::tempdir().expect("temporary directory");
    let path = directory.path().join("targets.json");
    let write_in_place = |text: &str| std::fs::write(&path, text).expect("write the file");
    write_in_place(r#"[{"targets": ["10.0.0.1:80"], "labels": {"env": "aaaa"}}]"#);
    let mut discovery = FileDiscovery::new(vec![path.display().to_string()]);

    let (first, error) = discovery.refresh_now();
    assert_eq!(error, None);
    assert_eq!(addresses(&first), ["10.0.0.1:80"]);

    // Nothing changed: the very same group.
    let (again, _) = discovery.refresh_now();
    assert!(Arc::ptr_eq(&first[0], &again[0]));

    // Rewritten in place at once with other bytes of the same length: inside the racy
    // window the fingerprint is not trusted, so the change is read.
    write_in_place(r#"[{"targets": ["10.0.0.1:80"], "labels": {"env": "bbbb"}}]"#);
    let (changed, _) = discovery.refresh_now();
    assert_eq!(changed[0].labels.get("env"), Some("bbbb"));

    // Rewritten with identical bytes: read and hashed, not parsed; the same group again.
    write_in_place(r#"[{"targets": ["10.0.0.1:80"], "labels": {"env": "bbbb"}}]"#);
    let (same, _) = discovery.refresh_now();
    assert!(Arc::ptr_eq(&changed[0], &same[0]));

    // A file that became unreadable JSON keeps its last good groups and reports why.
    write_in_place("[{");
    let (kept, error) = discovery.refresh_now();
    assert!(Arc::ptr_eq(&changed[0], &kept[0]));
    assert!(error.is_some_and(|e| e.contains("targets.json")));
}

#[test]
fn a_round_that_changes_nothing_reports_nothing_and_every_change_is_reported() {
    use target_allocator::discovery::file_sd::FileDiscovery;
    let directory = tempfile::tempdir().expect("temporary directory");
    let path = directory.path().join("targets.json");
    let write = |text: &str| std::fs::write(&path, text).expect("write the file");
    write(r#"[{"targets": ["10.0.0.1:80"]}]"#);
    let mut discovery = FileDiscovery::new(vec![path.display().to_string()]);

    let (first, error) = discovery
        .refresh_now_if_changed()
        .expect("the first round always answers");
    assert_eq!((addresses(&first), error), (vec!["10.0.0.1:80".to_string()], None));
    assert!(discovery.refresh_now_if_changed().is_none(), "nothing changed");
    // The full round still answers with everything.
    assert_eq!(addresses(&discovery.refresh_now().0), ["10.0.0.1:80"]);

    write(r#"[{"targets": ["10.0.0.2:80"]}]"#);
    let (changed, _) = discovery.refresh_now_if_changed().expect("new bytes");
    assert_eq!(addresses(&changed), ["10.0.0.2:80"]);

    // Broken: the same groups, a new problem, reported once.
    write("[{");
    let (kept, error) = discovery.refresh_now_if_changed().expect("a new problem");
    assert_eq!(addresses(&kept), ["10.0.0.2:80"]);
    assert!(error.is_some_and(|e| e.contains("targets.json")));
    assert!(discovery.refresh_now_if_changed().is_none(), "the same problem again");
    let (_, error) = discovery.refresh_now();
    assert!(error.is_some(), "a full round repeats the standing problem");

    std::fs::remove_file(&path).expect("remove the file");
    let (gone, error) = discovery.refresh_now_if_changed().expect("a file gone");
    assert!(gone.is_empty());
    assert_eq!(error, None);
}
