# The two commands a newcomer needs: `make demo` and `make test`.
# Both create .venv and install what they need on a fresh machine (pinned by constraints.txt).
# --no-cache-dir: the venv holds several GB (torch's CUDA build); a wheel cache beside it
# would double the disk an install needs (a CI run once ran out of space there).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-dev
PYTEST_ARGS ?=

.PHONY: demo test test-slow lint format bench venv clean

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --no-cache-dir --upgrade pip
	$(BIN)/python -m pip install -q --no-cache-dir -c constraints.txt -e ".[dev]"
	@touch $(STAMP)

venv: $(STAMP)

## demo: start an edge server and a client on this machine and show results per branch
demo: $(STAMP)
	$(BIN)/splitedge-sim demo

## test: the default test suite (what .ci/run runs)
test: $(STAMP)
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

## test-slow: the long suites (training, long simulations)
test-slow: $(STAMP)
	$(BIN)/python -m pytest -m slow $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(STAMP)
	$(BIN)/python -m benchmarks.overhead --quick
	$(BIN)/python -m benchmarks.batching --quick
	$(BIN)/python -m benchmarks.overload --quick

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .ruff_cache .hypothesis
