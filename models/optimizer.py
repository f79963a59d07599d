"""The optimizer and learning-rate schedule of a run (`train` in the config)."""

from __future__ import annotations

import math

import torch
from torch import nn

from models.train_config import TrainConfig


def optimizer_and_schedule(model: nn.Module, cfg: TrainConfig, max_steps: int) -> dict:
    """AdamW with decoupled weight decay on the matrices of the blocks only (not on norms, biases
    or the tied embeddings), and a linear warm-up over `warmup_fraction` of the steps then a
    cosine decay to `min_lr_ratio` of the peak rate; in the form `configure_optimizers` returns."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        is_embedding = name.startswith(("token_embedding", "position_embedding"))
        (decay if p.ndim >= 2 and not is_embedding else no_decay).append(p)
    optimizer = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": cfg.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=cfg.lr,
        betas=(cfg.beta1, cfg.beta2),
    )
    warmup = max(1, round(cfg.warmup_fraction * max_steps))

    def lr_factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, max_steps - warmup))
        cosine = 0.5 * (1 + math.cos(math.pi * progress))
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * cosine

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)
    return {
        "optimizer": optimizer,
        "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
    }
