//! Input readers: turn the paths given to `lethe corpus ingest` into documents, each with its source.
//!
//! Plain text, Markdown and source code are one document per file; JSONL is one document per line, the
//! text taken from a string field (`text` unless `--field` names another). Directories are walked
//! recursively in sorted order (so ingest is deterministic) and only files with a known text or code
//! extension are taken from them; a file named explicitly is always read. Every document is bounded in
//! size, so a 2 GB line fails fast with a clear error instead of exhausting memory.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use super::CorpusError;

/// How to read one input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum InputFormat {
    /// By extension: `.jsonl`/`.ndjson` are JSONL, everything else one document per file.
    Auto,
    Text,
    Jsonl,
}

#[derive(Debug, Clone)]
pub struct ReadOptions {
    pub format: InputFormat,
    pub field: String,
    /// Replace invalid UTF-8 with U+FFFD instead of failing.
    pub lossy: bool,
    /// Largest document (file or JSONL line) accepted, in bytes.
    pub max_doc_bytes: usize,
}

impl Default for ReadOptions {
    fn default() -> Self {
        Self {
            format: InputFormat::Auto,
            field: "text".into(),
            lossy: false,
            max_doc_bytes: 64 << 20,
        }
    }
}

/// One document as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawDoc {
    /// The path it came from (`-` for stdin), with `:LINE` for JSONL.
    pub source: String,
    pub text: String,
}

/// Extensions taken when walking a directory: prose, markup, configuration and source code.
const TEXT_EXTENSIONS: &[&str] = &[
    "txt",
    "md",
    "markdown",
    "rst",
    "adoc",
    "org",
    "tex",
    "csv",
    "tsv",
    "log",
    "json",
    "jsonl",
    "ndjson",
    "yaml",
    "yml",
    "toml",
    "ini",
    "cfg",
    "conf",
    "xml",
    "html",
    "htm",
    "css",
    "scss",
    "sql",
    "sh",
    "bash",
    "zsh",
    "ps1",
    "py",
    "pyi",
    "rs",
    "go",
    "java",
    "kt",
    "kts",
    "scala",
    "c",
    "h",
    "cc",
    "cpp",
    "cxx",
    "hpp",
    "hh",
    "cs",
    "fs",
    "swift",
    "m",
    "mm",
    "js",
    "jsx",
    "ts",
    "tsx",
    "mjs",
    "cjs",
    "vue",
    "svelte",
    "rb",
    "php",
    "pl",
    "pm",
    "lua",
    "r",
    "jl",
    "hs",
    "ml",
    "mli",
    "ex",
    "exs",
    "erl",
    "clj",
    "dart",
    "zig",
    "nim",
    "proto",
    "graphql",
    "tf",
    "hcl",
    "gradle",
    "cmake",
    "mk",
    "dockerfile",
    "properties",
    "env",
];
/// File names without a telling extension that are text all the same.
const TEXT_NAMES: &[&str] = &[
    "Makefile",
    "Dockerfile",
    "README",
    "LICENSE",
    "CHANGELOG",
    "Jenkinsfile",
];

fn walkable(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if name.starts_with('.') {
        return false;
    }
    match path.extension().and_then(|e| e.to_str()) {
        Some(ext) => TEXT_EXTENSIONS.contains(&ext.to_ascii_lowercase().as_str()),
        None => TEXT_NAMES.contains(&name),
    }
}

/// Expands the inputs into the ordered list of files to read (`-` stays `-`), and counts the files a
/// directory walk skipped.
pub fn expand_inputs(inputs: &[PathBuf]) -> Result<(Vec<PathBuf>, usize), CorpusError> {
    let mut files = Vec::new();
    let mut skipped = 0;
    for input in inputs {
        if input.as_os_str() == "-" {
            files.push(input.clone());
            continue;
        }
        let meta = std::fs::metadata(input).map_err(|e| CorpusError::Input {
            path: input.display().to_string(),
            reason: e.to_string(),
        })?;
        if meta.is_dir() {
            walk(input, &mut files, &mut skipped)?;
        } else {
            files.push(input.clone());
        }
    }
    Ok((files, skipped))
}

fn walk(dir: &Path, files: &mut Vec<PathBuf>, skipped: &mut usize) -> Result<(), CorpusError> {
    let err = |e: std::io::Error| CorpusError::Input {
        path: dir.display().to_string(),
        reason: e.to_string(),
    };
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(err)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(err)?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let path = e.path();
        let ft = e.file_type().map_err(err)?;
        if ft.is_dir() {
            if !path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with('.'))
            {
                walk(&path, files, skipped)?;
            }
        } else if ft.is_file() && walkable(&path) {
            files.push(path);
        } else {
            *skipped += 1;
        }
    }
    Ok(())
}

