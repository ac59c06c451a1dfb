//! YAML documents as trees whose every node knows its line, built from granit-parser's event
//! stream (the parser under serde-saphyr).
//!
//! Why not serde: lint needs the line of each key it talks about, must not stop at a
//! duplicate key (the second one wins, as in Kubernetes, and the duplicate is reported), and
//! must tell an unquoted `true` from a quoted `"true"` (an annotation must be a string).
//! Anchors and aliases are expanded, `<<` merge keys applied; expansion is bounded so that an
//! alias bomb is an error, not an out-of-memory.

use granit_parser::{Event, Parser, ScalarStyle};
use std::collections::HashMap;

/// One YAML node and the 1-based line where it starts.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// 1-based line of the node's first character.
    pub line: u32,
    /// The content.
    pub value: Value,
}

/// The content of a node.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// A scalar as written (after escapes); `plain` when it was not quoted nor a block scalar.
    Scalar {
        /// The text.
        text: String,
        /// Written without quotes: YAML may read it as a bool, a number or null.
        plain: bool,
    },
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping in source order; duplicate keys are merged (the last value wins).
    Map(Vec<Entry>),
}

/// One key of a mapping.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    /// The key's text (a complex key is written as `?`).
    pub key: String,
    /// The key's line.
    pub line: u32,
    /// The value.
    pub node: Node,
}

/// A key written twice in one mapping.
#[derive(Clone, Debug, PartialEq)]
pub struct Duplicate {
    /// The key.
    pub key: String,
    /// The line of its first occurrence.
    pub first: u32,
    /// The line of the occurrence that wins.
    pub second: u32,
}

/// The documents of one YAML text.
#[derive(Debug, Default)]
pub struct Stream {
    /// Every complete document, in order (those before a syntax error included).
    pub docs: Vec<Node>,
    /// Duplicate keys, per document index.
    pub duplicates: Vec<(usize, Duplicate)>,
    /// The syntax error that stopped the parse, if any.
    pub error: Option<SyntaxError>,
}

/// Why a YAML text could not be read to its end.
#[derive(Clone, Debug, PartialEq)]
pub struct SyntaxError {
    /// 1-based line.
    pub line: u32,
    /// What is wrong, in the parser's words.
    pub message: String,
}

/// How many nodes alias expansion may produce in one text before it is called a bomb (real
/// manifests use aliases for a few small blocks).
const MAX_NODES: usize = 1_000_000;

impl Node {
    /// The scalar text, if this is a scalar.
    pub fn str(&self) -> Option<&str> {
        match &self.value {
            Value::Scalar { text, .. } => Some(text),
            _ => None,
        }
    }

    /// The scalar text unless it is YAML's null (`~`, `null`, empty and plain).
    pub fn text(&self) -> Option<&str> {
        match &self.value {
            Value::Scalar { text, plain: true } if is_null(text) => None,
            Value::Scalar { text, .. } => Some(text),
            _ => None,
        }
    }

    /// A value of this mapping by key.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.entry(key).map(|e| &e.node)
    }

    /// An entry of this mapping by key.
    pub fn entry(&self, key: &str) -> Option<&Entry> {
        match &self.value {
            Value::Map(m) => m.iter().find(|e| e.key == key),
            _ => None,
        }
    }

    /// The node at a path of keys.
    pub fn at(&self, path: &[&str]) -> Option<&Node> {
        path.iter().try_fold(self, |n, k| n.get(k))
    }

    /// The string at a path of keys.
    pub fn str_at(&self, path: &[&str]) -> Option<&str> {
        self.at(path).and_then(Node::text)
    }

    /// The items of a sequence (empty for anything else).
    pub fn items(&self) -> &[Node] {
        match &self.value {
            Value::Seq(s) => s,
            _ => &[],
        }
    }

    /// The entries of a mapping (empty for anything else).
    pub fn entries(&self) -> &[Entry] {
        match &self.value {
            Value::Map(m) => m,
            _ => &[],
        }
    }

    /// Whether this is a mapping.
    pub fn is_map(&self) -> bool {
        matches!(self.value, Value::Map(_))
    }

    /// A plain scalar that YAML reads as something other than a string (bool, number, null).
    pub fn not_a_string(&self) -> Option<&'static str> {
        match &self.value {
            Value::Scalar { text, plain: true } => plain_type(text),
            Value::Seq(_) => Some("a list"),
            Value::Map(_) => Some("a mapping"),
            _ => None,
        }
    }

    /// Converts to JSON (scalars resolved as YAML 1.2 core schema would).
    pub fn to_json(&self) -> serde_json::Value {
        match &self.value {
            Value::Scalar { text, plain } => {
                if *plain {
                    match plain_type(text) {
                        Some("null") => return serde_json::Value::Null,
                        Some("a boolean") => {
                            return serde_json::Value::Bool(text.eq_ignore_ascii_case("true"));
                        }
                        Some("a number") => {
                            if let Ok(i) = text.parse::<i64>() {
                                return i.into();
                            }
                            if let Ok(f) = text.parse::<f64>()
                                && let Some(n) = serde_json::Number::from_f64(f)
                            {
                                return serde_json::Value::Number(n);
                            }
                        }
                        _ => {}
                    }
                }
                serde_json::Value::String(text.clone())
            }
            Value::Seq(s) => s.iter().map(Node::to_json).collect(),
            Value::Map(m) => m
                .iter()
                .map(|e| (e.key.clone(), e.node.to_json()))
                .collect::<serde_json::Map<_, _>>()
                .into(),
        }
    }
}

