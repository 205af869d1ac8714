//! A fake Kubernetes API server over real HTTP (axum on 127.0.0.1:0), for the real kube
//! client to list and watch against. It serves any resource by path, so the same server can
//! later hold services, endpointslices, nodes, ...:
//!
//! - `GET /api/v1[/namespaces/{ns}]/{resource}[/{name}]` and
//!   `GET /apis/{group}/{version}[/namespaces/{ns}]/{resource}[/{name}]`;
//! - lists carry the current `resourceVersion` (one counter for everything, as etcd's);
//! - `labelSelector`: equality (`a=b`, `a==b`, `a!=b`) and set-based (`a in (x,y)`,
//!   `a notin (x)`, `a`, `!a`) requirements, comma-separated;
//! - `?watch=true` streams newline-delimited `{"type": ADDED|MODIFIED|DELETED|BOOKMARK|ERROR,
//!   "object": ...}` from the given `resourceVersion`: the retained history after it, then live
//!   changes; an object entering or leaving a selection is ADDED or DELETED for that watch, as
//!   the real API server does; with `allowWatchBookmarks=true` a BOOKMARK with the current
//!   version follows the replay; `timeoutSeconds` ends the stream;
//! - a watch from a version older than the retained history gets one ERROR event carrying a
//!   410 `Expired` Status, then the stream ends (what the API server does; kube's watcher
//!   relists on it);
//! - a resource made unserved ([`FakeApiServer::unserve`], a CRD not installed) answers 404;
//! - a forbidden resource answers 403 with a `Forbidden` Status naming the verb, resource and
//!   namespace, like RBAC's denials;
//! - lists are paged by `limit`, or by a smaller page size the test sets (a server may return
//!   fewer items than asked), with `continue` tokens over a snapshot taken at the first page,
//!   as the API server's are; a token older than the retained history answers 410 `Expired`.
//!
//! Test controls are named methods: [`FakeApiServer::apply`], [`FakeApiServer::delete`],
//! [`FakeApiServer::drop_watches`], [`FakeApiServer::expire_history`],
//! [`FakeApiServer::forbid`] / [`FakeApiServer::allow`]; [`FakeApiServer::requests`] tells
//! what the client asked for; [`FakeApiServer::set_page_size`] splits lists into pages.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::MutexGuard;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::Method;
use axum::http::StatusCode;
use axum::http::Uri;
use axum::http::header;
use axum::response::IntoResponse;
use axum::response::Response;
use futures::SinkExt;
use serde::Serialize;
use serde_json::Value;
use serde_json::json;
use target_allocator::url_escape::query_value;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

/// Where objects of one kind live: `v1` + `pods`, `discovery.k8s.io/v1` + `endpointslices`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct Kind {
    api_version: String,
    resource: String,
}

/// One stored object's identity.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct ObjectKey {
    kind: Kind,
    namespace: Option<String>,
    name: String,
}

/// A stored object: its JSON tree (for selectors and watch events) and its serialised form,
/// written once when it is applied, so that lists of 100k objects cost a copy of bytes rather
/// than a deep clone and a serialisation per request (the scale benchmark runs this server on
/// the same two cores as the replicas it measures).
#[derive(Debug, Clone)]
struct Stored {
    value: Value,
    json: Bytes,
}

impl Stored {
    fn new(value: Value) -> Self {
        let json = Bytes::from(value.to_string());
        Self { value, json }
    }
}

/// One change, as the history keeps it: the object before and after (`None`: absent).
#[derive(Debug, Clone)]
struct Change {
    resource_version: u64,
    kind: Kind,
    before: Option<Value>,
    after: Option<Value>,
}

/// What a request asks about: a kind, maybe one namespace, maybe one object.
#[derive(Debug, Clone)]
struct Target {
    kind: Kind,
    namespace: Option<String>,
    name: Option<String>,
}

