//! The YAML tree of a configuration file, with the line and column of every node, built
//! from `yaml-rust2`'s event parser so that every later problem can name where it is.
//!
//! Scalars are resolved as Go's `yaml.v2` (YAML 1.1) resolves them, because that is what
//! upstream reads the file with: `~`/`null`/empty are null, `yes`/`no`/`on`/`off`/`y`/`n`
//! (any of the three usual casings) are booleans, `0x`/`0o`/`0b`/leading-`0` integers with
//! `_` separators. Quoted and block scalars are always strings. Each scalar keeps its text,
//! because a string field accepts any scalar (`yaml.v2` decodes `8080` into a string field as
//! `"8080"`).
//!
//! - Duplicate mapping keys are kept here and reported by the decoder, with their key path
//!   (an error in `yaml.v2`).
//! - Aliases are resolved (a copy of the anchored node), with a budget on the total number
//!   of nodes so that a "billion laughs" document is refused instead of exhausting memory.
//! - `<<` merge keys are applied as `yaml.v2` does: keys of the merged mappings that the
//!   mapping does not define itself are added.
//! - Only the first document of a stream is read, as `yaml.Unmarshal` does.
//! - Nesting deeper than [`MAX_DEPTH`] is refused, so walking the tree cannot overflow the
//!   stack whatever the input.

use std::collections::HashMap;

use yaml_rust2::parser::Event;
use yaml_rust2::parser::Parser;
use yaml_rust2::scanner::Marker;
use yaml_rust2::scanner::TScalarStyle;

/// Deepest nesting of sequences and mappings accepted.
pub const MAX_DEPTH: usize = 128;
/// Most nodes a document may have once aliases are expanded.
pub const MAX_NODES: usize = 1_000_000;

/// One node of the tree.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub value: Value,
    /// The scalar as written (after unquoting); empty for sequences and mappings.
    pub text: String,
    /// Written quoted or as a block scalar, which makes it a string whatever its text.
    pub quoted: bool,
    /// 1-based.
    pub line: usize,
    /// 1-based.
    pub column: usize,
}

/// What a node holds.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    String(String),
    Sequence(Vec<Node>),
    /// Entries in document order; keys are scalars.
    Mapping(Vec<(Node, Node)>),
}

impl Node {
    fn at(value: Value, mark: Marker) -> Self {
        Node {
            value,
            text: String::new(),
            quoted: false,
            line: mark.line(),
            column: mark.col() + 1,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self.value, Value::Null)
    }

    /// The text of a scalar (`None` for null, sequences and mappings).
    pub fn scalar_text(&self) -> Option<&str> {
        match self.value {
            Value::Bool(_) | Value::Int(_) | Value::Float(_) | Value::String(_) => Some(&self.text),
            Value::Null | Value::Sequence(_) | Value::Mapping(_) => None,
        }
    }

    /// A short name of the node's kind, for messages.
    pub fn kind(&self) -> &'static str {
        match self.value {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a number",
            Value::String(_) => "a string",
            Value::Sequence(_) => "a list",
            Value::Mapping(_) => "a mapping",
        }
    }

    /// The value of `key` in a mapping node (the first one if repeated).
    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.value {
            Value::Mapping(entries) => entries
                .iter()
                .find(|(k, _)| k.scalar_text() == Some(key))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    /// The node as JSON, the way a Go program that unmarshalled it into `interface{}` and
    /// re-encoded it would (keys as their text; a non-finite float as its text).
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as Json;
        match &self.value {
            Value::Null => Json::Null,
            Value::Bool(b) => Json::Bool(*b),
            Value::Int(i) => Json::from(*i),
            Value::Float(f) => serde_json::Number::from_f64(*f)
                .map(Json::Number)
                .unwrap_or_else(|| Json::String(self.text.clone())),
            Value::String(s) => Json::String(s.clone()),
            Value::Sequence(items) => Json::Array(items.iter().map(Node::to_json).collect()),
            Value::Mapping(entries) => {
                Json::Object(entries.iter().map(|(k, v)| (k.text.clone(), v.to_json())).collect())
            }
        }
    }
}

