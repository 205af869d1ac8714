//! Running CPU-heavy steps (relabeling, planning, building discovery groups) without stalling
//! the async tasks that share a worker thread, Raft heartbeats and HTTP among them
//! (docs/architecture.md, "The service").

/// Run `work` where it cannot hold up other tasks: on a multi-threaded runtime the worker
/// hands its tasks to another thread first; elsewhere (a single-threaded test runtime, no
/// runtime) it simply runs.
pub fn off_the_runtime<T>(work: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|handle| handle.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(work),
        _ => work(),
    }
}
