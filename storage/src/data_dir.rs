//! One replica's data directory: the sled database, the durability witness, snapshot files,
//! and the durable flush every write path ends with.
//!
//! ```text
//! <data_dir>/
//!   sled/              sled 0.34 database (trees: meta, log, state-<generation>)
//!   sled/db            the file fsync'd after every durable flush
//!   durable-witness    high-water marks, checked against sled at open (see witness.rs)
//!   snapshots/         snapshot-<term>-<index>.snap files (see snapshot_file.rs)
//!   log-payloads/      log entries too large for sled (see payloads.rs)
//! ```

use std::fs::File;
use std::path::Path;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;

use crate::envelope;
use crate::error::StorageError;
use crate::witness::Marks;
use crate::witness::Witness;
use crate::witness::sync_directory;

/// sled segment size. Large enough that chunked values never reach sled's blob threshold.
const SEGMENT_SIZE: usize = 8 << 20;
/// sled page cache. The default 1 GiB is far more than the allocator's working set.
const CACHE_CAPACITY: u64 = 128 << 20;
/// sled's background flusher is the only periodic full fsync it does on its own.
const FLUSH_EVERY_MS: u64 = 500;

/// Every entry `DataDir` creates directly under a data directory. Anything else found there
/// (a filesystem's `lost+found`, an operator's backup) is not the replica's state.
pub const DATA_DIR_ENTRIES: [&str; 4] = [
    "sled",
    crate::witness::WITNESS_FILE,
    "snapshots",
    crate::payloads::DIRECTORY,
];

pub(crate) const META_TREE: &str = "meta";
pub(crate) const LOG_TREE: &str = "log";
pub(crate) const STATE_TREE_PREFIX: &str = "state-";
const APP_META_PREFIX: &[u8] = b"app/";

/// Shared by the log store, the state machine store and the snapshot builder.
pub(crate) struct Shared {
    pub dir: PathBuf,
    pub db_path: PathBuf,
    pub snapshot_dir: PathBuf,
    /// Large log entries (see `payloads`).
    pub payload_dir: PathBuf,
    pub db: sled::Db,
    pub meta: sled::Tree,
    pub log: sled::Tree,
    db_file: File,
    /// Locked only inside blocking sections, never across an `.await`.
    witness: Mutex<Witness>,
    /// `committed index + 1` last inserted into `meta` (durable after the next flush).
    pub committed_written: AtomicU64,
    /// `applied index + 1` last written to the state tree (durable after the next flush).
    pub applied_written: AtomicU64,
    /// `applied index + 1` of the state machine in memory: the log's cache of recent entries
    /// drops what is applied.
    pub applied_in_memory: AtomicU64,
}

impl Shared {
    pub fn sled_error(&self, operation: &'static str) -> impl FnOnce(sled::Error) -> StorageError + '_ {
        move |e| match e {
            sled::Error::Corruption { .. } => StorageError::corrupted(&self.db_path, e.to_string()),
            other => StorageError::sled(&self.db_path, operation, other),
        }
    }

    /// Make every write issued so far durable: sled flush, then a real fsync of `sled/db`
    /// (sled 0.34 only calls `sync_file_range`), then raise the witness marks with `raise`
    /// plus the committed/applied values written before the flush.
    pub async fn flush_durable(
        self: &Arc<Self>,
        raise: impl FnOnce(&mut Marks) + Send + 'static,
    ) -> Result<(), StorageError> {
        let written = self.written_marks();
        self.db.flush_async().await.map_err(self.sled_error("flush"))?;
        let shared = Arc::clone(self);
        tokio::task::spawn_blocking(move || shared.sync_and_record(raise, written))
            .await
            .map_err(|e| StorageError::Contract(format!("fsync task failed: {e}")))?
    }

    /// [`Shared::flush_durable`] for callers already on a blocking thread.
    pub fn flush_durable_blocking(&self, raise: impl FnOnce(&mut Marks)) -> Result<(), StorageError> {
        let written = self.written_marks();
        self.db.flush().map_err(self.sled_error("flush"))?;
        self.sync_and_record(raise, written)
    }

    /// `(committed, applied)` written so far: read before a flush, covered by it.
    fn written_marks(&self) -> (u64, u64) {
        (
            self.committed_written.load(Ordering::Acquire),
            self.applied_written.load(Ordering::Acquire),
        )
    }

    fn sync_and_record(
        &self,
        raise: impl FnOnce(&mut Marks),
        (committed, applied): (u64, u64),
    ) -> Result<(), StorageError> {
        self.db_file
            .sync_all()
            .map_err(|e| StorageError::file(&self.db_path, "fsync", e))?;
        let mut witness = self.witness.lock().expect("witness lock poisoned");
        let mut marks = witness.marks();
        raise(&mut marks);
        marks.committed = marks.committed.max(committed);
        marks.applied = marks.applied.max(applied);
        witness.record(marks)
    }

    /// Lower witness marks *before* a write that legitimately moves them backwards (truncating
    /// the log tail, switching to an older state), so a crash in between is not mistaken for
    /// corruption.
    pub async fn lower_witness(
        self: &Arc<Self>,
        lower: impl FnOnce(&mut Marks) + Send + 'static,
    ) -> Result<(), StorageError> {
        let shared = Arc::clone(self);
        tokio::task::spawn_blocking(move || shared.lower_witness_now(lower))
            .await
            .map_err(|e| StorageError::Contract(format!("witness task failed: {e}")))?
    }

    /// [`Shared::lower_witness`] for synchronous callers (opening the store).
    pub fn lower_witness_now(&self, lower: impl FnOnce(&mut Marks)) -> Result<(), StorageError> {
        let mut witness = self.witness.lock().expect("witness lock poisoned");
        let mut marks = witness.marks();
        lower(&mut marks);
        witness.record(marks)
    }

    pub fn witness_marks(&self) -> Marks {
        self.witness.lock().expect("witness lock poisoned").marks()
    }

    pub fn witness_path(&self) -> PathBuf {
        self.witness.lock().expect("witness lock poisoned").path().to_path_buf()
    }

    /// Read and open a sealed value from `meta`.
    pub fn meta_get<T: serde::de::DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, StorageError> {
        let Some(bytes) = self.meta.get(key).map_err(self.sled_error("read meta"))? else {
            return Ok(None);
        };
        envelope::decode(&bytes).map(Some).map_err(|e| {
            StorageError::corrupted(
                &self.db_path,
                format!("meta key {:?}: {e}", String::from_utf8_lossy(key)),
            )
        })
    }
}

/// A replica's data directory, open. Cheap to clone.
#[derive(Clone)]
pub struct DataDir {
    pub(crate) shared: Arc<Shared>,
}

impl DataDir {
    /// Open (creating if needed) the data directory at `dir`.
    ///
    /// Fails with [`StorageError::Corrupted`] naming the damaged file when sled or the witness
    /// cannot be trusted.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, StorageError> {
        let dir = dir.as_ref().to_path_buf();
        std::fs::create_dir_all(&dir).map_err(|e| StorageError::file(&dir, "create data directory", e))?;
        let sled_dir = dir.join(DATA_DIR_ENTRIES[0]);
        let db_path = sled_dir.join("db");
        let snapshot_dir = dir.join(DATA_DIR_ENTRIES[2]);
        std::fs::create_dir_all(&snapshot_dir)
            .map_err(|e| StorageError::file(&snapshot_dir, "create snapshot directory", e))?;
        let payload_dir = dir.join(crate::payloads::DIRECTORY);
        std::fs::create_dir_all(&payload_dir)
            .map_err(|e| StorageError::file(&payload_dir, "create log payload directory", e))?;
        let fresh = !db_path.exists();

