"""Running a router over recorded outcomes: the glue behind ``llmrouter eval`` and the benchmarks.

**Tier router** (:func:`evaluate`): the router embeds every prompt once (in batches, with a
progress bar) and runs its real Redis search once per prompt (pipelined); the cost knob
(``cost_weight`` from 0 to 1) is then swept by re-ranking those rows with the pure ranking core,
so a 21-point curve costs one pass over Redis.

**Learned router** (:func:`evaluate_learned`): a fresh router learns the training prompts'
outcomes into its Redis memory (after choosing its hyperparameters by cross-validation on those
training prompts only) and predicts every test prompt through the real KNN search and the pure
prediction module; the knob is swept with the same utility rule the router applies. With
``--cv K`` the set is split into K folds by a hash of each prompt's id and each fold is predicted
by a router that learned the other K - 1.

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
from redisvl_llmrouter.learning.calibration import sweep
from redisvl_llmrouter.learning.records import OutcomeRecord
from redisvl_llmrouter.learning.tuning import folds_by_id, tune
from redisvl_llmrouter.policy.catalog import ModelCatalog, ModelSpec
from redisvl_llmrouter.request_text import routing_text, same_text_key
from redisvl_llmrouter.schema import MAX_STATEMENT_CHARS, LearningConfig, Route, RoutingConfig

__all__ = [
    "choices_for",
    "compare_strategies",
    "learned_outcome_predictions",
    "learned_report",
    "route_candidates",
    "concat_outcomes",
    "embed_prompts",
    "evaluate",
    "evaluate_learned",
    "learned_router",
    "route_model_map",
    "run_eval",
    "subset",
]


def _not_in_dataset(pair: str, named: Sequence[str], models: Sequence[str], dropped: Sequence[str]) -> ConfigError:
    """A ``--map`` naming models the set lacks; one the loader left out says so (some rows do have it)."""
    left_out = [m for m in named if m in dropped]
    if left_out:
        return ConfigError(
            f"--map {pair!r}: model(s) {left_out} were left out of the dataset: most of its rows lack them (the "
            f"rows that have them are used for the other models); it has {list(models)}"
        )
    return ConfigError(f"--map {pair!r}: model(s) {list(named)} not in the dataset; it has {list(models)}")


def route_candidates(
    routes: Sequence[Route], models: Sequence[str], pairs: Sequence[str], dropped: Sequence[str] = ()
) -> dict[str, list[str]]:
    """Which dataset models stand for each tier route: ``ROUTE=MODEL[,MODEL...]`` pairs (first = the
    route's first choice), else the route's own candidates that are in the dataset. ``dropped``: the
    models the loader left out (named as such when a pair names one)."""
    mapping: dict[str, list[str]] = {}
    tiers = [r for r in routes if not r.is_floor]
    names = {r.name for r in tiers}
    for pair in pairs:
        route, sep, listed = pair.partition("=")
        if not sep or route not in names:
            raise ConfigError(f"--map {pair!r}: expected ROUTE=MODEL with ROUTE one of {sorted(names)}")
        if route in mapping:
            raise ConfigError(f"--map gives route {route!r} twice; list its models once: {route}=A,B")
        chosen = [m.strip() for m in listed.split(",") if m.strip()]
        unknown = [m for m in chosen if m not in models]
        if not chosen or unknown:
            raise _not_in_dataset(pair, unknown or [listed], models, dropped)
        mapping[route] = list(dict.fromkeys(chosen))
    for route in tiers:
        if route.name not in mapping and any(m in models for m in route.models):
            mapping[route.name] = [m for m in route.models if m in models]
    missing = [r.name for r in tiers if r.name not in mapping]
    if missing:
        raise ConfigError(
            f"No dataset model for route(s) {missing}: add --map ROUTE=MODEL (dataset models: {list(models)})"
        )
    return mapping


def check_folds(folds: int, test: evaluation.OutcomeSet) -> None:
    """Refuse more cross-validation folds than prompts (some folds would be empty)."""
    if folds > test.n:
        raise ConfigError(f"--cv {folds}: {test.name} has only {test.n} prompt(s); give --cv {test.n} or fewer")


def route_model_map(
    routes: Sequence[Route], models: Sequence[str], pairs: Sequence[str], dropped: Sequence[str] = ()
) -> dict[str, str]:
    """Which dataset model stands for each route: ``ROUTE=MODEL`` pairs, else the route's own model if present.

    The tier router sends a route to one model (its first), so a pair listing several (``ROUTE=A,B``, which
    ``--strategy`` can choose among) or a route given twice is refused rather than silently cut to one.
    """
    mapping: dict[str, str] = {}
    names = {r.name for r in routes if not r.is_floor}
    for pair in pairs:
        route, sep, model = pair.partition("=")
        if not sep or route not in names:
            raise ConfigError(f"--map {pair!r}: expected ROUTE=MODEL with ROUTE one of {sorted(names)}")
        if route in mapping:
            raise ConfigError(f"--map gives route {route!r} twice; give each route one model")
        listed = [m.strip() for m in model.split(",") if m.strip()]
        if len(listed) > 1:
            raise ConfigError(
                f"--map {pair!r}: the tier router sends route {route!r} to one model, so give one "
                "(several models per route are for --strategy, which chooses among them)"
            )
        model = listed[0] if listed else model
        if model not in models:
            raise _not_in_dataset(pair, [model], models, dropped)
        mapping[route] = model
    for route in routes:
        if not route.is_floor and route.name not in mapping and route.model in models:
            mapping[route.name] = route.model  # type: ignore[assignment]
    missing = [r.name for r in routes if not r.is_floor and r.name not in mapping]
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
    vectors: np.ndarray | None = None,
) -> dict[str, Any]:
    """Sweep ``cost_weight`` over ``grid`` values in [0, 1] and report cost, quality and the metrics.

    Prompts that match no route (and the config has no default) go to the most expensive route,
    so a router is never credited with a saving it did not decide on; their number is reported.
    ``vectors`` (from :func:`embed_prompts`) skips embedding the prompts again.
    """
    routes = {r.name: r for r in router.routes if not r.is_floor}
    rows: list[list[ranking.RouteDistances]] = []
    for start in range(0, outcomes.n, batch_size):
        if vectors is not None:
            rows.extend(router.distances(vectors=vectors[start : start + batch_size]))
            chunk_size = len(vectors[start : start + batch_size])
        else:
            chunk = outcomes.prompts[start : start + batch_size]
            # Long prompts are cut to what the router accepts; the router embeds their head and tail.
            rows.extend(router.distances(statements=[p[:MAX_STATEMENT_CHARS] for p in chunk]))
            chunk_size = len(chunk)
        if progress is not None:
            progress(chunk_size)
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


# --------------------------------------------------------------------------- learned routing
def subset(outcomes: evaluation.OutcomeSet, rows: np.ndarray, name: str | None = None) -> evaluation.OutcomeSet:
    """The outcome set restricted to ``rows`` (indices)."""
    return evaluation.OutcomeSet(
        ids=[outcomes.ids[i] for i in rows],
        prompts=[outcomes.prompts[i] for i in rows],
        models=list(outcomes.models),
        quality=outcomes.quality[rows],
        cost=outcomes.cost[rows],
        name=name or outcomes.name,
    )


def concat_outcomes(sets: Sequence[evaluation.OutcomeSet], name: str) -> evaluation.OutcomeSet:
    """Several outcome sets as one mixed-traffic set (they must record the same models)."""
    models = list(sets[0].models)
    for other in sets[1:]:
        if list(other.models) != models:
            raise ConfigError(f"Cannot concatenate {other.name!r}: its models differ from {sets[0].name!r}'s.")
    # Ids are prefixed by their set's name, or by its place too when two sets share a name (files of
    # one name in two folders): the same id in both would be one prompt to --cv's folds.
    names = [s.name for s in sets]
    prefixes = names if len(set(names)) == len(names) else [f"{k}:{n}" for k, n in enumerate(names)]
    return evaluation.OutcomeSet(
        ids=[f"{prefix}/{i}" for prefix, s in zip(prefixes, sets, strict=True) for i in s.ids],
        prompts=[p for s in sets for p in s.prompts],
        models=models,
        quality=np.vstack([s.quality for s in sets]),
        cost=np.vstack([s.cost for s in sets]),
        name=name,
        skipped=sum(s.skipped for s in sets),
        skipped_for={
            m: sum(s.skipped_for.get(m, 0) for s in sets) for m in models if any(s.skipped_for.get(m) for s in sets)
        },
        dropped=sorted({m for s in sets for m in s.dropped}),
    )


def embed_prompts(
    router: Any, prompts: Sequence[str], batch_size: int = 256, progress: Callable[[int], None] | None = None
) -> np.ndarray:
    """Each prompt's routing text embedded once by the router's vectorizer: ``(n, dims)`` float32, unit length."""
    window = router.routing_config.text
    out = np.empty((len(prompts), int(router.vectorizer.dims)), dtype=np.float32)
    for start in range(0, len(prompts), batch_size):
        chunk = [routing_text(p, window) for p in prompts[start : start + batch_size]]
        out[start : start + len(chunk)] = np.asarray(
            router.vectorizer.embed_many(chunk, batch_size=64), dtype=np.float32
        )
        if progress is not None:
            progress(len(chunk))
    return out


def learned_router(
    router_config: str,
    models: Sequence[str],
    mapping: Mapping[str, str | Sequence[str]],
    redis_url: str | None = None,
    name: str | None = None,
) -> Any:
    """A fresh router for an outcome set: the config's tier routes, each sending to its mapped
    dataset model(s) (the cold-start fallback), and a catalog of the dataset's models."""
    import uuid

    from redisvl_llmrouter.router import SemanticRouter, prepare_pretrained

    kwargs = prepare_pretrained(router_config, name or f"eval-{uuid.uuid4().hex[:10]}", None)
    candidates = {k: [v] if isinstance(v, str) else list(v) for k, v in mapping.items()}
    kwargs["routes"] = [
        r if r.is_floor else r.model_copy(update={"model": candidates[r.name][0], "models": candidates[r.name]})
        for r in kwargs["routes"]
    ]
    kwargs["catalog"] = ModelCatalog(models=[ModelSpec(name=m) for m in models], source="the outcome set")
    kwargs["_outcomes"] = []
    return SemanticRouter(**kwargs, redis_url=redis_url, overwrite=True)


def _records(outcomes: evaluation.OutcomeSet) -> list[OutcomeRecord]:
    return [
        OutcomeRecord.model_validate(
            {
                "id": outcomes.ids[i],
                "prompt": outcomes.prompts[i],
                "outcomes": {
                    m: {"quality": float(outcomes.quality[i, j]), "cost": float(outcomes.cost[i, j])}
                    for j, m in enumerate(outcomes.models)
                },
            }
        )
        for i in range(outcomes.n)
    ]


def _predict_arrays(
    router: Any, vectors: np.ndarray, models: Sequence[str], batch: int = 256
) -> tuple[np.ndarray, ...]:
    n, m = vectors.shape[0], len(models)
    quality, cost, support = np.full((n, m), np.nan), np.full((n, m), np.nan), np.zeros(n)
    for start in range(0, n, batch):
        for i, prediction in enumerate(router.predict(vectors=vectors[start : start + batch]), start=start):
            if prediction is None:
                continue
            support[i] = prediction.support
            for j, model in enumerate(models):
                estimate = prediction.models.get(model)
                if estimate is not None:
                    quality[i, j] = np.nan if estimate.quality is None else estimate.quality
                    cost[i, j] = np.nan if estimate.cost is None else estimate.cost
    return quality, cost, support


def _tier_choices(router: Any, vectors: np.ndarray, models: Sequence[str], batch: int = 512) -> np.ndarray:
    """The model the tier routes pick for each prompt (the cold-start fallback), as column indices."""
    tiers = {r.name: r for r in router.routes if not r.is_floor}
    config = router.routing_config
    dearest = max(tiers.values(), key=lambda r: (r.cost is not None, r.cost or 0.0)).name
    out = np.empty(vectors.shape[0], dtype=np.int64)
    for start in range(0, vectors.shape[0], batch):
        rows = router.distances(vectors=vectors[start : start + batch])
        for i, names in enumerate(choices_for(rows, tiers, config, fallback=dearest), start=start):
            out[i] = list(models).index(tiers[names].model)  # type: ignore[index]
    return out


def learned_predictions(
    router: Any,
    train: evaluation.OutcomeSet,
    train_vectors: np.ndarray,
    test_vectors: np.ndarray,
    models: Sequence[str],
    tune_settings: bool = True,
    base: LearningConfig | None = None,
) -> dict[str, Any]:
    """Tune on ``train`` (inner CV), learn it into the router's memory, predict the test vectors.

    ``base``: the settings tuning starts from, and keeps when ``train`` is too small to tune on (default:
    the router's; a cross-validation passes the configured ones, never a previous fold's choice)."""
    settings = base or router.learning
    if tune_settings:
        settings = tune(train_vectors, train.quality, train.cost, train.ids, base=settings, texts=train.prompts).config
    router.update_learning(settings)
    router.clear_memory()
    router.learn(_records(train), vectors=train_vectors)
    quality, cost, support = _predict_arrays(router, test_vectors, models)
    return {
        "quality": quality,
        "cost": cost,
        "support": support,
        "settings": {"neighbours": settings.neighbours, "shrinkage": settings.shrinkage},
    }


def learned_outcome_predictions(
    router: Any,
    test: evaluation.OutcomeSet,
    test_vectors: np.ndarray,
    train: evaluation.OutcomeSet | None = None,
    train_vectors: np.ndarray | None = None,
    folds: int | None = None,
    tune_settings: bool = True,
) -> dict[str, Any]:
    """The memory's predictions for every test prompt: learned from ``train``, or ``folds``-fold cross-validated.

    Returns ``quality`` and ``cost`` (prompts x models, in ``test.models`` order), ``support``
    and ``settings`` (the hyperparameters chosen on each training split).
    """
    models = list(test.models)
    n = test.n
    quality, cost, support = np.full((n, len(models)), np.nan), np.full((n, len(models)), np.nan), np.zeros(n)
    settings = []
    configured = router.learning  # each fold tunes from these, not from the fold before it
    if folds:
        check_folds(folds, test)
        # Folds go by a hash of the id, so a small set may leave one empty (skipped) or even put
        # every prompt in one, which would leave nothing to learn from.
        parts = [fold for fold in folds_by_id(test.ids, folds, texts=test.prompts) if fold.size]
        if len(parts) < 2:
            raise ConfigError(
                f"--cv {folds}: every prompt of {test.name} falls in the same fold (folds go by a hash of "
                "each prompt's id), so no fold has anything to learn from; add prompts or use --learn TRAIN"
            )
        for fold in parts:
            rest = np.setdiff1d(np.arange(n), fold)
            got = learned_predictions(
                router, subset(test, rest), test_vectors[rest], test_vectors[fold], models, tune_settings, configured
            )
            quality[fold], cost[fold], support[fold] = got["quality"], got["cost"], got["support"]
            settings.append(got["settings"])
    else:
        if train is None or train_vectors is None:
            raise ConfigError("Learned evaluation needs training outcomes (--learn) or a number of folds (--cv).")
        if list(train.models) != models:
            raise ConfigError(f"The training set's models {list(train.models)} differ from the test set's {models}.")
        got = learned_predictions(router, train, train_vectors, test_vectors, models, tune_settings)
        quality, cost, support = got["quality"], got["cost"], got["support"]
        settings.append(got["settings"])
    return {"quality": quality, "cost": cost, "support": support, "settings": settings}


def evaluate_learned(
    router: Any,
    test: evaluation.OutcomeSet,
    test_vectors: np.ndarray,
    train: evaluation.OutcomeSet | None = None,
    train_vectors: np.ndarray | None = None,
    folds: int | None = None,
    tune_settings: bool = True,
) -> dict[str, Any]:
    """The learned router's report on ``test``: learned from ``train``, or ``folds``-fold cross-validated.

    The report has the keys of :func:`evaluate` (``aiq``, ``zero_aiq``, ``curve``, ... and APGR/CPT
    for two models) plus ``learned_share`` (prompts decided by the memory rather than the tiers)
    and ``settings`` (the hyperparameters chosen for each training split).
    """
    predictions = learned_outcome_predictions(router, test, test_vectors, train, train_vectors, folds, tune_settings)
    result = learned_report(router, test, test_vectors, predictions)
    result.update(folds=folds, train=None if train is None else train.name)
    return result


def compare_strategies(
    router: Any,
    test: evaluation.OutcomeSet,
    test_vectors: np.ndarray,
    strategies: Sequence[str],
    learned: Mapping[str, Any] | None = None,
    grid: int = 21,
) -> dict[str, dict[str, Any]]:
    """Each strategy's report on ``test``, every choice made by the router's own policy step.

    Every report has ``at_config``: the strategy's operating point at the router's configured
    settings (its ``cost_weight`` and the rest), the one its row of the printed table shows, so the
    rows compare like with like. ``semantic`` and ``learned`` also sweep their knob
    (``cost_weight``) into a curve, which their AIQ measures (``semantic`` over ``grid`` values, ``learned``
    over its own log-spaced grid); the others are one point each.
    Quality and cost estimates come from ``learned`` (cross-validated or held-out predictions of
    the outcome memory); without them the strategies see only the catalog, which for an outcome
    set's models holds no prices or priors.
    """
    from redisvl_llmrouter.schema import Strategy

    rows = [r for start in range(0, test.n, 512) for r in router.distances(vectors=test_vectors[start : start + 512])]
    reports: dict[str, dict[str, Any]] = {}
    for name in strategies:
        strategy = Strategy(name)
        if strategy is Strategy.learned and learned is None:
            raise ConfigError("The learned strategy needs outcomes to learn from: add --learn TRAIN or --cv K.")
        picks = _policy_picks(router, test, rows, strategy, learned)
        at_config = evaluation.routing_point(test, picks, knob=router.routing_config.cost_weight)
        if strategy is Strategy.semantic:
            mapping = {r.name: r.model for r in router.routes if not r.is_floor}
            report = evaluate(router, test, mapping, grid=grid, vectors=test_vectors)
        elif strategy is Strategy.learned:
            assert learned is not None
            report = learned_report(router, test, test_vectors, learned)
        else:
            report = evaluation.report(test, [evaluation.routing_point(test, picks)])
        report["at_config"] = {
            "knob": at_config.knob,
            "quality": at_config.quality,
            "cost": at_config.cost,
            "shares": dict(at_config.shares),
        }
        reports[name] = report
    return reports


def _policy_picks(
    router: Any,
    test: evaluation.OutcomeSet,
    rows: Sequence[Sequence[ranking.RouteDistances]],
    strategy: Any,
    learned: Mapping[str, Any] | None,
) -> np.ndarray:
    """The model the router's policy step picks for each prompt under ``strategy`` at its configured settings
    (a prompt nothing matches goes to the dearest tier's model, as in :func:`evaluate`)."""
    from redisvl_llmrouter.learning.prediction import ModelEstimate, Prediction
    from redisvl_llmrouter.policy.decision import PolicyInput, decide

    models = list(test.models)
    core = router._core
    catalog = core.effective_catalog()
    tiers = [r for r in router.routes if not r.is_floor]
    dearest = max(tiers, key=lambda r: (r.cost is not None, r.cost or 0.0)).model
    picks = np.empty(test.n, dtype=np.int64)
    for i, prompt_rows in enumerate(rows):
        ranked, floors = core._rank(prompt_rows, None)
        prediction = None
        if learned is not None:
            prediction = Prediction(
                support=float(learned["support"][i]),
                models={
                    m: ModelEstimate(
                        quality=None if np.isnan(learned["quality"][i, j]) else float(learned["quality"][i, j]),
                        # Every row of an outcome set holds every model: each was observed as near as any row.
                        support=float(learned["support"][i]),
                        cost=None if np.isnan(learned["cost"][i, j]) else float(learned["cost"][i, j]),
                        latency_ms=None,
                    )
                    for j, m in enumerate(models)
                },
            )
        decision = decide(
            ranked,
            floors,
            PolicyInput(
                routes=router.routes,
                catalog=catalog,
                config=router.routing_config,
                strategy=strategy,
                prompt_tokens=1,
                prediction=prediction,
                min_support=router.learning.min_support,
                rr_position=i,
            ),
        )
        picks[i] = models.index(decision.model if decision.model is not None else dearest)
    return picks


def learned_report(
    router: Any, test: evaluation.OutcomeSet, test_vectors: np.ndarray, learned: Mapping[str, Any]
) -> dict[str, Any]:
    """The learned router's curve from its predictions (sweeping ``cost_weight``)."""
    models = list(test.models)
    supported = learned["support"] >= router.learning.min_support
    fallback = _tier_choices(router, test_vectors, models)
    points = sweep(learned["quality"], learned["cost"], test.quality, test.cost, fallback=fallback, supported=supported)
    result = evaluation.report(test, [evaluation.routing_point(test, p.picks, knob=p.cost_weight) for p in points])
    result.update(router="learned", learned_share=float(supported.mean()), settings=learned.get("settings", []))
    return result


#: The tier router's sweep when ``--grid`` is not given: ``cost_weight`` 0, 0.05, ..., 1.
GRID = 21


def _load_sets(paths: Sequence[str], limit: int | None, concat: bool) -> list[evaluation.OutcomeSet]:
    sets = []
    for path in paths:  # a malformed, empty, key-missing or non-UTF-8 file is the user's input: a ConfigError
        try:
            sets.append(evaluation.load_outcomes(path, limit=limit))
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
        except ValueError as exc:  # its message names the file and line
            raise ConfigError(str(exc)) from None
    if concat and len(sets) > 1:
        return [concat_outcomes(sets, "+".join(s.name for s in sets))]
    return sets


def run_eval(args: argparse.Namespace) -> int:
    """``llmrouter eval``: one report per dataset, printed, and optionally written as JSON and PNG."""
    _check_options(args)  # from the arguments alone: before any file is read or prompt embedded
    learning = bool(args.learn or args.cv or args.strategy)
    reports, strategy_reports = _run_learned(args) if learning else (_run_tiers(args), {})
    out: dict[str, Any] = {"router": args.router, "reports": reports}
    if strategy_reports:
        out["strategies"] = strategy_reports
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.json_out}")
    if args.plot:
        if strategy_reports:
            labelled = {f"{name} on {ds}": r for ds, by in strategy_reports.items() for name, r in by.items()}
        elif len(reports) == 1:
            labelled = reports[0]
        else:
            labelled = {f"{args.router} on {r['dataset']}": r for r in reports}
        evaluation.plot(labelled, args.plot)
        print(f"wrote {args.plot}")
    return 0


