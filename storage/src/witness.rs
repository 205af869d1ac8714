//! The durability witness: a tiny fsync'd record, kept outside sled, of how far the store is
//! known to be durable.
//!
//! Why it exists: sled 0.34 recovers its log up to the first record that fails its own
//! checksum and silently drops everything after it. A flipped byte on disk would therefore look
//! like a replica that simply forgot its recent log: the one failure Raft cannot survive. After
//! every durable write the store records its high-water marks here; at open, sled must have
//! recovered at least that much or the replica refuses to start.
//!
//! Layout: two 64-byte slots written alternately, each `[magic "TAWT"][version u8][pad 3]
//! [sequence u64][marks 5 x u64][crc32 u32][pad 4]`. A torn write damages at most the slot being
//! written; the other still holds the previous record.

use std::fs::File;
use std::fs::OpenOptions;
use std::io::Read;
use std::io::Seek;
use std::io::SeekFrom;
use std::io::Write;
use std::path::Path;
use std::path::PathBuf;

use crate::error::StorageError;

const MAGIC: &[u8; 4] = b"TAWT";
const VERSION: u8 = 1;
const SLOT_LEN: usize = 64;
/// File name of the witness inside the data directory.
pub const WITNESS_FILE: &str = "durable-witness";

/// High-water marks known to be on disk. Indexes are stored as `index + 1` so that 0 means
/// "nothing yet".
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Marks {
    /// Last log index durable in the log tree (or purged through).
    pub last_log: u64,
    /// Last purged log index.
    pub last_purged: u64,
    /// Term of the last durable vote.
    pub vote_term: u64,
    /// Last committed index saved.
    pub committed: u64,
    /// Last applied index known flushed in the state-machine tree.
    pub applied: u64,
}

impl Marks {
    fn to_words(self) -> [u64; 5] {
        [
            self.last_log,
            self.last_purged,
            self.vote_term,
            self.committed,
            self.applied,
        ]
    }

    fn from_words(w: [u64; 5]) -> Self {
        Self {
            last_log: w[0],
            last_purged: w[1],
            vote_term: w[2],
            committed: w[3],
            applied: w[4],
        }
    }

    /// Names of the marks where `recovered` is behind `self`, with both values.
    pub fn shortfalls(&self, recovered: &Marks) -> Vec<String> {
        let names = [
            "last log index+1",
            "last purged index+1",
            "vote term",
            "committed index+1",
            "applied index+1",
        ];
        let expected = self.to_words();
        let found = recovered.to_words();
        (0..5)
            .filter(|&i| found[i] < expected[i])
            .map(|i| {
                format!(
                    "{} recorded durable as {} but recovered as {}",
                    names[i], expected[i], found[i]
                )
            })
            .collect()
    }
}

/// Owner of the witness file. Only the storage layer's single writer calls [`Witness::record`].
pub struct Witness {
    path: PathBuf,
    file: File,
    sequence: u64,
    marks: Marks,
}

impl Witness {
    /// Open (or create) the witness in `dir`. `fresh` is true when the directory held no
    /// database before, in which case a missing witness is expected.
    pub fn open(dir: &Path, fresh: bool) -> Result<Self, StorageError> {
        let path = dir.join(WITNESS_FILE);
        let existed = path.exists();
        if !existed && !fresh {
            return Err(StorageError::corrupted(
                &path,
                "the database exists but its durability witness is missing; the data directory is incomplete",
            ));
        }
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| StorageError::file(&path, "open witness", e))?;
        let mut witness = Self {
            path: path.clone(),
            file: file
                .try_clone()
                .map_err(|e| StorageError::file(&path, "clone witness handle", e))?,
            sequence: 0,
            marks: Marks::default(),
        };
        if existed {
            let mut bytes = Vec::new();
            file.read_to_end(&mut bytes)
                .map_err(|e| StorageError::file(&path, "read witness", e))?;
            let best = bytes
                .chunks(SLOT_LEN)
                .take(2)
                .filter_map(decode_slot)
                .max_by_key(|(sequence, _)| *sequence);
            match best {
                Some((sequence, marks)) => {
                    witness.sequence = sequence;
                    witness.marks = marks;
                }
                None if bytes.iter().all(|b| *b == 0) => {}
                None => {
                    return Err(StorageError::corrupted(
                        &path,
                        "neither witness slot passes its checksum",
                    ));
                }
            }
        } else {
            witness.record(Marks::default())?;
            sync_directory(dir)?;
        }
        Ok(witness)
    }

    /// The marks last recorded.
    pub fn marks(&self) -> Marks {
        self.marks
    }

    /// Path of the witness file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Record `marks`: pwrite of one slot, fdatasync'd when any mark moves backwards.
    ///
    /// The witness only has to be a lower bound of what is durable. Raising it needs no
    /// fsync: after a power loss an unsynced raise is lost or torn, leaving an earlier (lower,
    /// still true) record in the other slot. Lowering must reach the disk before the data it
    /// describes shrinks, or a crash in between would look like corruption; and it is written
    /// to **both** slots, so no older, higher record survives in the other slot for a torn
    /// later raise to fall back to.
    pub fn record(&mut self, marks: Marks) -> Result<(), StorageError> {
        if marks == self.marks && self.sequence > 0 {
            return Ok(());
        }
        // Fields where the new record is below the current one.
        let lowered = !self.marks.shortfalls(&marks).is_empty();
        let first = self.sequence == 0;
        self.write_slot(self.sequence + 1, marks, lowered || first)?;
        if lowered {
            self.write_slot(self.sequence + 1, marks, true)?;
        }
        self.marks = marks;
        Ok(())
    }

    fn write_slot(&mut self, sequence: u64, marks: Marks, sync: bool) -> Result<(), StorageError> {
        let slot = encode_slot(sequence, marks);
        let offset = (sequence % 2) * SLOT_LEN as u64;
        let path = self.path.clone();
        self.file
            .seek(SeekFrom::Start(offset))
            .and_then(|_| self.file.write_all(&slot))
            .and_then(|_| if sync { self.file.sync_data() } else { Ok(()) })
            .map_err(|e| StorageError::file(&path, "write witness", e))?;
        self.sequence = sequence;
        Ok(())
    }
}

