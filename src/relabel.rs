//! The Prometheus relabel engine: rules, and their application to one target's labels, with
//! Prometheus's semantics (docs/allocation.md, "Targets"). The allocator runs it to decide which
//! targets a job keeps and what identity they have; the collector re-runs the same rules.
//!
//! - [`LabelBuilder`] mirrors Prometheus's `labels.Builder`: base labels in name order,
//!   additions in the order they were first set, deletions; setting an empty value deletes.
//!   The order matters: `labelmap` walks labels in that order, and upstream's target hash
//!   covers them in that order.
//! - [`Rule::new`] applies Prometheus's defaults (`separator: ;`, `regex: (.*)`,
//!   `replacement: $1`, `action: replace`) and reports every problem of a rule at once.
//! - Regexes are Go RE2 syntax, fully anchored (`^(?s:…)$`), compiled with the `regex` crate
//!   after rewriting what it reads differently from Go (see `go_syntax`): Go's `\d`, `\w`,
//!   `\s` and `\b` are ASCII-only, and Go has `\Q...\E` and octal escapes.

use std::fmt;
use std::num::NonZeroU64;
use std::str::FromStr;

use md5::Digest;
use regex::Regex;
use ta_raft::intern::Symbol;
use ta_raft::model::Labels;

/// What a rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Replace,
    Keep,
    Drop,
    KeepEqual,
    DropEqual,
    HashMod,
    LabelMap,
    LabelDrop,
    LabelKeep,
    Lowercase,
    Uppercase,
}

impl Action {
    const ALL: [(&'static str, Action); 11] = [
        ("replace", Action::Replace),
        ("keep", Action::Keep),
        ("drop", Action::Drop),
        ("keepequal", Action::KeepEqual),
        ("dropequal", Action::DropEqual),
        ("hashmod", Action::HashMod),
        ("labelmap", Action::LabelMap),
        ("labeldrop", Action::LabelDrop),
        ("labelkeep", Action::LabelKeep),
        ("lowercase", Action::Lowercase),
        ("uppercase", Action::Uppercase),
    ];

    /// The name used in configuration.
    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, a)| *a == self)
            .map(|(n, _)| *n)
            .expect("every action is listed")
    }
}

impl FromStr for Action {
    type Err = String;

