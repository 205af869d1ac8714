//! Snapshot files: the state-machine records of one applied index, written to a temporary
//! file, fsync'd, renamed into place and the directory fsync'd (docs/architecture.md, "Durability rules, and where they live").
//!
//! Layout: `b"TASNAP\0\x01"`, then frames `[len u32 LE][crc32 u32 LE][payload]`:
//! first the snapshot meta (bincode), then one frame per record
//! (`[1][key len u32 LE][key][value]`), then the end frame (`[2][record count u64 LE]`).
//! A file without a valid end frame is incomplete and rejected.

use std::fs::File;
use std::io;
use std::io::BufWriter;
use std::io::Read;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::path::PathBuf;
use std::sync::Arc;

use crate::error::StorageError;
use crate::witness::sync_directory;

const MAGIC: &[u8; 8] = b"TASNAP\0\x01";
const RECORD: u8 = 1;
const END: u8 = 2;
/// One state record: key and value.
pub type Record = (Vec<u8>, Vec<u8>);

/// A single frame larger than this is treated as corruption rather than allocated.
const MAX_FRAME: u32 = 256 << 20;

/// A snapshot on disk, opened for reading. This is the `SnapshotData` handed to openraft and
/// streamed to followers; the open handle stays readable even if a newer snapshot replaces
/// the file meanwhile.
#[derive(Debug)]
pub struct SnapshotFile {
    path: PathBuf,
    file: Arc<File>,
    len: u64,
}

impl SnapshotFile {
    /// Open the snapshot at `path`.
    pub fn open(path: impl Into<PathBuf>) -> Result<Self, StorageError> {
        let path = path.into();
        let file = File::open(&path).map_err(|e| StorageError::file(&path, "open snapshot", e))?;
        let len = file
            .metadata()
            .map_err(|e| StorageError::file(&path, "stat snapshot", e))?
            .len();
        Ok(Self {
            path,
            file: Arc::new(file),
            len,
        })
    }

    /// Where the file lives (it may have been replaced or removed since it was opened).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Size in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True for a zero-length file (never a valid snapshot).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Read up to `buf.len()` bytes at `offset` (positional: independent of other readers).
    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.file.read_at(buf, offset)
    }

    /// A sequential reader over the whole file.
    pub fn reader(&self) -> impl Read + Send + 'static {
        PositionedReader {
            file: Arc::clone(&self.file),
            offset: 0,
        }
    }

    /// Check every frame and return the meta bytes and record count.
    pub fn verify(&self) -> Result<(Vec<u8>, u64), StorageError> {
        let mut reader = SnapshotReader::new(self.reader(), &self.path)?;
        let meta = reader.meta().to_vec();
        let mut count = 0;
        for record in &mut reader {
            record?;
            count += 1;
        }
        Ok((meta, count))
    }
}

struct PositionedReader {
    file: Arc<File>,
    offset: u64,
}

impl Read for PositionedReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read_at(buf, self.offset)?;
        self.offset += n as u64;
        Ok(n)
    }
}

/// Write a snapshot atomically to `path`: temporary file, fsync, rename, fsync of the
/// directory. Returns the number of records written.
pub fn write_snapshot<I>(path: &Path, meta: &[u8], records: I) -> Result<u64, StorageError>
where
    I: IntoIterator<Item = Result<Record, StorageError>>,
{
    let temporary = path.with_extension("tmp");
    let file = File::create(&temporary).map_err(|e| StorageError::file(&temporary, "create snapshot", e))?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let io_error = |e| StorageError::file(&temporary, "write snapshot", e);
    out.write_all(MAGIC).map_err(io_error)?;
    write_frame(&mut out, meta).map_err(io_error)?;
    let mut count = 0u64;
    let mut payload = Vec::new();
    for record in records {
        let (key, value) = record?;
        payload.clear();
        payload.push(RECORD);
        payload.extend_from_slice(&(key.len() as u32).to_le_bytes());
        payload.extend_from_slice(&key);
        payload.extend_from_slice(&value);
        write_frame(&mut out, &payload).map_err(io_error)?;
        count += 1;
    }
    payload.clear();
    payload.push(END);
    payload.extend_from_slice(&count.to_le_bytes());
    write_frame(&mut out, &payload).map_err(io_error)?;
    let file = out.into_inner().map_err(|e| io_error(e.into_error()))?;
    publish(file, &temporary, path)?;
    Ok(count)
}

/// fsync `file` (written at `temporary`), rename it to `path`, fsync the directory.
fn publish(file: File, temporary: &Path, path: &Path) -> Result<(), StorageError> {
    file.sync_all()
        .map_err(|e| StorageError::file(temporary, "fsync snapshot", e))?;
    drop(file);
    std::fs::rename(temporary, path).map_err(|e| StorageError::file(path, "rename snapshot into place", e))?;
    if let Some(dir) = path.parent() {
        sync_directory(dir)?;
    }
    Ok(())
}

/// Copy a snapshot (possibly from another directory) to `path`, atomically and durably.
pub fn copy_snapshot(source: &SnapshotFile, path: &Path) -> Result<(), StorageError> {
    let temporary = path.with_extension("tmp");
    let mut file = File::create(&temporary).map_err(|e| StorageError::file(&temporary, "create snapshot", e))?;
    io::copy(&mut source.reader(), &mut file).map_err(|e| StorageError::file(&temporary, "copy snapshot", e))?;
    publish(file, &temporary, path)
}

