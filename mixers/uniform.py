"""Uniform weights (alpha_i = 1/k), or with `weights: natural`, proportional to each domain's
training tokens (after any per-domain cap)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from domains.data import MixerView
from mixers.base import Mixer, MixerConfig, MixerSpec


class UniformWeights(StrEnum):
    uniform = "uniform"  # 1/k each
    natural = "natural"  # proportional to training tokens


@dataclass
class UniformConfig(MixerConfig):
    name: str = "uniform"
    weights: UniformWeights = UniformWeights.uniform


class UniformMixer(Mixer):
    def __init__(self, cfg: UniformConfig, data: MixerView):
        super().__init__(cfg, data)
        if cfg.weights == UniformWeights.natural:
            self.weights = data.token_counts()


SPEC = MixerSpec(
    "uniform",
    UniformMixer,
    UniformConfig,
    family="static",
    reference="baseline: alpha_i = 1/k (`weights: natural`: token shares)",
    cost="none",
)
