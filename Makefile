# Two commands on a fresh clone: `make demo` and `make test` (see README.md).
VENV ?= .venv
PY := $(VENV)/bin/python
export NUMBA_CACHE_DIR ?= $(CURDIR)/.numba_cache
export PYTHONUNBUFFERED := 1

.PHONY: install demo test bench clean-cache

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q "torch>=2.4" "torchvision>=0.19"
	$(PY) -m pip install -q -e ".[test]"
	touch $@

install: $(VENV)/.installed

demo: install
	$(PY) -m runners.run cond_ae train.epochs=2 data.size=1500 train.judge_steps=500   # a few minutes on a laptop CPU
	@echo
	@echo "Next: compare runs in MLflow:    $(VENV)/bin/mlflow ui          (http://127.0.0.1:5000)"
	@echo "      see pictures in the dashboard: $(VENV)/bin/streamlit run dashboard/app.py"

test: install
	$(PY) -m pytest -n 2   # two workers: 3.5 min on 2 cores (README, Performance)

bench: install
	$(PY) bench/synthart_difficulty.py
	$(PY) bench/quality.py
