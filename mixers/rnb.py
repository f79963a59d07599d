"""R&B: Regroup and Balance (Ge et al. 2025, "R&B: Domain Regrouping and Data Mixture Balancing
for Efficient Foundation Model Training", arXiv 2505.00358v1), its Balance step.

Regroup, the paper's first stage (embed the data, k-means it into finer semantic domains), is
this harness's domain preparation: `data.num_domains` clusters (under `data.coarse_domains`
coarse ones), so `mixer=rnb` balances whatever domains the run was prepared with.

Balance, as the paper gives it (Algorithm 1 and its appendix twin Algorithm 3, Sections 3.3-3.4,
Appendices B.1, D.4, E.1). Training is cut into rounds of K steps, sampling from p_t (p_0
uniform). During a round, for every domain i present in a step's batch, the final layer's
gradient of that batch's loss restricted to i's sequences is added to an accumulator g_i, and the
sequences to a count |S_i|: the gradients of the training step itself, no other pass (E.1 gets
them per example from the one backward: for the final linear layer s = aW, dl/dW = dl/ds a).
At the end of the round

    G_ij = <g_i, g_j> / (|S_i| |S_j|)
    p_{t+1} = softmax(lam G p' / ||G p'||_2)

with p' the evaluation data's proportions over the domains (its points assigned to the training
clusters), and p_{t+1} replaces p_t (no multiplicative carry-over). The paper states no lam and no
K, and the authors' code is not public (no repository of theirs in the stored public corpora,
searched 2026-12; the paper gives no code link, and an ICLR 2026 reviewer asked whether it would
be released), so there are no parity figures: tests/test_mixers_rnb.py checks the update
against the formula above computed by hand.

How it runs here, with the option or choice behind each point:

- The step's gradients (the mechanism of DoGE, `Mixer.step_gradient`): the update runs at every
  step (`should_update`), takes the step's own batch (`UpdateContext.training_batch`), and for
  each domain present runs one forward and one backward over its sequences in the batch
  (`training_sequence_loss`, L_i = sum of their sequence losses / B), reads domain i's final-layer
  gradient off that backward, and sums the domains' gradients into the step's gradient, which
  the training step applies with no pass of its own: the batch's forward and backward, split by
  domain, and nothing more. (E.1's per-example route needs the layer's input and output gradient
  from inside the model; the split gives the same per-domain sums without touching models/.)
  Under fp16 loss scaling a step cannot take its gradient from the mixer, so `check_config`
  refuses trainer.precision 16-mixed; the passes run in fp32 under bf16-mixed, as every mixer
  pass does.
- The final layer is the output projection (`lm_head`), whose weight this GPT ties to the token
  embedding: g_i is the output projection's part of that weight's gradient, dl/ds a as in E.1,
  taken as the tied weight's gradient minus its embedding part (the embedding output's gradient
  added into the rows of the input tokens); the tests compare it with E.1's dl/ds a itself.
- `update_every` is K (steps per round; a weight update at every step that is a multiple of it,
  from the gradients of the K steps before). Default 10, DGA's update interval in this harness:
  the paper gives none.
- `lam` is the paper's lambda (the inverse of its entropy regularisation). With `normalize`,
  lam G p' / ||G p'|| has norm lam, so lam bounds the log-ratio of two weights by 2 lam. The
  paper gives none: 3, the best of 1, 3 and 10 on the development specialist set
  (experiment=calibration, as DGA's eta; docs/methods.md gives the figures).
- `normalize` (default true): divide G p' by its 2-norm, as Algorithm 1, Section 3.4 and the
  derivation of Appendix B.1 do; false gives Algorithm 3's softmax(lam G p') (its eta folded into
  lam), whose scale then follows the gradients'.
- `target` is p': `specialist` (default; this benchmark's evaluation data, the share of specialist
  `train` sequences nearest to each domain, `MixerView.target_train_domain`, never the `eval`
  split) or `uniform` (1/k, every domain's evaluation data equally).
- |S_i| counts sequences; a domain absent from a whole round has g_i = 0, so (G p')_i = 0 and it
  keeps a weight of exp(0) against the others' (the paper leaves this case open).
- Numerics: gradients accumulated in fp32 on the model's device, G in float64. A non-finite or
  all-zero G p' skips the round's update with a warning (the accumulators are reset either way).
- Data-parallel ranks accumulate their own batches; at a round's end the sums and counts are
  averaged over ranks (one collective of k x vocabulary x d_model numbers), so every rank takes
  the same weights; the step's gradient is averaged over ranks as every step's is.

Cost (`mixer_flops`, through `UpdateContext.count_flops`): R&B's own arithmetic, beyond the
training step's passes: per step, 2 x vocabulary x d_model per domain present (the embedding
part's subtraction and the accumulation) plus B x L x d_model (the embedding part's scatter); per
round, k x vocabulary x d_model (the means) and 2 k^2 x vocabulary x d_model (G). The summing of
the domains' gradients into the step's is the split training step's, uncounted (one backward over
the whole batch does it inside). The paper counts m^2 N per round (G over N numbers).
Memory: the k accumulators (k x vocabulary x d_model) and one gradient of the whole model; the
accumulators are part of the checkpoint, so a resumed run continues exactly.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from domains.data import MixerView
from mixers.alignment import averaged_over_ranks, trainable_parameters
from mixers.base import Mixer, MixerConfig, MixerSpec, StepGradient, UpdateContext

if TYPE_CHECKING:
    from omegaconf import DictConfig

# Trainer precisions whose loss scaler cannot take a gradient formed by the mixer.
LOSS_SCALED_PRECISIONS = ("16-mixed", "16")
# Columns of the accumulated gradients turned into float64 at a time for G.
GRAM_CHUNK = 1 << 22


class Target(StrEnum):
    """p', the evaluation data's proportions over the domains."""

    specialist = "specialist"
    uniform = "uniform"


@dataclass
class RnBConfig(MixerConfig):
    name: str = "rnb"
    # K: steps per round; the weights move at every multiple of it.
    update_every: int = 10
    # lambda in p = softmax(lambda G p' / ||G p'||).
    lam: float = 3.0
    # Divide G p' by its 2-norm (Algorithm 1); false: softmax(lambda G p') (Algorithm 3).
    normalize: bool = True
    # p': the specialist `train` split's nearest-domain shares, or uniform.
    target: Target = Target.specialist

    def __post_init__(self) -> None:
        if self.update_every < 1:
            raise ValueError(f"mixer.update_every must be >= 1, got {self.update_every}")
        if not 0 < self.lam < math.inf:
            raise ValueError(f"mixer.lam must be a finite number > 0, got {self.lam}")


def target_proportions(target: Target, data: MixerView) -> np.ndarray:
    """p' over the k domains."""
    k = data.num_domains
    if target == Target.uniform:
        return np.full(k, 1.0 / k)
    counts = np.bincount(data.target_train_domain, minlength=k).astype(np.float64)
    return counts / counts.sum()


