"""Offline evaluation of a router on recorded outcomes: cost against quality.

A router is judged on a routing outcome set: for each prompt, the quality and the
cost in USD that every candidate model achieved on it (one JSON object a line, see
``load_outcomes``). Replaying a router's choices against that table gives its mean
quality and mean cost per prompt without calling any model, so a sweep of the
router's knob (its cost/quality trade-off setting) becomes a curve in the
cost-quality plane.

The curve is compared with three references:

* the single models (always send every prompt to one model);
* the Zero router, the upper convex hull of the single models: what random mixing
  of models achieves with no knowledge of the prompt (RouterBench);
* the Oracle, the cheapest model that reached the best quality on each prompt.

and summarised with RouterBench's AIQ (any number of models) and, for two-model
sets, RouteLLM's APGR and CPT. The conventions of each metric, and where they come
from, are in the docstrings of ``aiq``, ``apgr`` and ``cpt``.

Only numpy is imported at module level; matplotlib is imported inside ``plot`` so
that the metrics work on installs without the ``eval`` extra.
"""

import itertools
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "CurvePoint",
    "OutcomeSet",
    "aiq",
    "apgr",
    "cost_to_reach",
    "cpt",
    "load_outcomes",
    "oracle",
    "pgr",
    "plot",
    "report",
    "routing_point",
    "single_models",
    "zero_router",
]

# Quality ties are decided with a tolerance so that scores such as 0.1 + 0.2 and
# 0.3, equal for any practical purpose, count as the same quality.
_QUALITY_TOL = 1e-12


@dataclass(frozen=True, eq=False)
class OutcomeSet:
    """Recorded outcomes of every candidate model on every prompt.

    Row ``i`` is prompt ``ids[i]``; column ``j`` is model ``models[j]``.
    ``quality[i, j]`` is in [0, 1] and ``cost[i, j]`` is the USD that model ``j``
    cost on prompt ``i``. ``load_outcomes`` sorts ``models`` so that column order
    does not depend on the order of keys in the file. ``skipped`` counts the rows of
    the source file that were left out because a model was missing from them,
    ``skipped_for`` how many of those lacked each model, and ``dropped`` names the
    models left out because they were missing from most rows.

    ``eq=False`` because the fields hold numpy arrays, whose ``==`` is elementwise
    and would make a generated ``__eq__`` raise; identity comparison is enough.
    """

    ids: list[str]
    prompts: list[str]
    models: list[str]
    quality: np.ndarray
    cost: np.ndarray
    name: str = "outcomes"
    skipped: int = 0
    skipped_for: Mapping[str, int] = field(default_factory=dict)
    dropped: Sequence[str] = ()

    def __post_init__(self) -> None:
        """Coerce the tables to float arrays and check they agree in shape."""
        quality = np.asarray(self.quality, dtype=float)
        cost = np.asarray(self.cost, dtype=float)
        # Frozen dataclass: the coerced arrays have to be set through object.
        object.__setattr__(self, "quality", quality)
        object.__setattr__(self, "cost", cost)
        shape = (len(self.ids), len(self.models))
        if quality.shape != shape or cost.shape != shape:
            raise ValueError(
                f"quality {quality.shape} and cost {cost.shape} must both have shape {shape} (prompts x models)"
            )
        if len(self.prompts) != len(self.ids):
            raise ValueError(f"{len(self.prompts)} prompts for {len(self.ids)} ids; they must match")
        if len(set(self.models)) != len(self.models):
            raise ValueError(f"duplicate model names in {self.models}")
        if not self.models:
            raise ValueError("an outcome set needs at least one model")
        if not np.all(np.isfinite(quality)) or not np.all(np.isfinite(cost)):
            raise ValueError("quality and cost must be finite numbers")
        if quality.size and (quality.min() < 0.0 or quality.max() > 1.0):
            raise ValueError("quality must lie in [0, 1]")
        if cost.size and cost.min() < 0.0:
            raise ValueError("cost must not be negative")

    @property
    def n(self) -> int:
        """Number of prompts."""
        return len(self.ids)

    def model_index(self, name: str) -> int:
        """Column of model ``name``; a clear error lists the models on a typo."""
        try:
            return self.models.index(name)
        except ValueError:
            raise ValueError(f"unknown model {name!r}; models in {self.name!r}: {', '.join(self.models)}") from None


@dataclass(frozen=True)
class CurvePoint:
    """One operating point of a router: what it achieves at one knob setting.

    ``quality`` is the mean quality over the prompts, ``cost`` the mean USD per
    prompt, and ``shares`` the fraction of prompts sent to each model (all models
    listed, zeros included, so that shares of different points line up).
    """

    knob: float
    quality: float
    cost: float
    shares: dict[str, float]


# --------------------------------------------------------------------------- loading


def _number(value: Any, what: str, where: str) -> float:
    """``value`` as a finite float, or a ValueError that says where it was."""
    # bool is an int subclass; true/false in a score field is a data error. Type
    # problems in the file are data errors too, so they stay ValueError (TRY004):
    # callers catch one exception type for a bad file.
    if isinstance(value, bool) or not isinstance(value, int | float):
        message = f"{where}: {what} must be a number, got {value!r}"
        raise ValueError(message)
    try:
        number = float(value)
    except OverflowError:  # an integer past float's range
        number = math.inf
    if not math.isfinite(number):
        raise ValueError(f"{where}: {what} must be finite, got {value!r}")
    return number


def _parse_row(line: str, where: str) -> tuple[str | None, str, dict[str, tuple[float, float]]]:
    """Parse and validate one jsonl row into (id or None, prompt, {model: (quality, cost)})."""
    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{where}: malformed JSON: {exc.msg}") from None
    if not isinstance(row, dict):
        kind = type(row).__name__
        raise ValueError(f"{where}: expected a JSON object, got {kind}")
    for key in ("prompt", "outcomes"):
        if key not in row:
            raise ValueError(f"{where}: missing key {key!r}")
    prompt = row["prompt"]
    if not isinstance(prompt, str):
        raise ValueError(f"{where}: 'prompt' must be a string, got {prompt!r}")
    if not prompt.strip():
        raise ValueError(f"{where}: the prompt is empty or only whitespace")
    ident = row.get("id")
    # A null id is a missing one; a number is accepted as its text; anything else is a data error.
    if ident is not None and (isinstance(ident, bool) or not isinstance(ident, str | int)):
        raise ValueError(f"{where}: 'id' must be a string, got {ident!r}")
    if isinstance(ident, str) and not ident.strip():
        raise ValueError(f"{where}: 'id' is empty; give each row its own id or leave it out")
    outcomes = row["outcomes"]
    if not isinstance(outcomes, dict) or not outcomes:
        raise ValueError(f"{where}: 'outcomes' must be a non-empty object")
    parsed: dict[str, tuple[float, float]] = {}
    for model, outcome in outcomes.items():
        if not isinstance(outcome, dict):
            message = f"{where}: outcome of {model!r} must be an object"
            raise ValueError(message)
        for key in ("quality", "cost"):
            if key not in outcome:
                raise ValueError(f"{where}: outcome of {model!r} is missing {key!r}")
        quality = _number(outcome["quality"], f"quality of {model!r}", where)
        cost = _number(outcome["cost"], f"cost of {model!r}", where)
        if not 0.0 <= quality <= 1.0:
            raise ValueError(f"{where}: quality of {model!r} is {quality}, outside [0, 1]")
        if cost < 0.0:
            raise ValueError(f"{where}: cost of {model!r} is negative ({cost})")
        parsed[str(model)] = (quality, cost)
    return (None if ident is None else str(ident)), prompt, parsed


def load_outcomes(path: str | Path, limit: int | None = None) -> OutcomeSet:
    """Read a routing outcome file (jsonl) into an ``OutcomeSet``.

    Each non-blank line is ``{"id", "prompt", "outcomes": {model: {"quality",
    "cost"}}}`` (``id`` optional: ``NAME:LINE``, the file's name and line, without it or when
    null; other keys such as ``task`` are ignored; a cost is required, the curves need it). At most ``limit`` rows are
    read, for quick runs on large files.

    The model set is every model present in more than half of the rows read: a model
    that is missing from only a few rows costs those rows (they are skipped and
    counted in ``skipped``), while one that is missing from most rows is dropped
    rather than shrinking the set to a handful of prompts. Files that record every
    model on every row, like the published ones, lose nothing.

    Raises ``ValueError`` naming the file and line for malformed JSON, a missing
    key, a prompt that is not a string or is blank, an id given twice (cross-validation
    folds are by id, so a repeated id would put different prompts in one fold and
    is almost always a mistake), a quality outside [0, 1] or a negative cost: a bad
    score silently averaged in would bias every metric computed from the set. A
    UTF-8 byte order mark at the start of the file is accepted.
    """
    path = Path(path)
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    rows: list[tuple[str, str, dict[str, tuple[float, float]]]] = []
    first_line: dict[str, int] = {}
    # utf-8-sig: a byte order mark (as some Windows editors write) is skipped, not a JSON error.
    with path.open(encoding="utf-8-sig") as handle:
        for lineno, line in enumerate(handle, start=1):
            if limit is not None and len(rows) >= limit:
                break
            if not line.strip():
                continue
            ident, prompt, outcomes = _parse_row(line, f"{path}:{lineno}")
            # A row without an id is named by the file's name and its line, not the full path: cross-
            # validation folds are a hash of the id, and they must not change with the directory.
            row = (f"{path.name}:{lineno}" if ident is None else ident, prompt, outcomes)
            if row[0] in first_line:
                raise ValueError(
                    f"{path}:{lineno}: id {row[0]!r} was already used on line {first_line[row[0]]}; "
                    "every row needs its own id (or none)"
                )
            first_line[row[0]] = lineno
            rows.append(row)
    if not rows:
        raise ValueError(f"{path}: no outcome rows")

    counts: dict[str, int] = {}
    for _, _, outcomes in rows:
        for model in outcomes:
            counts[model] = counts.get(model, 0) + 1
    models = sorted(m for m, count in counts.items() if 2 * count > len(rows))
    if not models:
        raise ValueError(f"{path}: no model is present in more than half the rows")

    kept = [row for row in rows if all(m in row[2] for m in models)]
    skipped_for = {m: sum(m not in row[2] for row in rows) for m in models}
    # Tables built in one go from the kept rows: (n, m, 2) -> quality, cost.
    table = np.array([[row[2][m] for m in models] for row in kept], dtype=float)
    table = table.reshape(len(kept), len(models), 2)
    return OutcomeSet(
        ids=[row[0] for row in kept],
        prompts=[row[1] for row in kept],
        models=models,
        quality=table[:, :, 0],
        cost=table[:, :, 1],
        name=path.stem,
        skipped=len(rows) - len(kept),
        skipped_for={m: count for m, count in skipped_for.items() if count},
        dropped=sorted(set(counts) - set(models)),
    )


# ------------------------------------------------------------------ operating points


def routing_point(outcomes: OutcomeSet, choices: Sequence[int] | np.ndarray, knob: float = 0.0) -> CurvePoint:
    """Mean quality and cost of sending prompt ``i`` to model ``choices[i]``.

    ``choices`` holds column indices into ``outcomes.models``; ``knob`` is carried
    through so that a sweep can be plotted and reported in knob order.
    """
    picks = np.asarray(choices)
    if picks.shape != (outcomes.n,):
        raise ValueError(f"need one choice per prompt ({outcomes.n}), got {picks.shape}")
    if outcomes.n == 0:
        raise ValueError("cannot evaluate a routing on an empty outcome set")
    if not np.issubdtype(picks.dtype, np.integer):
        raise ValueError("choices must be integer model indices")
    m = len(outcomes.models)
    if picks.min() < 0 or picks.max() >= m:
        raise ValueError(f"choices must be model indices in [0, {m})")
    rows = np.arange(outcomes.n)
    counts = np.bincount(picks, minlength=m)
    return CurvePoint(
        knob=float(knob),
        quality=float(outcomes.quality[rows, picks].mean()),
        cost=float(outcomes.cost[rows, picks].mean()),
        shares={model: float(c) / outcomes.n for model, c in zip(outcomes.models, counts)},
    )


def single_models(outcomes: OutcomeSet) -> list[CurvePoint]:
    """One point per model: every prompt sent to that model (in ``models`` order)."""
    return [routing_point(outcomes, np.full(outcomes.n, j), knob=0.0) for j in range(len(outcomes.models))]


def oracle(outcomes: OutcomeSet) -> CurvePoint:
    """The Oracle: per prompt, the cheapest model that reached the best quality.

    It is the upper bound of any router on this set at the lowest cost that bound
    allows (RouterBench's Oracle router). Equal costs among the best models go to
    the first of them in ``models`` order, so the result is deterministic.
    """
    best = outcomes.quality.max(axis=1, keepdims=True)
    reached = outcomes.quality >= best - _QUALITY_TOL
    # Models below the best quality get an infinite cost so argmin never picks them.
    choices = np.argmin(np.where(reached, outcomes.cost, np.inf), axis=1)
    return routing_point(outcomes, choices, knob=0.0)


# ----------------------------------------------------------------- hull and AIQ


def _xy(
    points: Iterable[CurvePoint | tuple[float, float]],
) -> list[tuple[float, float]]:
    """(cost, quality) pairs from curve points or pairs."""
    pairs = []
    for point in points:
        if isinstance(point, CurvePoint):
            pairs.append((point.cost, point.quality))
        else:
            cost, quality = point
            pairs.append((float(cost), float(quality)))
    return pairs


def _nondecreasing_hull(
    pairs: Sequence[tuple[float, float]],
) -> list[tuple[float, float]]:
    """RouterBench's non-decreasing convex hull of (cost, quality) points.

    First drop every point that a cheaper-or-equal point matches or beats in quality
    (paying more for no more quality is never useful), then keep the upper convex
    hull of what is left (points under a chord are beaten by randomly mixing the
    chord's ends). The result is sorted by cost with strictly increasing quality.
    """
    if not pairs:
        raise ValueError("need at least one (cost, quality) point")
    for cost, quality in pairs:
        if not (math.isfinite(cost) and math.isfinite(quality)):
            raise ValueError(f"non-finite point ({cost}, {quality})")
    # Cheapest first; on equal cost the better one first so the other is dominated.
    ordered = sorted(pairs, key=lambda p: (p[0], -p[1]))
    frontier: list[tuple[float, float]] = []
    for cost, quality in ordered:
        if not frontier or quality > frontier[-1][1]:
            frontier.append((cost, quality))
    hull: list[tuple[float, float]] = []
    for point in frontier:
        # Pop the last hull point while it lies on or under the chord from its
        # predecessor to the new point (cross product >= 0: not a right turn).
        while len(hull) >= 2:
            (x0, y0), (x1, y1) = hull[-2], hull[-1]
            if (x1 - x0) * (point[1] - y0) - (y1 - y0) * (point[0] - x0) >= 0:
                hull.pop()
            else:
                break
        hull.append(point)
    return hull


def zero_router(
    points: Sequence[CurvePoint | tuple[float, float]],
) -> list[tuple[float, float]]:
    """The Zero router: the non-decreasing upper convex hull of the single models.

    Sending each prompt at random to model A with probability t and to model B
    otherwise costs and scores, in expectation, the mix t*A + (1-t)*B, so every
    point on a segment between two models is reachable without looking at the
    prompt. The best such mixes form the upper convex hull, and points after the
    best model are dropped because a cheaper model is better (Hu et al. 2024,
    RouterBench, section 3). Returns ``(cost, quality)`` pairs sorted by cost.
    ``points`` may be ``CurvePoint``s (e.g. ``single_models(...)``) or pairs.
    """
    return _nondecreasing_hull(_xy(points))


def aiq(
    points: Sequence[tuple[float, float]] | Sequence[CurvePoint],
    cost_range: tuple[float, float],
) -> float:
    """RouterBench's AIQ: mean quality of a router's hull over a cost range.

    ``AIQ = 1 / (c_max - c_min) * integral from c_min to c_max of R(c) dc``, where R
    is the non-decreasing convex hull of the router's (cost, quality) points
    (``zero_router`` applied to them) and ``(c_min, c_max) = cost_range``.

    Ends, as in RouterBench's reference code (``calc_AIQ`` and
    ``get_non_descreasing_convex_hull_of`` in withmartian/routerbench,
    evaluation/AIQ.py):

    * beyond the most expensive hull point the hull is extended flat to ``c_max``
      (the code appends ``(max_x, last_y)``): extra budget can always be left
      unspent, so quality never falls as the budget grows;
    * below the cheapest hull point nothing is added: the code integrates from the
      first hull point but divides by the whole range, so that stretch counts as
      quality 0. A router cannot operate more cheaply than its cheapest point, and
      crediting it there would reward routers that never reach the cheap end.

    The hull is piecewise linear between points (random mixing), so the integral is
    exact. RouterBench's code measures the range from 0 to the largest cost among
    the routers compared; ``aiq(points, (0, c_max))`` reproduces it exactly. The
    report uses the paper's ``[c_min, c_max]`` with the cheapest and the most
    expensive single model as the ends. With ``c_min == c_max`` it returns the
    hull's quality at that cost.
    """
    lo, hi = (float(cost_range[0]), float(cost_range[1]))
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi < lo:
        raise ValueError(f"cost_range must be finite with low <= high, got {cost_range}")
    hull = _nondecreasing_hull(_xy(points))
    xs = np.array([p[0] for p in hull])
    ys = np.array([p[1] for p in hull])

    def curve(c: np.ndarray) -> np.ndarray:
        # 0 below the cheapest point, linear between points, flat after the last.
        return np.interp(c, xs, ys, left=0.0, right=ys[-1])

    if hi == lo:
        return float(curve(np.array([lo]))[0])
    # Every hull vertex inside the range is a breakpoint, so the curve is linear on
    # each piece and the midpoint rule is exact there (also across the jump at xs[0]).
    inner = xs[(xs > lo) & (xs < hi)]
    grid = np.unique(np.concatenate(([lo], inner, [hi])))
    widths = np.diff(grid)
    mids = (grid[:-1] + grid[1:]) / 2.0
    return float(np.sum(widths * curve(mids)) / (hi - lo))


def cost_to_reach(points: Sequence[tuple[float, float]] | Sequence[CurvePoint], quality: float) -> float | None:
    """The least cost at which a router's hull reaches ``quality`` (None if it never does).

    Read off the non-decreasing convex hull (``zero_router`` of the points): mixing two operating
    points at random reaches every point between them, so the answer interpolates linearly.
    """
    hull = _nondecreasing_hull(_xy(points))
    if hull[0][1] >= quality:
        return hull[0][0]
    for (c0, q0), (c1, q1) in itertools.pairwise(hull):
        if q1 >= quality:
            return c0 + (quality - q0) / (q1 - q0) * (c1 - c0)
    return None


# ------------------------------------------------------------ two-model metrics


def pgr(quality: float, weak_quality: float, strong_quality: float) -> float:
    """Performance gap recovered: ``(q - q_weak) / (q_strong - q_weak)``.

    0 means no better than the weak model, 1 as good as the strong one (RouteLLM,
    Ong et al. 2024, section 5). It is undefined when the two models score the same,
    so that raises ``ValueError`` instead of dividing by zero.
    """
    gap = float(strong_quality) - float(weak_quality)
    if gap == 0.0:
        raise ValueError("PGR is undefined when strong and weak quality are equal")
    return (float(quality) - float(weak_quality)) / gap


def _pgr_curve(
    points: Sequence[tuple[float, float]], weak_quality: float, strong_quality: float
) -> tuple[np.ndarray, np.ndarray]:
    """Strong shares and PGRs sorted by share, anchored at shares 0 and 1.

    RouteLLM's threshold sweep always contains both ends (the lowest threshold
    sends every prompt to the strong model, one above every score sends none), so
    missing ends are added as ``(0, weak)`` and ``(1, strong)``. Mixing an operating
    point with an end at random reaches every point on the segment between them, so
    the interpolation is achievable, not just a drawing aid.
    """
    pairs = [(float(s), float(q)) for s, q in points]
    for share, quality in pairs:
        if not 0.0 <= share <= 1.0 or not math.isfinite(quality):
            raise ValueError(f"invalid point (share={share}, quality={quality})")
    pairs.sort()
    if not pairs or pairs[0][0] > 0.0:
        pairs.insert(0, (0.0, float(weak_quality)))
    if pairs[-1][0] < 1.0:
        pairs.append((1.0, float(strong_quality)))
    shares = np.array([s for s, _ in pairs])
    gaps = np.array([pgr(q, weak_quality, strong_quality) for _, q in pairs])
    return shares, gaps


def apgr(points: Sequence[tuple[float, float]], weak_quality: float, strong_quality: float) -> float:
    """Average PGR over strong-call shares 0..1 (RouteLLM's APGR).

    ``points`` are ``(strong_share, quality)`` pairs of a router's sweep. The paper
    defines ``APGR = integral from 0 to 1 of PGR d(strong share)``; RouteLLM's
    evaluation code (lm-sys/RouteLLM, routellm/evals/evaluate.py, ``apgr_metric``)
    computes it with the trapezoidal rule over the sweep sorted by strong share and
    normalises by the same integral of the weak and strong constants. Here the
    missing ends are anchored at ``(0, weak)`` and ``(1, strong)`` (see
    ``_pgr_curve``), so the range is always [0, 1]. A random router lies on the
    line between the two models and scores 0.5.
    """
    shares, gaps = _pgr_curve(points, weak_quality, strong_quality)
    # Trapezoidal rule written out: np.trapz was renamed across numpy versions.
    return float(np.sum(np.diff(shares) * (gaps[1:] + gaps[:-1]) / 2.0))


def cpt(
    points: Sequence[tuple[float, float]],
    weak_quality: float,
    strong_quality: float,
    target: float,
) -> float | None:
    """Call-performance threshold: least strong-call share reaching PGR ``target``.

    RouteLLM's CPT(x%) (e.g. CPT(50%), CPT(80%)) is the minimum share of calls to
    the strong model needed to recover x% of the gap. Their evaluation code
    (``pct_call_metric`` in routellm/evals/evaluate.py) interpolates linearly:
    ``np.interp(target_quality, accuracy, strong_percentage)`` on the sweep sorted
    by strong share. This does the same, walking the curve (anchored at both ends,
    as in ``apgr``) from share 0 upward and interpolating linearly inside the first
    segment that reaches the target. On a curve rising in quality that equals
    ``np.interp``; on a curve that dips it still returns the first share that
    reaches the target, where ``np.interp`` is undefined. Returns ``None`` when no
    point reaches the target (only possible for targets above the curve's best PGR,
    e.g. above 1, since the curve ends at the strong model).
    """
    shares, gaps = _pgr_curve(points, weak_quality, strong_quality)
    target = float(target)
    hits = np.nonzero(gaps >= target)[0]
    if hits.size == 0:
        return None
    k = int(hits[0])
    if k == 0:
        return float(shares[0])
    # gaps[k-1] < target <= gaps[k], so the segment crosses the target once.
    s0, s1, g0, g1 = shares[k - 1], shares[k], gaps[k - 1], gaps[k]
    return float(s0 + (target - g0) / (g1 - g0) * (s1 - s0))


# ------------------------------------------------------------------------ report


def _model_entry(model: str, point: CurvePoint) -> dict[str, Any]:
    """The {"model", "quality", "cost"} shape used for single models in reports."""
    return {"model": model, "quality": point.quality, "cost": point.cost}


def report(outcomes: OutcomeSet, curve: Sequence[CurvePoint], strong: str | None = None) -> dict[str, Any]:
    """JSON-ready summary of a router's curve against the references on a set.

    Keys: ``dataset``, ``n``, ``models``, ``aiq`` (the router), ``zero_aiq``,
    ``best_single`` (highest quality, ties to the cheaper), ``cheapest_single``
    (lowest cost, ties to the better), ``oracle``, ``singles``, ``curve`` and
    ``cost_range`` (cheapest to most expensive single model, the AIQ range), ``skipped``
    (rows of the file left out because a model was missing from them), ``skipped_for``
    (how many of them lacked each model) and ``dropped`` (models left out because
    most rows lack them). For a
    two-model set also ``strong`` (the best single model unless given), ``weak``,
    ``apgr``, ``cpt50`` and ``cpt80`` (strong-call shares in [0, 1]); these are
    ``None`` when the two models score the same and PGR is undefined.
    """
    if not curve:
        raise ValueError("the router's curve needs at least one point")
    singles = single_models(outcomes)
    by_model = dict(zip(outcomes.models, singles))
    best_model = max(outcomes.models, key=lambda m: (by_model[m].quality, -by_model[m].cost))
    cheap_model = min(outcomes.models, key=lambda m: (by_model[m].cost, -by_model[m].quality))
    costs = [p.cost for p in singles]
    cost_range = (min(costs), max(costs))
    top = oracle(outcomes)
    result: dict[str, Any] = {
        "dataset": outcomes.name,
        "n": outcomes.n,
        "models": list(outcomes.models),
        "aiq": aiq(curve, cost_range),
        "zero_aiq": aiq(zero_router(singles), cost_range),
        "best_single": _model_entry(best_model, by_model[best_model]),
        "cheapest_single": _model_entry(cheap_model, by_model[cheap_model]),
        "oracle": {"quality": top.quality, "cost": top.cost},
        "singles": [_model_entry(m, p) for m, p in by_model.items()],
        "curve": [
            {
                "knob": p.knob,
                "quality": p.quality,
                "cost": p.cost,
                "shares": dict(p.shares),
            }
            for p in curve
        ],
        "cost_range": list(cost_range),
        "skipped": outcomes.skipped,
        "skipped_for": dict(outcomes.skipped_for),
        "dropped": list(outcomes.dropped),
    }
    if len(outcomes.models) == 2:
        strong_model = strong if strong is not None else best_model
        outcomes.model_index(strong_model)  # clear error on an unknown name
        weak_model = next(m for m in outcomes.models if m != strong_model)
        weak_q, strong_q = by_model[weak_model].quality, by_model[strong_model].quality
        sweep = [(p.shares.get(strong_model, 0.0), p.quality) for p in curve]
        defined = weak_q != strong_q
        result.update(
            strong=strong_model,
            weak=weak_model,
            apgr=apgr(sweep, weak_q, strong_q) if defined else None,
            cpt50=cpt(sweep, weak_q, strong_q, 0.5) if defined else None,
            cpt80=cpt(sweep, weak_q, strong_q, 0.8) if defined else None,
        )
    return result


# -------------------------------------------------------------------------- plot


def _group_by_dataset(
    reports_or_one: Mapping[str, Any],
) -> dict[str, list[tuple[str, dict[str, Any]]]]:
    """Normalise the plot input to {dataset: [(label, report), ...]}."""
    if "curve" in reports_or_one:
        labelled = [("router", dict(reports_or_one))]
    else:
        labelled = [(str(k), dict(v)) for k, v in reports_or_one.items()]
    if not labelled:
        raise ValueError("nothing to plot")
    groups: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for label, rep in labelled:
        groups.setdefault(str(rep["dataset"]), []).append((label, rep))
    return groups


def _hull_polyline(hull: Sequence[tuple[float, float]], c_max: float, steps: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Hull points densified for drawing on a log cost axis, flat out to ``c_max``.

    A random mix of two models is a straight line in linear cost, which bends on a
    log axis; drawing straight segments between vertices would misplace it. The
    flat tail is the extension AIQ integrates over (see ``aiq``).
    """
    xs = [hull[0][0]]
    for (x0, _), (x1, _) in itertools.pairwise(hull):
        xs.extend(np.linspace(x0, x1, steps)[1:])
    if c_max > xs[-1]:
        xs.append(c_max)
    grid = np.array(xs)
    return grid, np.interp(grid, [p[0] for p in hull], [p[1] for p in hull])


def plot(reports_or_one: Mapping[str, Any], path: str | Path) -> None:
    """Draw the cost-quality plane of one report, or several, into one PNG.

    ``reports_or_one`` is either one ``report(...)`` dict or a mapping of label to
    report (e.g. one per router); reports on the same dataset share a panel and
    each dataset gets its own. A panel shows the single models as labelled dots,
    the Zero router hull dashed, the Oracle as a star and each router's curve as a
    line with markers in knob order, on a log cost axis (USD per prompt, since
    model prices span orders of magnitude).
    """
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed, safe in CI and servers
    import matplotlib.pyplot as plt

    groups = _group_by_dataset(reports_or_one)
    fig, axes = plt.subplots(1, len(groups), figsize=(7.5 * len(groups), 5.5), squeeze=False)
    try:
        for ax, (dataset, labelled) in zip(axes[0], groups.items()):
            ref = labelled[0][1]
            for single in ref["singles"]:
                ax.scatter(single["cost"], single["quality"], color="grey", zorder=3)
                ax.annotate(
                    single["model"].split("/")[-1],
                    (single["cost"], single["quality"]),
                    textcoords="offset points",
                    xytext=(4, 4),
                    fontsize=7,
                )
            hull = zero_router([(s["cost"], s["quality"]) for s in ref["singles"]])
            hull_x, hull_y = _hull_polyline(hull, float(ref["cost_range"][1]))
            ax.plot(
                hull_x,
                hull_y,
                linestyle="--",
                color="black",
                label=f"Zero router (AIQ {ref['zero_aiq']:.3f})",
            )
            ax.scatter(
                ref["oracle"]["cost"],
                ref["oracle"]["quality"],
                marker="*",
                s=180,
                color="gold",
                edgecolors="black",
                zorder=4,
                label="Oracle",
            )
            titles, costs = [], []
            for label, rep in labelled:
                points = sorted(rep["curve"], key=lambda p: p["knob"])
                costs += [p["cost"] for p in points]
                ax.plot(
                    [p["cost"] for p in points],
                    [p["quality"] for p in points],
                    marker="o",
                    markersize=4,
                    label=f"{label} (AIQ {rep['aiq']:.3f})",
                )
                extra = f", APGR {rep['apgr']:.3f}" if rep.get("apgr") is not None else ""
                titles.append(f"{label} AIQ {rep['aiq']:.3f}{extra}")
            if costs and min(costs) > 0:  # a cost of 0 (a free model, unpriced data) has no place on a log axis
                ax.set_xscale("log")
                ax.set_xlabel("cost (USD per prompt, log scale)")
            else:
                ax.set_xlabel("cost (USD per prompt)")
            ax.set_ylabel("mean quality")
            ax.set_title(
                f"{dataset}: " + "; ".join(titles) + f" | Zero AIQ {ref['zero_aiq']:.3f}",
                fontsize=9,
            )
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=7, loc="lower right")
        fig.tight_layout()
        fig.savefig(Path(path), dpi=120)
    finally:
        plt.close(fig)  # free the figure even if saving failed
