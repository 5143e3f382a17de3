# geventpool developer commands.  `make test` is what CI runs.
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin
STAMP = $(VENV)/.installed

.PHONY: test lint typecheck pytest demo bench soak system-deps clean

$(STAMP): setup.cfg setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -U pip
	$(BIN)/python -m pip install -q -e '.[test,dev]'
	touch $(STAMP)

system-deps:
	./scripts/system-deps.sh

lint: $(STAMP)
	$(BIN)/ruff check geventpool tests examples benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy --strict geventpool

pytest: $(STAMP)
	$(BIN)/pytest

test: system-deps $(STAMP) lint typecheck pytest

demo:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -e .
	$(BIN)/python examples/demo.py

bench: $(STAMP)
	$(BIN)/python benchmarks/overhead.py

soak: system-deps $(STAMP)
	$(BIN)/pytest -m slow --run-slow

clean:
	rm -rf $(VENV) build dist *.egg-info .mypy_cache .ruff_cache .pytest_cache
