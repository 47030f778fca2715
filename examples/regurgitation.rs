//! Throughput of the text-mode regurgitation scan on real files.
//!
//! ```text
//! cargo run --release --example regurgitation -- --corpus corpus.txt --generations gens.jsonl \
//!     [--min-chars 200] [--threads 1] [--repeat 1]
//! ```
//!
//! The corpus is plain UTF-8 text, one document per line (LF); the generations are JSON lines with a
//! `"text"` field. Prints one JSON object: sizes, the index parameters, seconds spent reading files
//! (and validating the corpus as UTF-8), building the index and scanning (splitting lines, scanning
//! every document and computing the results), corpus MB/s per core of the scan, and what was found.
//! With `--repeat N` the scan runs N times over the same index: `scan_seconds` is the median (the
//! machine may be shared), `scan_seconds_all` lists every run, and every run must find the same.

use std::error::Error;
use std::time::Instant;

use lethe::audit::ngram::GenerationIndex;

/// Command-line options.
struct Options {
    corpus: String,
    generations: String,
    min_chars: usize,
    threads: usize,
    repeat: usize,
}

fn parse_args() -> Result<Options, Box<dyn Error>> {
    let mut corpus = None;
    let mut generations = None;
    let mut min_chars = 200;
    let mut threads = 1;
    let mut repeat = 1;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--corpus" => corpus = Some(value()?),
            "--generations" => generations = Some(value()?),
            "--min-chars" => min_chars = value()?.parse()?,
            "--threads" => threads = value()?.parse()?,
            "--repeat" => repeat = value()?.parse()?,
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    Ok(Options {
        corpus: corpus.ok_or("--corpus PATH is required")?,
        generations: generations.ok_or("--generations PATH is required")?,
        min_chars,
        threads,
        repeat: repeat.max(1),
    })
}

/// One line of the generations file.
#[derive(serde::Deserialize)]
struct Generation {
    text: String,
}

fn main() -> Result<(), Box<dyn Error>> {
    let options = parse_args()?;

    let started = Instant::now();
    let corpus =
        std::fs::read(&options.corpus).map_err(|e| format!("reading corpus {}: {e}", options.corpus))?;
    let gens_text = std::fs::read_to_string(&options.generations)
        .map_err(|e| format!("reading generations {}: {e}", options.generations))?;
    let read_seconds = started.elapsed().as_secs_f64();

    let started = Instant::now();
    let corpus = std::str::from_utf8(&corpus).map_err(|e| format!("corpus is not UTF-8: {e}"))?;
    let utf8_seconds = started.elapsed().as_secs_f64();

    let mut generations = Vec::new();
    for (n, line) in gens_text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let g: Generation =
            serde_json::from_str(line).map_err(|e| format!("{} line {}: {e}", options.generations, n + 1))?;
        generations.push(g.text);
    }
    let generation_bytes: usize = generations.iter().map(String::len).sum();

    let started = Instant::now();
    let index = GenerationIndex::try_text(&generations, options.min_chars)?;
    let build_seconds = started.elapsed().as_secs_f64();

    let mut times = Vec::new();
    let mut results = Vec::new();
    for run in 0..options.repeat {
        let started = Instant::now();
        let found = if options.threads <= 1 {
            // Each line is scanned right after it is found, while it is still in cache.
            let mut scan = index.scanner();
            for (d, doc) in lines(corpus).enumerate() {
                scan.add_text(d, doc);
            }
            scan.finish()
        } else {
            index.scan_texts(&lines(corpus).collect::<Vec<_>>(), options.threads)
        };
        times.push(started.elapsed().as_secs_f64());
        if run > 0 && found != results {
            return Err("repeated scans disagree".into());
        }
        results = found;
    }
    let mut sorted = times.clone();
    sorted.sort_by(f64::total_cmp);
    let scan_seconds = sorted[sorted.len() / 2];
    let corpus_docs = lines(corpus).count();

    let spans: usize = results.iter().map(|m| m.spans.len()).sum();
    let covered_chars: usize = results.iter().map(|m| m.covered_tokens).sum();
    let with_spans = results.iter().filter(|m| !m.spans.is_empty()).count();
    let (window, stride) = index.window_and_stride();
    let cores = options.threads.max(1) as f64;
    let report = serde_json::json!({
        "tool": "lethe",
        "corpus_bytes": corpus.len(),
        "corpus_docs": corpus_docs,
        "generation_bytes": generation_bytes,
        "generations": generations.len(),
        "min_chars": options.min_chars,
        "window_bytes": window,
        "stride_bytes": stride,
        "threads": options.threads.max(1),
        "read_seconds": read_seconds,
        "utf8_seconds": utf8_seconds,
        "build_seconds": build_seconds,
        "scan_seconds": scan_seconds,
        "scan_seconds_all": times,
        "corpus_mb_per_s_per_core": corpus.len() as f64 / 1e6 / scan_seconds / cores,
        "spans": spans,
        "generations_with_spans": with_spans,
        "covered_chars": covered_chars,
    });
    println!("{report}");
    Ok(())
}

/// The corpus's documents: its lines, without the LF (a final LF ends the last document).
fn lines(corpus: &str) -> impl Iterator<Item = &str> {
    let mut ends = memchr::memchr_iter(b'\n', corpus.as_bytes());
    let mut start = 0;
    std::iter::from_fn(move || match ends.next() {
        Some(end) => {
            let line = &corpus[start..end];
            start = end + 1;
            Some(line)
        }
        None if start < corpus.len() => {
            let line = &corpus[start..];
            start = corpus.len();
            Some(line)
        }
        None => None,
    })
}
