# Two entry points: `make demo` and `make test`. Both create .venv on first use.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
SUM := $(shell cat pyproject.toml | cksum | cut -d' ' -f1)
STAMP := $(VENV)/.installed-$(SUM)
# The demo needs only the base package (planner, JAX simulator, reports): no torch, ray or docs.
# Python compiles each module it imports and keeps the bytecode beside it, so a later import is
# read, not compiled again; where PYTHONDONTWRITEBYTECODE is set (as on these machines) it keeps
# nothing and every command compiles torch, transformers and JAX again (a test run took 984 s of
# tests instead of about 610). Our recipes run without that variable, so each module is compiled
# at its first import, once: about 4,700 of the dev install's 21,000 files are ever imported, and
# compiling them all at install (compileall -j 0) took 54 s of a 110 s install on 2 cores.
unexport PYTHONDONTWRITEBYTECODE
BASE := $(VENV)/.base-$(SUM)

.PHONY: demo test test-fast test-lmeval install clean docs

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q --no-compile -e '.[dev]'
	rm -f $(VENV)/.installed-* $(VENV)/.base-*
	touch $(STAMP) $(BASE)

$(BASE): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --no-compile -e .
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
