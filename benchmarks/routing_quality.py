"""Routing quality on real model outcomes, tier router and learned router; writes benchmarks/RESULTS.md.

    .venv/bin/python benchmarks/routing_quality.py [--data ../shared/data/routing] [--limit N] [--folds 5]

For each outcome set in the shared data folder (RouteLLM MMLU and RouterBench ARC, MBPP,
Winogrande) and for the mixed-traffic set (the three RouterBench train splits concatenated):

* **tier router**: the shipped ``default`` config, tiers mapped to models of the set, every prompt
  routed once through the real Redis search, ``cost_weight`` swept from 0 to 1;
* **learned router**: K-fold cross-validation (folds by a hash of each prompt's id). For each fold
  a fresh router chooses its hyperparameters by inner cross-validation on the other folds (never
  on the fold it is scored on), learns their outcomes into its Redis memory, and predicts the
  fold through the real KNN search; the knob is swept with the router's own utility rule.

Both are compared with the single models, the Zero router (random mixing of single models) and
the Oracle, with RouterBench's AIQ and, on the two-model MMLU set, RouteLLM's APGR and CPT (with, as
a reference, the APGR of ranking prompts by their subject label, held out and in-sample).
Whatever the numbers say is what is written.

Tier → model maps (by price band, mirroring nano $0.10 / sonnet $3 / opus $5):
* RouterBench (11 models): simple → Mixtral-8x7B, standard → GPT-3.5-turbo, expert → GPT-4.
* MMLU (2 models): simple → Mixtral-8x7B (weak); standard and expert → GPT-4 (strong).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from redisvl_llmrouter import SemanticRouter, evaluation
from redisvl_llmrouter.evaluation_run import (
    concat_outcomes,
    embed_prompts,
    evaluate,
    evaluate_learned,
    learned_router,
    route_model_map,
)
from redisvl_llmrouter.learning.tuning import folds_by_id

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = HERE.parent.parent / "shared" / "data" / "routing"
ROUTERBENCH_MAP = [
    "simple=mistralai/mixtral-8x7b-chat",
    "standard=gpt-3.5-turbo-1106",
    "expert=gpt-4-1106-preview",
]
SETS = {
    "routellm_mmlu.jsonl": [
        "simple=mistralai/Mixtral-8x7B-Instruct-v0.1",
        "standard=gpt-4-1106-preview",
        "expert=gpt-4-1106-preview",
    ],
    "routerbench_arc_train.jsonl": ROUTERBENCH_MAP,
    "routerbench_mbpp_train.jsonl": ROUTERBENCH_MAP,
    "routerbench_winogrande_train.jsonl": ROUTERBENCH_MAP,
}
MIXED = "routerbench_mixed"
MIXED_PARTS = ["routerbench_arc_train.jsonl", "routerbench_mbpp_train.jsonl", "routerbench_winogrande_train.jsonl"]


def _short(model: str) -> str:
    return model.rsplit("/", 1)[-1]


def zero_quality_at(report: dict, cost: float) -> float:
    """The Zero router's quality at a given cost: what random mixing of single models reaches for that money."""
    hull = evaluation.zero_router([(m["cost"], m["quality"]) for m in report["singles"]])
    xs, ys = [c for c, _ in hull], [q for _, q in hull]
    return float(np.interp(cost, xs, ys, left=float("nan")))


def fmt(v: float | None, spec: str = ".3f") -> str:
    return "—" if v is None else format(v, spec)


