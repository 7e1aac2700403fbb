"""Grounded answering on SQuAD 2.0 (the CS224N dev subset): correctness, refusal, citations, speed.

    .venv/bin/python bench/answer_squad.py [--home DIR] [--json OUT] [--cases OUT.jsonl]

In one run on this machine:
1. all 646 paragraphs are ingested as documents (incrementally: a second run re-embeds nothing);
2. model loading: the bundled generator's first load in a fresh data home (GGUF → safetensors
   conversion) and a second process's load from the cache, each in its own subprocess;
3. refusal calibration on a seeded sample of 50 answerable + 50 unanswerable questions
   (disjoint from the test sample): `ragtune.answering.calibrate`, the same code as
   `ragtune calibrate`;
4. the test: a seeded sample of 200 answerable + 200 unanswerable questions answered by `ask`
   (batched generation, k=3 hybrid passages, at most 32 new tokens) with the calibrated
   policy: exact match and token F1 (SQuAD normalization, answerable questions), refusal
   precision/recall (refusing is the positive class; a model that never refuses has recall 0),
   citation accuracy (share of cited chunks that contain a gold answer), tokens/s;
5. interactive latency: 20 test questions asked one at a time (p50/p95, time to first token);
6. batched vs one-at-a-time generation throughput on the same 16 answer prompts (about 860
   tokens each) and on 16 short chat prompts, and bf16 vs fp32 (speed, and whether greedy
   outputs agree) on 4 answer prompts. `--speed-only` runs steps 2 and 6 only.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from common import REPO, log, machine, versions, write_json
from ragtune import KnowledgeBase, Settings
from ragtune.answering import Answer, Answerer, RefusalPolicy, Signal, calibrate
from ragtune.answering.refusal import refusal_scores
from ragtune.evaluation.ir import percentile
from ragtune.evaluation.squad import SquadQuestion, load_squad
from ragtune.models.generators import GenerationConfig, LocalGenerator, cpu_has_bf16
from ragtune.text import exact_match, normalize_answer, token_f1

SQUAD = REPO.parent / "shared" / "data" / "squad-v2-dev-subset" / "dev-v2.0.json"
HOME = REPO / ".bench-home-squad"
K = 3
MAX_NEW_TOKENS = 32  # answers are short phrases; a sentence that runs past this scores low anyway
TEST_SEED, CALIB_SEED = 13, 7

LOAD_SNIPPET = """
import json, sys, time
t = time.perf_counter()
import torch, transformers
imports = time.perf_counter() - t
from pathlib import Path
from ragtune.models.generators import LocalGenerator
g = LocalGenerator(cache_dir=Path(sys.argv[1]), dtype="float32")
g.warm_up()
print(json.dumps({"load_seconds": g.load_seconds, "process_seconds": time.perf_counter() - t,
                  "torch_transformers_import_seconds": imports}))
"""


def timed_load(cache: Path) -> dict[str, float]:
    out = subprocess.run([sys.executable, "-c", LOAD_SNIPPET, str(cache)], check=True,
                         capture_output=True, text=True)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def loads() -> dict[str, Any]:
    """First load in a fresh data home (converts), then a second process (reads the cache)."""
    with tempfile.TemporaryDirectory() as fresh:
        first = timed_load(Path(fresh) / "cache")
        second = timed_load(Path(fresh) / "cache")
    log(f"load: first {first}, second {second}")
    return {"first_fresh_home": first, "second_process": second,
            "ratio": second["process_seconds"] / first["process_seconds"]}


def case_row(q: SquadQuestion, a: Answer, chunk_text: dict[str, str]) -> dict[str, Any]:
    gold = [normalize_answer(x) for x in q.answers]
    cited_ok = [any(g and g in normalize_answer(chunk_text[c.chunk_id]) for g in gold)
                for c in a.citations] if q.answerable else []
    gen = a.generation
    return {
        "id": q.id, "question": q.question, "answers": list(q.answers), "answer": a.text,
        "raw_output": a.raw_output, "refused": a.refused, "reason": a.refusal_reason,
        "em": exact_match(a.plain, q.answers) if q.answerable and not a.refused else 0.0,
        "f1": token_f1(a.plain, q.answers) if q.answerable and not a.refused else 0.0,
        "citations": [c.chunk_id for c in a.citations],
        "inferred": [c.inferred for c in a.citations],
        "citations_correct": cited_ok, "invalid_citations": a.invalid_citations,
        "gold_doc_retrieved": q.paragraph_id in {p.doc_id for p in a.prompt.passages},
        "similarity": a.similarity, "confidence": gen.mean_logprob if gen else None,
        "prompt_tokens": gen.prompt_tokens if gen else 0,
        "output_tokens": gen.output_tokens if gen else 0,
        "total_ms": a.timings_ms.get("total"),
    }


def cited_text(answers: list[Answer], kb: KnowledgeBase) -> dict[str, str]:
    """Citation accuracy needs the cited chunks' whole text, not the display snippet."""
    ids = [c.chunk_id for a in answers for c in a.citations]
    return {c.id: c.text for c in kb.store.get_chunks(ids)}


SHORT_PROMPTS = [
    [{"role": "user", "content": f"Write one sentence about the number {n}."}] for n in range(16)
]


def batching(generator: LocalGenerator, prompts: list, config: GenerationConfig
             ) -> tuple[dict[str, Any], list]:
    """The same prompts one at a time and batched: output tokens/s of each, same greedy text?"""
    t0 = time.perf_counter()
    serial = [generator.generate(p, config) for p in prompts]
    serial_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    batched = generator.generate_batch(prompts, config)
    batch_s = time.perf_counter() - t0
    serial_tps = sum(g.output_tokens for g in serial) / serial_s
    batch_tps = sum(g.output_tokens for g in batched) / batch_s
    return {
        "prompts": len(prompts), "batch_size": generator.batch_size,
        "prompt_tokens_mean": float(np.mean([g.prompt_tokens for g in serial])),
        "serial_tokens_per_second": serial_tps, "batched_tokens_per_second": batch_tps,
        "speedup": batch_tps / serial_tps,
        "same_text": sum(a.text == b.text for a, b in zip(serial, batched, strict=True)),
    }, serial


def speed(generator: LocalGenerator, rag_prompts: list, cache_dir: Path) -> dict[str, Any]:
    """Batching on answer prompts (long: prefill-bound) and on short chat prompts
    (decode-bound), and bf16 against fp32 on four answer prompts."""
    config = GenerationConfig(max_new_tokens=MAX_NEW_TOKENS)
    out: dict[str, Any] = {}
    out["batching"], serial = batching(generator, rag_prompts, config)
    log(f"batching (answer prompts): {out['batching']}")
    out["batching_short"], _ = batching(generator, SHORT_PROMPTS,
                                        GenerationConfig(max_new_tokens=48))
    log(f"batching (short prompts): {out['batching_short']}")
    bf16 = LocalGenerator(cache_dir=cache_dir, dtype="bfloat16")
    few = rag_prompts[:4]
    t0 = time.perf_counter()
    bf_out = [bf16.generate(p, config) for p in few]
    bf_s = time.perf_counter() - t0
    out["bf16"] = {
        "cpu_has_native_bf16": cpu_has_bf16(),
        "fp32_tokens_per_second": sum(g.output_tokens for g in serial[:4])
        / sum(g.seconds for g in serial[:4]),
        "bf16_tokens_per_second": sum(g.output_tokens for g in bf_out) / bf_s,
        "same_text_as_fp32": sum(a.text == b.text for a, b in zip(bf_out, serial, strict=False)),
        "prompts": len(few),
    }
    log(f"bf16: {out['bf16']}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--home", type=Path, default=HOME)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--cases", type=Path, default=None, help="per-question JSONL trace")
    parser.add_argument("--answerable", type=int, default=200)
    parser.add_argument("--unanswerable", type=int, default=200)
    parser.add_argument("--calibration", type=int, default=50, help="per class")
    parser.add_argument("--interactive", type=int, default=20)
    parser.add_argument("--speed-only", action="store_true",
                        help="only steps 2 and 6 (needs the knowledge base of an earlier run)")
    args = parser.parse_args()

    data = load_squad(SQUAD)
    if args.speed_only:
        settings = Settings.load(home=args.home, answer={"k": K},
                                 generator={"max_new_tokens": MAX_NEW_TOKENS})
        generator = LocalGenerator(cache_dir=settings.cache_dir, dtype="float32")
        kb = KnowledgeBase.open("squad", settings)
        answerer = Answerer(kb, generator)
        test = data.sample(args.answerable, args.unanswerable, seed=TEST_SEED)
        prompts = [answerer.prepare(q.question).prompt.messages for q in test[:16]]
        results = {"machine": machine(), "versions": versions(), "load": loads(),
                   **speed(generator, prompts, settings.cache_dir)}
        print(json.dumps(results, indent=2))
        write_json(args.json, results)
        return

    settings = Settings.load(home=args.home, answer={"k": K},
                             generator={"max_new_tokens": MAX_NEW_TOKENS})
    kb = KnowledgeBase.open("squad", settings)
    corpus = data.write_corpus(args.home / "corpus" / "squad-paragraphs.jsonl")
    report = kb.ingest([corpus], sync=True)
    log(f"ingest: {report.added} added, {report.unchanged} unchanged, "
        f"{report.chunks_written} chunks written, {len(report.flagged)} flagged")
    results: dict[str, Any] = {
        "machine": machine(), "versions": versions(), "dataset": str(SQUAD.relative_to(
            REPO.parent)), "k": K, "mode": "hybrid",
        "documents": len(data.paragraphs), "chunks": kb.store.stats().chunks,
        "flagged_chunks": report.flagged,
    }

    results["load"] = loads()

    generator = LocalGenerator(cache_dir=settings.cache_dir, dtype="float32")
    generator.warm_up()
    test = data.sample(args.answerable, args.unanswerable, seed=TEST_SEED)
    calib = data.sample(args.calibration, args.calibration, seed=CALIB_SEED,
                        exclude={q.id for q in test})

    # --- calibration ----------------------------------------------------------------------
    open_policy = RefusalPolicy(None, None, "none")
    t0 = time.perf_counter()
    calib_answers = Answerer(kb, generator, open_policy).ask_batch([q.question for q in calib])
    signals = [Signal(q.answerable, a.similarity, a.raw_output,
                      a.generation.mean_logprob if a.generation else None)
               for q, a in zip(calib, calib_answers, strict=True)]
    calibration = calibrate(signals, label=f"squad-v2 calibration sample (seed {CALIB_SEED})")
    results["calibration"] = calibration.to_dict() | {
        "seconds": time.perf_counter() - t0,
        "model_only": refusal_scores([a.refused for a in calib_answers],
                                     [q.answerable for q in calib]),
    }
    log(f"calibration: {calibration.to_dict()}")

    # --- the test sample ------------------------------------------------------------------
    answerer = Answerer(kb, generator, calibration.policy)
    t0 = time.perf_counter()
    answers = answerer.ask_batch([q.question for q in test])
    batch_seconds = time.perf_counter() - t0
    chunk_text = cited_text(answers, kb)
    rows = [case_row(q, a, chunk_text) for q, a in zip(test, answers, strict=True)]
    pos = [r for r, q in zip(rows, test, strict=True) if q.answerable]
    cited = [ok for r in pos for ok in r["citations_correct"]]  # gold exists: answerable only
    model_cited = [ok for r in pos for ok, inf in zip(r["citations_correct"], r["inferred"],
                                                      strict=True) if not inf]
    refusal = refusal_scores([r["refused"] for r in rows], [q.answerable for q in test])
    out_tokens = sum(r["output_tokens"] for r in rows)
    results["test"] = {
        "questions": len(test), "answerable": len(pos),
        "exact_match": float(np.mean([r["em"] for r in pos])),
        "token_f1": float(np.mean([r["f1"] for r in pos])),
        "exact_match_answered": float(np.mean([r["em"] for r in pos if not r["refused"]] or [0])),
        "token_f1_answered": float(np.mean([r["f1"] for r in pos if not r["refused"]] or [0])),
        "gold_paragraph_in_prompt": float(np.mean([r["gold_doc_retrieved"] for r in rows])),
        "refusal": refusal,
        "refusal_never_refuses": refusal_scores([False] * len(rows),
                                                [q.answerable for q in test]),
        "refusal_reasons": {k: sum(1 for r in rows if r["reason"] == k)
                            for k in ("retrieval", "model", "confidence", "unsupported",
                                      "no-passages")},
        "citation_accuracy": float(np.mean(cited)) if cited else None,
        "citations": len(cited),
        "citation_accuracy_model_written": float(np.mean(model_cited)) if model_cited else None,
        "citations_model_written": len(model_cited),
        "invalid_citations_removed": sum(r["invalid_citations"] for r in rows),
        "answered_without_citation": sum(1 for r in rows
                                         if not r["refused"] and not r["citations"]),
        "batch_seconds": batch_seconds,
        "batch_tokens_per_second": out_tokens / batch_seconds,
        "prompt_tokens_mean": float(np.mean([r["prompt_tokens"] for r in rows])),
        "output_tokens_mean": float(np.mean([r["output_tokens"] for r in rows])),
    }
    log(f"test: {json.dumps(results['test'])}")
    if args.cases:
        args.cases.parent.mkdir(parents=True, exist_ok=True)
        args.cases.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))

    # --- interactive latency --------------------------------------------------------------
    sample = test[: args.interactive // 2] + test[-(args.interactive - args.interactive // 2):]
    latencies, first_tokens, tps = [], [], []
    for q in sample:
        a = answerer.ask(q.question, on_token=lambda piece: None)
        latencies.append(a.timings_ms["total"])
        if a.generation is not None:
            if a.generation.first_token_seconds is not None:
                first_tokens.append(a.generation.first_token_seconds * 1000
                                    + a.timings_ms["retrieve"] + a.timings_ms["prompt"])
            tps.append(a.generation.tokens_per_second)
    results["interactive"] = {
        "questions": len(sample), "p50_ms": percentile(latencies, 50),
        "p95_ms": percentile(latencies, 95),
        "first_token_p50_ms": percentile(first_tokens, 50) if first_tokens else None,
        "tokens_per_second_p50": percentile(tps, 50) if tps else None,
    }
    log(f"interactive: {results['interactive']}")

    # --- batching and bf16 ----------------------------------------------------------------
    prompts = [answerer.prepare(q.question).prompt.messages for q in test[:16]]
    results.update(speed(generator, prompts, settings.cache_dir))
    print(json.dumps(results, indent=2))
    write_json(args.json, results)


if __name__ == "__main__":
    main()
