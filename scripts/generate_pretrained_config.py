"""Rebuild a shipped pretrained config from its readable source, choosing thresholds by measurement.

    python scripts/generate_pretrained_config.py            # rebuilds pretrained/default.json

Reads ``pretrained/<name>.source.yaml`` (routes, models, catalog, references) and
``pretrained/<name>.queries.yaml`` (labelled ``dev`` and ``check`` queries that are not
references), then:

1. embeds references and queries once with the default offline model;
2. on the **dev** queries, searches aggregation method x per-route thresholds for the best tier
   accuracy, replaying the router's exact ranking (``redisvl_llmrouter.ranking``) on the
   per-reference distances, so every candidate is scored as the router would score it;
3. on the same dev queries, fits the confidence's sharpness by maximum likelihood
   (``redisvl_llmrouter.confidence``), so confidences are probabilities;
4. for the floor routes, picks one threshold on the dev floor queries: the largest coverage of
   high-stakes requests (the tier, or a floor, puts them at ``standard`` or above) that fires a
   floor on at most 5% of ordinary requests;
5. builds the router on Redis with the chosen settings, routes the held-out **check** queries
   through it (the real search and policy, not the replay) and records tier accuracy, the
   confidence's expected calibration error, floor coverage and the false floor rate;
6. exports it with ``export_with_embeddings`` to ``<name>.json``.
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
from redisvl_llmrouter.confidence import LabelledDistances, expected_calibration_error, fit_sharpness, log_loss
from redisvl_llmrouter.ranking import RouteDistances, aggregate, rank, route_distances
from redisvl_llmrouter.schema import ConfidenceCalibration
from redisvl_llmrouter.vectorizers import default_vectorizer

HERE = Path(__file__).resolve().parent.parent / "pretrained"
THRESHOLDS = [round(float(t), 2) for t in np.arange(0.40, 1.01, 0.05)]
FLOOR_THRESHOLDS = [round(float(t), 3) for t in np.arange(0.30, 0.801, 0.025)]
#: Most ordinary dev requests a floor may fire on.
FLOOR_FALSE_RATE = 0.05
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


def replay_rows(distances: dict[str, np.ndarray], i: int, routes: dict[str, Route]) -> list[RouteDistances]:
    """Query ``i``'s search rows from precomputed per-reference cosine distances.

    Mirrors the Redis search: a range query with radius = the largest threshold.
    """
    radius = max(r.distance_threshold for r in routes.values())
    rows = [
        RouteDistances(name, tuple(sorted(float(x) for x in d[i][d[i] <= radius]))) for name, d in distances.items()
    ]
    return [r for r in rows if r.distances]


def replay_accuracy(
    distances: dict[str, np.ndarray], labels: list[str], routes: dict[str, Route], config: RoutingConfig
) -> float:
    """Tier accuracy of the router's ranking on precomputed per-reference cosine distances."""
    correct = 0
    for i, label in enumerate(labels):
        ranked = rank(replay_rows(distances, i, routes), routes, config)
        chosen = ranked[0].route.name if ranked else config.default_route
        correct += chosen == label
    return correct / len(labels)


def calibration_examples(
    distances: dict[str, np.ndarray], labels: list[str], routes: dict[str, Route], config: RoutingConfig
) -> list[LabelledDistances]:
    """What the confidence model chooses among for each labelled query: the routes that passed
    their thresholds, or every route when none did (the default route's case)."""
    examples = []
    for i, label in enumerate(labels):
        rows = replay_rows(distances, i, routes)
        ranked = rank(rows, routes, config)
        options = (
            {c.route.name: c.distance for c in ranked}
            if ranked
            else route_distances(rows, routes, config.aggregation_method, config.aggregation_k)
        )
        examples.append(LabelledDistances(options, label))
    return examples


