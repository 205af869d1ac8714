//! The read model: every response body the HTTP API serves, pre-serialised from one applied
//! table, so a request is a lookup (docs/architecture.md, "Reads and staleness"). One task owns it
//! ([`ReadModelBuilder`]); readers get immutable [`ReadModel`]s through a `watch` channel.
//!
//! After an apply only what changed is rebuilt: the target map's diff names the (job,
//! collector) pairs whose bodies differ; scrape configs are re-rendered only when that map
//! changed. Bodies are deterministic functions of the table (groups in target-id order, keys
//! sorted), so two replicas at one revision serve byte-identical bodies (I2).

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::io::Write;
use std::sync::Arc;
use std::sync::OnceLock;

use axum::body::Bytes;
use rustc_hash::FxHashMap;
use ta_raft::Table;
use ta_raft::TargetId;
use ta_raft::intern::Symbol;
use ta_raft::model::Target;
use tokio::sync::watch;

use crate::url_escape::query_escape;

/// Bodies up to this size keep their plain bytes beside the gzip encoding; larger ones are
/// kept only gzipped (about 25× smaller on these JSON bodies) and inflated per request for the
/// rare client that does not ask for gzip (Prometheus and the OpenTelemetry Collector do).
const KEEP_PLAIN_UP_TO: usize = 64 * 1024;

/// One pre-serialised response body.
#[derive(Debug)]
pub struct Body {
    /// The plain bytes, for small bodies (and every body built with [`Body::new`]).
    plain: Option<Bytes>,
    /// Strong validator over the plain bytes (quoted, as the header carries it).
    pub etag: String,
    /// The validator of the gzip encoding: a strong ETag names one representation.
    pub etag_gzip: String,
    gzipped: OnceLock<Bytes>,
    len: usize,
}

impl Body {
    /// A body kept as it is; its gzip encoding is made on first use and kept.
    pub fn new(bytes: Vec<u8>) -> Self {
        let digest = xxhash_rust::xxh64::xxh64(&bytes, 0);
        Self {
            len: bytes.len(),
            plain: Some(Bytes::from(bytes)),
            etag: format!("\"{digest:016x}\""),
            etag_gzip: format!("\"{digest:016x}-gzip\""),
            gzipped: OnceLock::new(),
        }
    }

    /// A body of the read model: above [`KEEP_PLAIN_UP_TO`] only its gzip encoding is kept.
    pub fn compact(bytes: Vec<u8>) -> Self {
        if bytes.len() <= KEEP_PLAIN_UP_TO {
            return Self::new(bytes);
        }
        let digest = xxhash_rust::xxh64::xxh64(&bytes, 0);
        let gzipped = OnceLock::new();
        let _ = gzipped.set(gzip(&bytes));
        Self {
            len: bytes.len(),
            plain: None,
            etag: format!("\"{digest:016x}\""),
            etag_gzip: format!("\"{digest:016x}-gzip\""),
            gzipped,
        }
    }

    /// The plain bytes (inflated from the gzip encoding when only that is kept).
    pub fn bytes(&self) -> Bytes {
        if let Some(plain) = &self.plain {
            return plain.clone();
        }
        let mut out = Vec::with_capacity(self.len);
        let gzipped = self.gzipped();
        let mut decoder = flate2::read::GzDecoder::new(&gzipped[..]);
        // Inflating our own encoding from memory cannot fail.
        let _ = std::io::Read::read_to_end(&mut decoder, &mut out);
        Bytes::from(out)
    }

    /// Length of the plain bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True for an empty body.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The gzip encoding, compressed on first use (or at build) and kept.
    pub fn gzipped(&self) -> Bytes {
        self.gzipped
            .get_or_init(|| gzip(self.plain.as_deref().unwrap_or_default()))
            .clone()
    }
}

fn gzip(bytes: &[u8]) -> Bytes {
    let mut encoder = flate2::write::GzEncoder::new(Vec::with_capacity(bytes.len() / 16), flate2::Compression::fast());
    // Writing into a Vec cannot fail.
    let _ = encoder.write_all(bytes);
    Bytes::from(encoder.finish().unwrap_or_default())
}

