# Two commands on a fresh machine: `make run` and `make test`.
# Both build what they need (.venv, packages, migrations) and are safe to run twice.

PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test test-fault lint bench migrate clean

# The trading-process client is its own distribution (clients/python, needs only redis);
# the service imports its Redis contract from it, so it is installed first, editable.
$(STAMP): pyproject.toml requirements.lock clients/python/pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.lock
	$(PY) -m pip install --quiet --no-deps -e ./clients/python
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

migrate: $(STAMP)
	$(PY) scripts/with_redis.py $(PY) manage.py migrate --noinput

# Brings up Redis (embedded when none answers), migrations, demo users and data,
# daphne (HTTP + WebSocket), the Celery worker and the reconciler. Ctrl-C stops all.
run: $(STAMP)
	$(PY) scripts/run.py

# The fast suite; the fault drills (-m fault) run separately (make test-fault).
test: $(STAMP)
	$(PY) -m pytest -m "not fault" $(PYTEST_ARGS)

test-fault: $(STAMP)
	$(PY) -m pytest -m fault $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .

bench: $(STAMP)
	$(PY) bench/run_all.py $(BENCH)

clean:
	rm -rf $(VENV) db.sqlite3 .pytest_cache
