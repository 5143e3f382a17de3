# geventpool developer commands.  `make test` is what CI runs.
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin
STAMP = $(VENV)/.installed

#: The other Pythons setup.cfg claims (3.11 is $(PYTHON)); CI runs the whole suite on each.
OTHER_PYTHONS ?= 3.10 3.12

.PHONY: test test-pythons lint typecheck pytest pytest-pure demo examples docs bench bench-peers soak package system-deps clean

$(STAMP): setup.cfg setup.py geventpool/_speedups.c geventpool/dbapi/_speedups.c geventpool/_slots.h
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -U pip
	$(BIN)/python -m pip install -q -e '.[test,dev]'
	touch $(STAMP)

system-deps:
	./scripts/system-deps.sh

lint: $(STAMP)
	$(BIN)/ruff check geventpool tests examples benchmarks scripts docs

typecheck: $(STAMP)
	$(BIN)/mypy --strict geventpool

# CI requires the C speedups to be built (a failed build would silently test the Python code only);
# pytest-pure runs the core's tests again on the pure-Python code, which users without a compiler get
# (the DB-API pool's Python paths run in every test of tests/dbapi/test_fast_paths.py either way).
pytest: $(STAMP)
	GEVENTPOOL_REQUIRE_SPEEDUPS=1 $(BIN)/pytest

pytest-pure: $(STAMP)
	GEVENTPOOL_PURE_PYTHON=1 $(BIN)/pytest -q -p no:cacheprovider tests/core tests/testing \
	    tests/dbapi/test_fast_paths.py

# What CI runs: system packages (as root), lint, types, and the whole suite
# (the suite builds the docs with -W and runs every example), then the suite again
# on every other Python that setup.cfg claims.
test: system-deps $(STAMP) lint typecheck pytest pytest-pure test-pythons

# A missing interpreter fails the target: a version is claimed only where the suite ran.
test-pythons: system-deps
	set -e; for version in $(OTHER_PYTHONS); do \
	    venv=.venv-python$$version; \
	    py=$$(./scripts/find-python.sh $$version); \
	    [ -x $$venv/bin/python ] || $$py -m venv $$venv; \
	    $$venv/bin/python -m pip install -q -U pip; \
	    $$venv/bin/python -m pip install -q -e '.[test,dev]'; \
	    echo "== the suite on $$($$venv/bin/python --version)"; \
	    GEVENTPOOL_REQUIRE_SPEEDUPS=1 $$venv/bin/pytest -q -p no:cacheprovider; \
	done

demo:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -e .
	$(BIN)/python examples/demo.py $(DEMO_ARGS)

examples: $(STAMP)
	$(BIN)/pytest -q tests/examples

docs: $(STAMP)
	$(BIN)/python scripts/bad_input_table.py
	$(BIN)/sphinx-build -W -b html docs docs/_build/html

bench-peers: $(STAMP)
	$(BIN)/python benchmarks/peers/setup_peers.py

bench: system-deps $(STAMP) bench-peers
	$(BIN)/python -m pip install -q -e '.[bench]'
	$(BIN)/python scripts/bench.py
	$(BIN)/python benchmarks/failover.py --output benchmarks/results/failover.md --json benchmarks/results/failover.json

soak: system-deps $(STAMP)
	$(BIN)/pytest -m slow --run-slow
	$(BIN)/python scripts/soak.py

package: $(STAMP)
	./scripts/check-package.sh $(BIN)/python

clean:
	rm -rf $(VENV) .venv-python3.* build dist *.egg-info .mypy_cache .ruff_cache .pytest_cache docs/_build