def _check_options(args: argparse.Namespace) -> None:
    """Refuse option combinations that cannot run as asked, rather than fail after the work or ignore one."""
    if args.learn and args.cv:
        raise ConfigError("Give --learn TRAIN or --cv K, not both.")
    if "learned" in args.strategy and not (args.learn or args.cv):
        raise ConfigError("The learned strategy needs outcomes to learn from: add --learn TRAIN or --cv K.")
    if args.grid is not None and (args.learn or args.cv):
        raise ConfigError(
            f"--grid {args.grid} sets the tier router's cost_weight sweep; the learned router (--learn, --cv) "
            "sweeps a fixed log-spaced grid of its own, so leave --grid out"
        )


def _run_tiers(args: argparse.Namespace) -> list[dict[str, Any]]:
    import uuid

    from tqdm import tqdm

    from redisvl_llmrouter import SemanticRouter, pretrained

    sets = _load_sets(args.datasets, args.limit, args.concat)  # a bad file fails before the router loads
    config_name = pretrained.read(args.router).name
    # Under a name of its own, deleted after: the config is evaluated as it is, even where this Redis holds
    # a different (changed) router under the config's name, and nothing of the run stays behind.
    router = SemanticRouter.from_pretrained(args.router, name=f"eval-{uuid.uuid4().hex[:10]}", redis_url=args.redis_url)
    reports = []
    try:
        for outcomes in sets:
            mapping = route_model_map(router.routes, outcomes.models, args.map, outcomes.dropped)
            with tqdm(total=outcomes.n, desc=f"routing {outcomes.name}", unit="prompt", file=sys.stderr) as bar:
                result = evaluate(router, outcomes, mapping, grid=args.grid or GRID, progress=bar.update)
            result["router"] = config_name
            reports.append(result)
            _print_summary(result)
    finally:
        router.delete()
    return reports