fn is_jsonl(path: &Path, format: InputFormat) -> bool {
    match format {
        InputFormat::Jsonl => true,
        InputFormat::Text => false,
        InputFormat::Auto => matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("jsonl" | "ndjson")
        ),
    }
}

/// Reads every document of `path` and hands each to `sink` in order.
pub fn read_file(
    path: &Path,
    opts: &ReadOptions,
    sink: &mut dyn FnMut(RawDoc) -> Result<(), CorpusError>,
) -> Result<(), CorpusError> {
    let name = if path.as_os_str() == "-" {
        "-".to_string()
    } else {
        path.display().to_string()
    };
    let input_err = |reason: String| CorpusError::Input {
        path: name.clone(),
        reason,
    };
    let reader: Box<dyn Read> = if path.as_os_str() == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(File::open(path).map_err(|e| input_err(e.to_string()))?)
    };
    let mut reader = BufReader::with_capacity(1 << 20, reader);
    if is_jsonl(path, opts.format) {
        return read_jsonl(&name, &mut reader, opts, sink);
    }
    let mut bytes = Vec::new();
    // Read one byte past the limit to know whether it was exceeded without reading a huge file whole.
    reader
        .by_ref()
        .take(opts.max_doc_bytes as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| input_err(e.to_string()))?;
    if bytes.len() > opts.max_doc_bytes {
        return Err(CorpusError::DocumentTooLarge {
            source_name: name,
            limit: opts.max_doc_bytes,
        });
    }
    let text = decode(&name, bytes, 0, opts.lossy)?;
    if text.trim().is_empty() {
        return Ok(());
    }
    sink(RawDoc { source: name, text })
}

/// UTF-8 text from `bytes`, refusing binary content (NUL bytes) and, unless `lossy`, invalid UTF-8 with the
/// byte offset of the first bad byte (`base` is the offset of `bytes` in the file).
fn decode(name: &str, bytes: Vec<u8>, base: u64, lossy: bool) -> Result<String, CorpusError> {
    if let Some(pos) = memchr_nul(&bytes) {
        return Err(CorpusError::Binary {
            path: name.to_string(),
            offset: base + pos as u64,
        });
    }
    match String::from_utf8(bytes) {
        Ok(s) => Ok(s),
        Err(e) if lossy => Ok(String::from_utf8_lossy(e.as_bytes()).into_owned()),
        Err(e) => Err(CorpusError::InvalidUtf8 {
            path: name.to_string(),
            offset: base + e.utf8_error().valid_up_to() as u64,
        }),
    }
}

fn memchr_nul(bytes: &[u8]) -> Option<usize> {
    bytes.iter().position(|&b| b == 0)
}

fn read_jsonl(
    name: &str,
    reader: &mut dyn BufRead,
    opts: &ReadOptions,
    sink: &mut dyn FnMut(RawDoc) -> Result<(), CorpusError>,
) -> Result<(), CorpusError> {
    let mut line_no = 0u64;
    let mut offset = 0u64;
    let mut line = Vec::new();
    loop {
        line.clear();
        line_no += 1;
        let n = read_bounded_line(reader, &mut line, opts.max_doc_bytes).map_err(|e| match e {
            LineError::TooLong => CorpusError::DocumentTooLarge {
                source_name: format!("{name}:{line_no}"),
                limit: opts.max_doc_bytes,
            },
            LineError::Io(e) => CorpusError::Input {
                path: name.to_string(),
                reason: e.to_string(),
            },
        })?;
        if n == 0 {
            return Ok(());
        }
        let start = offset;
        offset += n as u64;
        while line.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
            line.pop();
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let text = decode(name, std::mem::take(&mut line), start, opts.lossy)?;
        let bad = |reason: String| CorpusError::Jsonl {
            path: name.to_string(),
            line: line_no,
            reason,
        };
        let value: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| bad(format!("not JSON: {e}")))?;
        let field = match value.get(&opts.field) {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(other) => {
                return Err(bad(format!(
                    "field {:?} is {} instead of a string",
                    opts.field,
                    json_kind(other)
                )))
            }
            None => return Err(bad(format!("no {:?} field", opts.field))),
        };
        if !field.trim().is_empty() {
            sink(RawDoc {
                source: format!("{name}:{line_no}"),
                text: field,
            })?;
        }
    }
}

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

enum LineError {
    TooLong,
    Io(std::io::Error),
}

