# Two commands matter: `make run` (the main job end to end) and `make test` (the suite).
# Both set up .venv first; the set-up is skipped when pyproject.toml and the lock are unchanged.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
STAMP := $(VENV)/.installed
UV_VERSION := 0.13.8
# The Databricks environment: Python 3.12 (Databricks Connect 17), its own exact lock.
DB_VENV := .venv-databricks
DB_PY := $(DB_VENV)/bin/python
DB_STAMP := $(DB_VENV)/.installed

export ML_ASSETS_HOME ?= $(CURDIR)/.ml_assets
export DAGSTER_HOME ?= $(ML_ASSETS_HOME)/dagster_home
# The venv's bin on PATH: `dagster`, `mlflow` and the servers they start are found there.
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export TZ := UTC
export MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR := false
# Dagster hands a run's planned events and a step's partition materializations to the storage
# as batches (up to this many events), which the local instance's storage writes in one
# transaction per database (ml_assets/programs/instance.py); 0 writes them one by one.
export DAGSTER_EVENT_BATCH_SIZE ?= 1000

UI_HOST ?= 127.0.0.1
UI_PORT ?= 3000

.PHONY: setup run test abuse lanes check lanes-compare spark-up spark-down spark-status ui \
	mlflow-ui serve lint lock clean test-databricks python312

# `make setup DEPLOYMENT=databricks` builds .venv-databricks instead (README, "Running on
# Databricks"): Databricks Connect cannot share an environment with pysail and pyspark 4.2.
setup: $(if $(filter databricks,$(DEPLOYMENT)),$(DB_STAMP),$(STAMP))

# --compile-bytecode: the modules' bytecode is written once here (about 30 s on 2 cores). uv
# leaves it to the first import, which cannot write it where PYTHONDONTWRITEBYTECODE is set (it
# is on the machine this was measured on): every process then compiled the ~6,000 modules it
# imports from source, 10 s of CPU each (importing the code location and the libraries its
# steps use: 14.1 -> 7.4 s).
$(STAMP): pyproject.toml requirements.lock
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	$(UV) pip install --quiet --compile-bytecode -p $(PY) -r requirements.lock
	$(UV) pip install --quiet -p $(PY) --no-deps -e .
	@touch $(STAMP)

# the first python3.12 that runs (a pyenv shim without 3.12 selected does not)
PYTHON312 ?= $(shell for p in python3.12 $(wildcard $(HOME)/.pyenv/versions/3.12*/bin/python3.12); do \
	$$p -c 'import sys; assert sys.version_info[:2] == (3, 12)' 2>/dev/null && echo $$p && break; done)

$(DB_STAMP): pyproject.toml requirements-databricks.lock
	@test -n "$(PYTHON312)" || { echo "make setup DEPLOYMENT=databricks: Databricks Connect 17 needs Python 3.12; install it (e.g. pyenv install 3.12) or pass PYTHON312=/path/to/python3.12." >&2; exit 1; }
	@rm -rf $(DB_VENV)
	$(PYTHON312) -m venv $(DB_VENV)
	@$(DB_PY) -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	$(DB_VENV)/bin/uv pip sync --quiet --compile-bytecode -p $(DB_PY) requirements-databricks.lock
	$(DB_VENV)/bin/uv pip install --quiet -p $(DB_PY) --no-deps -e .
	@touch $(DB_STAMP)

# The Databricks deployment's offline tests, in the Databricks environment: the definitions
# load and bind only Databricks implementations with no network call, the registry's Unity
# Catalog rules, the Pipes training step and Lakehouse Monitoring against a stand-in workspace.
DATABRICKS_TESTS ?= ml_assets_tests/test_databricks_deployment.py ml_assets_tests/test_databricks_pipes.py \
	ml_assets_tests/test_databricks_monitoring.py \
	ml_assets_tests/lib/test_registry_store.py
test-databricks: $(DB_STAMP)
	$(DB_PY) -m pytest -p no:cacheprovider $(DATABRICKS_TESTS) $(PYTEST_ARGS)

python312:
	@echo $(PYTHON312)

$(DAGSTER_HOME)/dagster.yaml: deploy/dagster.yaml
	@mkdir -p $(DAGSTER_HOME)
	@cp deploy/dagster.yaml $@

run: $(STAMP) $(DAGSTER_HOME)/dagster.yaml
	$(if $(ENGINE),ML_ASSETS_ENGINE=$(ENGINE)) $(PY) -m ml_assets.programs.run

# Two workers (pytest-xdist): alone, the suite keeps 0.85 of the 2 cores busy (servers
# starting, subprocesses, stores), so a second worker fills the rest. Whole files go to a worker
# (loadfile): a module's costly fixture (a `make check` run with an injection) is built once.
# Files are handed out in collection order, the `whole_graph` ones first (conftest.py).
TEST_WORKERS ?= 2
test: $(STAMP)
	$(PY) -m pytest -m "not abuse and not lanes" -n $(TEST_WORKERS) --dist loadfile \
		--no-loadscope-reorder $(PYTEST_ARGS)

# The engine lanes (pytest marker `lanes`): the lakehouse contract on sail-cluster, on a local
# Apache Spark 4.2 + Delta cluster (started and stopped by the tests) and its catalog tables,
# the spark lane's start/stop/bad-input tests, and a comparison of two lanes' whole runs.
lanes: $(STAMP)
	$(PY) -m pytest -m lanes $(PYTEST_ARGS)

# End-to-end abuse tests (pytest marker `abuse`, about 5 min; CI runs them after the suite):
# the gateway process under load with its config replaced mid-load, 56 MB bodies, and a whole
# tiny-graph run on PostgreSQL whose password and token are then searched for in every store.
abuse: $(STAMP)
	$(PY) -m pytest -m abuse -s $(PYTEST_ARGS)

# Asset checks as a CI gate: the whole graph on the tiny scale in a temporary home; a table of
# every check, JUnit XML, and a non-zero exit when an ERROR check or a step failed.
# ENGINE=sail|sail-cluster|spark picks the engine lane (default: ML_ASSETS_ENGINE, else sail);
# the spark lane's cluster is started if it is not running, and stopped afterwards if so.
# Each lane writes test-results/lane-<engine>.json; `make lanes-compare` compares them.
check: $(STAMP)
	$(if $(ENGINE),ML_ASSETS_ENGINE=$(ENGINE)) $(PY) -m ml_assets.programs.check \
		--junit test-results/asset-checks$(if $(ENGINE),-$(ENGINE)).xml $(CHECK_ARGS)

lanes-compare: $(STAMP)
	$(PY) -m ml_assets.programs.lanes compare $(sort $(wildcard test-results/lane-*.json))

# The spark lane by hand: a local Apache Spark 4.2 + Delta cluster on 127.0.0.1 (a master, two
# workers and a Spark Connect server on sc://127.0.0.1:15102); its Delta jars are fetched once
# into .engines/jars. Then e.g. `ML_ASSETS_ENGINE=spark make run`, or `make ui` with it.
spark-up: $(STAMP)
	$(PY) -m ml_assets.engines spark up

spark-down: $(STAMP)
	$(PY) -m ml_assets.engines spark down

spark-status: $(STAMP)
	$(PY) -m ml_assets.engines spark status

# (`dagster dev` is the pinned dagster's own command; its "use 'dg dev'" notice names a separate
# CLI package this project does not install, so it is silenced here. It is started through
# ml_assets/programs/signals.py so that it stops on SIGINT and SIGTERM even when started with
# SIGINT ignored, in the background of a script or a CI job.)
ui: $(STAMP) $(DAGSTER_HOME)/dagster.yaml
	PYTHONWARNINGS="ignore:Function \`dev_command\` is superseded" $(PY) -m ml_assets.programs.signals \
		$(VENV)/bin/dagster dev -w workspace.yaml -h $(UI_HOST) -p $(UI_PORT)

# The MLflow UI on the local store (runs, nested trials, plots, registered models).
mlflow-ui: $(STAMP)
	$(VENV)/bin/mlflow ui --backend-store-uri sqlite:///$(ML_ASSETS_HOME)/mlflow.db \
		--default-artifact-root file://$(ML_ASSETS_HOME)/mlartifacts -h 127.0.0.1 -p 5000

# The local serving gateway of one declared model's endpoint (needs a `make run` first; ENDPOINT=
# purchase_propensity for the second model): Databricks-style invocations at
# http://127.0.0.1:8080/serving-endpoints/<endpoint>/invocations.
SERVE_HOST ?= 127.0.0.1
SERVE_PORT ?= 8080
ENDPOINT ?= churn_classifier
serve: $(STAMP)
	$(PY) -m ml_assets.programs.gateway --host $(SERVE_HOST) --port $(SERVE_PORT) --endpoint $(ENDPOINT)

lint: $(STAMP)
	$(VENV)/bin/ruff check ml_assets ml_assets_tests benchmarks
	$(VENV)/bin/ruff format --check ml_assets ml_assets_tests benchmarks

# Re-resolve the pinned set after changing dependencies in pyproject.toml (DEPLOYMENT=databricks:
# the Databricks environment's lock, from requirements-databricks.in).
lock: $(STAMP)
ifeq ($(DEPLOYMENT),databricks)
	$(UV) pip compile requirements-databricks.in --override requirements-databricks.overrides \
		--python-version 3.12 -o requirements-databricks.lock
else
	$(UV) pip compile pyproject.toml --extra dev -p 3.11 -o requirements.lock
endif

clean:
	rm -rf $(ML_ASSETS_HOME)