/// A request the server answered, for assertions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    /// `list`, `watch` or `get`.
    pub verb: &'static str,
    pub resource: String,
    pub namespace: Option<String>,
    /// The `resourceVersion` parameter.
    pub resource_version: Option<String>,
    pub label_selector: Option<String>,
    /// The `continue` parameter of a list.
    pub continue_token: Option<String>,
    /// The status answered; for a watch answered with an ERROR event instead of changes
    /// (HTTP 200), that event's code.
    pub status: u16,
}

struct Store {
    resource_version: u64,
    /// Watches may start from this version or later; older ones get 410.
    oldest_watchable: u64,
    objects: BTreeMap<ObjectKey, Stored>,
    history: Vec<Arc<Change>>,
    /// Resources (plural names) answered with 403.
    forbidden: BTreeSet<String>,
    /// Resources (plural names) answered with 404, as an API server without their CRD.
    unserved: BTreeSet<String>,
    /// Cancelled (and replaced) to end every open watch stream.
    watches_end: CancellationToken,
    open_watches: usize,
    requests: Vec<Recorded>,
    /// Most items per list page, whatever the client's `limit`.
    page_size: Option<usize>,
    /// The rest of paged lists by continue token: the snapshot's version, the list's kind
    /// and its items.
    pages: BTreeMap<String, (u64, String, Vec<Bytes>)>,
    next_token: u64,
}

struct Shared {
    store: Mutex<Store>,
    changes: broadcast::Sender<Arc<Change>>,
}

