//! The Prometheus target-group list format read by `file_sd` (JSON or YAML files) and
//! `http_sd` (JSON bodies): a list of `{targets: [address, ...], labels: {name: value}}`.
//! Parsing follows Prometheus's `targetgroup.Group` unmarshalling, quirks included, and never
//! panics: any input is either a list of groups or a [`GroupListError`].
//!
//! Accepted as Prometheus accepts them: a `null` or empty document is an empty list; `targets`
//! or `labels` may be `null` or absent; a JSON `null` target or label value is `""` (Go leaves
//! the zero value); YAML scalars of any type are taken by their text (`port: 8080` gives
//! `"8080"`, as `yaml.v2` decodes a scalar into a string). Rejected: a `null` group, unknown
//! fields (Prometheus decodes groups strictly in both formats), non-string JSON values,
//! invalid label names, duplicate YAML keys. JSON field names match case-insensitively, as in
//! Go's `encoding/json`. Targets are not checked: Prometheus does not reject an address
//! containing `/` at discovery (only `static_configs` are checked, at config load, and scrape
//! target creation rejects it later), so a target allocator serving discovered labels keeps it.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use yaml_rust2::parser::Event;
use yaml_rust2::parser::Parser;
use yaml_rust2::scanner::TScalarStyle;

use super::ADDRESS_LABEL;
use super::GroupSource;
use super::Interner;
use super::Labels;
use super::Symbol;
use super::TargetGroup;
use super::is_valid_label_name;

/// One group as written, before interning.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawGroup {
    pub targets: Vec<String>,
    pub labels: Vec<(String, String)>,
}

