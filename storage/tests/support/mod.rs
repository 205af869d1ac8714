//! A minimal key-value state machine used to exercise the store without any target logic.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fmt;
use std::io;

use openraft::EntryPayload;
use openraft::entry::RaftEntry;
use openraft::storage::IOFlushed;
use openraft::storage::RaftLogStorage;
use openraft::testing::log::StoreBuilder;
use serde::Deserialize;
use serde::Serialize;
use ta_storage::DataDir;
use ta_storage::LogStore;
use ta_storage::Record;
use ta_storage::SnapshotSource;
use ta_storage::StateMachineLogic;
use ta_storage::StateMachineStore;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Put {
    pub key: String,
    pub value: Option<String>,
}

impl fmt::Display for Put {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "put({}={:?})", self.key, self.value)
    }
}

openraft::declare_raft_types!(
    pub KvTypes: D = Put, R = Option<String>,
);

pub type Entry = openraft::Entry<openraft::alias::CommittedLeaderIdOf<KvTypes>, openraft::alias::PayloadOf<KvTypes>>;

#[derive(Default, Debug, Clone, PartialEq)]
pub struct KvLogic {
    pub map: BTreeMap<String, String>,
}

/// A frozen copy of the map, for snapshots.
pub struct FrozenKv(BTreeMap<String, String>);

impl SnapshotSource for FrozenKv {
    fn records(&self) -> Box<dyn Iterator<Item = Record> + '_> {
        Box::new(
            self.0
                .iter()
                .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec())),
        )
    }
}

impl StateMachineLogic<KvTypes> for KvLogic {
    type Frozen = FrozenKv;

    fn apply(&mut self, entry: &Entry) -> Option<String> {
        let EntryPayload::Normal(put) = &entry.payload else {
            return None;
        };
        match &put.value {
            Some(v) => self.map.insert(put.key.clone(), v.clone()),
            None => self.map.remove(&put.key),
        }
    }

    fn freeze(&self) -> FrozenKv {
        FrozenKv(self.map.clone())
    }

    fn restore(&mut self, records: &mut dyn Iterator<Item = Record>) -> Result<(), String> {
        let mut map = BTreeMap::new();
        for (k, v) in records {
            let k = String::from_utf8(k).map_err(|e| e.to_string())?;
            let v = String::from_utf8(v).map_err(|e| e.to_string())?;
            map.insert(k, v);
        }
        self.map = map;
        Ok(())
    }
}

pub type Stores = (LogStore<KvTypes>, StateMachineStore<KvTypes, KvLogic>);

/// Open the stores in `dir`. Tests reopen a directory in the same process right after
/// dropping it, and sled's background flusher can hold the file lock for a moment after the
/// last handle is gone; only that lock error is retried, briefly. (A restarted replica is a
/// new process and never sees it.)
pub fn open(dir: &std::path::Path) -> Result<Stores, ta_storage::StorageError> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    loop {
        match DataDir::open(dir) {
            Err(e) if e.to_string().contains("could not acquire lock") && std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => return Err(e),
            Ok(data_dir) => return ta_storage::open_stores(&data_dir, KvLogic::default()),
        }
    }
}

/// Open the stores in `dir` and bring them to the state a restarted replica starts from,
/// with openraft's own start-up code: the snapshot loaded, the committed log re-applied.
pub async fn restart(dir: &std::path::Path) -> Stores {
    let (mut log, mut sm) = open(dir).expect("reopen");
    openraft::StorageHelper::new(&mut log, &mut sm)
        .with_id(1)
        .get_initial_state()
        .await
        .expect("initial state");
    (log, sm)
}

/// Builds a fresh store in its own temporary directory for each conformance case.
pub struct TempStoreBuilder;

impl StoreBuilder<KvTypes, LogStore<KvTypes>, StateMachineStore<KvTypes, KvLogic>, tempfile::TempDir>
    for TempStoreBuilder
{
    async fn build(
        &self,
    ) -> Result<
        (
            tempfile::TempDir,
            LogStore<KvTypes>,
            StateMachineStore<KvTypes, KvLogic>,
        ),
        openraft::StorageError<KvTypes>,
    > {
        let dir = tempfile::tempdir().expect("tempdir");
        let (log, sm) = open(dir.path()).expect("open store");
        Ok((dir, log, sm))
    }
}

pub fn log_id(term: u64, index: u64) -> openraft::alias::LogIdOf<KvTypes> {
    use openraft::vote::RaftLeaderIdExt;
    openraft::LogId::new(openraft::alias::LeaderIdOf::<KvTypes>::new_committed(term, 1), index)
}

pub fn normal(term: u64, index: u64, key: &str, value: &str) -> Entry {
    Entry::new_normal(
        log_id(term, index),
        Put {
            key: key.into(),
            value: Some(value.into()),
        },
    )
}

/// Append through the real trait, waiting for the durability callback.
pub async fn append(log: &mut LogStore<KvTypes>, entries: Vec<Entry>) -> io::Result<()> {
    use openraft::type_config::TypeConfigExt;
    let (tx, rx) = KvTypes::oneshot();
    log.append(entries, IOFlushed::signal(tx)).await?;
    rx.await.expect("callback fired")
}
