//! YAML as kubectl reads it. kubectl splits a stream with k8s.io/apimachinery's
//! YAMLOrJSONDecoder and converts each YAML document with sigs.k8s.io/yaml, which is go-yaml v2:
//! YAML 1.1 scalars (`0755` is 493, `yes` and `on` are true), merge keys that override earlier
//! keys, timestamps kept as strings. This module mirrors that, and keeps every node's place in
//! the text so that `fix` can insert into the text instead of rewriting it.
//! `tests/yaml_oracle.rs` holds it to kubectl's own code.

use std::collections::{HashMap, HashSet};

use saphyr_parser::{Event, Parser, ScalarStyle, Span};
use serde_json::{Map, Value};

/// Nesting deeper than this is refused (the conversion recurses).
pub const MAX_DEPTH: usize = 128;
/// Values an alias-heavy document may expand to ("billion laughs").
const MAX_EXPANDED: usize = 1_000_000;
const YAML_TAG: &str = "tag:yaml.org,2002:";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    /// 1-based, within the text given.
    pub line: usize,
    pub message: String,
}

fn error(line: usize, message: impl Into<String>) -> Error {
    Error {
        line,
        message: message.into(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Plain,
    Quoted,
    Block,
}

#[derive(Debug, Clone)]
pub enum Kind {
    Scalar(String, Style),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
    Alias(usize),
}

/// A node with its byte range in the text. Block collections end where their last child ends.
#[derive(Debug, Clone)]
pub struct Node {
    pub kind: Kind,
    pub anchor: usize,
    pub tag: Option<String>,
    pub start: usize,
    pub end: usize,
    pub line: usize,
    pub flow: bool,
}

/// The first document of `text` (kubectl reads no further), or `None` when it has none.
pub struct Tree {
    pub root: Node,
    anchors: HashMap<usize, Node>,
}

impl Tree {
    pub fn anchor(&self, id: usize) -> Option<&Node> {
        self.anchors.get(&id)
    }
}

struct Frame {
    node: Node,
    key: Option<Node>,
}

/// Byte offsets in the chunk of the parser's character indices.
struct Offsets {
    /// Skipped byte order mark.
    bom: usize,
    body_len: usize,
    /// The byte offset of every character; empty when the body is ASCII.
    chars: Vec<usize>,
}

impl Offsets {
    fn new(text: &str) -> Offsets {
        // go-yaml skips a byte order mark at the start; offsets stay those of `text`.
        let bom = if text.starts_with('\u{feff}') { 3 } else { 0 };
        let body = &text[bom..];
        // The parser counts characters; byte offsets differ only where one is not ASCII.
        let chars = if body.is_ascii() {
            Vec::new()
        } else {
            body.char_indices()
                .map(|(i, _)| i + bom)
                .chain(std::iter::once(text.len()))
                .collect()
        };
        Offsets {
            bom,
            body_len: body.len(),
            chars,
        }
    }

    fn offset(&self, index: usize) -> usize {
        match self.chars.len() {
            0 => index.min(self.body_len) + self.bom,
            n => self.chars[index.min(n - 1)],
        }
    }

    fn span(&self, span: &Span) -> (usize, usize) {
        let start = self.offset(span.start.index());
        let end = self.offset(span.end.index());
        (start, end.max(start))
    }
}

/// Parses the first document of one chunk of a stream (as split by [`split`]).
pub fn parse(text: &str) -> Result<Option<Tree>, Error> {
    let offsets = Offsets::new(text);
    let body = &text[offsets.bom..];
    // go-yaml refuses a document end marker before any document.
    if let Some((index, line)) = body
        .lines()
        .enumerate()
        .find(|(_, l)| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        && line.trim_end() == "..."
    {
        return Err(error(index + 1, "did not find expected node content"));
    }
    let mut parser = Parser::new_from_str(body);
    let mut builder = TreeBuilder::default();
    while let Some(event) = parser.next_event() {
        let (event, span) = event.map_err(|e| error(e.marker().line(), e.info().to_owned()))?;
        let (start, end) = offsets.span(&span);
        let at = At {
            start,
            end,
            line: span.start.line(),
        };
        match event {
            Event::DocumentEnd => break,
            event => builder.take(text, event, at)?,
        }
    }
    Ok(builder.root.map(|root| Tree {
        root,
        anchors: builder.anchors,
    }))
}

/// Where an event stands in the chunk.
#[derive(Clone, Copy)]
struct At {
    start: usize,
    end: usize,
    line: usize,
}

impl At {
    fn node(self, kind: Kind, anchor: usize, tag: Option<String>, flow: bool) -> Node {
        Node {
            kind,
            anchor,
            tag,
            start: self.start,
            end: self.end,
            line: self.line,
            flow,
        }
    }
}

/// Builds the tree from the parser's events: open collections on a stack, anchors by id.
#[derive(Default)]
struct TreeBuilder {
    stack: Vec<Frame>,
    anchors: HashMap<usize, Node>,
    root: Option<Node>,
}

impl TreeBuilder {
    fn take(&mut self, text: &str, event: Event<'_>, at: At) -> Result<(), Error> {
        let complete = match event {
            Event::DocumentStart(_) | Event::DocumentEnd => return Ok(()),
            Event::StreamStart | Event::StreamEnd | Event::Nothing => return Ok(()),
            Event::Scalar(value, style, anchor, tag) => {
                let style = match style {
                    ScalarStyle::Plain => Style::Plain,
                    ScalarStyle::SingleQuoted | ScalarStyle::DoubleQuoted => Style::Quoted,
                    ScalarStyle::Literal | ScalarStyle::Folded => Style::Block,
                };
                let tag = tag.map(|t| full_tag(&t.handle, &t.suffix));
                at.node(Kind::Scalar(value.into_owned(), style), anchor, tag, false)
            }
            Event::Alias(id) => {
                if !self.anchors.contains_key(&id) {
                    return Err(error(
                        at.line,
                        "an alias refers to an unknown anchor or to itself",
                    ));
                }
                at.node(Kind::Alias(id), 0, None, false)
            }
            Event::SequenceStart(anchor, tag) => {
                return self.open(text, Kind::Seq(Vec::new()), anchor, tag, at);
            }
            Event::MappingStart(anchor, tag) => {
                return self.open(text, Kind::Map(Vec::new()), anchor, tag, at);
            }
            Event::SequenceEnd | Event::MappingEnd => self.close(at)?,
        };
        self.attach(complete);
        Ok(())
    }

    fn open(
        &mut self,
        text: &str,
        kind: Kind,
        anchor: usize,
        tag: Option<std::borrow::Cow<'_, saphyr_parser::Tag>>,
        at: At,
    ) -> Result<(), Error> {
        if self.stack.len() >= MAX_DEPTH {
            return Err(error(
                at.line,
                format!("nested deeper than {MAX_DEPTH} levels"),
            ));
        }
        let flow = matches!(text[at.start..].chars().next(), Some('[' | '{'))
            && text[at.start..at.end].trim_end().len() == 1;
        let tag = tag.map(|t| full_tag(&t.handle, &t.suffix));
        self.stack.push(Frame {
            node: at.node(kind, anchor, tag, flow),
            key: None,
        });
        Ok(())
    }

    fn close(&mut self, at: At) -> Result<Node, Error> {
        let Some(frame) = self.stack.pop() else {
            return Err(error(at.line, "unbalanced collection"));
        };
        let mut done = frame.node;
        done.end = if done.flow {
            at.end
        } else {
            last_end(&done).unwrap_or(done.start)
        };
        Ok(done)
    }

    fn attach(&mut self, complete: Node) {
        if complete.anchor != 0 {
            self.anchors.insert(complete.anchor, complete.clone());
        }
        match self.stack.last_mut() {
            None => self.root = Some(complete),
            Some(frame) => match &mut frame.node.kind {
                Kind::Seq(items) => items.push(complete),
                Kind::Map(entries) => match frame.key.take() {
                    None => frame.key = Some(complete),
                    Some(key) => entries.push((key, complete)),
                },
                _ => unreachable!("only collections are pushed"),
            },
        }
    }
}

fn last_end(node: &Node) -> Option<usize> {
    match &node.kind {
        Kind::Seq(items) => items.last().map(|n| n.end),
        Kind::Map(entries) => entries.last().map(|(_, v)| v.end),
        _ => Some(node.end),
    }
}

fn full_tag(handle: &str, suffix: &str) -> String {
    if handle == "!!" {
        format!("{YAML_TAG}{suffix}")
    } else {
        format!("{handle}{suffix}")
    }
}

/// A scalar as go-yaml v2 resolves it into an `interface{}`.
/// A string is borrowed when it is the scalar's own text.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar<'a> {
    Null,
    Bool(bool),
    Int(i64),
    Uint(u64),
    Float(f64),
    Str(std::borrow::Cow<'a, str>),
}

/// go-yaml v2's `resolve` for a scalar with the given tag (full form) and style.
pub fn resolve<'a>(value: &'a str, style: Style, tag: Option<&str>) -> Result<Scalar<'a>, String> {
    let tag = match tag {
        None if style != Style::Plain => return Ok(Scalar::Str(value.into())),
        None => "",
        Some(t) => t,
    };
    let short = tag.strip_prefix(YAML_TAG);
    match short {
        None if !tag.is_empty() => return Ok(Scalar::Str(value.into())),
        Some("binary") => {
            use base64::Engine as _;
            let clean: String = value.chars().filter(|c| !c.is_whitespace()).collect();
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(clean)
                .map_err(|_| "!!binary value contains invalid base64 data".to_owned())?;
            return Ok(Scalar::Str(
                String::from_utf8_lossy(&bytes).into_owned().into(),
            ));
        }
        Some("str") => return Ok(Scalar::Str(value.into())),
        Some("bool" | "int" | "float" | "null" | "timestamp") | None => {}
        Some(_) => return Ok(Scalar::Str(value.into())),
    }
    let (rtag, out) = resolve_plain(value, short.is_none() || short == Some("timestamp"));
    match (short, rtag) {
        (None, _) => Ok(out),
        (Some(want), got) if want == got => Ok(out),
        (Some("float"), "int") => Ok(match out {
            Scalar::Int(i) => Scalar::Float(i as f64),
            Scalar::Uint(u) => Scalar::Float(u as f64),
            other => other,
        }),
        (Some(want), got) => Err(format!("cannot decode !!{got} `{value}` as a !!{want}")),
    }
}

fn resolve_plain(value: &str, timestamps: bool) -> (&'static str, Scalar<'_>) {
    let string = || ("str", Scalar::Str(value.into()));
    let Some(first) = value.bytes().next() else {
        return ("null", Scalar::Null);
    };
    match value {
        "y" | "Y" | "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => {
            return ("bool", Scalar::Bool(true));
        }
        "n" | "N" | "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => {
            return ("bool", Scalar::Bool(false));
        }
        "~" | "null" | "Null" | "NULL" => return ("null", Scalar::Null),
        ".nan" | ".NaN" | ".NAN" => return ("float", Scalar::Float(f64::NAN)),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return ("float", Scalar::Float(f64::INFINITY));
        }
        "-.inf" | "-.Inf" | "-.INF" => return ("float", Scalar::Float(f64::NEG_INFINITY)),
        "<<" => return ("merge", Scalar::Str(value.into())),
        _ => {}
    }
    match first {
        b'.' => match go_parse_float(value) {
            Some(f) => ("float", Scalar::Float(f)),
            None => string(),
        },
        b'0'..=b'9' | b'+' | b'-' => {
            if timestamps && looks_like_timestamp(value) {
                return ("timestamp", Scalar::Str(value.into()));
            }
            let plain: std::borrow::Cow<str> = if value.contains('_') {
                value
                    .chars()
                    .filter(|&c| c != '_')
                    .collect::<String>()
                    .into()
            } else {
                value.into()
            };
            if let Some(i) = go_parse_int(&plain) {
                return ("int", Scalar::Int(i));
            }
            if let Some(u) = go_parse_uint(&plain) {
                return ("int", Scalar::Uint(u));
            }
            if yaml_style_float(&plain)
                && let Some(f) = go_parse_float(&plain)
            {
                return ("float", Scalar::Float(f));
            }
            if let Some(digits) = plain.strip_prefix("0b")
                && let Some(u) = parse_digits(digits, 2)
            {
                return ("int", Scalar::Uint(u));
            }
            string()
        }
        _ => string(),
    }
}

