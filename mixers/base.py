"""The one interface every mixer implements.

A mixer owns mixture weights over its components (the k domains, or for DGA with distribution
reweighting, p basis distributions over the domains) and may

- expose them (`weights`, `weight_names`) and the distribution over domains the training batch is
  sampled from (`domain_weights`), read by the sampler at every batch;
- update them every `update_every` steps through `update`, which gets an `UpdateContext` with the
  model, the loss function, the step's training batch, and functions that draw probe batches from
  the domains and specialist `train` batches (see models/batches.py, which counts their FLOPs);
  the update comes before the step's batch is drawn, so the weights recorded after it are those
  the batch is drawn (or, for DoGE, reweighted) with;
- reweight the training loss per domain (`training_loss`, shown the step's `TrainingBatch`: its
  per-token losses from the training forward pass and, for a mixer that `needs_reference`, the
  reference model's per-token losses of the same tokens; DoGE and DoReMi train on the
  alpha-weighted loss, and DoReMi moves its weights there, on the step's own batch);
- form the step's parameter gradient itself (`step_gradient`, DoGE): an update handed
  `UpdateContext.training_sequence_loss` may turn the gradients it took on the step's own
  training batch into that step's gradient, and the training step then runs no forward or
  backward pass of its own;
- watch each step's per-domain training losses (`observe_training_losses`; ODM's bandit reward);
- say which mixture over the domains a fresh model should be trained on to reuse its choice
  (`mixture`: what the static mixer reads back from a run's results);
- save and restore its state (`state_dict`, `load_state_dict`), which the LightningModule stores in
  every checkpoint.

The base class also keeps the running sum of the weights over training steps, so every mixer can
report time-averaged weights (what a DoGE proxy run hands to a fresh model through `static`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from domains.data import MixerView


@dataclass
class MixerConfig:
    """Fields every mixer has; each mixer's schema extends this."""

    name: str = "uniform"
    # Steps between weight updates; 0 for a static mixer.
    update_every: int = 0
    # The name the run goes by in tables (by default the mixer and the options that differ from
    # its defaults, e.g. `dga[beta=0.5]`): a multi-stage method names its runs after itself
    # (experiments/pipeline.py), e.g. `regmix` for the static run on RegMix's proposal.
    label: str | None = None


@dataclass
class UpdateContext:
    """Everything a mixer may use at an update step."""

    step: int
    # The optimizer's learning rate at this step, and its peak (the configured train.lr).
    lr: float
    peak_lr: float
    model: nn.Module
    # Token sequences [b, L + 1] -> per-sequence mean loss [b], differentiable; its forward and
    # backward passes are counted as the mixer's FLOPs.
    sequence_loss: Callable[[torch.Tensor], torch.Tensor]
    # The batch this step trains on and each sequence's domain, drawn when first called (with
    # the weights as they are then): only a mixer that scores the training batch itself (DoGE)
    # calls it, so the others' updates take effect on this very step's batch.
    training_batch: Callable[[], tuple[torch.Tensor, torch.Tensor]]
    # probe(dist, n): n sequences drawn from the domains by the distribution `dist` over domains
    # (one-hot for a single domain); their tokens are counted as probe tokens, not training tokens.
    probe: Callable[[np.ndarray, int], torch.Tensor]
    # specialist(n): n sequences of the specialist `train` split (counted as probe tokens too).
    specialist: Callable[[int], torch.Tensor]
    # Mean over data-parallel ranks (identity on one process): mixers average what they measure
    # with it so that every rank ends the update with identical weights.
    all_reduce_mean: Callable[[torch.Tensor], torch.Tensor]
    # heldout_losses(n): [k] the model's mean loss on n fixed held-out sequences of each domain;
    # specialist_train_loss(n): on n fixed sequences of the specialist `train` split. Fixed: the
    # same sequences at every call and on every rank (spread evenly over the split). No gradient,
    # eval mode; forward FLOPs counted as the mixer's, tokens as probe tokens (Aioli).
    heldout_losses: Callable[[int], np.ndarray]
    specialist_train_loss: Callable[[int], float]
    # `sequence_loss` for passes over this step's training batch (`training_batch`) whose
    # gradients the mixer turns into the step's own parameter gradient (`Mixer.step_gradient`):
    # they are the training step's passes, whose FLOPs are counted as training by the batch's
    # tokens, so they are not counted again. None where the training step cannot take a gradient
    # from the mixer (fp16 loss scaling); a mixer then uses `sequence_loss` and `training_loss`.
    training_sequence_loss: Callable[[torch.Tensor], torch.Tensor] | None = None


