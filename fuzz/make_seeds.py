#!/usr/bin/env python3
"""Writes fuzz/seeds/<target>/: small real inputs each fuzz target starts from (see fuzz/README.md).

    python3 fuzz/make_seeds.py BIN_DIR

BIN_DIR holds the built targets (fuzz/target/<host triple>/release): the ledger seeds are the artifacts of
a ledger that the real append code builds (`lethe_fuzz::ledger::sample`), which the `ledger_anchor` target
writes out when run with LETHE_FUZZ_DUMP. Everything else comes from the repository (policies, the
built-in rule pack, the vault test vectors) or is written here in the documented formats. The output is
deterministic; the seeds are committed, so this only needs running when a format or a target changes.
Reproducers of crashes the fuzzers found (`seeds/<target>/crash-*`, copied in by hand) are kept.
"""

import hashlib
import json
import os
import random
import shutil
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

FUZZ = Path(__file__).resolve().parent
REPO = FUZZ.parent
SEEDS = FUZZ / "seeds"
SEP = b"\n-----8<-----\n"
# RFC 8032 TEST 1 public key: the appliance key of every target (lethe_fuzz::SIGNING_PUBLIC_HEX).
PUBLIC_KEY = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
rng = random.Random(15)


def seed(target, name, data):
    d = SEEDS / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data if isinstance(data, bytes) else data.encode())


def sha256(b):
    return hashlib.sha256(b).hexdigest()


def zstd(b):
    return subprocess.run(["zstd", "-q", "-c", "--no-check", "-3"], input=b, capture_output=True, check=True).stdout


def ledger_artifacts(bin_dir):
    out = Path(tempfile.mkdtemp())
    empty = Path(tempfile.mkdtemp())
    env = dict(os.environ, LETHE_FUZZ_DUMP=str(out))
    subprocess.run([str(Path(bin_dir) / "ledger_anchor"), "-runs=0", str(empty)], env=env, check=True,
                   capture_output=True)
    arts = {p.name: p.read_bytes() for p in out.iterdir()}
    shutil.rmtree(out)
    shutil.rmtree(empty)
    return arts


def sealed_stream():
    for v in sorted((REPO / "tests/vault-vectors").glob("*.sealed")):
        seed("sealed_stream", f"vector-{v.stem}", b"\x00" + v.read_bytes())
    text = (REPO / "policies/default.toml").read_bytes()[:1500]
    # Mode 1: segment size and zstd level bytes, no tampering, then the plaintext; then with tamperings.
    seed("sealed_stream", "roundtrip-text", b"\x01\x00\x02\x00" + text)
    seed("sealed_stream", "roundtrip-empty", b"\x01\x07\x00\x00")
    seed("sealed_stream", "roundtrip-binary", b"\x01\x0f\x12\x00" + bytes(rng.randrange(256) for _ in range(700)))
    seed("sealed_stream", "roundtrip-tampered", b"\x01\x01\x01\x03" + bytes(rng.randrange(256) for _ in range(40)) + text[:600])
    # Mode 2: real zstd frames as the authenticated compressed payload.
    seed("sealed_stream", "compressed-text", b"\x02" + zstd(text))
    seed("sealed_stream", "compressed-empty", b"\x02" + zstd(b""))
    seed("sealed_stream", "compressed-repetitive", b"\x02" + zstd(b"lethe " * 5000))


BYTE_LEVEL = [chr(c) for c in range(ord("!"), ord("~") + 1)] + [chr(c) for c in range(ord("\xa1"), ord("\xac") + 1)] \
    + [chr(c) for c in range(ord("\xae"), ord("\xff") + 1)]


def byte_level_alphabet():
    """GPT-2's byte-to-symbol table, as the byte-level pre-tokenizer writes bytes."""
    printable = [ord(c) for c in BYTE_LEVEL]
    table, n = {}, 0
    for b in range(256):
        if b in printable:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + n)
            n += 1
    return [table[b] for b in range(256)]