/// `strconv.ParseUint(s, 0, 64)`: 0x, 0o, 0b and a leading 0 (octal) prefixes, no sign.
fn go_parse_uint(s: &str) -> Option<u64> {
    let bytes = s.as_bytes();
    let (digits, base) = match bytes {
        [] => return None,
        [b'0', p, _, ..] if p.eq_ignore_ascii_case(&b'x') => (&s[2..], 16),
        [b'0', p, _, ..] if p.eq_ignore_ascii_case(&b'o') => (&s[2..], 8),
        [b'0', p, _, ..] if p.eq_ignore_ascii_case(&b'b') => (&s[2..], 2),
        [b'0', ..] => (&s[1..], 8),
        _ => (s, 10),
    };
    if digits.is_empty() {
        return (base == 8).then_some(0);
    }
    parse_digits(digits, base)
}

fn parse_digits(digits: &str, base: u32) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    let mut n: u64 = 0;
    for c in digits.chars() {
        n = n
            .checked_mul(u64::from(base))?
            .checked_add(u64::from(c.to_digit(base)?))?;
    }
    Some(n)
}

/// `strconv.ParseInt(s, 0, 64)`.
fn go_parse_int(s: &str) -> Option<i64> {
    let (negative, rest) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let magnitude = go_parse_uint(rest)?;
    if negative {
        if magnitude <= i64::MAX as u64 + 1 {
            Some((magnitude as i128).wrapping_neg() as i64)
        } else {
            None
        }
    } else {
        i64::try_from(magnitude).ok()
    }
}

