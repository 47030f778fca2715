//! Deterministic benchmark data for `bench/regurgitation.sh` (std only; `rustc -O gen_corpus.rs`).
//!
//! `gen_corpus OUT_DIR CORPUS_MB GEN_WORDS MIN_CHARS STRIDE` writes
//! - `corpus.txt`: at least CORPUS_MB * 10^6 bytes of English-like text, one document per line:
//!   prose with a Zipf-distributed vocabulary of 40,000 invented words plus function words, names
//!   (some accented or non-Latin), numbers, dates, amounts and quotes; code-like documents
//!   (Rust/C/Python/SQL/JS statements over invented identifiers); and table-like documents;
//! - `gens.jsonl`: `{"text": ...}` lines totalling at least GEN_WORDS whitespace-separated words,
//!   40% novel text from the same language model, 60% novel text with one to three passages
//!   (250 to 2,500 bytes) copied verbatim from corpus documents, a third of them with one word
//!   replaced;
//! - `patterns.txt`: for the peers, every window of MIN_CHARS - STRIDE + 1 characters starting at a
//!   multiple of STRIDE characters of each generation, de-duplicated, one per line (an exact
//!   filter: any match of MIN_CHARS characters contains one).
//!
//! Prints a one-line JSON summary.

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufWriter, Write};

/// splitmix64.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, p: f64) -> bool {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 > 1.0 - p
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

const FUNCTION_WORDS: &[&str] = &[
    "the", "of", "and", "to", "a", "in", "is", "that", "for", "it", "was", "on", "with", "as", "by",
    "at", "from", "this", "be", "are", "or", "an", "which", "not", "have", "has", "had", "but",
    "were", "they", "their", "his", "her", "its", "one", "all", "we", "can", "more", "when", "there",
    "been", "would", "will", "if", "no", "so", "some", "into", "than", "other", "about", "only",
    "after", "most", "also", "over", "new", "such", "these", "two", "may", "first", "any", "where",
];
const FIRST: &[&str] = &[
    "Alice", "Bruno", "Chen", "Dmitri", "Elena", "Fatima", "Gustav", "Hiro", "Ingrid", "José",
    "Kwame", "Léa", "Mateo", "Nadia", "Olu", "Priya", "Quentin", "Rosa", "Søren", "Tomás", "Ursula",
    "Vikram", "Wen", "Xavier", "Yusuf", "Zoë", "Łukasz", "François", "Ana", "Björn", "Carmen",
    "Darius", "Emeka", "Freya", "Giulia", "Hamid", "Irene", "Jonas", "Kenji", "Lucía",
];
const LAST: &[&str] = &[
    "Abbott", "Müller", "Nakamura", "Okafor", "Petrov", "Quinn", "Rossi", "Schmidt", "Tanaka",
    "Ueda", "Varga", "Wójcik", "Xu", "Yilmaz", "Zimmermann", "García", "Haddad", "Ivanova",
    "Jensen", "Kowalski", "Lindqvist", "Moreau", "Novak", "O'Brien", "Park", "Reyes", "Sato",
    "Thompson", "Van Dijk", "Weber", "Dubois", "Costa", "Eriksen", "Fischer", "Gonzalez",
];
const PLACES: &[&str] = &[
    "Lisbon", "Kraków", "Nairobi", "Osaka", "Québec", "Reykjavík", "São Paulo", "Tbilisi",
    "Valparaíso", "Zürich", "東京", "北京", "Mumbai", "Cairo", "Oslo", "Lagos", "Hanoi", "Lima",
];
const ONSETS: &[&str] = &[
    "b", "c", "d", "f", "g", "h", "j", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w", "z", "br",
    "cl", "dr", "fl", "gr", "pl", "pr", "sh", "st", "th", "tr", "ch", "qu", "sp", "",
];
const VOWELS: &[&str] = &["a", "e", "i", "o", "u", "ai", "ea", "io", "ou", "y", "ee", "oa"];
const CODAS: &[&str] = &["", "", "n", "r", "s", "t", "l", "m", "nd", "st", "ck", "ng", "x", "rt"];

/// The language model: vocabulary with Zipf weights.
struct Model {
    words: Vec<String>,
    cumulative: Vec<f64>,
}

