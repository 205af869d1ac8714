//! A restart rebuilds the table exactly: over seeded random histories of batches (new
//! targets, removals, moves, collector changes) applied through the real store, with
//! snapshots and log purges at random points, reopening the data directory and running
//! openraft's own start-up code (snapshot loaded, committed log re-applied) gives the very
//! table that was served before, and the same table a pure `apply` of the whole history gives.
//!
//! `TA_TEST_SEED=N` replays one history; a failure prints its seed.

use std::collections::BTreeMap;
use std::collections::BTreeSet;

use openraft::Membership;
use openraft::RaftSnapshotBuilder;
use openraft::entry::RaftEntry;
use openraft::storage::IOFlushed;
use openraft::storage::RaftLogStorage;
use openraft::storage::RaftStateMachine;
use openraft::type_config::TypeConfigExt;
use openraft::vote::RaftLeaderIdExt;
use rand::Rng;
use rand::SeedableRng;
use rand::rngs::StdRng;
use ta_raft::CollectorState;
use ta_raft::Command;
use ta_raft::CommandBuilder;
use ta_raft::Expect;
use ta_raft::Table;
use ta_raft::TargetId;
use ta_raft::intern::Symbol;
use ta_raft::model::LabelMerger;
use ta_raft::model::Labels;
use ta_raft::persist::TableMachine;
use ta_raft::types::Entry;
use ta_raft::types::LogId;
use ta_raft::types::PeerNode;
use ta_raft::types::TypeConfig;
use ta_raft::workload::BatchShape;

/// The stores of one data directory, and the table they serve to readers.
type Stores = (
    ta_storage::LogStore<TypeConfig>,
    ta_storage::StateMachineStore<TypeConfig, TableMachine>,
    tokio::sync::watch::Receiver<Table>,
);

const NODE: u64 = 7;
const COLLECTORS: [&str; 3] = ["collector-0", "collector-1", "collector-2"];

fn log_id(index: u64) -> LogId {
    openraft::LogId::new(openraft::alias::LeaderIdOf::<TypeConfig>::new_committed(1, NODE), index)
}

fn open(dir: &std::path::Path) -> Stores {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    loop {
        // A directory dropped a moment ago may still be locked by sled's flusher thread.
        match ta_storage::DataDir::open(dir) {
            Err(e) if e.is_locked_by_another_process() && std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => panic!("open {}: {e}", dir.display()),
            Ok(data_dir) => {
                let (machine, served) = TableMachine::new();
                let (log, state_machine) = ta_storage::open_stores(&data_dir, machine).expect("open the stores");
                return (log, state_machine, served);
            }
        }
    }
}

/// New targets of discovered groups: each target's labels are its group's merged with its
/// own (some of which override the group's), as discovery makes them, and commands and
/// snapshots carry them apart (the group's labels once).
fn grouped_targets(rng: &mut StdRng, next_target: &mut u64) -> Command {
    let symbol = |text: &str| Symbol::from(text);
    let mut builder = CommandBuilder::new();
    for collector in COLLECTORS {
        builder.set_collector(collector, None, CollectorState::Ready);
    }
    let job = symbol("job-of-groups");
    let mut merger = LabelMerger::new();
    for _ in 0..rng.gen_range(1..20) {
        let group_number = *next_target;
        let group = Labels::new(
            (0..rng.gen_range(0..30))
                .map(|i| {
                    (
                        symbol(&format!("__meta_group_{i}")),
                        symbol(&format!("g{}-{i}", group_number % 5)),
                    )
                })
                .collect(),
        );
        for t in 0..rng.gen_range(1..12u64) {
            let mut own = vec![(symbol("__address__"), symbol(&format!("10.{group_number}.{t}:80")))];
            if rng.gen_bool(0.3) {
                own.push((symbol("__meta_group_0"), symbol("overridden")));
            }
            let labels = Labels::merge(&group, &Labels::new(own), &mut merger);
            let collector = symbol(COLLECTORS[rng.gen_range(0..COLLECTORS.len())]);
            builder.upsert_target_labels(
                TargetId(*next_target),
                &job,
                &labels,
                Some(&collector),
                Expect::Anything,
            );
            *next_target += 1;
        }
    }
    builder.build()
}

