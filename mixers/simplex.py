"""Moving mixture weights on the probability simplex, safely.

The online mixers (DoGE, DGA, DGA-DR) all take the same kind of step: an exponentiated-gradient
(mirror-descent) step on the log weights, an optional EMA with the previous weights and an
optional floor. Whatever the scores, the weights that come out are finite, >= 0 and sum to 1: a
non-finite score or result skips the update with a warning instead of poisoning the weights.
"""

from __future__ import annotations

import warnings

import numpy as np


def check_floor(min_weight: float, num_weights: int) -> None:
    """A floor of `min_weight` on each of `num_weights` weights must leave room on the simplex."""
    if not 0 <= min_weight * num_weights <= 1:
        raise ValueError(
            f"mixer.min_weight={min_weight} must be in [0, 1/{num_weights}] for {num_weights} weights"
        )


def exponentiated_step(weights: np.ndarray, scores: np.ndarray, eta: float) -> np.ndarray:
    """softmax(log weights + eta * scores), in log space with the maximum subtracted.

    A zero weight stays zero (its log is -inf): mirror descent never revives a dead component.
    """
    with np.errstate(divide="ignore"):
        logits = np.log(weights) + eta * np.asarray(scores, dtype=np.float64)
    logits -= logits.max()
    new = np.exp(logits)
    return new / new.sum()


def with_floor(weights: np.ndarray, min_weight: float) -> np.ndarray:
    """The weights with every entry at least `min_weight`: entries below it are raised to it and
    the others scaled down to keep the sum at 1 (repeated until no entry is pushed under)."""
    if min_weight <= 0:
        return weights
    floored = np.zeros(len(weights), dtype=bool)
    while True:
        free = ~floored
        scaled = np.where(floored, min_weight, 0.0)
        scaled[free] = weights[free] * (1 - min_weight * floored.sum()) / weights[free].sum()
        below = free & (scaled < min_weight)
        if not below.any():
            return scaled
        floored |= below


def all_finite(who: str, *arrays: np.ndarray) -> bool:
    """Whether every value is finite; if not, warns that `who` skips its update."""
    if all(np.isfinite(a).all() for a in arrays):
        return True
    warnings.warn(f"{who}: non-finite gradients or scores {arrays}; update skipped", stacklevel=3)
    return False


def mirror_update(
    weights: np.ndarray,
    scores: np.ndarray,
    eta: float,
    beta: float = 1.0,
    min_weight: float = 0.0,
    who: str = "mixer",
) -> tuple[np.ndarray, bool]:
    """One update: alpha_hat = softmax(log alpha + eta * scores), alpha <- (1 - beta) * alpha +
    beta * alpha_hat, then the floor. Returns the new weights and whether the update was applied;
    with non-finite scores (or a non-finite result) the old weights come back unchanged."""
    scores = np.asarray(scores, dtype=np.float64)
    if not all_finite(who, scores):
        return weights, False
    with np.errstate(over="ignore", invalid="ignore"):
        new = (1 - beta) * weights + beta * exponentiated_step(weights, scores, eta)
    if not np.isfinite(new).all() or new.sum() <= 0:
        warnings.warn(
            f"{who}: update gave non-finite weights (eta too large?); skipped", stacklevel=2
        )
        return weights, False
    return with_floor(new / new.sum(), min_weight), True
