//! What a failed list or watch means, for any watched resource: permission missing (RBAC),
//! history expired (routine: the watcher relists), or anything else (API server unreachable,
//! bad answers). Watchers report the first two kinds differently: a missing permission is
//! something an operator must fix, an expiry is not a problem at all.

use kube::runtime::watcher;

/// The kind of a watch failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchFailure {
    /// 403: the service account may not list or watch the resource.
    Forbidden,
    /// 410: the resourceVersion is too old; the watcher relists by itself.
    Expired,
    /// Anything else (connection refused, timeouts, 5xx, undecodable answers).
    Other,
}

impl WatchFailure {
    /// The failure kind of a watcher error.
    pub fn of(error: &watcher::Error) -> Self {
        let status = match error {
            watcher::Error::InitialListFailed(kube::Error::Api(status))
            | watcher::Error::WatchStartFailed(kube::Error::Api(status))
            | watcher::Error::WatchFailed(kube::Error::Api(status))
            | watcher::Error::WatchError(status) => status,
            _ => return WatchFailure::Other,
        };
        if status.is_forbidden() {
            WatchFailure::Forbidden
        } else if status.code == 410 || status.reason == "Expired" || status.reason == "Gone" {
            WatchFailure::Expired
        } else {
            WatchFailure::Other
        }
    }

    /// The metric label of this kind.
    pub fn as_str(self) -> &'static str {
        match self {
            WatchFailure::Forbidden => "forbidden",
            WatchFailure::Expired => "expired",
            WatchFailure::Other => "other",
        }
    }
}

/// A one-line description of a watch failure on `resource` in `namespace`, saying what to
/// do about it where that is known.
pub fn describe(error: &watcher::Error, resource: &str, namespace: &str) -> String {
    let cause = crate::discovery::error_chain(error);
    match WatchFailure::of(error) {
        WatchFailure::Forbidden => format!(
            "forbidden to list/watch {resource} in namespace {namespace:?}: the service account needs \
             the RBAC verbs get, list and watch on {resource} there ({cause})"
        ),
        WatchFailure::Expired => format!("watch of {resource} in namespace {namespace:?} expired; relisting ({cause})"),
        WatchFailure::Other => format!("cannot list/watch {resource} in namespace {namespace:?}: {cause}"),
    }
}

#[cfg(test)]
mod tests {
    use kube::core::Status;

    use super::*;

    fn status(code: u16, reason: &str) -> Box<Status> {
        Box::new(Status::failure("test", reason).with_code(code))
    }

    #[test]
    fn failures_are_told_apart_by_their_status() {
        let forbidden = watcher::Error::InitialListFailed(kube::Error::Api(status(403, "Forbidden")));
        assert_eq!(WatchFailure::of(&forbidden), WatchFailure::Forbidden);
        let expired = watcher::Error::WatchError(status(410, "Expired"));
        assert_eq!(WatchFailure::of(&expired), WatchFailure::Expired);
        let unavailable = watcher::Error::WatchStartFailed(kube::Error::Api(status(503, "ServiceUnavailable")));
        assert_eq!(WatchFailure::of(&unavailable), WatchFailure::Other);
        assert_eq!(
            WatchFailure::of(&watcher::Error::NoResourceVersion),
            WatchFailure::Other
        );
    }

    #[test]
    fn a_forbidden_watch_names_the_namespace_and_the_missing_permission() {
        let forbidden = watcher::Error::InitialListFailed(kube::Error::Api(status(403, "Forbidden")));
        let text = describe(&forbidden, "pods", "observability");
        assert!(text.contains("\"observability\""), "{text}");
        assert!(text.contains("list and watch on pods"), "{text}");
    }
}
