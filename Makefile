# The two commands: `make run` (the portal, on a fresh machine) and `make test` (the suite).

VENV := .venv
PY := $(VENV)/bin/python
# The Python named by .python-version (pyenv honours it; Debian 13 has it as python3).
PYTHON ?= $(shell command -v python$$(cat .python-version) 2>/dev/null || command -v python3)

.PHONY: run test lint bench clean

# `make run` is development: DEBUG=True unless the environment or .env says otherwise (a .env
# written before DEBUG defaulted to False has no DEBUG line, and still works).
RUN_DEBUG := $(or $(DEBUG),$(shell sed -n 's/^DEBUG=//p' .env 2>/dev/null | tail -n 1),True)

run: export DEBUG = $(RUN_DEBUG)
run: $(VENV)/.run-stamp .env
	$(PY) manage.py migrate --noinput
	$(PY) manage.py dev_setup
	@echo "ca-portal on http://127.0.0.1:8000 with its delivery worker; Ctrl-C stops it all."
	@# The worker is started again whenever it exits; the sweeper runs every minute, the
	@# expiry reminders and digest every ten. Ctrl-C stops them all, quietly.
	@PYTHON=$(PY) exec bin/run-portal

test: $(VENV)/.dev-stamp $(VENV)/.clients-stamp
	$(VENV)/bin/pytest $(PYTEST_ARGS)

# Benchmarks: ratios measured side by side; writes bench/RESULTS.md. Needs wrk for the page
# rows (apt-get install wrk) and PostgreSQL for the PostgreSQL rows.
# Some parts only: make bench BENCH_ARGS="--only issuance,peer" (python -m bench.run --help).
bench: $(VENV)/.dev-stamp
	$(PY) -m bench.run $(BENCH_ARGS)

# Django's checks of a development configuration (no secrets here); production's, with
# check --deploy, run in tests/test_production.py.
lint: export DEBUG = True
lint: $(VENV)/.dev-stamp
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports --no-cache
	$(PY) manage.py check
	$(PY) manage.py makemigrations --check --dry-run

$(VENV)/bin/python:
	@$(PYTHON) -c 'import sys; v=open(".python-version").read().strip(); \
	  sys.exit(0 if "%d.%d" % sys.version_info[:2] == v else f"need Python {v}, found {sys.version.split()[0]}")'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(VENV)/.run-stamp: requirements.txt $(VENV)/bin/python
	$(PY) -m pip install --quiet -r requirements.txt
	@touch $@

$(VENV)/.dev-stamp: requirements.txt requirements-dev.txt $(VENV)/bin/python
	$(PY) -m pip install --quiet -r requirements-dev.txt
	@touch $@ $(VENV)/.run-stamp

# Dogtag's Python client needs python-ldap, which compiles against libldap2-dev and
# libsasl2-dev. Without them the REST API tests skip with that reason (CI installs them).
$(VENV)/.clients-stamp: requirements-clients.txt $(VENV)/.dev-stamp
	@if $(PY) -m pip install --quiet -r requirements-clients.txt; then touch $@; \
	  elif [ "$$CI" = true ]; then exit 1; else \
	  echo "note: dogtag-pki not installed (apt-get install libldap2-dev libsasl2-dev); its tests skip"; fi

# Development settings and secrets, generated once and kept out of git. DEBUG=True: the
# portal's default is production (DEBUG off, https only).
.env:
	@umask 077; $(PYTHON) -c 'import secrets; \
	  print("DEBUG=True"); \
	  print("SECRET_KEY=" + secrets.token_urlsafe(50)); \
	  print("CA_KEY_PASSPHRASE=" + secrets.token_urlsafe(32)); \
	  print("# Development only: agents skip the second factor (needs DEBUG)."); \
	  print("AGENT_REQUIRE_MFA=False")' > .env
	@echo "Wrote .env with DEBUG=True, AGENT_REQUIRE_MFA=False and a generated SECRET_KEY and CA_KEY_PASSPHRASE (keep it private)."

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
