# Every target sets up its own virtualenv from pyproject.toml, so a fresh clone needs only python3.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test test-fast test-dates faketime lint docs demo bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check upbit_cache tests scripts
	$(BIN)/ruff format --check upbit_cache tests scripts
	$(BIN)/mypy

# Everything: lint, the docs, then the whole suite (CI runs this).
test: lint docs
	$(BIN)/python -m pytest -q

# The docs site (docs/, mkdocs.yml) into site/, strictly: a broken link or anchor fails it.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

# The fast tier while working: lint, then the suite less the tests marked slow.
test-fast: lint
	$(BIN)/python -m pytest -q -m "not slow"

# The suite at the real date and under shifted clocks; `make test-dates SHIFTS=+400d` for one.
SHIFTS ?= now +45d +400d +4y 2028-02-29
test-dates: lint faketime
	PYTHON=$(BIN)/python scripts/test_dates.sh $(SHIFTS)

# Debian's faketime, installed by name where it is missing (as root, else through sudo).
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
faketime:
	@command -v faketime >/dev/null || { \
		echo "installing Debian's faketime"; \
		export DEBIAN_FRONTEND=noninteractive; \
		$(SUDO) apt-get install -y -qq faketime >/dev/null 2>&1 \
		|| { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq faketime; }; }
	@command -v faketime >/dev/null

demo: $(STAMP)
	$(BIN)/python scripts/demo.py

bench: $(STAMP)
	cd scripts && ../$(BIN)/python bench_fetch.py
	cd scripts && ../$(BIN)/python bench_screen.py
	cd scripts && ../$(BIN)/python bench_backtest.py
	cd scripts && ../$(BIN)/python bench_prune.py
	cd scripts && ../$(BIN)/python bench_export.py
	cd scripts && ../$(BIN)/python bench_live.py
	cd scripts && ../$(BIN)/python bench_kill.py
	cd scripts && ../$(BIN)/python bench_cache.py
	cd scripts && ../$(BIN)/python bench_serve.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache site
