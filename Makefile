# Two entry points on a fresh machine: `make demo` and `make test`. Both build .venv on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-dev
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: install demo test test-libero lint bench clean

$(STAMP): setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	# the real openpi client, to test the policy server against (it pins numpy<2, but works with numpy 2)
	$(PY) -m pip install -q --no-deps openpi-client==0.1.2
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) examples/demo_waypoint.py --output_dir demo_output

test: $(STAMP)
	$(PY) -m pytest -q tests; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing"; exit 1; fi; exit $$rc

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
