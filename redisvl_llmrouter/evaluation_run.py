"""Running a router over recorded outcomes: the glue behind ``llmrouter eval`` and the benchmarks.

The router embeds every prompt once (in batches, with a progress bar) and runs its real Redis
search once per prompt (pipelined); the cost knob (``cost_weight`` from 0 to 1) is then swept by
re-ranking those rows with the pure ranking core, so a 21-point curve costs one pass over Redis.
Metrics come from :mod:`redisvl_llmrouter.evaluation`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from redisvl_llmrouter import evaluation, ranking
from redisvl_llmrouter.errors import ConfigError
from redisvl_llmrouter.schema import MAX_STATEMENT_CHARS, Route, RoutingConfig

__all__ = ["route_model_map", "choices_for", "evaluate", "run_eval"]


def route_model_map(routes: Sequence[Route], models: Sequence[str], pairs: Sequence[str]) -> dict[str, str]:
    """Which dataset model stands for each route: ``ROUTE=MODEL`` pairs, else the route's own model if present."""
    mapping: dict[str, str] = {}
    names = {r.name for r in routes}
    for pair in pairs:
        route, sep, model = pair.partition("=")
        if not sep or route not in names:
            raise ConfigError(f"--map {pair!r}: expected ROUTE=MODEL with ROUTE one of {sorted(names)}")
        if model not in models:
            raise ConfigError(f"--map {pair!r}: model {model!r} is not in the dataset; it has {list(models)}")
        mapping[route] = model
    for route in routes:
        if route.name not in mapping and route.model in models:
            mapping[route.name] = route.model  # type: ignore[assignment]
    missing = [r.name for r in routes if r.name not in mapping]
    if missing:
        raise ConfigError(
            f"No dataset model for route(s) {missing}: add --map ROUTE=MODEL (dataset models: {list(models)})"
        )
    return mapping


def choices_for(
    rows: Sequence[Sequence[ranking.RouteDistances]],
    routes: Mapping[str, Route],
    config: RoutingConfig,
    fallback: str | None,
) -> list[str | None]:
    """The route chosen for each prompt under ``config``; ``fallback`` where nothing matched."""
    chosen = []
    for prompt_rows in rows:
        match = ranking.best_match(ranking.rank(prompt_rows, routes, config), routes, config)
        chosen.append(match.name or fallback)
    return chosen


def evaluate(
    router: Any,
    outcomes: evaluation.OutcomeSet,
    mapping: Mapping[str, str],
    grid: int = 21,
    batch_size: int = 256,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Sweep ``cost_weight`` over ``grid`` values in [0, 1] and report cost, quality and the metrics.

    Prompts that match no route (and the config has no default) go to the most expensive route,
    so a router is never credited with a saving it did not decide on; their number is reported.
    """
    routes = {r.name: r for r in router.routes}
    rows: list[list[ranking.RouteDistances]] = []
    for start in range(0, outcomes.n, batch_size):
        chunk = outcomes.prompts[start : start + batch_size]
        # Long prompts are cut to what the router accepts; the model reads only the start anyway.
        rows.extend(router.distances(statements=[p[:MAX_STATEMENT_CHARS] for p in chunk]))
        if progress is not None:
            progress(len(chunk))
    dearest = max(routes.values(), key=lambda r: (r.cost is not None, r.cost or 0.0)).name
    base = router.routing_config
    # Whether a prompt matches does not depend on the cost weight, so the shipped config says it.
    at_config = choices_for(rows, routes, base, fallback=None)
    unmatched = at_config.count(None)
    curve = []
    for w in np.linspace(0.0, 1.0, grid):
        config = base.model_copy(update={"cost_optimization": True, "cost_weight": float(w)})
        chosen = choices_for(rows, routes, config, fallback=dearest)
        model_idx = [outcomes.model_index(mapping[name]) for name in chosen]  # type: ignore[index]
        curve.append(evaluation.routing_point(outcomes, model_idx, knob=float(w)))
    result = evaluation.report(outcomes, curve)
    route_shares = {name: float(np.mean([(c or dearest) == name for c in at_config])) for name in routes}
    result.update(router=router.name, map=dict(mapping), unmatched=unmatched, route_shares_at_config=route_shares)
    return result


def run_eval(args: argparse.Namespace) -> int:
    """``llmrouter eval``: one report per dataset, printed, and optionally written as JSON and PNG."""
    from tqdm import tqdm

    from redisvl_llmrouter import SemanticRouter

    router = SemanticRouter.from_pretrained(args.router, redis_url=args.redis_url)
    reports = []
    for path in args.datasets:
        outcomes = evaluation.load_outcomes(path, limit=args.limit)
        mapping = route_model_map(router.routes, outcomes.models, args.map)
        with tqdm(total=outcomes.n, desc=f"routing {Path(path).name}", unit="prompt", file=sys.stderr) as bar:
            result = evaluate(router, outcomes, mapping, grid=args.grid, progress=bar.update)
        reports.append(result)
        _print_summary(result)
    out: dict[str, Any] = {"router": args.router, "reports": reports}
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.json_out}")
    if args.plot:
        evaluation.plot(
            reports[0] if len(reports) == 1 else {f"{args.router} on {r['dataset']}": r for r in reports}, args.plot
        )
        print(f"wrote {args.plot}")
    return 0


def _print_summary(r: Mapping[str, Any]) -> None:
    best, orc = r["best_single"], r["oracle"]
    print(
        f"{r['dataset']}: n={r['n']} AIQ router {r['aiq']:.4f} vs Zero {r['zero_aiq']:.4f}; "
        f"best single {best['model']} q={best['quality']:.3f} ${best['cost']:.2e}; "
        f"oracle q={orc['quality']:.3f} ${orc['cost']:.2e}"
        + (f"; APGR {r['apgr']:.3f} CPT50 {r['cpt50']} CPT80 {r['cpt80']}" if r.get("apgr") is not None else "")
    )
