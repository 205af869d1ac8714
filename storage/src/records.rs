//! How values are laid out in sled: sealed envelopes split into chunks small enough that sled
//! never moves them to its un-fsynced blob files (docs/architecture.md, "Large log entries").
//!
//! A value is sealed (checksummed), then cut into chunks of at most [`CHUNK_LEN`] bytes stored
//! under `base_key ++ chunk_number (u32 BE)`. Chunks of one value are adjacent in key order.

use sled::IVec;

/// Largest chunk written to sled. sled 0.34 sends any single write larger than about
/// `segment_size / 4` to a blob file without fsync, and a leaf holds up to 17 items before it
/// splits, so 17 chunks must stay under that threshold: 17 × 32 KiB ≈ 544 KiB against the
/// 2 MiB threshold of the 8 MiB segments configured in `data_dir`.
pub const CHUNK_LEN: usize = 32 * 1024;

/// Split a sealed value into `(chunk_number, bytes)` pieces.
pub fn chunks(sealed: &[u8]) -> impl Iterator<Item = (u32, &[u8])> {
    let pieces = if sealed.is_empty() {
        1
    } else {
        sealed.len().div_ceil(CHUNK_LEN)
    };
    (0..pieces).map(move |i| {
        let start = i * CHUNK_LEN;
        let end = (start + CHUNK_LEN).min(sealed.len());
        (i as u32, &sealed[start..end])
    })
}

/// `base ++ chunk (u32 BE)`.
pub fn chunk_key(base: &[u8], chunk: u32) -> Vec<u8> {
    let mut key = Vec::with_capacity(base.len() + 4);
    key.extend_from_slice(base);
    key.extend_from_slice(&chunk.to_be_bytes());
    key
}

/// Split a stored key into its base and chunk number.
pub fn split_chunk_key(key: &[u8]) -> Option<(&[u8], u32)> {
    if key.len() < 4 {
        return None;
    }
    let (base, chunk) = key.split_at(key.len() - 4);
    Some((base, u32::from_be_bytes(chunk.try_into().ok()?)))
}

/// Reassembles consecutive `(key, value)` chunk rows into whole values.
///
/// Yields `(base_key, joined_bytes)`; reports a missing or out-of-order chunk as an error.
pub struct Joiner<I: Iterator> {
    rows: std::iter::Peekable<I>,
}

impl<I> Joiner<I>
where
    I: Iterator<Item = sled::Result<(IVec, IVec)>>,
{
    pub fn new(rows: I) -> Self {
        Self { rows: rows.peekable() }
    }
}

/// A problem found while joining chunks.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    #[error(transparent)]
    Sled(#[from] sled::Error),
    #[error("chunk sequence broken at key {key:02x?}: expected chunk {expected}, found {found}")]
    Gap { key: Vec<u8>, expected: u32, found: u32 },
    #[error("stored key {0:02x?} is too short to carry a chunk number")]
    BadKey(Vec<u8>),
}

impl<I> Iterator for Joiner<I>
where
    I: Iterator<Item = sled::Result<(IVec, IVec)>>,
{
    type Item = Result<(Vec<u8>, Vec<u8>), JoinError>;

    fn next(&mut self) -> Option<Self::Item> {
        let first = match self.rows.next()? {
            Ok(row) => row,
            Err(e) => return Some(Err(e.into())),
        };
        let Some((base, chunk)) = split_chunk_key(&first.0) else {
            return Some(Err(JoinError::BadKey(first.0.to_vec())));
        };
        if chunk != 0 {
            return Some(Err(JoinError::Gap {
                key: base.to_vec(),
                expected: 0,
                found: chunk,
            }));
        }
        let base = base.to_vec();
        let mut value = first.1.to_vec();
        let mut expected = 1u32;
        loop {
            let continues = match self.rows.peek() {
                Some(Ok((key, _))) => split_chunk_key(key).is_some_and(|(b, _)| b == base.as_slice()),
                _ => false,
            };
            if !continues {
                break;
            }
            let (key, piece) = match self.rows.next() {
                Some(Ok(row)) => row,
                Some(Err(e)) => return Some(Err(e.into())),
                None => break,
            };
            let found = split_chunk_key(&key).map(|(_, c)| c).unwrap_or(u32::MAX);
            if found != expected {
                return Some(Err(JoinError::Gap {
                    key: base,
                    expected,
                    found,
                }));
            }
            value.extend_from_slice(&piece);
            expected += 1;
        }
        Some(Ok((base, value)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cover_the_value_exactly() {
        for len in [0, 1, CHUNK_LEN - 1, CHUNK_LEN, CHUNK_LEN + 1, 5 * CHUNK_LEN + 17] {
            let value: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let pieces: Vec<_> = chunks(&value).collect();
            assert!(pieces.iter().all(|(_, p)| p.len() <= CHUNK_LEN));
            let joined: Vec<u8> = pieces.iter().flat_map(|(_, p)| p.iter().copied()).collect();
            assert_eq!(joined, value, "len {len}");
        }
    }

    #[test]
    fn joiner_reassembles_and_detects_gaps() {
        let row = |base: &[u8], chunk: u32, v: &[u8]| Ok((IVec::from(chunk_key(base, chunk)), IVec::from(v)));
        let rows = vec![row(b"a", 0, b"12"), row(b"a", 1, b"34"), row(b"b", 0, b"x")];
        let joined: Vec<_> = Joiner::new(rows.into_iter()).map(Result::unwrap).collect();
        assert_eq!(
            joined,
            vec![(b"a".to_vec(), b"1234".to_vec()), (b"b".to_vec(), b"x".to_vec())]
        );

        let rows = vec![row(b"a", 0, b"12"), row(b"a", 2, b"34")];
        let results: Vec<_> = Joiner::new(rows.into_iter()).collect();
        assert!(matches!(
            results[0],
            Err(JoinError::Gap {
                expected: 1,
                found: 2,
                ..
            })
        ));
    }
}