    /// Case-insensitive, as Prometheus lowercases the action before matching it.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.to_lowercase();
        Self::ALL
            .iter()
            .find(|(name, _)| *name == lower)
            .map(|(_, action)| *action)
            .ok_or_else(|| {
                format!(
                    "unknown relabel action {s:?} (one of {})",
                    Self::ALL.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
                )
            })
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A rule as written in configuration; `None` means "not given" (the default applies).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuleSpec {
    pub source_labels: Option<Vec<String>>,
    pub separator: Option<String>,
    pub regex: Option<String>,
    pub modulus: Option<u64>,
    pub target_label: Option<String>,
    pub replacement: Option<String>,
    pub action: Option<String>,
}

const DEFAULT_SEPARATOR: &str = ";";
const DEFAULT_REGEX: &str = "(.*)";
const DEFAULT_REPLACEMENT: &str = "$1";

/// A compiled, validated rule.
#[derive(Debug, Clone)]
pub struct Rule {
    pub source_labels: Vec<String>,
    pub separator: String,
    /// The regex as configured (unanchored).
    pub regex_source: String,
    regex: Regex,
    pub modulus: u64,
    pub target_label: String,
    pub replacement: String,
    pub action: Action,
}

/// Compile a configured regex the way Prometheus does: Go RE2 semantics, fully anchored,
/// `.` matching newlines.
pub fn compile_regex(source: &str) -> Result<Regex, String> {
    let translated = go_syntax(source);
    regex::RegexBuilder::new(&format!("^(?s:{translated})$"))
        .octal(true)
        .build()
        .map_err(|e| format!("invalid regex {source:?}: {e}"))
}

/// Rewrite the parts of Go's RE2 syntax that the `regex` crate reads differently: Go's Perl
/// classes and word boundaries are ASCII-only (the crate's are Unicode), and Go supports
/// `\Q...\E` literal text. Everything else is passed through unchanged.
fn go_syntax(source: &str) -> String {
    const DIGIT: &str = "0-9";
    const WORD: &str = "0-9A-Za-z_";
    const SPACE: &str = "\\t\\n\\f\\r ";
    let mut out = String::with_capacity(source.len() + 16);
    let mut chars = source.chars().peekable();
    // Inside `[...]`, and whether the next character is the first of the class (where `]`
    // is literal).
    let mut in_class = false;
    let mut class_start = false;
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                let Some(escaped) = chars.next() else {
                    out.push('\\');
                    break;
                };
                let ascii = match escaped {
                    'd' | 'D' => Some((DIGIT, escaped == 'D')),
                    'w' | 'W' => Some((WORD, escaped == 'W')),
                    's' | 'S' => Some((SPACE, escaped == 'S')),
                    _ => None,
                };
                match (ascii, in_class) {
                    (Some((set, false)), false) => out.push_str(&format!("[{set}]")),
                    (Some((set, true)), false) => out.push_str(&format!("[^{set}]")),
                    (Some((set, false)), true) => out.push_str(set),
                    (Some((set, true)), true) => out.push_str(&format!("[^{set}]")),
                    (None, _) if escaped == 'b' || escaped == 'B' => {
                        out.push_str(&format!("(?-u:\\{escaped})"));
                    }
                    (None, _) if escaped == 'Q' => {
                        // Literal text up to `\E` (or the end).
                        let mut literal = String::new();
                        while let Some(next) = chars.next() {
                            if next == '\\' && chars.peek() == Some(&'E') {
                                chars.next();
                                break;
                            }
                            literal.push(next);
                        }
                        out.push_str(&regex::escape(&literal));
                    }
                    (None, _) => {
                        out.push('\\');
                        out.push(escaped);
                    }
                }
                class_start = false;
            }
            '[' if !in_class => {
                in_class = true;
                class_start = true;
                out.push('[');
                if chars.peek() == Some(&'^') {
                    out.push(chars.next().expect("peeked"));
                }
            }
            '[' if in_class && chars.peek() == Some(&':') => {
                // A POSIX class such as `[:alpha:]`: copy through its closing `:]`.
                out.push('[');
                for next in chars.by_ref() {
                    out.push(next);
                    if next == ']' {
                        break;
                    }
                }
                class_start = false;
            }
            ']' if in_class && !class_start => {
                in_class = false;
                out.push(']');
            }
            // Literal in a Go class; a nested class or a set operator in the `regex` crate.
            '[' | '&' | '~' if in_class => {
                out.push('\\');
                out.push(c);
                class_start = false;
            }
            other => {
                out.push(other);
                class_start = false;
            }
        }
    }
    out
}

fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A replace target: a label name, possibly built from `$1`/`${name}` references.
fn is_target_template(target: &str) -> bool {
    static TEMPLATE: std::sync::OnceLock<Regex> = std::sync::OnceLock::new();
    TEMPLATE
        .get_or_init(|| Regex::new(r"^(?:(?:[a-zA-Z_]|\$(?:\{\w+\}|\w+))+\w*)+$").expect("static regex"))
        .is_match(target)
}