/// Reads up to and including the next `\n` into `out`, failing once more than `limit` bytes have been seen
/// without one.
fn read_bounded_line(reader: &mut dyn BufRead, out: &mut Vec<u8>, limit: usize) -> Result<usize, LineError> {
    let mut total = 0;
    loop {
        let buf = match reader.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(LineError::Io(e)),
        };
        if buf.is_empty() {
            return Ok(total);
        }
        let (take, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (buf.len(), false),
        };
        if out.len() + take > limit + 2 {
            return Err(LineError::TooLong);
        }
        out.extend_from_slice(&buf[..take]);
        reader.consume(take);
        total += take;
        if done {
            return Ok(total);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(path: &Path, opts: &ReadOptions) -> Result<Vec<RawDoc>, CorpusError> {
        let mut docs = Vec::new();
        read_file(path, opts, &mut |d| {
            docs.push(d);
            Ok(())
        })?;
        Ok(docs)
    }

    #[test]
    fn invalid_utf8_names_file_and_offset_unless_lossy() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.txt");
        std::fs::write(&p, b"hello \xff world").unwrap();
        let err = read_all(&p, &ReadOptions::default()).unwrap_err();
        assert!(matches!(err, CorpusError::InvalidUtf8 { offset: 6, .. }), "{err}");
        assert!(err.to_string().contains("a.txt"));
        let lossy = read_all(
            &p,
            &ReadOptions {
                lossy: true,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(lossy[0].text, "hello \u{FFFD} world");
    }

    #[test]
    fn jsonl_offsets_count_from_file_start() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.jsonl");
        std::fs::write(&p, b"{\"text\":\"ok\"}\n{\"text\":\"b\xffd\"}\n").unwrap();
        let err = read_all(&p, &ReadOptions::default()).unwrap_err();
        assert!(
            matches!(err, CorpusError::InvalidUtf8 { offset: 24, .. }),
            "{err}"
        );
    }

    #[test]
    fn jsonl_missing_or_wrong_field_names_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.jsonl");
        std::fs::write(&p, "{\"text\":\"one\"}\n\n{\"body\":\"two\"}\n").unwrap();
        let err = read_all(&p, &ReadOptions::default()).unwrap_err();
        assert!(matches!(err, CorpusError::Jsonl { line: 3, .. }), "{err}");
        let docs = read_all(
            &p,
            &ReadOptions {
                field: "body".into(),
                ..Default::default()
            },
        );
        assert!(matches!(docs, Err(CorpusError::Jsonl { line: 1, .. })));
        std::fs::write(&p, "{\"text\": 5}\n").unwrap();
        let err = read_all(&p, &ReadOptions::default()).unwrap_err().to_string();
        assert!(err.contains("a number"), "{err}");
        std::fs::write(&p, "{\"text\": \"x\"\n").unwrap();
        assert!(matches!(
            read_all(&p, &ReadOptions::default()),
            Err(CorpusError::Jsonl { line: 1, .. })
        ));
    }

    #[test]
    fn jsonl_keeps_sources_per_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.jsonl");
        std::fs::write(&p, "{\"text\":\"one\"}\r\n{\"text\":\"two\",\"x\":1}").unwrap();
        let docs = read_all(&p, &ReadOptions::default()).unwrap();
        assert_eq!(docs.len(), 2);
        assert!(docs[1].source.ends_with("a.jsonl:2"));
        assert_eq!(docs[1].text, "two");
    }

    #[test]
    fn a_two_gigabyte_line_fails_fast() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("huge.jsonl");
        let f = std::fs::File::create(&p).unwrap();
        use std::io::Write;
        (&f).write_all(b"{\"text\": \"").unwrap();
        // A sparse file: 2 GB long, no disk used, no newline anywhere.
        f.set_len(2 << 30).unwrap();
        let opts = ReadOptions {
            max_doc_bytes: 1 << 20,
            ..Default::default()
        };
        let err = read_all(&p, &opts).unwrap_err();
        assert!(matches!(err, CorpusError::DocumentTooLarge { .. }), "{err}");
        assert!(err.to_string().contains("huge.jsonl:1"), "{err}");
    }

    #[test]
    fn binary_files_are_refused_with_offset() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("img.txt");
        std::fs::write(&p, b"GIF89a\x00\x01").unwrap();
        let err = read_all(&p, &ReadOptions::default()).unwrap_err();
        assert!(matches!(err, CorpusError::Binary { offset: 6, .. }), "{err}");
    }

    #[test]
    fn directory_walk_is_sorted_and_skips_unknown_and_hidden() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("b/.git")).unwrap();
        std::fs::write(dir.path().join("b/z.rs"), "fn z() {}").unwrap();
        std::fs::write(dir.path().join("b/.git/config"), "x").unwrap();
        std::fs::write(dir.path().join("a.md"), "# a").unwrap();
        std::fs::write(dir.path().join("logo.png"), [0u8, 1, 2]).unwrap();
        std::fs::write(dir.path().join("Makefile"), "all:").unwrap();
        let (files, skipped) = expand_inputs(&[dir.path().to_path_buf()]).unwrap();
        let names: Vec<_> = files
            .iter()
            .map(|p| p.strip_prefix(dir.path()).unwrap().display().to_string())
            .collect();
        assert_eq!(names, ["Makefile", "a.md", "b/z.rs"]);
        assert_eq!(skipped, 1);
    }
}
