//! `file_sd_configs`: target groups read from JSON or YAML files, as Prometheus's
//! `discovery/file`. Each configured path may end in a glob; every matching file is looked at
//! on every round (Prometheus reads each in full; here an unchanged `stat` skips the read and
//! unchanged bytes skip the parse, see [`FileDiscovery::refresh_now`]), and a round runs at start, on any file-system notification in the
//! watched directories, and every `refresh_interval` (notifications can be missed: inotify
//! queue overflow, network file systems, directories created after start).
//!
//! Per file, as Prometheus: groups get sources `"{path}:{index}"` and the label
//! `__meta_filepath`; a file that fails to read or parse keeps its last good groups (reported
//! in `last_error` and logged); a file that no longer matches loses its groups; a new match
//! appears. The provider is synced after its first round, whatever that round found.
//! Deviation: a file that vanishes between listing and reading is treated as deleted rather
//! than as a read error, since the deletion is what happened.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::Path;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use notify::EventKind;
use notify::RecursiveMode;
use notify::Watcher;
use notify::event::AccessKind;
use notify::event::AccessMode;
use notify::event::ModifyKind;
use tokio::sync::Notify;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::FileSdConfig;
use super::Interner;
use super::Provider;
use super::ProviderSnapshot;
use super::TargetGroup;
use super::group_list;
use super::group_list::GroupListError;
use super::publish_round;
use super::refresh_ticker;
use super::share_unchanged;

/// The label naming the file a group came from.
pub const FILE_PATH_LABEL: &str = "__meta_filepath";

/// Why one file (or one pattern) could not be used this round.
#[derive(Debug, thiserror::Error)]
pub enum FileSdError {
    #[error("invalid file pattern {pattern:?}: {message}")]
    Pattern { pattern: String, message: String },
    #[error("listing files for {pattern:?}: {message}")]
    Listing { pattern: String, message: String },
    #[error("reading {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path}: unsupported file extension (want .json, .yml or .yaml)")]
    Extension { path: String },
    #[error("{path}: {source}")]
    Parse { path: String, source: GroupListError },
    #[error("{path}: {len} bytes, more than limits.max_source_bytes ({max}); not read")]
    TooLarge { path: String, len: u64, max: u64 },
}

/// Provider for one `file_sd_configs` entry.
pub struct FileProvider {
    config: FileSdConfig,
    max_bytes: u64,
}

impl FileProvider {
    /// A provider that reads no file larger than `max_bytes`.
    pub fn new(config: FileSdConfig, max_bytes: u64) -> Self {
        Self { config, max_bytes }
    }
}

impl Provider for FileProvider {
    fn run(
        self: Box<Self>,
        publish: watch::Sender<ProviderSnapshot>,
        shutdown: CancellationToken,
    ) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(run(self.config, self.max_bytes, publish, shutdown))
    }
}

async fn run(
    config: FileSdConfig,
    max_bytes: u64,
    publish: watch::Sender<ProviderSnapshot>,
    shutdown: CancellationToken,
) {
    let changed = Arc::new(Notify::new());
    let mut watcher = start_watcher(Arc::clone(&changed));
    let mut discovery = FileDiscovery::new(config.files.clone()).with_max_bytes(max_bytes);
    let mut ticker = refresh_ticker(config.refresh_interval);
    loop {
        // Watch before reading, so a change made while we read still wakes us.
        if let Some(watcher) = watcher.as_mut() {
            watch_directories(watcher, &config.files);
        }
        // A round that changed nothing publishes nothing: at a million one-target groups,
        // collecting every group's reference again to find them equal to the last ones was
        // most of an idle replica's CPU.
        if let Some((groups, last_error)) = discovery.refresh_if_changed().await {
            publish_round(&publish, groups, last_error);
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = changed.notified() => {}
            _ = ticker.tick() => {}
        }
    }
}

/// What a round returns: every group, and its problems joined into one message.
type RoundResult = (Vec<Arc<TargetGroup>>, Option<String>);

