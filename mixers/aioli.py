"""Aioli (Chen et al. 2024): learn how training on each domain moves the losses, in short probe
runs inside training, and train on exp(eta x that effect).

Training is cut into rounds of `update_every` steps (the reference's `update_steps`). Each round
starts with LearnParams, `lp_rounds` x k blocks of `lp_steps` ordinary training steps: for each
of `lp_rounds` random orders of the k domains, a block per domain j trained on the smoothed
one-hot mixture w_j (`one_hot_factor` on j, the rest spread evenly). The losses L (one per
evaluated set) are measured before the first block and after every block, and

    B[:, j] += L(before the block) - L(after it)          (summed over the rounds, then / lp_rounds)
    A_i = W^-1 B_i                                        (W's rows: the w_j; undoes the smoothing)
    A <- A - min(A) if min(A) < 0;  A <- A / sum(A)       (over all entries)
    A_ema = A in the first round, else (1 - gamma) A + gamma A_ema
    p ∝ exp(eta 1^T A_ema)

and the rest of the round trains on p. LearnParams steps are real training steps (same optimizer,
learning-rate schedule and clipping, counted as training tokens), so the share of training spent
on the smoothed one-hot mixtures is lp_rounds x k x lp_steps / update_every: 19 % for k = 3 at the
defaults (the issue's, for k = 3), 51 % for k = 8, and for k = 16 LearnParams alone (256 steps)
outlasts the round, which is refused: lower `lp_rounds` or `lp_steps`, or raise `update_every`.
Each measurement is a forward pass over `eval_sequences` fixed sequences (per domain with
`eval_set=heldout`), lp_rounds x k + 1 of them per round, counted as the mixer's FLOPs.

As in the reference (HazyResearch/aioli, trainer/aioli_trainer.py, with `aioli_normalize_A` and
`ema` set as in all its scripts): LearnParams opens every round, from step 0 (no prior mixture);
the loss is measured afresh before the first block of a round, and the loss after a block is the
next block's starting loss; the domain order is lp_rounds independent permutations, concatenated;
A is solved row by row from B; the shift applies only when an entry is negative and the
normalisation divides by the sum of the whole matrix; the EMA smooths the normalised A, with
gamma the weight of the past (the reference's `ema`); p is recomputed from A_ema every round
(not multiplied onto the previous p) and holds from the end of LearnParams to the next round.

Project choices: the evaluated set is an option, `eval_set=specialist` (the default for this
benchmark's task: a fixed sample of the specialist `train` split, so B and A have one row) or
`heldout` (per generic domain, the reference's setting: k rows); measurements are on fixed
sequences spread evenly over the split (the reference: its whole validation set), in eval mode;
the domain order comes from a generator seeded by the run seed and kept in checkpoints; an A
whose entries are all equal after the shift (e.g. no loss moved) becomes uniform rather than a
division by zero. Not implemented: the reference's prior mixture (`aioli_prior`), its diagonal-A
and no-EMA variants. A run whose budget ends inside LearnParams ends on a smoothed one-hot mixture.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import torch

from domains.data import MixerView
from mixers.base import Mixer, MixerConfig, MixerSpec, UpdateContext


class EvalSet(StrEnum):
    # A fixed sample of the specialist `train` split (never the `eval` split: the score).
    specialist = "specialist"
    # A fixed sample of every generic domain's held-out sequences.
    heldout = "heldout"


@dataclass
class AioliConfig(MixerConfig):
    name: str = "aioli"
    # Steps per round, LearnParams included (the reference's update_steps).
    update_every: int = 250
    # p ∝ exp(eta 1^T A_ema).
    eta: float = 0.2
    # A_ema <- (1 - gamma) A + gamma A_ema: gamma is the weight of the past.
    gamma: float = 0.1
    # LearnParams: passes over the k domains, and training steps per domain in each pass.
    lp_rounds: int = 4
    lp_steps: int = 4
    # Weight of domain j in its LearnParams mixture (the reference's ohf); the others share the rest.
    one_hot_factor: float = 0.625
    # Where the loss drops are measured, and on how many fixed sequences (per domain for heldout).
    eval_set: EvalSet = EvalSet.specialist
    eval_sequences: int = 64

    def __post_init__(self) -> None:
        if min(self.update_every, self.lp_rounds, self.lp_steps, self.eval_sequences) < 1:
            raise ValueError(
                "mixer.update_every, mixer.lp_rounds, mixer.lp_steps and mixer.eval_sequences "
                "must be >= 1"
            )
        if self.eta <= 0 or not 0 <= self.gamma < 1:
            raise ValueError(
                f"need mixer.eta > 0 and 0 <= mixer.gamma < 1, got {self.eta}, {self.gamma}"
            )
        if not 0 < self.one_hot_factor <= 1:
            raise ValueError(f"mixer.one_hot_factor must be in (0, 1], got {self.one_hot_factor}")


def learning_mixtures(k: int, one_hot_factor: float) -> np.ndarray:
    """W [k, k]: row j is the mixture LearnParams trains on for domain j."""
    rest = (1 - one_hot_factor) / (k - 1)
    return np.full((k, k), rest) + (one_hot_factor - rest) * np.eye(k)


def unmixed(drops: np.ndarray, one_hot_factor: float) -> np.ndarray:
    """A with W A_i = B_i for every row i of B [m, k]: the effect of each domain alone."""
    mixtures = learning_mixtures(drops.shape[1], one_hot_factor)
    return np.linalg.solve(mixtures, drops.T).T


def normalized(effects: np.ndarray) -> np.ndarray:
    """Shifted to be non-negative when an entry is negative, then divided by its sum."""
    if effects.min() < 0:
        effects = effects - effects.min()
    total = effects.sum()
    return effects / total if total > 0 else np.full_like(effects, 1 / effects.size)


def aioli_mixture(smoothed: np.ndarray, eta: float) -> np.ndarray:
    """p ∝ exp(eta 1^T A_ema)."""
    scores = eta * smoothed.sum(axis=0)
    p = np.exp(scores - scores.max())
    return p / p.sum()


class AioliMixer(Mixer):
    def __init__(self, cfg: AioliConfig, data: MixerView):
        super().__init__(cfg, data)
        k = data.num_domains
        if k < 2:
            raise ValueError("Aioli needs at least 2 domains")
        if cfg.one_hot_factor <= 1 / k:
            raise ValueError(
                f"mixer.one_hot_factor={cfg.one_hot_factor} must exceed 1/k = {1 / k:.4g}: "
                "each LearnParams mixture must favour its domain (and W be invertible)"
            )
        self.blocks = cfg.lp_rounds * k
        if self.blocks * cfg.lp_steps >= cfg.update_every:
            raise ValueError(
                f"LearnParams takes lp_rounds x k x lp_steps = {cfg.lp_rounds} x {k} x "
                f"{cfg.lp_steps} = {self.blocks * cfg.lp_steps} steps, not fewer than "
                f"mixer.update_every={cfg.update_every}: no step would train on the learned "
                "mixture; lower mixer.lp_rounds or mixer.lp_steps, or raise mixer.update_every"
            )
        self._rng = np.random.default_rng(data.seed)
        # The current LearnParams: its domain order, the drops summed so far (B, before the
        # division by lp_rounds), and the losses at the start of the current block.
        self._order: list[int] = []
        self._drops: np.ndarray | None = None
        self._block_start: np.ndarray | None = None
        # A_ema (None before the first LearnParams ends).
        self._smoothed: np.ndarray | None = None

    def _block(self, step: int) -> int | None:
        """Which LearnParams boundary `step` is (0: before the first block; `self.blocks`: after
        the last), or None when it is none. The schedule is a function of the step alone."""
        offset = step % self.cfg.update_every
        block, inside = divmod(offset, self.cfg.lp_steps)
        return block if inside == 0 and block <= self.blocks else None

    def should_update(self, step: int) -> bool:
        return self._block(step) is not None

    def update(self, ctx: UpdateContext) -> dict[str, float]:
        cfg, k = self.cfg, len(self._weights)
        block = self._block(ctx.step)
        losses = self._measured_losses(ctx)
        if block == 0:
            self._order = np.concatenate(
                [self._rng.permutation(k) for _ in range(cfg.lp_rounds)]
            ).tolist()
            self._drops = np.zeros((len(losses), k))
        else:
            self._drops[:, self._order[block - 1]] += self._block_start - losses
        self._block_start = losses
        if block < self.blocks:
            self.weights = learning_mixtures(k, cfg.one_hot_factor)[self._order[block]]
        else:
            effects = normalized(unmixed(self._drops / cfg.lp_rounds, cfg.one_hot_factor))
            if self._smoothed is None:
                self._smoothed = effects
            else:
                self._smoothed = (1 - cfg.gamma) * effects + cfg.gamma * self._smoothed
            self.weights = aioli_mixture(self._smoothed, cfg.eta)
        return {"learn_params_loss": float(losses.mean())}

    def _measured_losses(self, ctx: UpdateContext) -> np.ndarray:
        """The losses of the evaluated set(s), averaged over ranks: every rank measures the same
        fixed sequences with the same model, so this only guards against round-off differences."""
        n = self.cfg.eval_sequences
        if self.cfg.eval_set == EvalSet.specialist:
            losses = np.array([ctx.specialist_train_loss(n)])
        else:
            losses = ctx.heldout_losses(n)
        device = next(ctx.model.parameters()).device
        return ctx.all_reduce_mean(torch.as_tensor(losses, device=device)).cpu().numpy()

    def state_dict(self) -> dict:
        def plain(array: np.ndarray | None) -> list | None:
            return None if array is None else array.tolist()

        return {
            **super().state_dict(),
            "rng": self._rng.bit_generator.state,
            "order": list(self._order),
            "drops": plain(self._drops),
            "block_start": plain(self._block_start),
            "smoothed": plain(self._smoothed),
        }

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)

        def array(values: list | None) -> np.ndarray | None:
            return None if values is None else np.asarray(values, dtype=np.float64)

        self._rng.bit_generator.state = state["rng"]
        self._order = [int(j) for j in state["order"]]
        self._drops = array(state["drops"])
        self._block_start = array(state["block_start"])
        self._smoothed = array(state["smoothed"])


SPEC = MixerSpec(
    "aioli",
    AioliMixer,
    AioliConfig,
    family="online, mixing law",
    reference="Chen et al. 2024",
    cost="forward passes to measure losses; LearnParams steps on probe mixtures",
)