/// The http_sd body of one (job, collector), rendered on first request and kept. Only the
/// bodies someone asks for are ever rendered, once per change: during a cold start or a
/// restart the table passes through many revisions that no collector polls.
#[derive(Debug)]
pub struct CollectorBody {
    /// The collector's targets of the job, in id order.
    ids: Arc<BTreeSet<TargetId>>,
    body: OnceLock<Arc<Body>>,
}

impl CollectorBody {
    fn new(ids: Arc<BTreeSet<TargetId>>) -> Self {
        Self {
            ids,
            body: OnceLock::new(),
        }
    }
}

/// The bodies of one job.
#[derive(Debug, Clone)]
pub struct JobBodies {
    /// `/jobs/{job}/targets?collector_id=C`, per collector that owns targets of the job.
    by_collector: imbl::HashMap<Symbol, Arc<CollectorBody>>,
    /// `/jobs/{job}/targets` without a collector: every collector and its groups. A debugging
    /// view as large as all of the job's bodies together, so it is built on first request.
    all: Arc<OnceLock<Arc<Body>>>,
}

impl JobBodies {
    fn new(by_collector: imbl::HashMap<Symbol, Arc<CollectorBody>>) -> Self {
        Self {
            by_collector,
            all: Arc::new(OnceLock::new()),
        }
    }

    /// The collectors with a body.
    pub fn collectors(&self) -> impl Iterator<Item = &Symbol> {
        self.by_collector.keys()
    }
}

/// Everything the API serves at one revision.
#[derive(Debug, Clone)]
pub struct ReadModel {
    pub revision: u64,
    /// Whether a leader has written the scrape configs (`/readyz`, I6 aside).
    pub configured: bool,
    pub table: Table,
    /// `/scrape_configs` with secrets masked, and with their real values.
    pub scrape_configs_masked: Arc<Body>,
    pub scrape_configs_with_secrets: Arc<Body>,
    /// Masked scrape configs by job, for the HTML pages.
    pub masked_configs: Arc<BTreeMap<String, serde_json::Value>>,
    /// `/jobs`.
    pub jobs: Arc<Body>,
    pub job_bodies: imbl::HashMap<Symbol, JobBodies>,
    /// `[]` followed by a newline: an unknown job or collector.
    pub empty_list: Arc<Body>,
    /// Targets per collector (the unassigned under `None`), for metrics and status.
    pub targets_per_collector: Arc<BTreeMap<Option<Symbol>, usize>>,
}

impl ReadModel {
    /// `/jobs/{job}/targets` without a collector, `None` for an unknown job. The body is
    /// reset whenever the job's targets or the collectors change, so building it from this
    /// model's table gives what a fresh model would hold.
    pub fn all_targets_of(&self, job: &str) -> Option<Arc<Body>> {
        let bodies = self.job_bodies.get(job)?;
        Some(Arc::clone(bodies.all.get_or_init(|| {
            let mut ids: FxHashMap<Symbol, BTreeSet<TargetId>> = FxHashMap::default();
            for (id, target) in self.table.targets() {
                if &*target.job == job
                    && let Some(collector) = &target.collector
                {
                    ids.entry(collector.clone()).or_default().insert(*id);
                }
            }
            Arc::new(Body::compact(all_collectors_body(&self.table, job, |collector| {
                ids.get(collector)
            })))
        })))
    }

    /// The http_sd body for `job` and `collector`, rendered now if no request has yet (which
    /// takes a while for a large body: see [`ReadModel::is_rendered`]). Every body a model
    /// holds was made dirty by no later change than this model's table, so rendering it from
    /// that table gives what rendering it at its own revision would have.
    pub fn targets_of(&self, job: &str, collector: &str) -> Arc<Body> {
        match self
            .job_bodies
            .get(job)
            .and_then(|bodies| bodies.by_collector.get(collector))
        {
            Some(lazy) => Arc::clone(
                lazy.body
                    .get_or_init(|| Arc::new(Body::compact(groups_body(&self.table, &lazy.ids)))),
            ),
            None => Arc::clone(&self.empty_list),
        }
    }

    /// Whether [`ReadModel::targets_of`] (with `collector`) or [`ReadModel::all_targets_of`]
    /// (without) answers at once, without rendering.
    pub fn is_rendered(&self, job: &str, collector: Option<&str>) -> bool {
        let Some(bodies) = self.job_bodies.get(job) else {
            return true;
        };
        match collector {
            Some(collector) => bodies
                .by_collector
                .get(collector)
                .is_none_or(|lazy| lazy.body.get().is_some()),
            None => bodies.all.get().is_some(),
        }
    }