/// `strconv.ParseFloat(s, 64)` for the decimal forms go-yaml lets through; out of range fails.
fn go_parse_float(s: &str) -> Option<f64> {
    let body = s.strip_prefix(['+', '-']).unwrap_or(s);
    if !body.starts_with(|c: char| c.is_ascii_digit() || c == '.') {
        return None;
    }
    if !body
        .chars()
        .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-'))
    {
        return None;
    }
    let f: f64 = s.parse().ok()?;
    f.is_finite().then_some(f)
}

/// `^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$`
fn yaml_style_float(s: &str) -> bool {
    let s = s.strip_prefix(['+', '-']).unwrap_or(s);
    let (mantissa, exponent) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    let mantissa_ok = match mantissa.split_once('.') {
        Some(("", frac)) => digits(frac),
        Some((int, frac)) => digits(int) && (frac.is_empty() || digits(frac)),
        None => digits(mantissa),
    };
    mantissa_ok && exponent.is_none_or(|e| digits(e.strip_prefix(['+', '-']).unwrap_or(e)))
}

/// go-yaml's timestamp formats (`2006-1-2`, with an optional time), checked loosely: every
/// string that could be one resolves to the same string anyway; this only matters for tags.
pub fn looks_like_timestamp(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 8 && b[..4].iter().all(u8::is_ascii_digit) && b[4] == b'-' && {
        let date_end = s.find([' ', 't', 'T']).unwrap_or(s.len());
        let mut parts = s[5..date_end].split('-');
        let ok = |p: Option<&str>| {
            p.is_some_and(|p| (1..=2).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()))
        };
        ok(parts.next()) && ok(parts.next()) && parts.next().is_none()
    }
}