/// Why a target-group list was rejected. `index` is the group's position in the list.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GroupListError {
    #[error("invalid JSON: {0}")]
    Json(String),
    #[error("invalid YAML: {0}")]
    Yaml(String),
    #[error("expected a list of target groups, found {found}")]
    NotAList { found: &'static str },
    #[error("target group {index} is null")]
    NullGroup { index: usize },
    #[error("target group {index}: expected a mapping with `targets` and `labels`, found {found}")]
    NotAGroup { index: usize, found: &'static str },
    #[error("target group {index}: unknown field {field:?}")]
    UnknownField { index: usize, field: String },
    #[error("target group {index}: field {field:?} appears twice")]
    DuplicateField { index: usize, field: String },
    #[error("target group {index}: `targets` must be a list of strings")]
    BadTargets { index: usize },
    #[error("target group {index}: `labels` must be a mapping of label names to strings")]
    BadLabels { index: usize },
    #[error("target group {index}: {name:?} is not a valid label name")]
    InvalidLabelName { index: usize, name: String },
    #[error("target group {index}: label {name:?} appears twice")]
    DuplicateLabel { index: usize, name: String },
    #[error("target group {index}: the value of label {name:?} is not a string")]
    BadLabelValue { index: usize, name: String },
    #[error("YAML nesting deeper than {MAX_YAML_DEPTH} levels")]
    TooDeep,
    #[error("YAML aliases expand to more than {MAX_YAML_NODES} nodes")]
    ExcessiveAliasing,
    #[error("YAML alias to an unknown anchor")]
    UnknownAnchor,
}

/// A valid list nests three levels (list, group, targets/labels); anything much deeper is
/// rejected before it can exhaust the stack of a recursive drop.
const MAX_YAML_DEPTH: usize = 32;
/// Bounds what aliases can expand to ("billion laughs").
const MAX_YAML_NODES: usize = 4_000_000;

/// Parse a JSON target-group list (`file_sd` `.json` file or `http_sd` body). Invalid UTF-8 is
/// replaced, as Go's decoder does, rather than rejected.
pub fn parse_json(bytes: &[u8]) -> Result<Vec<RawGroup>, GroupListError> {
    let mut sink = OwnedGroups(Vec::new());
    stream_json(bytes, &mut sink)?;
    Ok(sink.0)
}

/// [`parse_json`] straight into interned [`TargetGroup`]s, as [`build_groups`] would make
/// them from its result, without materialising the document: each group is interned as soon
/// as it is read, from strings borrowed from `bytes` where they have no escapes. A file of
/// 100k targets with 43 labels each would otherwise hold millions of transient `String`s.
pub fn parse_json_groups(
    bytes: &[u8],
    source_prefix: &str,
    meta_label: (&str, &str),
    interner: &mut Interner,
) -> Result<Vec<TargetGroup>, GroupListError> {
    let mut sink = InternedGroups::new(source_prefix, meta_label, interner);
    stream_json(bytes, &mut sink)?;
    Ok(finish_groups(sink.groups, &sink.source_prefix, &sink.address_name))
}

/// A group as read and interned, before its labels are split and shared
/// ([`finish_groups`]): its targets' addresses, and its labels in name order with one value
/// per name.
struct InternedGroup {
    addresses: Vec<Symbol>,
    pairs: Vec<(Symbol, Symbol)>,
}

/// Receives each group as it is parsed (its targets and labels in document order).
trait GroupSink {
    fn group(&mut self, targets: &[Cow<'_, str>], labels: &[(Cow<'_, str>, Cow<'_, str>)]);
}

struct OwnedGroups(Vec<RawGroup>);

impl GroupSink for OwnedGroups {
    fn group(&mut self, targets: &[Cow<'_, str>], labels: &[(Cow<'_, str>, Cow<'_, str>)]) {
        // As a JSON object decodes: one value per name (the last), in name order.
        let mut by_name: Vec<(String, String)> = labels.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect();
        by_name.reverse();
        by_name.sort_by(|a, b| a.0.cmp(&b.0));
        by_name.dedup_by(|later, earlier| later.0 == earlier.0);
        self.0.push(RawGroup {
            targets: targets.iter().map(|t| t.to_string()).collect(),
            labels: by_name,
        });
    }
}

struct InternedGroups<'i> {
    source_prefix: Arc<str>,
    meta_label: (&'i str, &'i str),
    address_name: Symbol,
    meta: (Symbol, Symbol),
    interner: &'i mut Interner,
    groups: Vec<InternedGroup>,
    /// For each label of the last group, in document order, where it sits in that group's
    /// sorted labels (`None` for a name given again later in the group, whose last value
    /// wins). Files repeat the same names in the same order from group to group, and most
    /// values too: comparing a label with the one at its position in the last group finds
    /// its symbols without a hash lookup, and equal names in equal order sort the same way.
    last_positions: Vec<Option<u32>>,
    /// Scratch: this group's labels in document order.
    current: Vec<(Symbol, Symbol)>,
}

impl<'i> InternedGroups<'i> {
    fn new(source_prefix: &'i str, meta_label: (&'i str, &'i str), interner: &'i mut Interner) -> Self {
        Self {
            source_prefix: source_prefix.into(),
            meta_label,
            address_name: interner.intern(ADDRESS_LABEL),
            meta: (interner.intern(meta_label.0), interner.intern(meta_label.1)),
            interner,
            groups: Vec::new(),
            last_positions: Vec::new(),
            current: Vec::new(),
        }
    }

    /// Sort `current` (document order, the meta label last) by name, the last of equal names
    /// winning, as `Labels::new` would; `same_names` says its names are the last group's in
    /// the same order, so the last group's positions apply.
    fn sorted(&mut self, same_names: bool) -> Vec<(Symbol, Symbol)> {
        let current = &self.current;
        if !same_names {
            let mut order: Vec<u32> = (0..current.len() as u32).collect();
            // Stable: equal names stay in document order, so the last of a run is the last given.
            order.sort_by(|&a, &b| current[a as usize].0.cmp(&current[b as usize].0));
            self.last_positions.clear();
            self.last_positions.resize(current.len(), None);
            let mut kept = 0u32;
            for (rank, &index) in order.iter().enumerate() {
                let last_of_name = order
                    .get(rank + 1)
                    .is_none_or(|&next| current[next as usize].0 != current[index as usize].0);
                if last_of_name {
                    self.last_positions[index as usize] = Some(kept);
                    kept += 1;
                }
            }
        }
        // Moved into place, not copied: the kept positions are 0, 1, ... in name order.
        let mut sorted: Vec<Option<(Symbol, Symbol)>> = Vec::new();
        sorted.resize_with(current.len(), || None);
        for (pair, position) in self.current.drain(..).zip(&self.last_positions) {
            if let Some(position) = position {
                sorted[*position as usize] = Some(pair);
            }
        }
        sorted.into_iter().flatten().collect()
    }
}

impl GroupSink for InternedGroups<'_> {
    fn group(&mut self, targets: &[Cow<'_, str>], labels: &[(Cow<'_, str>, Cow<'_, str>)]) {
        let addresses = targets.iter().map(|address| Symbol::new(address)).collect();
        let last = self.groups.last().map(|group| &group.pairs[..]);
        let mut same_names = last.is_some();
        self.current.clear();
        for (name, value) in labels.iter().filter(|(name, _)| name != self.meta_label.0) {
            let index = self.current.len();
            let at_last = last.and_then(|last| {
                let position = (*self.last_positions.get(index)?)?;
                last.get(position as usize)
            });
            let name = match at_last {
                Some((last_name, _)) if last_name.as_str() == name.as_ref() => last_name.clone(),
                _ => {
                    same_names = false;
                    self.interner.intern(name)
                }
            };
            // A value that is not the last group's is most often new (a pod's name, its
            // address): the registry is asked directly, not first this parser's cache.
            let value = match at_last {
                Some((_, last_value)) if last_value.as_str() == value.as_ref() => last_value.clone(),
                _ => Symbol::new(value),
            };
            self.current.push((name, value));
        }
        self.current.push(self.meta.clone());
        same_names &= self.current.len() == self.last_positions.len();
        let pairs = self.sorted(same_names);
        self.groups.push(InternedGroup { addresses, pairs });
    }
}

/// Parse `bytes` as a target-group list, handing each group to `sink`.
fn stream_json(bytes: &[u8], sink: &mut dyn GroupSink) -> Result<(), GroupListError> {
    // Invalid UTF-8 becomes U+FFFD, as Go's decoder does; checking first is several times
    // faster than the lossy pass over the valid files nearly all are.
    let text = match std::str::from_utf8(bytes) {
        Ok(text) => Cow::Borrowed(text),
        Err(_) => String::from_utf8_lossy(bytes),
    };
    let mut state = StreamState {
        sink,
        failure: None,
        targets: Vec::new(),
        labels: Vec::new(),
    };
    let mut deserializer = serde_json::Deserializer::from_str(&text);
    let parsed = serde::de::DeserializeSeed::deserialize(ListSeed(&mut state), &mut deserializer)
        .and_then(|()| deserializer.end());
    match (parsed, state.failure) {
        (_, Some(failure)) => Err(failure),
        (Err(e), None) => Err(GroupListError::Json(e.to_string())),
        (Ok(()), None) => Ok(()),
    }
}

/// What the visitors share: the sink, the first semantic error (serde's own error type only
/// carries text, so the typed error waits here while serde unwinds), and scratch vectors
/// reused from group to group.
struct StreamState<'s, 'de> {
    sink: &'s mut dyn GroupSink,
    failure: Option<GroupListError>,
    targets: Vec<Cow<'de, str>>,
    labels: Vec<(Cow<'de, str>, Cow<'de, str>)>,
}

impl StreamState<'_, '_> {
    fn fail<E: serde::de::Error>(&mut self, failure: GroupListError) -> E {
        let message = failure.to_string();
        self.failure.get_or_insert(failure);
        E::custom(message)
    }
}

/// The kind of a JSON value, in the words of [`GroupListError`].
fn kind_of(unexpected: serde::de::Unexpected<'_>) -> &'static str {
    use serde::de::Unexpected;
    match unexpected {
        Unexpected::Bool(_) => "a boolean",
        Unexpected::Unsigned(_) | Unexpected::Signed(_) | Unexpected::Float(_) => "a number",
        Unexpected::Str(_) | Unexpected::Char(_) => "a string",
        Unexpected::Seq => "a list",
        Unexpected::Map => "an object",
        Unexpected::Unit | Unexpected::Option => "null",
        _ => "a value",
    }
}

/// Implements the scalar `visit_*` methods of a visitor by handing the value's kind to
/// `self.other(kind)`.
macro_rules! scalars_by_kind {
    () => {
        fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<Self::Value, E> {
            self.other(kind_of(serde::de::Unexpected::Bool(false)))
        }
        fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<Self::Value, E> {
            self.other(kind_of(serde::de::Unexpected::Signed(0)))
        }
        fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<Self::Value, E> {
            self.other(kind_of(serde::de::Unexpected::Unsigned(0)))
        }
        fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<Self::Value, E> {
            self.other(kind_of(serde::de::Unexpected::Float(0.0)))
        }
        fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<Self::Value, E> {
            self.other(kind_of(serde::de::Unexpected::Str("")))
        }
    };
}

/// A seed for one part of group `index`: a visitor of any JSON value, reporting through the
/// shared state.
macro_rules! group_part_seed {
    ($name:ident, $refusal:expr) => {
        struct $name<'a, 's, 'de> {
            state: &'a mut StreamState<'s, 'de>,
            index: usize,
        }

        impl $name<'_, '_, '_> {
            /// Refuse a value of kind `found` where this part expects another.
            fn other<E: serde::de::Error>(self, found: &'static str) -> Result<(), E> {
                let refusal: fn(usize, &'static str) -> GroupListError = $refusal;
                let failure = refusal(self.index, found);
                Err(self.state.fail(failure))
            }
        }

        impl<'de> serde::de::DeserializeSeed<'de> for $name<'_, '_, 'de> {
            type Value = ();
            fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
                deserializer.deserialize_any(self)
            }
        }
    };
}

struct ListSeed<'a, 's, 'de>(&'a mut StreamState<'s, 'de>);

