"""Choosing the learning hyperparameters by cross-validation on training outcomes only. Pure.

The number of neighbours ``K`` and the shrinkage ``κ`` trade locality against noise, and the
best trade depends on the data: thousands of prompts on a few topics (MMLU) want many
neighbours, a few hundred varied ones (MBPP) want a strong pull toward each model's mean. So
they are chosen per training set: split it into folds (by a hash of each prompt's id, so the
split does not depend on row order), predict every fold from the others with exact cosine KNN
(numpy, the same :func:`~redisvl_llmrouter.learning.prediction.estimate` the router uses), sweep
the knob, and keep the setting with the largest area under the cost-quality curve (RouterBench's
AIQ). The test prompts of an evaluation never take part: ``llmrouter eval`` calls this on the
training side of every split.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from redisvl_llmrouter import evaluation
from redisvl_llmrouter.learning.calibration import sweep
from redisvl_llmrouter.learning.prediction import estimate, leave_out_prior, rank_weights
from redisvl_llmrouter.request_text import same_text_key
from redisvl_llmrouter.schema import LearningConfig

__all__ = ["GRID_NEIGHBOURS", "GRID_SHRINKAGE", "Tuning", "exact_neighbours", "folds_by_id", "predict_matrix", "tune"]

GRID_NEIGHBOURS: tuple[int, ...] = (16, 32, 64, 128)
GRID_SHRINKAGE: tuple[float, ...] = (4.0, 16.0, 64.0, 256.0)


def folds_by_id(ids: Sequence[str], k: int, salt: str = "", texts: Sequence[str] | None = None) -> list[np.ndarray]:
    """Row indices of ``k`` folds, a row's fold being a hash of ``salt + id``: stable and order-free.

    With ``texts``, rows of the same text (up to case and spacing: :func:`same_text_key`) share one fold
    (that of the least of their ids, so the order still does not matter): a prompt a dataset holds twice
    under two ids (MMLU has 105 such, and more spelled with another spacing) would otherwise be scored on
    a fold that learned its twin, at distance 0.
    """
    keys = list(ids)
    if texts is not None:
        same = [same_text_key(text) for text in texts]
        least: dict[str, str] = {}
        for ident, key in zip(ids, same, strict=True):
            least[key] = min(least.get(key, ident), ident)
        keys = [least[key] for key in same]
    fold = np.array([int(hashlib.sha256((salt + key).encode()).hexdigest()[:8], 16) % k for key in keys])
    return [np.flatnonzero(fold == j) for j in range(k)]


def exact_neighbours(queries: np.ndarray, base: np.ndarray, k: int, chunk: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Cosine distances and indices of each query's ``k`` nearest base rows, nearest first (unit vectors)."""
    k = min(k, base.shape[0])
    dist = np.empty((queries.shape[0], k))
    idx = np.empty((queries.shape[0], k), dtype=np.int64)
    for start in range(0, queries.shape[0], chunk):
        sims = queries[start : start + chunk] @ base.T
        part = (
            np.argpartition(-sims, kth=k - 1, axis=1)[:, :k]
            if k < base.shape[0]
            else np.tile(np.arange(k), (sims.shape[0], 1))
        )
        top = np.take_along_axis(sims, part, axis=1)
        order = np.argsort(-top, axis=1, kind="stable")
        idx[start : start + chunk] = np.take_along_axis(part, order, axis=1)
        dist[start : start + chunk] = 1.0 - np.take_along_axis(top, order, axis=1)
    return dist, idx


def predict_matrix(
    distances: np.ndarray,
    indices: np.ndarray,
    quality: np.ndarray,
    cost: np.ndarray,
    config: LearningConfig,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Predicted quality, cost and support of each query from its neighbours among training rows: the
    router's own prediction (:func:`~redisvl_llmrouter.learning.prediction.predict`) for a memory of
    these rows and a catalog without quality priors (as ``llmrouter eval`` builds), so that tuning
    scores the predictor it tunes.

    ``quality`` and ``cost`` are the training rows' ``(n, m)`` outcomes. A model's quality prior is its
    mean without each query's own neighbours, shrunk toward the mean of the models' means; its cost
    prior is its mean.
    """
    k = min(config.neighbours, distances.shape[1])
    values = np.stack(
        [quality[indices[:, :k]], cost[indices[:, :k]], np.full(indices[:, :k].shape + (quality.shape[1],), np.nan)],
        axis=-1,
    )
    seen = ~np.isnan(quality)
    sums, counts = np.where(seen, quality, 0.0).sum(axis=0), seen.sum(axis=0).astype(np.float64)
    means = sums[counts > 0] / counts[counts > 0]
    base = np.full(quality.shape[1], means.mean() if means.size else np.nan)  # as prediction.priors
    weights = rank_weights(distances[:, :k], config.neighbours, config.radius)
    prior = leave_out_prior(weights, values[..., 0], sums, counts, base, float(config.shrinkage))
    est = estimate(distances[:, :k], values, prior, np.nanmean(cost, axis=0), config, weights)
    return est.quality, est.cost, est.support


@dataclass(frozen=True)
class Tuning:
    """The chosen settings and every candidate's cross-validated AIQ."""

    config: LearningConfig
    scores: dict[tuple[int, float], float]


def _aiq(quality_hat: np.ndarray, cost_hat: np.ndarray, quality: np.ndarray, cost: np.ndarray) -> float:
    points = sweep(quality_hat, cost_hat, quality, cost)
    singles = [(float(cost[:, j].mean()), float(quality[:, j].mean())) for j in range(quality.shape[1])]
    low, high = min(c for c, _ in singles), max(c for c, _ in singles)
    return evaluation.aiq([(p.cost, p.quality) for p in points], (low, high))


def tune(
    vectors: np.ndarray,
    quality: np.ndarray,
    cost: np.ndarray,
    ids: Sequence[str],
    base: LearningConfig | None = None,
    k_folds: int = 4,
    neighbours: Sequence[int] = GRID_NEIGHBOURS,
    shrinkage: Sequence[float] = GRID_SHRINKAGE,
    texts: Sequence[str] | None = None,
) -> Tuning:
    """The (neighbours, shrinkage) with the best inner cross-validated AIQ on these training rows
    (rows of the same ``texts`` kept in one inner fold, see :func:`folds_by_id`)."""
    base = base or LearningConfig()
    n = vectors.shape[0]
    if n < 2 * k_folds:
        return Tuning(base, {})
    vectors = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    kmax = max(neighbours)
    folds = [f for f in folds_by_id(ids, k_folds, salt="tune:", texts=texts) if f.size]
    cache = []
    for fold in folds:
        rest = np.setdiff1d(np.arange(n), fold)
        dist, idx = exact_neighbours(vectors[fold], vectors[rest], kmax)
        cache.append((fold, rest, dist, idx))
    scores: dict[tuple[int, float], float] = {}
    for k in neighbours:
        for kappa in shrinkage:
            config = base.model_copy(update={"neighbours": int(k), "shrinkage": float(kappa)})
            q_hat, c_hat = np.zeros_like(quality), np.zeros_like(cost)
            for fold, rest, dist, idx in cache:
                q_hat[fold], c_hat[fold], _ = predict_matrix(dist, idx, quality[rest], cost[rest], config)
            scores[(int(k), float(kappa))] = _aiq(q_hat, c_hat, quality, cost)
    best = max(scores, key=lambda key: (scores[key], -key[1]))
    return Tuning(base.model_copy(update={"neighbours": best[0], "shrinkage": best[1]}), scores)
