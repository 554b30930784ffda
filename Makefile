# Two commands for a fresh machine (see README):  make demo   |   make test
# Each creates (or reuses) a local virtual environment in .venv and installs mesostats into it
# non-editable, exactly as a user would get it.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test install lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

install: $(BIN)/python
	$(BIN)/python -m pip install --quiet ".[test,dev,distributed]"
	$(BIN)/python -m pip install --quiet --no-deps --force-reinstall .

demo: install
	$(BIN)/mesostats validate example
	$(BIN)/mesostats report example -o report.html
	@echo "Open report.html in a browser."

test: install
	cd tests && ../$(BIN)/python -m pytest -q -p no:cacheprovider

lint: install
	$(BIN)/ruff check mesostats tests bench scripts
	$(BIN)/ruff format --check mesostats tests bench scripts
	$(BIN)/mypy
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) report.html build dist .pytest_cache .mypy_cache .ruff_cache
