//! The storage crate's error type: what failed, on which file, and why.
//!
//! openraft's storage traits speak `std::io::Error`; everything here converts into one with
//! the full message kept, so a replica that refuses to start says which file is at fault.

use std::io;
use std::path::PathBuf;

/// A failure of the on-disk store. Every variant names the file or directory involved.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// sled could not open (or create) its database.
    #[error("cannot open the sled database in {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: sled::Error,
    },

    /// A read or write through sled failed.
    #[error("sled {operation} failed on {path}: {source}")]
    Sled {
        path: PathBuf,
        operation: &'static str,
        #[source]
        source: sled::Error,
    },

    /// A file operation outside sled (fsync, snapshot file, witness) failed.
    #[error("{operation} failed on {path}: {source}")]
    File {
        path: PathBuf,
        operation: &'static str,
        #[source]
        source: io::Error,
    },

    /// Stored bytes do not match their checksum, have an unknown format version, or contradict
    /// what was recorded as durable. The replica must not start on this data.
    #[error("corrupted data in {path}: {detail}")]
    Corrupted { path: PathBuf, detail: String },

    /// A caller broke the storage contract (for example a non-contiguous append).
    #[error("storage contract violated: {0}")]
    Contract(String),
}

impl StorageError {
    pub(crate) fn sled(path: impl Into<PathBuf>, operation: &'static str, source: sled::Error) -> Self {
        Self::Sled {
            path: path.into(),
            operation,
            source,
        }
    }

    pub(crate) fn file(path: impl Into<PathBuf>, operation: &'static str, source: io::Error) -> Self {
        Self::File {
            path: path.into(),
            operation,
            source,
        }
    }

    pub(crate) fn corrupted(path: impl Into<PathBuf>, detail: impl Into<String>) -> Self {
        Self::Corrupted {
            path: path.into(),
            detail: detail.into(),
        }
    }

    /// True when sled could not take its exclusive file lock: another process (normally the
    /// replica itself) has this data directory open.
    pub fn is_locked_by_another_process(&self) -> bool {
        // sled 0.34 reports a held lock only as an `Io` error with this text (config.rs).
        matches!(self, Self::Open { source: sled::Error::Io(e), .. } if e.to_string().contains("could not acquire lock"))
    }

    /// True when the data on disk is damaged (as opposed to a transient IO failure).
    pub fn is_corruption(&self) -> bool {
        matches!(self, Self::Corrupted { .. })
    }
}

impl From<StorageError> for io::Error {
    fn from(error: StorageError) -> Self {
        let kind = match &error {
            StorageError::Corrupted { .. } => io::ErrorKind::InvalidData,
            StorageError::Contract(_) => io::ErrorKind::InvalidInput,
            StorageError::File { source, .. } => source.kind(),
            _ => io::ErrorKind::Other,
        };
        io::Error::new(kind, error)
    }
}
