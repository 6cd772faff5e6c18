# Two entry points: `make demo` and `make test`. Both create .venv on first use.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
SUM := $(shell cat pyproject.toml | cksum | cut -d' ' -f1)
STAMP := $(VENV)/.installed-$(SUM)
# The demo needs only the base package (planner, JAX simulator, reports): no torch, ray or docs.
# Every installed module is compiled once, at install: where PYTHONDONTWRITEBYTECODE is set (as on
# these machines) nothing is compiled later, and a test run without .pyc files took 984 s of tests
# instead of about 610 (measured 2026-12-03). pip compiles one file at a time; compileall -j 0
# uses every core (the dev install: 113 s -> 92 s on 2 cores). The source tree too, since every
# command a test starts imports it (a stale .pyc is ignored, never used). One file of torch's
# test helpers is Python 3.12 syntax, which pip skipped as well.
COMPILE := -m compileall -q -j 0 -x 'py312_intrinsics' $(VENV)/lib src
BASE := $(VENV)/.base-$(SUM)

.PHONY: demo test test-fast test-lmeval install clean docs

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q --no-compile -e '.[dev]'
	$(BIN)/python $(COMPILE)
	rm -f $(VENV)/.installed-* $(VENV)/.base-*
	touch $(STAMP) $(BASE)

$(BASE): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --no-compile -e .
	$(BIN)/python $(COMPILE)
	rm -f $(VENV)/.base-*
	touch $(BASE)

install: $(STAMP)

demo: $(BASE)
	$(BIN)/raretask plan --width 16 --width 64 --width 256
	$(BIN)/raretask study phase --preset quick --out runs/phase-quick
	$(BIN)/raretask study retention --preset quick --out runs/retention-quick
	@echo
	@echo "What was computed and what the verdicts mean:"
	$(BIN)/raretask explain runs/phase-quick runs/retention-quick

# Two workers (pytest-xdist), one per core, handed one test at a time, longest first (see
# tests/conftest.py); `make test-fast` leaves out the tests marked slow.
test: install
	$(BIN)/python -m pytest -n 2 --maxschedchunk 1

test-fast: install
	$(BIN)/python -m pytest -n 2 --maxschedchunk 1 -m "not slow"

# lm-evaluation-harness on the exported tasks (the lmeval extra, outside dev: its dependencies
# would lengthen every CI install); `make test` skips that one test and says so.
test-lmeval: install
	$(BIN)/python -m pip install -q -e '.[lmeval]'
	$(BIN)/python -m pytest tests/test_lm_lmeval.py

# The documentation site in site/ (docs/, mkdocs.yml); warnings fail the build.
docs: install
	$(BIN)/python -m pip install -q -e '.[docs]'
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

clean:
	rm -rf $(VENV) runs
