# Two commands on a fresh machine: `make repro` and `make test`. Both build .venv when missing.
VENV   ?= .venv
BIN    := $(VENV)/bin
PY     := $(BIN)/python
STAMP  := $(VENV)/.installed
# DVC runs each stage's `python -m ...` through the shell: the venv must come first on PATH.
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: help setup repro test test-fast test-random mutation lint typecheck params ui bench keras-env clean docs docs-serve

# The first target, so a bare `make` lists the targets: each target's `## ` comment is its line.
help:             ## list the targets with what they do
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-12s %s\n", $$1, $$2}' \
		$(MAKEFILE_LIST)

setup: $(STAMP)   ## build .venv with the package and its test extra (again when pyproject.toml changes)

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

repro: $(STAMP)   ## run the whole pipeline (only what changed)
	$(BIN)/dvc repro

# Two test modules at a time (pytest-xdist; a module's tests stay on one worker, so its
# module-scoped fixtures are built once). The suite is mostly process start-up of the stages its
# end-to-end modules run; docs/performance.md has its time.
# The 15 slowest tests are listed at the end. Sequential: PYTEST_ARGS=
PYTEST_ARGS ?= -n 2 --dist loadfile --durations=15

test: $(STAMP)    ## unit + end-to-end tests, then `make lint` (ruff check, ruff format, mypy)
	$(PY) -m pytest $(PYTEST_ARGS)
	$(MAKE) --no-print-directory lint

test-fast: $(STAMP)  ## the unit tests (tests/unit, not slow): a few minutes
	$(PY) -m pytest $(PYTEST_ARGS) tests/unit -m "not slow"

test-random: $(STAMP)  ## the unit tests in a random order (RANDOM_SEED=n repeats one): no test may lean on another
	$(PY) -m pytest $(PYTEST_ARGS) tests/unit -m "not slow" --random-order \
		$(if $(RANDOM_SEED),--random-order-seed=$(RANDOM_SEED))

# One thread per library: mutmut forks each mutant's tests from a process whose BLAS/OpenMP
# pools may already run, and a forked pool can hang until the timeout (a false "timeout").
mutation: $(STAMP)  ## mutation testing of the pure modules ([tool.mutmut]); per-module scores: docs/contributing.md
	rm -rf mutants
	OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 $(BIN)/mutmut run --max-children 2
	$(PY) tools/mutation_scores.py

lint: $(STAMP)    ## ruff check and ruff format --check on src, tests and benchmarks, then typecheck
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(MAKE) --no-print-directory typecheck

typecheck: $(STAMP)  ## mypy on src/, as [tool.mypy] in pyproject.toml configures it
	$(BIN)/mypy

params: $(STAMP)  ## recompose params.yaml from conf/; overrides: make params ARGS="profile=small"
	$(PY) -m dlrepro.config.compose $(ARGS)

ui: $(STAMP)      ## MLflow UI on the embedded store (2 processes), printing links to its model-training view
	@$(PY) -c "from dlrepro.tracking.store import ui_links; print('\n'.join(ui_links('http://127.0.0.1:5000', 'sqlite:///$(CURDIR)/mlflow.db')))"
	@echo "(one uvicorn worker and no job runner: MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false)"
	MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false $(BIN)/mlflow ui \
		--backend-store-uri sqlite:///$(CURDIR)/mlflow.db --host 127.0.0.1 --port 5000 --workers 1

bench: $(STAMP)   ## where the time goes: figures and ratios, also in reports/bench.json (untracked)
	$(PY) -m benchmarks

# The text's own Keras program, for `make bench`'s side-by-side: TensorFlow lives in its own venv
# and is never a dependency of dlrepro.
KERAS_VENV ?= .venv-keras
keras-env: $(KERAS_VENV)/.installed  ## the separate TensorFlow venv for make bench's Keras runs

$(KERAS_VENV)/.installed:
	test -x $(KERAS_VENV)/bin/python || python3 -m venv $(KERAS_VENV)
	$(KERAS_VENV)/bin/python -m pip install --quiet 'tensorflow-cpu==2.21.0' pillow matplotlib
	touch $@

docs: $(STAMP)    ## the documentation site (mkdocs.yml, docs/) into site/; --strict: a warning fails
	$(BIN)/mkdocs build --strict --site-dir site

docs-serve: $(STAMP)  ## the documentation site at http://127.0.0.1:8000, rebuilt on every edit
	$(BIN)/mkdocs serve --strict --dev-addr 127.0.0.1:8000

clean:            ## remove the environment and the embedded MLflow store (DVC outputs stay)
	rm -rf $(VENV) $(KERAS_VENV) mlflow.db mlruns
