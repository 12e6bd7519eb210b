"""How well the shipped config's confidence holds as a probability: ECE and a reliability diagram.

    .venv/bin/python benchmarks/confidence.py     # writes results/confidence.json, plots/confidence_reliability.png

Routes the labelled ``dev`` queries (what the sharpness was fitted on) and the held-out ``check``
queries of ``pretrained/default.queries.yaml`` through the default router on Redis, and reports for
each split the tier accuracy, the mean confidence and the expected calibration error (10 equal-width
bins), with a bootstrap 90% interval for the check figure (120 queries make a noisy ECE). For
comparison, the same queries are ranked with the uncalibrated measure ``1 - distance / threshold``
(the config without its calibration): same routes, different confidences.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import uuid
from pathlib import Path

import yaml

from redisvl_llmrouter import SemanticRouter, pretrained, ranking
from redisvl_llmrouter.confidence import expected_calibration_error, reliability

HERE = Path(__file__).resolve().parent
BOOTSTRAP = 2000


def labelled(split: dict[str, list[str]]) -> tuple[list[str], list[str]]:
    texts = [q for qs in split.values() for q in qs]
    return texts, [tier for tier, qs in split.items() for _ in qs]


def measure(router: SemanticRouter, texts: list[str], labels: list[str], calibrated: bool) -> dict:
    """Confidence and correctness of each query's tier, ranked as the router ranks it."""
    config = router.routing_config
    if not calibrated:
        config = config.model_copy(update={"confidence": None})
    tiers = {r.name: r for r in router.routes if not r.is_floor}
    confidences, correct = [], []
    for rows, label in zip(router.distances(texts), labels, strict=True):
        match = ranking.best_match(ranking.rank(rows, tiers, config), tiers, config)
        confidences.append(match.confidence)
        correct.append(match.name == label)
    return {"confidences": confidences, "correct": correct}


def bootstrap_interval(confidences: list[float], correct: list[bool], seed: int = 0) -> list[float]:
    """The 5th and 95th percentiles of the ECE over resamples of the queries."""
    rng = random.Random(seed)
    n = len(confidences)
    values = []
    for _ in range(BOOTSTRAP):
        idx = [rng.randrange(n) for _ in range(n)]
        values.append(expected_calibration_error([confidences[i] for i in idx], [correct[i] for i in idx]))
    values.sort()
    return [round(values[int(0.05 * BOOTSTRAP)], 4), round(values[int(0.95 * BOOTSTRAP)], 4)]


def summary(m: dict) -> dict:
    c, y = m["confidences"], m["correct"]
    return {
        "queries": len(c),
        "accuracy": round(sum(y) / len(y), 4),
        "mean_confidence": round(sum(c) / len(c), 4),
        "ece": round(expected_calibration_error(c, y), 4),
        "bins": [
            {
                "low": b.low,
                "high": b.high,
                "count": b.count,
                "confidence": round(b.confidence, 4),
                "accuracy": b.accuracy,
            }
            for b in reliability(c, y)
        ],
    }


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(5.5, 6.5), height_ratios=[3, 1], sharex=True)
    top.plot([0, 1], [0, 1], color="grey", linestyle=":", label="perfectly calibrated")
    styles = {"calibrated": ("tab:blue", "o"), "uncalibrated": ("tab:orange", "s")}
    for kind, (color, marker) in styles.items():
        check = results["check"][kind]
        bins = [b for b in check["bins"] if b["count"]]
        label = f"{kind} (ECE {check['ece']:.3f})"
        top.plot(
            [b["confidence"] for b in bins], [b["accuracy"] for b in bins], marker=marker, color=color, label=label
        )
        centres = [(b["low"] + b["high"]) / 2 + (-0.02 if kind == "calibrated" else 0.02) for b in check["bins"]]
        bottom.bar(centres, [b["count"] for b in check["bins"]], width=0.04, color=color)
    top.set_ylabel("share of answers whose tier was right")
    top.set_title(f"default config, {results['check']['calibrated']['queries']} held-out check queries")
    top.legend(loc="lower right")
    top.set_xlim(0, 1)
    top.set_ylim(0, 1.02)
    bottom.set_xlabel("confidence (10 equal-width bins)")
    bottom.set_ylabel("answers")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "confidence.json")
    parser.add_argument("--plot", type=Path, default=HERE / "plots" / "confidence_reliability.png")
    args = parser.parse_args()
    queries = yaml.safe_load((pretrained.CONFIG_DIR / "default.queries.yaml").read_text(encoding="utf-8"))
    router = SemanticRouter.from_pretrained("default", name=f"confidence-{uuid.uuid4().hex[:8]}")
    try:
        results: dict = {"sharpness": router.routing_config.confidence.sharpness}
        for split in ("dev", "check"):
            texts, labels = labelled(queries[split])
            results[split] = {kind: summary(measure(router, texts, labels, kind == "calibrated")) for kind in
                              ("calibrated", "uncalibrated")}  # fmt: skip
        check = measure(router, *labelled(queries["check"]), calibrated=True)
        results["check"]["calibrated"]["ece_bootstrap_90"] = bootstrap_interval(check["confidences"], check["correct"])
    finally:
        router.delete()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    plot(results, args.plot)
    for split in ("dev", "check"):
        for kind in ("calibrated", "uncalibrated"):
            r = results[split][kind]
            print(f"{split:<6} {kind:<13} accuracy {r['accuracy']:.3f}  mean confidence {r['mean_confidence']:.3f}  "
                  f"ECE {r['ece']:.3f}")  # fmt: skip
    print(f"check ECE bootstrap 90% interval {results['check']['calibrated']['ece_bootstrap_90']}")
    print(f"wrote {args.out} and {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