/// The state of one `file_sd_configs` entry between rounds.
pub struct FileDiscovery {
    patterns: Vec<String>,
    /// `limits.max_source_bytes`.
    max_bytes: u64,
    interner: Interner,
    /// Per file path, in path order (the published order): what was read last.
    files: BTreeMap<String, FileState>,
    /// The problems of the last round, once there was one.
    last_round_error: Option<Option<String>>,
}

/// One file as last read: how to tell it is unchanged without reading it, and its groups.
struct FileState {
    fingerprint: Fingerprint,
    /// The file's mtime was so close to when it was read that a later write in the same
    /// timestamp tick could leave the fingerprint equal ("racy" in git's sense): such a file
    /// is read (and hashed) again next round instead of trusted by its metadata.
    racy: bool,
    content_hash: u64,
    groups: Vec<Arc<TargetGroup>>,
}

/// What became of one file in a round.
enum Round {
    /// Unchanged: its groups are the previous ones.
    Kept(FileState),
    /// Changed and parsed.
    Parsed(FileState),
    /// No longer there.
    Gone,
    /// Could not be used; its previous state, if any, is kept.
    Failed(FileSdError, Option<FileState>),
}

/// What `stat` says of a file. An atomic rename gives a new inode; an in-place write changes
/// the size or the modification time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fingerprint {
    device: u64,
    inode: u64,
    len: u64,
    modified_nanos: i128,
    changed_nanos: i128,
}

impl Fingerprint {
    fn of(metadata: &std::fs::Metadata) -> Self {
        use std::os::unix::fs::MetadataExt;
        Self {
            device: metadata.dev(),
            inode: metadata.ino(),
            len: metadata.len(),
            modified_nanos: i128::from(metadata.mtime()) * 1_000_000_000 + i128::from(metadata.mtime_nsec()),
            changed_nanos: i128::from(metadata.ctime()) * 1_000_000_000 + i128::from(metadata.ctime_nsec()),
        }
    }
}

/// A write this close before the read may share the read's timestamp tick.
const RACY_WINDOW_NANOS: i128 = 2_000_000_000;

fn unix_nanos_now() -> i128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128)
}

impl FileDiscovery {
    pub fn new(patterns: Vec<String>) -> Self {
        Self {
            patterns,
            max_bytes: u64::MAX,
            interner: Interner::default(),
            files: BTreeMap::new(),
            last_round_error: None,
        }
    }

    /// Files larger than `max_bytes` are refused unread, keeping their last good groups.
    pub fn with_max_bytes(mut self, max_bytes: u64) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    /// One full round, off the async workers (parsing a large file takes seconds): list,
    /// read and parse every file that changed, and return all groups plus the round's
    /// problems joined into one message.
    pub async fn refresh(&mut self) -> (Vec<Arc<TargetGroup>>, Option<String>) {
        self.off_the_workers(|this| Some(this.refresh_now()))
            .await
            .expect("a full round always answers")
    }

    /// [`FileDiscovery::refresh`], but `None` when the round found every file as the last
    /// round left it and the same problems (the first round always answers).
    pub async fn refresh_if_changed(&mut self) -> Option<(Vec<Arc<TargetGroup>>, Option<String>)> {
        self.off_the_workers(FileDiscovery::refresh_now_if_changed).await
    }

    async fn off_the_workers(
        &mut self,
        round: impl FnOnce(&mut Self) -> Option<RoundResult> + Send + 'static,
    ) -> Option<RoundResult> {
        // Never closed, so acquiring cannot fail.
        let _permit = super::PARSE_PERMITS.acquire().await.ok();
        let mut this = std::mem::replace(self, Self::new(Vec::new()));
        match tokio::task::spawn_blocking(move || {
            let result = round(&mut this);
            (this, result)
        })
        .await
        {
            Ok((this, result)) => {
                *self = this;
                result
            }
            Err(error) => match error.try_into_panic() {
                Ok(panic) => std::panic::resume_unwind(panic),
                // Cancelled: only at runtime shutdown, when nobody reads the result.
                Err(_) => Some((Vec::new(), Some("file_sd: the refresh was cancelled".into()))),
            },
        }
    }

    /// One full round on the calling thread. A file whose metadata is unchanged costs a
    /// `stat`; one whose bytes are unchanged costs a read and a hash; only a changed file
    /// is parsed.
    pub fn refresh_now(&mut self) -> (Vec<Arc<TargetGroup>>, Option<String>) {
        match self.refresh_now_if_changed() {
            Some(round) => round,
            None => (self.groups(), self.last_round_error.clone().flatten()),
        }
    }