/// One random batch against the table as it is: add new targets (some of discovered
/// groups), remove or move some that exist, or flip a collector between ready and absent.
fn random_batch(rng: &mut StdRng, table: &Table, next_target: &mut u64, seed: u64) -> Command {
    match rng.gen_range(0..5) {
        0 | 1 => {
            let shape = BatchShape {
                targets: rng.gen_range(1..200),
                labels_per_target: rng.gen_range(8..44),
                collectors: COLLECTORS.len(),
                jobs: 5,
            };
            let command = ta_raft::workload::new_targets(seed, *next_target, &shape);
            *next_target += shape.targets as u64;
            command
        }
        4 => grouped_targets(rng, next_target),
        2 => {
            let mut builder = CommandBuilder::new();
            let ids: Vec<TargetId> = table.targets().keys().copied().collect();
            let mut touched = BTreeSet::new();
            for _ in 0..rng.gen_range(1..50usize).min(ids.len()) {
                let id = ids[rng.gen_range(0..ids.len())];
                if !touched.insert(id) {
                    continue;
                }
                let owner = table.targets().get(&id).and_then(|t| t.collector.as_deref());
                if rng.gen_bool(0.5) {
                    builder.remove_target(id, Expect::Present);
                } else {
                    let to = COLLECTORS[rng.gen_range(0..COLLECTORS.len())];
                    builder.move_target(id, owner, Some(to));
                }
            }
            builder.build()
        }
        _ => {
            let mut builder = CommandBuilder::new();
            let collector = COLLECTORS[rng.gen_range(0..COLLECTORS.len())];
            let state = if rng.gen_bool(0.5) {
                CollectorState::Ready
            } else {
                CollectorState::AbsentSince {
                    unix_millis: rng.gen_range(1..1_000_000),
                }
            };
            builder.set_collector(collector, Some("node"), state);
            builder.build()
        }
    }
}

async fn append(log: &mut ta_storage::LogStore<TypeConfig>, entries: Vec<Entry>) {
    let (done, flushed) = TypeConfig::oneshot();
    log.append(entries, IOFlushed::signal(done)).await.expect("append");
    flushed.await.expect("flush signal").expect("flushed");
}

async fn one_history(seed: u64) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut rng = StdRng::seed_from_u64(seed);
    let served: Table;
    let mut pure = Table::new();
    {
        let (mut log, mut state_machine, tables) = open(dir.path());
        log.save_vote(&openraft::impls::Vote::new(1, NODE)).await.expect("vote");
        let membership = Membership::new(
            vec![BTreeSet::from([NODE])],
            BTreeMap::from([(
                NODE,
                PeerNode {
                    name: "ta-0".into(),
                    url: "http://ta-0:7400".into(),
                },
            )]),
        )
        .expect("membership");
        let first = Entry::new_membership(log_id(0), membership);
        append(&mut log, vec![first.clone()]).await;
        state_machine
            .apply(futures::stream::iter([Ok((first, None))]))
            .await
            .expect("apply the membership");

        let mut next_target = 0u64;
        let mut last_snapshot: Option<u64> = None;
        let mut purged: Option<u64> = None;
        let batches = rng.gen_range(5..40u64);
        for index in 1..=batches {
            let command = random_batch(&mut rng, &pure, &mut next_target, seed);
            pure = ta_raft::apply::apply(&pure, index, &command).table;
            let entry = Entry::new_normal(log_id(index), command);
            append(&mut log, vec![entry.clone()]).await;
            log.save_committed(Some(log_id(index))).await.expect("committed");
            state_machine
                .apply(futures::stream::iter([Ok((entry, None))]))
                .await
                .expect("apply");
            if rng.gen_bool(0.15) {
                state_machine
                    .get_snapshot_builder()
                    .await
                    .build_snapshot()
                    .await
                    .expect("snapshot");
                last_snapshot = Some(index);
            }
            if let Some(at) = last_snapshot
                && rng.gen_bool(0.2)
            {
                // openraft purges only what a snapshot covers, and never backwards.
                let from = purged.map_or(0, |p| p + 1);
                if from <= at {
                    let upto = rng.gen_range(from..=at);
                    log.purge(log_id(upto)).await.expect("purge");
                    purged = Some(upto);
                }
            }
        }
        served = tables.borrow().clone();
        assert_eq!(served, pure, "seed {seed}: the store applied what a pure apply gives");
    }

    let (mut log, mut state_machine, tables) = open(dir.path());
    openraft::StorageHelper::new(&mut log, &mut state_machine)
        .with_id(NODE)
        .get_initial_state()
        .await
        .unwrap_or_else(|e| panic!("seed {seed}: restart failed: {e}"));
    let restored = tables.borrow().clone();
    assert_eq!(
        restored, served,
        "seed {seed}: the restarted table differs from the one served"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_rebuilds_exactly_the_table_served_before() {
    let seeds: Vec<u64> = match std::env::var("TA_TEST_SEED") {
        Ok(seed) => vec![seed.parse().expect("TA_TEST_SEED is a number")],
        Err(_) => {
            let base: u64 = rand::random();
            (0..12).map(|i| base.wrapping_add(i)).collect()
        }
    };
    for seed in seeds {
        eprintln!("history seed {seed} (TA_TEST_SEED={seed} replays it)");
        one_history(seed).await;
    }
}
