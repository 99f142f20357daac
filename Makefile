# `make demo` and `make test` set everything up on a fresh machine; a second run reinstalls nothing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install detectron2 detectron2-optional demo test test-fast lint clean

install: $(STAMP)

# Reinstall only when the dependency list changes (the install is editable).
$(STAMP): setup.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

# Detectron2 is not on PyPI: this installs Detectron2 0.5's Python code from the detectron2-cdo sdist,
# hash-checked and patched (scripts/install_detectron2.py). Fast when already installed.
detectron2: $(STAMP)
	$(BIN)/python scripts/install_detectron2.py

# The same for the test targets, which never fail because of it: without Detectron2 its tests skip.
detectron2-optional: $(STAMP)
	$(BIN)/python scripts/install_detectron2.py --optional || echo "install_detectron2: WARNING: the installer failed; the Detectron2 tests will skip"

demo: $(STAMP)
	$(BIN)/actdet demo

test: $(STAMP) detectron2-optional
	$(BIN)/python -m pytest

test-fast: $(STAMP) detectron2-optional
	$(BIN)/python -m pytest -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) outputs *.egg-info
