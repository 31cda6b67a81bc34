# The two quickstart commands, and the rest of the checks. Each target sets up what it needs.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: plan test lint tools bench clean

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
	$(BIN)/mypy modelyard infra platform policies/governance

# promtool checks and unit-tests the alert rules: Debian's `prometheus` package (2.42) ships it.
tools:
	@command -v promtool >/dev/null || { \
	  echo "installing promtool (Debian package prometheus)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq prometheus >/dev/null; }

## test: lint, type-check and the whole test suite
test: lint tools
	$(BIN)/python -m pytest

## bench: offline-plan scaling (1x, 10x, 50x GPU pools), and policy + cost on a 10,000-resource preview
bench: $(VENV)/.installed
	$(BIN)/python benchmarks/plan_scaling.py
	$(BIN)/python benchmarks/governance_scale.py

clean:
	rm -rf $(VENV) out .pytest_cache .mypy_cache .ruff_cache
