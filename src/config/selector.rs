//! Kubernetes label selectors (`metav1.LabelSelector`) as upstream reads them from the file:
//! both `matchLabels`/`matchExpressions` and the lowercase `matchlabels`/`matchexpressions`
//! the operator writes; when both spellings are present the camelCase one wins.
//!
//! Where a selector is optional, `null` and absent mean "no selector" (`None`), which is not
//! the same as `{}`: see the fields that hold them.

use std::collections::BTreeMap;

use super::decode;
use super::decode::Fields;
use super::problem::KeyPath;
use super::problem::Report;
use super::yaml::Node;

/// A label selector; the empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector {
    pub match_labels: BTreeMap<String, String>,
    pub match_expressions: Vec<LabelSelectorRequirement>,
}

/// One `matchExpressions` item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelSelectorRequirement {
    pub key: String,
    pub operator: SelectorOperator,
    pub values: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SelectorOperator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

impl SelectorOperator {
    fn parse(name: &str) -> Option<Self> {
        match name {
            "In" => Some(Self::In),
            "NotIn" => Some(Self::NotIn),
            "Exists" => Some(Self::Exists),
            "DoesNotExist" => Some(Self::DoesNotExist),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::In => "In",
            Self::NotIn => "NotIn",
            Self::Exists => "Exists",
            Self::DoesNotExist => "DoesNotExist",
        }
    }
}

impl LabelSelector {
    /// Whether a set of labels matches.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.match_labels.iter().all(|(k, v)| labels.get(k) == Some(v))
            && self.match_expressions.iter().all(|e| {
                let value = labels.get(&e.key);
                match e.operator {
                    SelectorOperator::In => value.is_some_and(|v| e.values.contains(v)),
                    SelectorOperator::NotIn => value.is_none_or(|v| !e.values.contains(v)),
                    SelectorOperator::Exists => value.is_some(),
                    SelectorOperator::DoesNotExist => value.is_none(),
                }
            })
    }

    /// Kubernetes' string form (`app=x,tier in (a,b)`), for summaries.
    pub fn to_selector_string(&self) -> String {
        let mut parts: Vec<String> = self.match_labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        for e in &self.match_expressions {
            parts.push(match e.operator {
                SelectorOperator::In => format!("{} in ({})", e.key, e.values.join(",")),
                SelectorOperator::NotIn => format!("{} notin ({})", e.key, e.values.join(",")),
                SelectorOperator::Exists => e.key.clone(),
                SelectorOperator::DoesNotExist => format!("!{}", e.key),
            });
        }
        parts.join(",")
    }
}

/// Decode a selector node (not null: the caller decides what null means).
pub fn decode(node: &Node, path: &KeyPath, report: &mut Report) -> Option<LabelSelector> {
    let mut fields = Fields::of(node, path, report)?;
    let labels_key = if fields.node.get("matchLabels").is_some() {
        "matchLabels"
    } else {
        "matchlabels"
    };
    let expressions_key = if fields.node.get("matchExpressions").is_some() {
        "matchExpressions"
    } else {
        "matchexpressions"
    };
    // Both spellings are known keys; only the winning one is read.
    fields.accept(&["matchLabels", "matchlabels", "matchExpressions", "matchexpressions"]);
    let mut selector = LabelSelector::default();
    let mut ok = true;
    if let Some(labels) = fields.node.get(labels_key).filter(|n| !n.is_null()) {
        match decode::string_map(labels, &path.key(labels_key), report) {
            Some(map) => selector.match_labels = map,
            None => ok = false,
        }
    }
    if let Some(expressions) = fields.node.get(expressions_key).filter(|n| !n.is_null()) {
        let expressions_path = path.key(expressions_key);
        for (index, item) in decode::items(expressions, &expressions_path, report)
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            match requirement(item, &expressions_path.index(index), report) {
                Some(r) => selector.match_expressions.push(r),
                None => ok = false,
            }
        }
    }
    fields.finish(report);
    ok.then_some(selector)
}

fn requirement(node: &Node, path: &KeyPath, report: &mut Report) -> Option<LabelSelectorRequirement> {
    let mut fields = Fields::of(node, path, report)?;
    let key = fields.string("key", report);
    let operator_text = fields.string("operator", report);
    let values = fields.string_list("values", report).unwrap_or_default();
    let line = Some(node.line);
    if key.as_deref().is_none_or(str::is_empty) {
        report.error(&path.key("key"), line, "a match expression needs a key");
    }
    let operator = match operator_text.as_deref() {
        None => {
            report.error(&path.key("operator"), line, "a match expression needs an operator");
            None
        }
        Some(name) => {
            let parsed = SelectorOperator::parse(name);
            if parsed.is_none() {
                report.error(
                    &path.key("operator"),
                    Some(fields.line_of("operator")),
                    format!("unknown operator {name:?} (one of In, NotIn, Exists, DoesNotExist)"),
                );
            }
            parsed
        }
    };
    match operator {
        Some(SelectorOperator::In | SelectorOperator::NotIn) if values.is_empty() => {
            report.error(&path.key("values"), line, "In and NotIn need at least one value");
        }
        Some(SelectorOperator::Exists | SelectorOperator::DoesNotExist) if !values.is_empty() => {
            report.error(&path.key("values"), line, "Exists and DoesNotExist take no values");
        }
        _ => {}
    }
    fields.finish(report);
    Some(LabelSelectorRequirement {
        key: key?,
        operator: operator?,
        values,
    })
}
