//! Write, drop, reopen: the same state comes back. Damage a byte on disk: the replica refuses
//! to open with an error naming the file, never a panic or a silently shorter log.

mod support;

use openraft::RaftLogReader;
use openraft::RaftSnapshotBuilder;
use openraft::storage::RaftLogStorage;
use openraft::storage::RaftStateMachine;
use support::*;

async fn apply(sm: &mut ta_storage::StateMachineStore<KvTypes, KvLogic>, entries: Vec<Entry>) {
    let stream = futures::stream::iter(entries.into_iter().map(|e| Ok((e, None))));
    sm.apply(stream).await.unwrap();
}

fn big_value(seed: usize) -> String {
    // Several sled chunks long, to exercise chunking on both trees.
    (0..120_000)
        .map(|i| (b'a' + ((i * 7 + seed) % 26) as u8) as char)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everything_written_comes_back_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let vote = openraft::alias::VoteOf::<KvTypes>::new(3, 1);
    {
        let (mut log, mut sm) = open(dir.path()).unwrap();
        let mut entries: Vec<Entry> = (1..=20)
            .map(|i| normal(3, i, &format!("k{}", i % 7), &format!("v{i}")))
            .collect();
        entries.push(normal(3, 21, "big", &big_value(1)));
        append(&mut log, entries.clone()).await.unwrap();
        log.save_vote(&vote).await.unwrap();
        log.save_committed(Some(log_id(3, 21))).await.unwrap();
        apply(&mut sm, entries[..15].to_vec()).await;
        sm.get_snapshot_builder().await.build_snapshot().await.unwrap();
        apply(&mut sm, entries[15..].to_vec()).await;
        log.purge(log_id(3, 5)).await.unwrap();
        // The committed index is persisted lazily; one more append flushes it.
        append(&mut log, vec![normal(3, 22, "k1", "last")]).await.unwrap();
    }

    let (log, sm) = open(dir.path()).unwrap();
    assert_eq!(
        sm.applied().0,
        Some(log_id(3, 15)),
        "the state machine opens at its snapshot"
    );
    drop((log, sm));
    let (mut log, mut sm) = restart(dir.path()).await;
    let state = log.get_log_state().await.unwrap();
    assert_eq!(state.last_purged_log_id, Some(log_id(3, 5)));
    assert_eq!(state.last_log_id, Some(log_id(3, 22)));
    assert_eq!(log.read_vote().await.unwrap(), Some(vote));
    assert_eq!(log.read_committed().await.unwrap(), Some(log_id(3, 21)));
    let entries = log.try_get_log_entries(0..100).await.unwrap();
    assert_eq!(entries.first().map(|e| e.log_id.index), Some(6));
    assert_eq!(entries.len(), 17);
    let big = entries.iter().find(|e| e.log_id.index == 21).unwrap();
    assert!(
        matches!(&big.payload, openraft::EntryPayload::Normal(p) if p.value.as_deref() == Some(big_value(1).as_str()))
    );

    let (applied, _) = sm.applied_state().await.unwrap();
    assert_eq!(applied, Some(log_id(3, 21)));
    assert_eq!(sm.logic().map.get("big").map(String::len), Some(120_000));
    assert_eq!(sm.logic().map.get("k0").map(String::as_str), Some("v14"));
    let snapshot = sm.get_current_snapshot().await.unwrap().expect("snapshot kept");
    assert_eq!(snapshot.meta.last_log_id, Some(log_id(3, 15)));

    let blobs = dir.path().join("sled/blobs");
    let blob_files = std::fs::read_dir(&blobs).map(|d| d.count()).unwrap_or(0);
    assert_eq!(blob_files, 0, "sled must never fall back to un-fsynced blob files");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hole_in_the_log_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _sm) = open(dir.path()).unwrap();
    append(&mut log, vec![normal(1, 1, "a", "1"), normal(1, 2, "b", "2")])
        .await
        .unwrap();
    let err = append(&mut log, vec![normal(1, 4, "c", "3")]).await.unwrap_err();
    assert!(err.to_string().contains("hole"), "{err}");
    let err = append(&mut log, vec![normal(1, 3, "c", "3"), normal(1, 5, "d", "4")])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not contiguous"), "{err}");
    assert_eq!(log.get_log_state().await.unwrap().last_log_id, Some(log_id(1, 2)));
}

/// Flip one byte of the first occurrence of `needle` in `file`.
fn flip_byte_of(file: &std::path::Path, needle: &[u8]) {
    let mut bytes = std::fs::read(file).unwrap();
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .unwrap_or_else(|| panic!("{needle:?} not found in {}", file.display()));
    bytes[at + needle.len() / 2] ^= 0x40;
    std::fs::write(file, bytes).unwrap();
}