def balanced_weights(
    gram: np.ndarray, target: np.ndarray, lam: float, normalize: bool
) -> tuple[np.ndarray | None, np.ndarray]:
    """(softmax(lam u), u) with u = G p' / ||G p'|| (or G p' without `normalize`); no weights
    (None) when G p' is not finite or is all zero."""
    scores = gram @ target
    norm = np.linalg.norm(scores)
    if not np.isfinite(norm) or norm == 0:
        return None, scores
    if normalize:
        scores = scores / norm
    logits = lam * scores
    weights = np.exp(logits - logits.max())
    return weights / weights.sum(), scores


@contextlib.contextmanager
def embedding_outputs(model: nn.Module):
    """The token embedding's output of every forward pass of `model` inside the block."""
    outputs: list[torch.Tensor] = []
    handle = model.token_embedding.register_forward_hook(lambda m, i, out: outputs.append(out))
    try:
        yield outputs
    finally:
        handle.remove()


class RnBMixer(Mixer):
    @classmethod
    def check_config(cls, cfg: DictConfig) -> None:
        """The step's gradient comes from the mixer, which fp16 loss scaling cannot take."""
        if str(cfg.trainer.precision) in LOSS_SCALED_PRECISIONS:
            raise ValueError(
                f"mixer=rnb forms each step's gradient from its per-domain passes, which "
                f"trainer.precision={cfg.trainer.precision} (fp16 loss scaling) cannot take: "
                "use bf16-mixed or 32-true"
            )

    def __init__(self, cfg: RnBConfig, data: MixerView):
        super().__init__(cfg, data)
        self._target = target_proportions(cfg.target, data)
        k = data.num_domains
        # g_i (a [k, vocabulary, d_model] tensor, made at the first step) and |S_i|.
        self._sums: torch.Tensor | None = None
        self._counts = np.zeros(k)
        self._formed: StepGradient | None = None

    def should_update(self, step: int) -> bool:
        return True  # every step's gradients count; the weights move every `update_every`

    def update(self, ctx: UpdateContext) -> dict[str, float]:
        logs = {}
        if ctx.step > 0 and ctx.step % self.cfg.update_every == 0:
            logs = self._balance(ctx)
        if ctx.training_sequence_loss is None:
            raise RuntimeError("mixer=rnb needs a training step that takes the mixer's gradient")
        self._formed = self._take_step(ctx)
        return logs

    def step_gradient(self) -> StepGradient | None:
        formed, self._formed = self._formed, None
        return formed

    def _take_step(self, ctx: UpdateContext) -> StepGradient:
        """The step's forward and backward, one domain at a time: each domain's final-layer
        gradient added to its accumulator, the sum of all their gradients the step's."""
        model = ctx.model
        params = trainable_parameters(model)
        head = model.lm_head.weight
        tied = head is model.token_embedding.weight
        at = next(n for n, p in enumerate(params) if p is head)
        tokens, domains = ctx.training_batch()
        batch, length = tokens.shape[0], tokens.shape[1] - 1
        if self._sums is None:
            self._sums = torch.zeros((len(self._counts), *head.shape), device=head.device)
        self._sums = self._sums.to(head.device)  # a no-op but after loading a checkpoint
        present = torch.unique(domains).tolist()
        total, loss = None, torch.zeros((), device=head.device)
        with embedding_outputs(model) as outputs:
            for i in present:
                rows = tokens[domains == i]
                domain_loss = ctx.training_sequence_loss(rows).sum() / batch
                inputs = [*params, outputs.pop()] if tied else params
                grads = torch.autograd.grad(domain_loss, inputs, allow_unused=True)
                grads = [
                    torch.zeros_like(x) if g is None else g
                    for x, g in zip(inputs, grads, strict=True)
                ]
                final = grads[at]
                if tied:  # the embedding's part: its output's gradient, into the input rows
                    embedding = grads.pop()
                    final = final.index_add(
                        0, rows[:, :-1].reshape(-1), embedding.reshape(-1, head.shape[1]), alpha=-1
                    )
                self._sums[i] += final.float()
                self._counts[i] += len(rows)
                if total is None:
                    total = grads
                else:
                    total = [t.add_(g) for t, g in zip(total, grads, strict=True)]
                loss = loss + domain_loss.detach()
        scatter = batch * length * head.shape[1] if tied else 0
        ctx.count_flops(2 * len(present) * head.numel() + scatter)
        return StepGradient(loss, params, averaged_over_ranks(total, ctx.all_reduce_mean))

    def _balance(self, ctx: UpdateContext) -> dict[str, float]:
        """The end of a round: G from the accumulated gradients, the new weights, and the
        accumulators reset."""
        k = len(self._counts)
        if self._sums is None:  # no step of this round on this process (cannot happen in a run)
            return {}
        sums = ctx.all_reduce_mean(self._sums)
        counts = ctx.all_reduce_mean(torch.as_tensor(self._counts, device=sums.device))
        counts = counts.cpu().numpy()
        means = sums.reshape(k, -1) / torch.as_tensor(
            np.where(counts > 0, counts, 1.0), dtype=sums.dtype, device=sums.device
        ).unsqueeze(1)
        gram = torch.zeros(k, k, dtype=torch.float64, device=sums.device)
        for block in means.split(max(1, GRAM_CHUNK // k), dim=1):
            block = block.double()
            gram += block @ block.T
        gram = gram.cpu().numpy()
        size = means.shape[1]
        ctx.count_flops(k * size + 2 * k * k * size)
        self._sums.zero_()
        self._counts[:] = 0
        with np.errstate(invalid="ignore", over="ignore"):
            weights, scores = balanced_weights(gram, self._target, self.cfg.lam, self.cfg.normalize)
        applied = weights is not None and bool(np.isfinite(weights).all())
        if applied:
            self.weights = weights
        else:
            warnings.warn(
                f"{self.name} at step {ctx.step}: G p' = {scores} is not finite or all zero; "
                "update skipped",
                stacklevel=2,
            )
        logs = {f"score/{n}": float(s) for n, s in zip(self.weight_names, scores, strict=True)}
        logs["update_skipped"] = float(not applied)
        return logs

    def state_dict(self) -> dict:
        return {
            **super().state_dict(),
            "gradient_sums": None if self._sums is None else self._sums.cpu(),
            "counts": self._counts.tolist(),
        }

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        sums = state["gradient_sums"]
        self._sums = None if sums is None else sums.clone()
        self._counts = np.asarray(state["counts"], dtype=np.float64)


SPEC = MixerSpec(
    "rnb",
    RnBMixer,
    RnBConfig,
    family="online, gradient alignment",
    reference="Ge et al. 2025 (R&B), its Balance step on the clustered domains",
    cost="no pass beyond the training step's (split by domain); its gradient sums and Gram matrix: 0.01 % of the training FLOPs (synthetic, k = 8) to 0.2 % (demo, k = 16)",
)
