//! `fix` edits YAML and JSON as text: the fill-ins are JSON Patch `add`s of missing keys and
//! list items, so each is inserted at the right indentation under its parent, and every other
//! byte (comments, order, quoting, line endings) stays as written. Every result is read back and
//! must equal the patched JSON, else the edit is refused.

use serde_json::Value;

use crate::yaml::{self, Kind, Node, Style, Tree};

/// One `add` of the patch: a JSON pointer and its value.
pub struct Add<'a> {
    pub path: &'a str,
    pub value: &'a Value,
}

/// The syntax of the document being edited, and so of what is inserted into it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Syntax {
    /// Block style under block parents, plain scalars where they read back the same.
    Yaml,
    /// A JSON document stays JSON: quoted keys and strings, flow collections only.
    Json,
}

/// How inserted text is written.
struct Layout<'a> {
    newline: &'a str,
    syntax: Syntax,
}

/// Applies `adds` to one document's text. `expected` is the document's JSON with the patch
/// applied; the result reads back as exactly that (a JSON document as strict JSON).
pub fn apply(
    text: &str,
    original: &Value,
    adds: &[Add<'_>],
    expected: &Value,
    syntax: Syntax,
) -> Result<String, String> {
    let newline = if text.contains("\r\n") { "\r\n" } else { "\n" };
    let layout = Layout { newline, syntax };
    let mut text = text.to_owned();
    let mut current = original.clone();
    for add in adds {
        let mut tokens = pointer_tokens(add.path)?;
        // `-` appends: name the index the new item gets.
        if let Some((last, parent)) = tokens.split_last()
            && last == "-"
            && let Some(Value::Array(items)) = at(&current, parent)
        {
            let index = items.len().to_string();
            *tokens.last_mut().unwrap_or(&mut String::new()) = index;
        }
        let op: json_patch::PatchOperation = serde_json::from_value(
            serde_json::json!({"op": "add", "path": add.path, "value": add.value}),
        )
        .map_err(|e| e.to_string())?;
        json_patch::patch(&mut current, &[op]).map_err(|e| e.to_string())?;
        text = edit(&text, &tokens, &current, &layout)?;
    }
    let reread = match syntax {
        Syntax::Yaml => read(&text)?,
        Syntax::Json => serde_json::from_str(&text).map_err(|e| e.to_string())?,
    };
    if &reread != expected {
        return Err("the edited text does not read back as the patched document".into());
    }
    Ok(text)
}

fn read(text: &str) -> Result<Value, String> {
    let tree = yaml::parse(text)
        .map_err(|e| format!("line {}: {}", e.line, e.message))?
        .ok_or("the document is empty")?;
    yaml::to_json(&tree).map_err(|e| format!("line {}: {}", e.line, e.message))
}

fn pointer_tokens(path: &str) -> Result<Vec<String>, String> {
    if path.is_empty() {
        return Ok(Vec::new());
    }
    let Some(rest) = path.strip_prefix('/') else {
        return Err(format!("bad JSON pointer {path:?}"));
    };
    Ok(rest
        .split('/')
        .map(|t| t.replace("~1", "/").replace("~0", "~"))
        .collect())
}

fn at<'v>(value: &'v Value, tokens: &[String]) -> Option<&'v Value> {
    tokens.iter().try_fold(value, |v, t| match v {
        Value::Object(m) => m.get(t),
        Value::Array(a) => a.get(t.parse::<usize>().ok()?),
        _ => None,
    })
}

/// Where a step of the path leads in the text.
enum Step<'t> {
    /// An entry written in this mapping: (key, value).
    Entry(&'t Node, &'t Node),
    /// A key that comes from a merge (`<<`) into this mapping.
    Merged,
    Item(&'t Node),
}