    /// max/mean of targets per collector that owns any (1.0 is perfect balance).
    pub fn balance(&self) -> Option<f64> {
        let counts: Vec<usize> = self
            .table
            .collectors
            .keys()
            .map(|c| self.targets_per_collector.get(&Some(c.clone())).copied().unwrap_or(0))
            .collect();
        let total: usize = counts.iter().sum();
        if counts.is_empty() || total == 0 {
            return None;
        }
        let mean = total as f64 / counts.len() as f64;
        Some(*counts.iter().max().unwrap_or(&0) as f64 / mean)
    }
}

/// Keeps the model in step with applied tables; owned by one task.
pub struct ReadModelBuilder {
    /// job → collector (`None`: unassigned) → target ids, in id order.
    /// Each set is shared with the model's body of that (job, collector) until it changes.
    index: FxHashMap<Symbol, FxHashMap<Option<Symbol>, Arc<BTreeSet<TargetId>>>>,
    model: Option<ReadModel>,
    /// Targets added, changed or removed since memory was last given back.
    rebuilt_since_trim: usize,
}

/// Give freed memory back after this many targets changed (`memory::release_free_memory`):
/// often enough that a cold start's transients do not stay resident, rare enough to cost
/// nothing at rest.
const TRIM_AFTER_REBUILT_TARGETS: usize = 50_000;

impl Default for ReadModelBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl ReadModelBuilder {
    pub fn new() -> Self {
        Self {
            index: FxHashMap::default(),
            model: None,
            rebuilt_since_trim: 0,
        }
    }

    /// The model for `table`, rebuilding only what differs from the previous table.
    pub fn update(&mut self, table: &Table) -> ReadModel {
        let Some(previous) = self.model.take() else {
            self.rebuilt_since_trim += table.targets().len();
            let model = self.build_from_scratch(table);
            self.model = Some(model.clone());
            return model;
        };
        let mut dirty: BTreeSet<(Symbol, Option<Symbol>)> = BTreeSet::new();
        for item in previous.table.targets().diff(table.targets()) {
            self.rebuilt_since_trim += 1;
            match item {
                imbl::ordmap::DiffItem::Add(id, target) => {
                    self.index_insert(*id, target);
                    dirty.insert((target.job.clone(), target.collector.clone()));
                }
                imbl::ordmap::DiffItem::Update { old, new } => {
                    self.index_remove(*old.0, old.1);
                    self.index_insert(*new.0, new.1);
                    dirty.insert((old.1.job.clone(), old.1.collector.clone()));
                    dirty.insert((new.1.job.clone(), new.1.collector.clone()));
                }
                imbl::ordmap::DiffItem::Remove(id, target) => {
                    self.index_remove(*id, target);
                    dirty.insert((target.job.clone(), target.collector.clone()));
                }
            }
        }
        let collectors_changed = !previous.table.collectors.ptr_eq(&table.collectors)
            && previous.table.collectors.keys().ne(table.collectors.keys());
        let configs_changed = !previous.table.scrape_configs.ptr_eq(&table.scrape_configs)
            && previous.table.scrape_configs != table.scrape_configs;

        let mut model = previous;
        let dirty_jobs: BTreeSet<Symbol> = if collectors_changed {
            self.index
                .keys()
                .cloned()
                .chain(model.job_bodies.keys().cloned())
                .collect()
        } else {
            dirty.iter().map(|(job, _)| job.clone()).collect()
        };
        let jobs_before: BTreeSet<Symbol> = model.job_bodies.keys().cloned().collect();
        for (job, collector) in &dirty {
            let Some(collector) = collector else { continue };
            let Some(bodies) = model.job_bodies.get_mut(job) else {
                continue;
            };
            match self.ids_of(job, Some(collector)) {
                Some(ids) if !ids.is_empty() => {
                    bodies
                        .by_collector
                        .insert(collector.clone(), Arc::new(CollectorBody::new(Arc::clone(ids))));
                }
                _ => {
                    bodies.by_collector.remove(collector);
                }
            }
        }
        for job in &dirty_jobs {
            if self
                .index
                .get(job)
                .is_none_or(|by| by.values().all(|ids| ids.is_empty()))
            {
                self.index.remove(job);
                model.job_bodies.remove(job);
                continue;
            }
            let entry = model
                .job_bodies
                .entry(job.clone())
                .or_insert_with(|| JobBodies::new(imbl::HashMap::new()));
            if !jobs_before.contains(job) {
                entry.by_collector = self.collector_bodies(job);
            }
            entry.all = Arc::new(OnceLock::new());
        }
        let jobs_after: BTreeSet<Symbol> = model.job_bodies.keys().cloned().collect();
        if jobs_after != jobs_before {
            model.jobs = Arc::new(Body::new(jobs_body(&jobs_after)));
        }
        if configs_changed {
            let (masked, with_secrets, by_job) = scrape_config_bodies(table);
            model.scrape_configs_masked = Arc::new(masked);
            model.scrape_configs_with_secrets = Arc::new(with_secrets);
            model.masked_configs = Arc::new(by_job);
        }
        if !dirty.is_empty() || collectors_changed {
            model.targets_per_collector = Arc::new(self.counts());
        }
        model.revision = table.revision;
        model.configured = table.config_digest.is_some();
        model.table = table.clone();
        self.model = Some(model.clone());
        model
    }

