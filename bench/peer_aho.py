"""pyahocorasick peer for bench/regurgitation.sh: count pattern occurrences in a corpus.

Usage: python peer_aho.py PATTERNS CORPUS
Prints one JSON line: patterns, corpus characters, seconds to read, build and scan, and the
number of matches reported by the automaton (every occurrence of every pattern).
"""

import json
import sys
import time

import ahocorasick


def main() -> None:
    patterns_path, corpus_path = sys.argv[1], sys.argv[2]
    t0 = time.perf_counter()
    with open(patterns_path, encoding="utf-8") as f:
        patterns = [line.rstrip("\n") for line in f if line.rstrip("\n")]
    with open(corpus_path, encoding="utf-8") as f:
        corpus = f.read()
    t1 = time.perf_counter()
    automaton = ahocorasick.Automaton()
    for i, p in enumerate(patterns):
        automaton.add_word(p, i)
    automaton.make_automaton()
    t2 = time.perf_counter()
    matches = 0
    for _ in automaton.iter(corpus):
        matches += 1
    t3 = time.perf_counter()
    print(json.dumps({
        "tool": "pyahocorasick",
        "patterns": len(patterns),
        "corpus_chars": len(corpus),
        "read_seconds": t1 - t0,
        "build_seconds": t2 - t1,
        "scan_seconds": t3 - t2,
        "matches": matches,
    }))


if __name__ == "__main__":
    main()