/// One edit for one `add`, on the text as it is now; `patched` is the JSON after this add.
fn edit(
    text: &str,
    tokens: &[String],
    patched: &Value,
    layout: &Layout<'_>,
) -> Result<String, String> {
    let tree = yaml::parse(text)
        .map_err(|e| format!("line {}: {}", e.line, e.message))?
        .ok_or("the document is empty")?;
    let current = yaml::to_json(&tree).map_err(|e| e.message)?;
    let Some((last, parent_tokens)) = tokens.split_last() else {
        return Err("the patch replaces the whole document".into());
    };
    // Already so (an alias shares what an earlier add put in): nothing to write.
    if at(&current, tokens) == at(patched, tokens) && at(&current, tokens).is_some() {
        return Ok(text.to_owned());
    }
    // Walk down while each node is written here (not reached through an alias or merge).
    let mut node = &tree.root;
    let mut key_column = None;
    for (depth, token) in parent_tokens.iter().enumerate() {
        match step(&tree, node, token) {
            Some(Step::Entry(key, value)) if !matches!(value.kind, Kind::Alias(_)) => {
                key_column = Some(column(text, key.start).0);
                node = value;
            }
            Some(Step::Item(item)) if !matches!(item.kind, Kind::Alias(_)) => {
                key_column = None;
                node = item;
            }
            Some(Step::Entry(key, value)) => {
                // `key: *alias`: write the value out here instead.
                let new = at(patched, &tokens[..=depth]).ok_or("patched path missing")?;
                return Ok(replace_value(text, key, value, new, layout.syntax));
            }
            Some(Step::Item(item)) => {
                let new = at(patched, &tokens[..=depth]).ok_or("patched path missing")?;
                return Ok(splice(
                    text,
                    item.start,
                    item.end,
                    &flow(new, layout.syntax),
                ));
            }
            Some(Step::Merged) => {
                // The merged value stays shared; this mapping gets its own, complete copy.
                let new = at(patched, &tokens[..=depth]).ok_or("patched path missing")?;
                return insert_entry(text, node, None, token, new, layout);
            }
            None => return Err(format!("no {token:?} in the text")),
        }
    }
    match &node.kind {
        Kind::Map(_) => match step(&tree, node, last) {
            Some(Step::Entry(key, value)) => {
                let new = at(patched, tokens).ok_or("patched path missing")?;
                Ok(replace_value(text, key, value, new, layout.syntax))
            }
            _ => {
                let new = at(patched, tokens).ok_or("patched path missing")?;
                insert_entry(text, node, key_column, last, new, layout)
            }
        },
        Kind::Seq(items) => {
            let index = if last == "-" {
                items.len()
            } else {
                last.parse::<usize>()
                    .map_err(|_| format!("bad index {last:?}"))?
            };
            let value = at(patched, tokens).ok_or("patched path missing")?;
            insert_item(text, node, items, index, value, layout)
        }
        _ => Err("the parent of an addition is not a mapping or a list".into()),
    }
}

fn step<'t>(tree: &'t Tree, node: &'t Node, token: &str) -> Option<Step<'t>> {
    match &node.kind {
        Kind::Map(entries) => {
            // go-yaml fills one map in order: the last writer of the key wins.
            let mut found = None;
            for (key, value) in entries {
                if yaml::is_merge(key) {
                    if merged_has(tree, value, token) {
                        found = Some(Step::Merged);
                    }
                } else if yaml::key_of(tree, key).as_deref() == Some(token) {
                    found = Some(Step::Entry(key, value));
                }
            }
            found
        }
        Kind::Seq(items) => {
            let i: usize = token.parse().ok()?;
            items.get(i).map(Step::Item)
        }
        _ => None,
    }
}

fn merged_has(tree: &Tree, value: &Node, token: &str) -> bool {
    let value = deref(tree, value);
    match &value.kind {
        Kind::Map(_) => step(tree, value, token).is_some(),
        Kind::Seq(items) => items.iter().any(|i| merged_has(tree, i, token)),
        _ => false,
    }
}

fn deref<'t>(tree: &'t Tree, node: &'t Node) -> &'t Node {
    match node.kind {
        Kind::Alias(id) => tree.anchor(id).unwrap_or(node),
        _ => node,
    }
}

fn splice(text: &str, start: usize, end: usize, with: &str) -> String {
    format!("{}{with}{}", &text[..start], &text[end..])
}

/// The column of byte `offset` (in characters) and whether only spaces precede it on its line.
fn column(text: &str, offset: usize) -> (usize, bool) {
    let line_start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let before = &text[line_start..offset];
    (before.chars().count(), before.chars().all(|c| c == ' '))
}

/// The offset just after the line that holds `offset - 1` (a node's last character).
fn after_line(text: &str, end: usize, newline: &str) -> (usize, String) {
    if end > 0 && text[..end].ends_with('\n') {
        return (end, String::new());
    }
    match text[end..].find('\n') {
        Some(i) => (end + i + 1, String::new()),
        None => (text.len(), newline.to_owned()),
    }
}

