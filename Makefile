# The book's two commands are `make book` and `make test`; both set up .venv first.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.requirements.stamp
# Set identically for executing notebooks and for testing them, so that stored
# outputs (set orders, figure output) reproduce.
export PYTHONHASHSEED := 0
unexport MPLBACKEND

NB ?= $(shell $(PYTHON) tools/chapters.py)

.PHONY: help venv book test execute lint bench clean lab conformance pdf

help:
	@echo "make book     build the HTML book into _build/html (warnings are errors)"
	@echo "make test     unit, property and doc tests, and every chapter under nbval"
	@echo "make execute  re-run notebooks top to bottom and store their outputs (NB=path for one)"
	@echo "make lint     ruff on lossutils, tests, tools, benchmarks, the notebooks and conformance"
	@echo "make bench    accuracy, speed and memory against NumPy, SciPy, PyTorch and JAX into benchmarks/results/"
	@echo "make lab      JupyterLab on the chapters, with the project's kernel"
	@echo "make pdf      the whole book as one PDF, _build/latex/book.pdf (needs TeX Live, see README)"
	@echo "make clean    remove the build and caches (keeps .venv)"
	@echo "make conformance  lossutils against PyTorch, torchvision, JAX and optax (own .venv-conformance)"

# Reinstall only when the requirements change.
$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $(STAMP)

venv: $(STAMP)

book: $(STAMP)
	$(PY) tools/install_mathjax.py _mathjax
	$(VENV)/bin/jupyter-book build . --warningiserror --nitpick --keep-going
	@echo "The book is in _build/html/index.html"

test: $(STAMP)
	$(PY) -m pytest -n 2 --dist loadfile

execute: $(STAMP)
	$(PY) tools/execute_notebooks.py $(NB)

lint: $(STAMP)
	$(VENV)/bin/ruff check lossutils tests tools benchmarks chapters conformance
	$(VENV)/bin/ruff format --check lossutils tests tools benchmarks conformance

# --allow-root only lifts JupyterLab's refusal to start as root (containers); it changes
# nothing for other users.
lab: $(STAMP)
	$(VENV)/bin/jupyter lab --allow-root --ServerApp.root_dir=. chapters

clean:
	rm -rf _build _mathjax .pytest_cache .ruff_cache .hypothesis
	find . -name __pycache__ -not -path "./$(VENV)/*" -prune -exec rm -rf {} +

# The conformance suite: its own environment, apart from .venv (PyTorch, JAX and optax
# are large and only this target needs them), reinstalled only when its requirements change.
CVENV := .venv-conformance
CPY := $(CVENV)/bin/python
CSTAMP := $(CVENV)/.requirements.stamp

$(CSTAMP): requirements-conformance.txt pyproject.toml
	test -x $(CPY) || $(PYTHON) -m venv $(CVENV)
	$(CPY) -m pip install --quiet --upgrade pip
	$(CPY) -m pip install --quiet -r requirements-conformance.txt
	touch $(CSTAMP)

conformance: $(CSTAMP)
	$(CPY) -m pytest -c conformance/pytest.ini --rootdir conformance conformance

# The whole book as one PDF through Jupyter Book's LaTeX builder (XeLaTeX and latexmk from
# TeX Live; the README lists the system packages).
pdf: $(STAMP)
	$(VENV)/bin/jupyter-book build . --builder pdflatex
	@echo "The PDF is in _build/latex/book.pdf"

# The benchmark runs in the conformance environment, so that the results it writes (the
# committed ones, which the book's appendix renders) always have the PyTorch and JAX columns.
bench: $(CSTAMP)
	$(CPY) -m benchmarks.run
	$(CPY) -m benchmarks.summary
