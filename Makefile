# Two commands do all the set-up on a fresh machine:
#   make demo   - the end-to-end demo pipeline on local Ray (configs/demo.yaml)
#   make test   - the whole test suite (fast + slow + cluster), as CI runs it
# Both create/reuse .venv. GPU users: make demo TORCH_SPEC="torch==2.x.y" (the
# CUDA build of their choice, e.g. with PIP_INDEX_URL/--extra-index-url set).

PYTHON ?= python3.11
VENV ?= .venv
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
PY := $(VENV)/bin/python
STAMP := $(VENV)/.irgpt-installed
DEMO_ARGS ?=
PYTEST_ARGS ?=

.PHONY: setup demo experiment test test-fast lint bench clean-venv

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# Re-installs only when pyproject.toml changes (idempotent and quick otherwise).
$(STAMP): pyproject.toml | $(PY)
	@if ! $(PY) -c "import torch" >/dev/null 2>&1; then \
		echo ">> installing torch first: $(TORCH_SPEC)"; \
		$(PY) -m pip install --quiet $(TORCH_SPEC); \
	fi
	@echo ">> installing irgpt[dev] (torch pin repeated so pip keeps it)"
	$(PY) -m pip install --quiet $(TORCH_SPEC) -e ".[dev]"
	@touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(PY) jobs/pipeline.py --config configs/demo.yaml $(DEMO_ARGS)

# Tables 3 and 4 with 3 seeds at a scale where the tiny model learns (not part of CI;
# about 40 minutes on 2 cores): writes docs/experiments.md.
experiment: setup
	$(PY) jobs/experiment.py --config configs/experiment.yaml $(DEMO_ARGS)

# All tests: the fast suite plus the `slow` markers, then the `cluster` tests
# in a process of their own (they start and stop a separate Ray head).
test: setup
	$(PY) -m pytest -m "not cluster" $(PYTEST_ARGS)
	$(PY) -m pytest -m cluster $(PYTEST_ARGS)

# Plain pytest: the fast CPU suite (what developers run between edits).
test-fast: setup
	$(PY) -m pytest $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/ruff check irgpt jobs tests benchmarks

# Every ratio benchmark; each writes its JSON to benchmarks/results/ (long: tens of minutes).
bench: setup
	@for b in benchmarks/bench_*.py; do echo ">> $$b"; $(PY) $$b || exit 1; done

clean-venv:
	rm -rf $(VENV)