def tier_table(reports: list[dict]) -> str:
    lines = [
        "| dataset | n | router at shipped config (quality, $/prompt) | Zero router at that cost | router AIQ "
        "| Zero AIQ | best single (quality, $/prompt) | Oracle (quality, $/prompt) | APGR | CPT(50%) | CPT(80%) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in reports:
        best, orc, at = r["best_single"], r["oracle"], r["default_point"]
        lines.append(
            f"| {r['dataset']} | {r['n']:,} | {at['quality']:.3f}, {at['cost']:.2e} "
            f"| {fmt(r['zero_at_default'])} | {r['aiq']:.4f} | {r['zero_aiq']:.4f} "
            f"| {_short(best['model'])} ({best['quality']:.3f}, {best['cost']:.2e}) "
            f"| {orc['quality']:.3f}, {orc['cost']:.2e} "
            f"| {fmt(r.get('apgr'))} | {fmt(r.get('cpt50'))} | {fmt(r.get('cpt80'))} |"
        )
    return "\n".join(lines)


def label_reference(path: Path, outcomes: evaluation.OutcomeSet, folds: int) -> dict[str, float] | None:
    """APGR of ranking a two-model set's prompts by their ``task`` label's strong-minus-weak gap.

    A reference for the learned router's APGR, not a router: the label is in the data, not in a
    request. Measured both ways: ``held_out`` takes each task's gap from the other folds only (the
    learned router's folds), ``in_sample`` from every prompt, the one being ranked included.
    """
    if len(outcomes.models) != 2:
        return None
    with path.open() as rows:
        task_of = {row["id"]: row.get("task") for row in map(json.loads, rows)}
    tasks = np.array([str(task_of.get(ident)) for ident in outcomes.ids])
    if len(set(tasks)) < 2:
        return None
    strong = int(np.argmax(outcomes.cost.mean(axis=0)))
    weak_q, strong_q = outcomes.quality[:, 1 - strong], outcomes.quality[:, strong]
    gap = strong_q - weak_q

    def task_gaps(rows: np.ndarray) -> dict[str, float]:
        return {t: float(gap[rows][tasks[rows] == t].mean()) for t in set(tasks[rows])}

    def apgr(score: np.ndarray) -> float:
        # A task's prompts share one score: the curve is drawn at task boundaries (random mixing
        # within a task), so the order of tied prompts does not matter.
        points, taken, quality = [(0.0, float(weak_q.mean()))], 0, float(weak_q.mean())
        for value in sorted(set(score), reverse=True):
            group = score == value
            taken += int(group.sum())
            quality += float(gap[group].sum()) / outcomes.n
            points.append((taken / outcomes.n, quality))
        return evaluation.apgr(points, float(weak_q.mean()), float(strong_q.mean()))

    everything = np.arange(outcomes.n)
    whole = task_gaps(everything)
    held_out = np.empty(outcomes.n)
    for fold in (f for f in folds_by_id(outcomes.ids, folds, texts=outcomes.prompts) if f.size):
        known = task_gaps(np.setdiff1d(everything, fold))
        overall = float(np.mean(list(known.values())))
        held_out[fold] = [known.get(t, overall) for t in tasks[fold]]
    return {"held_out": apgr(held_out), "in_sample": apgr(np.array([whole[t] for t in tasks]))}


def label_notes(reports: list[dict]) -> str:
    lines = [
        f"\nA reference for {r['dataset']}'s APGR: ranking its prompts by their `task` label's "
        f"strong-minus-weak gap (a label a request does not carry) reaches {r['label_reference']['held_out']:.3f} "
        f"with each task's gap measured on the other folds, {r['label_reference']['in_sample']:.3f} when "
        "measured on all the prompts, the ranked one included."
        for r in reports
        if r.get("label_reference")
    ]
    return "".join(lines)


def learned_table(reports: list[dict]) -> str:
    lines = [
        "| dataset | n | learned AIQ | Zero AIQ | learned − Zero | best single (quality, $/prompt) "
        "| cost to reach 97% of best single | learned at its best (quality, $/prompt) | APGR | CPT(50%) | CPT(80%) "
        "| neighbours, shrinkage chosen per fold |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in reports:
        best = r["best_single"]
        top = max(r["curve"], key=lambda p: (p["quality"], -p["cost"]))
        reach = r["cost_to_97"]
        reach_text = "not reached" if reach is None else f"{reach:.2e} ({reach / best['cost']:.0%} of its cost)"
        settings = ", ".join(f"{s['neighbours']}/{s['shrinkage']:g}" for s in r["settings"])
        lines.append(
            f"| {r['dataset']} | {r['n']:,} | {r['aiq']:.4f} | {r['zero_aiq']:.4f} | {r['aiq'] - r['zero_aiq']:+.4f} "
            f"| {_short(best['model'])} ({best['quality']:.3f}, {best['cost']:.2e}) | {reach_text} "
            f"| {top['quality']:.3f}, {top['cost']:.2e} "
            f"| {fmt(r.get('apgr'))} | {fmt(r.get('cpt50'))} | {fmt(r.get('cpt80'))} | {settings} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--limit", type=int, default=None, help="first N prompts of each set (for a quick run)")
    parser.add_argument("--folds", type=int, default=5, help="cross-validation folds of the learned router")
    parser.add_argument("--out", type=Path, default=HERE / "RESULTS.md")
    args = parser.parse_args()
    present = [name for name in SETS if (args.data / name).is_file()]
    if not present:
        print(f"no outcome sets under {args.data}; nothing to measure", file=sys.stderr)
        return 1

    (HERE / "plots").mkdir(exist_ok=True)
    started = time.perf_counter()
    outcome_sets = {name: evaluation.load_outcomes(args.data / name, limit=args.limit) for name in present}
    if all(part in outcome_sets for part in MIXED_PARTS):
        outcome_sets[MIXED] = concat_outcomes([outcome_sets[p] for p in MIXED_PARTS], MIXED)
    maps = {**SETS, MIXED: ROUTERBENCH_MAP}

    tier_reports: dict[str, dict] = {}
    vectors: dict[str, np.ndarray] = {}
    router = SemanticRouter.from_pretrained("default", name="bench-routing-quality", overwrite=True)
    try:
        # Every prompt is embedded once (its routing text, as the router embeds it) for both routers.
        for name, outcomes in outcome_sets.items():
            if name == MIXED:
                vectors[name] = np.vstack([vectors[p] for p in MIXED_PARTS])
                continue
            with tqdm(total=outcomes.n, desc=f"embed {outcomes.name}", unit="prompt", file=sys.stderr) as bar:
                vectors[name] = embed_prompts(router, outcomes.prompts, progress=bar.update)
        for name, outcomes in outcome_sets.items():
            mapping = route_model_map(router.routes, outcomes.models, maps[name])
            report = evaluate(router, outcomes, mapping, grid=21, vectors=vectors[name])
            # The router as shipped (no cost optimisation) is the knob-0 end of the sweep.
            report["default_point"] = report["curve"][0]
            report["zero_at_default"] = zero_quality_at(report, report["default_point"]["cost"])
            tier_reports[name] = report
    finally:
        router.delete()
    tier_elapsed = time.perf_counter() - started

    learned_reports: dict[str, dict] = {}
    started = time.perf_counter()
    for name, outcomes in outcome_sets.items():
        mapping = route_model_map(default_routes(), outcomes.models, maps[name])
        lrouter = learned_router("default", outcomes.models, mapping, name="bench-learned")
        try:
            print(f"learned router on {outcomes.name} ({args.folds} folds) ...", file=sys.stderr)
            report = evaluate_learned(lrouter, outcomes, vectors[name], folds=args.folds)
        finally:
            lrouter.delete()
        best = report["best_single"]
        report["cost_to_97"] = evaluation.cost_to_reach(
            [(p["cost"], p["quality"]) for p in report["curve"]], 0.97 * best["quality"]
        )
        if name != MIXED and (reference := label_reference(args.data / name, outcomes, args.folds)):
            report["label_reference"] = reference
        learned_reports[name] = report
        print(
            f"{outcomes.name}: learned AIQ {report['aiq']:.4f} vs Zero {report['zero_aiq']:.4f}"
            + (f", APGR {report['apgr']:.4f}" if report.get("apgr") is not None else ""),
            file=sys.stderr,
        )
        evaluation.plot(
            {"tier router (default)": tier_reports[name], f"learned ({args.folds}-fold CV)": report},
            HERE / "plots" / f"{outcomes.name}.png",
        )
    learned_elapsed = time.perf_counter() - started

    (HERE / "results").mkdir(exist_ok=True)
    raw = {"tier": list(tier_reports.values()), "learned": list(learned_reports.values())}
    (HERE / "results" / "routing_quality.json").write_text(json.dumps(raw, indent=1) + "\n")
    map_lines = "\n".join(f"- `{n}`: " + ", ".join(f"`{m}`" for m in maps[n]) for n in outcome_sets)
    shares = "\n".join(
        f"- {r['dataset']}: "
        + ", ".join(f"{route} {share:.1%}" for route, share in r["route_shares_at_config"].items())
        for r in tier_reports.values()
    )
    n_prompts = sum(o.n for n, o in outcome_sets.items() if n != MIXED)
    args.out.write_text(
        f"""# Routing quality on real model outcomes

Produced by `benchmarks/routing_quality.py` (do not edit by hand); {n_prompts:,} prompts
({f"first {args.limit} of each set, " if args.limit else ""}plus the mixed set made of the three RouterBench
splits), tier router {tier_elapsed:.0f} s and learned router {learned_elapsed:.0f} s on this machine.
Quality is the mean per-prompt quality (0..1); cost is mean USD per prompt. AIQ: area under a
router's non-decreasing convex hull over the single models' cost range, normalised (RouterBench).
The Zero router mixes single models at random; the Oracle knows the answer. APGR/CPT (RouteLLM)
only for the two-model MMLU set; CPT is the share of calls to the strong model.

## Learned router ({args.folds}-fold cross-validation)

Each fold is predicted by a fresh router that learned only the other folds' outcomes, with its
neighbours and shrinkage chosen by a 4-fold cross-validation inside those folds (the column on the
right). Prompts go through the real path: the routing text (head and tail of long prompts), the
MiniLM embedding, the Redis KNN search over the memory, the pure prediction, the utility rule.
"Cost to reach 97% of best single" is read off the learned curve's hull (random mixing of two
operating points reaches everything between them).

{learned_table(list(learned_reports.values()))}
{label_notes(list(learned_reports.values()))}

## Tier router (the shipped `default` config)

The cost knob only moves a prompt between routes that passed their thresholds, so the tier
router's curve covers a narrow band of the cost range; RouterBench's AIQ counts the uncovered
range as zero quality. The fairer single-point comparison is the router at its shipped config
against the Zero router at the same cost.

{tier_table(list(tier_reports.values()))}

Tier → model maps:
{map_lines}

Share of prompts per tier at the shipped config:
{shares}

Plots (both routers per set): `benchmarks/plots/*.png`. Raw curves: `benchmarks/results/routing_quality.json`.
"""
    )
    print(learned_table(list(learned_reports.values())))
    print(tier_table(list(tier_reports.values())))
    print(f"wrote {args.out}")
    return 0


def default_routes() -> list:
    """The shipped config's routes, read without Redis."""
    from redisvl_llmrouter import pretrained

    return pretrained.read("default").definition().routes


if __name__ == "__main__":
    sys.exit(main())
