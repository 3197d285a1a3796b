//! Reading manifests: files, folders and stdin; multi-document YAML and JSON, with the line
//! each document starts on so that every finding and error can name it.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}: {message}")]
    Parse {
        path: String,
        line: usize,
        message: String,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Yaml,
    Json,
}

/// Where a document came from: `file:line`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub file: String,
    pub line: usize,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// One document of a file, with its original text kept byte for byte.
#[derive(Debug, Clone)]
pub struct Document {
    pub source: Source,
    pub text: String,
    /// Where `text` is in the file's text; separators and the rest lie outside.
    pub range: std::ops::Range<usize>,
    pub format: Format,
    /// `None` for a document with nothing but comments or whitespace.
    pub value: Option<Value>,
}

#[derive(Debug, Clone)]
pub struct ManifestFile {
    /// `None` for standard input.
    pub path: Option<PathBuf>,
    pub display: String,
    /// The whole text as read.
    pub text: String,
    /// The first document's format.
    pub format: Format,
    pub documents: Vec<Document>,
}

/// Expands the arguments of `-f`: files as given, folders recursively (`*.yaml`, `*.yml`,
/// `*.json`, sorted), and `-` for standard input.
pub fn expand(args: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for arg in args {
        if arg.as_os_str() == "-" {
            out.push(arg.clone());
            continue;
        }
        let meta = std::fs::metadata(arg).map_err(|source| Error::Read {
            path: arg.display().to_string(),
            source,
        })?;
        if meta.is_dir() {
            walk(arg, &mut out)?;
        } else {
            out.push(arg.clone());
        }
    }
    Ok(out)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let read_error = |source| Error::Read {
        path: dir.display().to_string(),
        source,
    };
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(read_error)?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<_>>()
        .map_err(read_error)?;
    entries.sort();
    for path in entries {
        if path.is_dir() {
            walk(&path, out)?;
        } else if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml" | "json")
        ) {
            out.push(path);
        }
    }
    Ok(())
}

/// Reads and parses one file (or stdin for `-`).
pub fn read(path: &Path) -> Result<ManifestFile> {
    let (display, text, file_path) = if path.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|source| Error::Read {
                path: "<stdin>".into(),
                source,
            })?;
        ("<stdin>".to_owned(), text, None)
    } else {
        let display = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: display.clone(),
            source,
        })?;
        (display, text, Some(path.to_path_buf()))
    };
    let mut file = parse_owned(&display, text)?;
    file.path = file_path;
    Ok(file)
}

/// Parses manifest text into the documents kubectl would read from it (see [`crate::yaml`]).
pub fn parse(display: &str, text: &str) -> Result<ManifestFile> {
    parse_owned(display, text.to_owned())
}

/// [`parse`], keeping `text` as the file's text.
pub fn parse_owned(display: &str, text: String) -> Result<ManifestFile> {
    let parse_error = |line: usize, message: String| Error::Parse {
        path: display.to_owned(),
        line,
        message,
    };
    let chunks = crate::yaml::split(&text)
        .map_err(|e| parse_error(e.line, format!("invalid YAML: {}", e.message)))?;
    let mut documents = Vec::new();
    for chunk in chunks {
        let body = &text[chunk.start..chunk.end];
        let value = if chunk.json {
            let value: Value = serde_json::from_str(body).map_err(|e| {
                parse_error(chunk.line + e.line() - 1, format!("invalid JSON: {e}"))
            })?;
            Some(value)
        } else {
            parse_yaml(body).map_err(|(line, message)| {
                // kubectl tries a stream that starts with `{` as JSON first, and names the
                // JSON error when YAML cannot read it either.
                match json_error(&text) {
                    Some((json_line, json_message)) if chunk.start == 0 => {
                        parse_error(json_line, json_message)
                    }
                    _ => parse_error(chunk.line + line - 1, message),
                }
            })?
        };
        let line = chunk.line
            + if chunk.json {
                0
            } else {
                first_content_line(body)
            };
        documents.push(Document {
            source: Source {
                file: display.to_owned(),
                line,
            },
            text: body.to_owned(),
            range: chunk.start..chunk.end,
            format: if chunk.json {
                Format::Json
            } else {
                Format::Yaml
            },
            value: value.filter(|v| !v.is_null()),
        });
    }
    let format = match documents.first() {
        Some(d) => d.format,
        None if text.trim_start().starts_with('{') => Format::Json,
        None => Format::Yaml,
    };
    Ok(ManifestFile {
        path: None,
        display: display.to_owned(),
        text,
        format,
        documents,
    })
}

