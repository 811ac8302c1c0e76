# The two commands of the README: `make book` and `make test`. Each creates the environment it needs.
PYTHON ?= python3
VENV ?= .venv
PROFILE ?= cpu
DATA ?=
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: book test env run clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

env: $(STAMP)

## Execute every chapter (PROFILE=smoke|cpu|full, DATA=<NIH folder>) and build the HTML book into _build/html
book: $(STAMP)
	$(BIN)/cxr run --profile $(PROFILE) $(if $(DATA),--data $(DATA))
	$(BIN)/cxr book

## Run the test suite (it executes every chapter in the smoke profile and builds the book)
test: $(STAMP)
	$(BIN)/python -m pytest

clean:
	rm -rf _build book/chapters .cache runs