/// Opening `dir` must fail with a corruption error that names `file`.
fn assert_refuses_naming(dir: &std::path::Path, file: &std::path::Path) {
    let err = open(dir).err().expect("a damaged data directory must not open");
    assert!(err.is_corruption(), "{err}");
    assert!(err.to_string().contains(&file.display().to_string()), "{err}");
}

/// The current snapshot file of the data directory `dir`.
fn snapshot_file(dir: &std::path::Path) -> std::path::PathBuf {
    std::fs::read_dir(dir.join("snapshots"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "snap"))
        .expect("snapshot file")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flipped_byte_in_the_database_refuses_to_start_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut log, mut sm) = open(dir.path()).unwrap();
        let entries: Vec<Entry> = (1..=200)
            .map(|i| normal(2, i, &format!("key-{i}"), &format!("MARKER-{i:05}-value")))
            .collect();
        append(&mut log, entries.clone()).await.unwrap();
        apply(&mut sm, entries).await;
    }
    // A value in the middle of the log: sled itself would silently recover only the records
    // before it.
    flip_byte_of(&dir.path().join("sled/db"), b"MARKER-00100-value");

    assert_refuses_naming(dir.path(), &dir.path().join("sled/db"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flipped_byte_in_the_snapshot_refuses_to_start_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut log, mut sm) = open(dir.path()).unwrap();
        let entries: Vec<Entry> = (1..=30)
            .map(|i| normal(2, i, &format!("key-{i}"), &format!("SNAPVALUE-{i:04}")))
            .collect();
        append(&mut log, entries.clone()).await.unwrap();
        apply(&mut sm, entries).await;
        sm.get_snapshot_builder().await.build_snapshot().await.unwrap();
    }
    let snapshot = snapshot_file(dir.path());
    flip_byte_of(&snapshot, b"SNAPVALUE-0017");

    assert_refuses_naming(dir.path(), &snapshot);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_witness_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut log, _sm) = open(dir.path()).unwrap();
        append(&mut log, vec![normal(1, 1, "a", "1")]).await.unwrap();
    }
    std::fs::remove_file(dir.path().join(ta_storage::WITNESS_FILE)).unwrap();
    assert_refuses_naming(dir.path(), &dir.path().join(ta_storage::WITNESS_FILE));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncation_lowers_the_witness_so_a_legitimately_shorter_log_reopens() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut log, _sm) = open(dir.path()).unwrap();
        append(&mut log, (1..=10).map(|i| normal(1, i, "k", "v")).collect())
            .await
            .unwrap();
        log.truncate_after(Some(log_id(1, 4))).await.unwrap();
    }
    let (mut log, _sm) = open(dir.path()).unwrap();
    assert_eq!(log.get_log_state().await.unwrap().last_log_id, Some(log_id(1, 4)));
}

