//! Typed reading of the YAML tree with upstream's decoding rules (docs/compatibility.md, "Loading the configuration"):
//! every problem is recorded in the [`Report`] with its key path and line, and reading goes
//! on, so one pass finds everything. A key whose value is `null` keeps its default (as
//! `mapstructure` does for the allocator's own fields); keys nobody asked for are warned
//! about when a mapping is [`Fields::finish`]ed.
//!
//! A string field accepts any scalar, as `yaml.v2` decodes `8080` into a string as `"8080"`.

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::mem::Discriminant;
use std::time::Duration;

use super::problem::KeyPath;
use super::problem::Report;
use super::yaml::Node;
use super::yaml::Value;
use crate::go_duration;
use crate::prometheus_duration;

/// The entries of one mapping, with a record of which keys were read.
pub struct Fields<'a> {
    pub node: &'a Node,
    pub path: KeyPath,
    entries: &'a [(Node, Node)],
    used: Vec<bool>,
}

impl<'a> Fields<'a> {
    /// Read `node` as a mapping; `null` reads as an empty mapping. Anything else is a problem
    /// and `None`.
    pub fn of(node: &'a Node, path: &KeyPath, report: &mut Report) -> Option<Self> {
        match &node.value {
            Value::Mapping(entries) => Some(Fields {
                node,
                path: path.clone(),
                entries,
                used: vec![false; entries.len()],
            }),
            Value::Null => Some(Fields {
                node,
                path: path.clone(),
                entries: &[],
                used: Vec::new(),
            }),
            _ => {
                report.error(
                    path,
                    Some(node.line),
                    format!("expected a mapping, found {}", node.kind()),
                );
                None
            }
        }
    }

    /// The value of `key`, `null` included; marks the key as known.
    pub fn raw(&mut self, key: &str) -> Option<&'a Node> {
        let mut found = None;
        for (index, (k, v)) in self.entries.iter().enumerate() {
            if k.text == key {
                self.used[index] = true;
                found = found.or(Some(v));
            }
        }
        found
    }

    /// The value of `key`, unless absent or `null` (which keep the default).
    pub fn take(&mut self, key: &str) -> Option<&'a Node> {
        self.raw(key).filter(|node| !node.is_null())
    }

    /// Mark keys as known without reading them (kept as they are, or deliberately ignored).
    pub fn accept(&mut self, keys: &[&str]) {
        for key in keys {
            self.raw(key);
        }
    }

    pub fn path_of(&self, key: &str) -> KeyPath {
        self.path.key(key)
    }

    /// The line of `key`'s value, or of the mapping itself when the key is absent.
    pub fn line_of(&self, key: &str) -> usize {
        self.entries
            .iter()
            .find(|(k, _)| k.text == key)
            .map(|(_, v)| v.line)
            .unwrap_or(self.node.line)
    }

    pub fn string(&mut self, key: &str, report: &mut Report) -> Option<String> {
        let path = self.path_of(key);
        self.take(key).and_then(|node| string(node, &path, report))
    }

    pub fn bool(&mut self, key: &str, report: &mut Report) -> Option<bool> {
        let path = self.path_of(key);
        self.take(key).and_then(|node| boolean(node, &path, report))
    }

    pub fn unsigned(&mut self, key: &str, report: &mut Report) -> Option<u64> {
        let path = self.path_of(key);
        self.take(key).and_then(|node| unsigned(node, &path, report))
    }

    pub fn go_duration(&mut self, key: &str, report: &mut Report) -> Option<Duration> {
        let path = self.path_of(key);
        self.take(key).and_then(|node| go_duration_of(node, &path, report))
    }

    pub fn prometheus_duration(&mut self, key: &str, report: &mut Report) -> Option<Duration> {
        let path = self.path_of(key);
        self.take(key)
            .and_then(|node| prometheus_duration_of(node, &path, report))
    }

    pub fn string_list(&mut self, key: &str, report: &mut Report) -> Option<Vec<String>> {
        let path = self.path_of(key);
        self.take(key).and_then(|node| string_list(node, &path, report))
    }

    pub fn string_map(&mut self, key: &str, report: &mut Report) -> Option<BTreeMap<String, String>> {
        let path = self.path_of(key);
        self.take(key).and_then(|node| string_map(node, &path, report))
    }

    /// Keys not read, in document order.
    pub fn unknown(&self) -> impl Iterator<Item = &'a Node> + '_ {
        self.entries
            .iter()
            .zip(&self.used)
            .filter(|(_, used)| !**used)
            .map(|((k, _), _)| k)
    }

    /// Warn about every key not read: upstream ignores unknown keys.
    pub fn finish(self, report: &mut Report) {
        for key in self.unknown() {
            report.warn(&self.path.key(&key.text), Some(key.line), "unknown key, ignored");
        }
    }
}

/// The items of a list node; `null` reads as empty.
pub fn items<'a>(node: &'a Node, path: &KeyPath, report: &mut Report) -> Option<&'a [Node]> {
    match &node.value {
        Value::Sequence(items) => Some(items),
        Value::Null => Some(&[]),
        _ => {
            report.error(path, Some(node.line), format!("expected a list, found {}", node.kind()));
            None
        }
    }
}