impl<'de> serde::de::DeserializeSeed<'de> for ListSeed<'_, '_, 'de> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl ListSeed<'_, '_, '_> {
    fn other<E: serde::de::Error>(self, found: &'static str) -> Result<(), E> {
        Err(self.0.fail(GroupListError::NotAList { found }))
    }
}

impl<'de> serde::de::Visitor<'de> for ListSeed<'_, '_, 'de> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a list of target groups")
    }
    scalars_by_kind!();
    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        self.other("an object")
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut index = 0;
        while seq
            .next_element_seed(GroupSeed {
                state: &mut *self.0,
                index,
            })?
            .is_some()
        {
            index += 1;
        }
        Ok(())
    }
}

group_part_seed!(GroupSeed, |index, found| GroupListError::NotAGroup { index, found });

impl<'de> serde::de::Visitor<'de> for GroupSeed<'_, '_, 'de> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a target group")
    }
    scalars_by_kind!();
    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        let index = self.index;
        Err(self.state.fail(GroupListError::NullGroup { index }))
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        self.other("a list")
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let index = self.index;
        let state = self.state;
        state.targets.clear();
        state.labels.clear();
        while let Some(field) = map.next_key_seed(StrSeed)? {
            if field.eq_ignore_ascii_case("targets") {
                // A repeated field: the last one counts, as when Go decodes into a struct.
                state.targets.clear();
                map.next_value_seed(TargetsSeed {
                    state: &mut *state,
                    index,
                })?;
            } else if field.eq_ignore_ascii_case("labels") {
                state.labels.clear();
                map.next_value_seed(LabelsSeed {
                    state: &mut *state,
                    index,
                })?;
            } else {
                let field = field.into_owned();
                return Err(state.fail(GroupListError::UnknownField { index, field }));
            }
        }
        let (targets, labels) = (std::mem::take(&mut state.targets), std::mem::take(&mut state.labels));
        state.sink.group(&targets, &labels);
        (state.targets, state.labels) = (targets, labels);
        Ok(())
    }
}

group_part_seed!(TargetsSeed, |index, _| GroupListError::BadTargets { index });

impl<'de> serde::de::Visitor<'de> for TargetsSeed<'_, '_, 'de> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a list of targets")
    }
    scalars_by_kind!();
    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        self.other("an object")
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        loop {
            match seq.next_element_seed(NullableStrSeed)? {
                Some(Scalar::Str(target)) => self.state.targets.push(target),
                Some(Scalar::Null) => self.state.targets.push(Cow::Borrowed("")),
                Some(Scalar::Other) => return self.other("a value"),
                None => return Ok(()),
            }
        }
    }
}

group_part_seed!(LabelsSeed, |index, _| GroupListError::BadLabels { index });

impl<'de> serde::de::Visitor<'de> for LabelsSeed<'_, '_, 'de> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a mapping of label names to strings")
    }
    scalars_by_kind!();
    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        self.other("a list")
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let index = self.index;
        while let Some(name) = map.next_key_seed(StrSeed)? {
            if !is_valid_label_name(&name) {
                let name = name.into_owned();
                return Err(self.state.fail(GroupListError::InvalidLabelName { index, name }));
            }
            let value = match map.next_value_seed(NullableStrSeed)? {
                Scalar::Str(value) => value,
                Scalar::Null => Cow::Borrowed(""),
                Scalar::Other => {
                    let name = name.into_owned();
                    return Err(self.state.fail(GroupListError::BadLabelValue { index, name }));
                }
            };
            self.state.labels.push((name, value));
        }
        Ok(())
    }
}

