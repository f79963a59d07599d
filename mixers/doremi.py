"""DoReMi: Domain Reweighting with Minimax Optimization (Xie et al. 2023), its proxy stage.

DoReMi has three stages, here three runs of this harness:

1. a reference model trained on the reference weights (uniform by default): any run, e.g.
   `mixer=uniform` (or `mixer=uniform mixer.weights=natural` with `reference_weights: natural`);
2. this mixer, `mixer=doremi mixer.reference=<reference run dir>`: a proxy model trained with
   Group DRO over the domains against the reference; the running mean of its weights alpha is
   DoReMi's output;
3. a fresh model trained on that mixture: `mixer=static mixer.path=<proxy run dir>
   mixer.which=time_averaged`.

At every training step, on the step's own batch (drawn from the reference weights) and with the
proxy's per-token losses from the training forward pass itself (no extra proxy pass), for each
domain d present in the batch of any data-parallel rank:

    s_d = mean over d's tokens of max(l_proxy - l_ref, 0)     (clipped per token, then averaged)

l_ref being the reference model's loss of the same token. A domain absent from the batch keeps
its last score. Before a domain first appears it has none, and `unseen_score` decides:

- `mean_seen` (default): the mean score of the domains seen so far, so that a domain neither
  gains nor loses weight merely by missing the first batches;
- `log_vocab`: log V (V the vocabulary size: the loss of a uniform prediction), the reference
  implementation's initial score. Its batches hold every domain from the first step, so there
  it is only a common shift; with the small batches of this harness (a batch of 16 sequences
  over 16 domains misses about 6 of them at the first step) it hands every domain missing from
  the first batch a head start of several nats in log alpha, which the cumulative update keeps.

Then

    alpha <- (1 - eps) softmax(log alpha + eta s) + eps / k        (eta: `eta`, eps: `smoothing`)

and the proxy trains on the alpha-weighted loss with the new alpha, as the reference trainer
does: sum_d alpha_d L_d, L_d the mean loss of domain d's tokens in the batch, over the domains
present, renormalised over them. (The paper's Algorithm 1 weights per-domain means; the
reference trainer weights every token by its domain's alpha and divides by their sum, which is
the same when the batch holds the domains equally.) Ranks average the per-domain excess sums
and token counts, so every rank takes the same step.

Defaults eta = 1 and eps = 1e-4 are the paper's and the reference implementation's
(sangmichaelxie/doremi, doremi/trainer.py); Aioli's port uses eta = 0.01 and eps = 1e-3
(`mixer=doremi_aioli`, or `mixer.eta=0.01 mixer.smoothing=1e-3`). Alpha starts at the reference
weights. The time average that the base class keeps, over the weights each step trained with,
is DoReMi's output (the reference implementation's average also counts the initial weights
once; over T steps that is a 1/T difference).

DoReMi is a generalist method: it minimises the worst-case excess loss over the generic domains
relative to the reference, and never looks at the specialist set, so it does not aim at the
specialist's domains; it moves the weight to the domains where the proxy lags the reference
most (learnable, and not yet learned), away from those that are already learned or that
neither model can learn (high loss, no excess).

Cost: training the reference run (recorded in this run's results as `upstream_flops`: its
`train_flops + mixer_flops + upstream_flops`) plus one reference forward pass per training
token (`mixer_flops`: a third of the reference model's training FLOPs per token); the proxy's
own training is `train_flops`, as for any run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import torch

from domains.data import MixerView
from mixers.base import (
    Mixer,
    MixerConfig,
    MixerSpec,
    TrainingBatch,
    UpstreamStage,
    domain_weighted_loss,
)
from mixers.simplex import mirror_update
from mixers.uniform import UniformConfig, UniformWeights

# Per-domain scores are logged as metrics up to this many domains (models/lm.py does the same
# for the weights).
MAX_LOGGED_SCORES = 128


class UnseenScore(StrEnum):
    mean_seen = "mean_seen"
    log_vocab = "log_vocab"


@dataclass
class DoReMiConfig(MixerConfig):
    name: str = "doremi"
    # The reference run's directory: a completed run of this harness on the same domains, whose
    # model (its config and final checkpoint) is the reference. None: experiments.train trains
    # it first, this run's config on the reference weights, in <run dir>/reference.
    reference: str | None = None
    # Step size of the exponentiated-gradient step on alpha.
    eta: float = 1.0
    # eps in alpha <- (1 - eps) softmax(...) + eps / k.
    smoothing: float = 1e-4
    # The weights the proxy's batches are drawn from: those the reference was trained on.
    reference_weights: UniformWeights = UniformWeights.uniform
    # Score of a domain before it first appears in a batch: the mean score of the domains seen
    # so far (mean_seen) or log of the vocabulary size (log_vocab, the reference implementation).
    unseen_score: UnseenScore = UnseenScore.mean_seen

    def __post_init__(self) -> None:
        if self.update_every != 0:
            raise ValueError(
                "mixer.update_every does not apply to doremi: it updates at every training step"
            )
        if self.eta <= 0:
            raise ValueError(f"mixer.eta must be > 0, got {self.eta}")
        if not 0 <= self.smoothing < 1:
            raise ValueError(f"mixer.smoothing must be in [0, 1), got {self.smoothing}")


def excess_loss_sums(
    token_losses: torch.Tensor,
    reference_losses: torch.Tensor,
    domains: torch.Tensor,
    num_domains: int,
) -> torch.Tensor:
    """[2, k] float64: per domain, the sum over its tokens of max(l_proxy - l_ref, 0) (each token
    clipped before summing) and its token count."""
    excess = (token_losses.detach().double() - reference_losses.double()).clamp_min(0)
    stats = torch.zeros(2, num_domains, dtype=torch.float64, device=excess.device)
    stats[0].index_add_(0, domains, excess.sum(dim=1))
    stats[1].index_add_(0, domains, torch.full_like(excess[:, 0], excess.shape[1]))
    return stats


def doremi_step(weights: np.ndarray, scores: np.ndarray, eta: float, smoothing: float):
    """(1 - eps) softmax(log alpha + eta s) + eps / k, and whether it was applied (non-finite
    scores leave the weights as they are, with a warning)."""
    new, applied = mirror_update(weights, scores, eta, who="doremi")
    if not applied:
        return weights, False
    return (1 - smoothing) * new + smoothing / len(weights), True


class DoReMiMixer(Mixer):
    needs_reference = True

    @classmethod
    def upstream_stage(cls, cfg: DoReMiConfig) -> UpstreamStage | None:
        """Without `mixer.reference`, the reference run is trained first: this run's config on
        the reference weights (uniform, or natural with `reference_weights=natural`), in
        <run dir>/reference (one process; with several, give `mixer.reference` or use
        experiments.pipeline)."""
        if cfg.reference:
            return None
        return UpstreamStage(
            what="the reference model",
            mixer=UniformConfig(weights=cfg.reference_weights, label=f"{cfg.name}_reference"),
            directory="reference",
            option="reference",
        )

    def __init__(self, cfg: DoReMiConfig, data: MixerView):
        super().__init__(cfg, data)
        k = data.num_domains
        if cfg.reference_weights == UniformWeights.natural:
            counts = np.asarray(data.token_counts(), dtype=np.float64)
            self._reference_weights = counts / counts.sum()
        else:
            self._reference_weights = np.full(k, 1.0 / k)
        self.weights = self._reference_weights
        initial = 0.0
        if cfg.unseen_score == UnseenScore.log_vocab:
            if data.vocab_size is None:
                raise ValueError("mixer.unseen_score=log_vocab needs the vocabulary size")
            initial = math.log(data.vocab_size)
        # Each domain's last score (the initial one until it is seen).
        self._scores = np.full(k, initial)
        self._seen = np.zeros(k, dtype=bool)

    def domain_weights(self) -> np.ndarray:
        return self._reference_weights.copy()

    def observe_excess(self, sums: np.ndarray, counts: np.ndarray) -> bool:
        """One update from each domain's summed clipped excess loss and token count in the
        step's batch (over all ranks); a domain with no tokens keeps its last score. Returns
        whether the update was applied."""
        present = counts > 0
        self._scores[present] = sums[present] / counts[present]
        self._seen |= present
        weights, applied = doremi_step(self._weights, self.scores, self.cfg.eta, self.cfg.smoothing)
        if applied:
            self.weights = weights
        return applied

    def training_loss(self, batch: TrainingBatch) -> torch.Tensor:
        if batch.reference_losses is None:
            raise RuntimeError(
                "doremi needs the reference model's per-token losses: train it through "
                "experiments.train with mixer.reference=<run dir>"
            )
        k = len(self._weights)
        with torch.no_grad():
            stats = excess_loss_sums(batch.token_losses, batch.reference_losses(), batch.domains, k)
            sums, counts = batch.all_reduce_mean(stats).cpu().numpy()
        applied = self.observe_excess(sums, counts)
        scores = self.scores
        if k <= MAX_LOGGED_SCORES:
            named = zip(self.weight_names, scores, strict=True)
            batch.logs.update({f"excess/{name}": float(s) for name, s in named})
        batch.logs["max_excess"] = float(scores.max())
        batch.logs["update_skipped"] = float(not applied)
        return domain_weighted_loss(batch.sequence_losses, batch.domains, self._weights)

    @property
    def scores(self) -> np.ndarray:
        """The scores of the next update: each domain's last excess-loss score, and for a domain
        not seen yet, the `unseen_score`."""
        scores = self._scores.copy()
        if self.cfg.unseen_score == UnseenScore.mean_seen and self._seen.any():
            scores[~self._seen] = scores[self._seen].mean()
        return scores

    @property
    def seen(self) -> np.ndarray:
        """Which domains have been in a batch (the others still hold the initial score)."""
        return self._seen.copy()

    def state_dict(self) -> dict:
        return {
            **super().state_dict(),
            "scores": self._scores.tolist(),
            "seen": self._seen.tolist(),
        }

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self._scores = np.asarray(state["scores"], dtype=np.float64)
        self._seen = np.asarray(state["seen"], dtype=bool)


SPEC = MixerSpec(
    "doremi",
    DoReMiMixer,
    DoReMiConfig,
    family="online, minimax (Group DRO)",
    reference="Xie et al. 2023, the proxy stage",
    cost="a reference run (`upstream_flops`) + its forward pass per training token",
)
