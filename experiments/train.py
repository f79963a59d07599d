"""Train a GPT on a mixture of domains: `python -m experiments.train [overrides]`.

Writes into the Hydra run directory: results.json (see experiments/results.py), metrics.csv
(every logged metric), weights.csv (the mixture weight trajectory), checkpoints/ and, with
`logger=wandb`, the W&B run files.
"""

from __future__ import annotations

import csv
import dataclasses
import logging
import math
import os
import secrets
import signal
import time
import traceback
from pathlib import Path

import hydra
import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, WandbLogger
from lightning.pytorch.plugins.environments import SLURMEnvironment
from lightning.pytorch.utilities import rank_zero_only
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf

from domains.loading import load_data
from experiments.checkpoints import (
    LAST,
    KeepPreviousCheckpointIO,
    resume_checkpoint,
)
from experiments.cli import reported_errors, run_app
from experiments.config import (
    check_config,
    check_not_pipeline,
    mixer_label,
    register_configs,
)
from experiments.preemption import SaveOnSignal
from experiments.profiler import NoProfiler
from experiments.progress import progress_bar, readable_progress
from experiments.quiet import quiet_lightning, wandb_settings
from experiments.reference import load_reference, reference_record
from experiments.results import (
    METRICS_FILE,
    RESULTS_FILE,
    TRAJECTORY_FILE,
    RunRecord,
    read_record,
    write_record,
    write_trajectory,
)
from experiments.runlock import lock_holder, lock_run_dir
from mixers import MIXERS, build_mixer
from mixers.collapse import collapsed
from mixers.static import MIXTURE_FILE, write_mixture_file
from mixers.uniform import UniformConfig
from models.lm import MixtureLM

log = logging.getLogger(__name__)
register_configs()
quiet_lightning()


def _wandb_logger(cfg: DictConfig, run_dir: Path, domain_labels: dict[str, str]) -> WandbLogger:
    mode = cfg.logger.mode
    if mode not in ("offline", "online", "disabled"):
        raise ValueError(f"logger.mode must be offline, online or disabled, got {mode!r}")
    if mode == "online" and not os.environ.get("WANDB_API_KEY"):
        netrc = Path.home() / ".netrc"
        if not (netrc.exists() and "api.wandb.ai" in netrc.read_text()):
            raise RuntimeError(
                "logger.mode=online needs a W&B key: set WANDB_API_KEY or run `wandb login`; "
                "or use logger.mode=offline and `wandb sync` later"
            )
    # Tags make a sweep's runs filterable in the W&B UI by what varies across them.
    tags = [
        f"mixer:{cfg.mixer.name}",
        f"k:{cfg.data.num_domains}",
        f"tokens:{cfg.train.tokens}",
        f"seed:{cfg.seed}",
        *cfg.logger.tags,
    ]
    if cfg.data.tokens_per_domain is not None:
        tags.append(f"tokens_per_domain:{cfg.data.tokens_per_domain}")
    return WandbLogger(
        id=_wandb_run_id(run_dir),
        resume="allow",  # a resumed run (crash, kill, requeue) continues the same W&B run
        project=cfg.logger.project,
        entity=cfg.logger.entity,
        group=cfg.logger.group,
        tags=tags,
        mode=mode,
        save_dir=str(run_dir),
        name=run_dir.name,
        # The domains' descriptions: the metrics and weights name them domain_00, domain_01...
        config={**OmegaConf.to_container(cfg, resolve=True), "domain_labels": domain_labels},
        settings=wandb_settings(cfg.logger.quiet),
    )


WANDB_ID_FILE = "wandb_run_id"


def _wandb_run_id(run_dir: Path) -> str:
    """The W&B run id of this run directory, chosen at its first start and kept in the directory,
    so that every later start of the run logs to the same W&B run (one history curve)."""
    path = run_dir / WANDB_ID_FILE
    if path.exists():
        return path.read_text().strip()
    run_id = secrets.token_hex(4)  # W&B run ids: lowercase letters and digits
    if rank_zero_only.rank == 0:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(run_id + "\n")
    return run_id


def _wandb_summary(metrics: dict[str, float], domain_labels: dict[str, str]) -> dict[str, float]:
    """The final metrics for the W&B run summary, a domain's loss named with its description
    (`final/val/domain/domain_03 (bbc/tech: mobile, phone, users)`)."""
    summary = {}
    for key, value in metrics.items():
        name = key.rsplit("/", 1)[-1]
        label = domain_labels.get(name, name)
        summary[f"final/{key}" + (f" ({label})" if label != name else "")] = value
    return summary


