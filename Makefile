# Two commands on a fresh clone: `make demo` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-quick bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/dpcstem demo --out demo_output

test: $(STAMP)
	$(BIN)/python -m pytest

# The suite without the end-to-end runs (demo, notebooks, benchmarks, command-line series runs).
QUICK_SKIP := contracts/test_demo contracts/test_notebooks bench/test_bench contracts/test_interrupt test_bias_series
test-quick: $(STAMP)
	$(BIN)/python -m pytest $(foreach t,$(QUICK_SKIP),--ignore=tests/$(t).py)

bench: $(STAMP)
	$(BIN)/dpcstem bench

clean:
	rm -rf $(VENV) demo_output .pytest_cache
