"""Hyperparameter tuning on training rows only: stable folds, exact neighbours, a choice the data supports."""

from __future__ import annotations

import numpy as np
import pytest

from redisvl_llmrouter.learning.tuning import exact_neighbours, folds_by_id, tune


def test_folds_depend_on_ids_not_on_order():
    ids = [f"p{i}" for i in range(100)]
    a = folds_by_id(ids, 5)
    b = folds_by_id(list(reversed(ids)), 5)
    assert sorted(len(f) for f in a) == sorted(len(f) for f in b)
    assert {ids[i] for i in a[0]} == {list(reversed(ids))[i] for i in b[0]}
    assert sum(len(f) for f in a) == 100


def test_rows_of_the_same_text_share_a_fold_whatever_their_ids_and_order():
    # Folds by id alone put a prompt held twice under two ids in two folds: one scored on what the other taught.
    ids = [f"p{i}" for i in range(100)]
    texts = [f"question {i % 50}" for i in range(100)]  # p0 and p50 are the same question, and so on
    folds = folds_by_id(ids, 5, texts=texts)
    fold_of = {ids[i]: j for j, fold in enumerate(folds) for i in fold}
    assert all(fold_of[f"p{i}"] == fold_of[f"p{i + 50}"] for i in range(50))
    again = folds_by_id(list(reversed(ids)), 5, texts=list(reversed(texts)))
    assert {ids[i] for i in folds[0]} == {list(reversed(ids))[i] for i in again[0]}


def test_exact_neighbours_are_sorted_cosine_distances():
    base = np.array([[1.0, 0.0], [0.0, 1.0], [0.7071, 0.7071]])
    dist, idx = exact_neighbours(np.array([[1.0, 0.0]]), base, k=2)
    assert idx.tolist() == [[0, 2]]
    assert dist[0].tolist() == [0.0, 1.0 - 0.7071]


def test_tune_prefers_local_neighbourhoods_when_outcomes_follow_clusters():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(8, 16))
    labels = rng.integers(0, 8, 400)
    vectors = centres[labels] + 0.05 * rng.normal(size=(400, 16))
    # the cheap model succeeds on even clusters only; the dear one always
    quality = np.stack([(labels % 2 == 0).astype(float), np.ones(400)], axis=1)
    cost = np.tile([0.1, 1.0], (400, 1))
    result = tune(vectors, quality, cost, [str(i) for i in range(400)], neighbours=(16, 128), shrinkage=(4.0, 256.0))
    assert (result.config.neighbours, result.config.shrinkage) == (16, 4.0)
    assert result.scores[(16, 4.0)] > result.scores[(128, 256.0)]


def test_tuning_scores_the_routers_own_prediction():
    # The tuner's prior was the plain mean while the router shrinks it toward the mean of the model means:
    # the settings chosen were best for another predictor than the one deployed.
    from redisvl_llmrouter.learning.memory import MemoryStats, Neighbours
    from redisvl_llmrouter.learning.prediction import predict
    from redisvl_llmrouter.learning.tuning import predict_matrix
    from redisvl_llmrouter.schema import LearningConfig

    rng = np.random.default_rng(7)
    models = ["a", "b", "c"]
    rows, queries = rng.normal(size=(80, 8)), rng.normal(size=(12, 8))
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    quality = rng.integers(0, 2, size=(80, 3)).astype(np.float64)
    cost = rng.integers(1, 64, size=(80, 3)) / 1024  # exact in the memory's float32
    quality[rng.random((80, 3)) < 0.2] = np.nan  # some rows did not observe some models
    cost[np.isnan(quality)] = np.nan
    config = LearningConfig(neighbours=16, shrinkage=4.0, radius=1.5)
    dist, idx = exact_neighbours(queries, rows, 16)
    q_hat, c_hat, _ = predict_matrix(dist, idx, quality, cost, config)

    seen = ~np.isnan(quality)
    stats = MemoryStats(
        n={m: int(seen[:, j].sum()) for j, m in enumerate(models)},
        quality_sum={m: float(np.nansum(quality[:, j])) for j, m in enumerate(models)},
        n_cost={m: int(seen[:, j].sum()) for j, m in enumerate(models)},
        cost_sum={m: float(np.nansum(cost[:, j])) for j, m in enumerate(models)},
    )
    for i in range(len(queries)):
        values = np.stack([quality[idx[i]], cost[idx[i]], np.full((16, 3), np.nan)], axis=-1).astype(np.float32)
        prediction = predict(Neighbours(dist[i], values), models, models, stats, config)
        assert [prediction.models[m].quality for m in models] == pytest.approx(q_hat[i].tolist(), abs=1e-6)
        assert [prediction.models[m].cost for m in models] == pytest.approx(c_hat[i].tolist(), abs=1e-6)


def test_rows_the_embedder_cannot_tell_apart_share_a_fold_too():
    # MMLU holds "... 0.6c. How much ..." and "... 0.6c . How much ..." under two ids: the same embedding,
    # and they fell in different folds, one scored on what the other taught at distance 0.
    ids = [f"p{i}" for i in range(100)]
    texts = [f"Question {i % 50}: what is 0.6c. How much?" for i in range(50)]
    texts += [f"question  {i}:\nwhat is 0.6c . HOW much ?" for i in range(50)]
    fold_of = {ids[i]: j for j, fold in enumerate(folds_by_id(ids, 5, texts=texts)) for i in fold}
    assert all(fold_of[f"p{i}"] == fold_of[f"p{i + 50}"] for i in range(50))
