# Everything runs in .venv, created here. CPU torch is installed first: an unpinned torch
# would pull several GB of CUDA packages. pip compiles nothing (--no-compile: it would compile
# all 20,000 installed modules one by one, about 70 s on 2 cores); instead, one process imports
# the whole package with bytecode writing on, which compiles and caches the 3,300 modules it and
# its dependencies load (about 10 s of one core; compiling every installed module took 34 s on
# both). Where PYTHONDONTWRITEBYTECODE is set, every command would otherwise recompile torch and
# the package on each start; the test command writes the bytecode of what else the tests load.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH_VERSION ?= 2.13.0
STAMP := $(VENV)/.installed

.PHONY: install demo train-demo test lint typecheck browser docs notebooks slow clean

export IMPORT_EVERYTHING := import importlib, pkgutil, iteration_heads as p; [importlib.import_module(m.name) for m in pkgutil.walk_packages(p.__path__, p.__name__ + '.')]

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --no-compile torch==$(TORCH_VERSION)
	$(BIN)/python -m pip install --quiet --no-compile -e ".[dev]"
	env -u PYTHONDONTWRITEBYTECODE OMP_NUM_THREADS=1 $(BIN)/python -c "$$IMPORT_EVERYTHING"
	touch $(STAMP)

install: $(STAMP)

# The main job, in seconds: list the shipped trained models, load the paper's model, find its
# EoI and iteration heads, check them causally (ablation against other heads), and write a
# one-file HTML report (curves, attention, detection, interventions) that works offline.
demo: $(STAMP)
	$(BIN)/iteration-heads zoo
	$(BIN)/iteration-heads detect polynomial --verify
	$(BIN)/iteration-heads report polynomial -o runs/demo/report.html
	@echo "open runs/demo/report.html in a browser (works offline)"

# The same from scratch with the library's recipe: train until an iteration head forms (seed 0:
# 20 epochs, about a minute).
train-demo: $(STAMP)
	rm -rf runs/train-demo
	$(BIN)/iteration-heads train --task polynomial --max-len 8 --d-model 64 --epochs 150 \
		--stop-at-target --out runs/train-demo
	$(BIN)/iteration-heads detect runs/train-demo --verify
	$(BIN)/iteration-heads report runs/train-demo -o runs/train-demo/report.html

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

# Debian's Chromium, for the browser test of the HTML views (tests/viz/test_browser.py).
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || { \
		if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium; \
		else sudo apt-get update -qq && sudo apt-get install -y -qq chromium; fi; }

# The user guide and API reference (mkdocs + mkdocstrings); any warning fails the build.
docs: $(STAMP)
	$(BIN)/mkdocs build --strict --site-dir build/site

# Run every notebook in examples/ top to bottom (offline); any error fails.
notebooks: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 --nbmake examples/*.ipynb

# The suite and the notebooks in one run on both cores (pytest-xdist; a test file or notebook
# stays on one worker, so module fixtures are built once). Three workers on two cores: with two,
# a quarter of the cores' time went idle (workers waiting on the subprocesses they start, on
# files synced to disk, on the browser), and the third fills most of it (on 2 cores: 458 s
# against 506 s with two workers, the two-worker run on a tree with about 18 s more work; 4
# workers slower; with three, about four fifths of the cores' time is used). The longest files
# go first, in the order given here (--no-loadscope-reorder: xdist would otherwise start with the
# files of most tests and leave the notebooks, one test each, to the end), so that the short ones
# fill the gaps and no worker waits alone at the end; a file named here and again inside tests/
# runs once. The notebooks run inside the workers (examples/conftest.py), not in a Jupyter kernel
# each: a kernel's start-up cost about 8 s per notebook.
# One torch thread per process: workers of two threads each on two cores slow each other
# down. tests/test_typecheck.py runs mypy as `make typecheck` does (there, beside the tests,
# rather than before them on one core); tests/test_docs.py builds the docs strictly, as `make
# docs` does.
LONGEST_FIRST := examples/02_watch_a_head_form.ipynb tests/runs/test_executors.py \
	examples/05_transfer.ipynb tests/viz/test_browser.py tests/experiments/test_ontology_study.py \
	tests/test_docs.py tests/runs/test_sweep_safety.py tests/test_bad_inputs.py \
	tests/test_typecheck.py tests/experiments/test_reproduction.py tests/test_guides.py \
	examples/06_pathways.ipynb tests/pathways/test_horizon.py tests/training/test_crash_safety.py \
	tests/runs/test_sweep_crash_safety.py tests/runs/test_sharding.py examples/*.ipynb

# Chromium (apt) and the virtual environment (pip) are installed side by side: both mostly
# wait on the network and the disk (apt alone took 36 s on a machine without Chromium).
test:
	$(MAKE) --no-print-directory -j2 install browser
	$(MAKE) --no-print-directory lint
	env -u PYTHONDONTWRITEBYTECODE OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -n 3 \
		--dist loadfile --no-loadscope-reorder $(LONGEST_FIRST) tests iteration_heads

# Long runs marked slow, not in the default suite: 200-epoch trainings of the paper's model
# (seed 0 must form the head; seeds 1 and 2 are expected failures), the no-CoT control, a run
# killed at 300 random instants, sweeps on a Ray cluster and a SLURM cluster started on this
# machine (skipped where Ray or slurm-wlm is missing), a sweep through a local Ray runtime cell
# by cell against local processes, and the guides' code blocks of minutes.
slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

clean:
	rm -rf $(VENV) runs .pytest_cache .mypy_cache .ruff_cache
