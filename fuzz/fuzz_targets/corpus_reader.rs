//! The ingest readers (`corpus::reader::read_file`): a text, Markdown or code file as one document, a
//! JSONL file as one document a line, with size limits, UTF-8 and binary checks.
//!
//! The first byte holds the read options (format, file extension, text field, lossy UTF-8, a small
//! document limit, a sink that refuses after the first document); the rest is the file.
#![no_main]

use lethe::corpus::reader::{read_file, InputFormat, RawDoc, ReadOptions};
use lethe::corpus::CorpusError;
use lethe_fuzz::{first_byte, fresh_dir, write};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (flags, file) = first_byte(data);
    let format = match flags & 3 {
        0 => InputFormat::Auto,
        1 => InputFormat::Text,
        _ => InputFormat::Jsonl,
    };
    let name = if flags & 4 != 0 {
        "input.jsonl"
    } else {
        "input.txt"
    };
    let opts = ReadOptions {
        format,
        field: if flags & 8 != 0 { "body" } else { "text" }.into(),
        lossy: flags & 16 != 0,
        max_doc_bytes: if flags & 32 != 0 {
            64
        } else {
            ReadOptions::default().max_doc_bytes
        },
    };
    let refuse_second = flags & 64 != 0;
    let path = write(&fresh_dir("reader"), name, file);

    let mut docs: Vec<RawDoc> = Vec::new();
    let result = read_file(&path, &opts, &mut |doc| {
        if refuse_second && !docs.is_empty() {
            return Err(CorpusError::Option("the sink refuses a second document".into()));
        }
        docs.push(doc);
        Ok(())
    });
    for doc in &docs {
        assert!(!doc.text.trim().is_empty(), "a blank document was handed out");
    }
    let jsonl = format == InputFormat::Jsonl || (format == InputFormat::Auto && flags & 4 != 0);
    if !jsonl && result.is_ok() {
        assert!(docs.len() <= 1, "a text file is one document");
        assert!(
            file.len() <= opts.max_doc_bytes,
            "a text file above the limit was read"
        );
        if let (Some(doc), false) = (docs.first(), opts.lossy) {
            assert_eq!(
                doc.text.as_bytes(),
                file,
                "a text document is the file, byte for byte"
            );
        }
    }
});