impl Model {
    fn new(rng: &mut Rng) -> Model {
        let mut words: Vec<String> = FUNCTION_WORDS.iter().map(|w| w.to_string()).collect();
        let mut seen: HashSet<String> = words.iter().cloned().collect();
        while words.len() < 40_000 {
            let syllables = 1 + rng.below(4);
            let mut w = String::new();
            for _ in 0..syllables {
                w.push_str(rng.pick(ONSETS));
                w.push_str(rng.pick(VOWELS));
                w.push_str(rng.pick(CODAS));
            }
            if seen.insert(w.clone()) {
                words.push(w);
            }
        }
        let mut cumulative = Vec::with_capacity(words.len());
        let mut total = 0.0;
        for i in 0..words.len() {
            total += 1.0 / ((i + 1) as f64).powf(1.05);
            cumulative.push(total);
        }
        Model { words, cumulative }
    }

    fn word(&self, rng: &mut Rng) -> &str {
        let total = self.cumulative[self.cumulative.len() - 1];
        let x = (rng.next() >> 11) as f64 / (1u64 << 53) as f64 * total;
        let i = self.cumulative.partition_point(|&c| c < x);
        &self.words[i.min(self.words.len() - 1)]
    }

    fn identifier(&self, rng: &mut Rng) -> String {
        let mut id = self.word(rng).to_string();
        if rng.chance(0.5) {
            id.push('_');
            id.push_str(self.word(rng));
        }
        id
    }

    fn number(&self, rng: &mut Rng) -> String {
        match rng.below(6) {
            0 => format!("{}", 1800 + rng.below(226)),
            1 => format!("${},{:03}.{:02}", 1 + rng.below(999), rng.below(1000), rng.below(100)),
            2 => format!("{}.{}%", rng.below(100), rng.below(10)),
            3 => format!("{}", rng.below(100_000)),
            4 => format!("{}–{}", 1 + rng.below(50), 51 + rng.below(200)),
            _ => format!("€{}", rng.below(10_000)),
        }
    }

    fn sentence(&self, rng: &mut Rng, out: &mut String) {
        let n = 5 + rng.below(24);
        for i in 0..n {
            if i > 0 {
                out.push(' ');
            }
            let piece = match rng.below(40) {
                0 => format!("{} {}", rng.pick(FIRST), rng.pick(LAST)),
                1 => rng.pick(PLACES).to_string(),
                2 => self.number(rng),
                3 => format!("“{} {}”", self.word(rng), self.word(rng)),
                _ => self.word(rng).to_string(),
            };
            if i == 0 {
                let mut chars = piece.chars();
                if let Some(c) = chars.next() {
                    out.extend(c.to_uppercase());
                    out.push_str(chars.as_str());
                }
            } else {
                out.push_str(&piece);
            }
            if i + 1 < n && rng.chance(0.08) {
                out.push_str(if rng.chance(0.8) { "," } else { " —" });
            }
        }
        out.push_str(match rng.below(10) {
            0 => "?",
            1 => "!",
            2 => ";",
            _ => ".",
        });
    }

    fn code(&self, rng: &mut Rng, out: &mut String) {
        let a = self.identifier(rng);
        let b = self.identifier(rng);
        let c = self.word(rng).to_string();
        let n = rng.below(1000);
        let line = match rng.below(6) {
            0 => format!(
                "fn {a}({b}: u32, {c}: &str) -> Result<{}, Error> {{ let x = {b}.get(\"{c}\")?; Ok(x * {n}) }}",
                capitalize(&c)
            ),
            1 => format!("for (int i = 0; i < {a}_count; ++i) {{ {b}[i] += {c}(i) * {n}; }}"),
            2 => format!("if {a}.{c}() == {n} and not {b}: return {a}[{n}:{}]", n + 7),
            3 => format!("SELECT {a}, {c} FROM {b} WHERE {c} > {n} ORDER BY {a} DESC;"),
            4 => format!("const {} = require('{c}/{b}'); // {}", a.to_uppercase(), self.word(rng)),
            _ => format!("{a} = {{\"{b}\": {n}, \"{c}\": [{}, {}]}}", rng.below(99), rng.below(99)),
        };
        out.push_str(&line);
    }

    fn document(&self, rng: &mut Rng) -> String {
        // Log-uniform length between 300 bytes and 30 KB.
        let target = (300.0 * 100f64.powf((rng.next() >> 11) as f64 / (1u64 << 53) as f64)) as usize;
        let kind = rng.below(20);
        let mut doc = String::with_capacity(target + 200);
        while doc.len() < target {
            if !doc.is_empty() {
                doc.push(' ');
            }
            match kind {
                0..=2 => self.code(rng, &mut doc),
                3 => {
                    doc.push_str(&format!(
                        "| {} | {} {} | {} | {} |",
                        self.identifier(rng),
                        rng.pick(FIRST),
                        rng.pick(LAST),
                        self.number(rng),
                        rng.pick(PLACES)
                    ));
                }
                _ => self.sentence(rng, &mut doc),
            }
        }
        doc
    }
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// A random passage of `doc` between word boundaries, about `len` bytes.
fn passage<'d>(doc: &'d str, len: usize, rng: &mut Rng) -> &'d str {
    if doc.len() <= len {
        return doc;
    }
    let mut a = rng.below(doc.len() - len);
    while a > 0 && doc.as_bytes()[a - 1] != b' ' {
        a -= 1;
    }
    let mut b = (a + len).min(doc.len());
    while b < doc.len() && doc.as_bytes()[b] != b' ' {
        b += 1;
    }
    &doc[a..b]
}

