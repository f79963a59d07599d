"""Structured configs: the schema every Hydra config is checked against.

The primary schema types every node, and each option of the `data` and `mixer` groups extends its
own schema (`conf/mixer/dga.yaml` starts from `/schema/mixer/dga`), so a misspelt key or a value
of the wrong type fails at composition time with a message naming it. The schemas live in groups
of their own (`schema/mixer`, `schema/data`), so that they are not among a group's choices.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from domains.schemas import DATA_SCHEMAS
from experiments.regmix import RegMixConfig
from mixers import MIXERS, mixer_spec
from models.gpt import GPTConfig
from models.train_config import TrainConfig


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
    # Nothing from W&B on the console (its files are still written); false: its banners and its
    # run summary at the end.
    quiet: bool = True


@dataclass
class PathsConfig:
    # Prepared domains and downloaded corpora live here, outside the repository.
    cache_dir: str = "${oc.env:MIXBENCH_CACHE,'~/.cache/mixbench'}"


@dataclass
class PipelineConfig:
    """A multi-stage experiment, run by `python -m experiments.pipeline` (experiments/pipeline.py),
    never by experiments.train: `method` is `regmix` (swarm, regression, final run and swarm
    oracle), `doremi` (reference, proxy, final run) or a mixer's name (one training stage)."""

    method: str = MISSING
    # Training tokens of each proxy run (RegMix's swarm, DoReMi's reference and proxy); null:
    # train.tokens. The final runs always train train.tokens.
    proxy_tokens: int | None = None
    # RegMix: also retrain the swarm's best mixture at train.tokens (the swarm oracle).
    oracle: bool = True
    regmix: RegMixConfig = field(default_factory=RegMixConfig)


@dataclass
class Family:
    """Comparisons judged together, Holm-corrected within the family. Each reads "a > b": a is
    better than b on `metric` (a run-summary column where lower is better), paired by seed."""

    comparisons: list[str] = MISSING
    metric: str = "target_loss"
    # Only the runs whose summary columns hold these values (e.g. one of several targets).
    where: dict[str, Any] = field(default_factory=dict)


@dataclass
class Registration:
    """A findings experiment's design, declared in its config before any of its runs: the claim,
    the seeds, the verdict cell (summary column -> value) and the families of comparisons.
    analysis.findings takes verdicts only from these; other cells and seeds are exploratory."""

    registered: str = MISSING  # the date it was committed, before the runs
    claim: str = MISSING
    seeds: list[int] = MISSING
    cell: dict[str, Any] = field(default_factory=dict)
    families: dict[str, Family] = field(default_factory=dict)
    # Runs taken from another registered experiment's summary instead of re-run: experiment ->
    # mixer labels. Only for runs made with this design's own data, model and training options,
    # so that a re-run (same seed) would reproduce them exactly; they count toward the verdicts.
    reuses: dict[str, list[str]] = field(default_factory=dict)
    # How the design's runs are made, when one multirun cannot: its sweeps, each a string of
    # overrides (e.g. "mixer=dga train.tokens=666_000", a mixer at equal total compute), run in
    # turn by `python -m experiments.sweep`. Not part of the registration's fingerprint: each
    # run's config records its own settings, and the report shows each mixer's compute.
    parts: list[str] = field(default_factory=list)


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
    # Set by the experiments that experiments.pipeline runs (e.g. `experiment=regmix`); its
    # training stages run with `pipeline=null`.
    pipeline: PipelineConfig | None = None
    # Set by the findings experiments (conf/experiment/claim_*.yaml), recorded with every run.
    registration: Registration | None = None


# Trainer options of Lightning's automatic optimization, which the module replaces with its own
# step (models/lm.py): their Lightning default, and what to set instead.
AUTOMATIC_OPTIMIZATION_ONLY = {
    "gradient_clip_val": (None, "set train.grad_clip instead"),
    "gradient_clip_algorithm": (None, "train.grad_clip clips the global norm"),
    "accumulate_grad_batches": (1, "raise train.batch_size instead"),
}


def check_config(cfg: DictConfig) -> None:
    """What the schemas' types cannot say, checked before any data is prepared: every group
    instantiates (running the range checks of its schema), the groups agree (the mixer's own
    checks: `Mixer.check_config`), and a checkpoint named by `train.resume` is one."""
    for group in ("data", "model", "mixer", "train"):
        OmegaConf.to_object(cfg[group])
    one_step = cfg.train.batch_size * cfg.model.context_length
    if cfg.train.tokens < one_step:
        raise ValueError(
            f"train.tokens={cfg.train.tokens} is less than one training step "
            f"(train.batch_size x model.context_length = {one_step} tokens)"
        )
    for key, (default, instead) in AUTOMATIC_OPTIMIZATION_ONLY.items():
        if cfg.trainer.get(key, default) != default:
            raise ValueError(
                f"trainer.{key} is not supported: the module takes its own optimizer step "
                f"(manual optimization); {instead}"
            )
    # What the mixer's schema cannot check on its own options (e.g. static weights against the
    # number of domains).
    mixer_spec(cfg.mixer.name).mixer.check_config(cfg)
    resume = cfg.train.resume
    if resume not in (None, "auto"):
        # Imports Lightning, so only for this option; the file's tensors are mapped, not read.
        from experiments.checkpoints import check_resume_file

        check_resume_file(Path(resume))


CONF_DIR = Path(__file__).resolve().parents[1] / "conf"