fn encode_slot(sequence: u64, marks: Marks) -> [u8; SLOT_LEN] {
    let mut slot = [0u8; SLOT_LEN];
    slot[0..4].copy_from_slice(MAGIC);
    slot[4] = VERSION;
    slot[8..16].copy_from_slice(&sequence.to_le_bytes());
    for (i, word) in marks.to_words().iter().enumerate() {
        slot[16 + i * 8..24 + i * 8].copy_from_slice(&word.to_le_bytes());
    }
    let crc = crc32fast::hash(&slot[0..56]);
    slot[56..60].copy_from_slice(&crc.to_le_bytes());
    slot
}

fn decode_slot(slot: &[u8]) -> Option<(u64, Marks)> {
    if slot.len() < SLOT_LEN || &slot[0..4] != MAGIC || slot[4] != VERSION {
        return None;
    }
    let crc = u32::from_le_bytes(slot[56..60].try_into().ok()?);
    if crc != crc32fast::hash(&slot[0..56]) {
        return None;
    }
    let word = |i: usize| u64::from_le_bytes(slot[i..i + 8].try_into().expect("8 bytes"));
    let sequence = word(8);
    let marks = Marks::from_words([word(16), word(24), word(32), word(40), word(48)]);
    Some((sequence, marks))
}

/// fsync a directory so that file creations and renames in it are durable.
pub fn sync_directory(dir: &Path) -> Result<(), StorageError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StorageError::file(dir, "fsync directory", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn marks(n: u64) -> Marks {
        Marks {
            last_log: n,
            last_purged: n / 2,
            vote_term: 3,
            committed: n,
            applied: n - 1,
        }
    }

    #[test]
    fn survives_reopen_and_keeps_the_newest_slot() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = Witness::open(dir.path(), true).unwrap();
        w.record(marks(5)).unwrap();
        w.record(marks(9)).unwrap();
        drop(w);
        let w = Witness::open(dir.path(), false).unwrap();
        assert_eq!(w.marks(), marks(9));
    }

    #[test]
    fn a_torn_newest_slot_falls_back_to_the_previous_one() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = Witness::open(dir.path(), true).unwrap();
        w.record(marks(5)).unwrap();
        w.record(marks(9)).unwrap();
        let sequence = w.sequence;
        drop(w);
        let path = dir.path().join(WITNESS_FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        let newest = (sequence % 2) as usize * SLOT_LEN;
        bytes[newest + 20] ^= 0xff;
        std::fs::write(&path, bytes).unwrap();
        let w = Witness::open(dir.path(), false).unwrap();
        assert_eq!(w.marks(), marks(5));
    }

    #[test]
    fn both_slots_damaged_is_corruption_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = Witness::open(dir.path(), true).unwrap();
        w.record(marks(5)).unwrap();
        w.record(marks(9)).unwrap();
        drop(w);
        let path = dir.path().join(WITNESS_FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[20] ^= 1;
        bytes[SLOT_LEN + 20] ^= 1;
        std::fs::write(&path, bytes).unwrap();
        let err = Witness::open(dir.path(), false).err().expect("must refuse");
        assert!(err.is_corruption());
        assert!(err.to_string().contains(WITNESS_FILE), "{err}");
    }

    #[test]
    fn a_lowered_record_leaves_no_higher_record_behind() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = Witness::open(dir.path(), true).unwrap();
        w.record(marks(9)).unwrap();
        w.record(marks(4)).unwrap();
        drop(w);
        let bytes = std::fs::read(dir.path().join(WITNESS_FILE)).unwrap();
        let slots: Vec<Marks> = bytes.chunks(SLOT_LEN).filter_map(decode_slot).map(|(_, m)| m).collect();
        assert_eq!(slots, vec![marks(4), marks(4)], "both slots hold the lowered marks");
    }

    #[test]
    fn shortfalls_name_each_lagging_mark() {
        let recorded = marks(10);
        let mut recovered = recorded;
        recovered.last_log = 4;
        let gaps = recorded.shortfalls(&recovered);
        assert_eq!(gaps.len(), 1);
        assert!(gaps[0].contains("last log index"));
    }
}