/// A document that is not valid YAML.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct SyntaxError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl SyntaxError {
    fn at(mark: Marker, message: impl Into<String>) -> Self {
        SyntaxError {
            line: mark.line(),
            column: mark.col() + 1,
            message: message.into(),
        }
    }
}

/// Parse the first document of `text`; an empty stream is a null node at line 1.
pub fn parse(text: &str) -> Result<Node, SyntaxError> {
    let mut parser = Parser::new_from_str(text);
    let mut builder = Builder::default();
    loop {
        let (event, mark) = parser
            .next_token()
            .map_err(|e| SyntaxError::at(*e.marker(), e.info()))?;
        match event {
            Event::StreamEnd => break,
            // Later documents are not read, as `yaml.Unmarshal` does not read them.
            Event::DocumentEnd => break,
            other => builder.event(other, mark)?,
        }
    }
    Ok(builder.root.unwrap_or(Node {
        value: Value::Null,
        text: String::new(),
        quoted: false,
        line: 1,
        column: 1,
    }))
}

/// A collection being filled.
enum Open {
    Sequence {
        node: Node,
        anchor: usize,
    },
    /// A pending key waits for its value.
    Mapping {
        node: Node,
        anchor: usize,
        pending_key: Option<Node>,
    },
}

#[derive(Default)]
struct Builder {
    stack: Vec<Open>,
    root: Option<Node>,
    anchors: HashMap<usize, Node>,
    nodes: usize,
}

impl Builder {
    fn event(&mut self, event: Event, mark: Marker) -> Result<(), SyntaxError> {
        match event {
            Event::Nothing | Event::StreamStart | Event::DocumentStart => Ok(()),
            Event::StreamEnd | Event::DocumentEnd => Ok(()),
            Event::Alias(id) => {
                let node = self
                    .anchors
                    .get(&id)
                    .cloned()
                    .ok_or_else(|| SyntaxError::at(mark, "unknown anchor"))?;
                self.count(count_nodes(&node), mark)?;
                let mut node = node;
                // Point at the alias, where the value is used.
                node.line = mark.line();
                node.column = mark.col() + 1;
                self.complete(node, 0, mark)
            }
            Event::Scalar(text, style, anchor, tag) => {
                self.count(1, mark)?;
                let forced_string = tag
                    .as_ref()
                    .is_some_and(|t| t.suffix == "str" && (t.handle == "!!" || t.handle == "tag:yaml.org,2002:"));
                let quoted = style != TScalarStyle::Plain;
                let value = if quoted || forced_string {
                    Value::String(text.clone())
                } else {
                    resolve_plain(&text)
                };
                let mut node = Node::at(value, mark);
                node.text = text;
                node.quoted = quoted;
                self.complete(node, anchor, mark)
            }
            Event::SequenceStart(anchor, _) => {
                self.open(mark)?;
                self.stack.push(Open::Sequence {
                    node: Node::at(Value::Sequence(Vec::new()), mark),
                    anchor,
                });
                Ok(())
            }
            Event::MappingStart(anchor, _) => {
                self.open(mark)?;
                self.stack.push(Open::Mapping {
                    node: Node::at(Value::Mapping(Vec::new()), mark),
                    anchor,
                    pending_key: None,
                });
                Ok(())
            }
            Event::SequenceEnd | Event::MappingEnd => match self.stack.pop() {
                Some(Open::Sequence { node, anchor }) => self.complete(node, anchor, mark),
                Some(Open::Mapping { mut node, anchor, .. }) => {
                    apply_merge_keys(&mut node);
                    self.complete(node, anchor, mark)
                }
                None => Err(SyntaxError::at(mark, "unbalanced collection end")),
            },
        }
    }

    fn open(&mut self, mark: Marker) -> Result<(), SyntaxError> {
        if self.stack.len() >= MAX_DEPTH {
            return Err(SyntaxError::at(mark, format!("nested deeper than {MAX_DEPTH} levels")));
        }
        self.count(1, mark)
    }

    fn count(&mut self, added: usize, mark: Marker) -> Result<(), SyntaxError> {
        self.nodes = self.nodes.saturating_add(added);
        if self.nodes > MAX_NODES {
            return Err(SyntaxError::at(
                mark,
                format!("more than {MAX_NODES} nodes once aliases are expanded"),
            ));
        }
        Ok(())
    }

    /// A node is finished: remember its anchor and attach it to its parent.
    fn complete(&mut self, node: Node, anchor: usize, mark: Marker) -> Result<(), SyntaxError> {
        if anchor != 0 {
            self.anchors.insert(anchor, node.clone());
        }
        match self.stack.last_mut() {
            None => {
                self.root = Some(node);
                Ok(())
            }
            Some(Open::Sequence { node: parent, .. }) => {
                if let Value::Sequence(items) = &mut parent.value {
                    items.push(node);
                }
                Ok(())
            }
            Some(Open::Mapping {
                node: parent,
                pending_key,
                ..
            }) => match pending_key.take() {
                None => {
                    if matches!(node.value, Value::Sequence(_) | Value::Mapping(_)) {
                        return Err(SyntaxError::at(mark, "a mapping key must be a scalar"));
                    }
                    *pending_key = Some(node);
                    Ok(())
                }
                Some(key) => {
                    if let Value::Mapping(entries) = &mut parent.value {
                        entries.push((key, node));
                    }
                    Ok(())
                }
            },
        }
    }
}

fn count_nodes(node: &Node) -> usize {
    match &node.value {
        Value::Sequence(items) => 1 + items.iter().map(count_nodes).sum::<usize>(),
        Value::Mapping(entries) => {
            1 + entries
                .iter()
                .map(|(k, v)| count_nodes(k) + count_nodes(v))
                .sum::<usize>()
        }
        _ => 1,
    }
}

/// `<<: *base` or `<<: [*a, *b]`: add the merged mappings' keys that are not defined here.
/// Earlier mappings in a merge list win over later ones, as in `yaml.v2`.
fn apply_merge_keys(node: &mut Node) {
    let Value::Mapping(entries) = &mut node.value else {
        return;
    };
    let is_merge = |k: &Node| !k.quoted && k.text == "<<";
    if !entries.iter().any(|(k, _)| is_merge(k)) {
        return;
    }
    let (merges, mut own): (Vec<_>, Vec<_>) = std::mem::take(entries).into_iter().partition(|(k, _)| is_merge(k));
    for (_, merged) in merges {
        let sources: Vec<Node> = match merged.value {
            Value::Mapping(_) => vec![merged],
            Value::Sequence(items) => items,
            _ => Vec::new(),
        };
        for source in sources {
            if let Value::Mapping(source_entries) = source.value {
                for (key, value) in source_entries {
                    if !own.iter().any(|(k, _)| k.text == key.text) {
                        own.push((key, value));
                    }
                }
            }
        }
    }
    *entries = own;
}

/// Resolve a plain scalar with YAML 1.1 rules, as `yaml.v2` does.
fn resolve_plain(text: &str) -> Value {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "y" | "Y" | "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => {
            return Value::Bool(true);
        }
        "n" | "N" | "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => {
            return Value::Bool(false);
        }
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => return Value::Float(f64::INFINITY),
        "-.inf" | "-.Inf" | "-.INF" => return Value::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Value::Float(f64::NAN),
        _ => {}
    }
    if let Some(int) = parse_int(text) {
        return Value::Int(int);
    }
    if is_float(text)
        && let Ok(float) = text.replace('_', "").parse::<f64>()
    {
        return Value::Float(float);
    }
    Value::String(text.to_string())
}