def _carry_over_metrics(csv_logger: CSVLogger, resumed_step: int) -> None:
    """Keep the metric history of a resumed run.

    Lightning's CSV logger deletes an existing metrics.csv, so the rows logged before the
    checkpoint are read first and logged again, and written at once (rows after it are
    re-created by the resumed run).
    """
    path = Path(csv_logger.log_dir) / METRICS_FILE
    if not path.exists():
        return
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        step = int(row.pop("step"))
        if step < resumed_step:
            csv_logger.experiment.log_metrics(
                {key: float(value) for key, value in row.items() if value != ""}, step
            )
    csv_logger.experiment.save()


def _named(names: list[str], values) -> dict[str, float]:
    return {name: float(v) for name, v in zip(names, values, strict=True)}


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


def _completed_run(cfg: DictConfig, run_dir: Path) -> RunRecord | None:
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


def train(cfg: DictConfig, run_dir: Path) -> dict:
    """Run one training job; returns the results record as a dict (also written to results.json
    by rank 0, and with the run's mixture file when it completes).

    With `train.resume=auto` (the default), a run whose directory already holds a completed run of
    the same config is not redone, and an unfinished one continues from its last checkpoint.
    A run directory that another process is training (experiments/runlock.py) is skipped: its
    record as it stands is returned.
    """
    if rank_zero_only.rank != 0:  # rank 0 holds the lock for all ranks
        return _train(cfg, run_dir)
    lock = lock_run_dir(run_dir)
    if lock is None:
        log.warning(
            "%s is being trained by another process (pid %s); skipping it",
            run_dir,
            lock_holder(run_dir),
        )
        if (run_dir / RESULTS_FILE).exists():
            return read_record(run_dir).to_dict()
        return RunRecord(status="running", run_dir=str(run_dir)).to_dict()
    with lock:
        return _train(cfg, run_dir)


