# Two commands do all of the set-up (README.md): `make run` and `make test`.
# Both create or reuse .venv and reinstall only when a requirements file changed.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
PIP_LOG := $(VENV)/pip-install.log
# pip's output here is mostly warnings about empty local index folders; keep it in a log and
# show its tail only when an install fails.
define pip_install
	@echo "installing $(1) (log: $(PIP_LOG))"
	@$(PIP) install $(1) >>$(PIP_LOG) 2>&1 || { grep -v 'is ignored: it is neither' $(PIP_LOG) | tail -40; exit 1; }
endef

RUN_STAMP := $(VENV)/.installed-run
TEST_STAMP := $(VENV)/.installed-test

.PHONY: run test install install-test system-test-deps lint clean-venv

# `make run WEB=0` starts the server without the web page.
WEB ?= 1
run: $(RUN_STAMP)
	$(VENV)/bin/microcalcai serve $(if $(filter 0,$(WEB)),--no-web) $(SERVE_ARGS)

test: $(TEST_STAMP) system-test-deps
	$(PY) -m pytest $(PYTEST_ARGS)

install: $(RUN_STAMP)
install-test: $(TEST_STAMP)

$(PY):
	$(PYTHON) -m venv $(VENV)

$(RUN_STAMP): $(PY) requirements/lock.txt pyproject.toml MicrocalcAI/Logic/pyproject.toml
	$(call pip_install,-r requirements/lock.txt)
	$(call pip_install,--no-deps -e . -e MicrocalcAI/Logic)
	@touch $@

$(TEST_STAMP): $(RUN_STAMP) requirements/test.txt
	$(call pip_install,-r requirements/test.txt)
	@touch $@

# Chromium (browser tests) and Orthanc (DICOMweb tests) come from Debian's packages.
system-test-deps:
	@scripts/install-system-test-deps.sh

lint: $(TEST_STAMP)
	$(VENV)/bin/ruff check src Testing MicrocalcAI benchmarks Training

clean-venv:
	rm -rf $(VENV)
