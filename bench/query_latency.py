"""Where a query's time goes: the encoder runtimes and each step of a hybrid search.

    .venv/bin/python bench/query_latency.py [--home DIR] [--queries N] [--json OUT]

On the SciFact knowledge base in --home (default .bench-home/, built by bench/retrieval.py), for
the first N test queries one at a time, medians in ms: the MiniLM forward pass in PyTorch (eager,
3 vs 30 tokens, and `jit.freeze`), PyTorch int8 dynamic quantization (with its cosine to fp32),
ONNX Runtime with 2 and 1 threads; the dense matrix-vector product three ways, alone, right after
a PyTorch pass, and inside the search loop; BM25 scoring and per-document selection; fetching 100
hits; whole hybrid `search(k=10)` and `search(k=100, per_doc=1)`.
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np

from common import BENCH_HOME, SCIFACT, write_json
from ragtune import KnowledgeBase, Settings
from ragtune.evaluation import load_beir
from ragtune.retrieval import searcher_for

DATASET = SCIFACT


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--home", type=Path, default=BENCH_HOME)
    parser.add_argument("--queries", type=int, default=150)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    import onnxruntime as ort
    import torch

    kb = KnowledgeBase("scifact", Settings.load(home=args.home))
    searcher = searcher_for(kb)
    index = searcher.index()
    emb = kb.embedder
    emb.warm_up()
    data = load_beir(DATASET)
    texts = [data.queries[q] for q in sorted(data.qrels)][: args.queries]
    ids = [emb._tokenizer.encode(t).ids for t in texts]
    model = emb._transformer
    out: dict[str, float] = {}

    def feed(i: int) -> dict:
        x = torch.tensor([ids[i]])
        return {"input_ids": x, "attention_mask": torch.ones_like(x),
                "token_type_ids": torch.zeros_like(x)}

    def median(fn) -> float:
        fn(0)
        ms = []
        for i in range(len(texts)):
            t = time.perf_counter()
            fn(i)
            ms.append((time.perf_counter() - t) * 1000)
        return round(float(np.median(ms)), 2)

    with torch.inference_mode():
        out["torch eager forward"] = median(lambda i: model(**feed(i)))
        for length in (3, 30):
            x = torch.randint(1000, 20000, (1, length))
            out[f"torch eager forward, {length} tokens"] = median(
                lambda i, x=x: model(input_ids=x, attention_mask=torch.ones_like(x),
                                     token_type_ids=torch.zeros_like(x)))
        after: list[float] = []
        for i in range(len(texts)):  # the product alone, timed right after a PyTorch pass
            model(**feed(i))
            t = time.perf_counter()
            index.matrix @ index.matrix[i]
            after.append((time.perf_counter() - t) * 1000)
        out["numpy BLAS product right after a PyTorch pass"] = round(float(np.median(after)), 2)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")

        class Hidden(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.m = model

            def forward(self, a, b, c):  # noqa: ANN001, ANN202
                return self.m(input_ids=a, attention_mask=b, token_type_ids=c,
                              return_dict=False)[0]

        f0 = feed(0)
        frozen = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(
            Hidden().eval(), tuple(f0.values()), check_trace=False)))
        out["torch jit.freeze forward"] = median(lambda i: frozen(*feed(i).values()))
        quant = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear},
                                                       dtype=torch.qint8)
        out["torch int8 dynamic forward"] = median(lambda i: quant(**feed(i)))
        cos = []
        for i in range(min(20, len(texts))):
            a = model(**feed(i)).last_hidden_state[0].mean(0)
            b = quant(**feed(i)).last_hidden_state[0].mean(0)
            cos.append(float(torch.nn.functional.cosine_similarity(a, b, dim=0)))
        out["torch int8 min cosine to fp32"] = round(min(cos), 4)
    path = next((args.home / "cache").glob("minilm-*.onnx"))
    for threads in (2, 1):
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

        def run(i: int, session=session) -> None:
            x = np.asarray([ids[i]], dtype=np.int64)
            session.run(None, {"input_ids": x, "attention_mask": np.ones_like(x),
                               "token_type_ids": np.zeros_like(x)})

        out[f"onnxruntime forward, {threads} thread(s)"] = median(run)
    out["embed_query (what search uses)"] = median(lambda i: emb.embed_query(texts[i]))
    vectors = [emb.embed_query(t) for t in texts]
    out["dense scores, torch.mv (threaded)"] = median(
        lambda i: torch.mv(torch.from_numpy(index.matrix), torch.from_numpy(vectors[i])))
    out["dense scores, numpy BLAS (threaded)"] = median(lambda i: index.matrix @ vectors[i])
    out["dense scores, einsum (what search uses)"] = median(
        lambda i: np.einsum("ij,j->i", index.matrix, vectors[i]))
    out["bm25 retrieve, top-100 documents"] = median(
        lambda i: searcher.bm25.retrieve(texts[i], index, 100, None, 1))
    ranking = searcher.bm25.retrieve(texts[0], index, 100, None, 1)
    out["fetch and build 100 hits"] = median(lambda i: searcher._hits(index, ranking, 100,
                                                                      "bm25"))
    import ragtune.retrieval.retrievers as retrievers

    used = retrievers._matvec
    variants = {"einsum (used)": used, "torch.mv": lambda m, v: torch.mv(
        torch.from_numpy(m), torch.from_numpy(v)).numpy(), "numpy BLAS": lambda m, v: m @ v}
    rounds: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(2):  # alternate the variants so drifts of the machine hit all of them
        for name, fn in variants.items():
            retrievers._matvec = fn
            for text in texts:
                t = time.perf_counter()
                searcher.search(text, k=10)
                rounds[name].append((time.perf_counter() - t) * 1000)
    retrievers._matvec = used
    for name, ms in rounds.items():
        out[f"hybrid search(k=10), dense product by {name}"] = round(float(np.median(ms)), 2)
    out["hybrid search(k=10)"] = median(lambda i: searcher.search(texts[i], k=10))
    out["hybrid search(k=100, per_doc=1)"] = median(
        lambda i: searcher.search(texts[i], k=100, per_doc=1, dedupe=False))
    for name, value in out.items():
        print(f"{name:40} {value}")
    write_json(args.json, out)


if __name__ == "__main__":
    main()
