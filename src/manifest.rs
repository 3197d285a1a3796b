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
    /// `None` for a document with nothing but comments or whitespace.
    pub value: Option<Value>,
}

#[derive(Debug, Clone)]
pub struct ManifestFile {
    /// `None` for standard input.
    pub path: Option<PathBuf>,
    pub display: String,
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
    let mut file = parse(&display, &text)?;
    file.path = file_path;
    Ok(file)
}

/// Parses manifest text. JSON is told apart by its first character.
pub fn parse(display: &str, text: &str) -> Result<ManifestFile> {
    let trimmed = text.trim_start();
    if trimmed.starts_with('{') || trimmed.starts_with('[') {
        let line = text.len() - trimmed.len();
        let first_line = text[..line].matches('\n').count() + 1;
        let value: Value = serde_json::from_str(text).map_err(|e| Error::Parse {
            path: display.to_owned(),
            line: e.line(),
            message: format!("invalid JSON: {e}"),
        })?;
        return Ok(ManifestFile {
            path: None,
            display: display.to_owned(),
            format: Format::Json,
            documents: vec![Document {
                source: Source {
                    file: display.to_owned(),
                    line: first_line,
                },
                text: text.to_owned(),
                value: Some(value),
            }],
        });
    }
    let mut documents = Vec::new();
    for (start_line, chunk) in split_yaml(text) {
        let value = if is_blank(chunk) {
            None
        } else {
            if let Some(offset) = too_deep(chunk) {
                return Err(Error::Parse {
                    path: display.to_owned(),
                    line: start_line + chunk[..offset].matches('\n').count(),
                    message: format!("invalid YAML: nested deeper than {MAX_NESTING} levels"),
                });
            }
            let value: Value = serde_yaml_ng::from_str(chunk).map_err(|e| {
                let line = e
                    .location()
                    .map_or(start_line, |l| start_line + l.line() - 1);
                Error::Parse {
                    path: display.to_owned(),
                    line,
                    message: format!("invalid YAML: {e}"),
                }
            })?;
            (!value.is_null()).then_some(value)
        };
        documents.push(Document {
            source: Source {
                file: display.to_owned(),
                line: start_line + first_content_line(chunk),
            },
            text: chunk.to_owned(),
            value,
        });
    }
    Ok(ManifestFile {
        path: None,
        display: display.to_owned(),
        format: Format::Yaml,
        documents,
    })
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

fn is_blank(chunk: &str) -> bool {
    chunk.lines().all(|l| {
        let l = l.trim();
        l.is_empty() || l.starts_with('#')
    })
}

/// Splits a YAML stream at `---` lines, keeping each document's text and first line.
/// Separator lines are not part of any document.
fn split_yaml(text: &str) -> Vec<(usize, &str)> {
    let mut chunks = Vec::new();
    let mut start = 0;
    let mut start_line = 1;
    let mut offset = 0;
    for (index, line) in text.split_inclusive('\n').enumerate() {
        let content = line.trim_end_matches(['\n', '\r']);
        let is_separator = content == "---"
            || content.starts_with("--- ")
            || content == "..."
            || content.starts_with("... ");
        if is_separator {
            if offset > start || index > 0 {
                chunks.push((start_line, &text[start..offset]));
            }
            start = offset + line.len();
            start_line = index + 2;
        }
        offset += line.len();
    }
    chunks.push((start_line, &text[start..]));
    chunks.retain(|(_, chunk)| !chunk.is_empty());
    chunks
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
        let err = parse("m.json", "{\n  \"kind\": \"X\",\n  oops\n}").unwrap_err();
        assert!(err.to_string().starts_with("m.json:3:"), "{err}");
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
