"""Structured configs: the schema every Hydra config is checked against.

The primary schema types every node, and each option of the `data` and `mixer` groups extends its
own schema (`conf/mixer/dga.yaml` starts from `dga_schema`), so a misspelt key or a value of the
wrong type fails at composition time with a message naming it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from domains.synthetic import SyntheticDataConfig
from domains.text import TextDataConfig
from mixers import MIXERS
from models.gpt import GPTConfig
from models.lm import TrainConfig


@dataclass
class TrainerConfig:
    """Passed to lightning.Trainer."""

    accelerator: str = "auto"
    devices: Any = "auto"
    strategy: str = "auto"
    num_nodes: int = 1
    precision: str = "32-true"


@dataclass
class LoggerConfig:
    """Metrics always go to CSV in the run directory; W&B is optional."""

    wandb: bool = True
    project: str = "mixbench"
    entity: str | None = None
    group: str | None = None
    tags: list[str] = field(default_factory=list)
    # offline (default: written under the run directory, `wandb sync` later), online or disabled.
    mode: str = "offline"


@dataclass
class PathsConfig:
    # Prepared domains and downloaded corpora live here, outside the repository.
    cache_dir: str = "${oc.env:MIXBENCH_CACHE,'~/.cache/mixbench'}"


@dataclass
class Config:
    seed: int = 0
    # Names the experiment: the W&B group and the sweep directory.
    name: str = "default"
    data: Any = MISSING
    model: GPTConfig = MISSING
    mixer: Any = MISSING
    trainer: TrainerConfig = MISSING
    logger: LoggerConfig = MISSING
    train: TrainConfig = field(default_factory=TrainConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)


# Real-text sources share one schema; `data=demo|files|hf` picks a preset of it.
DATA_SCHEMAS = {
    "synthetic": SyntheticDataConfig,
    "demo": TextDataConfig,
    "files": TextDataConfig,
    "hf": TextDataConfig,
}


# Trainer precisions whose parameters are not kept in 32 bits: finite-difference alignment moves
# the parameters by a relative 1e-4, which such parameters cannot represent.
LOW_PRECISION_PARAMETERS = ("bf16-true", "16-true", "transformer-engine")


def check_config(cfg: DictConfig) -> None:
    """What the schemas' types cannot say, checked before any data is prepared: every group
    instantiates (running the range checks of its schema) and the groups agree."""
    for group in ("data", "model", "mixer", "train"):
        OmegaConf.to_object(cfg[group])
    one_step = cfg.train.batch_size * cfg.model.context_length
    if cfg.train.tokens < one_step:
        raise ValueError(
            f"train.tokens={cfg.train.tokens} is less than one training step "
            f"(train.batch_size x model.context_length = {one_step} tokens)"
        )
    if (
        cfg.mixer.get("alignment") == "finite_difference"
        and cfg.trainer.precision in LOW_PRECISION_PARAMETERS
    ):
        raise ValueError(
            f"mixer.alignment=finite_difference needs 32-bit parameters, and trainer.precision="
            f"{cfg.trainer.precision} keeps them in 16 bits: use a *-mixed precision (the "
            "mixer's passes then run in fp32) or mixer.alignment=backward"
        )


def run_dirname(overrides: str, max_length: int = 120) -> str:
    """A sweep job's directory name: its overrides (stable when the sweep is re-run or extended),
    shortened with a hash when they would make an unwieldy or over-long file name."""
    overrides = overrides.replace("/", "_")
    if len(overrides) <= max_length:
        return overrides or "default"
    digest = hashlib.sha1(overrides.encode()).hexdigest()[:12]
    return f"{overrides[: max_length - 13]}-{digest}"


def register_configs() -> None:
    if not OmegaConf.has_resolver("run_dirname"):
        OmegaConf.register_new_resolver("run_dirname", run_dirname)
    cs = ConfigStore.instance()
    cs.store(name="config_schema", node=Config)
    for name, schema in DATA_SCHEMAS.items():
        cs.store(group="data", name=f"{name}_schema", node=schema)
    for name, (_, schema) in MIXERS.items():
        cs.store(group="mixer", name=f"{name}_schema", node=schema)
