"""DoGE-style online reweighting (Fan, Pagliardini, Jaggi 2023), on the trained model itself.

Batches are stratified (`stratified: true`, the method's setting): every training batch holds
every domain, n // k sequences each and the rest spread at random, so every domain is scored at
every update. The weights alpha reweight the loss (`training_loss`: sum_i alpha_i L_i over the
batch's domain parts, so the parameter update is sum_i alpha_i g_i). At every update, each
domain's gradient g_i on its part of the training batch is clipped to `grad_clip` (as the
reference implementation clips every domain gradient to max_grad_norm before scoring), and

- `universal`: W_i = <g_i, sum_{j != i} g_j>, from the Gram matrix of the clipped gradients
  (held as one [k, P] matrix, as in the reference implementation);
- `target`: W_i = <g_i, g_s>, g_s the clipped gradient of a specialist `train` batch (streamed:
  one gradient at a time);

scaled as in the original by lr_t / mean_i ||g_i||, clipped to lr_t * [0, `score_max`], then
log alpha <- log alpha + W / mu and softmax. The per-domain norms are part of the method, so the
exact (`backward`) estimator is used: finite differences give inner products but no norms.
Cost: one forward and one backward pass over the training batch's sequences per update, beyond
the training step's own.

Data-parallel ranks each score their own part of the batch, and the scores and norms are
averaged over the ranks whose batch held the domain, so every rank takes the same step. With
`stratified: false` (random batches) a domain absent from a batch scores 0 (the bottom of the
clipping range, no evidence) and the loss is reweighted over the domains present. Report the
time-averaged weights too: a DoGE proxy hands them to a fresh model via `static`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import torch

from domains.data import MixerView
from mixers.alignment import (
    gradient,
    specialist_gradient,
    streamed_alignment,
    trainable_parameters,
)
from mixers.base import (
    Mixer,
    MixerConfig,
    TrainingBatch,
    UpdateContext,
    domain_weighted_loss,
)
from mixers.simplex import all_finite, check_floor, mirror_update


class Mode(StrEnum):
    universal = "universal"
    target = "target"


@dataclass
class DoGEConfig(MixerConfig):
    name: str = "doge"
    update_every: int = 1
    mode: Mode = Mode.universal
    # log alpha <- log alpha + W / mu.
    mu: float = 0.01
    # Scores are clipped to lr_t * [0, score_max].
    score_max: float = 5.0
    # Clip every domain gradient (and g_s) to this norm before scoring (null: no clipping).
    grad_clip: float | None = 1.0
    # Every training batch holds every domain (needs train.batch_size >= k).
    stratified: bool = True
    # Specialist `train` sequences per update (mode `target`).
    specialist_batch: int = 16
    min_weight: float = 0.0

    def __post_init__(self) -> None:
        if self.update_every < 1 or self.mu <= 0 or self.score_max <= 0:
            raise ValueError("need mixer.update_every >= 1, mixer.mu > 0 and mixer.score_max > 0")
        if self.specialist_batch < 1:
            raise ValueError("mixer.specialist_batch must be >= 1")
        if self.grad_clip is not None and self.grad_clip <= 0:
            raise ValueError(f"mixer.grad_clip must be > 0 or null, got {self.grad_clip}")


def universal_scores(
    losses, params: list[torch.nn.Parameter], max_norm: float | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """<g_i, sum_{j != i} g_j> and ||g_i||^2 for the clipped gradients g_i of `losses`."""
    flat = [torch.cat([g.reshape(-1) for g in gradient(loss, params, max_norm)]) for loss in losses]
    matrix = torch.stack(flat).double()  # [k, P]
    gram = matrix @ matrix.T
    squared_norms = gram.diagonal()
    return gram.sum(dim=1) - squared_norms, squared_norms


def scaled_scores(scores: np.ndarray, lr: float, mean_norm: float, score_max: float) -> np.ndarray:
    """The original's scaling: W * lr / mean_i ||g_i||, clipped to lr * [0, score_max]."""
    return np.clip(scores * lr / mean_norm, 0.0, score_max * lr)


class DoGEMixer(Mixer):
    def __init__(self, cfg: DoGEConfig, data: MixerView):
        super().__init__(cfg, data)
        check_floor(cfg.min_weight, data.num_domains)
        self.stratified_batches = cfg.stratified
        self._uniform = np.full(data.num_domains, 1.0 / data.num_domains)

    def domain_weights(self) -> np.ndarray:
        return self._uniform

    def update(self, ctx: UpdateContext) -> dict[str, float]:
        cfg = self.cfg
        params = trainable_parameters(ctx.model)
        batch, domains = ctx.training_batch()
        present = torch.unique(domains).tolist()
        losses = (ctx.sequence_loss(batch[domains == i]).mean() for i in present)
        if cfg.mode == Mode.target:
            reference = specialist_gradient(ctx, cfg.specialist_batch, cfg.grad_clip)
            dots, squared_norms = streamed_alignment(losses, params, reference, cfg.grad_clip)
        else:
            dots, squared_norms = universal_scores(losses, params, cfg.grad_clip)
        scores, norms, seen = self._averaged_over_ranks(ctx, present, dots, squared_norms.sqrt())
        mean_norm = norms[seen].mean()
        applied = all_finite(f"doge at step {ctx.step}", scores, norms) and mean_norm > 0
        if applied:
            scaled = scaled_scores(scores, ctx.lr, mean_norm, cfg.score_max)
            weights, applied = mirror_update(
                self.weights, scaled, 1.0 / cfg.mu, min_weight=cfg.min_weight, who=self.name
            )
        if applied:
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

    def training_loss(self, batch: TrainingBatch) -> torch.Tensor:
        """sum_i alpha_i L_i over the domains present in the batch, renormalised over them."""
        return domain_weighted_loss(batch.sequence_losses, batch.domains, self._weights)
