"""DoGE-style online reweighting (Fan, Pagliardini, Jaggi 2023), on the trained model itself.

What the authors' code computes (github.com/Olivia-fsm/DoGE, src/trainer.py,
`DoGETrainer.update_domain_weights_distributed`, the path of their config/doge.json), at every
optimizer step, on the step's own training batch:

1. each domain's gradient g_i on its part of the batch (its mean loss L_i), clipped to
   max_grad_norm: clip(g_i) = s_i g_i, s_i = min(1, max_grad_norm / ||g_i||);
2. a score W_i for each training domain, scaled by lr_t / mean_i ||clip(g_i)||, clipped to
   lr_t * [dw_min, dw_max], and alpha <- softmax(log alpha + W / mu);
3. the parameter update from those same gradients, with the new alpha: the optimizer steps on
   sum_i alpha_i clip(g_i) over the domains the batch holds (alpha sums to 1 over all domains;
   not renormalised over those present), after the usual clip of the total to max_grad_norm.
   No other forward or backward pass over the batch.

Ours, with the option or choice behind each difference:

- Batches are stratified (`stratified: true`): every training batch holds every domain, n // k
  sequences each and the rest spread at random, so every domain is scored at every update.
  With `stratified: false` a domain absent from a batch scores 0 (the bottom of the clipping
  range, no evidence; theirs scores it with the stale gradient of the last batch that held it)
  and adds nothing to the step, as in theirs.
- Scores (`mode`). `target`: W_i = <clip(g_i), clip(g_s)>, g_s the gradient of a batch of
  `specialist_batch` specialist `train` sequences (streamed, one domain gradient at a time unless
  the step is formed from them). Their shipped config (tgt_domains: "mix") is this mode with a
  separate held-out batch mixing all domains as the target, not a specialist set. `universal`:
  W_i = <clip(g_i), sum_{j != i} clip(g_j)>, from the Gram matrix of the batch's domain
  gradients (a parameter at a time, in float64). This is the branch their code intends for
  tgt_ids == train_ids, but as written that test (`set(train_ids) == set(tgt_ids)`, sets of
  0-d tensors compared by identity) is always False, so their code scores
  sum_j <clip(g_i), clip(g_j)>, the j = i term ||clip(g_i)||^2 included: our `universal` is
  the intended score, not what their code runs.
- The parameter update (`reweighted_gradient`). `clipped` (default, theirs): sum_i alpha_i s_i
  g_i over the domains present, alpha the weights just updated. Where the training step can
  take a gradient from the mixer (`Mixer.step_gradient`: everywhere but under fp16 loss
  scaling) it is built from the domain gradients the update took, as theirs is, and the step
  runs no forward or backward pass of its own (its passes are the update's, in full precision
  also under bf16-mixed, as every mixer pass is); otherwise `training_loss` returns a loss with
  that gradient (s_i a constant). On a step without an update (`update_every` > 1) no domain
  gradient is known, so s_i = 1: the step trains on sum_i alpha_i g_i (their code updates at
  every step). `unclipped`: sum_i alpha_i g_i / sum_present alpha_i (this harness's behaviour
  before it matched theirs), equal to `clipped` when no domain gradient exceeds `grad_clip`
  and every domain is present.
- `grad_clip` defaults to 1.0 (HF's max_grad_norm default and this harness's train.grad_clip);
  their config/doge.json uses 5.0. The clip of the total is train.grad_clip's.
- The reported training loss is sum_i alpha_i L_i / sum_present alpha_i in both modes.
- Numerics: float64 scores and clip coefficients max_norm / (norm + 1e-12) (theirs: float32 and
  torch's clip_grad_norm_, + 1e-6; they also add 1e-6 to the mean norm). No `reweight_eps`
  smoothing (theirs defaults to 0); `mu` 0.01 as in their config (their dataclass default is
  0.05). tests/test_parity_doge.py checks all of this against their code's figures.

The per-domain norms are part of the method, so the exact (`backward`) estimator is used:
finite differences give inner products but no norms. Cost: one forward and one backward pass
over the training batch's sequences, in k per-domain parts, which are the training step's own
passes when the step is formed from them (the specialist batch's in `target` mode are the
mixer's); otherwise the training step's forward and backward come on top. Memory: the k domain
gradients are held at once (as theirs are) in `universal` mode and whenever the step is formed
from them.

Data-parallel ranks each score their own part of the batch, and the scores and norms are
averaged over the ranks whose batch held the domain, so every rank takes the same step; each
rank clips its own domain gradients, and the step's gradient is averaged over ranks. Report the
time-averaged weights too: a DoGE proxy hands them to a fresh model via `static`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import torch

from domains.data import MixerView
from mixers.alignment import (
    Gradient,
    averaged_over_ranks,
    gradient,
    inner,
    specialist_gradient,
    trainable_parameters,
)
from mixers.base import (
    Mixer,
    MixerConfig,
    MixerSpec,
    StepGradient,
    TrainingBatch,
    UpdateContext,
    domain_weighted_loss,
)
from mixers.simplex import all_finite, check_floor, mirror_update


class Mode(StrEnum):
    universal = "universal"
    target = "target"


class ReweightedGradient(StrEnum):
    """What the parameter update is made of (see the module docstring)."""

    clipped = "clipped"
    unclipped = "unclipped"


@dataclass
class DoGEConfig(MixerConfig):
    name: str = "doge"
    update_every: int = 1
    mode: Mode = Mode.universal
    # log alpha <- log alpha + W / mu.
    mu: float = 0.01
    # Scores are clipped to lr_t * [0, score_max].
    score_max: float = 5.0
    # Clip every domain gradient (and g_s) to this norm before scoring and in the parameter
    # update (null: no clipping).
    grad_clip: float | None = 1.0
    # The parameter update: sum_i alpha_i clip(g_i) (`clipped`, the reference's) or the
    # renormalised sum_i alpha_i g_i (`unclipped`).
    reweighted_gradient: ReweightedGradient = ReweightedGradient.clipped
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


def stacked(grads: list[Gradient]) -> list[torch.Tensor]:
    """Per parameter, the gradients of every loss as one [n, numel] matrix (each loss's tensor
    of that parameter dropped once stacked, so the peak stays near one copy)."""
    blocks = []
    for p in range(len(grads[0])):
        blocks.append(torch.stack([g[p].reshape(-1) for g in grads]))
        for g in grads:
            g[p] = None
    return blocks


def gram_matrix(blocks: list[torch.Tensor]) -> torch.Tensor:
    """[n, n] inner products <g_i, g_j> over all parameters, in float64, a parameter at a time."""
    n = blocks[0].shape[0]
    gram = torch.zeros(n, n, dtype=torch.float64, device=blocks[0].device)
    for block in blocks:
        block = block.double()
        gram += block @ block.T
    return gram


def combined(blocks: list[torch.Tensor], coefficients: torch.Tensor, params) -> Gradient:
    """sum_i c_i g_i for each parameter, from the stacked gradients."""
    return [
        (coefficients.to(block.dtype) @ block).view_as(p)
        for block, p in zip(blocks, params, strict=True)
    ]


def universal_scores(
    gram: torch.Tensor, factors: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """<clip g_i, sum_{j != i} clip g_j> and ||clip g_i||^2 from the raw gradients' Gram matrix
    and the clip factors s_i (clip g_i = s_i g_i)."""
    clipped = factors[:, None] * gram * factors[None, :]
    squared_norms = clipped.diagonal()
    return clipped.sum(dim=1) - squared_norms, squared_norms


def clip_factors(squared_norms: torch.Tensor, max_norm: float | None) -> torch.Tensor:
    """s_i = min(1, max_norm / ||g_i||) (1 without clipping), as alignment.clipped scales."""
    if max_norm is None:
        return torch.ones_like(squared_norms)
    return torch.clamp(max_norm / (squared_norms.sqrt() + 1e-12), max=1.0)


def scaled_scores(scores: np.ndarray, lr: float, mean_norm: float, score_max: float) -> np.ndarray:
    """The original's scaling: W * lr / mean_i ||g_i||, clipped to lr * [0, score_max]."""
    return np.clip(scores * lr / mean_norm, 0.0, score_max * lr)