    fn build_from_scratch(&mut self, table: &Table) -> ReadModel {
        self.index.clear();
        for (id, target) in table.targets() {
            self.index_insert(*id, target);
        }
        let empty_list = Arc::new(Body::new(b"[]\n".to_vec()));
        let mut job_bodies = imbl::HashMap::new();
        let jobs: Vec<Symbol> = self.index.keys().cloned().collect();
        for job in &jobs {
            job_bodies.insert(job.clone(), JobBodies::new(self.collector_bodies(job)));
        }
        let (masked, with_secrets, by_job) = scrape_config_bodies(table);
        ReadModel {
            revision: table.revision,
            configured: table.config_digest.is_some(),
            table: table.clone(),
            scrape_configs_masked: Arc::new(masked),
            scrape_configs_with_secrets: Arc::new(with_secrets),
            masked_configs: Arc::new(by_job),
            jobs: Arc::new(Body::new(jobs_body(&jobs.into_iter().collect()))),
            job_bodies,
            empty_list,
            targets_per_collector: Arc::new(self.counts()),
        }
    }

    fn index_insert(&mut self, id: TargetId, target: &Target) {
        let ids = self
            .index
            .entry(target.job.clone())
            .or_default()
            .entry(target.collector.clone())
            .or_default();
        Arc::make_mut(ids).insert(id);
    }

    fn index_remove(&mut self, id: TargetId, target: &Target) {
        if let Some(by_collector) = self.index.get_mut(&target.job)
            && let Some(ids) = by_collector.get_mut(&target.collector)
        {
            Arc::make_mut(ids).remove(&id);
            if ids.is_empty() {
                by_collector.remove(&target.collector);
            }
        }
    }

    fn ids_of(&self, job: &str, collector: Option<&Symbol>) -> Option<&Arc<BTreeSet<TargetId>>> {
        self.index.get(job)?.get(&collector.cloned())
    }

    fn collector_bodies(&self, job: &Symbol) -> imbl::HashMap<Symbol, Arc<CollectorBody>> {
        let mut bodies = imbl::HashMap::new();
        if let Some(by_collector) = self.index.get(job) {
            for (collector, ids) in by_collector {
                if let Some(collector) = collector
                    && !ids.is_empty()
                {
                    bodies.insert(collector.clone(), Arc::new(CollectorBody::new(Arc::clone(ids))));
                }
            }
        }
        bodies
    }

    fn counts(&self) -> BTreeMap<Option<Symbol>, usize> {
        let mut counts: BTreeMap<Option<Symbol>, usize> = BTreeMap::new();
        for by_collector in self.index.values() {
            for (collector, ids) in by_collector {
                *counts.entry(collector.clone()).or_default() += ids.len();
            }
        }
        counts
    }
}

