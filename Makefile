# The two commands a newcomer needs: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench soak redis fuzz docs clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(STAMP): $(PY) setup.cfg pyproject.toml constraints.txt
	$(PY) -m pip install -q -c constraints.txt -e '.[test,bench]'
	touch $(STAMP)

redis:
	@bash scripts/ensure-redis.sh

demo: $(STAMP)
	$(PY) examples/demo.py

lint: $(STAMP)
	$(PY) -m ruff check .

test: $(STAMP) redis lint
	$(PY) -m pytest -q -p no:cacheprovider

# 100,000 cases a fuzz target (a fresh seed each run: it is printed, SEED=n replays it), the
# full fault matrix on the replication link, and DIFF_EXAMPLES random command sequences
# against redis-server (hypothesis, not derandomized). A few minutes.
FUZZ_CASES ?= 100000
DIFF_EXAMPLES ?= 2000
SEED := $(or $(SEED),$(shell date +%s))
fuzz: $(STAMP) redis
	@echo "fuzz seed $(SEED) (make fuzz SEED=$(SEED) replays it)"
	KVREPL_FUZZ_CASES=$(FUZZ_CASES) KVREPL_FUZZ_SEED=$(SEED) KVREPL_FAULTS=full \
		KVREPL_DIFF_EXAMPLES=$(DIFF_EXAMPLES) \
		$(PY) -m pytest -q -s -p no:cacheprovider tests/test_fuzz.py tests/test_faultproxy.py \
		tests/test_differential_random.py

bench: $(STAMP) redis
	$(PY) benchmarks/run.py

# Minutes of mixed load and random replication faults; SOAK_SECONDS changes the duration.
soak: $(STAMP) redis
	$(PY) benchmarks/soak.py

# The API reference, docs/api.md, from the docstrings (tests/test_api_docs.py checks it).
docs: $(STAMP)
	$(PY) tools/gen_api_docs.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis
