"""A run's upstream stages: the runs its mixer asks to have trained before it
(`Mixer.upstream_stages`, mixers/base.py: DoReMi's reference run, MixMin's proxies).

`plan` turns the mixer's stages into run configs and directories and points the mixer's options
at them, before anything is trained (so that a completed run is recognised as such without its
stages); `Upstream.train` then trains them in order through experiments.train's own `train`: a
stage run is an ordinary run of this harness, with its results, checkpoints and mixture file,
skipped when it has completed. A stage that asks for it (`specialist_scores`) is then scored:
its final model's log-probability of every target token of the specialist `train` split (never
the `eval` split), written to `SPECIALIST_SCORES_FILE` in its directory with the FLOPs of those
forward passes, and kept while its model is unchanged.

A `shared` stage is trained in the cache, <paths.cache_dir>/upstream/<directory>-<key>, the key a
hash of its config without what does not decide its outcome (its name, loggers, paths, how it is
resumed), so every run that asks for the same stage run (the same data, seed, model, training
options and stage mixer) reuses it; another process training it is waited for. Its option is
left out of this run's label (`Upstream.label_options`): a cache path differs from seed to seed.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from domains.data import DomainData
from domains.loading import load_data
from experiments.checkpoints import LAST
from experiments.config import LoggerConfig
from experiments.reference import load_reference
from mixers import mixer_spec
from mixers.base import SPECIALIST_SCORES_FILE, UpstreamStage
from models.gpt import token_losses

log = logging.getLogger(__name__)

# Seconds between two looks at a shared stage run that another process is training.
WAIT_SECONDS = 10


@dataclass(frozen=True)
class PlannedStage:
    """An upstream stage with the config and directory of its run."""

    stage: UpstreamStage
    cfg: DictConfig
    run_dir: Path


@dataclass
class Upstream:
    """The upstream stages of a run (`plan`), and the run's config with their options set."""

    cfg: DictConfig
    stages: list[PlannedStage]
    # The run's data (loaded once, when first asked for): for the mixer's `data()` and scoring.
    data: Callable[[], DomainData]

    def label_options(self) -> dict:
        """The run's mixer options, less those set to shared stages' directories: what its
        label (`mixer_label`) is made of."""
        options = OmegaConf.to_container(self.cfg.mixer, resolve=True)
        for planned in self.stages:
            if planned.stage.shared:
                options.pop(planned.stage.option, None)
        return options

    def train(self, train: Callable[[DictConfig, Path], dict]) -> None:
        """Train the stages in order with `train` (experiments.train's), then score those that
        ask for it. A stage run that does not complete stops this run."""
        for planned in self.stages:
            stage, run_dir = planned.stage, planned.run_dir
            log.info("training %s first, in %s", stage.what, run_dir)
            record = train(planned.cfg, run_dir)
            while record.get("status") == "running":  # another process holds its directory
                log.info("waiting for %s: another process is training it", run_dir)
                time.sleep(WAIT_SECONDS)
                record = train(planned.cfg, run_dir)
            if record.get("status") != "completed":
                raise RuntimeError(
                    f"{stage.what} in {run_dir} did not complete (status "
                    f"{record.get('status')!r}); this run needs it: see its results.json, and "
                    "re-run to train it again"
                )
            if stage.specialist_scores:
                write_specialist_scores(run_dir, self.data(), planned.cfg)


def plan(cfg: DictConfig, run_dir: Path) -> Upstream:
    """The stages the run's mixer asks for, each with its run's config and directory, and the
    run's config with the mixer's options pointing at them."""
    data = functools.cache(lambda: _load_data(cfg))
    options = OmegaConf.to_object(cfg.mixer)
    stages = mixer_spec(cfg.mixer.name).mixer.upstream_stages(
        options, cfg, lambda: data().mixer_view(seed=cfg.seed)
    )
    planned = [PlannedStage(stage, *_stage_run(cfg, run_dir, stage)) for stage in stages]
    if not planned:
        return Upstream(cfg, [], data)
    cfg = copy.deepcopy(cfg)
    for option in dict.fromkeys(p.stage.option for p in planned):
        mine = [p for p in planned if p.stage.option == option]
        listed = {p.stage.listed for p in mine}
        if len(listed) > 1 or (len(mine) > 1 and not mine[0].stage.listed):
            raise ValueError(
                f"{len(mine)} upstream stages set mixer.{option}: only `listed` ones may share it"
            )
        directories = [str(p.run_dir) for p in mine]
        cfg.mixer[option] = directories if mine[0].stage.listed else directories[0]
    return Upstream(cfg, planned, data)