class DoGEMixer(Mixer):
    def __init__(self, cfg: DoGEConfig, data: MixerView):
        super().__init__(cfg, data)
        check_floor(cfg.min_weight, data.num_domains)
        self.stratified_batches = cfg.stratified
        self._uniform = np.full(data.num_domains, 1.0 / data.num_domains)
        # (step, [k] clip factors of that step's domain gradients, 1 for absent domains).
        self._clip_factors: tuple[int, np.ndarray] | None = None
        self._formed: StepGradient | None = None

    def domain_weights(self) -> np.ndarray:
        return self._uniform

    def update(self, ctx: UpdateContext) -> dict[str, float]:
        cfg = self.cfg
        params = trainable_parameters(ctx.model)
        batch, domains = ctx.training_batch()
        present = torch.unique(domains).tolist()
        forms_step = ctx.training_sequence_loss is not None
        sequence_loss = ctx.training_sequence_loss if forms_step else ctx.sequence_loss
        losses, kept = [], []
        if cfg.mode == Mode.target:
            reference = specialist_gradient(ctx, cfg.specialist_batch, cfg.grad_clip)
            raw_dots, raw_squared = [], []
        for i in present:
            loss = sequence_loss(batch[domains == i]).mean()
            losses.append(loss.detach())
            g = gradient(loss, params)
            if cfg.mode == Mode.target:  # streamed unless the step is formed from them
                raw_dots.append(inner(g, reference))
                raw_squared.append(inner(g, g))
            if forms_step or cfg.mode == Mode.universal:
                kept.append(g)
            del g, loss
        blocks = stacked(kept) if kept else None
        if cfg.mode == Mode.target:
            raw_squared = torch.stack(raw_squared)
            factors = clip_factors(raw_squared, cfg.grad_clip)
            dots, squared_norms = factors * torch.stack(raw_dots), factors**2 * raw_squared
        else:
            gram = gram_matrix(blocks)
            factors = clip_factors(gram.diagonal(), cfg.grad_clip)
            dots, squared_norms = universal_scores(gram, factors)
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
        step_factors = np.ones(len(self._weights))
        step_factors[present] = factors.cpu().numpy()
        self._clip_factors = (ctx.step, step_factors)
        if forms_step:
            self._formed = self._form_step(ctx, present, torch.stack(losses), blocks, params)
        logs = {f"alignment/{n}": float(s) for n, s in zip(self.weight_names, scores, strict=True)}
        logs["mean_grad_norm"] = float(mean_norm)
        logs["update_skipped"] = float(not applied)
        return logs

    def _loss_coefficients(self, present: torch.Tensor, step: int) -> torch.Tensor:
        """[k] w_i of the step's objective sum_i w_i L_i over the `present` domains (0
        elsewhere): alpha_i s_i (`clipped`; s_i = 1 unless the update of `step` measured it) or
        alpha_i / sum_present alpha (`unclipped`)."""
        alpha = torch.as_tensor(self._weights, dtype=torch.float64) * present
        if self.cfg.reweighted_gradient == ReweightedGradient.unclipped:
            return alpha / alpha.sum().clamp_min(torch.finfo(alpha.dtype).tiny)
        if self._clip_factors is not None and self._clip_factors[0] == step:
            return alpha * torch.as_tensor(self._clip_factors[1])
        return alpha

    def _reported_loss(self, domain_losses: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        """sum_i alpha_i L_i / sum_present alpha_i: the step's training loss as logged."""
        alpha = torch.as_tensor(self._weights, dtype=domain_losses.dtype).to(domain_losses.device)
        alpha = alpha * present.to(alpha.device)
        return (alpha * domain_losses).sum() / alpha.sum().clamp_min(torch.finfo(alpha.dtype).tiny)

    def _form_step(
        self,
        ctx: UpdateContext,
        present: list[int],
        losses: torch.Tensor,
        blocks: list[torch.Tensor],
        params: list[torch.nn.Parameter],
    ) -> StepGradient:
        """The step's gradient sum_i w_i g_i from the domain gradients just taken, averaged over
        ranks, and its reported loss."""
        mask = torch.zeros(len(self._weights), dtype=torch.bool)
        mask[present] = True
        w = self._loss_coefficients(mask, ctx.step)[present].to(blocks[0].device)
        grads = averaged_over_ranks(combined(blocks, w, params), ctx.all_reduce_mean)
        domain_losses = torch.zeros(len(self._weights), dtype=losses.dtype, device=losses.device)
        domain_losses[present] = losses
        return StepGradient(self._reported_loss(domain_losses, mask), params, grads)

    def step_gradient(self) -> StepGradient | None:
        formed, self._formed = self._formed, None
        return formed

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
        """A loss whose gradient is the step's parameter update (see the module docstring):
        `unclipped`, sum_i alpha_i L_i over the domains present, renormalised over them;
        `clipped`, sum_i alpha_i s_i L_i, with the value reported as the renormalised
        sum_i alpha_i L_i (the s_i, constants, only shape the gradient)."""
        if self.cfg.reweighted_gradient == ReweightedGradient.unclipped:
            return domain_weighted_loss(batch.sequence_losses, batch.domains, self._weights)
        losses = batch.sequence_losses
        k = len(self._weights)
        sums = torch.zeros(k, dtype=losses.dtype, device=losses.device).index_add(
            0, batch.domains, losses
        )
        counts = torch.bincount(batch.domains, minlength=k)
        present = counts > 0
        domain_losses = sums / counts.clamp_min(1)
        w = self._loss_coefficients(present.cpu(), batch.step).to(losses.device, losses.dtype)
        reported = self._reported_loss(domain_losses, present)
        return reported.detach() + (w * (domain_losses - domain_losses.detach())).sum()


SPEC = MixerSpec(
    "doge",
    DoGEMixer,
    DoGEConfig,
    family="online, gradient alignment",
    reference="Fan, Pagliardini, Jaggi 2023",
    cost="k per-domain gradients of the step's batch per update (every step by default)",
)
