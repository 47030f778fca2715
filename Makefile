# Lethe: the two commands a newcomer types are `make demo` and `make test`; both set up what is missing.
#
# libtorch comes from the PyTorch wheel on PyPI (torch==2.11.0, the version tch 0.24 is built for),
# installed into .venv. torch-sys finds it through LIBTORCH_USE_PYTORCH and the venv's python; build.rs
# then bakes an rpath into the binary, so `bin/lethe` runs without LD_LIBRARY_PATH.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c

TORCH_VERSION := 2.11.0
VENV := $(CURDIR)/.venv
TORCH_STAMP := $(VENV)/.torch-$(TORCH_VERSION)
BIN := target/release/lethe
DEMO_DIR ?= $(CURDIR)/demo-data
# Where `make demo` serves the console at the end.
DEMO_PORT ?= 8080

export LIBTORCH_USE_PYTORCH := 1
export VIRTUAL_ENV := $(VENV)
export PATH := $(VENV)/bin:$(HOME)/.cargo/bin:$(PATH)

.PHONY: setup build test lint demo clean help gpu-bundle

help:
	@echo "make demo    set up, build, and run the chain on a synthetic corpus"
	@echo "make test    set up, build, lint and run every test"
	@echo "make setup   create .venv with torch==$(TORCH_VERSION) (about 4.6 GB) if missing"
	@echo "make build   build bin/lethe (release)"
	@echo "make gpu-bundle  stripped lethe and benchmark binaries in .device/ for bench/gpu.sh on a GPU host"

setup: $(TORCH_STAMP)

$(TORCH_STAMP):
	@command -v cargo >/dev/null || { echo "error: cargo (Rust) is required: https://rustup.rs"; exit 1; }
	@test -x $(VENV)/bin/python || python3 -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check "torch==$(TORCH_VERSION)"
	@$(VENV)/bin/python -c "import torch, sys; v = torch.__version__; sys.exit(0 if v.startswith('$(TORCH_VERSION)') else f'torch {v} installed, $(TORCH_VERSION) needed')"
	@touch $@

build: setup
	cargo build --release --locked
	@mkdir -p bin && ln -sf ../$(BIN) bin/lethe

lint: setup
	cargo fmt --check
	cargo clippy --release --locked --all-targets -- -D warnings

# Unit tests run one at a time: several model tests seed and draw from libtorch's process-wide random
# generator, and a test running beside them would consume draws between a seed and its use. Integration
# tests run each `lethe` in its own process and stay parallel. The browser test (Debian's chromium driven
# by playwright-core; tests/browser/run.sh installs both when missing) walks a release through the console.
test: build lint
	cargo test --release --locked --lib -- --test-threads=1
	cargo test --release --locked --test '*'
	bash tests/browser/run.sh
	bash deploy/systemd/verify.sh

DEMO_CORPUS := $(DEMO_DIR)-corpus

