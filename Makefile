# Two commands do all set-up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: install browser shellcheck run test lint api-lint unit integration e2e bench bench-growth chaos fuzz clean deploy-check

# Installs the pinned project (pyproject.toml) with its transitive pins (constraints.txt).
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# checkov pins boto3==1.35.49, which conflicts with ours, so it lives in a venv of its own,
# like any other CLI tool; only the deploy checks call it.
CHECKOV_VENV := .venv-checkov
CHECKOV      := $(CHECKOV_VENV)/bin/checkov
$(CHECKOV):
	test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --quiet --disable-pip-version-check checkov==3.3.30

# Renders deploy/kubernetes, validates every manifest offline (kubernetes-validate) and runs
# checkov's Kubernetes and Dockerfile checks, and its CloudFormation checks on the AWS connect
# templates of both levels (about 15 s once checkov is installed).
deploy-check: $(STAMP) $(CHECKOV)
	CHECKOV=$(CHECKOV) $(BIN)/pytest tests/deploy -q

# The console's browser tests drive Debian's Chromium: Playwright never downloads a browser.
# Installed from the Debian archive only when missing (CI runs as root; elsewhere via sudo).
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
browser:
	@test -x /usr/bin/chromium || { $(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium; }

# `shellcheck -o all` reads every setup script we generate (tests/integration/test_setup_scripts.py);
# Debian's package, installed the same way as the browser.
shellcheck:
	@command -v shellcheck >/dev/null || { $(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq shellcheck; }

run: $(STAMP)
	$(BIN)/clusterflow dev

lint: $(STAMP)
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests
	$(BIN)/mypy
	$(BIN)/lint-imports

# The OpenAPI document against the OWASP API Security ruleset (Spectral, from npm, pinned in
# api-lint/package-lock.json); justified exceptions are in api-lint/.spectral.yaml.
api-lint: $(STAMP)
	test -x api-lint/node_modules/.bin/spectral || (cd api-lint && npm ci --no-audit --no-fund --silent)
	mkdir -p .clusterflow
	$(BIN)/clusterflow openapi > .clusterflow/openapi.json
	api-lint/node_modules/.bin/spectral lint .clusterflow/openapi.json --ruleset api-lint/.spectral.yaml --fail-severity error

# Two workers (pytest-xdist), one per core, each with its own PostgreSQL and Temporal (session
# fixtures); a file's tests stay on one worker, so module fixtures are built once. Most tests wait
# on I/O, so two workers halve the wall time (3.7 min against 6.7 on 2 cores, 2026-11-24).
test: lint api-lint browser shellcheck $(CHECKOV)
	CHECKOV=$(CHECKOV) $(BIN)/pytest -n 2 --dist loadfile

fuzz: $(STAMP)
	CLUSTERFLOW_FUZZ_EXAMPLES=200 CLUSTERFLOW_FUZZ_SECONDS=600 $(BIN)/pytest tests/integration/test_fuzz.py

unit: $(STAMP)
	$(BIN)/pytest tests/unit

integration: $(STAMP)
	$(BIN)/pytest tests/integration

e2e: $(STAMP) browser
	$(BIN)/pytest tests/e2e

# Not part of `make test`: measures the control plane beside raw Temporal and PostgreSQL
# (tests/perf/bench_*.py in turn), then merges their reports into .clusterflow/bench/report.{json,md}.
# BENCH_SCALE=0.25 scales the operation counts down (the report says so).
bench: $(STAMP)
	@command -v wrk >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get install -y -qq wrk >/dev/null 2>&1; } \
		|| echo "wrk is not installed: the enqueue and polling figures use httpx clients"
	@for script in tests/perf/bench_*.py; do case $$script in *bench_growth.py) continue;; esac; \
		echo "== $$script"; $(BIN)/python $$script || exit 1; done
	$(BIN)/python tests/perf/report.py

# Not part of `make test` or `make bench`: fills a database with 10k, 100k and 1M operations of history
# (COPY) and measures the API's lists, reads, export and enqueue at each size beside the empty
# database (tests/perf/bench_growth.py; about 20 min on 2 cores). BENCH_GROWTH_SIZES=2000,20000
# for a quick run. Writes .clusterflow/bench/growth.{json,md} and one PNG chart per measure.
BENCH_GROWTH_SIZES ?= 10000,100000,1000000
bench-growth: $(STAMP)
	$(BIN)/python tests/perf/bench_growth.py --sizes $(BENCH_GROWTH_SIZES)

# Breaks the real processes at the sizes of issue 10; each scenario prints a VERDICT line.
# (`make test` runs the short version of the same scripts.)
chaos: $(STAMP)
	@mkdir -p .clusterflow
	@CHAOS_FULL=1 $(BIN)/pytest tests/chaos -m chaos -s -q -p no:cacheprovider > .clusterflow/chaos.log 2>&1; \
		status=$$?; grep -E "VERDICT|passed|failed" .clusterflow/chaos.log; exit $$status

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) .pytest_cache .mypy_cache .ruff_cache