/// How a JSON value of this YAML scalar is written by Go's encoding/json.
fn scalar_json(scalar: Scalar<'_>) -> Result<Value, String> {
    Ok(match scalar {
        Scalar::Null => Value::Null,
        Scalar::Bool(b) => Value::Bool(b),
        Scalar::Int(i) => Value::from(i),
        Scalar::Uint(u) => Value::from(u),
        Scalar::Str(s) => Value::String(s.into_owned()),
        Scalar::Float(f) => {
            if !f.is_finite() {
                return Err(format!("json: unsupported value: {f}"));
            }
            // Go writes integral floats without a fraction (1.0 is `1`), so JSON readers see an
            // integer; read the number back from the same text.
            let abs = f.abs();
            let text = if abs == 0.0 || (1e-6..1e21).contains(&abs) {
                format!("{f}")
            } else {
                format!("{f:e}")
            };
            serde_json::from_str(&text).map_err(|e| e.to_string())?
        }
    })
}

/// A map key as sigs.k8s.io/yaml turns it into a JSON object key.
fn key_string(scalar: Scalar<'_>) -> Result<String, String> {
    Ok(match scalar {
        Scalar::Str(s) => s.into_owned(),
        Scalar::Int(i) => i.to_string(),
        Scalar::Bool(b) => b.to_string(),
        Scalar::Float(f) => go_float32_g(f),
        Scalar::Uint(u) => return Err(format!("unsupported map key of type: uint64, key: {u}")),
        Scalar::Null => return Err("unsupported map key of type: <nil>".into()),
    })
}

