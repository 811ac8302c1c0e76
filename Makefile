# The two commands of the README: `make book` and `make test`. Each creates the environment it needs,
# installing exactly the versions and hashes of the lock file for this Python (no resolver runs).
# `make lock` regenerates the lock files from pyproject.toml (run it after changing a dependency there).
PYTHON ?= python3
VENV ?= .venv
PROFILE ?= cpu
# DATA: empty for the real sample shipped in data/, an NIH folder, or "synthetic" (synthetic images only when asked for)
DATA ?=
# chapters run at once where none reads the other (`cxr run -j`): two on a laptop's cores (the smoke book in 3 rather
# than 5 minutes, the cpu book in 17 rather than 24; results identical), one on a GPU (full), where two would share it
JOBS ?= $(if $(filter full,$(PROFILE)),1,2)
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# the Pythons and the platform the lock covers; uv, pinned so that `make lock` writes the same files
LOCK_PYTHONS := 3.11 3.12 3.13
py_version = $(shell $(1) -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)
PY_VERSION := $(call py_version,$(PYTHON))
# python3 of a version without a lock: the newest installed python3.X that has one, said (PYTHON=... is kept as given)
ifeq ($(origin PYTHON)$(wildcard requirements/lock-py$(subst .,,$(PY_VERSION)).txt),file)
LOCKED := $(lastword $(foreach v,$(LOCK_PYTHONS),$(if $(filter $(v),$(call py_version,python$(v))),python$(v))))
ifneq ($(LOCKED),)
$(info make: $(PYTHON) is Python $(or $(PY_VERSION),?), which has no lock file; using $(LOCKED), which has one)
PYTHON := $(LOCKED)
PY_VERSION := $(call py_version,$(PYTHON))
endif
endif
PY_TAG := $(subst .,,$(PY_VERSION))
LOCK ?= requirements/lock-py$(PY_TAG).txt
LOCK_PLATFORM := x86_64-manylinux_2_28
UV_VERSION := 0.13.9
UV_VENV := .venv-lock
UV := $(UV_VENV)/bin/uv
# the project's Jupyter kernel, registered inside $(VENV); every notebook names it
KERNEL := cxr-book

.PHONY: book test test-slow test-all env run clean lock bench browse cells

$(STAMP): pyproject.toml $(wildcard $(LOCK))
	@test -f $(LOCK) || { echo "make: no lock file $(LOCK) for $(PYTHON) (Python $(PY_TAG)); locks exist for" \
		"Python $(LOCK_PYTHONS): use one of those (make PYTHON=python3.11 ...), or add it to LOCK_PYTHONS and run make lock" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install --quiet --require-hashes --no-deps -r $(LOCK) || { \
		echo "make: installing from $(LOCK) failed: a package is missing or its hash differs from the one" \
		"recorded in the lock (see pip's message above: 'THESE PACKAGES DO NOT MATCH THE HASHES');" \
		"restore the lock (git diff $(LOCK)) or regenerate it with 'make lock'" >&2; exit 1; }
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	$(BIN)/python -m pip check
	$(BIN)/python -m ipykernel install --sys-prefix --name $(KERNEL) --display-name "Python ($(KERNEL))" >/dev/null
	touch $(STAMP)

env: $(STAMP)

## Execute every chapter (PROFILE=smoke|cpu|full, DATA=<NIH folder>|synthetic) and build the HTML book into _build/html
book: $(STAMP)
	$(BIN)/cxr run --profile $(PROFILE) -j $(JOBS) $(if $(DATA),--data $(DATA))
	$(BIN)/cxr book

## Browse the misclassified images of PROFILE's run folder in Voila (prints the address to open)
browse: $(STAMP)
	$(BIN)/cxr browse --profile $(PROFILE)

## The fast suite: every module, known answers, toy chapters; no book built (a few minutes on 2 cores)
test: $(STAMP)
	$(BIN)/python -m pytest -m "not book and not browser"

## The end-to-end checks: the smoke book read in headless Chromium, the full profile at toy size,
## determinism, reruns from a page, and the widget in a real Jupyter front end
test-slow: $(STAMP)
	$(BIN)/python -m pytest -m "book or browser"

## Both, in one pytest session (what CI runs)
test-all: $(STAMP)
	$(BIN)/python -m pytest

$(UV):
	$(PYTHON) -m venv $(UV_VENV)
	$(UV_VENV)/bin/python -m pip install --quiet uv==$(UV_VERSION)

## Regenerate requirements/lock-py3XX.txt (versions and hashes) and environment.yml's pins from pyproject.toml.
## Versions already locked are kept where pyproject allows them; UPGRADE=1 takes the newest allowed.
lock: $(UV)
	@mkdir -p requirements
	for version in $(LOCK_PYTHONS); do \
		$(UV) pip compile --quiet --generate-hashes --python-version $$version --python-platform $(LOCK_PLATFORM) \
			--extra test --custom-compile-command "make lock" $(if $(UPGRADE),--upgrade) pyproject.toml \
			-o requirements/lock-py$$(echo $$version | tr -d .).txt || exit 1; \
	done
	$(UV_VENV)/bin/python -m cxrlib.machinery.repro environment-yml requirements/lock-py311.txt > environment.yml.tmp
	mv environment.yml.tmp environment.yml

## Rewrite every notebook's parameters cell from the chapter manifest (cxrlib/core/manifest.py)
cells: $(STAMP)
	$(BIN)/cxr cells

## Benchmarks (tf.data pipeline, training helper, feature cache, data layer's first touch of 16k NIH images); results in benchmarks/results/
bench: $(STAMP)
	$(BIN)/python -m benchmarks $(if $(NOTE),--note "$(NOTE)")

clean:
	rm -rf _build book/chapters .cache runs
