"""Fixed weights from a list, a weights file, or another run's mixture file.

This is how a multi-stage method hands its output to a fresh model: e.g. a DoGE proxy run's
time-averaged weights, `mixer=static mixer.path=<proxy run dir> mixer.which=time_averaged`.

- `weights`: one weight per domain, in the data's domain order (renormalised to sum to 1);
- `path`: a JSON file holding a list (domain order) or a {domain name: weight} mapping; or a
  mixture file (`MIXTURE_FILE`, the format below), or a run directory holding one. Every run
  that completes writes its mixture file: the mixture a fresh model should sample to reuse its
  mixer's choice (`Mixer.mixture`: for DoGE its loss weights alpha, for DGA-DR the domain
  distribution its bases weights stand for), at the end (`final`) and averaged over training
  (`time_averaged`), and the FLOPs spent producing it. Those FLOPs become this run's
  `upstream_flops`, so a two-stage method's cost includes its first stage.

A mixture file: `{"mixtures": {"final": {domain: weight, ...}, "time_averaged": {...}},
"flops": <int>}`; `which` picks one of its mixtures.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import numpy as np

from domains.data import MixerView
from mixers.base import Mixer, MixerConfig

MIXTURE_FILE = "mixture.json"


class Which(StrEnum):
    final = "final"
    time_averaged = "time_averaged"


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


def write_mixture_file(path: Path, mixtures: dict[str, dict[str, float]], flops: int) -> None:
    """A mixture file at `path`: {which: {domain: weight}} and the FLOPs spent producing it."""
    unknown = sorted(set(mixtures) - set(Which))
    if unknown:
        raise ValueError(f"mixture names must be among {list(Which)}, got {unknown}")
    path.write_text(json.dumps({"mixtures": mixtures, "flops": int(flops)}, indent=2) + "\n")


def _by_name(weights: dict[str, float], names: list[str], source: str) -> list[float]:
    unknown = sorted(set(weights) - set(names))
    missing = [name for name in names if name not in weights]
    if unknown or missing:
        raise ValueError(
            f"{source} names weights that do not match this run's domains "
            f"(unknown: {unknown[:5]}, missing: {missing[:5]})"
        )
    return [weights[name] for name in names]


def read_weights(path: Path, which: Which, names: list[str]) -> tuple[list[float], int]:
    """Weights over `names` from a weights file, a mixture file or a run directory, and the
    FLOPs spent producing them (0 for a plain weights file)."""
    if path.is_dir():
        if not (path / MIXTURE_FILE).is_file():
            raise FileNotFoundError(
                f"mixer.path: {path} holds no {MIXTURE_FILE}; a run writes it when it completes "
                "(a run that did not complete, or one made before runs wrote it, has none: "
                "re-run it, or pass its weights with mixer.weights)"
            )
        path = path / MIXTURE_FILE
    if not path.is_file():
        raise FileNotFoundError(f"mixer.path: no such file {path}")
    try:
        content = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"mixer.path: {path} is not valid JSON ({error})") from None
    if isinstance(content, dict) and "mixtures" in content:  # a mixture file
        if which not in content["mixtures"]:
            raise ValueError(
                f"mixer.path: {path} has no {which!r} mixture (it has "
                f"{sorted(content['mixtures'])}); choose one with mixer.which"
            )
        source = f"the {which} mixture of {path}"
        return _by_name(content["mixtures"][which], names, source), int(content.get("flops", 0))
    if isinstance(content, dict):
        return _by_name(content, names, str(path)), 0
    if isinstance(content, list):
        return content, 0
    raise ValueError(f"mixer.path: {path} holds neither a list nor a mapping of weights")


class StaticMixer(Mixer):
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
