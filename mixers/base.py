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
  every checkpoint;
- check the run's whole config before any data is prepared, for what its schema alone cannot say
  (`check_config`: static weights against the number of domains, finite-difference alignment
  against 16-bit parameters);
- ask for runs to be trained before this one and point one of its options at them
  (`upstream_stage`: DoReMi's reference run when `mixer.reference` is not given;
  `upstream_stages`, for stages that depend on the run's domains or budget: MixMin's proxies,
  one per domain, shared by the runs of the same data and seed, and scored on the specialist
  `train` split).

Each mixer module declares its `SPEC = MixerSpec(name, mixer class, config schema)`; the registry
(`mixers.MIXERS`) collects them, and experiments/ knows a mixer only through these hooks.

The base class also keeps the running sum of the weights over training steps, so every mixer can
report time-averaged weights (what a DoGE proxy run hands to a fresh model through `static`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from domains.data import MixerView
from domains.sampler import check_weights

if TYPE_CHECKING:
    from omegaconf import DictConfig


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
    # count_flops(n): n FLOPs of the mixer's own arithmetic on this process, beyond any pass
    # (R&B's gradient sums and Gram matrix), added to the mixer's FLOPs for every rank.
    count_flops: Callable[[int], None] = lambda flops: None


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


# What an upstream stage with `specialist_scores` leaves in its run directory (written by
# experiments.train once the stage is trained, numpy's .npz): `log_probs` [n, L], float64, the
# stage model's log-probability of every target token of the n specialist `train` sequences
# (never the `eval` split), in the split's order, and `flops`, those forward passes' FLOPs.
SPECIALIST_SCORES_FILE = "specialist_scores.npz"


@dataclass(frozen=True)
class UpstreamStage:
    """A run to train before this one (`Mixer.upstream_stage`, `Mixer.upstream_stages`): this
    run's config with `mixer` as its mixer (and `tokens` as its `train.tokens`), in <this run's
    directory>/<`directory`>, or for a `shared` stage in the cache; this run's mixer option
    `option` is then set to that run's directory (or, `listed`, to the list of the directories
    of the stages naming it, in their order). A re-run finds it completed and skips it."""

    # What the stage trains, for the log: e.g. "the reference model".
    what: str
    # The stage run's mixer config (e.g. uniform weights labelled `doremi_reference`).
    mixer: MixerConfig
    # The subdirectory of this run's directory it is trained in (for a `shared` stage, the
    # start of its directory's name in the cache).
    directory: str
    # This run's mixer option that gets the stage run's directory.
    option: str
    # The option is a list: it gets the directories of all the stages naming it, in order.
    listed: bool = False
    # The stage run's `train.tokens` (None: this run's).
    tokens: int | None = None
    # The stage run's `train.eval_sequences_per_domain` (None: this run's). A stage that is
    # used for its model, not its losses (MixMin's proxies), validates on fewer: with many
    # domains its two validations otherwise cost far more time than its training.
    eval_sequences_per_domain: int | None = None
    # Shared by every run that asks for the same stage run (the same data, seed, model, training
    # options and stage mixer, i.e. the same config but for its name, loggers and paths):
    # trained once in <paths.cache_dir>/upstream/<directory>-<hash of that config>, with W&B
    # off, and reused. The option it sets is left out of this run's label (`mixer_label`): it
    # says where a file lives (a path that differs from seed to seed), not what the run is.
    shared: bool = False
    # Once the stage is trained, score the specialist `train` split with its final model:
    # SPECIALIST_SCORES_FILE in its run directory (kept while the model is unchanged).
    specialist_scores: bool = False


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

    @classmethod
    def check_config(cls, cfg: DictConfig) -> None:
        """Checks of the run's whole config (`cfg.mixer`, `cfg.data`, `cfg.trainer`...) that the
        mixer's schema cannot make on its own options, run before any data is prepared (by
        experiments/config.py `check_config`); raise ValueError naming the options. None by
        default."""

    @classmethod
    def upstream_stage(cls, cfg: MixerConfig) -> UpstreamStage | None:
        """The run to train before this one, given this run's mixer options (e.g. DoReMi's
        reference run when `mixer.reference` is not given), or None. experiments.train trains
        it in one process; a multi-stage pipeline (experiments/pipeline.py) passes the option
        instead. None by default."""
        return None

    @classmethod
    def upstream_stages(
        cls, cfg: MixerConfig, run: DictConfig, data: Callable[[], MixerView]
    ) -> list[UpstreamStage]:
        """The runs to train before this one, given this run's mixer options `cfg`, its whole
        config `run` (its budget, model, seed...) and `data()`, its domains (loading, or
        preparing, the run's data when called: only for stages that depend on the domains, e.g.
        one run per domain). experiments.train trains them in order, in one process, before
        this run. By default the one run `upstream_stage` asks for, if any."""
        stage = cls.upstream_stage(cfg)
        return [] if stage is None else [stage]

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
        value = check_weights(value, len(self._weights))
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


@dataclass(frozen=True)
class MixerSpec:
    """A mixer as the registry knows it (`mixers.MIXERS`): each mixer module declares one as its
    `SPEC`, and `mixer=<name>` in Hydra selects it (conf/mixer/<name>.yaml starts from its schema,
    `/schema/mixer/<name>`)."""

    # The registry key and the schema's `name` default.
    name: str
    # The Mixer subclass, with its hooks (`check_config`, `upstream_stage`, `needs_reference`...).
    mixer: type[Mixer]
    # Its config schema, a dataclass extending MixerConfig.
    config: type[MixerConfig]
    # Its catalogue row (`python -m mixers`, the README's mixer table): its family of methods,
    # its reference (the paper, or what it is), and its cost beyond the training steps.
    family: str
    reference: str
    cost: str
