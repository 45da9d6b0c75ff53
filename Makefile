# Everything runs from a project-local virtualenv that these targets create.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
DEMO   := demo

.PHONY: demo test bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test,postgres]'
	touch $(STAMP)

## Write a sample workspace, index it, show its stats and export its training rows.
demo: $(STAMP)
	rm -rf $(DEMO)
	$(BIN)/catalog sample $(DEMO)/workspace
	$(BIN)/catalog --db $(DEMO)/catalog.db index $(DEMO)/workspace
	$(BIN)/catalog --db $(DEMO)/catalog.db stats
	$(BIN)/catalog --db $(DEMO)/catalog.db export $(DEMO)/selection_only_log.csv
	$(BIN)/catalog --db $(DEMO)/catalog.db export-anomalies $(DEMO)/anomaly_cases.csv
	$(BIN)/catalog --db $(DEMO)/catalog.db crops
	$(BIN)/catalog --db $(DEMO)/catalog.db export-crops $(DEMO)/crops.csv
	$(BIN)/catalog --db $(DEMO)/catalog.db sql "SELECT project, final_path, x1, y1, x2, y2, status FROM crops ORDER BY project, final_path"
	$(BIN)/catalog --db $(DEMO)/catalog.db review $(DEMO)/review

# The browser tests drive the operating system's Chromium (Playwright's own
# browser download needs the internet); install it from Debian when missing.
CHROMIUM := /usr/bin/chromium
$(CHROMIUM):
	@if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else echo "the browser tests need Chromium: run 'sudo apt-get install chromium'" >&2; exit 1; fi

# The PostgreSQL tests start their own server (tests/pg.py) from the system's
# PostgreSQL programs; install them from Debian when missing, without a cluster.
PG_CTL := $(firstword $(wildcard /usr/lib/postgresql/*/bin/pg_ctl) $(shell command -v pg_ctl 2>/dev/null))
.PHONY: postgresql
postgresql:
	@if [ -z "$(PG_CTL)" ]; then \
	  if [ "$$(id -u)" = 0 ]; then mkdir -p /etc/postgresql-common && \
	    echo 'create_main_cluster = false' > /etc/postgresql-common/createcluster.conf && \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; \
	  else echo "the PostgreSQL tests need PostgreSQL 14+: run 'sudo apt-get install postgresql'" >&2; exit 1; fi; fi

## Lint, type-check, then run the whole test suite.
# In parallel (pytest-xdist): one worker per core, each with its own PostgreSQL
# server; the crash tests of one backend stay together in one worker (loadgroup).
test: $(STAMP) $(CHROMIUM) postgresql
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python -m pytest -n auto --dist loadgroup

## Benchmark against the physical floor (see bench/README section in README.md).
bench: $(STAMP)
	$(BIN)/python bench/bench.py

clean:
	rm -rf $(VENV) $(DEMO) .pytest_cache
