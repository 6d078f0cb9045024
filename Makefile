# `make demo` and `make test` each set up .venv on first use (Python >= 3.10 and pip are all they need).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: demo test lint format bench cards clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip

# One stamp per set of extras, redone when pyproject.toml changes.
$(VENV)/.demo: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -e ".[search]"
	touch $@

$(VENV)/.test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -e ".[search,peers,export,dev]"
	touch $@

# The zoo measured beside the paper, then the search machinery end to end on the cpu-digits smoke preset (minutes):
# it shows the machinery runs, not that the search finds better cells (nasnet_zoo/demo.py says what would).
demo: $(VENV)/.demo
	$(BIN)/nasnet-zoo demo

lint: $(VENV)/.test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint
	$(BIN)/python -m pytest -q

format: $(VENV)/.test
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(VENV)/.test
	$(BIN)/python -m benchmarks.run

# What the model cards state is measured by tests: re-measure (they write nasnet_zoo/measurements.json instead of
# checking it), then regenerate model_cards/ and README.md's tables. Slow: it runs the peer comparisons.
cards: $(VENV)/.test
	NASNET_ZOO_MEASUREMENTS=update $(BIN)/python -m pytest -q tests/test_zoo.py tests/peers
	$(BIN)/nasnet-zoo cards

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build *.egg-info