impl Shared {
    fn store(&self) -> MutexGuard<'_, Store> {
        // A test thread that panicked while holding the lock has already failed the test.
        self.store.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The running server; stops when dropped.
pub struct FakeApiServer {
    shared: Arc<Shared>,
    url: String,
    stop: CancellationToken,
}

impl FakeApiServer {
    /// Start on an ephemeral port of 127.0.0.1.
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the fake API server");
        let url = format!("http://{}", listener.local_addr().expect("local address"));
        let (changes, _) = broadcast::channel(4096);
        let shared = Arc::new(Shared {
            store: Mutex::new(Store {
                resource_version: 1,
                oldest_watchable: 1,
                objects: BTreeMap::new(),
                history: Vec::new(),
                forbidden: BTreeSet::new(),
                unserved: BTreeSet::new(),
                watches_end: CancellationToken::new(),
                open_watches: 0,
                requests: Vec::new(),
                page_size: None,
                pages: BTreeMap::new(),
                next_token: 0,
            }),
            changes,
        });
        let stop = CancellationToken::new();
        let router = Router::new().fallback(handle).with_state(Arc::clone(&shared));
        let stopped = stop.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, router)
                .with_graceful_shutdown(async move { stopped.cancelled().await })
                .await;
        });
        Self { shared, url, stop }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A kube client talking to this server with no credentials.
    pub fn client(&self) -> kube::Client {
        let uri = self.url.parse().expect("the server's own URL");
        kube::Client::try_from(kube::Config::new(uri)).expect("a client for the fake API server")
    }

    /// A kubeconfig file content whose current context points at this server.
    pub fn kubeconfig(&self, namespace: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: fake\n\
             clusters: [{{name: fake, cluster: {{server: '{url}'}}}}]\n\
             users: [{{name: nobody, user: {{}}}}]\n\
             contexts: [{{name: fake, context: {{cluster: fake, user: nobody, namespace: {namespace}}}}}]\n",
            url = self.url
        )
    }

    /// Create or replace an object (the server sets its `resourceVersion`, and its `uid` and
    /// `creationTimestamp` when missing). Returns the new resource version.
    pub fn apply<K>(&self, object: &K) -> u64
    where
        K: kube::Resource<DynamicType = ()> + Serialize,
    {
        let value = serde_json::to_value(object).expect("a serialisable object");
        self.apply_value(kind_of::<K>(), value)
    }

    /// [`FakeApiServer::apply`] for an object given as JSON, of any resource (custom
    /// resources without a Rust type): `api_version` such as `monitoring.coreos.com/v1`,
    /// `resource` its plural.
    pub fn apply_json(&self, api_version: &str, resource: &str, object: Value) -> u64 {
        let kind = Kind {
            api_version: api_version.to_string(),
            resource: resource.to_string(),
        };
        self.apply_value(kind, object)
    }

    /// [`FakeApiServer::delete`] for any resource.
    pub fn delete_json(&self, api_version: &str, resource: &str, namespace: Option<&str>, name: &str) -> bool {
        let kind = Kind {
            api_version: api_version.to_string(),
            resource: resource.to_string(),
        };
        self.delete_kind(kind, namespace, name)
    }

    fn apply_value(&self, kind: Kind, mut value: Value) -> u64 {
        let name = value["metadata"]["name"]
            .as_str()
            .expect("an object to apply has a name")
            .to_string();
        let namespace = value["metadata"]["namespace"].as_str().map(str::to_string);
        let mut store = self.shared.store();
        store.resource_version += 1;
        let version = store.resource_version;
        let metadata = &mut value["metadata"];
        metadata["resourceVersion"] = json!(version.to_string());
        if metadata["uid"].is_null() {
            metadata["uid"] = json!(format!("uid-{name}-{version}"));
        }
        if metadata["creationTimestamp"].is_null() {
            metadata["creationTimestamp"] = json!("2026-01-01T00:00:00Z");
        }
        let key = ObjectKey {
            kind: kind.clone(),
            namespace,
            name,
        };
        let before = store
            .objects
            .insert(key, Stored::new(value.clone()))
            .map(|stored| stored.value);
        self.record_change(&mut store, kind, before, Some(value));
        version
    }

    /// Delete an object; `false` if there was none.
    pub fn delete<K>(&self, namespace: Option<&str>, name: &str) -> bool
    where
        K: kube::Resource<DynamicType = ()>,
    {
        self.delete_kind(kind_of::<K>(), namespace, name)
    }

    fn delete_kind(&self, kind: Kind, namespace: Option<&str>, name: &str) -> bool {
        let key = ObjectKey {
            kind: kind.clone(),
            namespace: namespace.map(str::to_string),
            name: name.to_string(),
        };
        let mut store = self.shared.store();
        let Some(Stored { value: mut gone, .. }) = store.objects.remove(&key) else {
            return false;
        };
        store.resource_version += 1;
        // The API server sends a deleted object with the deletion's resource version.
        gone["metadata"]["resourceVersion"] = json!(store.resource_version.to_string());
        self.record_change(&mut store, kind, Some(gone), None);
        true
    }

    fn record_change(&self, store: &mut Store, kind: Kind, before: Option<Value>, after: Option<Value>) {
        let change = Arc::new(Change {
            resource_version: store.resource_version,
            kind,
            before,
            after,
        });
        store.history.push(Arc::clone(&change));
        // Sent under the lock, so a watch starting concurrently either replays the change
        // from the history or receives it live, never neither.
        let _ = self.shared.changes.send(change);
    }

    /// End every open watch stream cleanly, as an API server restart or a load balancer
    /// timeout does. Clients resume from their last resource version.
    pub fn drop_watches(&self) {
        let mut store = self.shared.store();
        store.watches_end.cancel();
        store.watches_end = CancellationToken::new();
    }

    /// Forget the change history (as etcd compaction does): every resource version handed
    /// out so far becomes too old to watch from, and open watches end, so clients resuming
    /// get a 410 and must relist.
    pub fn expire_history(&self) {
        let mut store = self.shared.store();
        store.resource_version += 1;
        store.oldest_watchable = store.resource_version;
        store.history.clear();
        store.watches_end.cancel();
        store.watches_end = CancellationToken::new();
    }

    /// Answer every request for `resource` (plural, e.g. `pods`) with 403 from now on; open
    /// watches of it end, as their next attempt would be refused.
    pub fn forbid(&self, resource: &str) {
        let mut store = self.shared.store();
        store.forbidden.insert(resource.to_string());
        store.watches_end.cancel();
        store.watches_end = CancellationToken::new();
    }

    /// Serve `resource` again.
    pub fn allow(&self, resource: &str) {
        self.shared.store().forbidden.remove(resource);
    }

    /// Answer every request for `resource` with 404 from now on, as an API server on which
    /// its CRD is not installed; open watches of it end.
    pub fn unserve(&self, resource: &str) {
        let mut store = self.shared.store();
        store.unserved.insert(resource.to_string());
        store.watches_end.cancel();
        store.watches_end = CancellationToken::new();
    }

    /// Serve `resource` again (its CRD installed).
    pub fn serve(&self, resource: &str) {
        self.shared.store().unserved.remove(resource);
    }

    /// Answer lists with at most `items` items per page (`None`: only the client's `limit`).
    pub fn set_page_size(&self, items: Option<usize>) {
        self.shared.store().page_size = items;
    }

    /// Every request answered so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.store().requests.clone()
    }

    /// How many `verb` requests (`list`, `watch`) for `resource` were answered.
    pub fn count(&self, verb: &str, resource: &str) -> usize {
        self.shared
            .store()
            .requests
            .iter()
            .filter(|r| r.verb == verb && r.resource == resource)
            .count()
    }

    /// Watch streams open now.
    pub fn open_watches(&self) -> usize {
        self.shared.store().open_watches
    }
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        self.drop_watches();
        self.stop.cancel();
    }
}