fn json_escape(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 6 {
        eprintln!("usage: gen_corpus OUT_DIR CORPUS_MB GEN_WORDS MIN_CHARS STRIDE");
        std::process::exit(2);
    }
    let arg = |i: usize| -> usize {
        args[i].parse().unwrap_or_else(|_| {
            eprintln!("argument {i} must be a number");
            std::process::exit(2)
        })
    };
    let (dir, corpus_bytes, gen_words, min_chars, stride) =
        (&args[1], arg(2) * 1_000_000, arg(3), arg(4), arg(5));
    if stride == 0 || stride > min_chars {
        eprintln!("need 1 <= STRIDE <= MIN_CHARS");
        std::process::exit(2);
    }

    let mut rng = Rng(0x1E7E);
    let model = Model::new(&mut rng);

    let mut docs: Vec<String> = Vec::new();
    let mut total = 0;
    let mut corpus = BufWriter::new(File::create(format!("{dir}/corpus.txt"))?);
    while total < corpus_bytes {
        let doc = model.document(&mut rng);
        corpus.write_all(doc.as_bytes())?;
        corpus.write_all(b"\n")?;
        total += doc.len() + 1;
        docs.push(doc);
    }
    corpus.flush()?;

    // Generations use their own stream, so novel text is new text from the same model.
    let mut grng = Rng(0xBEEF);
    let mut gens = BufWriter::new(File::create(format!("{dir}/gens.jsonl"))?);
    let mut words = 0;
    let mut gen_texts: Vec<String> = Vec::new();
    let (mut copied, mut edited) = (0, 0);
    while words < gen_words {
        let target = 350 + grng.below(550);
        let copies = if grng.chance(0.6) { 1 + grng.below(3) } else { 0 };
        let mut text = String::new();
        let mut pieces = 0;
        while text.split_whitespace().count() < target || pieces < copies {
            if !text.is_empty() {
                text.push(' ');
            }
            if pieces < copies && grng.chance(0.5) {
                let doc = &docs[grng.below(docs.len())];
                let len = 250 + grng.below(2_250);
                let mut p = passage(doc, len, &mut grng).to_string();
                copied += 1;
                if grng.chance(1.0 / 3.0) {
                    // Replace one word in the middle.
                    let ws: Vec<&str> = p.split(' ').collect();
                    if ws.len() > 4 {
                        let i = ws.len() / 2;
                        let mut replaced: Vec<String> = ws.iter().map(|w| w.to_string()).collect();
                        replaced[i] = format!("{}x", model.word(&mut grng));
                        p = replaced.join(" ");
                        edited += 1;
                    }
                }
                text.push_str(&p);
                pieces += 1;
            } else {
                model.sentence(&mut grng, &mut text);
            }
        }
        words += text.split_whitespace().count();
        let mut line = String::from("{\"text\": ");
        json_escape(&text, &mut line);
        line.push_str("}\n");
        gens.write_all(line.as_bytes())?;
        gen_texts.push(text);
    }
    gens.flush()?;

    let width = min_chars - stride + 1;
    let mut seen: HashSet<String> = HashSet::new();
    let mut patterns = BufWriter::new(File::create(format!("{dir}/patterns.txt"))?);
    for text in &gen_texts {
        let chars: Vec<char> = text.chars().collect();
        let mut s = 0;
        while s + width <= chars.len() {
            let p: String = chars[s..s + width].iter().collect();
            if seen.insert(p.clone()) {
                patterns.write_all(p.as_bytes())?;
                patterns.write_all(b"\n")?;
            }
            s += stride;
        }
    }
    patterns.flush()?;

    println!(
        "{{\"corpus_bytes\": {total}, \"corpus_docs\": {}, \"generations\": {}, \"generation_words\": {words}, \"copied_passages\": {copied}, \"edited_passages\": {edited}, \"patterns\": {}, \"pattern_chars\": {width}, \"pattern_stride_chars\": {stride}}}",
        docs.len(),
        gen_texts.len(),
        seen.len()
    );
    Ok(())
}
