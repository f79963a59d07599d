"""Whether a run directory already holds this run: its config compared with the directory's record.

With `train.resume=auto`, experiments.train skips a run whose directory holds a completed (or
diverged) run of the same config, and refuses a directory that holds a run of another config. The
comparison ignores what does not decide a run's outcome (how it is resumed, where files live) and
what older records could not hold: options that are null, and options added to a schema after
the record was written that hold their schema default (the old run ran as that default does).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from experiments.results import RESULTS_FILE, RunRecord, read_record


def _without_nulls(config: dict) -> dict:
    """The config without its null options: an option added to a schema later (null by
    default) is absent from older records, and must not make their runs look different."""
    return {
        key: _without_nulls(value) if isinstance(value, dict) else value
        for key, value in config.items()
        if value is not None
    }


def _comparable(config: dict) -> dict:
    """The parts of a resolved config that decide a run's outcome (not how it is resumed)."""
    config = {**config, "train": {**config["train"]}}
    config["train"].pop("resume", None)
    config.pop("paths", None)
    return _without_nulls(config)


_NO_DEFAULT = object()  # an option without a schema default


def _schema_default(cfg: DictConfig, path: tuple[str, ...], key: str) -> object:
    """The default of option `key` of the config node at `path`, from its dataclass schema
    (`_NO_DEFAULT` when the node has none), as a plain value."""
    node = OmegaConf.select(cfg, ".".join(path)) if path else cfg
    schema = OmegaConf.get_type(node) if isinstance(node, DictConfig) else None
    fields = (
        {f.name: f for f in dataclasses.fields(schema)} if dataclasses.is_dataclass(schema) else {}
    )
    if key not in fields:
        return _NO_DEFAULT
    field = fields[key]
    if field.default is not dataclasses.MISSING:
        default = field.default
    elif field.default_factory is not dataclasses.MISSING:
        default = field.default_factory()
    else:
        return _NO_DEFAULT
    if dataclasses.is_dataclass(default):
        return OmegaConf.to_container(OmegaConf.structured(default), resolve=True)
    return default


def _without_added_defaults(
    current: dict, previous: dict, cfg: DictConfig, path: tuple[str, ...] = ()
) -> dict:
    """`current` without the options that an older record `previous` lacks and that hold their
    schema default: an option added to a schema later leaves the runs made before it as they
    were (they ran as its default does), so it must not make them look different."""
    kept = {}
    for key, value in current.items():
        if key not in previous:
            default = _schema_default(cfg, path, key)
            if isinstance(default, dict) and isinstance(value, dict):
                default = _without_nulls(default)
            if value != default:
                kept[key] = value
        elif isinstance(value, dict) and isinstance(previous[key], dict):
            kept[key] = _without_added_defaults(value, previous[key], cfg, (*path, key))
        else:
            kept[key] = value
    return kept


def completed_run(cfg: DictConfig, run_dir: Path) -> RunRecord | None:
    """The record of this same run if it already completed in this directory (a re-run of a
    sweep skips it); an error if the directory holds a different run."""
    if cfg.train.resume != "auto" or not (run_dir / RESULTS_FILE).exists():
        return None
    previous = read_record(run_dir)
    before = _comparable(previous.config)
    current = _comparable(OmegaConf.to_container(cfg, resolve=True))
    if before != _without_added_defaults(current, before, cfg):
        raise RuntimeError(
            f"{run_dir} holds a run with a different config; give this run another "
            "directory (e.g. another `name=`) or delete the old one"
        )
    # A diverged run diverges again: it is as finished as a completed one.
    return previous if previous.status in ("completed", "diverged") else None