/// A string, borrowed from the input when it has no escapes.
struct StrSeed;

impl<'de> serde::de::DeserializeSeed<'de> for StrSeed {
    type Value = Cow<'de, str>;
    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> serde::de::Visitor<'de> for StrSeed {
    type Value = Cow<'de, str>;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a string")
    }
    fn visit_borrowed_str<E: serde::de::Error>(self, text: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(text))
    }
    fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(text.to_string()))
    }
    fn visit_string<E: serde::de::Error>(self, text: String) -> Result<Self::Value, E> {
        Ok(Cow::Owned(text))
    }
}

/// A string or null where one is expected; anything else is `Other` (skipped), for the
/// caller to report in its own terms.
enum Scalar<'de> {
    Str(Cow<'de, str>),
    Null,
    Other,
}

struct NullableStrSeed;

impl<'de> serde::de::DeserializeSeed<'de> for NullableStrSeed {
    type Value = Scalar<'de>;
    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for NullableStrSeed {
    type Value = Scalar<'de>;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a string or null")
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        Ok(Scalar::Null)
    }
    fn visit_borrowed_str<E: serde::de::Error>(self, text: &'de str) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Borrowed(text)))
    }
    fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Owned(text.to_string())))
    }
    fn visit_string<E: serde::de::Error>(self, text: String) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Owned(text)))
    }
    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Scalar::Other)
    }
    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Scalar::Other)
    }
    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Scalar::Other)
    }
    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Scalar::Other)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
        Ok(Scalar::Other)
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map
            .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
            .is_some()
        {}
        Ok(Scalar::Other)
    }
}

/// Parse a YAML target-group list (`file_sd` `.yml`/`.yaml` file). Only the first document
/// counts, as with `yaml.v2`.
pub fn parse_yaml(text: &str) -> Result<Vec<RawGroup>, GroupListError> {
    let mut builder = TreeBuilder::default();
    let mut parser = Parser::new_from_str(text);
    // Pull events one by one: `Parser::load` recurses per nesting level and overflows the
    // stack on a deeply nested document before a receiver could refuse it.
    loop {
        let (event, _mark) = parser.next_token().map_err(|e| GroupListError::Yaml(e.to_string()))?;
        if event == Event::StreamEnd {
            break;
        }
        builder.handle(event)?;
        if builder.document.is_some() {
            break;
        }
    }
    let items = match builder.document {
        None => return Ok(Vec::new()),
        Some(node) if node.is_null() => return Ok(Vec::new()),
        Some(Node::Sequence(items)) => items,
        Some(other) => return Err(GroupListError::NotAList { found: other.kind() }),
    };
    items
        .into_iter()
        .enumerate()
        .map(|(index, item)| yaml_group(index, item))
        .collect()
}

fn yaml_group(index: usize, item: Node) -> Result<RawGroup, GroupListError> {
    let entries = match item {
        Node::Mapping(entries) => entries,
        node if node.is_null() => return Err(GroupListError::NullGroup { index }),
        other => {
            return Err(GroupListError::NotAGroup {
                index,
                found: other.kind(),
            });
        }
    };
    let mut group = RawGroup::default();
    let (mut seen_targets, mut seen_labels) = (false, false);
    for (key, value) in entries {
        let field = match key {
            Node::Scalar { text, .. } => text,
            other => {
                return Err(GroupListError::UnknownField {
                    index,
                    field: format!("<{}>", other.kind()),
                });
            }
        };
        let seen = match field.as_str() {
            "targets" => &mut seen_targets,
            "labels" => &mut seen_labels,
            _ => return Err(GroupListError::UnknownField { index, field }),
        };
        if std::mem::replace(seen, true) {
            return Err(GroupListError::DuplicateField { index, field });
        }
        if field == "targets" {
            group.targets = yaml_targets(index, value)?;
        } else {
            group.labels = yaml_labels(index, value)?;
        }
    }
    Ok(group)
}

fn yaml_targets(index: usize, value: Node) -> Result<Vec<String>, GroupListError> {
    let items = match value {
        node if node.is_null() => return Ok(Vec::new()),
        Node::Sequence(items) => items,
        _ => return Err(GroupListError::BadTargets { index }),
    };
    items
        .into_iter()
        .map(|item| item.into_string().ok_or(GroupListError::BadTargets { index }))
        .collect()
}

fn yaml_labels(index: usize, value: Node) -> Result<Vec<(String, String)>, GroupListError> {
    let entries = match value {
        node if node.is_null() => return Ok(Vec::new()),
        Node::Mapping(entries) => entries,
        _ => return Err(GroupListError::BadLabels { index }),
    };
    let mut labels: Vec<(String, String)> = Vec::with_capacity(entries.len());
    for (key, value) in entries {
        let name = key.into_string().ok_or(GroupListError::BadLabels { index })?;
        if !is_valid_label_name(&name) {
            return Err(GroupListError::InvalidLabelName { index, name });
        }
        if labels.iter().any(|(existing, _)| *existing == name) {
            return Err(GroupListError::DuplicateLabel { index, name });
        }
        let Some(value) = value.into_string() else {
            return Err(GroupListError::BadLabelValue { index, name });
        };
        labels.push((name, value));
    }
    Ok(labels)
}

/// A YAML node, keeping scalars as written: the format wants strings, and `yaml.v2` decodes
/// any scalar into a string by its text.
#[derive(Debug, Clone)]
enum Node {
    Scalar { text: String, plain: bool },
    Sequence(Vec<Node>),
    Mapping(Vec<(Node, Node)>),
}