pub fn string(node: &Node, path: &KeyPath, report: &mut Report) -> Option<String> {
    match &node.value {
        Value::String(s) => Some(s.clone()),
        Value::Bool(_) | Value::Int(_) | Value::Float(_) => Some(node.text.clone()),
        _ => {
            report.error(
                path,
                Some(node.line),
                format!("expected a string, found {}", node.kind()),
            );
            None
        }
    }
}

pub fn boolean(node: &Node, path: &KeyPath, report: &mut Report) -> Option<bool> {
    match node.value {
        Value::Bool(b) => Some(b),
        _ => {
            report.error(
                path,
                Some(node.line),
                format!("expected true or false, found {} {:?}", node.kind(), node.text),
            );
            None
        }
    }
}

pub fn unsigned(node: &Node, path: &KeyPath, report: &mut Report) -> Option<u64> {
    match node.value {
        Value::Int(i) if i >= 0 => Some(i as u64),
        _ => {
            report.error(
                path,
                Some(node.line),
                format!("expected a non-negative integer, found {:?}", node.text),
            );
            None
        }
    }
}

/// An allocator duration: Go syntax (`30s`, `1m30s`; `1d` is refused, as upstream). A bare
/// integer is nanoseconds, as `mapstructure` decodes it into a `time.Duration`; that is
/// almost never meant, so it is warned about unless it is 0.
pub fn go_duration_of(node: &Node, path: &KeyPath, report: &mut Report) -> Option<Duration> {
    match node.value {
        Value::Int(nanos) if nanos >= 0 => {
            if nanos != 0 {
                report.warn(
                    path,
                    Some(node.line),
                    format!("{nanos} is read as {nanos} nanoseconds, as upstream does; write a unit, e.g. 30s"),
                );
            }
            Some(Duration::from_nanos(nanos as u64))
        }
        Value::String(ref text) => match go_duration::parse(text) {
            Ok(duration) => Some(duration),
            Err(e) => {
                report.error(
                    path,
                    Some(node.line),
                    format!("{e} (Go duration syntax: 30s, 1m30s, 2h; no d or w)"),
                );
                None
            }
        },
        _ => {
            report.error(
                path,
                Some(node.line),
                format!("expected a duration such as 30s, found {} {:?}", node.kind(), node.text),
            );
            None
        }
    }
}

/// A duration inside the Prometheus `config:` block: Prometheus syntax (`1d` is valid).
pub fn prometheus_duration_of(node: &Node, path: &KeyPath, report: &mut Report) -> Option<Duration> {
    let Some(text) = node.scalar_text() else {
        report.error(
            path,
            Some(node.line),
            format!("expected a duration such as 30s, found {}", node.kind()),
        );
        return None;
    };
    match prometheus_duration::parse(text) {
        Ok(duration) => Some(duration),
        Err(e) => {
            report.error(path, Some(node.line), e.to_string());
            None
        }
    }
}

pub fn string_list(node: &Node, path: &KeyPath, report: &mut Report) -> Option<Vec<String>> {
    let items = items(node, path, report)?;
    let mut out = Vec::with_capacity(items.len());
    let mut ok = true;
    for (index, item) in items.iter().enumerate() {
        match string(item, &path.index(index), report) {
            Some(s) => out.push(s),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

pub fn string_map(node: &Node, path: &KeyPath, report: &mut Report) -> Option<BTreeMap<String, String>> {
    let fields = Fields::of(node, path, report)?;
    let mut out = BTreeMap::new();
    let mut ok = true;
    for (key, value) in fields.entries {
        let value_path = path.key(&key.text);
        if value.is_null() {
            out.insert(key.text.clone(), String::new());
            continue;
        }
        match string(value, &value_path, report) {
            Some(s) => {
                out.insert(key.text.clone(), s);
            }
            None => ok = false,
        }
    }
    ok.then_some(out)
}

/// Report every repeated key of every mapping in the tree, as `yaml.v2` refuses them.
pub fn report_duplicate_keys(node: &Node, path: &KeyPath, report: &mut Report) {
    match &node.value {
        Value::Sequence(items) => {
            for (index, item) in items.iter().enumerate() {
                report_duplicate_keys(item, &path.index(index), report);
            }
        }
        Value::Mapping(entries) => {
            let mut first_lines: HashMap<(&str, Discriminant<Value>), usize> = HashMap::new();
            for (key, value) in entries {
                match first_lines.entry((key.text.as_str(), std::mem::discriminant(&key.value))) {
                    Entry::Occupied(first) => report.error(
                        &path.key(&key.text),
                        Some(key.line),
                        format!("mapping key {:?} already defined at line {}", key.text, first.get()),
                    ),
                    Entry::Vacant(slot) => {
                        slot.insert(key.line);
                    }
                }
                report_duplicate_keys(value, &path.key(&key.text), report);
            }
        }
        _ => {}
    }
}
