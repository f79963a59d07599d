"""DoGE-style online reweighting (Fan, Pagliardini, Jaggi 2023), on the trained model itself.

Batches are sampled uniformly over the domains (`domain_weights`); the weights alpha instead
reweight the loss (`training_loss`: sum_i alpha_i L_i over the batch's domain parts, so the
parameter update is sum_i alpha_i g_i). At every update, the per-domain gradients g_i of the
training batch give the scores

- `universal`: W_i = <g_i, sum_{j != i} g_j> = <g_i, G> - ||g_i||^2 with G = sum_j g_j;
- `target`: W_i = <g_i, g_s>, g_s the gradient of a specialist `train` batch;

scaled as in the original by lr_t / mean_i ||g_i||, clipped to lr_t * [0, `score_max`], then
log alpha <- log alpha + W / mu and softmax. The per-domain norms are part of the method, so the
exact (`backward`) estimator is used: finite differences give inner products but no norms.

Data-parallel ranks each score their own part of the batch (in universal mode against their own
G: the rank-averaged G would dilute the other domains' terms but not the self term -||g_i||^2),
and the scores and norms are averaged over the ranks whose batch held the domain, so every rank
takes the same step.

Project choices where the batch lacks a domain (sampling is random, not stratified): that
domain's score is 0 (the bottom of the clipping range, no evidence) and the loss is reweighted
over the domains present (renormalised, so the loss scale does not depend on which are present).
Report the time-averaged weights too: a DoGE proxy hands them to a fresh model via `static`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from domains.data import DomainData
from mixers.alignment import (
    gradient,
    specialist_gradient,
    streamed_alignment,
    trainable_parameters,
)
from mixers.base import Mixer, MixerConfig, UpdateContext
from mixers.simplex import all_finite, check_floor, mirror_update

MODES = ("universal", "target")


@dataclass
class DoGEConfig(MixerConfig):
    name: str = "doge"
    update_every: int = 1
    mode: str = "universal"
    # log alpha <- log alpha + W / mu.
    mu: float = 0.01
    # Scores are clipped to lr_t * [0, score_max].
    score_max: float = 5.0
    # Specialist `train` sequences per update (mode `target`).
    specialist_batch: int = 16
    min_weight: float = 0.0


def scaled_scores(scores: np.ndarray, lr: float, mean_norm: float, score_max: float) -> np.ndarray:
    """The original's scaling: W * lr / mean_i ||g_i||, clipped to lr * [0, score_max]."""
    return np.clip(scores * lr / mean_norm, 0.0, score_max * lr)


class DoGEMixer(Mixer):
    def __init__(self, cfg: DoGEConfig, data: DomainData):
        super().__init__(cfg, data)
        if cfg.mode not in MODES:
            raise ValueError(f"mixer.mode must be one of {list(MODES)}, got {cfg.mode!r}")
        if cfg.update_every < 1 or cfg.mu <= 0 or cfg.score_max <= 0:
            raise ValueError("need mixer.update_every >= 1, mixer.mu > 0 and mixer.score_max > 0")
        if cfg.specialist_batch < 1:
            raise ValueError("mixer.specialist_batch must be >= 1")
        check_floor(cfg.min_weight, data.num_domains)
        self._uniform = np.full(data.num_domains, 1.0 / data.num_domains)

    def domain_weights(self) -> np.ndarray:
        return self._uniform

    def update(self, ctx: UpdateContext) -> dict[str, float]:
        cfg = self.cfg
        k = len(self._weights)
        params = trainable_parameters(ctx.model)
        batch, domains = ctx.train_batch, ctx.train_domains
        present = torch.unique(domains).tolist()
        if cfg.mode == "target":
            reference = specialist_gradient(ctx, cfg.specialist_batch)
        else:  # G = sum_j g_j, the gradient of the sum of this rank's per-domain mean losses
            per_sequence = 1.0 / torch.bincount(domains, minlength=k)[domains]
            reference = gradient((ctx.sequence_loss(batch) * per_sequence).sum(), params)
        losses = (ctx.sequence_loss(batch[domains == i]).mean() for i in present)
        dots, squared_norms = streamed_alignment(losses, params, reference)
        if cfg.mode == "universal":
            dots = dots - squared_norms  # <g_i, G - g_i>
        scores, norms, seen = self._averaged_over_ranks(ctx, present, dots, squared_norms.sqrt())
        mean_norm = norms[seen].mean()
        applied = all_finite(f"doge at step {ctx.step}", scores, norms) and mean_norm > 0
        if applied:
            scaled = scaled_scores(scores, ctx.lr, mean_norm, cfg.score_max)
            weights, applied = mirror_update(
                self.weights, scaled, 1.0 / cfg.mu, min_weight=cfg.min_weight, who=self.name
            )
            self.weights = weights
        logs = {f"alignment/{n}": float(s) for n, s in zip(self.weight_names, scores, strict=True)}
        logs["mean_grad_norm"] = float(mean_norm)
        logs["update_skipped"] = float(not applied)
        return logs

    def _averaged_over_ranks(
        self, ctx: UpdateContext, present: list[int], dots: torch.Tensor, norms: torch.Tensor
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per-domain scores and gradient norms averaged over the ranks whose batch held the
        domain (ranks draw different batches), and which domains any rank saw; 0 elsewhere."""
        stats = torch.zeros(3, len(self._weights), dtype=torch.float64, device=dots.device)
        stats[0, present], stats[1, present], stats[2, present] = dots, norms, 1.0
        total, norm_total, seen = ctx.all_reduce_mean(stats).cpu().numpy()
        share = np.where(seen > 0, seen, 1.0)
        return total / share, norm_total / share, seen > 0

    def training_loss(self, sequence_losses: torch.Tensor, domains: torch.Tensor) -> torch.Tensor:
        """sum_i alpha_i L_i over the domains present in the batch, renormalised over them."""
        k = len(self._weights)
        sums = torch.zeros(k, dtype=sequence_losses.dtype, device=sequence_losses.device)
        sums = sums.index_add(0, domains, sequence_losses)
        counts = torch.bincount(domains, minlength=k)
        present = counts > 0
        alpha = torch.as_tensor(self._weights, dtype=sequence_losses.dtype).to(sums.device)
        alpha = alpha[present]
        domain_means = sums[present] / counts[present]
        return (alpha * domain_means).sum() / alpha.sum().clamp_min(torch.finfo(alpha.dtype).tiny)