def replay_confidences(
    distances: dict[str, np.ndarray], labels: list[str], routes: dict[str, Route], config: RoutingConfig
) -> tuple[list[float], list[bool]]:
    """Each query's confidence and whether its route was right, by the replayed ranking."""
    confidences, correct = [], []
    for i, label in enumerate(labels):
        ranked = rank(replay_rows(distances, i, routes), routes, config)
        confidences.append(ranked[0].confidence if ranked else ranked.fallback_confidence)
        correct.append((ranked[0].route.name if ranked else config.default_route) == label)
    return confidences, correct


def floor_distances(vecs: np.ndarray, refs: dict[str, np.ndarray], config: RoutingConfig) -> np.ndarray:
    """``(queries, floors)`` aggregated distances, as the router aggregates a route's references."""
    out = np.empty((vecs.shape[0], len(refs)))
    for j, ref in enumerate(refs.values()):
        dist = np.sort(1.0 - vecs @ ref.T, axis=1)
        for i in range(vecs.shape[0]):
            row = RouteDistances("floor", tuple(float(x) for x in dist[i]))
            out[i, j] = aggregate(row, config.aggregation_method, config.aggregation_k)
    return out


def tier_positions(texts: list[str], vecs: np.ndarray, refs: dict, routes: dict, config: RoutingConfig) -> np.ndarray:
    """Each query's tier position (0 = cheapest) under the tuned tier routes, by the replayed ranking."""
    radius = max(r.distance_threshold for r in routes.values())
    names = list(routes)
    out = np.empty(len(texts), dtype=int)
    for i in range(len(texts)):
        rows = []
        for name in names:
            d = np.sort(1.0 - vecs[i] @ refs[name].T)
            rows.append(RouteDistances(name, tuple(float(x) for x in d[d <= radius])))
        ranked = rank([r for r in rows if r.distances], routes, config)
        out[i] = names.index(ranked[0].route.name if ranked else config.default_route)
    return out