fn kind_of<K: kube::Resource<DynamicType = ()>>() -> Kind {
    Kind {
        api_version: K::api_version(&()).into_owned(),
        resource: K::plural(&()).into_owned(),
    }
}

/// `/api/v1/...` or `/apis/{group}/{version}/...` to what it names.
fn parse_path(path: &str) -> Option<Target> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (api_version, rest) = match segments.as_slice() {
        ["api", version, rest @ ..] => (version.to_string(), rest),
        ["apis", group, version, rest @ ..] => (format!("{group}/{version}"), rest),
        _ => return None,
    };
    let (namespace, resource, name) = match rest {
        ["namespaces", namespace, resource] => (Some(*namespace), *resource, None),
        ["namespaces", namespace, resource, name] => (Some(*namespace), *resource, Some(*name)),
        [resource] => (None, *resource, None),
        [resource, name] => (None, *resource, Some(*name)),
        _ => return None,
    };
    Some(Target {
        kind: Kind {
            api_version,
            resource: resource.to_string(),
        },
        namespace: namespace.map(str::to_string),
        name: name.map(str::to_string),
    })
}

/// One requirement of a label selector.
#[derive(Debug, Clone)]
enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    DoesNotExist(String),
}

/// Parse `a=b,c!=d,e in (x,y),!f`; `Err` names what could not be read.
fn parse_selector(text: &str) -> Result<Vec<Requirement>, String> {
    // Split on commas outside parentheses.
    let mut parts = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    let values = |list: &str| -> Result<Vec<String>, String> {
        let inner = list
            .trim()
            .strip_prefix('(')
            .and_then(|l| l.strip_suffix(')'))
            .ok_or_else(|| format!("expected (values) in {list:?}"))?;
        Ok(inner.split(',').map(|v| v.trim().to_string()).collect())
    };
    let mut requirements = Vec::new();
    for part in parts.into_iter().map(str::trim).filter(|p| !p.is_empty()) {
        let requirement = if let Some((key, value)) = part.split_once("!=") {
            Requirement::NotEquals(key.trim().into(), value.trim().into())
        } else if let Some((key, value)) = part.split_once("==") {
            Requirement::Equals(key.trim().into(), value.trim().into())
        } else if let Some((key, value)) = part.split_once('=') {
            Requirement::Equals(key.trim().into(), value.trim().into())
        } else if let Some((key, list)) = part.split_once(" notin ") {
            Requirement::NotIn(key.trim().into(), values(list)?)
        } else if let Some((key, list)) = part.split_once(" in ") {
            Requirement::In(key.trim().into(), values(list)?)
        } else if let Some(key) = part.strip_prefix('!') {
            Requirement::DoesNotExist(key.trim().into())
        } else if part.chars().all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c)) {
            Requirement::Exists(part.into())
        } else {
            return Err(format!("unable to parse requirement {part:?}"));
        };
        requirements.push(requirement);
    }
    Ok(requirements)
}

