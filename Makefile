# feltsafe: the two quick-start commands are `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# Debian packages the test suite needs (installed only when missing and we are root).
DEB_PACKAGES ?= $(shell cat .ci/debian-packages 2>/dev/null)

.PHONY: venv deps test lint types unit bench demo demo-analyze clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip setuptools wheel
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

venv: $(VENV)/.installed

deps:
	@missing=""; for p in $(DEB_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else echo "missing Debian packages (run as root to install):$$missing"; fi; \
	fi

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

types: venv
	$(VENV)/bin/mypy

unit: venv deps
	$(VENV)/bin/pytest $(PYTEST_ARGS)

test: lint types unit

bench: venv
	$(PY) -m bench $(BENCH_ARGS)

# The live demo: a scripted session through a local monitor (feltsafe demo --help).
# DEMO_ARGS passes options, e.g. make demo DEMO_ARGS="--duration 60 --no-browser".
demo: venv
	$(VENV)/bin/feltsafe demo $(DEMO_ARGS)

# feltsafe analyze on the bundled example conversation (synthetic voices, composed on
# the fly into a temporary stereo wav).
demo-analyze: venv
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	$(PY) -c 'import sys; from monitor.scenario import bundled_example; bundled_example().write_wav(sys.argv[1])' "$$tmp/example.wav" && \
	echo "feltsafe analyze on the bundled example conversation (synthetic voices):" && \
	$(VENV)/bin/feltsafe analyze --stereo "$$tmp/example.wav"

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