impl Node {
    fn is_null(&self) -> bool {
        matches!(self, Node::Scalar { text, plain: true } if matches!(text.as_str(), "" | "~" | "null" | "Null" | "NULL"))
    }

    /// The string a scalar decodes to (`null` is `""`); `None` for collections.
    fn into_string(self) -> Option<String> {
        if self.is_null() {
            return Some(String::new());
        }
        match self {
            Node::Scalar { text, .. } => Some(text),
            Node::Sequence(_) | Node::Mapping(_) => None,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Node::Scalar { .. } => "a scalar",
            Node::Sequence(_) => "a list",
            Node::Mapping(_) => "a mapping",
        }
    }
}

/// A collection being built, with the number of nodes it holds so far (aliases are charged
/// by the size of what they copy).
enum Open {
    Sequence {
        anchor: usize,
        items: Vec<Node>,
        size: usize,
    },
    Mapping {
        anchor: usize,
        entries: Vec<(Node, Node)>,
        key: Option<Node>,
        size: usize,
    },
}

/// Builds the first document's tree from parser events, iteratively, with bounds on depth
/// and alias expansion.
#[derive(Default)]
struct TreeBuilder {
    open: Vec<Open>,
    anchors: HashMap<usize, (Node, usize)>,
    document: Option<Node>,
    nodes: usize,
}

impl TreeBuilder {
    fn handle(&mut self, event: Event) -> Result<(), GroupListError> {
        match event {
            Event::Scalar(text, style, anchor, _tag) => {
                let plain = style == TScalarStyle::Plain;
                self.complete(Node::Scalar { text, plain }, anchor, 1)
            }
            Event::SequenceStart(anchor, _tag) => self.start(Open::Sequence {
                anchor,
                items: Vec::new(),
                size: 1,
            }),
            Event::MappingStart(anchor, _tag) => self.start(Open::Mapping {
                anchor,
                entries: Vec::new(),
                key: None,
                size: 1,
            }),
            Event::SequenceEnd | Event::MappingEnd => match self.open.pop() {
                Some(Open::Sequence { anchor, items, size }) => self.complete(Node::Sequence(items), anchor, size),
                Some(Open::Mapping {
                    anchor, entries, size, ..
                }) => self.complete(Node::Mapping(entries), anchor, size),
                // The parser balances starts and ends; nothing to close means nothing to do.
                None => Ok(()),
            },
            Event::Alias(id) => {
                let (node, size) = self.anchors.get(&id).cloned().ok_or(GroupListError::UnknownAnchor)?;
                self.charge(size)?;
                self.complete(node, 0, size)
            }
            Event::Nothing | Event::StreamStart | Event::StreamEnd | Event::DocumentStart | Event::DocumentEnd => {
                Ok(())
            }
        }
    }

    fn start(&mut self, open: Open) -> Result<(), GroupListError> {
        if self.open.len() >= MAX_YAML_DEPTH {
            return Err(GroupListError::TooDeep);
        }
        self.charge(1)?;
        self.open.push(open);
        Ok(())
    }

    fn charge(&mut self, nodes: usize) -> Result<(), GroupListError> {
        self.nodes = self.nodes.saturating_add(nodes);
        if self.nodes > MAX_YAML_NODES {
            return Err(GroupListError::ExcessiveAliasing);
        }
        Ok(())
    }

    /// Attach a finished node to its parent (or make it the document).
    fn complete(&mut self, node: Node, anchor: usize, size: usize) -> Result<(), GroupListError> {
        if anchor > 0 {
            self.charge(size)?;
            self.anchors.insert(anchor, (node.clone(), size));
        }
        match self.open.last_mut() {
            None => self.document = Some(node),
            Some(Open::Sequence { items, size: total, .. }) => {
                items.push(node);
                *total = total.saturating_add(size);
            }
            Some(Open::Mapping {
                entries,
                key,
                size: total,
                ..
            }) => {
                match key.take() {
                    None => *key = Some(node),
                    Some(name) => entries.push((name, node)),
                }
                *total = total.saturating_add(size);
            }
        }
        Ok(())
    }
}

/// Intern parsed groups into [`TargetGroup`]s with sources `"{source_prefix}:{index}"` and
/// the provider's meta label (`__meta_filepath`, `__meta_url`) added to every group, over
/// any label of that name in the input, as Prometheus does.
pub fn build_groups(
    raw: Vec<RawGroup>,
    source_prefix: &str,
    meta_label: (&str, &str),
    interner: &mut Interner,
) -> Vec<TargetGroup> {
    let address_name = interner.intern(ADDRESS_LABEL);
    let (meta_name, meta_value) = (interner.intern(meta_label.0), interner.intern(meta_label.1));
    let groups = raw
        .into_iter()
        .map(|group| {
            let addresses = group.targets.iter().map(|address| interner.intern(address)).collect();
            let mut labels: Vec<_> = group
                .labels
                .iter()
                .filter(|(name, _)| name != meta_label.0)
                .map(|(name, value)| (interner.intern(name), interner.intern(value)))
                .collect();
            labels.push((meta_name.clone(), meta_value.clone()));
            InternedGroup {
                addresses,
                pairs: ta_raft::model::sorted_by_name(labels),
            }
        })
        .collect();
    finish_groups(groups, &source_prefix.into(), &address_name)
}

/// Groups sampled to find the labels most one-target groups share.
const FACTOR_SAMPLE: usize = 4096;

/// Below this many one-target groups a list is left as written.
const FACTOR_MIN_GROUPS: usize = 64;