def _one_process(tensor: torch.Tensor) -> torch.Tensor:
    return tensor


@dataclass
class StepGradient:
    """A training step's gradient formed by the mixer in its update (`Mixer.step_gradient`)."""

    # The step's training loss as `training_loss` would report it (a scalar, no gradient).
    loss: torch.Tensor
    # The gradient of that step's training objective for each of `parameters` (the model's
    # trainable parameters), identical on every rank (averaged with `all_reduce_mean`).
    parameters: list[nn.Parameter]
    gradients: list[torch.Tensor]


@dataclass
class TrainingBatch:
    """What `Mixer.training_loss` is shown at every training step."""

    step: int
    # The step's tokens [B, L + 1] and each sequence's domain [B].
    tokens: torch.Tensor
    domains: torch.Tensor
    # The trained model's next-token loss of every target token [B, L], from the training forward
    # pass itself (differentiable: the loss returned is built from these).
    token_losses: torch.Tensor
    # The reference model's per-token losses [B, L] of the same tokens (no gradient), computed on
    # first call and counted as the mixer's FLOPs; None unless the mixer `needs_reference`.
    reference_losses: Callable[[], torch.Tensor] | None = None
    # Mean over data-parallel ranks (identity on one process), as in `UpdateContext`.
    all_reduce_mean: Callable[[torch.Tensor], torch.Tensor] = _one_process
    # Scalars the mixer wants logged for this step (as `mixer/<key>`).
    logs: dict[str, float] = field(default_factory=dict)

    @property
    def sequence_losses(self) -> torch.Tensor:
        """Each sequence's mean token loss [B]."""
        return self.token_losses.mean(dim=1)


def domain_weighted_loss(
    sequence_losses: torch.Tensor, domains: torch.Tensor, weights: np.ndarray
) -> torch.Tensor:
    """sum_i w_i L_i, L_i the mean loss of domain i's sequences, over the domains present in the
    batch, renormalised over them (DoGE's and DoReMi's training loss)."""
    k = len(weights)
    sums = torch.zeros(k, dtype=sequence_losses.dtype, device=sequence_losses.device)
    sums = sums.index_add(0, domains, sequence_losses)
    counts = torch.bincount(domains, minlength=k)
    present = counts > 0
    alpha = torch.as_tensor(weights, dtype=sequence_losses.dtype).to(sums.device)
    alpha = alpha[present]
    domain_means = sums[present] / counts[present]
    return (alpha * domain_means).sum() / alpha.sum().clamp_min(torch.finfo(alpha.dtype).tiny)