@functools.cache
def mixer_defaults(name: str) -> dict | None:
    """The options `mixer=<name>` gives (its schema overlaid with conf/mixer/<name>.yaml), or
    None when this checkout does not know the mixer."""
    parts = []
    if name in MIXERS:
        parts.append(OmegaConf.structured(MIXERS[name].config))
    option = CONF_DIR / "mixer" / f"{name}.yaml"
    if option.exists():
        yaml = OmegaConf.load(option)
        yaml.pop("defaults", None)
        parts.append(yaml)
    if not parts:
        return None
    try:
        return OmegaConf.to_container(OmegaConf.merge(*parts), resolve=True)
    except OmegaConfBaseException:  # e.g. an interpolation into the rest of the config
        return None


def _format_option(value: object) -> str:
    if isinstance(value, str) and os.sep in value:
        return Path(value).name  # a path: its last part keeps labels short
    if isinstance(value, float):
        return f"{value:g}"
    return json.dumps(value) if isinstance(value, list | dict) else str(value)


def mixer_label(options: dict) -> str:
    """`name` or `name[key=value,...]` listing the options that differ from `mixer=<name>`:
    the name a run's mixer variant goes by in its record and in every table."""
    name = options.get("name", "?")
    if options.get("label"):
        return options["label"]
    defaults = mixer_defaults(name) or {}
    changed = {
        key: value
        for key, value in sorted(options.items())
        if key != "name" and key in defaults and defaults[key] != value
    }
    if not changed:
        return name
    return f"{name}[{','.join(f'{k}={_format_option(v)}' for k, v in changed.items())}]"


def check_not_pipeline(cfg: DictConfig) -> None:
    """experiments.train refuses a config that configures a multi-stage pipeline."""
    if cfg.get("pipeline") is not None:
        raise ValueError(
            f"this config sets pipeline.method={cfg.pipeline.method}, a multi-stage experiment: "
            "run it with `python -m experiments.pipeline` and the same arguments"
        )


# Where a sweep's process keeps the keys it sweeps, for its jobs (`run_dirname`), in this
# process or in a launcher's workers, which inherit the environment.
SWEPT_KEYS = "MIXBENCH_SWEPT_KEYS"


class SweptKeys(Callback):
    """A Hydra callback (conf/train.yaml) that, as a sweep starts, records the keys it sweeps:
    those of the experiment's `hydra.sweeper.params` and those swept on the command line."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        swept = set(config.hydra.sweeper.get("params") or {})
        for override in OverridesParser.create().parse_overrides(list(config.hydra.overrides.task)):
            if override.is_sweep_override():
                swept.add(override.key_or_group)
        os.environ[SWEPT_KEYS] = json.dumps(sorted(swept))


def _names_the_run(key: str) -> bool:
    """Whether an override of `key` names a sweep job's directory whether or not it is swept:
    the mixer, its options (which make a mixer variant, as in `mixer_label`), and the seed."""
    return key in ("mixer", "seed") or key.startswith("mixer.")


def run_dirname(task_overrides: list[str], _root_: DictConfig) -> str:
    """A sweep job's directory name (`hydra.sweep.subdir`): its overrides of what varies in the
    sweep, i.e. of the options swept on the command line (`seed=0,1,2`) or by the experiment
    (`hydra.sweeper.params`), and of the mixer, its options and the seed, written as Hydra's
    `override_dirname` writes them: `data.num_domains=64,mixer=dga,seed=1`. The other options
    the sweep sets (`data.paths=[...]`, `trainer=gpu`) are left out: the sweep's directory
    (`name`) stands for them. The same sweep command, re-run or extended by more values, gives
    its jobs the same names, so completed runs are found and skipped; so does one run for
    another mixer variant (`mixer=dga mixer.eta=3`, then `mixer.eta=10`). A job's directory
    named by all its overrides (the rule before this one) is kept where it exists."""
    hydra = _root_.hydra
    excluded = set(hydra.job.config.override_dirname.exclude_keys)
    overrides = [
        o
        for o in OverridesParser.create().parse_overrides([str(o) for o in task_overrides])
        if o.key_or_group not in excluded
    ]
    sweep_dir = Path(hydra.sweep.dir)
    swept = json.loads(os.environ[SWEPT_KEYS]) if SWEPT_KEYS in os.environ else None
    name = shorten_dirname(
        ",".join(
            sorted(
                o.input_line
                for o in overrides
                if swept is None or o.key_or_group in swept or _names_the_run(o.key_or_group)
            )
        )
    )
    legacy = shorten_dirname(",".join(sorted(o.input_line for o in overrides)))
    return legacy if legacy != name and (sweep_dir / legacy).is_dir() else name


def shorten_dirname(name: str, max_length: int = 120) -> str:
    """`name` as a file name: no `/`, and shortened with a hash when it would be over-long."""
    name = name.replace("/", "_")
    if len(name) <= max_length:
        return name or "default"
    digest = hashlib.sha1(name.encode()).hexdigest()[:12]
    return f"{name[: max_length - 13]}-{digest}"


def register_configs() -> None:
    if not OmegaConf.has_resolver("run_dirname"):
        OmegaConf.register_new_resolver("run_dirname", run_dirname)
    cs = ConfigStore.instance()
    cs.store(name="config_schema", node=Config)
    for name, schema in DATA_SCHEMAS.items():
        cs.store(group="schema/data", name=name, node=schema)
    for name, spec in MIXERS.items():
        cs.store(group="schema/mixer", name=name, node=spec.config)