/// Go's `strconv.ParseInt(s, 0, 64)` after removing `_`, as `yaml.v2` resolves integers.
fn parse_int(text: &str) -> Option<i64> {
    let cleaned = text.replace('_', "");
    let (negative, digits) = match cleaned.as_bytes().first() {
        Some(b'-') => (true, &cleaned[1..]),
        Some(b'+') => (false, &cleaned[1..]),
        _ => (false, cleaned.as_str()),
    };
    if digits.is_empty() {
        return None;
    }
    let (radix, body) = if let Some(rest) = digits.strip_prefix("0x").or_else(|| digits.strip_prefix("0X")) {
        (16, rest)
    } else if let Some(rest) = digits.strip_prefix("0b").or_else(|| digits.strip_prefix("0B")) {
        (2, rest)
    } else if let Some(rest) = digits.strip_prefix("0o").or_else(|| digits.strip_prefix("0O")) {
        (8, rest)
    } else if digits.len() > 1 && digits.starts_with('0') {
        (8, &digits[1..])
    } else {
        (10, digits)
    };
    if body.is_empty() || !body.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let magnitude = i128::from_str_radix(body, radix).ok()?;
    let signed = if negative { -magnitude } else { magnitude };
    i64::try_from(signed).ok()
}

/// `yaml.v2`'s float pattern: `[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?`.
fn is_float(text: &str) -> bool {
    let bytes: Vec<u8> = text.bytes().filter(|b| *b != b'_').collect();
    let mut i = 0;
    if matches!(bytes.first(), Some(b'-' | b'+')) {
        i += 1;
    }
    let digits_before = bytes[i..].iter().take_while(|b| b.is_ascii_digit()).count();
    i += digits_before;
    let mut digits_after = 0;
    if bytes.get(i) == Some(&b'.') {
        i += 1;
        digits_after = bytes[i..].iter().take_while(|b| b.is_ascii_digit()).count();
        i += digits_after;
    }
    if digits_before == 0 && digits_after == 0 {
        return false;
    }
    if matches!(bytes.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(bytes.get(i), Some(b'-' | b'+')) {
            i += 1;
        }
        let exponent = bytes[i..].iter().take_while(|b| b.is_ascii_digit()).count();
        if exponent == 0 {
            return false;
        }
        i += exponent;
    }
    i == bytes.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalars_resolve_as_yaml_v2_does() {
        let node = parse("a: 1\nb: '1'\nc: yes\nd: ~\ne: 0x1F\nf: 1.5\ng: text\nh:\ni: 010\n").unwrap();
        assert_eq!(node.get("a").unwrap().value, Value::Int(1));
        assert_eq!(node.get("b").unwrap().value, Value::String("1".into()));
        assert!(node.get("b").unwrap().quoted);
        assert_eq!(node.get("c").unwrap().value, Value::Bool(true));
        assert_eq!(node.get("d").unwrap().value, Value::Null);
        assert_eq!(node.get("e").unwrap().value, Value::Int(31));
        assert_eq!(node.get("f").unwrap().value, Value::Float(1.5));
        assert_eq!(node.get("g").unwrap().value, Value::String("text".into()));
        assert_eq!(node.get("h").unwrap().value, Value::Null);
        assert_eq!(node.get("i").unwrap().value, Value::Int(8));
    }

    #[test]
    fn nodes_carry_their_line_and_column() {
        let node = parse("top:\n  inner:\n    - x\n").unwrap();
        let inner = node.get("top").unwrap().get("inner").unwrap();
        let Value::Sequence(items) = &inner.value else {
            panic!("not a list")
        };
        assert_eq!((items[0].line, items[0].column), (3, 7));
    }

    #[test]
    fn syntax_errors_name_their_line() {
        let error = parse("a: 1\nb: [1, 2\nc: 3\n").unwrap_err();
        assert!(error.line >= 2, "{error}");
    }

    #[test]
    fn aliases_and_merge_keys_resolve() {
        let node = parse("base: &b {x: 1, y: 2}\nuse:\n  <<: *b\n  y: 3\n").unwrap();
        let used = node.get("use").unwrap();
        assert_eq!(used.get("x").unwrap().value, Value::Int(1));
        assert_eq!(used.get("y").unwrap().value, Value::Int(3));
    }

    #[test]
    fn alias_bombs_are_refused() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let p = i - 1;
            text.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        assert!(parse(&text).is_err());
    }

    #[test]
    fn deep_nesting_is_refused() {
        let text = "[".repeat(10_000);
        assert!(parse(&text).is_err());
    }
}