demo: build
	@rm -rf "$(DEMO_DIR)" "$(DEMO_CORPUS)"
	@echo "== lethe init (a fresh data directory: $(DEMO_DIR))"
	bin/lethe --data-dir "$(DEMO_DIR)" --json init > "$(DEMO_DIR).init.json"
	@python3 -c "import json; d=json.load(open('$(DEMO_DIR).init.json')); print('initialised', d['data_dir'], '| master key', d['master_key_id'], '| signing key', d['signing_public_key'][:16] + '...', '| first admin', d['admin_username'])"
	@mkdir -p "$(DEMO_DIR)/users" && mv "$(DEMO_DIR).init.json" "$(DEMO_DIR)/users/admin.json"
	scripts/demo-users.sh "$(DEMO_DIR)"
	@echo "== lethe doctor"
	bin/lethe --data-dir "$(DEMO_DIR)" doctor
	@echo "== lethe corpus synth: a fictional company's knowledge base, with planted secrets"
	bin/lethe corpus synth --out "$(DEMO_CORPUS)" --docs 2000 --seed 7
	@echo "== lethe corpus ingest: read once, sealed from here on, canaries planted"
	bin/lethe --data-dir "$(DEMO_DIR)" corpus ingest --name kb --vocab 4096 --holdout 0.1 --canaries 8 --canary-repeats 1,4,16,64 "$(DEMO_CORPUS)"
	@echo "== lethe corpus verify"
	bin/lethe --data-dir "$(DEMO_DIR)" corpus verify kb
	bin/lethe --data-dir "$(DEMO_DIR)" corpus show kb
	@echo "== lethe train: a tiny masked diffusion model, 8 passes over 200k tokens of the corpus (a few minutes on a CPU);"
	@echo "   checkpoints at epochs 1, 2, 4 and 8 are kept, each scored on held-out text when saved"
	LETHE_PASSWORD=$$(python3 -c "import json; print(json.load(open('$(DEMO_DIR)/users/olga.json'))['one_time_password'])") \
	bin/lethe --data-dir "$(DEMO_DIR)" --json train --user olga --corpus kb --preset tiny --context 128 --unique-tokens 200000 \
		--epochs 8 --batch-size 16 > "$(DEMO_DIR)/train.json"
	@echo "== lethe train --objective ar: the matched autoregressive baseline, same model and data"
	LETHE_PASSWORD=$$(python3 -c "import json; print(json.load(open('$(DEMO_DIR)/users/olga.json'))['one_time_password'])") \
	bin/lethe --data-dir "$(DEMO_DIR)" --json train --user olga --corpus kb --objective ar --preset tiny --context 128 \
		--unique-tokens 200000 --epochs 8 --batch-size 16 > "$(DEMO_DIR)/train-ar.json"
	@run=$$(python3 -c "import json; print(json.load(open('$(DEMO_DIR)/train.json'))['run_id'])"); \
	ar=$$(python3 -c "import json; print(json.load(open('$(DEMO_DIR)/train-ar.json'))['run_id'])"); \
	bin/lethe --data-dir "$(DEMO_DIR)" runs show $$run; \
	echo "== lethe sample: continue a prompt, then fill a masked span"; \
	bin/lethe --data-dir "$(DEMO_DIR)" sample --run $$run --prompt "Ticket: SUP-" --length 48 --block-length 8 \
		--temperature 0.8 --seed 1 --num 2; \
	bin/lethe --data-dir "$(DEMO_DIR)" sample --run $$run --infill "Subject: [MASK] request" --span 6 --temperature 0.8 --seed 1; \
	echo "== the diffusion run goes through the whole release from the command line"; \
	scripts/demo-release.sh "$(DEMO_DIR)" $$run; \
	echo "== the bundle's weights load in Python with the safetensors package:"; \
	echo "   python3 -m venv /tmp/st && /tmp/st/bin/pip install -q safetensors numpy && /tmp/st/bin/python -c \"from safetensors.numpy import load_file; w = load_file('$(DEMO_DIR)/bundle/model.safetensors'); print(len(w), 'tensors', sum(v.size for v in w.values()), 'parameters')\""; \
	echo "== diffusion against AR at matched utility (held-out continuation choice), not at equal epochs"; \
	scripts/demo-compare.sh "$(DEMO_DIR)" $$run $$ar; \
	echo "== the autoregressive baseline, same model, data and epochs, waits for review in the console"; \
	scripts/demo-console.sh "$(DEMO_DIR)" $$ar $(DEMO_PORT)

# What a GPU host without a Rust toolchain needs for bench/gpu.sh (../shared/GPU.md): the stripped binaries,
# small enough to travel with the tree; the host's own torch 2.11 provides libtorch.
gpu-bundle: setup
	cargo build --release --locked --bin lethe --example train_speed --example sample_speed
	@mkdir -p .device
	strip -o .device/lethe $(BIN)
	strip -o .device/train_speed target/release/examples/train_speed
	strip -o .device/sample_speed target/release/examples/sample_speed
	@du -ch .device/* | tail -n1

clean:
	cargo clean
	rm -rf bin "$(DEMO_DIR)" "$(DEMO_DIR)-corpus"

# Coverage-guided fuzzing (fuzz/README.md): cargo-fuzz targets for the sealed-stream and sealed-corpus
# readers, the release bundle, the ingest and upload readers, the policy and secret-rule parsers, and the
# ledger verifier. `make fuzz` runs each target for FUZZ_SECONDS from its seeds (the corpus it grows stays
# in fuzz/corpus/); `make fuzz-smoke` replays every seed and fuzzes each target for FUZZ_SMOKE_SECONDS.
# Either fails on a crash, a hang or an oversized allocation and prints the reproducer's path. cargo-fuzz
# runs on the stable toolchain: RUSTC_BOOTSTRAP lets it pass libFuzzer's nightly-only flags. No sanitizer:
# the code under test is safe Rust, and what is looked for is a panic, a hang or unbounded allocation.
FUZZ_SECONDS ?= 60
FUZZ_SMOKE_SECONDS ?= 15
FUZZ_TARGET_DIR ?= $(CURDIR)/fuzz/target
FUZZ_TARGETS := sealed_stream sealed_corpus bundle corpus_reader upload policy secret_rules ledger_chain \
	ledger_anchor merkle
FUZZ_BIN_DIR = $(FUZZ_TARGET_DIR)/$(shell rustc -vV | sed -n 's/^host: //p')/release

.PHONY: fuzz fuzz-smoke fuzz-build

fuzz-build: setup
	@command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
	cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz build --sanitizer none --codegen-units 16 \
		--target-dir "$(FUZZ_TARGET_DIR)"

fuzz: fuzz-build
	bash fuzz/run.sh $(FUZZ_SECONDS) "$(FUZZ_BIN_DIR)" $(FUZZ_TARGETS)

fuzz-smoke: fuzz-build
	bash fuzz/run.sh --smoke $(FUZZ_SMOKE_SECONDS) "$(FUZZ_BIN_DIR)" $(FUZZ_TARGETS)
