"""Uniform weights (alpha_i = 1/k), or with `weights: natural`, proportional to each domain's
training tokens (after any per-domain cap)."""

from __future__ import annotations

from dataclasses import dataclass

from domains.data import DomainData
from mixers.base import Mixer, MixerConfig


@dataclass
class UniformConfig(MixerConfig):
    name: str = "uniform"
    # "uniform" (1/k each) or "natural" (proportional to training tokens).
    weights: str = "uniform"


class UniformMixer(Mixer):
    def __init__(self, cfg: UniformConfig, data: DomainData):
        super().__init__(cfg, data)
        if cfg.weights == "natural":
            self.weights = data.token_counts()
        elif cfg.weights != "uniform":
            raise ValueError(f"mixer.weights must be 'uniform' or 'natural', got {cfg.weights!r}")
