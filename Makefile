# Every target creates or refreshes .venv itself, so a fresh clone needs nothing but python3.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
export LITELLM_LOCAL_MODEL_COST_MAP := True

.PHONY: install demo test lint bench dist clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/lucky-litellm demo

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

test: lint
	bash .ci/install-redis.sh
	$(VENV)/bin/pytest -q

# make bench BENCH_ARGS="--only state,memory" (or --quick): see benchmarks/run.py
bench: $(STAMP)
	$(PY) -m benchmarks.run $(BENCH_ARGS)

# A wheel for other projects: pip install 'dist/lucky_litellm-<version>-py3-none-any.whl[proxy]'
dist: $(STAMP)
	rm -rf build dist
	$(PY) -m pip wheel -q --no-deps -w dist .
	@ls dist/*.whl

clean:
	rm -rf $(VENV) build dist .pytest_cache .mypy_cache .ruff_cache