/// The first JSON error of a stream that starts like JSON.
fn json_error(text: &str) -> Option<(usize, String)> {
    if !text.trim_start().starts_with('{') {
        return None;
    }
    serde_json::Deserializer::from_str(text)
        .into_iter::<serde::de::IgnoredAny>()
        .find_map(Result::err)
        .map(|e| (e.line(), format!("invalid JSON: {e}")))
}

/// One YAML document's JSON, or the line (within `body`) and message of what is wrong.
pub fn parse_yaml(body: &str) -> std::result::Result<Option<Value>, (usize, String)> {
    if let Some(offset) = too_deep(body) {
        return Err((
            body[..offset].matches('\n').count() + 1,
            format!("invalid YAML: nested deeper than {MAX_NESTING} levels"),
        ));
    }
    let invalid = |e: crate::yaml::Error| (e.line.max(1), format!("invalid YAML: {}", e.message));
    match crate::yaml::parse(body).map_err(invalid)? {
        None => Ok(None),
        Some(tree) => crate::yaml::into_json(tree).map(Some).map_err(invalid),
    }
}

/// YAML nested deeper than this is refused before parsing. The deserialiser refuses more than
/// 128 levels anyway, but only after the scanner has read the whole document, and the
/// scanner's work grows with the square of the flow nesting: 100,000 levels of `[` or `{a: `
/// would take minutes.
pub const MAX_NESTING: usize = 128;

/// Where flow collections (`[`, `{`) first nest deeper than [`MAX_NESTING`], as a byte offset.
/// Brackets in quoted scalars, block scalars and comments do not count. A quick look, not a
/// YAML parser: it catches deep nesting as written, not every contrivance to hide it.
pub fn too_deep(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    // Fewer brackets than levels cannot nest too deep: most documents end here.
    if bytes.iter().filter(|&&b| b == b'[' || b == b'{').count() <= MAX_NESTING {
        return None;
    }
    let mut depth = 0usize;
    // The last byte that was not a space or tab: a quote or bracket right after one of these
    // (or at the start of a line) starts a scalar or a collection.
    let mut previous = b'\n';
    // Whether a space or tab came after `previous`.
    let mut gap = false;
    let mut line_indent = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        let byte = bytes[i];
        let token_start = match previous {
            b'\n' => true,
            b'-' | b'?' | b':' if gap => true,
            b'[' | b'{' | b',' | b':' => depth > 0,
            _ => false,
        };
        gap = false;
        match byte {
            b'\n' => {
                line_indent = bytes[i + 1..].iter().take_while(|&&b| b == b' ').count();
            }
            b' ' | b'\t' | b'\r' => {
                gap = true;
                i += 1;
                continue;
            }
            b'#' if matches!(
                bytes.get(i.wrapping_sub(1)),
                None | Some(b' ' | b'\t' | b'\n')
            ) =>
            {
                i = memchr(b'\n', bytes, i);
                continue;
            }
            b'\'' | b'"' if token_start => {
                i = end_of_quoted(bytes, i);
                previous = byte;
                continue;
            }
            b'|' | b'>' if token_start && depth == 0 => {
                // A block scalar: the lines indented deeper than this one.
                let mut end = memchr(b'\n', bytes, i);
                while end < bytes.len() {
                    let line = &bytes[end + 1..];
                    let indent = line.iter().take_while(|&&b| b == b' ').count();
                    let blank = matches!(line.get(indent), None | Some(b'\n' | b'\r'));
                    if !blank && indent <= line_indent {
                        break;
                    }
                    end = memchr(b'\n', bytes, end + 1);
                }
                i = end;
                continue;
            }
            b'[' | b'{' if token_start || depth > 0 => {
                depth += 1;
                if depth > MAX_NESTING {
                    return Some(i);
                }
            }
            b']' | b'}' if depth > 0 => depth -= 1,
            _ => {}
        }
        previous = byte;
        i += 1;
    }
    None
}