    /// Every group of the files as last read, in path order.
    fn groups(&self) -> Vec<Arc<TargetGroup>> {
        self.files
            .values()
            .flat_map(|file| file.groups.iter().cloned())
            .collect()
    }

    /// [`FileDiscovery::refresh_now`], `None` when nothing changed since the last round.
    pub fn refresh_now_if_changed(&mut self) -> Option<(Vec<Arc<TargetGroup>>, Option<String>)> {
        let (paths, mut problems) = list_files(&self.patterns);
        let mut next = BTreeMap::new();
        let mut parsed_any = false;
        let mut vanished = false;
        for path in paths {
            let previous = self.files.remove(&path);
            let known = previous.is_some();
            match self.read_if_changed(&path, previous) {
                Round::Kept(state) => {
                    next.insert(path, state);
                }
                Round::Parsed(state) => {
                    parsed_any = true;
                    next.insert(path, state);
                }
                // Listed, then gone before it was read.
                Round::Gone => vanished |= known,
                Round::Failed(error, previous) => {
                    tracing::warn!(%error, "file_sd: keeping the last good target groups of the file");
                    problems.push(error);
                    if let Some(previous) = previous {
                        next.insert(path, previous);
                    }
                }
            }
        }
        let files_gone = self.files.len();
        self.files = next;
        if parsed_any || vanished || files_gone > 0 {
            self.interner.collect_garbage();
        }
        let last_error = if problems.is_empty() {
            None
        } else {
            Some(problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))
        };
        let unchanged =
            !parsed_any && !vanished && files_gone == 0 && self.last_round_error.as_ref() == Some(&last_error);
        self.last_round_error = Some(last_error.clone());
        if unchanged {
            return None;
        }
        Some((self.groups(), last_error))
    }

    /// What became of the file this round.
    fn read_if_changed(&mut self, path: &str, previous: Option<FileState>) -> Round {
        let read_error = |source: std::io::Error| FileSdError::Read {
            path: path.into(),
            source,
        };
        let Some(format) = format_of(path) else {
            return Round::Failed(FileSdError::Extension { path: path.into() }, previous);
        };
        let now = unix_nanos_now();
        let metadata = match std::fs::metadata(path) {
            Ok(metadata) => metadata,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Round::Gone,
            Err(e) => return Round::Failed(read_error(e), previous),
        };
        if metadata.len() > self.max_bytes {
            let error = FileSdError::TooLarge {
                path: path.into(),
                len: metadata.len(),
                max: self.max_bytes,
            };
            return Round::Failed(error, previous);
        }
        let fingerprint = Fingerprint::of(&metadata);
        let racy = now - fingerprint.modified_nanos < RACY_WINDOW_NANOS;
        if let Some(unchanged) = previous.as_ref()
            && unchanged.fingerprint == fingerprint
        {
            if !unchanged.racy {
                return previous.map_or(Round::Gone, Round::Kept);
            }
            // Racy: the metadata cannot vouch for the bytes, their hash can. Hashed through
            // a small buffer rather than read into one as large as the file: a file written
            // just before its first read (a cold start) is read again once, and at 270 MB a
            // file, the fresh pages of a whole-file read were most of reading it.
            match content_hash_of(path) {
                Ok(content_hash) if content_hash == unchanged.content_hash => {
                    return Round::Kept(FileState {
                        fingerprint,
                        racy,
                        content_hash,
                        groups: unchanged.groups.clone(),
                    });
                }
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Round::Gone,
                Err(e) => return Round::Failed(read_error(e), previous),
            }
        }
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Round::Gone,
            Err(e) => return Round::Failed(read_error(e), previous),
        };
        let content_hash = xxhash_rust::xxh3::xxh3_64(&bytes);
        if let Some(previous) = previous.as_ref()
            && previous.content_hash == content_hash
        {
            return Round::Kept(FileState {
                fingerprint,
                racy,
                content_hash,
                groups: previous.groups.clone(),
            });
        }
        let started = std::time::Instant::now();
        let len = bytes.len();
        let parsed = match format {
            Format::Json => group_list::parse_json_groups(&bytes, path, (FILE_PATH_LABEL, path), &mut self.interner),
            Format::Yaml => group_list::parse_yaml(&String::from_utf8_lossy(&bytes))
                .map(|raw| group_list::build_groups(raw, path, (FILE_PATH_LABEL, path), &mut self.interner)),
        };
        drop(bytes);
        let groups = match parsed {
            Ok(groups) => groups,
            Err(source) => {
                let error = FileSdError::Parse {
                    path: path.into(),
                    source,
                };
                return Round::Failed(error, previous);
            }
        };
        tracing::debug!(
            path,
            bytes = len,
            groups = groups.len(),
            ms = started.elapsed().as_millis() as u64,
            "file_sd: parsed"
        );
        let groups = share_unchanged(previous.as_ref().map_or(&[][..], |p| &p.groups[..]), groups);
        Round::Parsed(FileState {
            fingerprint,
            racy,
            content_hash,
            groups,
        })
    }
}