fn insert_entry(
    text: &str,
    map: &Node,
    key_column: Option<usize>,
    key: &str,
    value: &Value,
    layout: &Layout<'_>,
) -> Result<String, String> {
    let Kind::Map(entries) = &map.kind else {
        return Err("not a mapping".into());
    };
    let newline = layout.newline;
    if map.flow {
        // `key: {}` alone at the end of its line becomes a block mapping.
        if layout.syntax == Syntax::Yaml
            && entries.is_empty()
            && let Some(key_column) = key_column
            && text[map.end..]
                .split('\n')
                .next()
                .is_some_and(|rest| rest.trim().is_empty())
            && text[..map.start].trim_end_matches(' ').ends_with(':')
        {
            let mut block = String::new();
            block.push_str(&scalar(key));
            block.push(':');
            let mut entry = String::new();
            let single =
                serde_json::Value::Object([(key.to_owned(), value.clone())].into_iter().collect());
            block_value(&single, key_column, newline, &mut entry);
            let colon = text[..map.start].trim_end_matches(' ').len();
            return Ok(splice(text, colon, map.end, &entry));
        }
        let entry = format!(
            "{}: {}",
            string(key, layout.syntax),
            flow(value, layout.syntax)
        );
        return Ok(insert_flow(text, map, &entry, layout));
    }
    let (first_key, _) = entries.first().ok_or("an empty block mapping")?;
    let (indent, _) = column(text, first_key.start);
    let last = entries.last().map_or(map.end, |(_, v)| v.end);
    let (at, prefix) = after_line(text, last, newline);
    let mut entry = String::new();
    entry.push_str(&prefix);
    entry.push_str(&" ".repeat(indent));
    entry.push_str(&scalar(key));
    entry.push(':');
    block_value(value, indent, newline, &mut entry);
    entry.push_str(newline);
    Ok(splice(text, at, at, &entry))
}

fn insert_item(
    text: &str,
    seq: &Node,
    items: &[Node],
    index: usize,
    value: &Value,
    layout: &Layout<'_>,
) -> Result<String, String> {
    let newline = layout.newline;
    if seq.flow {
        if index != items.len() {
            return Err("an insertion inside a flow list".into());
        }
        return Ok(insert_flow(text, seq, &flow(value, layout.syntax), layout));
    }
    let first = items.first().ok_or("an empty block list")?;
    let dash = dash_before(text, first.start).ok_or("a list item without its dash")?;
    let (indent, _) = column(text, dash);
    let mut item = String::new();
    item.push_str(&" ".repeat(indent));
    item.push('-');
    block_value(value, indent, newline, &mut item);
    item.push_str(newline);
    if index < items.len() {
        let dash = dash_before(text, items[index].start).ok_or("a list item without its dash")?;
        let (_, alone) = column(text, dash);
        if !alone {
            return Err("an insertion before a list item that shares its line".into());
        }
        let line_start = text[..dash].rfind('\n').map_or(0, |i| i + 1);
        return Ok(splice(text, line_start, line_start, &item));
    }
    let last = items.last().map_or(seq.end, |n| n.end);
    let (at, prefix) = after_line(text, last, newline);
    Ok(splice(text, at, at, &format!("{prefix}{item}")))
}

fn dash_before(text: &str, offset: usize) -> Option<usize> {
    let before = text[..offset].trim_end_matches(' ');
    before.ends_with('-').then(|| before.len() - 1)
}

/// Adds `entry` before the closing bracket of a flow collection: on a line of its own when the
/// last entry has one (pretty-printed JSON), else on the same line.
fn insert_flow(text: &str, node: &Node, entry: &str, layout: &Layout<'_>) -> String {
    let Layout { newline, syntax } = *layout;
    let close = node.end - 1;
    let before = text[node.start..close].trim_end();
    let at = node.start + before.len();
    let last_start = match &node.kind {
        Kind::Map(entries) => entries.last().map(|(key, _)| key.start),
        Kind::Seq(items) => items.last().map(|item| item.start),
        _ => None,
    };
    if let Some(start) = last_start
        && let (indent, true) = column(text, start)
    {
        let comma = if before.ends_with(',') { "" } else { "," };
        return splice(
            text,
            at,
            at,
            &format!("{comma}{newline}{}{entry}", " ".repeat(indent)),
        );
    }
    let empty = before.ends_with('{') || before.ends_with('[');
    let sep = match (empty, before.ends_with(',')) {
        (true, _) if syntax == Syntax::Json => "",
        (true, _) | (_, true) => " ",
        _ => ", ",
    };
    splice(text, at, at, &format!("{sep}{entry}"))
}

/// Writes `new` as the value of an existing entry (one that is null, or an alias).
fn replace_value(text: &str, key: &Node, value: &Node, new: &Value, syntax: Syntax) -> String {
    let colon = text[key.end..]
        .find(':')
        .map_or(key.end, |i| key.end + i + 1);
    if value.end <= colon {
        return splice(text, colon, colon, &format!(" {}", flow(new, syntax)));
    }
    let start = value.start.max(colon);
    let lead = if text[colon..start].is_empty() {
        " "
    } else {
        ""
    };
    splice(
        text,
        start,
        value.end,
        &format!("{lead}{}", flow(new, syntax)),
    )
}

