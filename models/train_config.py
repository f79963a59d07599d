"""The training settings (`train` in the config), apart from models/lm.py so that composing and
checking a config (experiments/config.py) does not import Lightning."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass
class TrainConfig:
    # Training-token budget (global, all processes); steps = tokens / (batch_size * L * world).
    tokens: int = 200_000
    batch_size: int = 16
    lr: float = 3e-3
    min_lr_ratio: float = 0.1
    warmup_fraction: float = 0.05
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0
    eval_every: int = 50
    # Held-out sequences per domain in every evaluation (per coarse cluster past
    # MAX_LOGGED_DOMAINS domains: EvalGroups).
    eval_sequences_per_domain: int = 32
    log_every: int = 10
    checkpoint_every: int = 100
    # torch.compile the model for the training step's forward and backward (the mixers' passes
    # and evaluation stay eager: their batch shapes vary). Costs a compilation at the start of
    # every process (about a minute on a CPU); pays off on long runs.
    compile: bool = False
    # "auto": continue from the run directory's last checkpoint if there is one (and skip a run
    # that already completed there); None: always start fresh; else a checkpoint path.
    resume: str | None = "auto"

    def __post_init__(self) -> None:
        """Range checks, run when the config is composed (experiments/config.py check_config)."""
        at_least_one = ("batch_size", "eval_every", "checkpoint_every", "eval_sequences_per_domain")
        for name in at_least_one:
            if getattr(self, name) < 1:
                raise ValueError(f"train.{name} must be at least 1, got {getattr(self, name)}")
        if not 0 < self.lr < math.inf:
            raise ValueError(f"train.lr must be a finite number > 0, got {self.lr}")
        if self.log_every < 0:
            raise ValueError(
                f"train.log_every must be >= 0 (0: no training metrics), got {self.log_every}"
            )
