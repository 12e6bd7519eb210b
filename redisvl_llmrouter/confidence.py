"""What a match's confidence means, how it is fitted and how well it holds: pure functions, no I/O.

A calibrated confidence is the probability that a route is the right one for the query, under a
softmax over the routes' aggregated distances with one fitted parameter, the ``sharpness`` β:

    P(route r) = exp(-β · d_r) / Σ_j exp(-β · d_j)

summed over the routes that passed their thresholds (the candidates). When no route passed, the
sum runs over every route's distance (a route beyond the search radius counts at the radius) and
the default route's share is its confidence. This is temperature scaling (Guo et al., "On
Calibration of Modern Neural Networks", 2017) with negative distances as logits: one parameter,
fitted by maximum likelihood on labelled queries, is all a few dozen queries can support without
over-fitting, and it keeps the probability monotone: a closer route is always more likely, so
among routes ranked by distance an alternative never outranks the winner.

Routes beyond their thresholds get probability 0 when some route passed: on the shipped config's
dev queries no right answer ever lay beyond its threshold, so the maximum-likelihood weight of
such routes is zero (see ``docs/confidence.md``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = [
    "LabelledDistances",
    "ReliabilityBin",
    "expected_calibration_error",
    "fit_sharpness",
    "log_loss",
    "reliability",
    "softmax",
]

#: Range searched for the sharpness β (1 / distance units): from nearly uniform to nearly arg-min.
SHARPNESS_BOUNDS = (0.01, 1000.0)


def softmax(distances: Sequence[float], sharpness: float) -> list[float]:
    """``exp(-β·d_i) / Σ exp(-β·d_j)``, computed stably; monotone: smaller distance, larger share."""
    if not distances:
        return []
    nearest = min(distances)
    weights = [math.exp(-sharpness * (d - nearest)) for d in distances]
    total = math.fsum(weights)
    return [w / total for w in weights]


@dataclass(frozen=True)
class LabelledDistances:
    """One labelled query as the confidence model sees it: the options it chooses among and the right one.

    ``distances`` maps each option (the routes that passed their thresholds, or every route when
    none did) to its aggregated distance; ``label`` is the route that is right for the query.
    """

    distances: Mapping[str, float]
    label: str


def log_loss(examples: Sequence[LabelledDistances], sharpness: float) -> float:
    """Mean negative log-probability of the right route; examples whose label is not an option are skipped."""
    total, counted = 0.0, 0
    for example in examples:
        names = list(example.distances)
        if example.label not in names:
            continue
        probabilities = softmax([example.distances[n] for n in names], sharpness)
        total -= math.log(max(probabilities[names.index(example.label)], 1e-300))
        counted += 1
    return total / counted if counted else 0.0


def fit_sharpness(examples: Sequence[LabelledDistances], bounds: tuple[float, float] = SHARPNESS_BOUNDS) -> float:
    """The maximum-likelihood sharpness β on ``examples``, by golden-section search over log β.

    The log loss is convex in β (a log-sum-exp of terms linear in β), hence unimodal in log β, so
    the search finds the optimum within ``bounds``. Raises ``ValueError`` when no example has its
    label among its options (nothing to learn from).
    """
    if not any(e.label in e.distances and len(e.distances) > 1 for e in examples):
        raise ValueError("No labelled query chooses among two or more routes: nothing to fit the sharpness on.")
    lo, hi = math.log(bounds[0]), math.log(bounds[1])
    ratio = (math.sqrt(5.0) - 1.0) / 2.0
    a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    fa, fb = log_loss(examples, math.exp(a)), log_loss(examples, math.exp(b))
    for _ in range(80):  # shrinks the bracket by 0.618^80, far below any meaningful digit
        if fa <= fb:
            hi, b, fb = b, a, fa
            a = hi - ratio * (hi - lo)
            fa = log_loss(examples, math.exp(a))
        else:
            lo, a, fa = a, b, fb
            b = lo + ratio * (hi - lo)
            fb = log_loss(examples, math.exp(b))
    return math.exp((lo + hi) / 2.0)


@dataclass(frozen=True)
class ReliabilityBin:
    """One confidence bin: how many answers fell in it, their mean confidence and how many were right."""

    low: float
    high: float
    count: int
    confidence: float
    accuracy: float


def reliability(confidences: Sequence[float], correct: Sequence[bool], bins: int = 10) -> list[ReliabilityBin]:
    """Equal-width bins over [0, 1] (the last one closed): the points of a reliability diagram.

    Empty bins are kept with ``count == 0`` so the diagram shows where no answers fell.
    """
    if len(confidences) != len(correct):
        raise ValueError("Give one correctness flag per confidence.")
    members: list[list[int]] = [[] for _ in range(bins)]
    for i, c in enumerate(confidences):
        members[min(int(c * bins), bins - 1)].append(i)
    out = []
    for b, idx in enumerate(members):
        n = len(idx)
        out.append(
            ReliabilityBin(
                low=b / bins,
                high=(b + 1) / bins,
                count=n,
                confidence=math.fsum(confidences[i] for i in idx) / n if n else 0.0,
                accuracy=sum(bool(correct[i]) for i in idx) / n if n else 0.0,
            )
        )
    return out


def expected_calibration_error(confidences: Sequence[float], correct: Sequence[bool], bins: int = 10) -> float:
    """ECE: the answer-weighted mean gap between confidence and accuracy over equal-width bins.

    0 means that among answers given with confidence about p, a share p was right, in every bin.
    """
    total = len(confidences)
    if total == 0:
        raise ValueError("The calibration error needs at least one answer.")
    return math.fsum(b.count / total * abs(b.accuracy - b.confidence) for b in reliability(confidences, correct, bins))
