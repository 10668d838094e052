# Entry points: `make demo` runs the whole pipeline locally, `make test` runs every test tier.
# Each target bootstraps first (instant when nothing changed), so a fresh clone needs nothing else.
SHELL := bash
VENV := .venv
PYTEST_ARGS ?=

.PHONY: bootstrap demo test test-fast lint

bootstrap:
	@scripts/bootstrap.sh

demo: bootstrap
	$(VENV)/bin/usagewatch demo

# Full suite: fast tests plus the integration tier (real Kafka broker, Flink MiniCluster).
test: bootstrap
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

test-fast: bootstrap
	$(VENV)/bin/python -m pytest -m "not integration" $(PYTEST_ARGS)

lint: bootstrap
	$(VENV)/bin/ruff check .