fn payload_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir.join("log-payloads"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    files.sort();
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_entries_live_in_payload_files_and_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let huge = "LARGE-PAYLOAD-".repeat(50_000);
    {
        let (mut log, _sm) = open(dir.path()).unwrap();
        append(
            &mut log,
            vec![
                normal(1, 1, "a", "1"),
                normal(1, 2, "big", &huge),
                normal(1, 3, "c", "3"),
            ],
        )
        .await
        .unwrap();
        assert_eq!(payload_files(dir.path()).len(), 1, "only the large entry leaves sled");
    }
    let (mut log, _sm) = open(dir.path()).unwrap();
    let entries = log.try_get_log_entries(1..4).await.unwrap();
    assert!(
        matches!(&entries[1].payload, openraft::EntryPayload::Normal(p) if p.value.as_deref() == Some(huge.as_str()))
    );

    log.truncate_after(Some(log_id(1, 1))).await.unwrap();
    assert!(
        payload_files(dir.path()).is_empty(),
        "truncation removes the payload file"
    );
    append(&mut log, vec![normal(2, 2, "big", &huge)]).await.unwrap();
    log.purge(log_id(2, 2)).await.unwrap();
    assert!(payload_files(dir.path()).is_empty(), "purge removes the payload file");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_payload_file_refuses_to_start_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut log, _sm) = open(dir.path()).unwrap();
        append(&mut log, vec![normal(1, 1, "big", &"DAMAGE-ME-".repeat(40_000))])
            .await
            .unwrap();
    }
    let file = payload_files(dir.path()).pop().unwrap();
    flip_byte_of(&file, b"DAMAGE-ME-DAMAGE-ME-");
    assert_refuses_naming(dir.path(), &file);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orphaned_payload_files_are_removed_at_open() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut log, _sm) = open(dir.path()).unwrap();
        append(&mut log, vec![normal(1, 1, "big", &"x".repeat(400_000))])
            .await
            .unwrap();
    }
    let orphan = dir
        .path()
        .join("log-payloads/00000000000000000009.00000000deadbeef.entry");
    std::fs::write(&orphan, b"left behind by a crash").unwrap();
    let (mut log, _sm) = open(dir.path()).unwrap();
    assert!(!orphan.exists());
    assert_eq!(payload_files(dir.path()).len(), 1, "the referenced file stays");
    assert_eq!(log.try_get_log_entries(1..2).await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_was_applied_comes_back_from_the_snapshot_and_the_log_without_a_saved_commit() {
    let dir = tempfile::tempdir().unwrap();
    // From index 0, as openraft's log starts (its first membership entry).
    let entries: Vec<Entry> = (0..=25)
        .map(|i| normal(1, i, &format!("k{}", i % 5), &format!("v{i}")))
        .collect();
    let served = {
        let (mut log, mut sm) = open(dir.path()).unwrap();
        append(&mut log, entries.clone()).await.unwrap();
        log.save_vote(&openraft::alias::VoteOf::<KvTypes>::new(1, 1))
            .await
            .unwrap();
        apply(&mut sm, entries[..=20].to_vec()).await;
        sm.get_snapshot_builder().await.build_snapshot().await.unwrap();
        // Applied (and so servable) with no save_committed from openraft and no later flush:
        // the apply itself must have made the replay point durable.
        apply(&mut sm, entries[21..].to_vec()).await;
        sm.logic().map.clone()
    };

    let (mut log, sm) = open(dir.path()).unwrap();
    assert_eq!(
        sm.applied().0,
        Some(log_id(1, 20)),
        "the state machine opens at its snapshot"
    );
    let after = log.try_get_log_entries(21..26).await.unwrap();
    assert_eq!(after.len(), 5, "the entries after the snapshot are there to re-apply");
    drop((log, sm));

    let (_log, mut sm) = restart(dir.path()).await;
    assert_eq!(sm.applied_state().await.unwrap().0, Some(log_id(1, 25)));
    assert_eq!(
        sm.logic().map,
        served,
        "a restart serves at least what was served before"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_apply_without_a_snapshot_comes_back_by_replaying_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let entries: Vec<Entry> = (0..2000).map(|i| normal(1, i, &format!("key-{i}"), "v")).collect();
    {
        let (mut log, mut sm) = open(dir.path()).unwrap();
        append(&mut log, entries.clone()).await.unwrap();
        log.save_vote(&openraft::alias::VoteOf::<KvTypes>::new(1, 1))
            .await
            .unwrap();
        apply(&mut sm, entries).await;
    }
    let (_log, mut sm) = restart(dir.path()).await;
    assert_eq!(sm.applied_state().await.unwrap().0, Some(log_id(1, 1999)));
    assert_eq!(sm.logic().map.len(), 2000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purge_interrupted_past_the_end_of_the_log_is_finished_at_open() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut log, _sm) = open(dir.path()).unwrap();
        append(&mut log, (1..=5).map(|i| normal(1, i, "k", "v")).collect())
            .await
            .unwrap();
        // A snapshot at 9 installed past the log's end, then a crash mid-purge.
        log.simulate_interrupted_purge(&log_id(1, 9)).unwrap();
    }
    let (mut log, _sm) = open(dir.path()).unwrap();
    let state = log.get_log_state().await.unwrap();
    assert_eq!(state.last_purged_log_id, Some(log_id(1, 9)));
    assert_eq!(
        state.last_log_id,
        Some(log_id(1, 9)),
        "no entry at or below the purge point survives"
    );
    assert!(log.try_get_log_entries(0..20).await.unwrap().is_empty());
    append(&mut log, vec![normal(1, 10, "k", "v")]).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_current_snapshot_refuses_to_start_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut log, mut sm) = open(dir.path()).unwrap();
        let entries: Vec<Entry> = (1..=3).map(|i| normal(1, i, "k", "v")).collect();
        append(&mut log, entries.clone()).await.unwrap();
        apply(&mut sm, entries).await;
        sm.get_snapshot_builder().await.build_snapshot().await.unwrap();
    }
    let snapshot = snapshot_file(dir.path());
    std::fs::remove_file(&snapshot).unwrap();
    assert_refuses_naming(dir.path(), &snapshot);
}