/// The offset of the next `byte` at or after `from`, or the end.
fn memchr(byte: u8, bytes: &[u8], from: usize) -> usize {
    bytes[from..]
        .iter()
        .position(|&b| b == byte)
        .map_or(bytes.len(), |p| from + p)
}

/// The offset just past the quoted scalar that starts at `start`.
fn end_of_quoted(bytes: &[u8], start: usize) -> usize {
    let quote = bytes[start];
    let mut i = start + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if quote == b'"' => i += 1,
            b'\'' if quote == b'\'' && bytes.get(i + 1) == Some(&b'\'') => i += 1,
            b if b == quote => return i + 1,
            _ => {}
        }
        i += 1;
    }
    bytes.len()
}

/// The offset of the first line that is neither blank nor a comment.
fn first_content_line(chunk: &str) -> usize {
    chunk
        .lines()
        .position(|l| {
            let l = l.trim();
            !l.is_empty() && !l.starts_with('#')
        })
        .unwrap_or(0)
}

/// Whether a document's text has comments that re-serialising it would drop.
pub fn has_comments(text: &str) -> bool {
    text.lines()
        .any(|l| l.trim_start().starts_with('#') || l.contains(" #"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_documents_keep_their_first_line() {
        let file = parse("m.yaml", "a: 1\n---\n# c\nb: 2\n---\n\nkind: X\n").unwrap();
        let lines: Vec<usize> = file.documents.iter().map(|d| d.source.line).collect();
        assert_eq!(lines, [1, 4, 7]);
        assert_eq!(file.documents[1].text, "# c\nb: 2\n");
        assert_eq!(file.documents[2].value.as_ref().unwrap()["kind"], "X");
    }

    #[test]
    fn a_leading_separator_makes_no_empty_document() {
        let file = parse("m.yaml", "---\nkind: A\n").unwrap();
        assert_eq!(file.documents.len(), 1);
        assert_eq!(file.documents[0].source.line, 2);
    }

    #[test]
    fn yaml_error_names_file_and_line_of_the_stream() {
        let err = parse("m.yaml", "a: 1\n---\nkind: X\nspec: [\n").unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("m.yaml:"), "{text}");
        let Error::Parse { line, .. } = err else {
            panic!()
        };
        assert!(line >= 4, "line {line}");
    }

    #[test]
    fn json_error_names_the_line() {
        let err = parse("m.json", "{\n  \"kind\": \"X\",\n  \"a\": [1,\n}").unwrap_err();
        assert!(
            err.to_string().starts_with("m.json:4: invalid JSON"),
            "{err}"
        );
        // What YAML reads, kubectl reads too: `oops` is a key with a null value.
        let file = parse("m.json", "{\n  \"kind\": \"X\",\n  oops\n}").unwrap();
        assert_eq!(
            file.documents[0].value.as_ref().unwrap()["oops"],
            Value::Null
        );
    }

    #[test]
    fn deep_yaml_is_refused_before_parsing() {
        let deep = format!("a: 1\n---\nx: {}\n", "{a: ".repeat(100_000));
        let started = std::time::Instant::now();
        let err = parse("m.yaml", &deep).unwrap_err();
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        assert_eq!(
            err.to_string(),
            "m.yaml:3: invalid YAML: nested deeper than 128 levels"
        );
        let fine = format!("x: {}1{}\n", "[".repeat(100), "]".repeat(100));
        assert!(parse("m.yaml", &fine).is_ok());
        // Brackets in strings, block scalars and comments are text, not nesting.
        let open = "[{".repeat(200);
        for text in [
            format!("x: '{open}'\ny: \"{open}\\\"\"\n"),
            format!("x: a{open}\n# {open}\n"),
            format!("x: |\n  {open}\n\n  {open}\ny: [1]\n"),
            format!("x: [\"{open}\", '{open}']\n"),
        ] {
            let file = parse("m.yaml", &text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert!(file.documents[0].value.is_some());
        }
    }

    #[test]
    fn comment_only_documents_have_no_value() {
        let file = parse("m.yaml", "# nothing\n---\nkind: A\n").unwrap();
        assert!(file.documents[0].value.is_none());
    }
}