impl Rule {
    /// Apply defaults and validate; returns every problem found.
    pub fn new(spec: &RuleSpec) -> Result<Self, Vec<String>> {
        let mut problems = Vec::new();
        let action = match spec.action.as_deref().map(Action::from_str).transpose() {
            Ok(action) => action.unwrap_or(Action::Replace),
            Err(problem) => {
                problems.push(problem);
                Action::Replace
            }
        };
        let regex_source = spec.regex.clone().unwrap_or_else(|| DEFAULT_REGEX.to_string());
        let regex = compile_regex(&regex_source).map_err(|p| problems.push(p)).ok();
        let target_label = spec.target_label.clone().unwrap_or_default();
        let replacement = spec
            .replacement
            .clone()
            .unwrap_or_else(|| DEFAULT_REPLACEMENT.to_string());
        let separator = spec.separator.clone().unwrap_or_else(|| DEFAULT_SEPARATOR.to_string());
        let modulus = spec.modulus.unwrap_or(0);

        use Action::*;
        if action == HashMod && modulus == 0 {
            problems.push("hashmod requires a non-zero 'modulus'".to_string());
        }
        if matches!(
            action,
            Replace | HashMod | Lowercase | Uppercase | KeepEqual | DropEqual
        ) && target_label.is_empty()
        {
            problems.push(format!("{action} requires 'target_label'"));
        }
        if action == Replace && !target_label.is_empty() && !is_target_template(&target_label) {
            problems.push(format!("{target_label:?} is not a valid 'target_label' for {action}"));
        }
        if matches!(action, HashMod | Lowercase | Uppercase | KeepEqual | DropEqual)
            && !target_label.is_empty()
            && !is_label_name(&target_label)
        {
            problems.push(format!("{target_label:?} is not a valid 'target_label' for {action}"));
        }
        if matches!(action, LabelDrop | LabelKeep)
            && (spec.source_labels.is_some()
                || spec.target_label.is_some()
                || spec.modulus.is_some()
                || spec.separator.is_some()
                || spec.replacement.is_some())
        {
            problems.push(format!("{action} takes only 'regex'"));
        }
        if matches!(action, KeepEqual | DropEqual)
            && (spec.regex.is_some()
                || spec.modulus.is_some()
                || spec.separator.is_some()
                || spec.replacement.is_some())
        {
            problems.push(format!("{action} takes only 'source_labels' and 'target_label'"));
        }
        if action == LabelMap && !is_target_template(&replacement) {
            problems.push(format!("{replacement:?} is not a valid 'replacement' for {action}"));
        }
        match (regex, problems.is_empty()) {
            (Some(regex), true) => Ok(Self {
                source_labels: spec.source_labels.clone().unwrap_or_default(),
                separator,
                regex_source,
                regex,
                modulus,
                target_label,
                replacement,
                action,
            }),
            _ => Err(problems),
        }
    }

    /// Apply this rule; `false` drops the target.
    pub fn apply(&self, labels: &mut LabelBuilder) -> bool {
        // The common filters read one label: no joined copy needed.
        if let [source] = self.source_labels.as_slice() {
            match self.action {
                Action::Drop => return !self.regex.is_match(labels.get(source)),
                Action::Keep => return self.regex.is_match(labels.get(source)),
                _ => {}
            }
        }
        let value = self
            .source_labels
            .iter()
            .map(|name| labels.get(name))
            .collect::<Vec<_>>()
            .join(&self.separator);
        match self.action {
            Action::Drop => return !self.regex.is_match(&value),
            Action::Keep => return self.regex.is_match(&value),
            Action::DropEqual => return labels.get(&self.target_label) != value,
            Action::KeepEqual => return labels.get(&self.target_label) == value,
            Action::Replace => {
                let Some(captures) = self.regex.captures(&value) else {
                    return true;
                };
                let mut target = String::new();
                captures.expand(&self.target_label, &mut target);
                if !is_label_name(&target) {
                    return true;
                }
                let mut result = String::new();
                captures.expand(&self.replacement, &mut result);
                labels.set(&target, &result);
            }
            Action::Lowercase => labels.set(&self.target_label, &value.to_lowercase()),
            Action::Uppercase => labels.set(&self.target_label, &value.to_uppercase()),
            Action::HashMod => {
                // `Rule::new` refuses a zero modulus.
                if let Some(modulus) = NonZeroU64::new(self.modulus) {
                    labels.set(&self.target_label, &hashmod(&value, modulus).to_string());
                }
            }
            Action::LabelMap => {
                for (name, value) in labels.snapshot() {
                    if self.regex.is_match(&name) {
                        let mapped = self.regex.replace_all(&name, self.replacement.as_str()).into_owned();
                        labels.set(&mapped, &value);
                    }
                }
            }
            Action::LabelDrop => {
                for name in labels.names_where(|name| self.regex.is_match(name)) {
                    labels.delete(&name);
                }
            }
            Action::LabelKeep => {
                for name in labels.names_where(|name| !self.regex.is_match(name)) {
                    labels.delete(&name);
                }
            }
        }
        true
    }
}

/// Prometheus's hashmod: the big-endian `u64` of the last 8 bytes of MD5(`value`), mod
/// `modulus`.
pub fn hashmod(value: &str, modulus: NonZeroU64) -> u64 {
    let digest = md5::Md5::digest(value.as_bytes());
    let tail: [u8; 8] = digest[8..16].try_into().expect("MD5 is 16 bytes");
    u64::from_be_bytes(tail) % modulus
}

