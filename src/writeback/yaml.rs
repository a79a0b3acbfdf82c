//! Byte-exact edits of YAML files.
//!
//! The file is parsed into a tree that remembers where every node is written. An edit replaces
//! the bytes of one scalar, in the scalar's own quoting style, or inserts a few new lines at
//! the indentation the file already uses; every other byte (comments, key order, blank lines,
//! other documents) is left as it was. The edited text is parsed again and compared with the
//! original tree: if anything but the intended change differs, the edit is refused.
//!
//! Anchors, aliases, tags and block scalars at a target are refused with a clear error: writing
//! through them would change values elsewhere in the file, or the meaning of the value.

use std::ops::Range;
use std::sync::LazyLock;

use regex::Regex;
use saphyr_parser::{Event, Parser, ScalarStyle};

/// Why a YAML file could not be edited.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct YamlError {
    pub message: String,
}

pub(crate) fn error(message: impl Into<String>) -> YamlError {
    YamlError {
        message: message.into(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Plain,
    Single,
    Double,
    Block,
}

/// A node and where it is written (byte ranges into the source).
#[derive(Debug, Clone)]
pub enum Node {
    Scalar {
        value: String,
        style: Style,
        span: Range<usize>,
        /// Has an anchor (`&a`) or a tag (`!!str`).
        decorated: bool,
        /// Has a tag (`!!str`).
        tagged: bool,
        /// The parser's anchor id, 0 for none.
        anchor: usize,
    },
    Seq {
        items: Vec<Node>,
        start: usize,
        flow: bool,
        decorated: bool,
        anchor: usize,
    },
    Map {
        entries: Vec<(Node, Node)>,
        start: usize,
        flow: bool,
        decorated: bool,
        anchor: usize,
    },
    Alias {
        span: Range<usize>,
        anchor: usize,
    },
}

/// Where an alias (`*name`) stands in a document: its path, the key it is the value of (none
/// for a sequence item), and its byte offset.
#[derive(Debug, Clone)]
pub struct AliasSite {
    pub path: NodePath,
    pub key: Option<String>,
    pub start: usize,
}

/// Every alias of `anchor` in the document `root` (document number `document`).
pub fn alias_sites(root: &Node, document: usize, anchor: usize) -> Vec<AliasSite> {
    fn walk(
        node: &Node,
        key: Option<&str>,
        steps: &mut Vec<Step>,
        anchor: usize,
        document: usize,
        out: &mut Vec<AliasSite>,
    ) {
        match node {
            Node::Alias { anchor: a, span } if *a == anchor => out.push(AliasSite {
                path: NodePath {
                    document,
                    steps: steps.clone(),
                },
                key: key.map(str::to_string),
                start: span.start,
            }),
            Node::Map { entries, .. } => {
                for (i, (k, v)) in entries.iter().enumerate() {
                    steps.push(Step::Value(i));
                    walk(v, k.as_str(), steps, anchor, document, out);
                    steps.pop();
                }
            }
            Node::Seq { items, .. } => {
                for (i, item) in items.iter().enumerate() {
                    steps.push(Step::Item(i));
                    walk(item, None, steps, anchor, document, out);
                    steps.pop();
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(root, None, &mut Vec::new(), anchor, document, &mut out);
    out
}

/// The node that defines `anchor` in the document `root`, if any.
pub fn anchored(root: &Node, anchor: usize) -> Option<&Node> {
    match root {
        Node::Scalar { anchor: a, .. }
        | Node::Seq { anchor: a, .. }
        | Node::Map { anchor: a, .. }
            if *a == anchor =>
        {
            Some(root)
        }
        Node::Map { entries, .. } => entries
            .iter()
            .find_map(|(k, v)| anchored(k, anchor).or_else(|| anchored(v, anchor))),
        Node::Seq { items, .. } => items.iter().find_map(|i| anchored(i, anchor)),
        _ => None,
    }
}

impl Node {
    /// The value of a plain key lookup in a mapping.
    pub fn get(&self, key: &str) -> Option<&Node> {
        match self {
            Node::Map { entries, .. } => entries
                .iter()
                .find(|(k, _)| matches!(k, Node::Scalar { value, .. } if value == key))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Node::Scalar { value, .. } => Some(value),
            _ => None,
        }
    }

    /// Where the node's text starts.
    pub fn start(&self) -> usize {
        match self {
            Node::Scalar { span, .. } | Node::Alias { span, .. } => span.start,
            Node::Seq { start, .. } | Node::Map { start, .. } => *start,
        }
    }

    /// Where the last scalar or alias inside the node ends.
    pub fn end(&self) -> usize {
        match self {
            Node::Scalar { span, .. } | Node::Alias { span, .. } => span.end,
            Node::Seq { items, start, .. } => items.last().map_or(*start, Node::end),
            Node::Map { entries, start, .. } => entries.last().map_or(*start, |(_, v)| v.end()),
        }
    }

    /// The value without positions, for comparing trees. Aliases are expanded, so that an edit
    /// inside an anchored node shows up everywhere the anchor is used.
    fn plain(&self, anchors: &mut Anchors) -> Result<Plain, YamlError> {
        let plain = match self {
            Node::Scalar { value, .. } => Plain::Scalar(value.clone()),
            Node::Seq { items, .. } => Plain::Seq(
                items
                    .iter()
                    .map(|i| i.plain(anchors))
                    .collect::<Result<_, _>>()?,
            ),
            Node::Map { entries, .. } => Plain::Map(
                entries
                    .iter()
                    .map(|(k, v)| Ok((k.plain(anchors)?, v.plain(anchors)?)))
                    .collect::<Result<_, YamlError>>()?,
            ),
            Node::Alias { anchor, .. } => {
                let target = anchors.defined.get(anchor).cloned().unwrap_or(Plain::Alias);
                anchors.budget = anchors.budget.checked_sub(target.size()).ok_or_else(|| {
                    error("aliases in this file expand to too many nodes; refusing to edit it")
                })?;
                target
            }
        };
        match self {
            Node::Scalar { anchor, .. } | Node::Seq { anchor, .. } | Node::Map { anchor, .. }
                if *anchor != 0 =>
            {
                anchors.defined.insert(*anchor, plain.clone());
            }
            _ => {}
        }
        Ok(plain)
    }
}

/// Anchors seen so far while expanding a document, and how many more nodes aliases may add
/// (a file of nested aliases can otherwise expand exponentially).
struct Anchors {
    defined: std::collections::HashMap<usize, Plain>,
    budget: usize,
}

impl Plain {
    fn size(&self) -> usize {
        match self {
            Plain::Scalar(_) | Plain::Alias => 1,
            Plain::Seq(items) => 1 + items.iter().map(Plain::size).sum::<usize>(),
            Plain::Map(entries) => {
                1 + entries
                    .iter()
                    .map(|(k, v)| k.size() + v.size())
                    .sum::<usize>()
            }
        }
    }
}

/// A node's content alone. Edits are checked by comparing these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plain {
    Scalar(String),
    Seq(Vec<Plain>),
    Map(Vec<(Plain, Plain)>),
    Alias,
}

/// A parsed file: its documents, and a map from the parser's character positions to bytes.
#[derive(Debug, Clone)]
pub struct Yaml {
    pub documents: Vec<Node>,
}

/// An open collection: its children so far, start, flow style, anchor id, has a tag.
enum Frame {
    Seq(Vec<Node>, usize, bool, usize, bool),
    Map(Vec<Node>, usize, bool, usize, bool),
}

impl Yaml {
    pub fn parse(source: &str) -> Result<Yaml, YamlError> {
        let offsets: Option<Vec<usize>> = (!source.is_ascii()).then(|| {
            let mut v: Vec<usize> = source.char_indices().map(|(b, _)| b).collect();
            v.push(source.len());
            v
        });
        let byte = |char_index: usize| match &offsets {
            Some(v) => v[char_index.min(v.len() - 1)],
            None => char_index,
        };
        let mut documents = Vec::new();
        let mut stack: Vec<Frame> = Vec::new();
        let mut parser = Parser::new_from_str(source);
        while let Some(event) = parser.next_event() {
            let (event, span) = event.map_err(|e| error(format!("not valid YAML: {e}")))?;
            let (start, end) = (byte(span.start.index()), byte(span.end.index()));
            let node = match event {
                Event::StreamEnd => break,
                Event::SequenceStart(anchor, tag) => {
                    let flow = source[start..].starts_with('[');
                    stack.push(Frame::Seq(Vec::new(), start, flow, anchor, tag.is_some()));
                    continue;
                }
                Event::MappingStart(anchor, tag) => {
                    let flow = source[start..].starts_with('{');
                    stack.push(Frame::Map(Vec::new(), start, flow, anchor, tag.is_some()));
                    continue;
                }
                Event::SequenceEnd => match stack.pop() {
                    Some(Frame::Seq(items, start, flow, anchor, tagged)) => Node::Seq {
                        items,
                        start,
                        flow,
                        decorated: anchor != 0 || tagged,
                        anchor,
                    },
                    _ => return Err(error("not valid YAML: unbalanced sequence")),
                },
                Event::MappingEnd => match stack.pop() {
                    Some(Frame::Map(items, start, flow, anchor, tagged)) => {
                        let mut entries = Vec::with_capacity(items.len() / 2);
                        let mut it = items.into_iter();
                        while let (Some(k), Some(v)) = (it.next(), it.next()) {
                            entries.push((k, v));
                        }
                        Node::Map {
                            entries,
                            start,
                            flow,
                            decorated: anchor != 0 || tagged,
                            anchor,
                        }
                    }
                    _ => return Err(error("not valid YAML: unbalanced mapping")),
                },
                Event::Scalar(value, style, anchor, tag) => Node::Scalar {
                    // The parser's end mark for a quoted scalar can lie past the spaces and
                    // comment that follow it; the closing quote is found here instead.
                    span: match style {
                        ScalarStyle::SingleQuoted | ScalarStyle::DoubleQuoted => {
                            start..quoted_end(source, start, end)
                        }
                        _ => start..end,
                    },
                    value: value.into_owned(),
                    style: match style {
                        ScalarStyle::Plain => Style::Plain,
                        ScalarStyle::SingleQuoted => Style::Single,
                        ScalarStyle::DoubleQuoted => Style::Double,
                        _ => Style::Block,
                    },
                    decorated: anchor != 0 || tag.is_some(),
                    tagged: tag.is_some(),
                    anchor,
                },
                Event::Alias(anchor) => Node::Alias {
                    span: start..end,
                    anchor,
                },
                _ => continue,
            };
            match stack.last_mut() {
                Some(Frame::Seq(items, ..)) | Some(Frame::Map(items, ..)) => items.push(node),
                None => documents.push(node),
            }
        }
        Ok(Yaml { documents })
    }

    fn plain(&self) -> Result<Vec<Plain>, YamlError> {
        // Anchors are scoped to their document.
        let mut budget = 1_000_000;
        let mut out = Vec::with_capacity(self.documents.len());
        for d in &self.documents {
            let mut anchors = Anchors {
                defined: Default::default(),
                budget,
            };
            out.push(d.plain(&mut anchors)?);
            budget = anchors.budget;
        }
        Ok(out)
    }
}

/// The byte just past the closing quote of the quoted scalar starting at `start` (its opening
/// quote, or an anchor or tag before it); `limit` if none is found before it.
fn quoted_end(source: &str, start: usize, limit: usize) -> usize {
    let bytes = source.as_bytes();
    let Some(open) = source[start..limit].find(['\'', '"']).map(|i| start + i) else {
        return limit;
    };
    let quote = bytes[open];
    let mut i = open + 1;
    while i < limit {
        match bytes[i] {
            b'\\' if quote == b'"' => i += 2,
            b'\'' if quote == b'\'' && bytes.get(i + 1) == Some(&b'\'') => i += 2,
            b if b == quote => return i + 1,
            _ => i += 1,
        }
    }
    limit
}

/// One step from a node to a child: a mapping's value by entry index, or a sequence item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Value(usize),
    Item(usize),
}

/// Where a node is: document index, then steps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodePath {
    pub document: usize,
    pub steps: Vec<Step>,
}

impl Plain {
    fn at_mut(&mut self, steps: &[Step]) -> Option<&mut Plain> {
        let Some((first, rest)) = steps.split_first() else {
            return Some(self);
        };
        match (self, first) {
            (Plain::Map(entries), Step::Value(i)) => entries.get_mut(*i)?.1.at_mut(rest),
            (Plain::Seq(items), Step::Item(i)) => items.get_mut(*i)?.at_mut(rest),
            _ => None,
        }
    }
}

/// Marks a splice that fills an empty value: it goes after the colon following its position.
const EMPTY_VALUE: &str = "\u{0}empty:";

/// A change to a file: byte replacements and insertions, and what the re-parsed file must
/// then look like.
#[derive(Debug, Default, Clone)]
pub struct Patch {
    /// (range, replacement), non-overlapping.
    splices: Vec<(Range<usize>, String)>,
    /// What the tree must become, applied to the original tree for the check.
    expect: Vec<Expectation>,
}

#[derive(Debug, Clone)]
enum Expectation {
    /// The scalar at the path takes this value.
    Set(NodePath, String),
    /// The mapping at the path gains this entry at the end.
    AddEntry(NodePath, Plain, Plain),
    /// The sequence at the path gains this item at the end.
    AddItem(NodePath, Plain),
    /// The node at the path becomes this value (an empty `images:` becoming a list).
    Replace(NodePath, Plain),
    /// The mapping at the path loses its entry at this index.
    Remove(NodePath, usize),
}

impl Expectation {
    /// Makes the change in `documents`, the original file's content.
    fn apply_to(&self, documents: &mut [Plain]) -> Result<(), YamlError> {
        let path = match self {
            Expectation::Set(p, _)
            | Expectation::AddEntry(p, ..)
            | Expectation::AddItem(p, _)
            | Expectation::Replace(p, _)
            | Expectation::Remove(p, _) => p,
        };
        let node = documents
            .get_mut(path.document)
            .and_then(|d| d.at_mut(&path.steps))
            .ok_or_else(|| error("internal: an edit points outside the document"))?;
        match (self, node) {
            (Expectation::Set(_, v), node) => *node = Plain::Scalar(v.clone()),
            (Expectation::AddEntry(_, k, v), Plain::Map(entries)) => {
                entries.push((k.clone(), v.clone()))
            }
            (Expectation::AddItem(_, item), Plain::Seq(items)) => items.push(item.clone()),
            (Expectation::Replace(_, v), node) => *node = v.clone(),
            (Expectation::Remove(_, i), Plain::Map(entries)) if *i < entries.len() => {
                entries.remove(*i);
            }
            _ => return Err(error("internal: an edit does not fit its node")),
        }
        Ok(())
    }
}

impl Patch {
    pub fn is_empty(&self) -> bool {
        self.splices.is_empty()
    }

    /// Replaces the anchored scalar `node` (`image: &go golang:1.26`, at `path`) with `value`:
    /// every alias of it (at `aliases`) then reads `value` too, and the check after the edit
    /// expects exactly that. The caller decides that every alias may change.
    pub fn set_anchored(
        &mut self,
        source: &str,
        node: &Node,
        path: NodePath,
        aliases: &[NodePath],
        value: &str,
        what: &str,
    ) -> Result<(), YamlError> {
        let Node::Scalar {
            span,
            style,
            tagged: false,
            value: current,
            ..
        } = node
        else {
            return self.set_scalar(node, path, value, what);
        };
        if current == value {
            return Ok(());
        }
        if *style == Style::Block || span.is_empty() {
            return Err(error(format!(
                "{what} is an anchored block scalar or empty value; write it as a plain or quoted value"
            )));
        }
        // The parser's span starts at the anchor (`&go golang:1.26`); the anchor stays.
        let mut start = span.start;
        if source[start..span.end].starts_with('&') {
            let text = &source[start..span.end];
            let name_end = text.find([' ', '\t', '\n', '\r']).unwrap_or(text.len());
            let gap = text[name_end..].len() - text[name_end..].trim_start().len();
            start += name_end + gap;
        }
        if start >= span.end {
            return Err(error(format!(
                "{what} has an anchor but no value of its own"
            )));
        }
        self.splices.push((start..span.end, render(value, *style)));
        for at in std::iter::once(path).chain(aliases.iter().cloned()) {
            self.expect.push(Expectation::Set(at, value.to_string()));
        }
        Ok(())
    }

    /// Replaces the scalar `node` (at `path`) with `value`, in its own quoting style.
    pub fn set_scalar(
        &mut self,
        node: &Node,
        path: NodePath,
        value: &str,
        what: &str,
    ) -> Result<(), YamlError> {
        let (span, style) = match node {
            Node::Scalar {
                decorated: true, ..
            } => {
                return Err(error(format!(
                    "{what} has an anchor or a tag; refusing to edit through it"
                )));
            }
            Node::Scalar {
                style: Style::Block,
                ..
            } => {
                return Err(error(format!(
                    "{what} is a block scalar (| or >); write it as a plain or quoted value"
                )));
            }
            Node::Scalar { value: current, .. } if current == value => return Ok(()),
            // An empty value (`tag:`) has no bytes of its own; the parser places it at the end
            // of the key, and it is written after the colon when the patch is applied.
            Node::Scalar { span, .. } if span.is_empty() => {
                self.splices.push((
                    span.clone(),
                    format!("{EMPTY_VALUE}{}", render(value, Style::Plain)),
                ));
                self.expect.push(Expectation::Set(path, value.to_string()));
                return Ok(());
            }
            Node::Scalar { span, style, .. } => (span.clone(), *style),
            Node::Alias { .. } => {
                return Err(error(format!(
                    "{what} is an alias (*name); refusing to edit through it"
                )));
            }
            _ => return Err(error(format!("{what} is not a single value"))),
        };
        self.splices.push((span, render(value, style)));
        self.expect.push(Expectation::Set(path, value.to_string()));
        Ok(())
    }

    /// Inserts `text` at byte `at`; the check expects `mapping` to gain `key: value`.
    pub fn add_entry(
        &mut self,
        at: usize,
        text: String,
        mapping: NodePath,
        key: &str,
        value: Plain,
    ) {
        self.splices.push((at..at, text));
        self.expect.push(Expectation::AddEntry(
            mapping,
            Plain::Scalar(key.into()),
            value,
        ));
    }

    /// Replaces the bytes `range` with `text`; the check expects the node at `path` to become
    /// `value`.
    pub fn replace(&mut self, range: Range<usize>, text: String, path: NodePath, value: Plain) {
        self.splices.push((range, text));
        self.expect.push(Expectation::Replace(path, value));
    }

    /// Removes entry `index` of the mapping `map` (at `path`): its whole line in a block
    /// mapping, or the entry and one separator in a flow mapping.
    pub fn remove_entry(
        &mut self,
        source: &str,
        map: &Node,
        path: NodePath,
        index: usize,
        what: &str,
    ) -> Result<(), YamlError> {
        let Node::Map { entries, flow, .. } = map else {
            return Err(error(format!("{what}: internal: not a mapping")));
        };
        let Some((key, value)) = entries.get(index) else {
            return Err(error(format!("{what}: internal: no such entry")));
        };
        if matches!(value, Node::Map { .. } | Node::Seq { .. }) {
            return Err(error(format!(
                "{what} is not a single value; remove it by hand"
            )));
        }
        let range = match (flow, index) {
            // `{a: 1, b: 2}`: the first entry goes with the separator after it, any other
            // with the separator before it.
            (true, 0) => match entries.get(1) {
                Some((next, _)) => key.start()..next.start(),
                None => key.start()..value.end(),
            },
            (true, _) => entries[index - 1].1.end()..value.end(),
            // The first key of a sequence item shares the line with its `- `: the next key
            // moves up to take its place.
            (false, 0) if !line_is_blank_before(source, key.start()) => match entries.get(1) {
                Some((next, _)) => key.start()..next.start(),
                None => {
                    return Err(error(format!(
                        "{what} is the only key of its item; remove it by hand"
                    )));
                }
            },
            // The last line of a file without a final newline goes with the newline before
            // it, so the file still ends as it did.
            (false, _)
                if end_of_line(source, value.end()) == source.len() && !source.ends_with('\n') =>
            {
                line_start(source, key.start()).saturating_sub(1)..source.len()
            }
            (false, _) => line_start(source, key.start())..end_of_line(source, value.end()),
        };
        self.splices.push((range, String::new()));
        self.expect.push(Expectation::Remove(path, index));
        Ok(())
    }

    /// Replaces the bytes `range` with `text` as part of a change another call describes to
    /// the check.
    pub fn splice(&mut self, range: Range<usize>, text: String) {
        self.splices.push((range, text));
    }

    /// Inserts `text` at byte `at`; the check expects `sequence` to gain `item`.
    pub fn add_item(&mut self, at: usize, text: String, sequence: NodePath, item: Plain) {
        self.splices.push((at..at, text));
        self.expect.push(Expectation::AddItem(sequence, item));
    }

    /// Applies the patch and checks that the result parses to the original tree with exactly the
    /// intended changes.
    pub fn apply(&self, source: &str, original: &Yaml) -> Result<String, YamlError> {
        let mut splices = self.splices.clone();
        splices.sort_by_key(|(r, _)| (r.start, r.end));
        if splices.windows(2).any(|w| w[0].0.end > w[1].0.start) {
            return Err(error("two edits overlap"));
        }
        let crlf = uses_crlf(source);
        let mut out = String::with_capacity(source.len() + 64);
        let mut at = 0;
        for (range, text) in &splices {
            let (range, text) = match text.strip_prefix(EMPTY_VALUE) {
                // `tag:` → `tag: v1`: past the colon that follows the key.
                Some(value) => {
                    let colon = source[range.start..]
                        .find(':')
                        .filter(|i| source[range.start..range.start + i].trim().is_empty())
                        .map_or(range.start, |i| range.start + i + 1);
                    (colon..colon, format!(" {value}"))
                }
                None => (range.clone(), text.clone()),
            };
            if range.start < at {
                return Err(error("two edits overlap"));
            }
            out.push_str(&source[at..range.start]);
            // Lines inserted at the end of a file without a final newline take the newline
            // before them instead, so the file still ends as it did.
            let text = if range.is_empty()
                && range.start == source.len()
                && !source.ends_with('\n')
                && text.ends_with('\n')
            {
                format!("\n{}", text.trim_start_matches('\n').trim_end_matches('\n'))
            } else {
                text
            };
            // Inserted lines end like the file's own lines.
            if crlf {
                out.push_str(&text.replace("\r\n", "\n").replace('\n', "\r\n"));
            } else {
                out.push_str(&text);
            }
            at = range.end;
        }
        out.push_str(&source[at..]);

        let mut expected = original.plain()?;
        // Removals go last, the highest index first, so the paths of the other changes (taken
        // on the original tree) still point where they did.
        let (mut removals, others): (Vec<&Expectation>, Vec<&Expectation>) = self
            .expect
            .iter()
            .partition(|e| matches!(e, Expectation::Remove(..)));
        removals.sort_by_key(|e| match e {
            Expectation::Remove(_, i) => std::cmp::Reverse(*i),
            _ => std::cmp::Reverse(0),
        });
        for e in others.into_iter().chain(removals) {
            e.apply_to(&mut expected)?;
        }
        let edited = Yaml::parse(&out).map_err(|e| {
            error(format!(
                "the edit would break the file ({e}); nothing written"
            ))
        })?;
        if edited.plain()? != expected {
            return Err(error(
                "the edit would change more than the intended value; nothing written",
            ));
        }
        Ok(out)
    }
}

static NON_STRING: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?x)^(?:
          ~|null|Null|NULL
        | y|Y|yes|Yes|YES|n|N|no|No|NO|true|True|TRUE|false|False|FALSE|on|On|ON|off|Off|OFF
        | [-+]?(?:0b[01_]+|0o?[0-7_]+|0x[0-9a-fA-F_]+|[0-9][0-9_]*(?::[0-5]?[0-9])*)
        | [-+]?(?:[0-9][0-9_]*)?\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        | [-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+
        | [-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*
        | [-+]?\.(?:inf|Inf|INF) | \.(?:nan|NaN|NAN)
        | [0-9]{4}-[0-9]{1,2}-[0-9]{1,2}.*
        )$",
    )
    .expect("YAML 1.1 scalar grammar")
});

/// Whether YAML 1.1 or 1.2 would read `value`, written plain, as something other than this
/// string: a number (`1.10`), a boolean (`yes`, `on`), null, a date. Such tags must be quoted.
pub fn needs_quotes(value: &str) -> bool {
    if value.is_empty() || NON_STRING.is_match(value) {
        return true;
    }
    let first = value.chars().next().expect("not empty");
    value.trim() != value
        || "-?:,[]{}#&*!|>'\"%@`".contains(first)
        || value.contains(": ")
        || value.contains(" #")
        || value.ends_with(':')
        || value.contains([',', '[', ']', '{', '}', '\n', '\r', '\t'])
        || value.chars().any(char::is_control)
}

/// `value` written in `style`; a plain scalar that would not read back as this string is
/// double-quoted instead.
pub fn render(value: &str, style: Style) -> String {
    match style {
        Style::Single if !value.contains(['\n', '\r']) => {
            format!("'{}'", value.replace('\'', "''"))
        }
        Style::Plain if !needs_quotes(value) => value.to_string(),
        _ => {
            let mut out = String::with_capacity(value.len() + 2);
            out.push('"');
            for c in value.chars() {
                match c {
                    '"' => out.push_str("\\\""),
                    '\\' => out.push_str("\\\\"),
                    '\n' => out.push_str("\\n"),
                    '\t' => out.push_str("\\t"),
                    c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
                    c => out.push(c),
                }
            }
            out.push('"');
            out
        }
    }
}

/// Whether the file's lines end with `\r\n` (judged by its first line break).
pub fn uses_crlf(source: &str) -> bool {
    source
        .find('\n')
        .is_some_and(|i| i > 0 && source.as_bytes()[i - 1] == b'\r')
}

/// The 1-based line number of byte `at`, for messages.
pub fn line(source: &str, at: usize) -> usize {
    source.as_bytes()[..at.min(source.len())]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

/// The byte where the line holding byte `at` starts.
pub fn line_start(source: &str, at: usize) -> usize {
    source[..at].rfind('\n').map_or(0, |i| i + 1)
}

/// Whether only spaces stand between the start of the line and byte `at`.
fn line_is_blank_before(source: &str, at: usize) -> bool {
    source[line_start(source, at)..at].trim().is_empty()
}

/// The column (in characters) of byte `at`, and the text of its line before it.
pub fn column(source: &str, at: usize) -> usize {
    let line_start = source[..at].rfind('\n').map_or(0, |i| i + 1);
    source[line_start..at].chars().count()
}

/// The byte just past the end of the line holding byte `at` (past its newline, if any).
pub fn end_of_line(source: &str, at: usize) -> usize {
    source[at..].find('\n').map_or(source.len(), |i| at + i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_follows_yaml_1_1() {
        for v in [
            "1.10",
            "1234",
            "yes",
            "on",
            "null",
            "~",
            "1e3",
            "0x1f",
            "2024-01-01",
            ".5",
            "1_000",
            "",
            " v1",
            "-rc",
            "a: b",
            "x #y",
        ] {
            assert!(needs_quotes(v), "{v:?} must be quoted");
        }
        for v in [
            "v1.10",
            "v1.2.3",
            "1.2.3",
            "main-abc1234",
            "latest",
            "sha256:abc",
            "ghcr.io/org/api:v1",
        ] {
            assert!(!needs_quotes(v), "{v:?} needs no quotes");
        }
        assert_eq!(render("1.10", Style::Plain), "\"1.10\"");
        assert_eq!(render("v1.5.0", Style::Plain), "v1.5.0");
        assert_eq!(render("it's", Style::Single), "'it''s'");
        assert_eq!(render("a\"b", Style::Double), "\"a\\\"b\"");
    }

    #[test]
    fn spans_cover_the_written_value() {
        let src = "a:\n  b: \"x\"  # c\n  c: 'y''s'   # d\n  d: z\nlist: [1, 2]\n";
        let y = Yaml::parse(src).unwrap();
        let a = y.documents[0].get("a").unwrap();
        let Node::Scalar { span, style, .. } = a.get("b").unwrap() else {
            panic!()
        };
        assert_eq!(&src[span.clone()], "\"x\"");
        assert_eq!(*style, Style::Double);
        let Node::Scalar { span, .. } = a.get("c").unwrap() else {
            panic!()
        };
        assert_eq!(&src[span.clone()], "'y''s'");
        let Node::Scalar { span, .. } = a.get("d").unwrap() else {
            panic!()
        };
        assert_eq!(&src[span.clone()], "z");
        assert!(matches!(
            y.documents[0].get("list"),
            Some(Node::Seq { flow: true, .. })
        ));
    }

    #[test]
    fn non_ascii_files_map_characters_to_bytes() {
        let src = "# café ☕\nimage:\n  tag: v1 # é\n";
        let y = Yaml::parse(src).unwrap();
        let tag = y.documents[0].get("image").unwrap().get("tag").unwrap();
        let Node::Scalar { span, .. } = tag else {
            panic!()
        };
        assert_eq!(&src[span.clone()], "v1");
        let mut patch = Patch::default();
        let path = NodePath {
            document: 0,
            steps: vec![Step::Value(0), Step::Value(0)],
        };
        patch.set_scalar(tag, path, "v2", "image.tag").unwrap();
        assert_eq!(
            patch.apply(src, &y).unwrap(),
            "# café ☕\nimage:\n  tag: v2 # é\n"
        );
    }

    #[test]
    fn alias_bombs_are_refused_not_expanded() {
        let mut src = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            src.push_str(&format!("a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n", p = i - 1));
        }
        src.push_str("tag: v1\n");
        let y = Yaml::parse(&src).unwrap();
        let mut patch = Patch::default();
        let tag = y.documents[0].get("tag").unwrap();
        patch
            .set_scalar(
                tag,
                NodePath {
                    document: 0,
                    steps: vec![Step::Value(10)],
                },
                "v2",
                "tag",
            )
            .unwrap();
        let err = patch.apply(&src, &y).unwrap_err();
        assert!(err.message.contains("too many nodes"), "{err}");
    }

    #[test]
    fn a_wrong_expectation_is_caught() {
        let src = "a: 1\nb: 2\n";
        let y = Yaml::parse(src).unwrap();
        let mut patch = Patch::default();
        // Claims to set `a` but splices `b`'s bytes.
        let b = y.documents[0].get("b").unwrap();
        patch
            .set_scalar(
                b,
                NodePath {
                    document: 0,
                    steps: vec![Step::Value(0)],
                },
                "3",
                "a",
            )
            .unwrap();
        let err = patch.apply(src, &y).unwrap_err();
        assert!(
            err.message.contains("more than the intended value"),
            "{err}"
        );
    }
}
