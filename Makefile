# Two commands do all set-up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: install run test lint unit integration e2e bench chaos fuzz clean

# Installs the pinned project (pyproject.toml) with its transitive pins (constraints.txt).
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/clusterflow dev

lint: $(STAMP)
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests
	$(BIN)/mypy
	$(BIN)/lint-imports

test: lint
	$(BIN)/pytest

unit: $(STAMP)
	$(BIN)/pytest tests/unit

integration: $(STAMP)
	$(BIN)/pytest tests/integration

e2e: $(STAMP)
	$(BIN)/pytest tests/e2e

# Not part of `make test`: measures the control plane beside raw Temporal and PostgreSQL
# (tests/perf/bench_*.py in turn), then merges their reports into .clusterflow/bench/report.{json,md}.
# BENCH_SCALE=0.25 scales the operation counts down (the report says so).
bench: $(STAMP)
	@command -v wrk >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get install -y -qq wrk >/dev/null 2>&1; } \
		|| echo "wrk is not installed: the polling figure uses a multi-process httpx client"
	@for script in tests/perf/bench_*.py; do echo "== $$script"; $(BIN)/python $$script || exit 1; done
	$(BIN)/python tests/perf/report.py

# Breaks the real processes at the sizes of issue 10; each scenario prints a VERDICT line.
# (`make test` runs the short version of the same scripts.)
chaos: $(STAMP)
	@mkdir -p .clusterflow
	@CHAOS_FULL=1 $(BIN)/pytest tests/chaos -m chaos -s -q -p no:cacheprovider > .clusterflow/chaos.log 2>&1; \
		status=$$?; grep -E "VERDICT|passed|failed" .clusterflow/chaos.log; exit $$status

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