/// Apply `rules` in order; `false` as soon as one drops the target.
pub fn process(rules: &[Rule], labels: &mut LabelBuilder) -> bool {
    rules.iter().all(|rule| rule.apply(labels))
}

/// A label set under modification, with Prometheus `labels.Builder` semantics. The starting
/// labels are shared, not copied: most rules only read them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelBuilder {
    /// The starting labels, sorted by name.
    base: Labels,
    /// Labels set since, in the order first set.
    added: Vec<(String, String)>,
    deleted: Vec<String>,
}

impl LabelBuilder {
    /// Start from `labels` (any order; the last value of a repeated name wins).
    pub fn new<N: AsRef<str>, V: AsRef<str>>(labels: impl IntoIterator<Item = (N, V)>) -> Self {
        let pairs: Vec<(Symbol, Symbol)> = labels
            .into_iter()
            .map(|(n, v)| (Symbol::from(n.as_ref()), Symbol::from(v.as_ref())))
            .collect();
        Self::from_labels(Labels::new(pairs))
    }

    /// Start from an already sorted, shared label set.
    pub fn from_labels(base: Labels) -> Self {
        Self {
            base,
            added: Vec::new(),
            deleted: Vec::new(),
        }
    }

    /// The value of `name`, or `""` when absent.
    pub fn get(&self, name: &str) -> &str {
        if let Some((_, value)) = self.added.iter().find(|(n, _)| n == name) {
            return value;
        }
        if self.deleted.iter().any(|d| d == name) {
            return "";
        }
        self.base.get(name).unwrap_or("")
    }

    /// Set `name` to `value`; an empty value deletes the label.
    pub fn set(&mut self, name: &str, value: &str) {
        if value.is_empty() {
            self.delete(name);
            return;
        }
        match self.added.iter_mut().find(|(n, _)| n == name) {
            Some(entry) => entry.1 = value.to_string(),
            None => self.added.push((name.to_string(), value.to_string())),
        }
    }

    /// Delete `name`.
    pub fn delete(&mut self, name: &str) {
        self.added.retain(|(n, _)| n != name);
        if !self.deleted.iter().any(|d| d == name) {
            self.deleted.push(name.to_string());
        }
    }

    /// The labels in Prometheus `Range` order, borrowed: untouched base labels by name, then
    /// the ones set since, in the order first set.
    pub fn range(&self) -> impl Iterator<Item = (&str, &str)> {
        self.base
            .iter()
            .filter(|(n, _)| !self.deleted.iter().any(|d| d == n) && !self.added.iter().any(|(a, _)| a == n))
            .chain(self.added.iter().map(|(n, v)| (n.as_str(), v.as_str())))
    }

    /// [`LabelBuilder::range`], copied.
    pub fn snapshot(&self) -> Vec<(String, String)> {
        self.range().map(|(n, v)| (n.to_string(), v.to_string())).collect()
    }

    /// Names in `Range` order that `keep` selects, copied (for rules that then modify).
    fn names_where(&self, keep: impl Fn(&str) -> bool) -> Vec<String> {
        self.range()
            .filter(|(n, _)| keep(n))
            .map(|(n, _)| n.to_string())
            .collect()
    }