fn is_null(t: &str) -> bool {
    matches!(t, "" | "~" | "null" | "Null" | "NULL")
}

/// What YAML makes of an unquoted scalar when it is not a string.
fn plain_type(t: &str) -> Option<&'static str> {
    if is_null(t) {
        return Some("null");
    }
    // Kubernetes reads YAML with go-yaml, which also takes YAML 1.1's yes/no/on/off.
    if matches!(
        t,
        "true"
            | "True"
            | "TRUE"
            | "false"
            | "False"
            | "FALSE"
            | "yes"
            | "Yes"
            | "YES"
            | "no"
            | "No"
            | "NO"
            | "on"
            | "On"
            | "ON"
            | "off"
            | "Off"
            | "OFF"
    ) {
        return Some("a boolean");
    }
    let digits = t.strip_prefix(['-', '+']).unwrap_or(t);
    if !digits.is_empty()
        && (digits.bytes().all(|b| b.is_ascii_digit())
            || (digits.starts_with("0x")
                && digits.len() > 2
                && digits[2..].bytes().all(|b| b.is_ascii_hexdigit()))
            || (digits.contains('.')
                && digits.bytes().any(|b| b.is_ascii_digit())
                && digits.parse::<f64>().is_ok()))
    {
        return Some("a number");
    }
    None
}

enum Frame {
    Seq(u32, usize, Vec<Node>),
    Map(u32, usize, Vec<Entry>, Option<(String, u32)>),
}

/// Parses every document of a YAML (or JSON) text.
pub fn parse(text: &str) -> Stream {
    let mut out = Stream::default();
    let mut stack: Vec<Frame> = Vec::new();
    let mut anchors: HashMap<usize, (Node, usize)> = HashMap::new();
    let mut budget = MAX_NODES;
    let mut doc_dups: Vec<Duplicate> = Vec::new();
    for ev in Parser::new_from_str(text) {
        let (event, span) = match ev {
            Ok(e) => e,
            Err(e) => {
                out.error = Some(SyntaxError {
                    line: e.marker().line().max(1) as u32,
                    message: e.info().to_string(),
                });
                return out;
            }
        };
        let line = span.start.line().max(1) as u32;
        let done: Option<(Node, usize)> = match event {
            Event::DocumentStart(..) => {
                anchors.clear();
                doc_dups.clear();
                None
            }
            Event::DocumentEnd => None,
            Event::Scalar(text, style, anchor, _) => Some((
                Node {
                    line,
                    value: Value::Scalar {
                        text: text.into_owned(),
                        plain: style == ScalarStyle::Plain,
                    },
                },
                anchor,
            )),
            Event::SequenceStart(_, anchor, _) => {
                stack.push(Frame::Seq(line, anchor, Vec::new()));
                None
            }
            Event::MappingStart(_, anchor, _) => {
                stack.push(Frame::Map(line, anchor, Vec::new(), None));
                None
            }
            Event::SequenceEnd => match stack.pop() {
                Some(Frame::Seq(l, a, items)) => Some((
                    Node {
                        line: l,
                        value: Value::Seq(items),
                    },
                    a,
                )),
                _ => None,
            },
            Event::MappingEnd => match stack.pop() {
                Some(Frame::Map(l, a, entries, _)) => Some((
                    Node {
                        line: l,
                        value: Value::Map(entries),
                    },
                    a,
                )),
                _ => None,
            },
            Event::Alias(id) => match anchors.get(&id) {
                Some((n, size)) => {
                    let size = *size;
                    if size > budget {
                        out.error = Some(SyntaxError {
                            line,
                            message: "aliases expand to too many nodes (an alias bomb?)".into(),
                        });
                        return out;
                    }
                    budget -= size;
                    let mut n = n.clone();
                    n.line = line;
                    Some((n, 0))
                }
                None => Some((
                    Node {
                        line,
                        value: Value::Scalar {
                            text: String::new(),
                            plain: true,
                        },
                    },
                    0,
                )),
            },
            _ => None,
        };
        let Some((node, anchor)) = done else {
            continue;
        };
        if anchor != 0 {
            anchors.insert(anchor, (node.clone(), count(&node)));
        }
        match stack.last_mut() {
            None => {
                let idx = out.docs.len();
                out.duplicates.extend(doc_dups.drain(..).map(|d| (idx, d)));
                out.docs.push(node);
            }
            Some(Frame::Seq(_, _, items)) => items.push(node),
            Some(Frame::Map(_, _, entries, pending)) => match pending.take() {
                None => {
                    let key = node.str().unwrap_or("?").to_string();
                    *pending = Some((key, node.line));
                }
                Some((key, kline)) => insert(entries, key, kline, node, &mut doc_dups),
            },
        }
    }
    out
}

