"""Where every sequence a run reads comes from, and what it costs.

`MixtureBatches` owns the three random streams of a run (training batches, mixer probe batches,
specialist `train` draws: domains/seeds.py), the token counters and the FLOP counter of the mixer's extra passes.
The LightningModule draws its training batches here and builds each mixer update's context here;
tests and benchmarks use the same object, so they exercise exactly the paths a run takes.

Cost is counted in FLOPs, not seconds (the machine is shared, so time measures its load): every
forward pass a mixer makes through the context's `sequence_loss` adds a third of the model's
training FLOPs per token for each token, and every backward pass through those losses (an
autograd hook on them) adds the other two thirds, and so does every forward pass of the losses on
fixed sets (`heldout_losses`, `specialist_train_loss`: a third). Training steps are counted apart
(`train_flops`). A reference model's forward passes over the training batch (DoReMi,
`reference_losses`) add a third of the reference model's training FLOPs per token. Passes over
the training batch whose gradients a mixer turns into the step's own (DoGE, through the
context's `training_sequence_loss`) replace the step's forward and backward: they are the
training FLOPs of the batch's tokens, already in `train_flops`, and are not counted again.
Arithmetic a mixer does beyond any pass (R&B's gradient sums and Gram matrix) is added as it
reports it, through the context's `count_flops`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from domains.data import DomainData, TokenSequences
from domains.sampler import MixtureSampler
from domains.seeds import PROBE_STREAM, SPECIALIST_DRAW_STREAM, TRAIN_STREAM, derive_seed
from mixers.base import UpdateContext
from models.gpt import sequence_loss, token_losses


def to_device(array: np.ndarray, device) -> torch.Tensor:
    """The array as a tensor on `device`; to a GPU through pinned memory, without waiting for
    the copy (the next kernel on the stream waits for it, the host does not)."""
    tensor = torch.from_numpy(array)
    if device is not None and torch.device(device).type == "cuda":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)


@dataclass
class ReferenceModel:
    """A trained model that a mixer compares the trained one with (DoReMi's reference), loaded
    from another run (experiments/reference.py). Never trained here, so never checkpointed."""

    model: nn.Module
    # Training FLOPs per token of the reference model (its forward pass is a third of them).
    flops_per_token: int
    # Compute that produced it: its run's training, mixer and upstream FLOPs.
    upstream_flops: int
    # Where it came from (the reference run's directory), for messages.
    source: str = ""


class MixtureBatches:
    """Batches of one process (`rank` of `world_size`); counters are global (all ranks)."""

    def __init__(
        self,
        data: DomainData,
        seed: int,
        batch_size: int,
        flops_per_token: int,
        rank: int = 0,
        world_size: int = 1,
        reference: ReferenceModel | None = None,
    ):
        self.data = data
        self.reference = reference
        self.batch_size = batch_size
        self.flops_per_token = flops_per_token
        self.world_size = world_size
        sizes = [len(s) for s in data.train]
        # Each rank draws its own sequences; mixer decisions are synchronised by the mixer.
        self.train_sampler = MixtureSampler(sizes, derive_seed(seed, TRAIN_STREAM, rank))
        self.probe_sampler = MixtureSampler(sizes, derive_seed(seed, PROBE_STREAM, rank))
        self.specialist_rng = np.random.default_rng(derive_seed(seed, SPECIALIST_DRAW_STREAM, rank))
        self.tokens_seen = 0
        self.probe_tokens = 0
        self.mixer_flops = 0

    @property
    def seq_len(self) -> int:
        return self.data.seq_len

    @property
    def train_flops(self) -> int:
        return self.tokens_seen * self.flops_per_token

    def _rows(self, domains: np.ndarray, indices: np.ndarray, device) -> torch.Tensor:
        rows = np.empty((len(domains), self.seq_len + 1), dtype=np.int64)
        for d in np.unique(domains):
            mask = domains == d
            rows[mask] = self.data.train[d][indices[mask]]
        return to_device(rows, device)

    def train(
        self, weights: np.ndarray, device=None, stratified: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The next training batch (tokens [B, L + 1], domain of each row) drawn from `weights`
        over the domains, or `stratified` (every domain present; `weights` unused)."""
        if stratified:
            domains, indices = self.train_sampler.draw_stratified(self.batch_size)
        else:
            domains, indices = self.train_sampler.draw(weights, self.batch_size)
        self.tokens_seen += len(domains) * self.seq_len * self.world_size
        tokens = self._rows(domains, indices, device)
        return tokens, to_device(domains, device)

    def probe(self, dist: np.ndarray, n: int, device=None) -> torch.Tensor:
        """`n` sequences drawn from the distribution `dist` over the domains (probe tokens)."""
        domains, indices = self.probe_sampler.draw(dist, n)
        self.probe_tokens += n * self.seq_len * self.world_size
        return self._rows(domains, indices, device)

    def specialist(self, n: int, device=None) -> torch.Tensor:
        """`n` sequences of the specialist `train` split, at random (probe tokens)."""
        size = len(self.data.target_train)
        index = self.specialist_rng.choice(size, size=n, replace=n > size)
        self.probe_tokens += n * self.seq_len * self.world_size
        return to_device(self.data.target_train[index], device)

    def heldout_losses(self, model: nn.Module, n: int, device=None) -> np.ndarray:
        """[k] `model`'s mean loss on n fixed held-out sequences of each domain (`fixed_loss`)."""
        return np.array([self.fixed_loss(model, seqs, n, device) for seqs in self.data.heldout])

    def specialist_train_loss(self, model: nn.Module, n: int, device=None) -> float:
        """`model`'s mean loss on n fixed sequences of the specialist `train` split."""
        return self.fixed_loss(model, self.data.target_train, n, device)

    def fixed_loss(self, model: nn.Module, sequences: TokenSequences, n: int, device=None) -> float:
        """`model`'s mean loss on min(n, all) sequences spread evenly over `sequences` (the same
        ones at every call), in eval mode and without gradient, a batch at a time; its forward
        FLOPs are added to `mixer_flops` and its tokens to `probe_tokens`."""
        size = len(sequences)
        count = min(n, size)
        rows = sequences[np.arange(count) * size // count]
        was_training = model.training
        model.eval()
        total = torch.zeros((), dtype=torch.float64, device=device)
        with torch.no_grad():
            for start in range(0, count, self.batch_size):
                tokens = to_device(rows[start : start + self.batch_size], device)
                total += sequence_loss(model, tokens).double().sum()
        model.train(was_training)
        passed = count * self.seq_len * self.world_size
        self.probe_tokens += passed
        self.mixer_flops += round(self.flops_per_token / 3 * passed)
        return total.item() / count

    def counted_loss(self, model: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
        """`sequence_loss` of `model` that adds its forward FLOPs to `mixer_flops` at once and
        its backward FLOPs when a gradient flows back through it."""
        forward = self.flops_per_token / 3  # forward : backward = 1 : 2

        def loss(tokens: torch.Tensor) -> torch.Tensor:
            losses = sequence_loss(model, tokens)
            passed = tokens.shape[0] * (tokens.shape[1] - 1) * self.world_size
            self.mixer_flops += round(forward * passed)
            if losses.requires_grad:
                losses.register_hook(self._backward_counter(round(2 * forward * passed)))
            return losses

        return loss

    @torch.no_grad()
    def reference_losses(self, tokens: torch.Tensor) -> torch.Tensor:
        """The reference model's per-token losses [B, L] of `tokens` (no gradient); its forward
        pass is counted in `mixer_flops`."""
        model = self.reference.model
        if next(model.parameters()).device != tokens.device:
            model.to(tokens.device)
        model.eval()
        losses = token_losses(model, tokens)
        passed = tokens.shape[0] * (tokens.shape[1] - 1) * self.world_size
        self.mixer_flops += self.reference.flops_per_token * passed // 3
        return losses

    def count_flops(self, flops: int) -> None:
        """A mixer's own arithmetic on this process (`UpdateContext.count_flops`), counted for
        every rank (each does its own)."""
        self.mixer_flops += int(flops) * self.world_size

    def _backward_counter(self, flops: int) -> Callable[[torch.Tensor], None]:
        def count(_grad: torch.Tensor) -> None:
            self.mixer_flops += flops

        return count

    def update_context(
        self,
        step: int,
        lr: float,
        peak_lr: float,
        model: nn.Module,
        training_batch: Callable[[], tuple[torch.Tensor, torch.Tensor]],
        all_reduce_mean: Callable[[torch.Tensor], torch.Tensor],
        device=None,
        step_gradient_allowed: bool = False,
    ) -> UpdateContext:
        """What a mixer sees at an update: the model, counted losses, probe and specialist draws
        on this object's streams, and the step's training batch (drawn when first asked for);
        with `step_gradient_allowed` (the training step takes a gradient the mixer forms), the
        uncounted `training_sequence_loss` for the passes over that batch."""
        return UpdateContext(
            step=step,
            lr=lr,
            peak_lr=peak_lr,
            model=model,
            sequence_loss=self.counted_loss(model),
            training_batch=training_batch,
            probe=lambda dist, n: self.probe(dist, n, device),
            specialist=lambda n: self.specialist(n, device),
            all_reduce_mean=all_reduce_mean,
            heldout_losses=lambda n: self.heldout_losses(model, n, device),
            count_flops=self.count_flops,
            specialist_train_loss=lambda n: self.specialist_train_loss(model, n, device),
            training_sequence_loss=(
                functools.partial(sequence_loss, model) if step_gradient_allowed else None
            ),
        )

    def state_dict(self) -> dict:
        """Plain Python types only (loadable with torch.load(weights_only=True))."""
        return {
            "train_sampler": self.train_sampler.state_dict(),
            "probe_sampler": self.probe_sampler.state_dict(),
            "specialist_rng": self.specialist_rng.bit_generator.state,
            "tokens_seen": self.tokens_seen,
            "probe_tokens": self.probe_tokens,
            "mixer_flops": self.mixer_flops,
        }

    def load_state_dict(self, state: dict) -> None:
        self.train_sampler.load_state_dict(state["train_sampler"])
        self.probe_sampler.load_state_dict(state["probe_sampler"])
        self.specialist_rng.bit_generator.state = state["specialist_rng"]
        self.tokens_seen = state["tokens_seen"]
        self.probe_tokens = state["probe_tokens"]
        self.mixer_flops = state["mixer_flops"]