def _load_data(cfg: DictConfig) -> DomainData:
    return load_data(
        OmegaConf.to_object(cfg.data),
        seq_len=cfg.model.context_length,
        cache_dir=Path(cfg.paths.cache_dir).expanduser(),
    )


def _stage_run(cfg: DictConfig, run_dir: Path, stage: UpstreamStage) -> tuple[DictConfig, Path]:
    """The stage run's config (this run's, with the stage's mixer and budget) and directory."""
    stage_cfg = copy.deepcopy(cfg)
    stage_cfg.mixer = OmegaConf.structured(stage.mixer)
    if stage.tokens is not None:
        stage_cfg.train.tokens = stage.tokens
    if stage.eval_sequences_per_domain is not None:
        stage_cfg.train.eval_sequences_per_domain = stage.eval_sequences_per_domain
    if not stage.shared:
        return stage_cfg, run_dir / stage.directory
    # What does not decide a shared run's outcome is set alike for every run that asks for it.
    stage_cfg.name = "upstream"
    stage_cfg.logger = OmegaConf.structured(LoggerConfig(wandb=False))
    stage_cfg.registration = None
    stage_cfg.train.resume = "auto"  # reused, whatever this run's resume option
    return stage_cfg, Path(cfg.paths.cache_dir).expanduser() / "upstream" / (
        f"{stage.directory}-{stage_key(stage_cfg)}"
    )


def stage_key(stage_cfg: DictConfig) -> str:
    """A shared stage run's key: a hash of its config, less its paths and resume option."""
    config = OmegaConf.to_container(stage_cfg, resolve=True)
    config.pop("paths", None)
    config["train"].pop("resume", None)
    text = json.dumps(config, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _scoring_device(cfg: DictConfig) -> str:
    accelerator = str(cfg.trainer.accelerator)
    if accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available():
        return "cuda"
    return "cpu"


def write_specialist_scores(run_dir: Path, data: DomainData, cfg: DictConfig) -> None:
    """SPECIALIST_SCORES_FILE in `run_dir`: the final model of the run there scores every target
    token of `data`'s specialist `train` split, `train.batch_size` sequences at a time, in fp32;
    kept when it is newer than the run's final checkpoint."""
    path = run_dir / SPECIALIST_SCORES_FILE
    checkpoint = run_dir / "checkpoints" / LAST
    if path.is_file() and path.stat().st_mtime >= checkpoint.stat().st_mtime:
        return
    reference = load_reference(
        run_dir,
        data.names,
        data.vocab_size,
        data.seq_len,
        OmegaConf.to_container(cfg.data, resolve=True),
    )
    device = _scoring_device(cfg)
    model = reference.model.to(device)
    sequences = data.target_train
    batch_size = cfg.train.batch_size
    parts = []
    with torch.no_grad():
        for start in range(0, len(sequences), batch_size):
            rows = sequences[np.arange(start, min(start + batch_size, len(sequences)))]
            tokens = torch.from_numpy(rows).to(device)
            parts.append(-token_losses(model, tokens).double().cpu().numpy())
    log_probs = np.concatenate(parts)
    flops = round(reference.flops_per_token / 3 * log_probs.size)  # one forward pass per token
    with tempfile.NamedTemporaryFile(dir=run_dir, suffix=".npz", delete=False) as handle:
        np.savez(handle, log_probs=log_probs, flops=np.int64(flops))
    os.replace(handle.name, path)
    log.info("scored the specialist train split with %s (%d tokens)", run_dir, log_probs.size)
