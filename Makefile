# Satchel: `make run` starts the daemon on config.toml; `make test` installs and tests.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUN_STAMP := $(VENV)/.installed-run
STAMP := $(VENV)/.installed

.PHONY: run test bench lint install clean

# the daemon's own dependencies: all `make run` needs (no compiler, no test tools)
$(RUN_STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	touch $(RUN_STAMP)

# plus the test and benchmark tools (the quickfix peer compiles once, ~5 minutes, without a cached wheel)
$(STAMP): pyproject.toml $(RUN_STAMP)
	$(BIN)/pip install --quiet -e '.[test,bench]'
	touch $(STAMP)

install: $(STAMP)

run: $(RUN_STAMP)
	$(BIN)/satchel run --config config.toml

lint: $(STAMP)
	$(BIN)/ruff check engine plugins adapters tests bench
	$(BIN)/mypy

test: $(STAMP) lint
	$(BIN)/pytest -q

bench: $(STAMP)
	$(BIN)/python -m bench.run

clean:
	rm -rf $(VENV) var build *.egg-info
