"""Data mixers: each decides the mixture of domains a model is trained on.

The registry `MIXERS` (name -> `MixerSpec`) is collected from the package's modules: every module
that declares a `SPEC = MixerSpec(name, mixer class, config schema)` is a mixer, so a new mixer is
one new module here (with its conf/mixer/<name>.yaml and its tests), and nothing else lists it.
The rest of the harness (experiments/, benchmarks/) reaches mixers only through this package and
mixers/base.py: the registry, `build_mixer`, the hooks of `Mixer`, and the generic helpers
re-exported below (the mixture file, collapse).
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil

from domains.data import MixerView
from mixers.base import Mixer, MixerConfig, MixerSpec, UpdateContext, UpstreamStage
from mixers.collapse import collapsed, weight_entropy
from mixers.mixture_file import MIXTURE_FILE, Which, read_weights, write_mixture_file


def _collect() -> dict[str, MixerSpec]:
    """Every `SPEC` declared by a module of this package, by name (in module order)."""
    specs: dict[str, MixerSpec] = {}
    for module_info in sorted(pkgutil.iter_modules(__path__), key=lambda info: info.name):
        if module_info.name.startswith("_"):  # __main__: the catalogue's command
            continue
        module = importlib.import_module(f"{__name__}.{module_info.name}")
        spec = getattr(module, "SPEC", None)
        if spec is None:  # a helper module (base, simplex, alignment...)
            continue
        if not isinstance(spec, MixerSpec):
            raise TypeError(f"{module.__name__}.SPEC is not a MixerSpec: {spec!r}")
        if spec.name in specs:
            raise ValueError(f"two mixers are named {spec.name!r} ({module.__name__} is one)")
        default = {f.name: f.default for f in dataclasses.fields(spec.config)}["name"]
        if default != spec.name:
            raise ValueError(
                f"{module.__name__}: {spec.config.__name__}.name defaults to {default!r}, "
                f"but its SPEC names it {spec.name!r}"
            )
        specs[spec.name] = spec
    return specs


# name -> MixerSpec; `mixer=<name>` in Hydra selects one.
MIXERS: dict[str, MixerSpec] = _collect()


def mixer_spec(name: str) -> MixerSpec:
    """The registered mixer `name`; a ValueError naming the available ones otherwise."""
    try:
        return MIXERS[name]
    except KeyError:
        raise ValueError(f"unknown mixer {name!r}; available: {sorted(MIXERS)}") from None


def build_mixer(cfg: MixerConfig, data: MixerView) -> Mixer:
    """The mixer `cfg.name` over the domains of `data` (`DomainData.mixer_view()`)."""
    return mixer_spec(cfg.name).mixer(cfg, data)


__all__ = [
    "MIXERS",
    "MIXTURE_FILE",
    "Mixer",
    "MixerConfig",
    "MixerSpec",
    "UpdateContext",
    "UpstreamStage",
    "Which",
    "build_mixer",
    "collapsed",
    "mixer_spec",
    "read_weights",
    "weight_entropy",
    "write_mixture_file",
]
