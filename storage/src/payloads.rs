//! Large log entries as files of their own, outside sled.
//!
//! While profiling, sled 0.34 needed tens to hundreds of milliseconds to append a
//! multi-megabyte value that the disk itself writes and fsyncs in a few, and a slow append
//! stalls the Raft core long enough to miss heartbeats (docs/architecture.md, "Large log
//! entries"). An entry whose sealed encoding exceeds [`THRESHOLD`] is therefore written to
//! `log-payloads/<index>.<nonce>.entry`, fsync'd, the directory fsync'd, and only then is a
//! small checksummed [`PayloadRef`] stored in sled, in the same batch as the other entries.
//! The nonce keeps a re-appended index (after a truncation) from overwriting a file that a
//! reader may still hold.

use std::io::Write;
use std::path::Path;

use serde::Deserialize;
use serde::Serialize;

use crate::error::StorageError;
use crate::witness::sync_directory;

/// Sealed entries larger than this go to payload files.
pub(crate) const THRESHOLD: usize = 256 << 10;
/// Directory name inside the data directory.
pub(crate) const DIRECTORY: &str = "log-payloads";

/// Where an entry's sealed bytes live, and how to check them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PayloadRef {
    pub file: String,
    pub len: u64,
    pub crc: u32,
}

/// Write `sealed` for log `index` to a new file and fsync it (not the directory: the caller
/// syncs it once for all files of an append).
pub(crate) fn write(dir: &Path, index: u64, sealed: &[u8]) -> Result<PayloadRef, StorageError> {
    let nonce: u64 = rand_nonce();
    let file = format!("{index:020}.{nonce:016x}.entry");
    let path = dir.join(&file);
    let mut handle = std::fs::File::create(&path).map_err(|e| StorageError::file(&path, "create log payload", e))?;
    handle
        .write_all(sealed)
        .and_then(|_| handle.sync_all())
        .map_err(|e| StorageError::file(&path, "write log payload", e))?;
    Ok(PayloadRef {
        file,
        len: sealed.len() as u64,
        crc: crc32fast::hash(sealed),
    })
}

/// Read and check the sealed bytes a reference points at.
pub(crate) fn read(dir: &Path, reference: &PayloadRef) -> Result<Vec<u8>, StorageError> {
    let path = dir.join(&reference.file);
    let bytes = std::fs::read(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => StorageError::corrupted(&path, "log payload file is missing"),
        _ => StorageError::file(&path, "read log payload", e),
    })?;
    if bytes.len() as u64 != reference.len || crc32fast::hash(&bytes) != reference.crc {
        return Err(StorageError::corrupted(
            &path,
            format!(
                "log payload does not match its reference ({} bytes, expected {})",
                bytes.len(),
                reference.len
            ),
        ));
    }
    Ok(bytes)
}

/// Make the files written by [`write`] reachable after a crash.
pub(crate) fn sync(dir: &Path) -> Result<(), StorageError> {
    sync_directory(dir)
}

/// The log index a payload file belongs to.
fn index_of(file: &str) -> Option<u64> {
    file.split('.').next()?.parse().ok()
}

/// Every payload file as `(log index, file name)`.
pub(crate) fn files(dir: &Path) -> Result<Vec<(u64, String)>, StorageError> {
    let entries = std::fs::read_dir(dir).map_err(|e| StorageError::file(dir, "list log payloads", e))?;
    Ok(entries
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().to_string();
            index_of(&name).map(|index| (index, name))
        })
        .collect())
}

/// Delete the payload file `name`.
pub(crate) fn remove(dir: &Path, name: &str) -> Result<(), StorageError> {
    let path = dir.join(name);
    std::fs::remove_file(&path).map_err(|e| StorageError::file(&path, "remove log payload", e))
}

/// Delete payload files for which `remove(index, file name)` is true.
pub(crate) fn remove_where(dir: &Path, remove_it: impl Fn(u64, &str) -> bool) -> Result<usize, StorageError> {
    let mut removed = 0;
    for (index, name) in files(dir)? {
        if remove_it(index, &name) {
            remove(dir, &name)?;
            removed += 1;
        }
    }
    Ok(removed)
}

fn rand_nonce() -> u64 {
    use std::hash::BuildHasher;
    use std::hash::Hasher;
    // RandomState is seeded per process from the OS; mixing in the time and a counter gives
    // a distinct name per write without another dependency.
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_damage_detection() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = vec![5u8; 1000];
        let reference = write(dir.path(), 42, &bytes).unwrap();
        assert_eq!(index_of(&reference.file), Some(42));
        assert_eq!(read(dir.path(), &reference).unwrap(), bytes);
        let path = dir.path().join(&reference.file);
        let mut damaged = bytes.clone();
        damaged[500] ^= 1;
        std::fs::write(&path, damaged).unwrap();
        let err = read(dir.path(), &reference).unwrap_err();
        assert!(
            err.is_corruption() && err.to_string().contains(&reference.file),
            "{err}"
        );
        std::fs::remove_file(&path).unwrap();
        assert!(
            read(dir.path(), &reference)
                .unwrap_err()
                .to_string()
                .contains("missing")
        );
    }

    #[test]
    fn every_write_gets_its_own_file() {
        let dir = tempfile::tempdir().unwrap();
        let a = write(dir.path(), 7, b"a").unwrap();
        let b = write(dir.path(), 7, b"b").unwrap();
        assert_ne!(a.file, b.file);
        assert_eq!(remove_where(dir.path(), |index, _| index == 7).unwrap(), 2);
    }
}