/// The content hash of the file at `path` (as `xxh3_64` of its bytes), read in chunks.
fn content_hash_of(path: &str) -> std::io::Result<u64> {
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let mut hasher = xxhash_rust::xxh3::Xxh3Default::new();
    let mut chunk = vec![0u8; 1 << 20];
    loop {
        match file.read(&mut chunk) {
            Ok(0) => return Ok(hasher.digest()),
            Ok(read) => hasher.update(&chunk[..read]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Every file matching the patterns, once each, and the patterns that could not be used.
fn list_files(patterns: &[String]) -> (Vec<String>, Vec<FileSdError>) {
    let mut paths = Vec::new();
    let mut problems = Vec::new();
    for pattern in patterns {
        let entries = match glob::glob(pattern) {
            Ok(entries) => entries,
            Err(e) => {
                problems.push(FileSdError::Pattern {
                    pattern: pattern.clone(),
                    message: e.to_string(),
                });
                continue;
            }
        };
        for entry in entries {
            match entry {
                Ok(path) => {
                    let path = path.to_string_lossy().into_owned();
                    if !paths.contains(&path) {
                        paths.push(path);
                    }
                }
                Err(e) => problems.push(FileSdError::Listing {
                    pattern: pattern.clone(),
                    message: e.to_string(),
                }),
            }
        }
    }
    (paths, problems)
}

enum Format {
    Json,
    Yaml,
}

fn format_of(path: &str) -> Option<Format> {
    let extension = Path::new(path).extension()?.to_str()?.to_ascii_lowercase();
    match extension.as_str() {
        "json" => Some(Format::Json),
        "yml" | "yaml" => Some(Format::Yaml),
        _ => None,
    }
}

/// A watcher that wakes the provider on any change in a watched directory. Reading a file
/// ourselves produces open/close events, which must not cause another round.
fn start_watcher(changed: Arc<Notify>) -> Option<notify::RecommendedWatcher> {
    let handler = move |event: notify::Result<notify::Event>| {
        let relevant = match event {
            // An error may mean lost events (queue overflow): re-read to be safe.
            Err(_) => true,
            Ok(event) => match event.kind {
                EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
                EventKind::Access(_) | EventKind::Modify(ModifyKind::Metadata(_)) => false,
                _ => true,
            },
        };
        if relevant {
            changed.notify_one();
        }
    };
    match notify::recommended_watcher(handler) {
        Ok(watcher) => Some(watcher),
        Err(error) => {
            tracing::warn!(%error, "file_sd: no file-system notifications; relying on the refresh interval");
            None
        }
    }
}

/// (Re-)watch the directory of every pattern. Repeated each round because a directory may
/// appear after start or be replaced (its old watch then silently ends).
fn watch_directories(watcher: &mut notify::RecommendedWatcher, patterns: &[String]) {
    for pattern in patterns {
        let directory = match Path::new(pattern).parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if let Err(error) = watcher.watch(&directory, RecursiveMode::NonRecursive) {
            tracing::debug!(%error, directory = %directory.display(), "file_sd: cannot watch directory yet");
        }
    }
}
