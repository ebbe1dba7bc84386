# Set-up and the everyday commands. `make demo` and `make test` each do all the set-up they need on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The pinned pair (CPU use here; CUDA build on GPU machines). Other versions download gigabytes.
TORCH_PINS := torch==2.14.1 torchvision==0.29.1

.PHONY: install demo test lint typecheck bench clean

$(BIN)/chexvision: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(TORCH_PINS)
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $@

install: $(BIN)/chexvision

# The embedded default: a local dispatch of the smoke preset on synthetic data, then status and fetch.
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
