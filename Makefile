# Every target sets up its own virtualenv from pyproject.toml, so a fresh clone needs only python3.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test lint demo bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check upbit_cache tests scripts
	$(BIN)/ruff format --check upbit_cache tests scripts

test: lint
	$(BIN)/python -m pytest -q

demo: $(STAMP)
	$(BIN)/python scripts/demo.py

bench: $(STAMP)
	cd scripts && ../$(BIN)/python bench_fetch.py
	cd scripts && ../$(BIN)/python bench_screen.py
	cd scripts && ../$(BIN)/python bench_backtest.py
	cd scripts && ../$(BIN)/python bench_prune.py
	cd scripts && ../$(BIN)/python bench_live.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
