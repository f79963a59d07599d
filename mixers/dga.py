"""DGA: Dynamic Gradient Alignment (Fan, Grangier, Ablin 2024).

Every `update_every` steps: g_s = the gradient on `specialist_batch` specialist `train`
sequences; for each component i, a_i = <g_i, g_s> with g_i the gradient on a fresh probe batch
of `probe_batch` sequences drawn from that component's distribution over the domains (for plain
DGA, the domain itself). Then an exponentiated-gradient step alpha_hat = softmax(log alpha +
eta * a) and an EMA alpha <- (1 - beta) * alpha + beta * alpha_hat (beta = 1: plain DGA).
Positive alignment means a step on the domain also lowers the specialist loss, so the domain
gains weight.

Choices the paper leaves open, as options: `eta_schedule` (`constant`, or `lr`: eta times the
optimizer's current learning rate), `grad_clip` (of g_s and every probe gradient before the dot
product), `normalize` (`none`, or `max_abs`: a / max|a|, so eta is the largest log-weight move).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from domains.data import DomainData
from mixers.alignment import alignment_scores, check_method, specialist_gradient
from mixers.base import Mixer, MixerConfig, UpdateContext
from mixers.simplex import check_floor, mirror_update

NORMALIZATIONS = ("none", "max_abs")
ETA_SCHEDULES = ("constant", "lr")


@dataclass
class DGAConfig(MixerConfig):
    name: str = "dga"
    update_every: int = 10
    # Step size of the exponentiated-gradient update (multiplied by the lr under `eta_schedule: lr`).
    eta: float = 1.0
    eta_schedule: str = "constant"
    # EMA coefficient: the share of the new weights taken at each update (1: plain DGA).
    beta: float = 1.0
    # Sequences per probe batch (b) and per specialist batch (b_s).
    probe_batch: int = 4
    specialist_batch: int = 16
    # Alignment estimator: backward (exact) or finite_difference (two batched forwards).
    alignment: str = "backward"
    # Finite differences: length of the step along g_s, relative to the parameters' norm.
    fd_step: float = 1e-4
    # Clip g_s and each probe gradient to this norm before the dot product (null: no clipping).
    grad_clip: float | None = None
    normalize: str = "none"
    # Floor on every weight (0: none).
    min_weight: float = 0.0


def normalized(scores: np.ndarray, how: str) -> np.ndarray:
    if how == "max_abs":
        largest = np.abs(scores).max()
        return scores / largest if largest > 0 else scores
    return scores


class DGAMixer(Mixer):
    """DGA over the components named by `components`, each probed through its distribution
    over the domains (for plain DGA, the domains themselves)."""

    def __init__(self, cfg: DGAConfig, data: DomainData):
        super().__init__(cfg, data)
        if cfg.update_every < 1:
            raise ValueError(f"mixer.update_every must be >= 1, got {cfg.update_every}")
        if cfg.eta <= 0 or not 0 < cfg.beta <= 1:
            raise ValueError(
                f"need mixer.eta > 0 and 0 < mixer.beta <= 1, got {cfg.eta}, {cfg.beta}"
            )
        if cfg.probe_batch < 1 or cfg.specialist_batch < 1:
            raise ValueError("mixer.probe_batch and mixer.specialist_batch must be >= 1")
        if cfg.eta_schedule not in ETA_SCHEDULES:
            raise ValueError(f"mixer.eta_schedule must be one of {list(ETA_SCHEDULES)}")
        if cfg.normalize not in NORMALIZATIONS:
            raise ValueError(f"mixer.normalize must be one of {list(NORMALIZATIONS)}")
        check_method(cfg.alignment, cfg.grad_clip)
        self.weight_names = self.components(data)
        p = len(self.weight_names)
        check_floor(cfg.min_weight, p)
        self._weights = np.full(p, 1.0 / p)
        self._weight_sum = np.zeros(p)

    def components(self, data: DomainData) -> list[str]:
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
        eta = cfg.eta * (ctx.lr if cfg.eta_schedule == "lr" else 1.0)
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
