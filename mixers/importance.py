"""Importance sampling: alpha_i = n_i / n, the share of specialist `train` sequences whose
nearest domain is i (`MixerView.target_train_domain`). Static.

Optional additive smoothing s gives alpha_i = (n_i + s) / (n + k s); the default 0 is the
paper's setting, under which domains without a specialist example get no weight at all.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from domains.data import MixerView
from mixers.base import Mixer, MixerConfig, MixerSpec


@dataclass
class ImportanceConfig(MixerConfig):
    name: str = "importance"
    # Pseudo-count added to every domain's specialist count.
    smoothing: float = 0.0

    def __post_init__(self) -> None:
        if self.smoothing < 0:
            raise ValueError(f"mixer.smoothing must be >= 0, got {self.smoothing}")


def specialist_histogram(data: MixerView, smoothing: float = 0.0) -> np.ndarray:
    """The (smoothed) share of specialist `train` sequences nearest to each domain."""
    counts = np.bincount(data.target_train_domain, minlength=data.num_domains).astype(np.float64)
    counts += smoothing
    return counts / counts.sum()


class ImportanceMixer(Mixer):
    def __init__(self, cfg: ImportanceConfig, data: MixerView):
        super().__init__(cfg, data)
        self.weights = specialist_histogram(data, cfg.smoothing)


SPEC = MixerSpec(
    "importance",
    ImportanceMixer,
    ImportanceConfig,
    family="static",
    reference="Grangier et al. 2024, as used in DGA's paper",
    cost="none",
)
