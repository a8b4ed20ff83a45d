# leadflow — the two commands a newcomer needs are `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install run test test-fast stack-up stack-down stack-status lint clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

## The demo: stack up, a worker with the demo config, a demo SDR receiver, a lead feed, a live view.
run: install
	$(BIN)/leadflow run

## The whole suite: unit, property, agent and integration tests (the suite starts Kafka and Redis itself).
## Two integration shards (each with its own stack) and the unit run go side by side (tests/suite.py);
## plain `pytest` runs them one after another.
test: install
	$(BIN)/python -m mypy
	$(BIN)/python -m tests.suite

## Everything but the integration tests (no Kafka needed).
test-fast: install
	$(BIN)/python -m pytest -m "not integration"

stack-up: install
	$(BIN)/leadflow stack up
stack-down: install
	$(BIN)/leadflow stack down
stack-status: install
	$(BIN)/leadflow stack status

lint: install
	$(BIN)/python -m mypy

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis .mypy_cache *.egg-info
