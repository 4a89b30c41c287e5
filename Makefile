# The two commands a newcomer needs: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-pythons lint bench soak redis fuzz docs clean

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

# The whole suite on each pyenv Python 3.10-3.13 present (setup.cfg promises >= 3.10), each in
# its own venv, .venv-310 ... .venv-313, built by this Makefile's own rules; a missing version is
# named and skipped. Not part of `make test` (CI): four suites take four times as long.
PYENV_ROOT ?= $(HOME)/.pyenv
PYTHON_MINORS ?= 10 11 12 13
test-pythons: redis
	@failed=""; ran=""; \
	for minor in $(PYTHON_MINORS); do \
		python=$$(ls -d $(PYENV_ROOT)/versions/3.$$minor.*/bin/python 2>/dev/null | sort -V | tail -n 1); \
		if [ -z "$$python" ]; then \
			echo "== Python 3.$$minor: not installed under $(PYENV_ROOT)/versions, skipped"; \
			continue; \
		fi; \
		echo "== Python 3.$$minor: $$python"; \
		ran="$$ran 3.$$minor"; \
		$(MAKE) --no-print-directory .venv-3$$minor/.installed VENV=.venv-3$$minor PYTHON=$$python \
			&& .venv-3$$minor/bin/python -m pytest -q -p no:cacheprovider \
			|| failed="$$failed 3.$$minor"; \
	done; \
	if [ -z "$$ran" ]; then echo "no pyenv Python 3.10-3.13 found"; exit 1; fi; \
	if [ -n "$$failed" ]; then echo "== failed on:$$failed"; exit 1; fi; \
	echo "== passed on:$$ran"

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
	rm -rf $(VENV) .venv-31? build *.egg-info .pytest_cache .hypothesis
