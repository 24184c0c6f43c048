# The two commands: `make demo` and `make test`. Each creates .venv if needed and
# installs the pinned requirements once (a stamp file keeps later runs quiet).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.anycell-installed
REPORT ?= reports/demo
CELL ?= cell_configs/demo_cell.yaml
JOB ?= examples/jobs/demo_widget.yaml

.PHONY: demo test test-fast lint venv bench schemas clean

demo: $(STAMP)
	@$(VENV)/bin/anycell demo --cell $(CELL) --job $(JOB) --report $(REPORT)

# `make test` is what CI runs: the linter, the type checker, then every test
# (the layer contract is tests/test_layout.py). Two workers (pytest-xdist): each ROS test
# has its own ROS domain, nodes and simulator, and they mostly wait on robots moving in
# real time, so two run side by side.
test: lint
	@$(PY) -m pytest -q -n 2

# The quick loop while editing: no ROS nodes, nothing slow (under a minute).
test-fast: $(STAMP)
	@$(PY) -m pytest -q -n 2 -m "not ros and not slow"

# ruff (ruff.toml) and mypy (mypy.ini), both pinned in requirements.txt.
lint: $(STAMP)
	@$(VENV)/bin/ruff check --quiet .
	@$(VENV)/bin/mypy

bench: $(STAMP)
	@for b in bench/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

schemas: $(STAMP)
	@$(VENV)/bin/anycell schema cell -o schemas/cell.schema.json
	@$(VENV)/bin/anycell schema job -o schemas/job.schema.json

venv: $(STAMP)

$(STAMP): requirements.txt setup.py tools/bootstrap.sh
	@PYTHON=$(PYTHON) VENV=$(VENV) bash tools/bootstrap.sh
	@touch $(STAMP)

clean:
	rm -rf $(VENV) build *.egg-info reports