    /// The final label set, sorted by name.
    pub fn labels(&self) -> Vec<(String, String)> {
        let mut labels = self.snapshot();
        labels.sort_by(|a, b| a.0.cmp(&b.0));
        labels
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(action: &str, configure: impl FnOnce(&mut RuleSpec)) -> Rule {
        let mut spec = RuleSpec {
            action: Some(action.to_string()),
            ..Default::default()
        };
        configure(&mut spec);
        Rule::new(&spec).unwrap_or_else(|problems| panic!("{problems:?}"))
    }

    fn sources(names: &[&str]) -> Option<Vec<String>> {
        Some(names.iter().map(|s| s.to_string()).collect())
    }

    fn builder(labels: &[(&str, &str)]) -> LabelBuilder {
        LabelBuilder::new(labels.iter().copied())
    }

    #[test]
    fn perl_classes_are_ascii_as_in_go() {
        // Checked against promtool 2.42: `(\d+)\..*` does not match an Arabic-Indic digit.
        let digits = compile_regex(r"(\d+)\..*").unwrap();
        assert!(digits.is_match("10.0.0.1:9100"));
        assert!(!digits.is_match("\u{663}.0.0.3:9100"));
        assert!(!compile_regex(r"\w+").unwrap().is_match("caf\u{e9}"));
        assert!(compile_regex(r"\W").unwrap().is_match("\u{e9}"));
        assert!(!compile_regex(r"\s").unwrap().is_match("\u{a0}"));
        assert!(compile_regex(r"[\d.]+").unwrap().is_match("10.0"));
        assert!(!compile_regex(r"[\d.]+").unwrap().is_match("\u{663}"));
        assert!(compile_regex(r"[^\D]").unwrap().is_match("7"));
        assert!(compile_regex(r"[[:alpha:]\d]+").unwrap().is_match("ab12"));
        assert!(compile_regex(r"[]a]+").unwrap().is_match("]a"));
        assert!(
            compile_regex(r"[a[b]+").unwrap().is_match("a[b"),
            "[ is literal in a Go class"
        );
        assert!(
            compile_regex(r"[a&&b]+").unwrap().is_match("a&b"),
            "&& is literal in a Go class"
        );
        assert!(compile_regex(r"a\b.*").unwrap().is_match("a \u{e9}"));
    }

    #[test]
    fn go_only_syntax_is_understood() {
        assert!(compile_regex(r"\Qa.b\E").unwrap().is_match("a.b"));
        assert!(!compile_regex(r"\Qa.b\E").unwrap().is_match("axb"));
        assert!(compile_regex(r"\101").unwrap().is_match("A"), "octal escape");
        assert!(compile_regex("(").is_err());
    }

    #[test]
    fn hashmod_matches_the_prometheus_vectors() {
        // Prometheus's conformance vectors (docs/allocation.md, "Targets").
        let thousand = NonZeroU64::new(1000).unwrap();
        assert_eq!(hashmod("baz", thousand), 976);
        assert_eq!(hashmod("foo\nbar", thousand), 734);
    }

    #[test]
    fn replace_with_captures_and_templated_target() {
        let r = rule("replace", |s| {
            s.source_labels = sources(&["__meta_kubernetes_pod_label_app", "__meta_port"]);
            s.regex = Some("(.+);(\\d+)".into());
            s.target_label = Some("${1}_port".into());
            s.replacement = Some("$2".into());
        });
        let mut labels = builder(&[("__meta_kubernetes_pod_label_app", "api"), ("__meta_port", "8080")]);
        assert!(r.apply(&mut labels));
        assert_eq!(labels.get("api_port"), "8080");
    }

    #[test]
    fn replace_without_a_match_changes_nothing_and_an_empty_result_deletes() {
        let no_match = rule("replace", |s| {
            s.source_labels = sources(&["a"]);
            s.regex = Some("x".into());
            s.target_label = Some("b".into());
        });
        let mut labels = builder(&[("a", "y"), ("b", "keep")]);
        assert!(no_match.apply(&mut labels));
        assert_eq!(labels.get("b"), "keep");

        let empties = rule("replace", |s| {
            s.source_labels = sources(&["missing"]);
            s.target_label = Some("b".into());
        });
        assert!(empties.apply(&mut labels));
        assert_eq!(labels.get("b"), "", "an empty replacement deletes the target label");
    }

    #[test]
    fn the_regex_is_anchored_and_dot_matches_newlines() {
        let keep = rule("keep", |s| {
            s.source_labels = sources(&["a"]);
            s.regex = Some("fo".into());
        });
        assert!(
            !keep.apply(&mut builder(&[("a", "foo")])),
            "anchored: fo does not match foo"
        );
        let keep_all = rule("keep", |s| {
            s.source_labels = sources(&["a"]);
            s.regex = Some("foo.bar".into());
        });
        assert!(keep_all.apply(&mut builder(&[("a", "foo\nbar")])));
    }

    #[test]
    fn keep_drop_and_their_equal_variants() {
        let labels = builder(&[("a", "1"), ("b", "1"), ("c", "2")]);
        let drop = rule("drop", |s| {
            s.source_labels = sources(&["a", "c"]);
            s.regex = Some("1;2".into());
        });
        assert!(!drop.apply(&mut labels.clone()));
        let keepequal = rule("keepequal", |s| {
            s.source_labels = sources(&["a"]);
            s.target_label = Some("b".into());
        });
        assert!(keepequal.apply(&mut labels.clone()));
        let dropequal = rule("DropEqual", |s| {
            s.source_labels = sources(&["a"]);
            s.target_label = Some("b".into());
        });
        assert!(!dropequal.apply(&mut labels.clone()), "actions are case-insensitive");
    }

    #[test]
    fn labelmap_labeldrop_labelkeep() {
        let mut labels = builder(&[
            ("__meta_kubernetes_pod_label_app", "api"),
            ("__meta_kubernetes_pod_label_team", "x"),
            ("job", "j"),
        ]);
        let map = rule("labelmap", |s| {
            s.regex = Some("__meta_kubernetes_pod_label_(.+)".into())
        });
        assert!(map.apply(&mut labels));
        assert_eq!(labels.get("app"), "api");
        assert_eq!(labels.get("team"), "x");
        let drop = rule("labeldrop", |s| s.regex = Some("__meta_.*".into()));
        assert!(drop.apply(&mut labels));
        assert_eq!(
            labels.labels(),
            vec![
                ("app".into(), "api".into()),
                ("job".into(), "j".into()),
                ("team".into(), "x".into())
            ]
        );
        let keep = rule("labelkeep", |s| s.regex = Some("job".into()));
        assert!(keep.apply(&mut labels));
        assert_eq!(labels.labels(), vec![("job".to_string(), "j".to_string())]);
    }

    #[test]
    fn case_changes_and_hashmod_set_the_target() {
        let mut labels = builder(&[("a", "MiXeD")]);
        rule("lowercase", |s| {
            s.source_labels = sources(&["a"]);
            s.target_label = Some("lower".into());
        })
        .apply(&mut labels);
        rule("uppercase", |s| {
            s.source_labels = sources(&["a"]);
            s.target_label = Some("upper".into());
        })
        .apply(&mut labels);
        rule("hashmod", |s| {
            s.source_labels = sources(&["lower"]);
            s.target_label = Some("shard".into());
            s.modulus = Some(1000);
        })
        .apply(&mut labels);
        assert_eq!(labels.get("lower"), "mixed");
        assert_eq!(labels.get("upper"), "MIXED");
        assert_eq!(
            labels.get("shard"),
            hashmod("mixed", NonZeroU64::new(1000).unwrap()).to_string()
        );
    }

    #[test]
    fn builder_order_follows_prometheus() {
        let mut labels = builder(&[("b", "2"), ("a", "1"), ("c", "3")]);
        labels.set("z", "26");
        labels.set("a", "one");
        labels.delete("c");
        let order: Vec<String> = labels.snapshot().into_iter().map(|(n, _)| n).collect();
        assert_eq!(order, ["b", "z", "a"], "untouched base first, then additions in order");
        labels.set("c", "back");
        assert_eq!(labels.get("c"), "back", "a deleted label can be set again");
    }

    #[test]
    fn every_problem_of_a_rule_is_reported() {
        let spec = RuleSpec {
            action: Some("hashmod".into()),
            regex: Some("(".into()),
            ..Default::default()
        };
        let problems = Rule::new(&spec).unwrap_err();
        assert_eq!(problems.len(), 3, "{problems:?}");
        let unknown = RuleSpec {
            action: Some("explode".into()),
            ..Default::default()
        };
        assert!(Rule::new(&unknown).unwrap_err()[0].contains("unknown relabel action"));
        let labeldrop_extra = RuleSpec {
            action: Some("labeldrop".into()),
            target_label: Some("x".into()),
            ..Default::default()
        };
        assert!(Rule::new(&labeldrop_extra).unwrap_err()[0].contains("takes only 'regex'"));
    }

    #[test]
    fn processing_stops_at_the_first_drop() {
        let rules = vec![
            rule("drop", |s| {
                s.source_labels = sources(&["a"]);
                s.regex = Some("x".into());
            }),
            rule("replace", |s| {
                s.target_label = Some("after".into());
                s.replacement = Some("yes".into());
            }),
        ];
        let mut dropped = builder(&[("a", "x")]);
        assert!(!process(&rules, &mut dropped));
        assert_eq!(dropped.get("after"), "");
        let mut kept = builder(&[("a", "y")]);
        assert!(process(&rules, &mut kept));
        assert_eq!(kept.get("after"), "yes");
    }
}
