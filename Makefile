# Two commands on a fresh clone: `make demo` and `make test` (see README.md).
VENV ?= .venv
PY := $(VENV)/bin/python
export NUMBA_CACHE_DIR ?= $(CURDIR)/.numba_cache
export PYTHONUNBUFFERED := 1

.PHONY: install demo test test-fast bench clean-cache

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q "torch>=2.4" "torchvision>=0.19"
	$(PY) -m pip install -q -e ".[test]"
	touch $@

install: $(VENV)/.installed

demo: install
	$(PY) -m runners.demo   # cond_ae on synthart; its minutes and numbers: docs/results.md

test: install
	$(PY) -m pytest -n 2 --dist loadgroup   # two workers; the tests of one trained store on one (tests/conftest.py)

test-fast: install
	$(PY) -m pytest -n 2 --dist loadgroup -m "not slow"   # the edit-test loop: under a minute

bench: install
	$(PY) bench/synthart_difficulty.py
	$(PY) bench/quality.py
