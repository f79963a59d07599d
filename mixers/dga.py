"""DGA: Dynamic Gradient Alignment (Fan, Grangier, Ablin 2024).

Every `update_every` steps: g_s = the gradient on `specialist_batch` specialist `train`
sequences; for each component i, a_i = <g_i, g_s> with g_i the gradient on a fresh probe batch
of `probe_batch` sequences drawn from that component's distribution over the domains (for plain
DGA, the domain itself). Then an exponentiated-gradient step alpha_hat = softmax(log alpha +
eta_t * a) and an EMA alpha <- (1 - beta) * alpha + beta * alpha_hat (beta = 1: plain DGA).
Positive alignment means a step on the domain also lowers the specialist loss, so the domain
gains weight.

No code of the DGA paper is public (searched 2026-12: no repository of the authors or of
Apple holds it). The paper leaves the update's scale open; the defaults bound it as reference
practice does, because an unbounded rule lets one outlier alignment put all weight on one domain
for good (a weight at 0 never returns). DoGE's code (Olivia-fsm/DoGE, src/trainer.py) clips
every gradient and scales the step by lr_t; the first author's later multi-target code
(Olivia-fsm/multi-target-data-mixing, src/trainer.py `domain_reweight_step`) clips each
gradient to max_grad_norm and steps by lr_t * <g_i, g_t> / mu; her newest (GRAPE) drops lr_t
for a constant step. Here:
- `grad_clip` 1.0, the training step's `train.grad_clip`: g_s and every probe gradient are
  clipped to it before the dot product, so |a_i| <= 1;
- `eta_schedule: lr`: eta_t = eta * lr_t / lr_peak, so the mixture barely moves during the
  learning-rate warm-up and eta keeps its meaning as the largest log-weight move at the peak
  rate (the multi-target code's lr_t / mu is this with eta = lr_peak / mu);
- `eta` chosen by a calibration sweep on a development specialist set that no reported
  comparison is scored on (experiment=calibration; docs/methods.md gives the figures).
`mixer=dga_unbounded` keeps the earlier rule (raw dot products, constant eta = 1) as a named
variant, so that the findings computed with it stay reproducible. `normalize: max_abs` (a /
max|a|, so eta is the largest log-weight move) is a third way to bound the step.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

import numpy as np

from domains.data import MixerView
from mixers.alignment import (
    Alignment,
    alignment_scores,
    check_method,
    check_precision,
    specialist_gradient,
)
from mixers.base import Mixer, MixerConfig, MixerSpec, UpdateContext
from mixers.simplex import check_floor, mirror_update

if TYPE_CHECKING:
    from omegaconf import DictConfig


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
    # lr_t / lr_peak (the learning-rate schedule's shape), `constant` does not. 3: the best of
    # 0.3, 1, 3 and 10 on the development set (experiment=calibration, analysis/calibration.csv).
    eta: float = 3.0
    eta_schedule: EtaSchedule = EtaSchedule.lr
    # EMA coefficient: the share of the new weights taken at each update (1: plain DGA).
    beta: float = 1.0
    # Sequences per probe batch (b) and per specialist batch (b_s).
    probe_batch: int = 4
    specialist_batch: int = 16
    # Alignment estimator: backward (exact) or finite_difference (two batched forwards).
    alignment: Alignment = Alignment.backward
    # Finite differences: length of the step along g_s, relative to the parameters' norm.
    fd_step: float = 1e-4
    # Clip g_s and each probe gradient to this norm before the dot product (null: no clipping);
    # the default is the training step's (train.grad_clip). finite_difference needs null.
    grad_clip: float | None = 1.0
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

    @classmethod
    def check_config(cls, cfg: DictConfig) -> None:
        """Finite-difference alignment needs the trainer to keep parameters in 32 bits."""
        check_precision(cfg.mixer.alignment, cfg.trainer.precision)

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
        if applied:
            self.weights = weights
        logs = {f"alignment/{n}": float(a) for n, a in zip(self.weight_names, scores, strict=True)}
        logs["max_abs_alignment"] = float(np.abs(scores).max())
        logs["eta"] = eta
        logs["update_skipped"] = float(not applied)
        return logs


SPEC = MixerSpec(
    "dga",
    DGAMixer,
    DGAConfig,
    family="online, gradient alignment",
    reference="Fan, Grangier, Ablin 2024 (bounded defaults)",
    cost="k probe gradients + 1 specialist gradient per update (0.50 of the training FLOPs at k = 16)",
)