/// `{"<collector>": {"_link": ..., "targets": [...]}}` and a newline, for every known
/// collector (upstream lists them even for a job with no targets); `ids_of` gives each
/// collector's targets of `job`.
pub fn all_collectors_body<'a>(
    table: &Table,
    job: &str,
    ids_of: impl Fn(&Symbol) -> Option<&'a BTreeSet<TargetId>>,
) -> Vec<u8> {
    let empty = BTreeSet::new();
    let mut out = Vec::new();
    out.push(b'{');
    for (position, collector) in table.collectors.keys().enumerate() {
        if position > 0 {
            out.push(b',');
        }
        json_string(&mut out, collector);
        out.extend_from_slice(b":{\"_link\":");
        // Upstream's link (since #3652) leaves the collector id unescaped.
        let link = format!("/debug/jobs/{}/targets?collector_id={}", query_escape(job), collector);
        json_string(&mut out, &link);
        out.extend_from_slice(b",\"targets\":");
        write_groups(&mut out, table, ids_of(collector).unwrap_or(&empty));
        out.push(b'}');
    }
    out.extend_from_slice(b"}\n");
    out
}

/// `[{"targets":["<address>"],"labels":{...}}, ...]` and a newline.
fn groups_body(table: &Table, ids: &BTreeSet<TargetId>) -> Vec<u8> {
    let mut out = Vec::with_capacity(ids.len() * 512);
    write_groups(&mut out, table, ids);
    out.push(b'\n');
    out
}

fn write_groups(out: &mut Vec<u8>, table: &Table, ids: &BTreeSet<TargetId>) {
    out.push(b'[');
    let mut first = true;
    for id in ids {
        let Some(target) = table.targets().get(id) else {
            continue;
        };
        if !first {
            out.push(b',');
        }
        first = false;
        out.extend_from_slice(b"{\"targets\":[");
        json_string(out, target.labels.get("__address__").unwrap_or(""));
        out.extend_from_slice(b"],\"labels\":{");
        for (position, (name, value)) in target.labels.iter().enumerate() {
            if position > 0 {
                out.push(b',');
            }
            json_string(out, name);
            out.push(b':');
            json_string(out, value);
        }
        out.extend_from_slice(b"}}");
    }
    out.push(b']');
}

fn jobs_body(jobs: &BTreeSet<Symbol>) -> Vec<u8> {
    let mut out = Vec::new();
    out.push(b'{');
    for (position, job) in jobs.iter().enumerate() {
        if position > 0 {
            out.push(b',');
        }
        json_string(&mut out, job);
        out.extend_from_slice(b":{\"_link\":");
        json_string(&mut out, &format!("/jobs/{}/targets", query_escape(job)));
        out.push(b'}');
    }
    out.extend_from_slice(b"}\n");
    out
}

/// The masked and unmasked `/scrape_configs` bodies (no trailing newline, as upstream), and
/// the masked configs by job.
fn scrape_config_bodies(table: &Table) -> (Body, Body, BTreeMap<String, serde_json::Value>) {
    let mut with_secrets = Vec::new();
    let mut by_job = BTreeMap::new();
    with_secrets.push(b'{');
    for (position, (job, config)) in table.scrape_configs.iter().enumerate() {
        if position > 0 {
            with_secrets.push(b',');
        }
        json_string(&mut with_secrets, job);
        with_secrets.push(b':');
        with_secrets.extend_from_slice(config.as_bytes());
        let mut value: serde_json::Value = serde_json::from_str(config).unwrap_or(serde_json::Value::Null);
        crate::secrets::mask_secrets(&mut value);
        by_job.insert(job.to_string(), value);
    }
    with_secrets.push(b'}');
    let masked = serde_json::to_vec(&by_job).unwrap_or_else(|_| b"{}".to_vec());
    (Body::new(masked), Body::new(with_secrets), by_job)
}

/// `text` as a JSON string, escaped as serde_json escapes (control characters, `"` and `\\`).
/// Label names and values almost never need it, and a body holds millions of them: checking
/// and copying is several times faster than escaping byte by byte.
fn json_string(out: &mut Vec<u8>, text: &str) {
    let bytes = text.as_bytes();
    // A fold without an early exit, which the compiler turns into vector instructions.
    let needs_escaping = bytes
        .iter()
        .fold(false, |any, &b| any | (b < 0x20) | (b == b'"') | (b == b'\\'));
    if !needs_escaping {
        out.reserve(bytes.len() + 2);
        out.push(b'"');
        out.extend_from_slice(bytes);
        out.push(b'"');
        return;
    }
    // Serialising a string into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, text);
}

