# The README's two commands are the contract: `make demo` and `make test`, from a fresh clone.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
export NUMBA_CACHE_DIR ?= $(CURDIR)/.venv/numba-cache

.PHONY: demo test validate bench lint venv clean

$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "error: no python3.11 or python3 found; install Python 3.11+"; exit 2; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/insitu demo --out insitu-demo

test: $(STAMP)
	$(PY) -m pytest -n 2 --dist loadfile -q tests

validate: $(STAMP)
	$(PY) -m insitu.validation --out validation/REPORT.md

# peers that pin their own numpy/scipy (k-wave-python) live in a venv of their own, run as subprocesses
PEERS := .venv-peers/.installed-stamp
$(PEERS):
	test -x .venv-peers/bin/python || $(PYTHON) -m venv .venv-peers
	.venv-peers/bin/python -m pip install --quiet "k-wave-python==0.6.2"
	touch $(PEERS)

bench: $(STAMP) $(PEERS)
	$(PY) -m pip install --quiet -e ".[dev,bench]"
	$(PY) benchmarks/run.py --out benchmarks/results.json

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks

clean:
	rm -rf $(VENV) .venv-peers insitu-demo .pytest_cache .ruff_cache
