# Everything runs from a project-local virtualenv that these targets create.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
DEMO   := demo

.PHONY: demo test bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

## Write a sample workspace, index it, show its stats and export its training rows.
demo: $(STAMP)
	rm -rf $(DEMO)
	$(BIN)/catalog sample $(DEMO)/workspace
	$(BIN)/catalog --db $(DEMO)/catalog.db index $(DEMO)/workspace
	$(BIN)/catalog --db $(DEMO)/catalog.db stats
	$(BIN)/catalog --db $(DEMO)/catalog.db export $(DEMO)/selection_only_log.csv
	$(BIN)/catalog --db $(DEMO)/catalog.db export-anomalies $(DEMO)/anomaly_cases.csv

# The browser tests drive the operating system's Chromium (Playwright's own
# browser download needs the internet); install it from Debian when missing.
CHROMIUM := /usr/bin/chromium
$(CHROMIUM):
	@if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else echo "the browser tests need Chromium: run 'sudo apt-get install chromium'" >&2; exit 1; fi

## Lint, type-check, then run the whole test suite.
test: $(STAMP) $(CHROMIUM)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python -m pytest

## Benchmark against the physical floor (see bench/README section in README.md).
bench: $(STAMP)
	$(BIN)/python bench/bench.py

clean:
	rm -rf $(VENV) $(DEMO) .pytest_cache
