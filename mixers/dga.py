"""DGA: Dynamic Gradient Alignment (Fan, Grangier, Ablin 2024).

Every `update_every` steps: g_s = the gradient on `specialist_batch` specialist `train`
sequences; for each component i, a_i = <g_i, g_s> with g_i the gradient on a fresh probe batch
of `probe_batch` sequences drawn from that component's distribution over the domains (for plain
DGA, the domain itself). Then an exponentiated-gradient step alpha_hat = softmax(log alpha +
eta * a) and an EMA alpha <- (1 - beta) * alpha + beta * alpha_hat (beta = 1: plain DGA).
Positive alignment means a step on the domain also lowers the specialist loss, so the domain
gains weight.

Choices the paper leaves open, as options: `eta_schedule` (`constant`, or `lr`: eta times
lr_t / lr_peak, so the step follows the learning-rate schedule's warm-up and decay and eta keeps
its meaning as the step at the peak; the first author's later code multiplies by lr_t itself,
which is this with eta / lr_peak, and with eta = 1 would barely move the weights), `grad_clip`
(of g_s and every probe gradient before the dot product), `normalize` (`none`, or `max_abs`:
a / max|a|, so eta is the largest log-weight move).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from domains.data import MixerView
from mixers.alignment import Alignment, alignment_scores, check_method, specialist_gradient
from mixers.base import Mixer, MixerConfig, UpdateContext
from mixers.simplex import check_floor, mirror_update


class Normalize(StrEnum):
    none = "none"
    max_abs = "max_abs"


class EtaSchedule(StrEnum):
    constant = "constant"
    lr = "lr"


@dataclass
class DGAConfig(MixerConfig):
    name: str = "dga"
    update_every: int = 10
    # Step size of the exponentiated-gradient update; `eta_schedule: lr` multiplies it by
    # lr_t / lr_peak (the learning-rate schedule's shape), `constant` does not.
    eta: float = 1.0
    eta_schedule: EtaSchedule = EtaSchedule.constant
    # EMA coefficient: the share of the new weights taken at each update (1: plain DGA).
    beta: float = 1.0
    # Sequences per probe batch (b) and per specialist batch (b_s).
    probe_batch: int = 4
    specialist_batch: int = 16
    # Alignment estimator: backward (exact) or finite_difference (two batched forwards).
    alignment: Alignment = Alignment.backward
    # Finite differences: length of the step along g_s, relative to the parameters' norm.
    fd_step: float = 1e-4
    # Clip g_s and each probe gradient to this norm before the dot product (null: no clipping).
    grad_clip: float | None = None
    normalize: Normalize = Normalize.none
    # Floor on every weight (0: none).
    min_weight: float = 0.0

    def __post_init__(self) -> None:
        if self.update_every < 1:
            raise ValueError(f"mixer.update_every must be >= 1, got {self.update_every}")
        if self.eta <= 0 or not 0 < self.beta <= 1:
            raise ValueError(
                f"need mixer.eta > 0 and 0 < mixer.beta <= 1, got {self.eta}, {self.beta}"
            )
        if self.probe_batch < 1 or self.specialist_batch < 1:
            raise ValueError("mixer.probe_batch and mixer.specialist_batch must be >= 1")
        check_method(self.alignment, self.grad_clip)


def normalized(scores: np.ndarray, how: Normalize) -> np.ndarray:
    if how == Normalize.max_abs:
        largest = np.abs(scores).max()
        return scores / largest if largest > 0 else scores
    return scores


class DGAMixer(Mixer):
    """DGA over the components named by `components`, each probed through its distribution
    over the domains (for plain DGA, the domains themselves)."""

    def __init__(self, cfg: DGAConfig, data: MixerView):
        super().__init__(cfg, data)
        self.weight_names = self.components(data)
        p = len(self.weight_names)
        check_floor(cfg.min_weight, p)
        self._weights = np.full(p, 1.0 / p)
        self._weight_sum = np.zeros(p)

    def components(self, data: MixerView) -> list[str]:
        """Names of the weighted components: for plain DGA, the domains."""
        return list(data.names)

    def probe_distribution(self, j: int) -> np.ndarray:
        """The distribution over the domains that component j's probe batch is drawn from."""
        return np.eye(1, len(self.domain_names), j)[0]

    def update(self, ctx: UpdateContext) -> dict[str, float]:
        cfg = self.cfg
        g_s = specialist_gradient(ctx, cfg.specialist_batch, cfg.grad_clip)
        batches = [
            ctx.probe(self.probe_distribution(j), cfg.probe_batch)
            for j in range(len(self.weight_names))
        ]
        scores = alignment_scores(
            cfg.alignment,
            ctx.model,
            ctx.sequence_loss,
            batches,
            g_s,
            ctx.all_reduce_mean,
            cfg.grad_clip,
            cfg.fd_step,
        )
        scores = scores.detach().cpu().numpy()
        eta = cfg.eta * (ctx.lr / ctx.peak_lr if cfg.eta_schedule == EtaSchedule.lr else 1.0)
        weights, applied = mirror_update(
            self.weights,
            normalized(scores, cfg.normalize),
            eta,
            cfg.beta,
            cfg.min_weight,
            who=f"{self.name} at step {ctx.step}",
        )
        self.weights = weights
        logs = {f"alignment/{n}": float(a) for n, a in zip(self.weight_names, scores, strict=True)}
        logs["update_skipped"] = float(not applied)
        return logs