/// Make the [`TargetGroup`]s, sources `"{source_prefix}:{index}"`, splitting the labels of
/// a list of many one-target groups.
///
/// Such a list (a CMDB export: one group per host, its labels written out in full) repeats
/// most labels in every group. Each such group keeps as its labels only the pairs that at
/// least one in 16 of them carry, one allocation shared by every group with the same ones
/// ([`Labels::shared`]); the rest move to the target's own labels. The served labels are the
/// same pairs either way, since a target's own labels hold only its address, which stays
/// where it is (docs/architecture.md, "Memory layout"). At a million such targets this is
/// most of the desired state's memory.
///
/// Which pairs are shared is read from an evenly spread sample, so the pass costs one small
/// map lookup per label; a change to a few groups of a file leaves the others' split as it
/// was, so they stay unchanged for the pipeline. The pairs are moved, never copied: the split
/// used to take a second reference to each label and drop the first set, and was a fifth
/// of parsing a file of one-target groups (docs/benchmarks.md, "Interning and parsing at a
/// million one-target groups").
fn finish_groups(groups: Vec<InternedGroup>, source_prefix: &Arc<str>, address: &Symbol) -> Vec<TargetGroup> {
    let common = common_pairs(&groups);
    // Consecutive groups most often share the same common pairs: the last set made is
    // compared first, before the process-wide registry of label sets is asked.
    let mut last_common: Option<(Vec<u64>, Labels)> = None;
    let is_common = |pair: &(Symbol, Symbol)| &pair.0 == address || common.contains(&pair_key(pair));
    groups
        .into_iter()
        .enumerate()
        .map(|(index, group)| {
            let source = GroupSource::indexed(source_prefix, index);
            let in_common = if group.addresses.len() == 1 && !common.is_empty() {
                group.pairs.iter().filter(|pair| is_common(pair)).count()
            } else {
                0
            };
            if in_common == 0 || in_common == group.pairs.len() {
                let targets = (group.addresses.into_iter())
                    .map(|target| Labels::new(vec![(address.clone(), target)]))
                    .collect();
                return TargetGroup {
                    source,
                    targets,
                    labels: Labels::new(group.pairs),
                };
            }
            let mut shared = Vec::with_capacity(in_common);
            let mut own = Vec::with_capacity(group.pairs.len() - in_common + 1);
            for pair in group.pairs {
                if is_common(&pair) {
                    shared.push(pair);
                } else {
                    own.push(pair);
                }
            }
            // No own label is named `__address__` (that name is always common): the target's
            // address goes in at its place in name order.
            let target = group.addresses.into_iter().next().expect("a one-target group");
            let at = own.partition_point(|(name, _)| name < address);
            own.insert(at, (address.clone(), target));
            let keys: Vec<u64> = shared.iter().map(pair_key).collect();
            let labels = match &last_common {
                Some((last_keys, labels)) if *last_keys == keys => labels.clone(),
                _ => {
                    let labels = Labels::shared(shared);
                    last_common = Some((keys, labels.clone()));
                    labels
                }
            };
            TargetGroup {
                source,
                targets: vec![Labels::new(own)],
                labels,
            }
        })
        .collect()
}

/// A pair by its symbol numbers, which stay its own while the pair is held.
fn pair_key((name, value): &(Symbol, Symbol)) -> u64 {
    u64::from(name.id()) << 32 | u64::from(value.id())
}