/// `strconv.FormatFloat(f, 'g', -1, 32)` with go-yaml's names for the infinities.
fn go_float32_g(f: f64) -> String {
    if f.is_nan() {
        return ".nan".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { ".inf" } else { "-.inf" }.into();
    }
    let x = f as f32;
    if x == 0.0 {
        return if x.is_sign_negative() { "-0" } else { "0" }.into();
    }
    let sci = format!("{x:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    // Shortest 'g' switches to an exponent outside [1e-4, 1e6).
    if !(-4..6).contains(&exp) {
        return go_exponent(mantissa, exp);
    }
    format!("{x}")
}

fn go_exponent(mantissa: &str, exp: i32) -> String {
    let sign = if exp < 0 { '-' } else { '+' };
    format!("{mantissa}e{sign}{:02}", exp.abs())
}

/// Converts a parsed document to the JSON kubectl would send.
pub fn to_json(tree: &Tree) -> Result<Value, Error> {
    Converter::new(&tree.anchors).value(&mut tree.root.clone())
}

/// [`to_json`], moving the document's strings into the JSON instead of copying them.
pub fn into_json(tree: Tree) -> Result<Value, Error> {
    let Tree { mut root, anchors } = tree;
    Converter::new(&anchors).value(&mut root)
}

/// Converts the document's own nodes by consuming their strings; the nodes an alias stands
/// for are shared by every alias, so each use converts a copy.
struct Converter<'t> {
    anchors: &'t HashMap<usize, Node>,
    expanded: usize,
    depth: usize,
}

