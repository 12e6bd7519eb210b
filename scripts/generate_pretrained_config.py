"""Rebuild a shipped pretrained config from its readable source, choosing thresholds by measurement.

    python scripts/generate_pretrained_config.py            # rebuilds redisvl_llmrouter/pretrained/default.json

Reads ``<name>.source.yaml`` (routes, models, costs, references) and ``<name>.queries.yaml``
(labelled ``dev`` and ``check`` queries that are not references), then:

1. embeds references and queries once with the default offline model;
2. on the **dev** queries, searches aggregation method x per-route thresholds for the best tier
   accuracy, replaying the router's exact ranking (``redisvl_llmrouter.ranking``) on the
   per-reference distances, so every candidate is scored as the router would score it;
3. builds the router on Redis with the chosen settings, routes the held-out **check** queries
   through it (the real search, not the replay) and records that accuracy;
4. exports it with ``export_with_embeddings`` to ``<name>.json``.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import uuid
from pathlib import Path

import numpy as np
import yaml

from redisvl_llmrouter import Route, RoutingConfig, SemanticRouter
from redisvl_llmrouter.ranking import RouteDistances, rank
from redisvl_llmrouter.vectorizers import default_vectorizer

HERE = Path(__file__).resolve().parent.parent / "redisvl_llmrouter" / "pretrained"
THRESHOLDS = [round(float(t), 2) for t in np.arange(0.40, 1.01, 0.05)]
#: Aggregations tried: RedisVL's min and avg, and the mean of the k nearest references.
AGGREGATIONS = [("min", 1), ("avg", 1), ("topk", 2), ("topk", 3), ("topk", 5), ("topk", 8)]


def load(name: str) -> tuple[dict, dict]:
    source = yaml.safe_load((HERE / f"{name}.source.yaml").read_text(encoding="utf-8"))
    queries = yaml.safe_load((HERE / f"{name}.queries.yaml").read_text(encoding="utf-8"))
    return source, queries


def labelled(split: dict[str, list[str]]) -> tuple[list[str], list[str]]:
    texts, labels = [], []
    for label, items in split.items():
        texts += items
        labels += [label] * len(items)
    return texts, labels


def replay_accuracy(
    distances: dict[str, np.ndarray], labels: list[str], routes: dict[str, Route], config: RoutingConfig
) -> float:
    """Tier accuracy of the router's ranking on precomputed per-reference cosine distances.

    Mirrors the Redis search: a range query with radius = the largest threshold; the rows then go
    through the router's own ranking.
    """
    radius = max(r.distance_threshold for r in routes.values())
    correct = 0
    for i, label in enumerate(labels):
        rows = [
            RouteDistances(name, tuple(sorted(float(x) for x in d[i][d[i] <= radius]))) for name, d in distances.items()
        ]
        ranked = rank([r for r in rows if r.distances], routes, config)
        chosen = ranked[0].route.name if ranked else config.default_route
        correct += chosen == label
    return correct / len(labels)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", nargs="?", default="default")
    args = parser.parse_args()
    source, queries = load(args.name)
    vectorizer = default_vectorizer()

    base_routes = [Route(**r) for r in source["routes"]]
    refs = {r.name: np.asarray(vectorizer.embed_many(r.references), dtype=np.float32) for r in base_routes}
    dev_texts, dev_labels = labelled(queries["dev"])
    check_texts, check_labels = labelled(queries["check"])
    dev_vecs = np.asarray(vectorizer.embed_many(dev_texts), dtype=np.float32)
    # Unit vectors: cosine distance is 1 - dot product.
    dev_dist = {name: 1.0 - dev_vecs @ ref.T for name, ref in refs.items()}

    base_config = source.get("routing_config") or {}
    best: tuple[float, float, dict, str] | None = None
    for method, k in AGGREGATIONS:
        config = RoutingConfig(**{**base_config, "aggregation_method": method, "aggregation_k": k})
        for combo in itertools.product(THRESHOLDS, repeat=len(base_routes)):
            routes = {r.name: r.model_copy(update={"distance_threshold": t}) for r, t in zip(base_routes, combo)}
            acc = replay_accuracy(dev_dist, dev_labels, routes, config)
            # Prefer higher dev accuracy, then tighter thresholds (fewer far-fetched matches).
            key = (acc, -sum(combo))
            if best is None or key > best[:2]:
                best = (acc, -sum(combo), {r.name: t for r, t in zip(base_routes, combo)}, config)
        print(f"  {method}(k={k}): best dev accuracy so far {best[0]:.3f}", flush=True)
    assert best is not None
    dev_acc, _, thresholds, config = best
    method = f"{config.aggregation_method.value}(k={config.aggregation_k})"
    print(f"dev accuracy {dev_acc:.3f} with aggregation={method} thresholds={thresholds}")

    routes = [r.model_copy(update={"distance_threshold": thresholds[r.name]}) for r in base_routes]
    router = SemanticRouter(
        name=f"build-{uuid.uuid4().hex[:8]}", routes=routes, routing_config=config, vectorizer=vectorizer
    )
    try:
        matches = router.route_batch(check_texts)
        hits = [m.name == label for m, label in zip(matches, check_labels)]
        per_tier = {
            tier: round(float(np.mean([h for h, lab in zip(hits, check_labels) if lab == tier])), 3)
            for tier in queries["check"]
        }
        check_acc = float(np.mean(hits))
        print(f"check accuracy {check_acc:.3f} on {len(hits)} held-out queries; per tier {per_tier}")
        config_out = router.export_with_embeddings(
            HERE / f"{args.name}.json", description=source.get("description", "")
        )
    finally:
        router.delete()

    # Record the measurements and the config's own name in the written file.
    from redisvl_llmrouter import pretrained

    written = pretrained.read(config_out)
    written = written.model_copy(
        update={
            "name": source["name"],
            "metrics": {
                "dev_accuracy": round(dev_acc, 4),
                "dev_queries": len(dev_labels),
                "check_accuracy": round(check_acc, 4),
                "check_queries": len(check_labels),
                "check_accuracy_per_tier": per_tier,
                "tuned_on_dev": {"aggregation": method, "thresholds": thresholds},
            },
        }
    )
    pretrained.write(written, config_out)
    print(f"wrote {config_out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
