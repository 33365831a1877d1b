# Two set-up commands: `make demo` and `make test`; both create .venv when missing.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export RAY_USAGE_STATS_ENABLED := 0

.PHONY: demo test bench bench-gpu gpu-check gpu-kit gpu-check-offline install clean

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) on PATH (or: make PYTHON=python3 ...)"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch/torchvision pinned to the releases this workplace serves; pyproject.toml's torch>=2.5 works elsewhere.
	$(PY) -m pip install --quiet "torch==2.14.1" "torchvision==0.29.1" || $(PY) -m pip install --quiet torch torchvision
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

# The main job on the built-in demo faces: a small multi-fidelity search (pop 8, 5 generations;
# every new genome 2 epochs, the better half 4, all at the trial recipe: batch 32, no
# augmentation; the 2 best re-ranked by that recipe with another seed), then its best
# genome and the seed designs it trained (those under the cost cap) trained 8+2 epochs by that
# recipe and tested side by side (test split of 2,800 images: a standard error near 0.8 points).
DEMO_STAMP := $(shell date +%Y%m%d-%H%M%S)
DEMO_DIR ?= runs/demo-$(DEMO_STAMP)
DEMO_DATA ?= demo:1400,560,2800
# the trial recipe of the search (every genome of the run then has this batch size), and the
# augmentation of the training that compares its best with the seed designs
DEMO_BATCH ?= 32
DEMO_AUGMENT ?= none
DEMO_MMACS ?= 60
# the search's seed (the 8+2 trainings that compare its best with the seed designs keep seed 0)
DEMO_SEED ?= 0
# the seed designs the search trained (evolve/seed_designs), less the best genome if it is one of them
DEMO_SEEDS = $$($(PY) -c "import glob, json; best = json.load(open('$(DEMO_DIR)/evolve/best.json'))['evolve']['gid']; \
	print(' '.join(p for p in sorted(glob.glob('$(DEMO_DIR)/evolve/seed_designs/*.json')) if json.load(open(p))['evolve']['gid'] != best))")
demo: $(STAMP)
	$(PY) -m fernas evolve --data $(DEMO_DATA) --pop 8 --generations 5 --min-budget 2 --max-budget 4 --eta 2 \
	    --trial-batch $(DEMO_BATCH) --trial-augment $(DEMO_AUGMENT) --rerank-top 2 --rerank-seeds 1 --rerank-recipe trial --max-mmacs $(DEMO_MMACS) --seed $(DEMO_SEED) --out $(DEMO_DIR)/evolve
	$(PY) -m fernas train $(DEMO_DIR)/evolve/best.json $(DEMO_SEEDS) --data $(DEMO_DATA) --epochs 8 \
	    --fine-tune-epochs 2 --train-crops 1 --augment $(DEMO_AUGMENT) --out $(DEMO_DIR)/trained
	@echo
	@echo "demo done: search in $(DEMO_DIR)/evolve (trials.csv, logbook.csv, progress.png, pareto.png, hall_of_fame/),"
	@echo "           the best genome and the seed designs under the cap trained in $(DEMO_DIR)/trained (comparison.csv)"

# Two test processes: most of the suite's time is Ray starting and stopping, which leaves a
# core idle; the tests are written to run beside each other (CONTRIBUTING.md). A file's tests
# stay in one process, so a module's fixture (a whole search, some of them) runs once.
TEST_WORKERS ?= 2
test: $(STAMP)
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile

# With --gpu (make bench-gpu) a benchmark without a GPU setting (host memory, command start-up) is skipped.
bench: $(STAMP)
	@for b in data train search search_quality fitness_noise budget_correlation chaos equal_compute cost_model memory_estimate step_ops cli_startup; do \
	  [ -f benchmarks/$$b.py ] || continue; \
	  case " $(BENCH_ARGS) " in *" --gpu "*) grep -q -- '"--gpu"' benchmarks/$$b.py || { echo "== benchmarks/$$b.py: no GPU setting, skipped"; continue; };; esac; \
	  echo "== benchmarks/$$b.py"; $(PY) benchmarks/$$b.py $(BENCH_ARGS) || exit 1; done

# The larger settings, for a machine with a GPU (results go to *-gpu.json with the card's name).
bench-gpu:
	$(MAKE) bench BENCH_ARGS=--gpu

# The whole GPU path in a few minutes on a machine with a GPU (benchmarks/gpu_check.py says
# what it runs); benchmarks/results/gpu-check.json.  Without a GPU it says so and exits 0.
# GPU_CHECK_ARGS: e.g. "--from evolve-shared-card" to rerun from a step after a fix.
GPU_CHECK_ARGS ?=
gpu-check: $(STAMP)
	$(PY) benchmarks/gpu_check.py $(GPU_CHECK_ARGS)

# The same on a GPU machine that reaches no package index but has torch in its python3:
# `make gpu-kit` here packs the other wheels into .gpu-kit/ (tools/gpu_kit.py; copy that folder
# over with the repository), then `make gpu-check-offline` there (or, without make,
# `bash tools/gpu_check_offline.sh`) installs fernas from it into that python3 and runs the check.
GPU_KIT ?= .gpu-kit
GPU_KIT_PYTHON ?= 3.12
OFFLINE_PY ?= python3
gpu-kit: $(STAMP)
	$(PY) tools/gpu_kit.py build --python-version $(GPU_KIT_PYTHON) --out $(GPU_KIT)

gpu-check-offline:
	GPU_KIT=$(GPU_KIT) OFFLINE_PY=$(OFFLINE_PY) bash tools/gpu_check_offline.sh $(GPU_CHECK_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info