fn count(n: &Node) -> usize {
    match &n.value {
        Value::Scalar { .. } => 1,
        Value::Seq(s) => 1 + s.iter().map(count).sum::<usize>(),
        Value::Map(m) => 1 + m.iter().map(|e| 1 + count(&e.node)).sum::<usize>(),
    }
}

fn insert(entries: &mut Vec<Entry>, key: String, line: u32, node: Node, dups: &mut Vec<Duplicate>) {
    if key == "<<" {
        // A merge key: the merged mapping's keys, unless the mapping sets them itself.
        let sources: Vec<&Node> = match &node.value {
            Value::Map(_) => vec![&node],
            Value::Seq(s) => s.iter().collect(),
            _ => vec![],
        };
        for src in sources {
            for e in src.entries() {
                if !entries.iter().any(|x| x.key == e.key) {
                    entries.push(e.clone());
                }
            }
        }
        return;
    }
    if let Some(old) = entries.iter_mut().find(|e| e.key == key) {
        dups.push(Duplicate {
            key,
            first: old.line,
            second: line,
        });
        old.line = line;
        old.node = node;
    } else {
        entries.push(Entry { key, line, node });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_know_their_lines() {
        let s = parse("a: 1\nb:\n  c: \"true\"\n  d: true\n---\n- x\n");
        assert!(s.error.is_none());
        assert_eq!(s.docs.len(), 2);
        let d = &s.docs[0];
        assert_eq!(d.entry("b").unwrap().line, 2);
        assert_eq!(d.at(&["b", "c"]).unwrap().line, 3);
        assert_eq!(d.at(&["b", "c"]).unwrap().not_a_string(), None);
        assert_eq!(d.at(&["b", "d"]).unwrap().not_a_string(), Some("a boolean"));
        assert_eq!(s.docs[1].items()[0].line, 6);
    }

    #[test]
    fn a_duplicate_key_is_recorded_and_the_second_wins() {
        let s = parse("a: 1\nb: 2\na: 3\n");
        assert!(s.error.is_none());
        assert_eq!(s.docs[0].str_at(&["a"]), Some("3"));
        assert_eq!(
            s.duplicates,
            vec![(
                0,
                Duplicate {
                    key: "a".into(),
                    first: 1,
                    second: 3
                }
            )]
        );
    }

    #[test]
    fn a_syntax_error_keeps_the_documents_before_it() {
        let s = parse("a: 1\n---\nb: [1, 2\nc: 3\n");
        assert_eq!(s.docs.len(), 1);
        let e = s.error.unwrap();
        assert!(e.line >= 3, "{e:?}");
    }

    #[test]
    fn aliases_and_merge_keys_expand() {
        let s = parse("base: &b {x: 1, y: 2}\nother:\n  <<: *b\n  y: 3\n");
        let o = s.docs[0].get("other").unwrap();
        assert_eq!(o.str_at(&["x"]), Some("1"));
        assert_eq!(o.str_at(&["y"]), Some("3"));
    }

    #[test]
    fn json_is_yaml() {
        let s = parse("{\"kind\": \"Service\", \"spec\": {\"ports\": [{\"port\": 80}]}}");
        assert_eq!(s.docs[0].str_at(&["kind"]), Some("Service"));
        assert_eq!(
            s.docs[0].to_json()["spec"]["ports"][0]["port"],
            serde_json::json!(80)
        );
    }

    #[test]
    fn an_alias_bomb_is_an_error() {
        let mut t = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..12 {
            let p = i - 1;
            t.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        let s = parse(&t);
        assert!(s.error.unwrap().message.contains("alias"));
    }
}