fn write_frame(out: &mut impl Write, payload: &[u8]) -> io::Result<()> {
    out.write_all(&(payload.len() as u32).to_le_bytes())?;
    out.write_all(&crc32fast::hash(payload).to_le_bytes())?;
    out.write_all(payload)
}

/// Streams the records of a snapshot, checking each frame; the last item is an error if the
/// end frame is missing or its count disagrees.
pub struct SnapshotReader<R> {
    input: R,
    path: PathBuf,
    meta: Vec<u8>,
    seen: u64,
    done: bool,
}

impl<R: Read> SnapshotReader<R> {
    /// Read the header and meta frame.
    pub fn new(mut input: R, path: &Path) -> Result<Self, StorageError> {
        let mut magic = [0u8; 8];
        input
            .read_exact(&mut magic)
            .map_err(|e| StorageError::corrupted(path, format!("snapshot header unreadable: {e}")))?;
        if &magic != MAGIC {
            return Err(StorageError::corrupted(path, "not a snapshot file (bad magic)"));
        }
        let meta = read_frame(&mut input, path)?
            .ok_or_else(|| StorageError::corrupted(path, "snapshot ends before its meta frame"))?;
        Ok(Self {
            input,
            path: path.to_path_buf(),
            meta,
            seen: 0,
            done: false,
        })
    }

    /// The serialized snapshot meta.
    pub fn meta(&self) -> &[u8] {
        &self.meta
    }

    fn next_record(&mut self) -> Result<Option<Record>, StorageError> {
        let corrupted = |detail: String| StorageError::corrupted(&self.path, detail);
        let Some(frame) = read_frame(&mut self.input, &self.path)? else {
            return Err(corrupted("snapshot is truncated: no end frame".into()));
        };
        match frame.first() {
            Some(&RECORD) if frame.len() >= 5 => {
                let key_len = u32::from_le_bytes(frame[1..5].try_into().expect("4 bytes")) as usize;
                if 5 + key_len > frame.len() {
                    return Err(corrupted(format!(
                        "record {} has a key longer than its frame",
                        self.seen
                    )));
                }
                self.seen += 1;
                Ok(Some((frame[5..5 + key_len].to_vec(), frame[5 + key_len..].to_vec())))
            }
            Some(&END) if frame.len() == 9 => {
                let count = u64::from_le_bytes(frame[1..9].try_into().expect("8 bytes"));
                if count != self.seen {
                    return Err(corrupted(format!(
                        "end frame counts {count} records but {} were read",
                        self.seen
                    )));
                }
                Ok(None)
            }
            _ => Err(corrupted(format!("unknown frame after record {}", self.seen))),
        }
    }
}

impl<R: Read> Iterator for SnapshotReader<R> {
    type Item = Result<Record, StorageError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.next_record() {
            Ok(Some(record)) => Some(Ok(record)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

fn read_frame(input: &mut impl Read, path: &Path) -> Result<Option<Vec<u8>>, StorageError> {
    let mut header = [0u8; 8];
    match input.read_exact(&mut header) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(StorageError::file(path, "read snapshot", e)),
    }
    let len = u32::from_le_bytes(header[0..4].try_into().expect("4 bytes"));
    let crc = u32::from_le_bytes(header[4..8].try_into().expect("4 bytes"));
    if len > MAX_FRAME {
        return Err(StorageError::corrupted(
            path,
            format!("frame length {len} exceeds the limit"),
        ));
    }
    let mut payload = vec![0u8; len as usize];
    input
        .read_exact(&mut payload)
        .map_err(|e| StorageError::corrupted(path, format!("frame truncated: {e}")))?;
    if crc32fast::hash(&payload) != crc {
        return Err(StorageError::corrupted(path, "frame checksum mismatch"));
    }
    Ok(Some(payload))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(n: usize) -> Vec<Result<Record, StorageError>> {
        (0..n)
            .map(|i| Ok((format!("key-{i}").into_bytes(), vec![i as u8; i * 10])))
            .collect()
    }

    #[test]
    fn round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.snap");
        assert_eq!(write_snapshot(&path, b"meta", sample(100)).unwrap(), 100);
        let file = SnapshotFile::open(&path).unwrap();
        assert_eq!(file.verify().unwrap(), (b"meta".to_vec(), 100));
        assert!(!path.with_extension("tmp").exists());
    }

    #[test]
    fn any_damage_is_reported_with_the_file_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.snap");
        write_snapshot(&path, b"meta", sample(20)).unwrap();
        let original = std::fs::read(&path).unwrap();
        for offset in (0..original.len()).step_by(7) {
            let mut damaged = original.clone();
            damaged[offset] ^= 0x01;
            std::fs::write(&path, &damaged).unwrap();
            let err = SnapshotFile::open(&path).unwrap().verify().err();
            let err = err.unwrap_or_else(|| panic!("flip at {offset} went unnoticed"));
            assert!(err.to_string().contains("s.snap"), "{err}");
        }
        std::fs::write(&path, &original[..original.len() - 3]).unwrap();
        assert!(
            SnapshotFile::open(&path).unwrap().verify().is_err(),
            "truncation unnoticed"
        );
    }
}