/// Keep a model in step with `tables` and publish it; returns the receiver readers use.
pub fn spawn(mut tables: watch::Receiver<Table>) -> watch::Receiver<Arc<ReadModel>> {
    let mut builder = ReadModelBuilder::new();
    let first = builder.update(&tables.borrow_and_update().clone());
    let (publisher, models) = watch::channel(Arc::new(first));
    tokio::spawn(async move {
        while tables.changed().await.is_ok() {
            let table = tables.borrow_and_update().clone();
            // Large rebuilds would stall the runtime thread serving requests.
            let (returned, model) = match tokio::task::spawn_blocking(move || {
                let started = std::time::Instant::now();
                let model = builder.update(&table);
                tracing::debug!(
                    revision = model.revision,
                    targets = table.targets().len(),
                    ms = started.elapsed().as_millis() as u64,
                    "read model rebuilt"
                );
                if builder.rebuilt_since_trim > TRIM_AFTER_REBUILT_TARGETS {
                    // A large apply and rebuild just freed its transients.
                    builder.rebuilt_since_trim = 0;
                    crate::memory::release_free_memory();
                }
                (builder, model)
            })
            .await
            {
                Ok(result) => result,
                Err(e) => {
                    tracing::error!(%e, "read model rebuild failed");
                    return;
                }
            };
            builder = returned;
            if publisher.send(Arc::new(model)).is_err() {
                return;
            }
        }
    });
    models
}

/// A model straight from one table (tests and tools).
pub fn build(table: &Table) -> ReadModel {
    ReadModelBuilder::new().update(table)
}

#[cfg(test)]
mod tests {
    use rand::Rng;
    use rand::SeedableRng;
    use rand::rngs::StdRng;
    use ta_raft::CollectorState;
    use ta_raft::CommandBuilder;
    use ta_raft::Expect;
    use ta_raft::apply::apply;

    use super::*;

    fn bodies(model: &ReadModel) -> BTreeMap<String, Vec<u8>> {
        let mut out = BTreeMap::new();
        out.insert("/jobs".to_string(), model.jobs.bytes().to_vec());
        out.insert(
            "/scrape_configs".to_string(),
            model.scrape_configs_with_secrets.bytes().to_vec(),
        );
        for (job, bodies) in model.job_bodies.iter() {
            out.insert(
                format!("{job} all"),
                model.all_targets_of(job).expect("known job").bytes().to_vec(),
            );
            for collector in bodies.collectors() {
                out.insert(
                    format!("{job} {collector}"),
                    model.targets_of(job, collector).bytes().to_vec(),
                );
            }
        }
        out
    }

    /// Random batches: the incrementally maintained model always equals one built from
    /// scratch, so replicas that reached a revision by different paths serve the same bytes.
    #[test]
    fn strings_are_escaped_as_serde_json_escapes_them() {
        for text in [
            "",
            "plain",
            "10.0.0.1:9100",
            "quote\"d",
            "back\\slash",
            "tab\there",
            "new\nline",
            "\u{1}",
            "caf\u{e9} \u{2028}",
            "</script>&",
        ] {
            let mut ours = Vec::new();
            json_string(&mut ours, text);
            assert_eq!(ours, serde_json::to_vec(text).unwrap(), "{text:?}");
        }
    }

