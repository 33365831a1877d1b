# Two set-up commands: `make demo` and `make test`; both create .venv when missing.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export RAY_USAGE_STATS_ENABLED := 0

.PHONY: demo test bench install clean

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) on PATH (or: make PYTHON=python3 ...)"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch/torchvision pinned to the releases this workplace serves; any >=2.2 works elsewhere.
	$(PY) -m pip install --quiet "torch==2.14.1" "torchvision==0.29.1" || $(PY) -m pip install --quiet torch torchvision
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) -m fernas decode genomes/*.json

test: $(STAMP)
	$(PY) -m pytest -q

bench: $(STAMP)
	@for b in data train search search_quality; do \
	  if [ -f benchmarks/$$b.py ]; then echo "== benchmarks/$$b.py"; $(PY) benchmarks/$$b.py $(BENCH_ARGS) || exit 1; fi; done

clean:
	rm -rf $(VENV) build *.egg-info
