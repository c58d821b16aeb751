# Two commands: `make demo` and `make test`. Each bootstraps .venv on first use.
# While working: `make test-fast` (everything but tests/acceptance/).
# Another interpreter gets a venv of its own, named by its version:
#   make test PYTHON=~/.pyenv/versions/3.13.0/bin/python   # builds and uses .venv-3.13
PYTHON ?= python3
ifeq ($(origin PYTHON),file)
VENV   ?= .venv
else
PY_VERSION := $(shell $(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])')
ifeq ($(PY_VERSION),)
$(error PYTHON=$(PYTHON) does not run)
endif
VENV   ?= .venv-$(PY_VERSION)
endif
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test test-fast lint typecheck pytest pytest-fast bench clean

$(STAMP): pyproject.toml setup.py web/package-lock.json
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/opsconsole demo $(DEMO_ARGS)

test: lint typecheck pytest

# The contributor's loop: lint, types and every test but those under tests/acceptance/ (marked
# `acceptance`: end to end, with npm, Chromium, OpenSSH's ssh client or a process of their own).
test-fast: lint typecheck pytest-fast

lint: $(STAMP)
	$(BIN)/ruff check opsconsole tests testkit bench
	$(BIN)/ruff format --check opsconsole tests testkit bench

typecheck: $(STAMP)
	$(BIN)/mypy

# pytest exits 5 when it collected no test; make treats that as the failure it is.
pytest: $(STAMP)
	$(BIN)/python -W error -m pytest $(PYTEST_ARGS)

# Three workers on two cores (many tests wait on sockets and timers, not the CPU); worksteal
# evens out the few long whole-heap tests at the end.
pytest-fast: $(STAMP)
	$(BIN)/python -W error -m pytest -m 'not acceptance' -n 3 --dist worksteal $(PYTEST_ARGS)

# Each script prints ratios measured side by side and one BENCH line per figure, collected in
# bench/results.txt; bench/table.py then rewrites the table in bench/README.md from them.
BENCH_SCRIPTS := import_cost login census leaks heapdiff heapsnapshot profiler_overhead stall \
	repl_pipe repl_patches wake_loop terminal session_churn flood slowloris
bench: $(STAMP)
	rm -f bench/results.txt
	for script in $(BENCH_SCRIPTS); do \
		BENCH_RESULTS=bench/results.txt $(BIN)/python bench/$$script.py || exit 1; \
	done
	$(BIN)/python bench/table.py bench/results.txt

clean:
	rm -rf .venv .venv-3.* build *.egg-info .mypy_cache .ruff_cache .pytest_cache
