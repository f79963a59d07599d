"""ODM: Online Data Mixing (Albalak et al. 2023), a multi-armed bandit over the domains.

The reward of a domain is its training loss: a domain the model still finds hard is sampled
more. After every training step, for each domain i sampled in it, with L_i its mean training loss
in that step (averaged over data-parallel ranks):

    R_i <- a R_i + (1 - a) exp(L_i)                      (`smoothing` a)

and, from step `warmup_steps` on (uniform before),

    eps_t = min(1/K, sqrt(ln K / (K t)))                  (t: steps observed so far)
    pi_i  = (1 - K eps_t) R_i / sum_j R_j + eps_t

(the smoothed-mean weight updater of the reference implementation,
alon-albalak/online-data-mixing, megatron/data/data_sampling_utils.py). Project choices, each
tested against the reference's figures (tests/test_parity_odm.py): a domain's first observation
sets R_i = exp(L_i) rather than smoothing it from 0; a domain not yet observed has R_i = 0 (it
keeps the eps_t floor); rewards accumulate during the warm-up, where the reference discards the
warm-up's losses and first updates one step later. ODM is a generalist method: it optimises
the training loss of the generic domains, not the specialist loss, and costs no extra pass.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from domains.data import MixerView
from mixers.base import Mixer, MixerConfig, MixerSpec


@dataclass
class ODMConfig(MixerConfig):
    name: str = "odm"
    # a in R_i <- a R_i + (1 - a) exp(L_i).
    smoothing: float = 0.9
    # Steps trained on uniform weights before the first update.
    warmup_steps: int = 100

    def __post_init__(self) -> None:
        if not 0 <= self.smoothing < 1:
            raise ValueError(f"mixer.smoothing must be in [0, 1), got {self.smoothing}")
        if self.warmup_steps < 0:
            raise ValueError(f"mixer.warmup_steps must be >= 0, got {self.warmup_steps}")


def exploration(k: int, t: int) -> float:
    """eps_t = min(1/K, sqrt(ln K / (K t)))."""
    return min(1 / k, math.sqrt(math.log(k) / (k * t)))


class ODMMixer(Mixer):
    observes_training_losses = True

    def __init__(self, cfg: ODMConfig, data: MixerView):
        super().__init__(cfg, data)
        self._rewards = np.zeros(data.num_domains)
        self._observed = np.zeros(data.num_domains, dtype=bool)
        self._steps = 0

    def observe_training_losses(self, step: int, losses: np.ndarray, present: np.ndarray) -> None:
        cfg, k = self.cfg, len(self._weights)
        a = cfg.smoothing
        reward = np.exp(losses[present])
        seen = self._observed[present]
        self._rewards[present] = np.where(
            seen, a * self._rewards[present] + (1 - a) * reward, reward
        )
        self._observed |= present
        self._steps += 1
        if step + 1 >= cfg.warmup_steps:  # the weights that the next step is drawn with
            eps = exploration(k, self._steps)
            self.weights = (1 - k * eps) * self._rewards / self._rewards.sum() + eps

    def state_dict(self) -> dict:
        return {
            **super().state_dict(),
            "rewards": self._rewards.tolist(),
            "observed": self._observed.tolist(),
            "steps": self._steps,
        }

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self._rewards = np.asarray(state["rewards"], dtype=np.float64)
        self._observed = np.asarray(state["observed"], dtype=bool)
        self._steps = int(state["steps"])


SPEC = MixerSpec(
    "odm",
    ODMMixer,
    ODMConfig,
    family="online, bandit",
    reference="Albalak et al. 2023",
    cost="none",
)