impl<'t> Converter<'t> {
    fn new(anchors: &'t HashMap<usize, Node>) -> Converter<'t> {
        Converter {
            anchors,
            expanded: 0,
            depth: 0,
        }
    }

    fn deref<'n>(&'n self, node: &'n Node) -> &'n Node {
        match node.kind {
            Kind::Alias(id) => self.anchors.get(&id).unwrap_or(node),
            _ => node,
        }
    }

    /// The node itself, or a copy of the one its alias stands for.
    fn target<'n>(&self, node: &'n mut Node, copy: &'n mut Option<Node>) -> &'n mut Node {
        if let Kind::Alias(id) = node.kind
            && let Some(anchored) = self.anchors.get(&id)
        {
            return copy.insert(anchored.clone());
        }
        node
    }

    fn value(&mut self, node: &mut Node) -> Result<Value, Error> {
        self.expanded += 1;
        if self.expanded > MAX_EXPANDED {
            return Err(error(node.line, "document contains excessive aliasing"));
        }
        let mut copy = None;
        let node = self.target(node, &mut copy);
        self.depth += 1;
        if self.depth > MAX_DEPTH * 4 {
            return Err(error(node.line, "aliases nest too deeply"));
        }
        let line = node.line;
        let out = match &mut node.kind {
            Kind::Scalar(text, style) => {
                match resolve(text, *style, node.tag.as_deref()) {
                    Err(m) => Err(error(line, m)),
                    // The scalar's own text: moved, not copied.
                    Ok(Scalar::Str(std::borrow::Cow::Borrowed(_))) => {
                        Ok(Value::String(std::mem::take(text)))
                    }
                    Ok(scalar) => scalar_json(scalar).map_err(|m| error(line, m)),
                }
            }
            Kind::Seq(items) => items
                .iter_mut()
                .map(|item| self.value(item))
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Array),
            Kind::Map(_) => {
                let mut map = Map::new();
                self.merge_into(node, &mut map, true)?;
                Ok(Value::Object(map))
            }
            Kind::Alias(_) => Err(error(line, "an alias refers to an alias")),
        };
        self.depth -= 1;
        out
    }

