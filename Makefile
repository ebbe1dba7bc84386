# Set-up and the everyday commands. `make demo` and `make test` each do all the set-up they need on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The pinned pair (CPU use here; CUDA build on GPU machines). Other versions download gigabytes.
TORCH_PINS := torch==2.14.1 torchvision==0.29.1

.PHONY: install demo test lint typecheck bench clean

$(BIN)/chexvision: pyproject.toml
	@echo "== [1/4] virtual environment $(VENV) (python: $(PYTHON))"
	$(PYTHON) -m venv $(VENV)
	@echo "== [2/4] upgrading pip"
	$(BIN)/pip install --quiet --upgrade pip
	@echo "== [3/4] installing $(TORCH_PINS) (the largest step: about 2 minutes from a warm cache, longer from PyPI)"
	$(BIN)/pip install --quiet $(TORCH_PINS)
	@echo "== [4/4] installing chexvision and its dev tools (pip install -e '.[dev]': about 2-3 minutes)"
	$(BIN)/pip install --quiet -e '.[dev]'
	@echo "== installed: $(BIN)/chexvision"
	@touch $@

install: $(BIN)/chexvision

# The embedded default: the smoke study (both models, local backend, synthetic data) -> report -> predict.
demo: install
	PATH=$(abspath $(BIN)):$$PATH bash scripts/demo.sh

test: install
	$(BIN)/pytest -q

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports  # the architecture contracts in pyproject.toml

typecheck: install
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
