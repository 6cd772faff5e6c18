# Two entry points: `make demo` and `make test`. Both create .venv on first use.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: demo test install clean docs

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/raretask plan --width 16 --width 64 --width 256
	$(BIN)/raretask study phase --preset quick --out runs/phase-quick
	$(BIN)/raretask study retention --preset quick --out runs/retention-quick
	@echo
	@echo "Reports: runs/phase-quick/report.html  runs/retention-quick/report.html"

test: install
	$(BIN)/python -m pytest

# The documentation site in site/ (docs/, mkdocs.yml); warnings fail the build.
docs: install
	$(BIN)/python -m pip install -q -e '.[docs]'
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

clean:
	rm -rf $(VENV) runs