    /// go-yaml v2 fills one Go map in document order: a merge overwrites keys set before it.
    fn merge_into(
        &mut self,
        node: &mut Node,
        map: &mut Map<String, Value>,
        own: bool,
    ) -> Result<(), Error> {
        let line = node.line;
        let Kind::Map(entries) = &mut node.kind else {
            return Err(error(
                line,
                "map merge requires map or sequence of maps as the value",
            ));
        };
        for index in 0..entries.len() {
            let (key, value) = &mut entries[index];
            if is_merge(key) {
                let mut copy = None;
                let value = self.target(value, &mut copy);
                match &mut value.kind {
                    Kind::Map(_) => self.merge_into(value, map, false)?,
                    Kind::Seq(items) => {
                        for item in items.iter_mut().rev() {
                            let mut copy = None;
                            let item = self.target(item, &mut copy);
                            self.merge_into(item, map, false)?;
                        }
                    }
                    _ => {
                        return Err(error(
                            value.line,
                            "map merge requires map or sequence of maps as the value",
                        ));
                    }
                }
                continue;
            }
            let name = self.key(key)?;
            let key_line = key.line;
            let value = self.value(value)?;
            // A key already in the map came from a merge (which this one overrides) or is a
            // duplicate: only then are the earlier keys looked at again.
            if map.insert(name, value).is_some() && own {
                let name = self.key(&entries[index].0)?;
                if let Some(first) = self.earlier_key(&entries[..index], &name)? {
                    return Err(error(
                        key_line,
                        format!(
                            "duplicate key {name:?} (first on line {first}): kubectl keeps the \
                             last and kustomize refuses the file; remove one"
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The line of the first of `entries` (not merges) whose key is `name`.
    fn earlier_key(&self, entries: &[(Node, Node)], name: &str) -> Result<Option<usize>, Error> {
        for (key, _) in entries {
            if !is_merge(key) && self.key(key)? == name {
                return Ok(Some(key.line));
            }
        }
        Ok(None)
    }

    fn key(&self, key: &Node) -> Result<String, Error> {
        let key = self.deref(key);
        match &key.kind {
            Kind::Scalar(text, style) => resolve(text, *style, key.tag.as_deref())
                .and_then(key_string)
                .map_err(|m| error(key.line, m)),
            _ => Err(error(key.line, "invalid map key: a collection")),
        }
    }
}

/// Whether a mapping key is go-yaml's merge key `<<` (plain, or tagged `!!merge`).
pub fn is_merge(key: &Node) -> bool {
    matches!(&key.kind, Kind::Scalar(v, style) if v == "<<"
        && (key.tag.is_none() && *style == Style::Plain
            || key.tag.as_deref() == Some("tag:yaml.org,2002:merge")))
}

/// The key of a mapping entry as a JSON key, when it is a plain enough scalar.
pub fn key_of(tree: &Tree, key: &Node) -> Option<String> {
    let key = match key.kind {
        Kind::Alias(id) => tree.anchor(id)?,
        _ => key,
    };
    match &key.kind {
        Kind::Scalar(text, style) => resolve(text, *style, key.tag.as_deref())
            .and_then(key_string)
            .ok(),
        _ => None,
    }
}

/// Anchors that some alias refers to.
pub fn referenced_anchors(node: &Node, out: &mut HashSet<usize>) {
    match &node.kind {
        Kind::Alias(id) => {
            out.insert(*id);
        }
        Kind::Seq(items) => items.iter().for_each(|n| referenced_anchors(n, out)),
        Kind::Map(entries) => entries.iter().for_each(|(k, v)| {
            referenced_anchors(k, out);
            referenced_anchors(v, out);
        }),
        Kind::Scalar(..) => {}
    }
}

/// One document of a stream as kubectl's decoder returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// Byte range in the stream.
    pub start: usize,
    pub end: usize,
    /// 1-based line of `start`.
    pub line: usize,
    pub json: bool,
}

/// Splits a stream as k8s.io/apimachinery's YAMLOrJSONDecoder does: a stream whose first
/// non-space character is `{` is read as JSON values; after at most one of them it falls back
/// to YAML documents separated by `---` lines (whatever follows a separator must be a comment).
pub fn split(text: &str) -> Result<Vec<Chunk>, Error> {
    let mut lines = LineCounter::new(text);
    let mut chunks = Vec::new();
    let yaml_from = if text.trim_start().starts_with('{') {
        match split_json(text, &mut lines, &mut chunks)? {
            Some(consumed) => after_json(text, consumed),
            None => return Ok(chunks),
        }
    } else {
        0
    };
    split_yaml(text, yaml_from, &mut lines, &mut chunks)?;
    Ok(chunks)
}

/// Counts lines up to offsets that come in order: from the previous offset on, not from
/// the start.
struct LineCounter<'t> {
    text: &'t str,
    counted: (usize, usize),
}

impl<'t> LineCounter<'t> {
    fn new(text: &'t str) -> LineCounter<'t> {
        LineCounter {
            text,
            counted: (0, 1),
        }
    }

    fn line_of(&mut self, offset: usize) -> usize {
        let (from, line) = self.counted;
        let line = line
            + self.text.as_bytes()[from..offset]
                .iter()
                .filter(|&&b| b == b'\n')
                .count();
        self.counted = (offset, line);
        line
    }
}

/// The JSON values at the start of `text`, as the decoder reads a stream of them: `None`
/// when they are all there is, else how far they reach.
fn split_json(
    text: &str,
    lines: &mut LineCounter<'_>,
    chunks: &mut Vec<Chunk>,
) -> Result<Option<usize>, Error> {
    let mut stream =
        serde_json::Deserializer::from_str(text).into_iter::<&serde_json::value::RawValue>();
    let mut consumed = 0;
    let mut count = 0;
    let failure = loop {
        match stream.next() {
            None => return Ok(None),
            Some(Ok(raw)) => {
                let end = stream.byte_offset();
                let start = end - raw.get().len();
                chunks.push(Chunk {
                    start,
                    end,
                    line: lines.line_of(start),
                    json: true,
                });
                consumed = end;
                count += 1;
            }
            Some(Err(e)) => break e,
        }
    };
    if count > 1 {
        return Err(error(failure.line(), format!("invalid JSON: {failure}")));
    }
    Ok(Some(consumed))
}

/// Where YAML starts after JSON values: like the decoder, whitespace is eaten up to and
/// including the first newline.
fn after_json(text: &str, consumed: usize) -> usize {
    let mut yaml_from = consumed;
    for (i, c) in text[consumed..].char_indices() {
        if c == '\n' {
            return consumed + i + 1;
        }
        if !c.is_whitespace() {
            return consumed + i;
        }
        yaml_from = consumed + i + c.len_utf8();
    }
    yaml_from
}

/// The YAML documents of `text` from `yaml_from` on, split at `---` lines.
fn split_yaml(
    text: &str,
    yaml_from: usize,
    lines: &mut LineCounter<'_>,
    chunks: &mut Vec<Chunk>,
) -> Result<(), Error> {
    // Only lines that start with `---` matter: look for them, not at every line.
    let mut start = yaml_from;
    let rest = &text[yaml_from..];
    let separators = rest
        .starts_with("---")
        .then_some(0)
        .into_iter()
        .chain(rest.match_indices("\n---").map(|(i, _)| i + 1));
    for at in separators {
        let offset = yaml_from + at;
        let line_end = text[offset..]
            .find('\n')
            .map_or(text.len(), |i| offset + i + 1);
        let rest = text[offset + 3..line_end].trim();
        if !rest.is_empty() && !rest.starts_with('#') {
            return Err(error(
                lines.line_of(offset),
                format!("invalid YAML document separator: {rest}"),
            ));
        }
        if offset > start {
            chunks.push(Chunk {
                start,
                end: offset,
                line: lines.line_of(start),
                json: false,
            });
        }
        start = line_end;
    }
    if text.len() > start {
        chunks.push(Chunk {
            start,
            end: text.len(),
            line: lines.line_of(start),
            json: false,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(text: &str) -> Value {
        to_json(&parse(text).unwrap().unwrap()).unwrap()
    }

    #[test]
    fn yaml_1_1_scalars_as_go_yaml_v2() {
        let v = json(
            "a: 0755\nb: yes\nc: on\nd: 2001-12-14\ne: 1.0\nf: 0x1F\ng: 1_000\nh: '0755'\ni: 08\nj: ~\nk: -0b11\n",
        );
        assert_eq!(v["a"], 493);
        assert_eq!(v["b"], true);
        assert_eq!(v["c"], true);
        assert_eq!(v["d"], "2001-12-14");
        assert_eq!(v["e"], 1);
        assert_eq!(v["f"], 31);
        assert_eq!(v["g"], 1000);
        assert_eq!(v["h"], "0755");
        assert_eq!(v["i"], 8);
        assert_eq!(v["j"], Value::Null);
        assert_eq!(v["k"], -3);
    }

    #[test]
    fn merges_override_earlier_keys_and_duplicates_are_refused() {
        let v = json("base: &b {x: 1, w: 2}\nm:\n  x: 0\n  <<: *b\n  z: 3\n");
        assert_eq!(v["m"], serde_json::json!({"x": 1, "w": 2, "z": 3}));
        let e = to_json(&parse("a: 1\nb: 2\na: 3\n").unwrap().unwrap()).unwrap_err();
        assert_eq!(e.line, 3);
        assert!(
            e.message.contains("duplicate key \"a\" (first on line 1)"),
            "{}",
            e.message
        );
    }

    #[test]
    fn streams_split_like_kubectl() {
        let chunks = split("{\"a\": 1}\n---\n{\"b\": 2}\n").unwrap();
        assert_eq!(chunks.len(), 2);
        assert!(chunks[0].json && !chunks[1].json);
        assert!(
            split("a: 1\n--- x\n")
                .unwrap_err()
                .message
                .contains("separator")
        );
        assert_eq!(split("---\n---\na: 1\n").unwrap().len(), 1);
    }

    #[test]
    fn float_keys_as_go_formats_them() {
        assert_eq!(go_float32_g(1.5), "1.5");
        assert_eq!(go_float32_g(1000.0), "1000");
        assert_eq!(go_float32_g(1e6), "1e+06");
        assert_eq!(go_float32_g(0.5), "0.5");
    }
}
