"""What learned routing adds to a route, with 15,000 outcome rows in the memory.

    .venv/bin/python benchmarks/learned_latency.py [--rows 15000] [--queries 1000] [--json OUT]

One router (the shipped ``default`` config, its own name) learns ``--rows`` real outcome rows (RouteLLM
MMLU, then RouterBench ARC, from ``../shared/data/routing``; prompts embedded by the router, as
``router.learn`` does), the router's 7 models standing for the 7 data models observed most (the others'
outcomes left out). Then ``--queries`` other prompts (the RouterBench Winogrande and MBPP sets, never
learned) are routed twice each, interleaved so that drift hits both alike: with ``strategy="semantic"``
(the tiers alone: one search) and ``strategy="learned"`` (the same search plus the memory's KNN, the
pure prediction and the utility rule, in the same round trip). Queries are embedded once beforehand and
passed as vectors, so both paths time routing, not the embedding model. ``learned_overhead_p50_ms`` is
the difference of the two p50s.

Writes ``benchmarks/results/learned_latency.json``; deletes the router at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import numpy as np

from redisvl_llmrouter import SemanticRouter

HERE = Path(__file__).resolve().parent
DATA = HERE.parent.parent / "shared" / "data" / "routing"
TRAIN = ["routellm_mmlu.jsonl", "routerbench_arc_train.jsonl"]
HELD_OUT = ["routerbench_winogrande_train.jsonl", "routerbench_mbpp_train.jsonl"]


def rows(files: list[str], limit: int) -> list[dict]:
    out: list[dict] = []
    for name in files:
        with open(DATA / name, encoding="utf-8") as handle:
            for line in handle:
                out.append(json.loads(line))
                if len(out) >= limit:
                    return out
    return out


def percentiles(ms: list[float]) -> dict[str, float]:
    a = np.asarray(ms)
    return {"p50": round(float(np.percentile(a, 50)), 3), "p99": round(float(np.percentile(a, 99)), 3)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=15_000)
    parser.add_argument("--queries", type=int, default=1_000)
    parser.add_argument("--json", dest="json_out", type=Path, default=HERE / "results" / "learned_latency.json")
    args = parser.parse_args()
    if not DATA.is_dir():
        sys.exit(f"{DATA} not found: this benchmark needs the shared outcome data")

    router = SemanticRouter.from_pretrained("default", name=f"bench-learned-{uuid.uuid4().hex[:6]}")
    try:
        train = rows(TRAIN, args.rows)
        # Each of the router's 7 models stands for one data model, the most observed first (both of
        # MMLU's, then ARC's); the other data models' outcomes are left out.
        seen = Counter(m for r in train for m in r["outcomes"])
        model_map = dict(zip(sorted(seen, key=lambda m: (-seen[m], m)), router.models, strict=False))
        train = [
            {**r, "outcomes": {model_map[m]: o for m, o in r["outcomes"].items() if m in model_map}} for r in train
        ]
        started = time.perf_counter()
        router.learn(train)
        learn_s = time.perf_counter() - started
        memory_rows = router.memory_info().rows

        queries = [r["prompt"][:1000] for r in rows(HELD_OUT, args.queries)]
        vectors = [router.vectorizer.embed(q) for q in queries]
        for vector in vectors[:100]:  # warm-up
            router(vector=vector, strategy="semantic")
            router(vector=vector, strategy="learned")
        samples: dict[str, list[float]] = {"semantic": [], "learned": []}
        learned_decisions = 0
        for vector in vectors:
            for strategy in ("semantic", "learned"):
                t = time.perf_counter()
                match = router(vector=vector, strategy=strategy)
                samples[strategy].append((time.perf_counter() - t) * 1000)
                learned_decisions += strategy == "learned" and bool(match.decision and match.decision.learned)
        semantic, learned = percentiles(samples["semantic"]), percentiles(samples["learned"])
        out = {
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "loadavg": os.getloadavg()},
            "memory_rows": memory_rows,
            "learn_s": round(learn_s, 1),
            "queries": len(vectors),
            "semantic_route_ms": semantic,
            "learned_route_ms": learned,
            "learned_overhead_p50_ms": round(learned["p50"] - semantic["p50"], 3),
            "share_decided_by_memory": round(learned_decisions / len(vectors), 3),
        }
    finally:
        router.delete()
    args.json_out.parent.mkdir(parents=True, exist_ok=True)
    args.json_out.write_text(json.dumps(out, indent=1) + "\n")
    print(
        f"{memory_rows} rows: route p50 {semantic['p50']:.2f} ms (tiers) vs {learned['p50']:.2f} ms (learned), "
        f"+{out['learned_overhead_p50_ms']:.2f} ms; {out['share_decided_by_memory']:.0%} decided by the memory"
    )
    print(f"wrote {args.json_out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
