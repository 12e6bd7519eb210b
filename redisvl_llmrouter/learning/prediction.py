"""Prediction: a request's nearest outcome rows → each model's expected quality and cost. Pure.

Given the ``K`` rows a KNN search returned (nearest first) and the memory's per-model means:

* **weights by rank**: the i-th nearest row (0-based) weighs ``1 - i / K``, and rows farther than
  ``radius`` (cosine distance) weigh nothing. Rank weights follow the neighbourhood's shape
  without depending on how dense the memory is; in cross-validation on the shared outcome sets
  they beat both uniform and distance-kernel weights.
* **shrinkage**: a model's predicted quality is
  ``(sum_i w_i * q_im + shrinkage * prior_m) / (sum_i w_i + shrinkage)`` over the rows where the
  model was observed, with ``prior_m`` the model's mean quality over the whole memory, itself shrunk
  the same way (``shrinkage`` pseudo-observations) toward its catalog quality, else the mean of the
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

__all__ = ["Estimates", "ModelEstimate", "Prediction", "estimate", "predict", "priors", "rank_weights"]


def rank_weights(distances: np.ndarray, k: int, radius: float) -> np.ndarray:
    """``(n, K)`` weights: ``1 - rank / k`` for rows within ``radius``, 0 beyond it or where padded (inf)."""
    ranks = np.arange(distances.shape[-1], dtype=np.float64)
    weights = np.clip(1.0 - ranks / max(k, 1), 0.0, None)
    return np.where(distances <= radius, weights, 0.0)


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
) -> Estimates:
    """The arithmetic of the module docstring on arrays.

    Args:
        distances: ``(n, K)`` cosine distances of each request's rows, nearest first (``inf`` pads).
        values: ``(n, K, m, 3)`` quality, cost, latency of each row and model (NaN: not observed).
        prior_quality, prior_cost: ``(m,)`` the priors (NaN where unknown).
        config: neighbours ``K``, ``radius`` and ``shrinkage``.
    """
    distances = np.asarray(distances, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    kappa = float(config.shrinkage)
    w = rank_weights(distances, config.neighbours, config.radius)  # (n, K)
    support = w.sum(axis=1)
    seen = ~np.isnan(values)  # (n, K, m, 3)
    # Weighted sums over the neighbours for quality, cost and latency at once.
    mass = np.einsum("nk,nkmc->nmc", w, seen.astype(np.float64))
    total = np.einsum("nk,nkmc->nmc", w, np.where(seen, values, 0.0))
    prior = np.stack([prior_quality, prior_cost], axis=-1).astype(np.float64)  # (m, 2)
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
    shrinkage: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Quality and cost priors of ``models``: each model's memory mean shrunk by ``shrinkage``
    pseudo-observations toward its catalog quality (else the mean of the known means), that base
    alone for a model the memory has not seen."""
    means = {m: stats.mean_quality(m) for m in stats.n}
    known = [q for q in means.values() if q is not None]
    overall = sum(known) / len(known) if known else None
    quality = []
    for model in models:
        base = catalog_quality.get(model)
        if base is None:
            base = overall
        q = means.get(model)
        if q is not None and base is not None and shrinkage > 0:
            n = stats.n[model]
            q = (n * q + shrinkage * base) / (n + shrinkage)
        if q is None:
            q = base
        quality.append(np.nan if q is None else q)
    cost = [np.nan if (c := stats.mean_cost(m)) is None else c for m in models]
    return np.asarray(quality, dtype=np.float64), np.asarray(cost, dtype=np.float64)


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
    prior_q, prior_c = priors(models, stats, catalog_quality or {}, config.shrinkage)
    est = estimate(neighbours.distances[None, :], values, prior_q, prior_c, config)
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