def _train(cfg: DictConfig, run_dir: Path) -> dict:
    # Again here: a parallel sweep's workers (joblib's loky) receive this module's functions by
    # value when it runs as __main__, without running its module-level code.
    quiet_lightning()
    check_config(cfg)
    check_not_pipeline(cfg)
    if MIXERS[cfg.mixer.name][0].needs_reference and not cfg.mixer.reference:
        cfg = _with_reference(cfg, run_dir)
    done = _completed_run(cfg, run_dir)
    if done is not None:
        log.info("%s already %s; skipping", run_dir, done.status)
        return done.to_dict()
    if MIXERS[cfg.mixer.name][0].needs_reference:
        reference_record(cfg.mixer.reference)  # a wrong directory fails before any data is loaded
    is_rank_zero = rank_zero_only.rank == 0
    started = time.time()
    record = RunRecord(
        status="running",
        run_dir=str(run_dir),
        mixer=cfg.mixer.name,
        mixer_label=mixer_label(OmegaConf.to_container(cfg.mixer, resolve=True)),
        seed=cfg.seed,
        config=OmegaConf.to_container(cfg, resolve=True),
    )
    if is_rank_zero:
        write_record(run_dir, record)
    lm = None
    loggers = []
    on_signal = SaveOnSignal(run_dir / "checkpoints" / LAST)
    on_signal.install()  # from now on a signal stops the run cleanly, whatever it is doing
    try:
        L.seed_everything(cfg.seed, workers=True, verbose=False)
        model_cfg = OmegaConf.to_object(cfg.model)
        data = load_data(
            OmegaConf.to_object(cfg.data),
            seq_len=model_cfg.context_length,
            cache_dir=Path(cfg.paths.cache_dir).expanduser(),
        )
        model_cfg.vocab_size = data.vocab_size
        mixer = build_mixer(OmegaConf.to_object(cfg.mixer), data.mixer_view(seed=cfg.seed))
        reference = None
        if mixer.needs_reference:  # not checkpointed: a resumed run loads it again
            reference = load_reference(
                cfg.mixer.reference,
                data.names,
                data.vocab_size,
                data.seq_len,
                OmegaConf.to_container(cfg.data, resolve=True),
            )
            mixer.upstream_flops = reference.upstream_flops

        resumable = resume_checkpoint(cfg.train.resume, run_dir)
        checkpoint = resumable.path if resumable else None
        # Every row goes to disk as it is logged: a killed run keeps its metric history.
        csv_logger = CSVLogger(
            save_dir=str(run_dir), name="", version="", flush_logs_every_n_steps=1
        )
        if resumable is not None:
            _carry_over_metrics(csv_logger, resumable.step)
        loggers = [csv_logger]
        if cfg.logger.wandb and cfg.logger.mode != "disabled":
            loggers.append(_wandb_logger(cfg, run_dir, data.domain_labels()))
        plugins = [KeepPreviousCheckpointIO()]
        if (
            SLURMEnvironment.detect()
        ):  # requeueing is submitit's and SaveOnSignal's, not Lightning's
            plugins.append(SLURMEnvironment(auto_requeue=False))
        trainer = L.Trainer(
            **OmegaConf.to_container(cfg.trainer),
            max_steps=1,  # set below, once the world size is known
            logger=loggers,
            plugins=plugins,
            profiler=NoProfiler(),
            callbacks=[
                on_signal,
                ModelCheckpoint(
                    dirpath=run_dir / "checkpoints",
                    every_n_train_steps=cfg.train.checkpoint_every,
                    save_last=True,
                    save_top_k=0,
                    # Always last.ckpt (not last-v1.ckpt beside a copied-in last.ckpt).
                    enable_version_counter=False,
                ),
                progress_bar(),
            ],
            log_every_n_steps=cfg.train.log_every,
            num_sanity_val_steps=0,
            check_val_every_n_epoch=None,
            use_distributed_sampler=False,
            enable_model_summary=False,
            default_root_dir=str(run_dir),
        )
        tokens_per_step = cfg.train.batch_size * data.seq_len * trainer.world_size
        max_steps = math.ceil(cfg.train.tokens / tokens_per_step)
        # The step count depends on the world size, which only the Trainer resolves.
        trainer.fit_loop.epoch_loop.max_steps = max_steps
        trainer.val_check_interval = min(cfg.train.eval_every, max_steps)

        lm = MixtureLM(
            model_cfg,
            OmegaConf.to_object(cfg.train),
            data,
            mixer,
            cfg.seed,
            max_steps,
            reference=reference,
        )
        if checkpoint is None:
            trainer.validate(lm, verbose=False)
            lm.initial_metrics = lm.last_metrics
        else:
            log.info("Resuming from %s", checkpoint)
        trainer.fit(lm, ckpt_path=checkpoint, weights_only=True)
        if on_signal.preempted:
            log.warning(
                "Stopped by a signal at step %d; a re-run continues from there", lm.global_step
            )
            record.status = "preempted"
        else:
            if lm.last_validated_step != trainer.global_step:
                trainer.validate(lm, verbose=False)
            if lm.saved_step != trainer.global_step:
                # last.ckpt holds the final model (what `mixer.reference=<this run>` loads);
                # the full state a resume needs, not the weights alone.
                trainer.save_checkpoint(run_dir / "checkpoints" / LAST, weights_only=False)
            record.status = "completed"
            diverged_step = _diverged_step(lm)
            if diverged_step is not None:  # listed with the problem runs, never ranked
                record.status, record.diverged_step = "diverged", diverged_step
                record.error = {
                    "type": "Diverged",
                    "message": f"the loss is not finite from step {diverged_step} on",
                    "traceback": None,
                }
                log.warning("%s diverged: %s", run_dir, record.error["message"])
    except SIGTERMException:  # Lightning's SIGTERM handler, in place for a moment: a SystemExit
        on_signal.caught = on_signal.caught or signal.SIGTERM
        record.status = "preempted"
    except Exception as error:
        record.status = "failed"
        record.error = {
            "type": type(error).__name__,
            "message": str(error),
            "traceback": traceback.format_exc(),
        }
        raise
    finally:
        record.wall_clock_s = time.time() - started
        if lm is not None:
            record.update(**_run_summary(lm))
        if is_rank_zero:
            if lm is not None:
                write_trajectory(run_dir / TRAJECTORY_FILE, lm.mixer.weight_names, lm.trajectory)
            if record.status == "completed":
                _write_mixture_file(run_dir, record)
            write_record(run_dir, record)
        for logger in loggers:
            if isinstance(logger, WandbLogger) and lm is not None:
                summary = _wandb_summary(lm.last_metrics or {}, lm.data.domain_labels())
                logger.experiment.summary.update({**summary, "mixer_label": record.mixer_label})
                logger.experiment.finish()
        on_signal.restore()
    if on_signal.preempted:
        on_signal.hand_on()
    return record.to_dict()


