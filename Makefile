# Everything runs in .venv, created here. CPU torch is installed first: an unpinned torch
# would pull several GB of CUDA packages.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH_VERSION ?= 2.13.0
STAMP := $(VENV)/.installed

.PHONY: install demo test lint typecheck browser slow clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==$(TORCH_VERSION)
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

# The main job: train the paper's model on polynomial iteration until an iteration head forms
# (60 epochs, about two minutes on 2 CPU cores), print per-length accuracy and every head's
# scores, detect the circuit, and write a one-file HTML report.
demo: $(STAMP)
	rm -rf runs/demo
	$(BIN)/iteration-heads train --task polynomial --max-len 8 --d-model 64 --epochs 150 \
		--stop-at-target --out runs/demo
	$(BIN)/iteration-heads eval runs/demo
	$(BIN)/iteration-heads detect runs/demo
	$(BIN)/iteration-heads report runs/demo -o runs/demo/report.html
	@echo "open runs/demo/report.html in a browser (works offline)"

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

# Debian's Chromium, for the browser test of the HTML views (tests/test_browser.py).
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || { \
		if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium; \
		else sudo apt-get update -qq && sudo apt-get install -y -qq chromium; fi; }

test: lint typecheck browser
	$(BIN)/python -m pytest -q

# Long training runs (marked slow), not in the default suite.
slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

clean:
	rm -rf $(VENV) runs .pytest_cache .mypy_cache .ruff_cache