        let witness = Witness::open(&dir, fresh)?;
        let db = sled::Config::new()
            .path(&sled_dir)
            .segment_size(SEGMENT_SIZE)
            .cache_capacity(CACHE_CAPACITY)
            .flush_every_ms(Some(FLUSH_EVERY_MS))
            .open()
            .map_err(|source| match source {
                sled::Error::Corruption { .. } => StorageError::corrupted(&db_path, source.to_string()),
                source => StorageError::Open {
                    path: sled_dir.clone(),
                    source,
                },
            })?;
        if fresh {
            // Make sled's freshly created files reachable after a crash.
            db.flush().map_err(|e| StorageError::sled(&db_path, "flush", e))?;
            sync_directory(&sled_dir)?;
            sync_directory(&dir)?;
        }
        let db_file = File::open(&db_path).map_err(|e| StorageError::file(&db_path, "open for fsync", e))?;
        let meta = db
            .open_tree(META_TREE)
            .map_err(|e| StorageError::sled(&db_path, "open meta tree", e))?;
        let log = db
            .open_tree(LOG_TREE)
            .map_err(|e| StorageError::sled(&db_path, "open log tree", e))?;
        let blobs = sled_dir.join("blobs");
        if std::fs::read_dir(&blobs)
            .map(|mut d| d.next().is_some())
            .unwrap_or(false)
        {
            tracing::warn!(path = %blobs.display(), "sled wrote blob files, which it does not fsync");
        }
        Ok(Self {
            shared: Arc::new(Shared {
                dir,
                db_path,
                snapshot_dir,
                payload_dir,
                db,
                meta,
                log,
                db_file,
                witness: Mutex::new(witness),
                committed_written: AtomicU64::new(0),
                applied_written: AtomicU64::new(0),
                applied_in_memory: AtomicU64::new(0),
            }),
        })
    }

    /// The directory this was opened on.
    pub fn path(&self) -> &Path {
        &self.shared.dir
    }

    /// Read an application metadata value (node identity, cluster id) stored with
    /// [`DataDir::put_app_meta`].
    pub fn app_meta<T: serde::de::DeserializeOwned>(&self, key: &str) -> Result<Option<T>, StorageError> {
        self.shared.meta_get(&app_meta_key(key))
    }

    /// Durably store an application metadata value (flushed and fsync'd before returning).
    pub async fn put_app_meta<T: serde::Serialize>(&self, key: &str, value: &T) -> Result<(), StorageError> {
        self.shared
            .meta
            .insert(app_meta_key(key), envelope::encode(value))
            .map_err(self.shared.sled_error("write meta"))?;
        self.shared.flush_durable(|_| {}).await
    }

    /// Bytes sled reports using on disk.
    pub fn size_on_disk(&self) -> u64 {
        self.shared.db.size_on_disk().unwrap_or(0)
    }
}

fn app_meta_key(key: &str) -> Vec<u8> {
    let mut k = APP_META_PREFIX.to_vec();
    k.extend_from_slice(key.as_bytes());
    k
}