fn selects(requirements: &[Requirement], object: &Value) -> bool {
    let labels = &object["metadata"]["labels"];
    let label = |key: &str| labels.get(key).and_then(Value::as_str);
    requirements.iter().all(|requirement| match requirement {
        Requirement::Equals(key, value) => label(key) == Some(value.as_str()),
        Requirement::NotEquals(key, value) => label(key) != Some(value.as_str()),
        Requirement::In(key, values) => label(key).is_some_and(|v| values.iter().any(|x| x == v)),
        Requirement::NotIn(key, values) => label(key).is_none_or(|v| values.iter().all(|x| x != v)),
        Requirement::Exists(key) => label(key).is_some(),
        Requirement::DoesNotExist(key) => label(key).is_none(),
    })
}

/// Whether `object` of `kind` is within what a request targets (kind, namespace, labels).
fn within(target: &Target, requirements: &[Requirement], kind: &Kind, object: &Value) -> bool {
    *kind == target.kind
        && target
            .namespace
            .as_deref()
            .is_none_or(|namespace| object["metadata"]["namespace"].as_str() == Some(namespace))
        && target
            .name
            .as_deref()
            .is_none_or(|name| object["metadata"]["name"].as_str() == Some(name))
        && selects(requirements, object)
}

/// A Kubernetes `Status` failure.
fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    })
}

fn json_response(code: StatusCode, body: &Value) -> Response {
    bytes_response(code, Bytes::from(body.to_string()))
}