/// A value after `key:` or `-` in block style, for a parent at column `indent`.
fn block_value(value: &Value, indent: usize, newline: &str, out: &mut String) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                out.push_str(newline);
                out.push_str(&" ".repeat(indent + 2));
                out.push_str(&scalar(k));
                out.push(':');
                block_value(v, indent + 2, newline, out);
            }
        }
        Value::Array(items) if !items.is_empty() => {
            for item in items {
                out.push_str(newline);
                out.push_str(&" ".repeat(indent + 2));
                out.push('-');
                match item {
                    // `- name: a` with the other keys under `name`.
                    Value::Object(map) if !map.is_empty() => {
                        for (i, (k, v)) in map.iter().enumerate() {
                            if i == 0 {
                                out.push(' ');
                            } else {
                                out.push_str(newline);
                                out.push_str(&" ".repeat(indent + 4));
                            }
                            out.push_str(&scalar(k));
                            out.push(':');
                            block_value(v, indent + 4, newline, out);
                        }
                    }
                    _ => block_value(item, indent + 2, newline, out),
                }
            }
        }
        other => {
            out.push(' ');
            out.push_str(&flow(other, Syntax::Yaml));
        }
    }
}

/// A whole document in block style (when the text cannot be edited in place).
pub fn render(value: &Value, newline: &str) -> String {
    let mut out = String::new();
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                out.push_str(&scalar(k));
                out.push(':');
                block_value(v, 0, newline, &mut out);
                out.push_str(newline);
            }
        }
        other => {
            out.push_str(&flow(other, Syntax::Yaml));
            out.push_str(newline);
        }
    }
    out
}

/// A value in flow style: JSON, with strings plain in YAML where that reads back as the same
/// string.
fn flow(value: &Value, syntax: Syntax) -> String {
    match value {
        Value::String(s) => string(s, syntax),
        Value::Object(map) => {
            let entries: Vec<String> = map
                .iter()
                .map(|(k, v)| format!("{}: {}", string(k, syntax), flow(v, syntax)))
                .collect();
            format!("{{{}}}", entries.join(", "))
        }
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(|v| flow(v, syntax)).collect();
            format!("[{}]", items.join(", "))
        }
        other => other.to_string(),
    }
}

/// A string or key: in YAML as [`scalar`] writes it, in JSON always quoted.
fn string(s: &str, syntax: Syntax) -> String {
    match syntax {
        Syntax::Yaml => scalar(s),
        Syntax::Json => Value::from(s).to_string(),
    }
}

/// A string plain when every YAML 1.1 reader takes it as that string, else double-quoted.
pub fn scalar(s: &str) -> String {
    if plain_safe(s) {
        s.to_owned()
    } else {
        serde_json::to_string(s).unwrap_or_else(|_| format!("{s:?}"))
    }
}

fn plain_safe(s: &str) -> bool {
    let Some(first) = s.chars().next() else {
        return false;
    };
    let charset = s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "_./-".contains(c));
    let start = first.is_ascii_alphabetic() || first == '_' || first == '/' || digits_unit(s);
    // go-yaml v2 reads 2001-12-14 as a string, other YAML 1.1 readers as a date.
    charset
        && start
        && !yaml::looks_like_timestamp(s)
        && yaml::resolve(s, Style::Plain, None) == Ok(yaml::Scalar::Str(s.into()))
}

/// Quantities such as `500m` and `1Gi`: a number and a unit, never a number or date alone.
fn digits_unit(s: &str) -> bool {
    let digits = s.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    !digits.is_empty()
        && digits.len() < s.len()
        && digits.chars().all(|c| c.is_ascii_digit() || c == '.')
        && digits.chars().filter(|&c| c == '.').count() <= 1
        && !s[digits.len()..].eq_ignore_ascii_case("e")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_keeps_strings_strings() {
        for s in [
            "0755",
            "yes",
            "on",
            "y",
            "2001-12-14",
            "8301",
            "1e3",
            "",
            "null",
            "~",
            ".5",
            "a b",
            "-x",
            "<<",
        ] {
            let text = format!("k: {}\n", scalar(s));
            assert_eq!(read(&text).unwrap()["k"], *s, "{text}");
        }
        assert_eq!(scalar("1Gi"), "1Gi");
        assert_eq!(scalar("500m"), "500m");
        assert_eq!(scalar("ray.io/cluster"), "ray.io/cluster");
    }
}