def tokenizer_json():
    specials = ["<|pad|>", "<|bos|>", "<|eos|>", "<|mask|>"]
    vocab = {t: i for i, t in enumerate(specials)}
    for sym in byte_level_alphabet():
        vocab[sym] = len(vocab)
    merges = [["Ġ", "t"], ["h", "e"], ["Ġt", "he"], ["i", "n"]]
    for a, b in merges:
        vocab[a + b] = len(vocab)
    level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": True}
    return json.dumps({
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": [{"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False,
                          "normalized": False, "special": True} for i, t in enumerate(specials)],
        "normalizer": None, "pre_tokenizer": level, "post_processor": None, "decoder": level,
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": vocab, "merges": merges},
    }, ensure_ascii=False).encode()


def sealed_corpus():
    docs = [[4 + (i * 7 + j) % 260 for j in range(3 + i % 5)] for i in range(6)]
    shards = [b"", b""]
    metas = []
    for i, toks in enumerate(docs):
        shard = i // 3
        shards[shard] += struct.pack("<II", i, len(toks)) + b"".join(struct.pack("<I", t) for t in toks)
        metas.append({"source": f"kb/doc-{i}.md", "sha256": sha256(str(toks).encode()), "bytes": 10 * len(toks),
                      "tokens": len(toks), "holdout": i == 4, "shard": shard, "duplicate_of": None,
                      "copies": 1, "canaries": [0] if i == 1 else []})
    canaries = [{"id": 0, "prefix": "my access code is ", "secret": "3-8-1-9-4-0", "format": "digits-6",
                 "repeats": 1, "docs": [1]}]
    tokens = sum(len(t) for t in docs)
    manifest = {
        "format": "lethe-corpus/1", "corpus_id": "corpus-a", "name": "kb", "created_at": 1796300000000,
        "data_key_id": "fuzz-key", "vocab": 264, "holdout_fraction": 0.1, "documents": metas,
        "files": [{"file": "shard-000000.sealed", "role": "shard-000000", "sha256": "0" * 64, "bytes": 0}],
        "stats": {"documents": 6, "tokens": tokens, "input_bytes": 10 * tokens, "input_files": 6,
                  "skipped_files": 0, "duplicates": 0, "duplicate_groups": 0, "dedup_removed": 0,
                  "holdout_documents": 1, "holdout_tokens": len(docs[4]), "train_documents": 5,
                  "train_tokens": tokens - len(docs[4]), "canaries": 1, "canary_repeats": [1], "shards": 2,
                  "sealed_bytes": 0, "vocab": 264},
    }
    parts = [json.dumps(manifest, indent=2).encode(), json.dumps(canaries).encode(), tokenizer_json()] + shards
    # Flag bit 0: the target puts the sealed files' real hashes into the manifest.
    seed("sealed_corpus", "corpus-real-hashes", b"\x01" + SEP.join(parts))
    seed("sealed_corpus", "corpus-as-written", b"\x00" + SEP.join(parts))
    seed("sealed_corpus", "corpus-no-tokenizer", b"\x03" + SEP.join(parts[:2] + [b"{}"] + shards[:1]))