def _diverged_step(lm: MixtureLM) -> int | None:
    """The step from which a run whose final losses are not finite diverged: its first
    training step with a non-finite loss, or the last step when only the evaluation was not
    finite; None for a run whose final losses are finite."""
    final = lm.last_metrics or {}
    losses = [final.get("val/target_loss", math.nan), final.get("val/generic_loss", math.nan)]
    if all(math.isfinite(loss) for loss in losses):
        return None
    step = lm.first_nonfinite_step
    return lm.global_step if step is None else step


def _write_mixture_file(run_dir: Path, record: RunRecord) -> None:
    """What `mixer=static mixer.path=<this run>` reuses, with all the compute spent on it."""
    mixtures = {"final": record.final_mixture, "time_averaged": record.time_averaged_mixture}
    flops = record.train_flops + record.mixer_flops + record.upstream_flops
    write_mixture_file(run_dir / MIXTURE_FILE, mixtures, flops)


REFERENCE_DIR = "reference"


def _with_reference(cfg: DictConfig, run_dir: Path) -> DictConfig:
    """A mixer that needs a reference model and was given none (`mixer.reference=null`): train
    the reference first, this run's config on the reference weights (uniform, or natural with
    `mixer.reference_weights=natural`), in <run dir>/reference, and point the mixer at it. One
    process; with several, give `mixer.reference` (or use experiments.pipeline)."""
    reference_dir = run_dir / REFERENCE_DIR
    weights = cfg.mixer.get("reference_weights", "uniform")
    reference_cfg = cfg.copy()
    reference_cfg.mixer = OmegaConf.structured(
        UniformConfig(weights=weights, label=f"{cfg.mixer.name}_reference")
    )
    log.info("training the reference model first, in %s", reference_dir)
    train(reference_cfg, reference_dir)
    cfg = cfg.copy()
    cfg.mixer.reference = str(reference_dir)
    return cfg


def _run_summary(lm: MixtureLM) -> dict:
    data, mixer, batches = lm.data, lm.mixer, lm.batches
    ranks = {}
    if lm.rank_epochs is not None:
        ranks = {"weights": lm.rank_weights.tolist(), "domain_epochs": lm.rank_epochs.tolist()}
        epochs = lm.rank_epochs.sum(axis=0)
    elif batches is not None:  # failed before training ended
        epochs = batches.train_sampler.epochs()
    else:
        epochs = []
    return {
        "steps": lm.global_step,
        "max_steps": lm.max_steps,
        "tokens_trained": batches.tokens_seen if batches else 0,
        "probe_tokens": batches.probe_tokens if batches else 0,
        # Cost in FLOPs (see models/batches.py): the mixer's extra passes and the training steps.
        "mixer_flops": batches.mixer_flops if batches else 0,
        "train_flops": batches.train_flops if batches else 0,
        "upstream_flops": mixer.upstream_flops,
        "train_seconds": lm.train_seconds,
        "mixer_seconds": lm.mixer_seconds,
        "metrics_initial": lm.initial_metrics,
        "metrics_final": lm.last_metrics,
        "final_weights": _named(mixer.weight_names, mixer.weights),
        "time_averaged_weights": _named(mixer.weight_names, mixer.time_averaged_weights()),
        "initial_weights": _named(mixer.weight_names, lm.initial_weights),
        "time_averaged_max_weight": float(mixer.time_averaged_weights().max()),
        "collapsed": collapsed(lm.initial_weights, mixer.time_averaged_weights()),
        "final_domain_weights": _named(data.names, mixer.domain_weights()),
        # What `mixer=static mixer.path=<this run>` reuses (`which=final` / `time_averaged`).
        "final_mixture": _named(data.names, mixer.mixture(mixer.weights)),
        "time_averaged_mixture": _named(data.names, mixer.mixture(mixer.time_averaged_weights())),
        "domain_epochs": _named(data.names, epochs) if len(epochs) else {},
        "ranks": ranks,
        "domain_tokens": dict(zip(data.names, data.token_counts().tolist(), strict=True)),
        "domain_labels": data.domain_labels(),
        "model": {
            "params": lm.model.num_params(),
            "non_embedding_params": lm.model.num_params(non_embedding=True),
            "flops_per_token": lm.model.flops_per_token(),
        },
        "data": data.meta,
        "files": {"trajectory": TRAJECTORY_FILE, "metrics": METRICS_FILE},
        "torch_version": torch.__version__,
    }


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float:
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    with reported_errors(), readable_progress():
        record = train(cfg, run_dir)
    log.info("results: %s", run_dir / RESULTS_FILE)
    return (record["metrics_final"] or {}).get("val/target_loss", math.nan)


if __name__ == "__main__":
    run_app(main)
