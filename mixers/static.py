"""Fixed weights from a list, a JSON file, or another run's results.

This is how a two-stage method hands its output to a fresh model: e.g. a DoGE proxy run's
time-averaged weights, `mixer=static mixer.path=<proxy run dir> mixer.which=time_averaged`.

- `weights`: one weight per domain, in the data's domain order (renormalised to sum to 1);
- `path`: a JSON file holding a list (domain order) or a {domain name: weight} mapping; or a run
  directory / its results.json, from which `which` picks the run's final mixture over the
  domains (`final`) or its time-averaged mixture (`time_averaged`). A run records the mixture a
  fresh model should sample to reuse its mixer's choice (`Mixer.mixture`): for DoGE its loss
  weights alpha (its own batches are uniform), for DGA-DR the domain distribution its bases
  weights stand for.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import numpy as np

from domains.data import MixerView
from experiments.results import RESULTS_FILE
from mixers.base import Mixer, MixerConfig


class Which(StrEnum):
    final = "final"
    time_averaged = "time_averaged"


# What `which` reads from a results.json.
RESULTS_KEYS = {Which.final: "final_mixture", Which.time_averaged: "time_averaged_mixture"}


@dataclass
class StaticConfig(MixerConfig):
    name: str = "static"
    weights: list[float] | None = None
    path: str | None = None
    which: Which = Which.final

    def __post_init__(self) -> None:
        if (self.weights is None) == (self.path is None):
            raise ValueError("the static mixer needs exactly one of mixer.weights and mixer.path")


def _by_name(weights: dict[str, float], names: list[str], source: str) -> list[float]:
    unknown = sorted(set(weights) - set(names))
    missing = [name for name in names if name not in weights]
    if unknown or missing:
        raise ValueError(
            f"{source} names weights that do not match this run's domains "
            f"(unknown: {unknown[:5]}, missing: {missing[:5]})"
        )
    return [weights[name] for name in names]


def read_weights(path: Path, which: Which, names: list[str]) -> list[float]:
    """Weights over `names` from a weights file, a results.json or a run directory."""
    if path.is_dir():
        path = path / RESULTS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"mixer.path: no such file {path}")
    try:
        content = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"mixer.path: {path} is not valid JSON ({error})") from None
    if isinstance(content, dict) and "status" in content:  # a run's results.json
        if content["status"] != "completed":
            raise ValueError(f"mixer.path: the run in {path.parent} did not complete")
        key = RESULTS_KEYS[Which(which)]
        if key not in content:
            raise ValueError(
                f"mixer.path: {path} has no {key!r} (it was written before runs recorded the "
                "mixture to reuse); re-run it, or pass its weights with mixer.weights"
            )
        return _by_name(content[key], names, f"{which} mixture of {path}")
    if isinstance(content, dict):
        return _by_name(content, names, str(path))
    if isinstance(content, list):
        return content
    raise ValueError(f"mixer.path: {path} holds neither a list nor a mapping of weights")


class StaticMixer(Mixer):
    def __init__(self, cfg: StaticConfig, data: MixerView):
        super().__init__(cfg, data)
        if cfg.weights is not None:
            weights = list(cfg.weights)
        else:
            weights = read_weights(Path(cfg.path).expanduser(), cfg.which, self.domain_names)
        if len(weights) != data.num_domains:
            raise ValueError(
                f"the static mixer got {len(weights)} weights for {data.num_domains} domains"
            )
        self.weights = np.asarray(weights, dtype=np.float64)
