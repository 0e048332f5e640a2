# Tapir: the two set-up commands are `make run` and `make test` (see README.md).
# Both install what they need, system packages included (run as root on Debian).

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
HOST   ?= 127.0.0.1
PORT   ?= 8080
export TAPIR_HOME ?= $(CURDIR)/var/tapir

.PHONY: run test test-slow test-all lint bench venv runtime-deps system-deps clean

$(VENV)/.installed: pyproject.toml setup.py | runtime-deps
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Tapir needs Python 3.11 or newer")'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	@# Bytecode ahead of time: every tapir command would otherwise compile its modules
	@# again where PYTHONDONTWRITEBYTECODE is set.
	$(PY) -m compileall -q appliance hardware plugins
	@touch $@

venv: $(VENV)/.installed

## run: set up and run the appliance on its embedded default (SQLite, disk pool under TAPIR_HOME)
run: venv
	$(VENV)/bin/tapir init
	$(VENV)/bin/tapir serve --host $(HOST) --port $(PORT)

## runtime-deps: the Debian packages the appliance needs to install and run (libvirt-dev...)
runtime-deps:
	bash image/install-runtime-deps.sh

system-deps: runtime-deps
	bash tests/install-system-deps.sh

## test: the whole suite (fast tier); CI runs exactly this
test: system-deps venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) -m pytest -m "not slow" -q

## test-slow: the long checks (kill loops, large data) kept out of the default run
test-slow: system-deps venv
	$(PY) -m pytest -m slow -q

test-all: system-deps venv
	$(PY) -m pytest -q

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

## bench: reproducible comparison with restic, borg, cp -a and tar|zstd (writes docs/benchmarks.md)
bench: system-deps venv
	$(PY) benchmarks/run.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