class Mixer:
    """A fixed mixture. Subclasses set the weights, and override `update` to move them."""

    # Whether every training batch must hold every domain (DoGE's per-domain gradients).
    stratified_batches = False
    # Whether the mixer is shown each step's per-domain training losses (ODM).
    observes_training_losses = False
    # Whether the run loads a reference model (from the run directory in the mixer's `reference`
    # option) whose per-token losses `training_loss` is shown (DoReMi).
    needs_reference = False
    # FLOPs spent before this run to produce what the mixer uses (a reference model, a swarm of
    # proxy runs, a proxy run whose mixture it reuses): part of the method's cost, recorded in
    # the run's results as `upstream_flops`.
    upstream_flops = 0

    def __init__(self, cfg: MixerConfig, data: MixerView):
        self.cfg = cfg
        self.domain_names = list(data.names)
        self.weight_names = list(data.names)
        self._weights = np.full(data.num_domains, 1.0 / data.num_domains)
        self._weight_sum = np.zeros_like(self._weights)
        self._observed_steps = 0

    @property
    def name(self) -> str:
        return self.cfg.name

    @property
    def weights(self) -> np.ndarray:
        return self._weights.copy()

    @weights.setter
    def weights(self, value: np.ndarray) -> None:
        value = np.asarray(value, dtype=np.float64)
        if value.shape != self._weights.shape:
            raise ValueError(f"expected {self._weights.shape[0]} weights, got shape {value.shape}")
        if not np.isfinite(value).all() or (value < 0).any() or value.sum() <= 0:
            raise ValueError(f"mixture weights must be finite, >= 0 and not all zero: {value}")
        if np.array_equal(value, self._weights):
            return  # renormalising would move weights by a rounding step on some CPUs
        self._weights = value / value.sum()

    def mixture(self, weights: np.ndarray) -> np.ndarray:
        """The distribution over the k domains that the component `weights` stand for: what a
        fresh model trained by the static mixer should sample to reuse this mixer's choice.
        The components are the domains unless a subclass says otherwise."""
        return weights

    def domain_weights(self) -> np.ndarray:
        """The distribution over the k domains that training sequences are drawn from."""
        return self.mixture(self.weights)

    def time_averaged_weights(self) -> np.ndarray:
        if self._observed_steps == 0:
            return self.weights
        return self._weight_sum / self._observed_steps

    def observe_step(self) -> None:
        """Called once per training step, after any update (so with the weights this step's
        batch was drawn or reweighted with): accumulates the time average."""
        self._weight_sum += self._weights
        self._observed_steps += 1

    def should_update(self, step: int) -> bool:
        return self.cfg.update_every > 0 and step % self.cfg.update_every == 0

    def update(self, ctx: UpdateContext) -> dict[str, float]:
        """Move the weights; returns scalars to log (e.g. alignment scores). Static by default."""
        return {}

    def observe_training_losses(self, step: int, losses: np.ndarray, present: np.ndarray) -> None:
        """After training step `step` (when `observes_training_losses`): each domain's mean
        training loss in it, averaged over ranks, and which domains the step held. A mixer may
        move its weights here; the next step is drawn with them."""

    def step_gradient(self) -> StepGradient | None:
        """Called right after an update: the step's parameter gradient if the update formed it
        from the gradients it took on the step's own training batch with
        `UpdateContext.training_sequence_loss` (handed over once, then forgotten). The training
        step then sets it as the parameters' gradient and runs no forward or backward pass of
        its own: `training_loss` is not called that step, so a mixer that moves its weights
        there, `observes_training_losses` or `needs_reference` must not form it. The optimizer
        step (gradient clipping to train.grad_clip included) is the same. None by default."""
        return None

    def training_loss(self, batch: TrainingBatch) -> torch.Tensor:
        """The loss the model is trained on, from the step's per-token losses and their domains.
        A mixer may move its weights here (DoReMi): they are recorded as in force from this step,
        so the loss returned should be built with them."""
        return batch.sequence_losses.mean()

    def state_dict(self) -> dict:
        return {
            "name": self.name,
            "weights": self._weights.tolist(),
            "weight_sum": self._weight_sum.tolist(),
            "observed_steps": self._observed_steps,
        }

    def load_state_dict(self, state: dict) -> None:
        if state["name"] != self.name:
            raise ValueError(
                f"checkpoint holds mixer {state['name']!r}, this run uses {self.name!r}"
            )
        self._weights = np.asarray(state["weights"], dtype=np.float64)  # exact, not renormalised
        self._weight_sum = np.asarray(state["weight_sum"], dtype=np.float64)
        self._observed_steps = int(state["observed_steps"])
