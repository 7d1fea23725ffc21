# Everything runs in .venv, created here. CPU torch is installed first: an unpinned torch
# would pull several GB of CUDA packages.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH_VERSION ?= 2.13.0
STAMP := $(VENV)/.installed

.PHONY: install demo test lint typecheck slow clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==$(TORCH_VERSION)
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

# The main job: train the paper's model on polynomial iteration until an iteration head forms
# (about a minute on 2 CPU cores), then print per-length accuracy and every head's scores.
demo: $(STAMP)
	rm -rf runs/demo
	$(BIN)/iteration-heads train --task polynomial --max-len 8 --d-model 64 --epochs 150 \
		--stop-at-target --out runs/demo
	$(BIN)/iteration-heads eval runs/demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

test: lint typecheck
	$(BIN)/python -m pytest -q

# Long training runs (marked slow), not in the default suite.
slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

clean:
	rm -rf $(VENV) runs .pytest_cache .mypy_cache .ruff_cache
