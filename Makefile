# The two commands a newcomer needs: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench soak redis clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(STAMP): $(PY) setup.cfg pyproject.toml
	$(PY) -m pip install -q -e '.[test,bench]'
	touch $(STAMP)

redis:
	@bash scripts/ensure-redis.sh

demo: $(STAMP)
	$(PY) examples/demo.py

lint: $(STAMP)
	$(PY) -m ruff check .

test: $(STAMP) redis lint
	$(PY) -m pytest -q -p no:cacheprovider

bench: $(STAMP) redis
	$(PY) benchmarks/run.py

# Minutes of mixed load and random replication faults; SOAK_SECONDS changes the duration.
soak: $(STAMP) redis
	$(PY) benchmarks/soak.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis
