"""Prediction: a request's nearest outcome rows → each model's expected quality and cost. Pure.

Given the ``K`` rows a KNN search returned (nearest first) and the memory's per-model means:

* **weights by rank**: the i-th nearest row (0-based) weighs ``1 - i / K``, and rows farther than
  ``radius`` (cosine distance) weigh nothing. Rank weights follow the neighbourhood's shape
  without depending on how dense the memory is; in cross-validation on the shared outcome sets
  they beat both uniform and distance-kernel weights.
* **shrinkage**: a model's predicted quality is
  ``(sum_i w_i * q_im + shrinkage * prior_m) / (sum_i w_i + shrinkage)`` over the rows where the
  model was observed, with ``prior_m`` the model's mean quality over the rest of the memory (every
  row but the neighbours just weighed: a row counts once, not in both terms), itself shrunk the
  same way (``shrinkage`` pseudo-observations) toward its catalog quality, else the mean of the
  other models: a model rated once is not known by that one rating everywhere. Few or distant
  neighbours leave the prior standing; many close ones override it.
* **support**: the summed weight behind each estimate (0: prior only), and the total weight of
  the rows found. Where the total is below ``min_support`` the request has no similar past and
  the router lets the tier routes decide (cold start).
* **cost**: what the model cost on similar requests, shrunk the same way toward its mean cost in
  memory; ``None`` where the memory has never seen its cost (the catalog's prices then apply).

Written on arrays so that evaluation and tuning predict thousands of prompts in one call; a
router's single request is the ``n = 1`` case of the same code.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from redisvl_llmrouter.learning.memory import MemoryStats, Neighbours
from redisvl_llmrouter.schema import LearningConfig

__all__ = [
    "Estimates",
    "ModelEstimate",
    "Prediction",
    "estimate",
    "leave_out_prior",
    "predict",
    "priors",
    "rank_weights",
]


def rank_weights(distances: np.ndarray, k: int, radius: float) -> np.ndarray:
    """``(n, K)`` weights: ``1 - rank / k`` for rows within ``radius``, 0 beyond it or where padded (inf)."""
    ranks = np.arange(distances.shape[-1], dtype=np.float64)
    weights = np.clip(1.0 - ranks / max(k, 1), 0.0, None)
    return np.where(distances <= radius, weights, 0.0)


def leave_out_prior(
    weights: np.ndarray,
    quality: np.ndarray,
    sums: np.ndarray,
    counts: np.ndarray,
    base: np.ndarray,
    shrinkage: float,
) -> np.ndarray:
    """``(n, m)`` quality priors: each model's mean over the memory without the rows that weigh in
    the request's own estimate, shrunk by ``shrinkage`` pseudo-observations toward ``base``.

    Args:
        weights: ``(n, K)`` the rows' weights (:func:`rank_weights`); rows of weight 0 stay in the prior.
        quality: ``(n, K, m)`` their qualities (NaN: not observed).
        sums, counts: ``(m,)`` each model's sum of qualities and number of observations in the memory.
        base: ``(m,)`` what the mean is shrunk toward (catalog quality; NaN: nothing, the mean alone).
    """
    near = ~np.isnan(quality)
    near &= (weights > 0)[..., None]
    n = np.maximum(counts - near.sum(axis=1), 0.0)
    total = sums - np.where(near, quality, 0.0).sum(axis=1)
    unknown = np.isnan(base)
    kappa = np.where(unknown, 0.0, shrinkage)  # nothing to shrink toward: the mean alone
    denominator = n + kappa
    # No observation left and no shrinkage: the base itself (NaN when there is none either).
    fallback = np.broadcast_to(base, denominator.shape).copy()
    return np.divide(total + kappa * np.where(unknown, 0.0, base), denominator, out=fallback, where=denominator > 0)


@dataclass(frozen=True)
class Estimates:
    """Predictions for ``n`` requests and ``m`` models (arrays), as :func:`estimate` returns them."""

    quality: np.ndarray  # (n, m); NaN where nothing is known
    quality_support: np.ndarray  # (n, m)
    cost: np.ndarray  # (n, m); NaN where the memory never saw the model's cost
    latency_ms: np.ndarray  # (n, m); NaN where never observed nearby
    support: np.ndarray  # (n,) total weight of the rows found


def estimate(
    distances: np.ndarray,
    values: np.ndarray,
    prior_quality: np.ndarray,
    prior_cost: np.ndarray,
    config: LearningConfig,
    weights: np.ndarray | None = None,
) -> Estimates:
    """The arithmetic of the module docstring on arrays.

    Args:
        distances: ``(n, K)`` cosine distances of each request's rows, nearest first (``inf`` pads).
        values: ``(n, K, m, 3)`` quality, cost, latency of each row and model (NaN: not observed).
        prior_quality, prior_cost: ``(m,)`` or ``(n, m)`` the priors (NaN where unknown).
        config: neighbours ``K``, ``radius`` and ``shrinkage``.
        weights: the rows' :func:`rank_weights`, when the caller has them already.
    """
    distances = np.asarray(distances, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    kappa = float(config.shrinkage)
    w = rank_weights(distances, config.neighbours, config.radius) if weights is None else weights  # (n, K)
    support = w.sum(axis=1)
    seen = ~np.isnan(values)  # (n, K, m, 3)
    # Weighted sums over the neighbours for quality, cost and latency at once.
    mass = np.einsum("nk,nkmc->nmc", w, seen.astype(np.float64))
    total = np.einsum("nk,nkmc->nmc", w, np.where(seen, values, 0.0))
    # (m, 2), or (n, m, 2) with a prior per request (quality's leaves each request's neighbours out)
    prior = np.stack(np.broadcast_arrays(prior_quality, prior_cost), axis=-1).astype(np.float64)
    known = ~np.isnan(prior)
    with np.errstate(invalid="ignore", divide="ignore"):
        shrunk = (total[..., :2] + kappa * np.where(known, prior, 0.0)) / (mass[..., :2] + kappa)
        local = total / mass
    # With a prior: shrink toward it (the prior alone when there is neither shrinkage nor a neighbour);
    # without one: the neighbours' weighted mean, NaN when none observed the model.
    estimates = np.where(known, shrunk, local[..., :2])
    estimates = np.where(known & (mass[..., :2] + kappa == 0), prior, estimates)
    quality, cost = estimates[..., 0], estimates[..., 1]
    quality_support, latency = mass[..., 0], local[..., 2]
    return Estimates(quality, quality_support, cost, latency, support)


@dataclass(frozen=True)
class ModelEstimate:
    """One model's prediction for one request."""

    quality: float | None
    support: float
    cost: float | None
    latency_ms: float | None
    observed: bool = True
    """Whether the memory holds any outcome of this model (else ``quality`` is a catalog or borrowed prior)."""
    prior: float | None = None
    """The prior ``quality`` was shrunk toward (None: not known, or ``quality`` is no shrunk estimate)."""
    shrinkage: float = 0.0
    """Its weight, in observations: ``quality = (support * local + shrinkage * prior) / (support + shrinkage)``."""


@dataclass(frozen=True)
class Prediction:
    """Every model's prediction for one request, and the weight of the similar rows found."""

    support: float
    models: dict[str, ModelEstimate]

    def quality(self, model: str) -> float | None:
        estimate = self.models.get(model)
        return None if estimate is None else estimate.quality


def priors(
    models: Sequence[str],
    stats: MemoryStats,
    catalog_quality: Mapping[str, float | None],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """What the priors of ``models`` are made of: the base their quality is shrunk toward (catalog
    quality, else the mean of the memory's model means), the memory's sum of each one's qualities
    and its number of observations (for :func:`leave_out_prior`), and each one's mean cost."""
    means = {m: stats.mean_quality(m) for m in stats.n}
    known = [q for q in means.values() if q is not None]
    overall = sum(known) / len(known) if known else None
    base, sums, counts = [], [], []
    for model in models:
        b = catalog_quality.get(model)
        base.append(np.nan if (b := overall if b is None else b) is None else b)
        q = means.get(model)
        n = stats.n.get(model, 0) if q is not None else 0
        counts.append(float(n))
        sums.append(0.0 if q is None else n * q)
    cost = [np.nan if (c := stats.mean_cost(m)) is None else c for m in models]
    return tuple(np.asarray(x, dtype=np.float64) for x in (base, sums, counts, cost))  # type: ignore[return-value]


def _known(x: float) -> float | None:
    return None if x != x else x  # NaN is the only value unequal to itself


def predict(
    neighbours: Neighbours,
    columns: Sequence[str],
    models: Sequence[str],
    stats: MemoryStats,
    config: LearningConfig,
    catalog_quality: Mapping[str, float | None] | None = None,
) -> Prediction:
    """Predictions for one request from its KNN rows.

    Args:
        neighbours: the rows found (values in the memory's column order).
        columns: the memory's model columns (``llmrouter:{NAME}:outcomes:models``).
        models: the models to predict for (the router's candidates; unseen ones get their prior).
        stats: the memory's running sums (priors).
        catalog_quality: catalog quality priors, for models the memory has not seen.
    """
    index = {name: i for i, name in enumerate(columns)}
    width = neighbours.values.shape[1]
    picks = np.array([index.get(m, -1) for m in models])
    present = (picks >= 0) & (picks < width)
    # Columns of the requested models, in their order; NaN for models the memory has not seen.
    values = neighbours.values[:, np.where(present, picks, 0), :].astype(np.float64)[None]
    values[:, :, ~present, :] = np.nan
    base, sums, counts, prior_c = priors(models, stats, catalog_quality or {})
    distances = np.asarray(neighbours.distances, dtype=np.float64)[None, :]
    weights = rank_weights(distances, config.neighbours, config.radius)
    prior_q = leave_out_prior(weights, values[..., 0], sums, counts, base, float(config.shrinkage))[0]
    est = estimate(distances, values, prior_q, prior_c, config, weights)
    rows = zip(
        models,
        est.quality[0].tolist(),
        est.quality_support[0].tolist(),
        est.cost[0].tolist(),
        est.latency_ms[0].tolist(),
        prior_q.tolist(),
    )
    observed = {m for m in stats.n if stats.mean_quality(m) is not None}
    kappa = float(config.shrinkage)
    return Prediction(
        support=float(est.support[0]),
        models={
            m: ModelEstimate(
                _known(q), s, _known(c), _known(lat), observed=m in observed, prior=_known(p), shrinkage=kappa
            )
            for m, q, s, c, lat, p in rows
        },
    )