fn bytes_response(code: StatusCode, body: Bytes) -> Response {
    (code, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn handle(State(shared): State<Arc<Shared>>, method: Method, uri: Uri) -> Response {
    let query = uri.query();
    let Some(target) = parse_path(uri.path()) else {
        return json_response(
            StatusCode::NOT_FOUND,
            &status(404, "NotFound", &format!("the server could not find {}", uri.path())),
        );
    };
    let watching = query_value(query, "watch").is_some_and(|w| w == "true" || w == "1");
    let verb = match (watching, &target.name) {
        (true, _) => "watch",
        (false, Some(_)) => "get",
        (false, None) => "list",
    };
    let label_selector = query_value(query, "labelSelector").filter(|s| !s.is_empty());
    let resource_version = query_value(query, "resourceVersion").filter(|v| !v.is_empty());
    let mut recorded = Recorded {
        verb,
        resource: target.kind.resource.clone(),
        namespace: target.namespace.clone(),
        resource_version: resource_version.clone(),
        label_selector: label_selector.clone(),
        continue_token: query_value(query, "continue").filter(|c| !c.is_empty()),
        status: 200,
    };
    let record = |recorded: Recorded| shared.store().requests.push(recorded);

    if method != Method::GET {
        recorded.status = 405;
        record(recorded);
        return json_response(
            StatusCode::METHOD_NOT_ALLOWED,
            &status(405, "MethodNotAllowed", "the fake API server only reads"),
        );
    }
    if shared.store().forbidden.contains(&target.kind.resource) {
        recorded.status = 403;
        record(recorded);
        let group = target.kind.api_version.rsplit_once('/').map_or("", |(group, _)| group);
        let scope = match &target.namespace {
            Some(namespace) => format!(" in the namespace \"{namespace}\""),
            None => " at the cluster scope".to_string(),
        };
        let message = format!(
            "{resource} is forbidden: User \"system:serviceaccount:test:target-allocator\" cannot {verb} \
             resource \"{resource}\" in API group \"{group}\"{scope}",
            resource = target.kind.resource,
        );
        let mut body = status(403, "Forbidden", &message);
        body["details"] = json!({"kind": target.kind.resource});
        return json_response(StatusCode::FORBIDDEN, &body);
    }
    if shared.store().unserved.contains(&target.kind.resource) {
        recorded.status = 404;
        record(recorded);
        return json_response(
            StatusCode::NOT_FOUND,
            &status(404, "NotFound", "the server could not find the requested resource"),
        );
    }
    let requirements = match label_selector.as_deref().map(parse_selector).transpose() {
        Ok(requirements) => requirements.unwrap_or_default(),
        Err(problem) => {
            recorded.status = 400;
            record(recorded);
            return json_response(StatusCode::BAD_REQUEST, &status(400, "BadRequest", &problem));
        }
    };
    match verb {
        "watch" => {
            let timeout = query_value(query, "timeoutSeconds")
                .and_then(|t| t.parse::<u64>().ok())
                .map(Duration::from_secs);
            let bookmarks = query_value(query, "allowWatchBookmarks").is_some_and(|b| b == "true");
            watch(shared, target, requirements, recorded, bookmarks, timeout)
        }
        "get" => {
            let store = shared.store();
            let found = store
                .objects
                .iter()
                .find(|(key, object)| within(&target, &requirements, &key.kind, &object.value))
                .map(|(_, object)| object.json.clone());
            drop(store);
            match found {
                Some(json) => {
                    record(recorded);
                    bytes_response(StatusCode::OK, json)
                }
                None => {
                    recorded.status = 404;
                    record(recorded);
                    let name = target.name.unwrap_or_default();
                    json_response(
                        StatusCode::NOT_FOUND,
                        &status(
                            404,
                            "NotFound",
                            &format!("{} \"{name}\" not found", target.kind.resource),
                        ),
                    )
                }
            }
        }
        _ => {
            let limit = query_value(query, "limit").and_then(|l| l.parse::<usize>().ok());
            let outcome = list(
                &shared,
                &target,
                &requirements,
                limit,
                recorded.continue_token.as_deref(),
            );
            recorded.status = match &outcome {
                Ok(_) => 200,
                Err(_) => 410,
            };
            record(recorded);
            match outcome {
                Ok(body) => bytes_response(StatusCode::OK, body),
                Err(expired) => json_response(StatusCode::GONE, &expired),
            }
        }
    }
}

/// One page of a list: the first from the current objects (the rest kept as a snapshot under
/// a continue token), a later one from its token; `Err` is the 410 `Expired` Status of a
/// token older than the retained history.
fn list(
    shared: &Shared,
    target: &Target,
    requirements: &[Requirement],
    limit: Option<usize>,
    continue_token: Option<&str>,
) -> Result<Bytes, Value> {
    let mut store = shared.store();
    let (version, kind, items) = match continue_token {
        None => {
            let mut kind = None;
            let items: Vec<Bytes> = store
                .objects
                .iter()
                .filter(|(key, object)| within(target, requirements, &key.kind, &object.value))
                .map(|(_, object)| {
                    if kind.is_none() {
                        kind = object.value["kind"].as_str().map(|kind| format!("{kind}List"));
                    }
                    object.json.clone()
                })
                .collect();
            (
                store.resource_version,
                kind.unwrap_or_else(|| "List".to_string()),
                items,
            )
        }
        Some(token) => match store.pages.remove(token) {
            Some((version, kind, rest)) if version >= store.oldest_watchable => (version, kind, rest),
            _ => {
                let message = "The provided continue parameter is too old to display a consistent list result. \
                               You can start a new list without the continue parameter.";
                return Err(status(410, "Expired", message));
            }
        },
    };
    let page_size = match (limit.filter(|l| *l > 0), store.page_size) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    let (page, rest) = match page_size {
        Some(size) if items.len() > size => {
            let mut page = items;
            let rest = page.split_off(size);
            (page, rest)
        }
        _ => (items, Vec::new()),
    };
    let mut metadata = json!({"resourceVersion": version.to_string()});
    if !rest.is_empty() {
        store.next_token += 1;
        let token = format!("page-{}", store.next_token);
        metadata["continue"] = json!(token);
        metadata["remainingItemCount"] = json!(rest.len());
        store.pages.insert(token, (version, kind.clone(), rest));
    }
    drop(store);
    let head = json!({"kind": kind, "apiVersion": target.kind.api_version, "metadata": metadata}).to_string();
    let mut body = Vec::with_capacity(head.len() + 12 + page.iter().map(|item| item.len() + 1).sum::<usize>());
    // `{"kind":…,"metadata":{…}}` becomes `{"kind":…,"metadata":{…},"items":[…]}`.
    body.extend_from_slice(&head.as_bytes()[..head.len() - 1]);
    body.extend_from_slice(b",\"items\":[");
    for (i, item) in page.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(item);
    }
    body.extend_from_slice(b"]}");
    Ok(Bytes::from(body))
}

/// The watch event a change is for a watch of `target`, if any.
fn event_for(target: &Target, requirements: &[Requirement], change: &Change) -> Option<Value> {
    let was = change
        .before
        .as_ref()
        .filter(|object| within(target, requirements, &change.kind, object));
    let is = change
        .after
        .as_ref()
        .filter(|object| within(target, requirements, &change.kind, object));
    let (kind, object) = match (was, is) {
        (None, Some(now)) => ("ADDED", now.clone()),
        (Some(_), Some(now)) => ("MODIFIED", now.clone()),
        // Gone, or no longer selected: the latter is sent with its new state.
        (Some(before), None) => ("DELETED", change.after.clone().unwrap_or_else(|| before.clone())),
        (None, None) => return None,
    };
    Some(json!({"type": kind, "object": object}))
}

/// An ADDED event line for a stored object's serialised form.
fn added_line(json: &Bytes) -> Result<Bytes, Infallible> {
    let mut text = Vec::with_capacity(json.len() + 30);
    text.extend_from_slice(br#"{"type":"ADDED","object":"#);
    text.extend_from_slice(json);
    text.extend_from_slice(b"}\n");
    Ok(Bytes::from(text))
}

fn line(event: &Value) -> Result<Bytes, Infallible> {
    let mut text = event.to_string();
    text.push('\n');
    Ok(Bytes::from(text))
}

/// Start a watch stream: replay, then bookmark, then live changes until the stream is ended
/// by a control, its timeout, or the client going away.
fn watch(
    shared: Arc<Shared>,
    target: Target,
    requirements: Vec<Requirement>,
    mut recorded: Recorded,
    bookmarks: bool,
    timeout: Option<Duration>,
) -> Response {
    let from = recorded.resource_version.clone();
    let (mut sender, body) = futures::channel::mpsc::channel::<Result<Bytes, Infallible>>(256);
    // Everything a consistent start needs, taken under one lock.
    let (replay, mut live, ends, current, expired) = {
        let mut store = shared.store();
        let current = store.resource_version;
        let from_version = from.as_deref().and_then(|v| v.parse::<u64>().ok());
        let expired = match from_version {
            Some(version) if version != 0 && version < store.oldest_watchable => Some(version),
            _ => None,
        };
        let replay: Vec<Result<Bytes, Infallible>> = match from_version {
            // No version (or 0): the current state as ADDED events, as the API server does.
            None | Some(0) => store
                .objects
                .iter()
                .filter(|(key, object)| within(&target, &requirements, &key.kind, &object.value))
                .map(|(_, object)| added_line(&object.json))
                .collect(),
            Some(version) => store
                .history
                .iter()
                .filter(|change| change.resource_version > version)
                .filter_map(|change| event_for(&target, &requirements, change))
                .map(|event| line(&event))
                .collect(),
        };
        store.open_watches += 1;
        if expired.is_some() {
            recorded.status = 410;
        }
        store.requests.push(recorded);
        (
            replay,
            shared.changes.subscribe(),
            store.watches_end.clone(),
            current,
            expired,
        )
    };
    let kind_name = target.kind.resource.clone();
    tokio::spawn(async move {
        let _open = OpenWatch(Arc::clone(&shared));
        if let Some(version) = expired {
            let error = json!({
                "type": "ERROR",
                "object": status(410, "Expired", &format!("too old resource version: {version} ({current})")),
            });
            let _ = sender.send(line(&error)).await;
            return;
        }
        for event in replay {
            if sender.send(event).await.is_err() {
                return;
            }
        }
        if bookmarks {
            let bookmark = json!({
                "type": "BOOKMARK",
                "object": {
                    "kind": kind_name,
                    "apiVersion": target.kind.api_version,
                    "metadata": {"resourceVersion": current.to_string()},
                },
            });
            if sender.send(line(&bookmark)).await.is_err() {
                return;
            }
        }
        let deadline = async {
            match timeout {
                Some(timeout) => tokio::time::sleep(timeout).await,
                None => std::future::pending().await,
            }
        };
        let mut deadline = std::pin::pin!(deadline);
        loop {
            // Biased: a stream ended by a control must not deliver changes made after it.
            let change = tokio::select! {
                biased;
                () = ends.cancelled() => return,
                () = &mut deadline => return,
                change = live.recv() => change,
            };
            match change {
                Ok(change) if change.resource_version > current => {
                    if let Some(event) = event_for(&target, &requirements, &change)
                        && sender.send(line(&event)).await.is_err()
                    {
                        return;
                    }
                }
                Ok(_) => {}
                // Fell behind or the server is stopping: end the stream; the client resumes.
                Err(_) => return,
            }
        }
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(body))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// Counts a watch stream as open while it lives.
struct OpenWatch(Arc<Shared>);

impl Drop for OpenWatch {
    fn drop(&mut self) {
        let mut store = self.0.store();
        store.open_watches = store.open_watches.saturating_sub(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_of_both_syntaxes_are_understood() {
        let object = json!({"metadata": {"labels": {"app": "collector", "tier": "b"}}});
        let check = |text: &str| selects(&parse_selector(text).expect("a valid selector"), &object);
        assert!(check("app=collector"));
        assert!(check("app==collector,tier!=a"));
        assert!(check("tier in (a,b),app"));
        assert!(!check("tier notin (a,b)"));
        assert!(check("!missing"));
        assert!(!check("app=other"));
    }

    #[tokio::test]
    async fn a_continue_token_older_than_the_history_is_answered_410() {
        let server = FakeApiServer::start().await;
        for name in ["a", "b"] {
            let pod: k8s_openapi::api::core::v1::Pod =
                serde_json::from_value(json!({"metadata": {"name": name, "namespace": "ns"}})).expect("a pod");
            server.apply(&pod);
        }
        let http = reqwest::Client::new();
        let pods = format!("{}/api/v1/namespaces/ns/pods", server.url());
        let first: Value = http
            .get(format!("{pods}?limit=1"))
            .send()
            .await
            .expect("list")
            .json()
            .await
            .expect("JSON");
        assert_eq!(first["items"].as_array().map(Vec::len), Some(1));
        let token = first["metadata"]["continue"]
            .as_str()
            .expect("a continue token")
            .to_string();
        server.expire_history();
        let expired = http
            .get(format!("{pods}?limit=1&continue={token}"))
            .send()
            .await
            .expect("list");
        assert_eq!(expired.status().as_u16(), 410);
        let body: Value = expired.json().await.expect("a Status");
        assert_eq!(body["reason"], "Expired");
    }
}
