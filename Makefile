# Everything bootstraps itself: a .venv with the project installed, and the Debian
# packages the tests drive (SIPp). Each step is idempotent and skipped when done.
SHELL := /bin/bash
PYTHON_SYSTEM ?= python3
VENV := .venv
PYTHON := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Debian packages the test suite and benchmarks use.
DEBIAN_PACKAGES := sip-tester baresip-core postgresql mosquitto curl
SIP ?= 127.0.0.1:5060
# The Customer Control API, served by the switch's own process (`softswitch run --api`).
API ?= 127.0.0.1:8080
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run test bench lint typecheck debian-packages clean

$(STAMP): pyproject.toml
	test -x $(PYTHON) || $(PYTHON_SYSTEM) -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip
	$(PYTHON) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

debian-packages:
	@missing=""; \
	for package in $(DEBIAN_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$package 2>/dev/null | grep -q "ok installed" || missing="$$missing $$package"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; \
	fi

run: $(STAMP)
	$(PYTHON) -m softswitch run --config configs/demo.yaml --data-dir data --sip $(SIP) --api $(API)

lint: $(STAMP)
	$(PYTHON) -m ruff check softswitch cloudpbx custcon_api sip_tests

typecheck: $(STAMP)
	$(PYTHON) -m mypy softswitch cloudpbx custcon_api

test: $(STAMP) debian-packages lint typecheck
	$(PYTHON) -m pytest -q -n 2 --dist loadfile --durations=15

bench: $(STAMP) debian-packages
	$(PYTHON) -m softswitch.benchmarks.parser
	$(PYTHON) -m softswitch.benchmarks.options_load
	$(PYTHON) -m softswitch.benchmarks.call_cpu --rate 500 --seconds 10 --rounds 3
	$(PYTHON) -m softswitch.benchmarks.call_load --rates 200,400,600,800,1000 --seconds 20 \
	  --hold-calls 10000 --hold-rate 500 --hold-seconds 30
	# Issue 5: toll-free calls against plain extension calls, side by side on one switch.
	$(PYTHON) -m softswitch.benchmarks.call_load --targets extension,tollfree \
	  --rates 400,600,800,900,1000 --seconds 20 --no-hold
	# Issue 6 item 7: overload control under a flood at 3x the clean call rate.
	$(PYTHON) -m softswitch.benchmarks.flood --flood-seconds 20

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