/// The (name, value) pairs, by symbol numbers, that at least one in 16 of an evenly spread
/// sample of the one-target groups carry; none when there are too few such groups.
fn common_pairs(groups: &[InternedGroup]) -> rustc_hash::FxHashSet<u64> {
    let singles = groups.iter().filter(|group| group.addresses.len() == 1).count();
    if singles < FACTOR_MIN_GROUPS {
        return Default::default();
    }
    let stride = singles.div_ceil(FACTOR_SAMPLE);
    let mut counts: rustc_hash::FxHashMap<u64, u32> = rustc_hash::FxHashMap::default();
    let mut sampled = 0u32;
    for group in groups.iter().filter(|group| group.addresses.len() == 1).step_by(stride) {
        sampled += 1;
        for pair in &group.pairs {
            *counts.entry(pair_key(pair)).or_default() += 1;
        }
    }
    let threshold = (sampled / 16).max(2);
    counts
        .into_iter()
        .filter(|&(_, count)| count >= threshold)
        .map(|(key, _)| key)
        .collect()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use proptest::test_runner::Config;
    use proptest::test_runner::RngAlgorithm;
    use proptest::test_runner::TestRng;
    use proptest::test_runner::TestRunner;

    use super::*;

    /// A property-test runner seeded from `DISCOVERY_PROPTEST_SEED` or `default_seed`, and
    /// the seed, for the failure message.
    fn seeded_runner(default_seed: u64, cases: u32) -> (u64, TestRunner) {
        let seed: u64 = std::env::var("DISCOVERY_PROPTEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(default_seed);
        let mut seed_bytes = [0u8; 32];
        seed_bytes[..8].copy_from_slice(&seed.to_le_bytes());
        let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes);
        let config = Config {
            cases,
            failure_persistence: None,
            ..Config::default()
        };
        (seed, TestRunner::new_with_rng(config, rng))
    }

    fn group(targets: &[&str], labels: &[(&str, &str)]) -> RawGroup {
        RawGroup {
            targets: targets.iter().map(|t| t.to_string()).collect(),
            labels: labels.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect(),
        }
    }

    #[test]
    fn a_json_list_gives_its_groups() {
        let body = br#"[{"targets": ["a:1", "b:2"], "labels": {"env": "prod"}}, {"targets": []}]"#;
        assert_eq!(
            parse_json(body),
            Ok(vec![group(&["a:1", "b:2"], &[("env", "prod")]), group(&[], &[])])
        );
    }

    #[test]
    fn json_follows_go_decoding_quirks() {
        assert_eq!(parse_json(b"null"), Ok(vec![]));
        assert_eq!(
            parse_json(br#"[{"Targets": [null], "LABELS": {"a": null}}]"#),
            Ok(vec![group(&[""], &[("a", "")])])
        );
        assert_eq!(parse_json(b"[null]"), Err(GroupListError::NullGroup { index: 0 }));
        assert_eq!(
            parse_json(br#"[{"targets": [], "extra": 1}]"#),
            Err(GroupListError::UnknownField {
                index: 0,
                field: "extra".into()
            })
        );
        assert_eq!(
            parse_json(br#"[{"labels": {"port": 80}}]"#),
            Err(GroupListError::BadLabelValue {
                index: 0,
                name: "port".into()
            })
        );
        assert_eq!(
            parse_json(br#"[{"labels": {"": "x"}}]"#),
            Err(GroupListError::InvalidLabelName {
                index: 0,
                name: "".into()
            })
        );
        assert_eq!(
            parse_json(br#"{"targets": []}"#),
            Err(GroupListError::NotAList { found: "an object" })
        );
        assert!(matches!(parse_json(b"[{"), Err(GroupListError::Json(_))));
    }

    #[test]
    fn a_yaml_list_keeps_scalars_as_written() {
        let text = "- targets: ['a:1', b:2, 0x10]\n  labels:\n    port: 8080\n    flag: yes\n    empty: ~\n";
        assert_eq!(
            parse_yaml(text),
            Ok(vec![group(
                &["a:1", "b:2", "0x10"],
                &[("port", "8080"), ("flag", "yes"), ("empty", "")]
            )])
        );
    }

    #[test]
    fn yaml_is_decoded_strictly() {
        assert_eq!(parse_yaml(""), Ok(vec![]));
        assert_eq!(parse_yaml("~"), Ok(vec![]));
        assert_eq!(parse_yaml("- ~"), Err(GroupListError::NullGroup { index: 0 }));
        assert_eq!(
            parse_yaml("- targets: []\n  other: 1"),
            Err(GroupListError::UnknownField {
                index: 0,
                field: "other".into()
            })
        );
        assert_eq!(
            parse_yaml("- labels: {a: x, a: y}"),
            Err(GroupListError::DuplicateLabel {
                index: 0,
                name: "a".into()
            })
        );
        assert_eq!(
            parse_yaml("- labels: {a: [1]}"),
            Err(GroupListError::BadLabelValue {
                index: 0,
                name: "a".into()
            })
        );
        assert_eq!(
            parse_yaml("- targets: a:1"),
            Err(GroupListError::BadTargets { index: 0 })
        );
        assert_eq!(parse_yaml("a: b"), Err(GroupListError::NotAList { found: "a mapping" }));
        assert!(matches!(parse_yaml("- [unclosed"), Err(GroupListError::Yaml(_))));
    }

    #[test]
    fn yaml_aliases_expand_but_only_within_a_bound() {
        assert_eq!(
            parse_yaml("- targets: &t [a:1]\n- targets: *t"),
            Ok(vec![group(&["a:1"], &[]), group(&["a:1"], &[])])
        );
        let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for level in 1..12 {
            let previous = format!("*a{}", level - 1);
            let items = [previous.as_str(); 10].join(", ");
            bomb.push_str(&format!("a{level}: &a{level} [{items}]\n"));
        }
        assert_eq!(parse_yaml(&bomb), Err(GroupListError::ExcessiveAliasing));
    }

    #[test]
    fn streaming_into_groups_equals_parsing_then_building() {
        let body = br#"[
            {"targets": ["a:1", null, "b\u003a2"], "labels": {"env": "prod", "esc\"aped": "v\n", "env": "dup", "__meta_filepath": "spoofed"}},
            {"Targets": null, "LABELS": null},
            {"labels": {"only": "labels"}}
        ]"#;
        let mut built_interner = Interner::default();
        let built = build_groups(
            parse_json(body).unwrap(),
            "f.json",
            ("__meta_filepath", "f.json"),
            &mut built_interner,
        );
        let streamed = parse_json_groups(body, "f.json", ("__meta_filepath", "f.json"), &mut Interner::default());
        assert_eq!(streamed, Ok(built));
        assert_eq!(
            parse_json_groups(br#"[{"targets": [1]}]"#, "f", ("m", "f"), &mut Interner::default()),
            Err(GroupListError::BadTargets { index: 0 })
        );
    }

    #[test]
    fn streaming_equals_building_over_runs_of_groups_that_repeat_and_vary_their_labels() {
        // The streaming parser reuses the last group's symbols and sort order while names come
        // in the same order; runs of groups drawn from a few names (given twice, reordered,
        // added, dropped) and a few values must still build exactly what parsing then
        // building does.
        let (seed, mut runner) = seeded_runner(0x5eed_0de2, 300);
        let names = ["a", "b", "c", "zz", "__address__", "__meta_filepath"];
        let label = (0..names.len(), 0..3usize);
        let group = proptest::collection::vec(label, 0..6);
        // Each group either repeats the last one's names with new values or is drawn afresh.
        let groups = proptest::collection::vec((group, any::<bool>(), 0..3usize), 1..12);
        let result = runner.run(&groups, |groups| {
            let mut body = String::from("[");
            let mut last: Vec<(usize, usize)> = Vec::new();
            for (index, (drawn, repeat, shift)) in groups.iter().enumerate() {
                let labels: Vec<(usize, usize)> = if *repeat && !last.is_empty() {
                    last.iter().map(|&(name, value)| (name, (value + shift) % 3)).collect()
                } else {
                    drawn.clone()
                };
                let pairs: Vec<String> = labels
                    .iter()
                    .map(|&(name, value)| format!("\"{}\": \"v{value}\"", names[name]))
                    .collect();
                let sep = if index == 0 { "" } else { "," };
                body.push_str(&format!(
                    "{sep}{{\"targets\": [\"t{index}:1\"], \"labels\": {{{}}}}}",
                    pairs.join(", ")
                ));
                last = labels;
            }
            body.push(']');
            let meta = ("__meta_filepath", "f.json");
            let built = build_groups(
                parse_json(body.as_bytes()).unwrap(),
                "f.json",
                meta,
                &mut Interner::default(),
            );
            let streamed = parse_json_groups(body.as_bytes(), "f.json", meta, &mut Interner::default());
            prop_assert_eq!(streamed, Ok(built), "{}", body);
            Ok(())
        });
        assert!(result.is_ok(), "seed {seed}: {result:?}");
    }

    #[test]
    fn many_one_target_groups_keep_what_they_share_once_and_serve_the_same_labels() {
        // 200 hosts: `env` and `team` in every group, `rack` one of 4 (each in 1/4 of the
        // groups), `host` unique, and one group that also sets `__address__` (its target's
        // own address must still win).
        let mut groups = Vec::new();
        for i in 0..200 {
            let mut labels = format!(r#""env":"prod","team":"db","rack":"r{}","host":"h{i}""#, i % 4);
            if i == 7 {
                labels.push_str(r#","__address__":"from-the-group:1""#);
            }
            groups.push(format!(r#"{{"targets":["10.0.0.{i}:9100"],"labels":{{{labels}}}}}"#));
        }
        groups.push(r#"{"targets":["a:1","b:2"],"labels":{"env":"prod","host":"pair"}}"#.to_string());
        let body = format!("[{}]", groups.join(","));
        let meta = ("__meta_filepath", "f.json");
        let streamed = parse_json_groups(body.as_bytes(), "f.json", meta, &mut Interner::default()).unwrap();
        let built = build_groups(
            parse_json(body.as_bytes()).unwrap(),
            "f.json",
            meta,
            &mut Interner::default(),
        );
        assert_eq!(streamed, built);
        let served = |group: &TargetGroup, target: usize| -> Vec<(String, String)> {
            crate::targets::served_labels(&group.labels, &group.targets[target])
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect()
        };
        for (i, group) in streamed.iter().take(200).enumerate() {
            let mut expected: Vec<(String, String)> = [
                ("__address__", format!("10.0.0.{i}:9100")),
                ("__meta_filepath", "f.json".into()),
                ("env", "prod".into()),
                ("host", format!("h{i}")),
                ("rack", format!("r{}", i % 4)),
                ("team", "db".into()),
            ]
            .into_iter()
            .map(|(n, v)| (n.to_string(), v))
            .collect();
            expected.sort();
            assert_eq!(served(group, 0), expected, "group {i}");
            let kept: Vec<&str> = group.labels.iter().map(|(n, _)| n).collect();
            let expected_kept: &[&str] = if i == 7 {
                &["__address__", "__meta_filepath", "env", "rack", "team"]
            } else {
                &["__meta_filepath", "env", "rack", "team"]
            };
            assert_eq!(kept, expected_kept, "group {i} keeps the shared pairs");
            assert_eq!(group.targets[0].len(), 2, "group {i}: its address and its host");
        }
        // A group of two targets is left as written.
        let pair = &streamed[200];
        assert_eq!(pair.labels.len(), 3);
        assert_eq!(served(pair, 1).len(), 4);
    }

    #[test]
    fn deeply_nested_yaml_is_rejected_without_overflowing_the_stack() {
        // Group 0 is a list: refused before anything nests further.
        let json = "[".repeat(100_000);
        assert_eq!(
            parse_json(json.as_bytes()),
            Err(GroupListError::NotAGroup {
                index: 0,
                found: "a list"
            })
        );
        // Nesting inside a value that is skipped is bounded by the JSON parser's depth limit.
        let json = format!(r#"[{{"labels": {{"a": {}"#, "[".repeat(100_000));
        assert!(matches!(parse_json(json.as_bytes()), Err(GroupListError::Json(_))));
        let flow = "[".repeat(250);
        assert!(parse_yaml(&flow).is_err());
        let nested = "- ".repeat(200_000) + "x";
        assert_eq!(parse_yaml(&nested), Err(GroupListError::TooDeep));
    }

    #[test]
    fn built_groups_carry_the_meta_label_and_indexed_sources() {
        let mut interner = Interner::default();
        let raw = vec![group(&["a:1"], &[("__meta_filepath", "spoofed"), ("env", "prod")])];
        let built = build_groups(
            raw,
            "/etc/sd/x.json",
            ("__meta_filepath", "/etc/sd/x.json"),
            &mut interner,
        );
        assert_eq!(built.len(), 1);
        assert_eq!(built[0].source, "/etc/sd/x.json:0");
        assert_eq!(built[0].labels.get("__meta_filepath"), Some("/etc/sd/x.json"));
        assert_eq!(built[0].labels.get("env"), Some("prod"));
        assert_eq!(built[0].targets[0].get("__address__"), Some("a:1"));
    }

    /// Random byte strings, and random mutations of valid lists, never panic the parsers.
    #[test]
    fn arbitrary_input_never_panics() {
        let (seed, mut runner) = seeded_runner(0x5eed_d15c, 2000);
        let valid = "- targets: ['a:1']\n  labels: {x: y}\n[{\"targets\": [\"a:1\"], \"labels\": {\"x\": \"y\"}}]";
        let strategy = prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..256),
            (0..valid.len(), proptest::collection::vec(any::<u8>(), 0..8)).prop_map(move |(at, noise)| {
                let mut bytes = valid.as_bytes().to_vec();
                bytes.splice(at..at, noise);
                bytes
            }),
        ];
        let result = runner.run(&strategy, |bytes| {
            let _ = parse_json(&bytes);
            let _ = parse_yaml(&String::from_utf8_lossy(&bytes));
            Ok(())
        });
        assert!(result.is_ok(), "seed {seed}: {result:?}");
    }
}