def _run_learned(args: argparse.Namespace) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """``--learn`` / ``--cv`` / ``--strategy``: a fresh router per test set, its memory filled from training data."""
    from tqdm import tqdm

    from redisvl_llmrouter import pretrained

    routes = pretrained.read(args.router).definition().routes
    train = None
    if args.learn:
        train = _load_sets(args.learn, args.limit, concat=True)[0]
    reports: list[dict[str, Any]] = []
    by_dataset: dict[str, dict[str, Any]] = {}
    for test in _load_sets(args.datasets, args.limit, args.concat):
        if args.cv:  # before any embedding
            check_folds(args.cv, test)
        candidates = route_candidates(routes, test.models, args.map, test.dropped)
        _warn_single_model_routes(args.strategy, candidates)
        if train is not None:
            _warn_overlap(train, test)
        router = learned_router(args.router, test.models, candidates, args.redis_url)
        try:
            with tqdm(total=test.n, desc=f"embedding {test.name}", unit="prompt", file=sys.stderr) as bar:
                vectors = embed_prompts(router, test.prompts, progress=bar.update)
            learned = None
            if train is not None or args.cv:
                train_vectors = None
                if train is not None:
                    with tqdm(total=train.n, desc=f"embedding {train.name}", unit="prompt", file=sys.stderr) as bar:
                        train_vectors = embed_prompts(router, train.prompts, progress=bar.update)
                print(f"{test.name}: learning and predicting ...", file=sys.stderr)
                learned = learned_outcome_predictions(router, test, vectors, train, train_vectors, args.cv)
            if args.strategy:
                by_dataset[test.name] = compare_strategies(
                    router, test, vectors, args.strategy, learned, grid=args.grid or GRID
                )
                _print_strategies(test.name, by_dataset[test.name])
            if learned is not None:
                report = learned_report(router, test, vectors, learned)
                report.update(folds=args.cv, train=None if train is None else train.name)
                reports.append(report)
                _print_summary(report)
        finally:
            router.delete()
    return reports, by_dataset


#: Strategies that choose among the models of the matched route only (``learned`` chooses among all
#: models, ``semantic`` is the tier router itself).
WITHIN_ROUTE = ("cost", "quality", "balanced", "latency", "round_robin", "least_loaded")


def overlap(train: evaluation.OutcomeSet, test: evaluation.OutcomeSet) -> int:
    """How many test prompts the training set holds too (the same text, up to case and spacing:
    :func:`~redisvl_llmrouter.request_text.same_text_key`): scored on what they taught."""
    seen = {same_text_key(prompt) for prompt in train.prompts}
    return sum(same_text_key(prompt) in seen for prompt in test.prompts)


def _warn_overlap(train: evaluation.OutcomeSet, test: evaluation.OutcomeSet) -> None:
    shared = overlap(train, test)
    if shared:
        print(
            f"warning: {shared} of the {test.n} prompts of {test.name} are in the --learn data too (up to case and "
            "spacing, which the embedding does not see): their scores "
            "are in-sample (the memory holds their own outcomes); leave them out of one of the files",
            file=sys.stderr,
        )


def _warn_single_model_routes(strategies: Sequence[str], candidates: Mapping[str, Sequence[str]]) -> None:
    """Say so when a compared strategy cannot differ from the tier router: every route has one model."""
    within = [s for s in dict.fromkeys(strategies) if s in WITHIN_ROUTE]
    if within and all(len(models) == 1 for models in candidates.values()):
        names = ", ".join(within)
        print(
            f"warning: strategy {names} can only choose within a route; with one model per route "
            f"{'it equals' if len(within) == 1 else 'they equal'} the tier router (semantic) - map several models "
            "to a route with --map ROUTE=A,B",
            file=sys.stderr,
        )


def _skipped_note(r: Mapping[str, Any]) -> str:
    """What the loader left out of the set, for the printed summary ('' when nothing)."""
    notes = []
    if r.get("skipped"):
        lacking = ", ".join(f"{m} ({k})" if len(r["skipped_for"]) > 1 else m for m, k in r["skipped_for"].items())
        notes.append(f"skipped {r['skipped']} row{'s' if r['skipped'] != 1 else ''} without outcomes for {lacking}")
    if r.get("dropped"):
        notes.append(f"left out model(s) missing from most rows: {', '.join(r['dropped'])}")
    return "; ".join(notes)


def _print_strategies(dataset: str, reports: Mapping[str, Mapping[str, Any]]) -> None:
    """One row per strategy: quality and $/prompt at the router's configured settings (every row the same
    way), AIQ over the strategy's curve (the cost_weight sweep for semantic and learned, else its one point)."""
    note = _skipped_note(next(iter(reports.values()))) if reports else ""
    print(f"{dataset}: strategies compared on the same prompts" + (f" ({note})" if note else ""))
    print("  quality, $/prompt: at the router's configured settings; AIQ: cost_weight sweep (semantic, learned)")
    print(f"  {'strategy':<14} {'quality':>8} {'$/prompt':>10} {'AIQ':>8}")
    for name, r in reports.items():
        point = r.get("at_config") or r["curve"][0]
        print(f"  {name:<14} {point['quality']:>8.4f} {point['cost']:>10.2e} {r['aiq']:>8.4f}")


def _print_summary(r: Mapping[str, Any]) -> None:
    best, orc = r["best_single"], r["oracle"]
    print(
        f"{r['dataset']}: n={r['n']} AIQ router {r['aiq']:.4f} vs Zero {r['zero_aiq']:.4f}; "
        f"best single {best['model']} q={best['quality']:.3f} ${best['cost']:.2e}; "
        f"oracle q={orc['quality']:.3f} ${orc['cost']:.2e}"
        + (
            f"; APGR {r['apgr']:.3f} CPT50 {_share(r['cpt50'])} CPT80 {_share(r['cpt80'])}"
            if r.get("apgr") is not None
            else ""
        )
        + (f"; {note}" if (note := _skipped_note(r)) else "")
    )


def _share(value: float | None) -> str:
    """A strong-call share as printed: three decimals, or n/a when the target is never reached."""
    return "n/a" if value is None else f"{value:.3f}"