def choose_floor_threshold(
    high_tiers: np.ndarray, high_floor: np.ndarray, ordinary_floor: np.ndarray, min_tier: int
) -> tuple[float, float, float]:
    """The floor threshold with the best dev coverage whose ordinary fire rate stays within bounds."""
    best = None
    for t in FLOOR_THRESHOLDS:
        coverage = float(np.mean((high_tiers >= min_tier) | (high_floor < t).any(axis=1)))
        false_rate = float(np.mean((ordinary_floor < t).any(axis=1)))
        if false_rate <= FLOOR_FALSE_RATE and (best is None or coverage > best[1]):
            best = (t, coverage, false_rate)
    assert best is not None, "no floor threshold keeps ordinary requests clear"
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", nargs="?", default="default")
    args = parser.parse_args()
    source, queries = load(args.name)
    vectorizer = default_vectorizer()

    all_routes = [Route(**r) for r in source["routes"]]
    base_routes = [r for r in all_routes if not r.is_floor]
    floor_routes = [r for r in all_routes if r.is_floor]
    refs = {r.name: np.asarray(vectorizer.embed_many(r.references), dtype=np.float32) for r in base_routes}
    floor_refs = {r.name: np.asarray(vectorizer.embed_many(r.references), dtype=np.float32) for r in floor_routes}
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
    tier_routes = {r.name: r for r in routes}

    # Confidence: one sharpness, fitted on the dev queries under the chosen routing.
    examples = calibration_examples(dev_dist, dev_labels, tier_routes, config)
    sharpness = round(fit_sharpness(examples), 3)
    calibration = ConfidenceCalibration(
        sharpness=sharpness, fitted_on=f"{len(dev_labels)} labelled dev queries ({args.name}.queries.yaml)"
    )
    config = config.model_copy(update={"confidence": calibration})
    dev_conf, dev_correct = replay_confidences(dev_dist, dev_labels, tier_routes, config)
    confidence_metrics = {
        "sharpness": sharpness,
        "dev_log_loss": round(log_loss(examples, sharpness), 4),
        "dev_ece": round(expected_calibration_error(dev_conf, dev_correct), 4),
        "bins": 10,
    }
    print(f"confidence sharpness {sharpness} (dev ECE {confidence_metrics['dev_ece']:.3f})")

    floor_metrics: dict = {}
    if floor_routes:
        tier_names = list(tier_routes)
        min_tier = max(tier_names.index(r.floor.min_route) for r in floor_routes)
        dev_floors = queries["floors"]["dev"]
        high = [q for items in dev_floors["high_stakes"].values() for q in items]
        high_vecs = np.asarray(vectorizer.embed_many(high), dtype=np.float32)
        ordinary_vecs = np.asarray(vectorizer.embed_many(dev_floors["ordinary"]), dtype=np.float32)
        t, coverage, false_rate = choose_floor_threshold(
            tier_positions(high, high_vecs, refs, tier_routes, config),
            floor_distances(high_vecs, floor_refs, config),
            floor_distances(ordinary_vecs, floor_refs, config),
            min_tier,
        )
        print(f"floor threshold {t}: dev coverage {coverage:.3f}, dev ordinary fire rate {false_rate:.3f}")
        floor_routes = [r.model_copy(update={"distance_threshold": t}) for r in floor_routes]
        floor_metrics = {"threshold": t, "dev_coverage": round(coverage, 4), "dev_false_rate": round(false_rate, 4)}

    router = SemanticRouter(
        name=f"build-{uuid.uuid4().hex[:8]}",
        routes=[*routes, *floor_routes],
        routing_config=config,
        vectorizer=vectorizer,
        catalog=source.get("catalog"),
    )
    try:
        matches = router.route_batch(check_texts, strategy="semantic")
        hits = [m.name == label for m, label in zip(matches, check_labels)]
        per_tier = {
            tier: round(float(np.mean([h for h, lab in zip(hits, check_labels) if lab == tier])), 3)
            for tier in queries["check"]
        }
        check_acc = float(np.mean(hits))
        print(f"check accuracy {check_acc:.3f} on {len(hits)} held-out queries; per tier {per_tier}")
        check_conf = [m.confidence for m in matches]
        confidence_metrics.update(
            check_ece=round(expected_calibration_error(check_conf, hits), 4),
            check_mean_confidence=round(float(np.mean(check_conf)), 4),
        )
        print(f"confidence on held-out checks: ECE {confidence_metrics['check_ece']:.3f}")
        if floor_routes:
            check_floors = queries["floors"]["check"]
            allowed = set(tier_names[min_tier:])
            per_domain = {}
            for domain, items in check_floors["high_stakes"].items():
                decisions = [m.decision for m in router.route_batch(items, strategy="semantic")]
                per_domain[domain] = [d.route in allowed for d in decisions]
            covered = [x for xs in per_domain.values() for x in xs]
            ordinary_matches = router.route_batch(check_floors["ordinary"], strategy="semantic")
            ordinary = [bool(m.decision.floors) for m in ordinary_matches]
            floor_metrics.update(
                check_coverage=round(float(np.mean(covered)), 4),
                check_high_stakes=len(covered),
                check_coverage_per_domain={k: round(float(np.mean(v)), 3) for k, v in per_domain.items()},
                check_false_rate=round(float(np.mean(ordinary)), 4),
                check_ordinary=len(ordinary),
            )
            print(
                f"floors on held-out checks: {sum(covered)}/{len(covered)} high-stakes at or above the floor, "
                f"{sum(ordinary)}/{len(ordinary)} ordinary requests fired a floor"
            )
        config_out = router.export_with_embeddings(
            HERE / f"{args.name}.json", description=source.get("description", ""), include_outcomes=False
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
                "confidence": confidence_metrics,
                **({"floors": floor_metrics} if floor_metrics else {}),
            },
        }
    )
    pretrained.write(written, config_out)
    print(f"wrote {config_out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
