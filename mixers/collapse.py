"""How concentrated a mixture is, and when a run counts as collapsed.

An online mixer collapses when its weights end up on one component it did not start on: the
unbounded DGA rule did so on 8 of 70 findings runs (one outlier alignment, then a weight at 0
never returns). Such runs are flagged in every record and table, never hidden.

`collapsed`: the time-averaged weight of some component exceeds `COLLAPSE_WEIGHT` (0.9) while
its starting weight was below `COLLAPSE_PRIOR` (0.5). A static mixer whose own choice is one
domain (importance sampling with one specialist domain) is therefore never flagged: its
time-averaged weights are its starting weights.
"""

from __future__ import annotations

import numpy as np

COLLAPSE_WEIGHT = 0.9
COLLAPSE_PRIOR = 0.5


def weight_entropy(weights: np.ndarray) -> float:
    """The entropy of the mixture in nats (log k for uniform weights over k, 0 for one-hot)."""
    w = np.asarray(weights, dtype=np.float64)
    w = w[w > 0]
    return float(-(w * np.log(w)).sum())


def collapsed(initial: np.ndarray, time_averaged: np.ndarray) -> bool:
    """Whether the time-averaged weights put more than COLLAPSE_WEIGHT on a component whose
    starting weight was below COLLAPSE_PRIOR."""
    initial, time_averaged = np.asarray(initial), np.asarray(time_averaged)
    heavy = time_averaged > COLLAPSE_WEIGHT
    return bool((heavy & (initial < COLLAPSE_PRIOR)).any())