    #[test]
    fn incremental_updates_equal_a_fresh_build() {
        let seed: u64 = std::env::var("TA_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(7);
        let mut rng = StdRng::seed_from_u64(seed);
        let collectors = ["c-0", "c-1", "c-2", "c-3"];
        let jobs = ["a", "b/c", "d e"];
        let mut table = Table::new();
        let mut builder_model = ReadModelBuilder::new();
        builder_model.update(&table);
        for step in 1..=200u64 {
            let mut batch = CommandBuilder::new();
            for collector in collectors {
                if rng.gen_bool(0.1) {
                    batch.set_collector(collector, None, CollectorState::Ready);
                }
            }
            for job in jobs {
                if rng.gen_bool(0.05) {
                    batch.set_scrape_config(job, format!("{{\"job_name\":\"{job}\",\"n\":{step}}}"));
                }
            }
            let mut touched = BTreeSet::new();
            for _ in 0..rng.gen_range(0..6) {
                let job = jobs[rng.gen_range(0..jobs.len())];
                let address = format!("10.0.0.{}:80", rng.gen_range(0..30));
                let id = TargetId::compute(job, [("__address__", address.as_str())]);
                if !touched.insert(id) {
                    continue;
                }
                let exists = table.targets().contains_key(&id);
                let owner = table
                    .collectors
                    .keys()
                    .nth(rng.gen_range(0..table.collectors.len().max(1)));
                if exists && rng.gen_bool(0.3) {
                    batch.remove_target(id, Expect::Present);
                } else if table.collectors.contains_key(owner.map_or("", |o| o.as_ref())) || owner.is_none() {
                    let value = format!("v{}", rng.gen_range(0..3));
                    batch.upsert_target(
                        id,
                        job,
                        [("__address__", address.as_str()), ("x", value.as_str())],
                        owner.map(|o| o.as_ref()),
                        Expect::Anything,
                    );
                }
            }
            let transition = apply(&table, step, &batch.build());
            table = transition.table;
            let incremental = builder_model.update(&table);
            let fresh = build(&table);
            assert_eq!(
                bodies(&incremental),
                bodies(&fresh),
                "step {step}: incremental model differs from a fresh build (TA_TEST_SEED={seed})"
            );
            assert_eq!(
                incremental.targets_per_collector, fresh.targets_per_collector,
                "seed {seed}"
            );
        }
        assert!(!table.targets().is_empty());
    }

    #[test]
    fn bodies_are_the_upstream_wire_format() {
        let mut batch = CommandBuilder::new();
        batch.set_collector("c-0", None, CollectorState::Ready);
        let id = TargetId::compute("my job", [("__address__", "h:1")]);
        batch.upsert_target(
            id,
            "my job",
            [("__address__", "h:1"), ("a", "\"q\"")],
            Some("c-0"),
            Expect::Absent,
        );
        batch.set_scrape_config("my job", r#"{"job_name":"my job"}"#);
        let table = apply(&Table::new(), 1, &batch.build()).table;
        let model = build(&table);
        assert_eq!(
            std::str::from_utf8(&model.targets_of("my job", "c-0").bytes()).unwrap(),
            "[{\"targets\":[\"h:1\"],\"labels\":{\"__address__\":\"h:1\",\"a\":\"\\\"q\\\"\"}}]\n"
        );
        assert_eq!(&model.targets_of("my job", "nobody").bytes()[..], b"[]\n");
        assert_eq!(&model.targets_of("other", "c-0").bytes()[..], b"[]\n");
        assert_eq!(
            std::str::from_utf8(&model.jobs.bytes()).unwrap(),
            "{\"my job\":{\"_link\":\"/jobs/my+job/targets\"}}\n"
        );
        assert_eq!(
            std::str::from_utf8(&model.scrape_configs_with_secrets.bytes()).unwrap(),
            "{\"my job\":{\"job_name\":\"my job\"}}"
        );
        assert_eq!(
            std::str::from_utf8(&all_collectors_body(&table, "no such job", |_| None)).unwrap(),
            "{\"c-0\":{\"_link\":\"/debug/jobs/no+such+job/targets?collector_id=c-0\",\"targets\":[]}}\n"
        );
        let gzipped = model.targets_of("my job", "c-0").gzipped();
        let mut decoded = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gzipped[..]), &mut decoded).unwrap();
        assert_eq!(decoded, model.targets_of("my job", "c-0").bytes().to_vec());
    }

    #[test]
    fn a_large_body_is_kept_gzipped_and_served_the_same() {
        let large: Vec<u8> = (0..200_000u32)
            .flat_map(|i| format!("{{\"n\":{i}}},").into_bytes())
            .collect();
        let plain = Body::new(large.clone());
        let compact = Body::compact(large.clone());
        assert!(compact.plain.is_none(), "only the gzip encoding is kept");
        assert_eq!(compact.len(), large.len());
        assert_eq!(compact.bytes().to_vec(), large);
        assert_eq!((&compact.etag, &compact.etag_gzip), (&plain.etag, &plain.etag_gzip));
        let mut inflated = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&compact.gzipped()[..]), &mut inflated).unwrap();
        assert_eq!(inflated, large);
        let small = Body::compact(b"[]\n".to_vec());
        assert!(small.plain.is_some(), "small bodies keep their plain bytes");
    }
}
