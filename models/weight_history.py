"""The mixture weights over a run: the ones it started from and every change since."""

from __future__ import annotations

import numpy as np


class WeightHistory:
    """`initial`: the weights the mixer starts from (before any update, also on a resumed run),
    what a collapse is judged against (mixers/collapse.py). `trajectory`: (step, weights) pairs,
    each the weights in force from that step on (the run's weights.csv). The time average of
    the weights is the mixer's own (`Mixer.time_averaged_weights`)."""

    def __init__(self, initial: np.ndarray):
        self.initial = initial
        self.trajectory: list[tuple[int, list[float]]] = []

    def record(self, step: int, weights: np.ndarray) -> None:
        """`weights` are in force from `step` on."""
        self.trajectory.append((step, weights.tolist()))

    def replace(self, step: int, weights: np.ndarray) -> None:
        """`weights` are in force from `step` on, in place of any recorded for that same step
        (the weights moved again within the step: DoReMi moves them on the step's batch)."""
        if self.trajectory and self.trajectory[-1][0] == step:
            self.trajectory.pop()
        self.record(step, weights)

    def state_dict(self) -> list[list]:
        """The trajectory in plain Python types (the initial weights are the mixer's own)."""
        return [[step, weights] for step, weights in self.trajectory]

    def load_state_dict(self, state: list[list]) -> None:
        self.trajectory = [(step, list(weights)) for step, weights in state]
