# Two entry points on a fresh machine: `make demo` and `make test`. Both build .venv on first use, from the lock of
# the chosen Python (requirements/dev-py<X.Y>.txt, exact versions and hashes): `make test PYTHON=python3.12` builds
# .venv on 3.12 (a .venv of another Python, or one older than the lock, is rebuilt from scratch).
PYTHON ?= python3
PYTHON_BIN := $(shell scripts/find_python.sh $(PYTHON))
ifeq ($(PYTHON_BIN),)
$(error Python interpreter '$(PYTHON)' not found; pass PYTHON=python3.11 or PYTHON=python3.12)
endif
PY_VERSION := $(shell $(PYTHON_BIN) -c 'import sys; print("%d.%d" % sys.version_info[:2])')
# The Python versions the README claims; each has a lock, and `make lock` writes all of them.
LOCKED_PYTHONS := 3.11 3.12
LOCK := requirements/dev-py$(PY_VERSION).txt
# openpi-client, the real client the policy server is tested against: it pins numpy<2 but works with numpy 2, so it
# is installed with --no-deps from its own hashed file, next to the lock.
OPENPI_LOCK := requirements/openpi-client.txt
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-py$(PY_VERSION)
LATEST_VENV := .venv-latest/py$(PY_VERSION)
# Two pytest-xdist workers (about half the wall time of one on 2 cores; each test keeps torch's 2 threads, so the
# learning tests compute what they compute alone). PYTEST_WORKERS=0 runs in one process.
PYTEST_WORKERS ?= 2
PYTEST_ARGS ?= -n $(PYTEST_WORKERS) --durations=25
# The suite, after a Python interpreter; pytest's exit code 5 (no test collected) is a failure.
RUN_SUITE = -m pytest -q $(PYTEST_ARGS) tests; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing"; exit 1; fi; exit $$rc
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: install demo test test-latest test-libero lock lint bench clean

$(STAMP): $(LOCK) $(OPENPI_LOCK) setup.py
	rm -rf $(VENV)
	$(PYTHON_BIN) -m venv $(VENV)
	$(PY) -m pip install -q --require-hashes -r $(LOCK)
	$(PY) -m pip install -q --require-hashes --no-deps -r $(OPENPI_LOCK)
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

requirements/dev-py%.txt:
	@echo "no lock for Python $* (locked: $(LOCKED_PYTHONS)): pass PYTHON=python3.11 or PYTHON=python3.12," \
	      "or add $* to LOCKED_PYTHONS in the Makefile and run make lock" >&2; exit 1

install: $(STAMP)

demo: $(STAMP)
	$(PY) examples/demo_waypoint.py --output_dir demo_output

test: $(STAMP)
	$(PY) $(RUN_SUITE)

# The drift check: the newest versions setup.py allows, in a separate venv, then the suite. It prints each package
# whose version differs from the lock. Green: move the lock forward with `make lock` (CONTRIBUTING.md).
test-latest:
	test -x $(LATEST_VENV)/bin/python || $(PYTHON_BIN) -m venv $(LATEST_VENV)
	$(LATEST_VENV)/bin/python -m pip install -q --upgrade pip
	$(LATEST_VENV)/bin/python -m pip install -q --upgrade --upgrade-strategy eager -e ".[dev]"
	$(LATEST_VENV)/bin/python -m pip install -q --no-deps -r $(OPENPI_LOCK)
	$(LATEST_VENV)/bin/python scripts/lock_drift.py $(LOCK)
	$(LATEST_VENV)/bin/python $(RUN_SUITE)

# Rewrite every lock from scratch (the newest versions setup.py allows) with pip-tools' pip-compile; one version:
# `scripts/lock.sh python3.12`, one package: `scripts/lock.sh python3.11 --upgrade-package trl`.
lock:
	for v in $(LOCKED_PYTHONS); do scripts/lock.sh python$$v || exit 1; done
	scripts/lock_openpi.sh

# Closed-loop LIBERO in the real simulator (the `libero` extra, ~1.9 GB; offscreen EGL, CPU is enough).
test-libero: $(STAMP)
	$(PY) -m pip install -q -e ".[libero]"
	MUJOCO_GL=egl $(PY) -m pytest -q -m slow tests/test_libero_eval.py

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests examples scripts benchmarks

bench: $(STAMP)
	for f in benchmarks/bench_*.py; do $(PY) $$f || exit 1; done

clean:
	rm -rf demo_output .pytest_cache build *.egg-info src/*.egg-info
