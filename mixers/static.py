"""Fixed weights from a list, a weights file, or another run's mixture file.

This is how a multi-stage method hands its output to a fresh model: e.g. a DoGE proxy run's
time-averaged weights, `mixer=static mixer.path=<proxy run dir> mixer.which=time_averaged`.

- `weights`: one weight per domain, in the data's domain order (renormalised to sum to 1);
- `path`: a JSON file holding a list (domain order) or a {domain name: weight} mapping; or a
  mixture file (mixers/mixture_file.py: the file every completed run writes), or a run directory
  holding one; `which` picks one of its mixtures (`final` or `time_averaged`). The FLOPs the
  file records become this run's `upstream_flops`, so a two-stage method's cost includes its
  first stage.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from domains.data import MixerView
from mixers.base import Mixer, MixerConfig, MixerSpec
from mixers.mixture_file import Which, read_weights

if TYPE_CHECKING:
    from omegaconf import DictConfig


@dataclass
class StaticConfig(MixerConfig):
    name: str = "static"
    weights: list[float] | None = None
    path: str | None = None
    which: Which = Which.final

    def __post_init__(self) -> None:
        if (self.weights is None) == (self.path is None):
            raise ValueError("the static mixer needs exactly one of mixer.weights and mixer.path")
        if self.weights is not None:
            weights = np.asarray(self.weights, dtype=np.float64)
            if not (np.isfinite(weights).all() and (weights >= 0).all() and weights.sum() > 0):
                raise ValueError(
                    f"mixer.weights must be finite, >= 0 and not all zero, got {list(self.weights)}"
                )


class StaticMixer(Mixer):
    @classmethod
    def check_config(cls, cfg: DictConfig) -> None:
        """Static weights, one per domain: synthetic data has exactly `data.num_domains` domains,
        prepared text at most that many (clusters too small are merged)."""
        if cfg.mixer.get("weights") is None:
            return
        given, k = len(cfg.mixer.weights), cfg.data.num_domains
        if given > k or (cfg.data.source == "synthetic" and given != k):
            raise ValueError(f"mixer.weights has {given} weights for data.num_domains={k} domains")

    def __init__(self, cfg: StaticConfig, data: MixerView):
        super().__init__(cfg, data)
        if cfg.weights is not None:
            weights = list(cfg.weights)
        else:
            path = Path(cfg.path).expanduser()
            weights, self.upstream_flops = read_weights(path, cfg.which, self.domain_names)
        if len(weights) != data.num_domains:
            raise ValueError(
                f"the static mixer got {len(weights)} weights for {data.num_domains} domains"
            )
        self.weights = np.asarray(weights, dtype=np.float64)


SPEC = MixerSpec(
    "static",
    StaticMixer,
    StaticConfig,
    family="static",
    reference="fixed weights: a list, a file or another run's mixture",
    cost="none itself; the producing run's FLOPs as `upstream_flops`",
)
