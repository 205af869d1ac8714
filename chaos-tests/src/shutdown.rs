//! The run's one stop signal (Ctrl-C, the end of the schedule, or a harness error), fanned
//! out to the workload and the pollers, and the cancellable pause they all wait with.

use std::time::Duration;

pub use tokio_util::sync::CancellationToken as Shutdown;

/// Sleep for `duration`; false if `shutdown` came first.
pub async fn sleep_or_cancel(duration: Duration, shutdown: &Shutdown) -> bool {
    tokio::select! {
        () = tokio::time::sleep(duration) => true,
        () = shutdown.cancelled() => false,
    }
}
