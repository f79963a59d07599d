"""Mixture files: how a run hands the mixture it chose to a fresh model.

Every run that completes writes its mixture file (`MIXTURE_FILE` in its run directory): the
mixture a fresh model should sample to reuse its mixer's choice (`Mixer.mixture`: for DoGE its
loss weights alpha, for DGA-DR the domain distribution its bases weights stand for), at the end
(`final`) and averaged over training (`time_averaged`), and the FLOPs spent producing it. The
static mixer reads it back (`mixer=static mixer.path=<run dir> mixer.which=time_averaged`), and
those FLOPs become its run's `upstream_flops`, so a two-stage method's cost includes its first
stage. A multi-stage pipeline writes one for each mixture it trains (experiments/pipeline.py).

The format: `{"mixtures": {"final": {domain: weight, ...}, "time_averaged": {...}},
"flops": <int>}`; a file may hold only some of the mixtures. `read_weights` also reads a plain
weights file: a JSON list (domain order) or a {domain name: weight} mapping.
"""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path

MIXTURE_FILE = "mixture.json"


class Which(StrEnum):
    final = "final"
    time_averaged = "time_averaged"


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
