"""Data mixers: each decides the mixture of domains a model is trained on."""

from __future__ import annotations

from domains.data import MixerView
from mixers.aioli import AioliConfig, AioliMixer
from mixers.base import Mixer, MixerConfig, UpdateContext
from mixers.dga import DGAConfig, DGAMixer
from mixers.dga_dr import DGADRConfig, DGADRMixer
from mixers.doge import DoGEConfig, DoGEMixer
from mixers.doremi import DoReMiConfig, DoReMiMixer
from mixers.importance import ImportanceConfig, ImportanceMixer
from mixers.odm import ODMConfig, ODMMixer
from mixers.static import StaticConfig, StaticMixer
from mixers.uniform import UniformConfig, UniformMixer

# name -> (mixer class, config schema); `mixer=<name>` in Hydra selects one.
MIXERS: dict[str, tuple[type[Mixer], type[MixerConfig]]] = {
    "uniform": (UniformMixer, UniformConfig),
    "static": (StaticMixer, StaticConfig),
    "importance": (ImportanceMixer, ImportanceConfig),
    "doge": (DoGEMixer, DoGEConfig),
    "dga": (DGAMixer, DGAConfig),
    "dga_dr": (DGADRMixer, DGADRConfig),
    "odm": (ODMMixer, ODMConfig),
    "doremi": (DoReMiMixer, DoReMiConfig),
    "aioli": (AioliMixer, AioliConfig),
}


def build_mixer(cfg: MixerConfig, data: MixerView) -> Mixer:
    """The mixer `cfg.name` over the domains of `data` (`DomainData.mixer_view()`)."""
    try:
        mixer_cls, _ = MIXERS[cfg.name]
    except KeyError:
        raise ValueError(f"unknown mixer {cfg.name!r}; available: {sorted(MIXERS)}") from None
    return mixer_cls(cfg, data)


__all__ = ["MIXERS", "Mixer", "MixerConfig", "UpdateContext", "build_mixer"]
