//! What the chaos-tests integration tests share: where the release binary they run is.

use std::path::PathBuf;

/// The release `target-allocator` binary: `$TA_CHAOS_BINARY`, else `release/` of the target
/// directory cargo builds into (`$CARGO_TARGET_DIR` or the workspace's `target/`); `None`
/// when no file is there.
pub fn release_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("TA_CHAOS_BINARY") {
        return Some(PathBuf::from(path));
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    Some(target.join("release/target-allocator")).filter(|path| path.is_file())
}