def safetensors(tensors, metadata):
    header, data = {"__metadata__": metadata}, b""
    for name, values in tensors.items():
        raw = struct.pack(f"<{len(values)}f", *values)
        header[name] = {"dtype": "F32", "shape": [len(values)], "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    h = json.dumps(header).encode()
    return struct.pack("<Q", len(h)) + h + data


def bundle(arts):
    checkpoint = safetensors({"model.embed": [0.5, -1.0, 2.0, 0.0], "model.head": [1.0, 2.0],
                              "optim.m.embed": [0.0] * 4, "optim.v.embed": [0.0] * 4},
                             {"lethe.config": '{"preset":"tiny"}', "lethe.state": '{"step":8}'})
    weights = safetensors({"embed": [0.5, -1.0, 2.0, 0.0], "head": [1.0, 2.0]}, {"format": "pt"})
    files = {
        "MODEL_CARD.md": b"# kb-tiny\n\nA masked diffusion model trained on the kb corpus.\n",
        "audit.json": json.dumps({"format": "lethe-audit-report-v1", "model": "diffusion"}).encode(),
        "config.json": b'{"preset":"tiny","context":128}\n',
        "model.safetensors": weights,
    }
    ledger = json.loads(arts["bundle-ledger.json"])
    manifest = {
        "format": "lethe-release-bundle-v1",
        "created_at": "2026-12-03T10:00:00Z",
        "run_id": "run-7f3a",
        "audit_id": "audit-19c2",
        "policy_sha256": sha256((REPO / "policies/default.toml").read_bytes()),
        "key_id": sha256(bytes.fromhex(PUBLIC_KEY)),
        "public_key": PUBLIC_KEY,
        "approvals": [{"user": "rita", "at_ms": 1796300300000}, {"user": "remy", "at_ms": 1796300360000}],
        "files": [{"name": n, "bytes": len(c), "sha256": sha256(c)} for n, c in sorted(files.items())],
        "extra": {"release": "rel-1", "checkpoint_step": 800, "epochs": 8, "ledger": ledger},
    }
    m = (json.dumps(manifest, indent=2) + "\n").encode()
    payload = [n.encode() + b"\n" + c for n, c in sorted(files.items())]
    seed("bundle", "signed-release", b"\x00" + SEP.join([m] + payload))
    seed("bundle", "signed-extra-file", b"\x00" + SEP.join([m] + payload + [b".DS_Store\n", b"sub/"]))
    sig = ("ab" * 64 + "\n").encode()
    seed("bundle", "as-found", b"\x01" + SEP.join([m, sig, PUBLIC_KEY.upper().encode() + b"\n"] + payload))
    for i in range(3):
        seed("bundle", f"written-{i}", b"\x02" + bytes(rng.randrange(256) for _ in range(300 + 200 * i)))
    seed("bundle", "weights-checkpoint", b"\x03" + checkpoint)


def corpus_reader():
    jsonl = b"".join(json.dumps(d).encode() + b"\n" for d in [
        {"text": "Ticket SUP-1042: the VPN drops every 20 minutes.", "id": 1},
        {"text": "Release notes: \u00e9 \u65e5\u672c \U0001f980", "body": "other"},
        {"body": "only a body field"},
        {"text": "   "},
    ]) + b"\r\n" + b'{"text": "CRLF line"}\r\n'
    seed("corpus_reader", "jsonl-by-extension", b"\x04" + jsonl)
    seed("corpus_reader", "jsonl-body-field", b"\x0a" + jsonl)
    seed("corpus_reader", "jsonl-small-limit", b"\x22" + jsonl)
    seed("corpus_reader", "text-markdown", b"\x01" + (REPO / "docs/vault-format.md").read_bytes()[:2000])
    seed("corpus_reader", "text-invalid-utf8", b"\x11" + b"caf\xc3\xa9 \xff\xfe broken\n")
    seed("corpus_reader", "text-binary", b"\x00" + b"\x7fELF\x02\x01\x01\x00\x00")
    seed("corpus_reader", "jsonl-refusing-sink", b"\x46" + jsonl)


def upload():
    def part(name, value, filename=None, ctype=None):
        disp = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        head = f"Content-Disposition: {disp}\r\n" + (f"Content-Type: {ctype}\r\n" if ctype else "")
        return b"--lethe-fuzz-boundary\r\n" + head.encode() + b"\r\n" + value + b"\r\n"

    end = b"--lethe-fuzz-boundary--\r\n"
    jsonl = b'{"text": "first document"}\n{"text": "second, with a secret AKIAIOSFODNN7EXAMPLE"}\n'
    seed("upload", "form-two-files", part("_csrf", b"0123abcd") + part("name", b"kb") + part("vocab", b"4096")
         + part("holdout", b"0.1") + part("canaries", b"8")
         + part("files", b"# Handbook\n\nOn-call rota.\n", "handbook.md", "text/markdown")
         + part("files", jsonl, "docs.jsonl", "application/octet-stream") + end)
    seed("upload", "form-unknown-field", part("name", b"kb") + part("colour", b"blue")
         + part("files", b"text", "a.txt") + end)
    seed("upload", "form-bad-number", part("name", b"kb") + part("vocab", b"lots") + end)
    seed("upload", "form-odd-names", part("name", b"../kb") + part("files", b"x", "../../etc/passwd")
         + part("files", b"", "") + part("files", b"\x00\x01", "..") + end)


def policy():
    for p in ["policies/default.toml", "policies/demo.toml", "tests/browser/policy.toml"]:
        seed("policy", Path(p).parent.name + "-" + Path(p).name, (REPO / p).read_bytes())


def secret_rules():
    pack = (REPO / "policies/secrets/default.toml").read_bytes()
    seed("secret_rules", "builtin-pack", b"\x00" + pack)
    seed("secret_rules", "small-pack", b"\x00" + b'''id = "acme"
description = "ACME internal tokens"

[[rules]]
id = "acme-token"
category = "secret"
severity = "critical"
regex = \'\'\'\\b(acme_[a-z0-9]{16})\\b\'\'\'
secret_group = 1
keywords = ["acme_"]
entropy = 2.5
[rules.allowlist]
stopwords = ["example"]

[[rules]]
id = "acme-card"
category = "pii"
severity = "high"
regex = \'\'\'\\b(?:\\d[ -]?){13,19}\\b\'\'\'
validate = "luhn"

[allowlist]
regexes = [\'\'\'^acme_0{16}$\'\'\']
''')
    text = ("Contact Jane Doe <jane.doe@example.com>, +44 20 7946 0958. AWS AKIAIOSFODNN7EXAMPLE / "
            "AKIA2E3MOIGXWSHTQJ7Q key, ghp_016xIq6hJ3o3dG0Y1tFqO8b2mZ7aPnCkXwLs token, card 4111 1111 1111 "
            "1111, IBAN GB82 WEST 1234 5698 7654 32, xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx, "
            "Project Nightingale for Ωmega Corp; \u212aelvin \u017fecret; -----BEGIN RSA PRIVATE KEY-----\n")
    seed("secret_rules", "scan-text", b"\x02" + text.encode())
    deny = "# customer deny-list\nProject Nightingale\nΩmega Corp\n  jane doe  \nΣΊΣΥΦΟΣ\n"
    seed("secret_rules", "deny-list", b"\x01" + deny.encode() + SEP + text.encode() + "ΣΊΣΥΦΟΣ σίσυφος".encode())


def ledger(arts):
    seed("ledger_chain", "export-intact", b"\x00" + arts["export.json"])
    export = json.loads(arts["export.json"])
    export["entries"][7]["actor"] = "mallory"
    seed("ledger_chain", "export-edited", b"\x00" + json.dumps(export).encode())
    for i in range(4):
        seed("ledger_chain", f"story-{i}", b"\x01" + bytes(rng.randrange(256) for _ in range(150 + 250 * i)))
    anchors = arts["anchors.jsonl"]
    seed("ledger_anchor", "anchors-file", b"\x00" + anchors)
    seed("ledger_anchor", "anchors-torn", b"\x00" + anchors[: len(anchors) - 40])
    seed("ledger_anchor", "anchor-one", b"\x00" + anchors.split(b"\n")[-2])
    seed("ledger_anchor", "consistency", b"\x01" + arts["consistency.json"])
    seed("ledger_anchor", "bundle-ledger", b"\x02" + arts["bundle-ledger.json"])
    for i, since in enumerate(["2026-11-28T10:00:00Z", "2026-11-28", "2026-11-28T10:00:00.250+02:00", "7d", "90m"]):
        seed("ledger_anchor", f"since-{i}", b"\x03" + since.encode())


def merkle():
    for i in range(6):
        seed("merkle", f"tree-{i}", b"\x00" + bytes(rng.randrange(256) for _ in range(12 + 30 * i)))
    for i in range(3):
        seed("merkle", f"raw-{i}", b"\x01" + bytes(rng.randrange(256) for _ in range(60 + 100 * i)))


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    for old in SEEDS.glob("*/*"):
        if not old.name.startswith("crash-"):
            old.unlink()
    arts = ledger_artifacts(sys.argv[1])
    sealed_stream()
    sealed_corpus()
    bundle(arts)
    corpus_reader()
    upload()
    policy()
    secret_rules()
    ledger(arts)
    merkle()
    total = sum(p.stat().st_size for p in SEEDS.rglob("*") if p.is_file())
    print(f"{sum(1 for p in SEEDS.rglob('*') if p.is_file())} seeds, {total} bytes")


if __name__ == "__main__":
    main()
