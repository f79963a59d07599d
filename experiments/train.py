"""Train a GPT on a mixture of domains: `python -m experiments.train [overrides]`.

Writes into the Hydra run directory: results.json (see experiments/results.py), metrics.csv
(every logged metric), weights.csv (the mixture weight trajectory), checkpoints/ and, with
`logger=wandb`, the W&B run files.
"""

from __future__ import annotations

import logging
import math
import signal
import time
import traceback
from pathlib import Path

import hydra
import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from lightning.pytorch.callbacks import ModelCheckpoint
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
from experiments.loggers import finish_wandb, run_loggers
from experiments.preemption import SaveOnSignal
from experiments.profiler import NoProfiler
from experiments.progress import progress_bar, readable_progress
from experiments.quiet import quiet_lightning
from experiments.record_check import completed_run
from experiments.reference import load_reference, reference_record
from experiments.results import (
    METRICS_FILE,
    RESULTS_FILE,
    TASK_QUESTIONS_FILE,
    TRAJECTORY_FILE,
    RunRecord,
    read_record,
    write_record,
    write_task_questions,
    write_trajectory,
)
from experiments.runlock import lock_holder, lock_run_dir
from experiments.upstream import Upstream, plan
from mixers import (
    MIXTURE_FILE,
    build_mixer,
    collapsed,
    mixer_spec,
    write_mixture_file,
)
from models.lm import MixtureLM
from models.metric_keys import GENERIC_LOSS, TARGET_LOSS

log = logging.getLogger(__name__)
register_configs()
quiet_lightning()


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
    cfg, upstream = _checked(cfg, run_dir)
    done = completed_run(cfg, run_dir)
    if done is not None:
        log.info("%s already %s; skipping", run_dir, done.status)
        return done.to_dict()
    upstream.train(train)
    if mixer_spec(cfg.mixer.name).mixer.needs_reference:
        reference_record(cfg.mixer.reference)  # a wrong directory fails before any data is loaded
    started = time.time()
    record = RunRecord(
        status="running",
        run_dir=str(run_dir),
        mixer=cfg.mixer.name,
        mixer_label=mixer_label(upstream.label_options()),
        seed=cfg.seed,
        config=OmegaConf.to_container(cfg, resolve=True),
    )
    if rank_zero_only.rank == 0:
        write_record(run_dir, record)
    lm = None
    loggers = []
    on_signal = SaveOnSignal(run_dir / "checkpoints" / LAST)
    on_signal.install()  # from now on a signal stops the run cleanly, whatever it is doing
    try:
        L.seed_everything(cfg.seed, workers=True, verbose=False)
        data, model_cfg, mixer, reference = _load(cfg)
        resumable = resume_checkpoint(cfg.train.resume, run_dir)
        loggers = run_loggers(cfg, run_dir, data.domain_labels(), resumable)
        trainer = _trainer(cfg, run_dir, loggers, on_signal)
        tokens_per_step = cfg.train.batch_size * data.seq_len * trainer.world_size
        max_steps = math.ceil(cfg.train.tokens / tokens_per_step)
        # The step count depends on the world size, which only the Trainer resolves.
        trainer.fit_loop.epoch_loop.max_steps = max_steps
        trainer.val_check_interval = min(cfg.train.eval_every, max_steps)
        train_cfg = OmegaConf.to_object(cfg.train)
        lm = MixtureLM(model_cfg, train_cfg, data, mixer, cfg.seed, max_steps, reference=reference)
        _fit(trainer, lm, resumable.path if resumable else None)
        if on_signal.preempted:
            log.warning(
                "Stopped by a signal at step %d; a re-run continues from there", lm.global_step
            )
            record.status = "preempted"
        else:
            _finish(trainer, lm, run_dir)
            _judge(record, lm, run_dir)
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
        _close(record, lm, loggers, run_dir)
        on_signal.restore()
    if on_signal.preempted:
        on_signal.hand_on()
    return record.to_dict()


def _checked(cfg: DictConfig, run_dir: Path) -> tuple[DictConfig, Upstream]:
    """The config, checked before any data is prepared, with the options of the upstream stages
    the mixer asks for (`Mixer.upstream_stages`: experiments/upstream.py) pointing at their runs,
    and those stages, which `_train` trains first unless this run has completed."""
    check_config(cfg)
    check_not_pipeline(cfg)
    upstream = plan(cfg, run_dir)
    return upstream.cfg, upstream


def _load(cfg: DictConfig) -> tuple:
    """The run's data, model config (its vocabulary set by the data), mixer and, for a mixer
    that `needs_reference`, the reference model (None otherwise)."""
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
    return data, model_cfg, mixer, reference


def _trainer(cfg: DictConfig, run_dir: Path, loggers: list, on_signal: SaveOnSignal) -> L.Trainer:
    """The Trainer, checkpointing every `train.checkpoint_every` steps and on a signal; its
    step count is set once its world size is known."""
    plugins = [KeepPreviousCheckpointIO()]
    if SLURMEnvironment.detect():  # requeueing is submitit's and SaveOnSignal's, not Lightning's
        plugins.append(SLURMEnvironment(auto_requeue=False))
    return L.Trainer(
        **OmegaConf.to_container(cfg.trainer),
        max_steps=1,  # set by the caller, once the world size is known
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


def _fit(trainer: L.Trainer, lm: MixtureLM, checkpoint: Path | None) -> None:
    """Train from scratch (after measuring the initial model) or from `checkpoint`."""
    if checkpoint is None:
        trainer.validate(lm, verbose=False)
        lm.initial_metrics = lm.last_metrics
    else:
        log.info("Resuming from %s", checkpoint)
    trainer.fit(lm, ckpt_path=checkpoint, weights_only=True)


def _finish(trainer: L.Trainer, lm: MixtureLM, run_dir: Path) -> None:
    """After the last step: the final model validated and saved, if it is not yet."""
    if lm.last_validated_step != trainer.global_step:
        trainer.validate(lm, verbose=False)
    if lm.saved_step != trainer.global_step:
        # last.ckpt holds the final model (what `mixer.reference=<this run>` loads); the full
        # state a resume needs, not the weights alone.
        trainer.save_checkpoint(run_dir / "checkpoints" / LAST, weights_only=False)


def _judge(record: RunRecord, lm: MixtureLM, run_dir: Path) -> None:
    """A run trained to its end: completed, or diverged (listed with the problem runs, never
    ranked) when its final losses are not finite."""
    record.status = "completed"
    diverged_step = _diverged_step(lm)
    if diverged_step is not None:
        record.status, record.diverged_step = "diverged", diverged_step
        record.error = {
            "type": "Diverged",
            "message": f"the loss is not finite from step {diverged_step} on",
            "traceback": None,
        }
        log.warning("%s diverged: %s", run_dir, record.error["message"])


def _close(record: RunRecord, lm: MixtureLM | None, loggers: list, run_dir: Path) -> None:
    """However the run ended: its record, weight trajectory and (completed) mixture file
    written by rank 0, and its W&B run summarised and finished."""
    if lm is not None:
        record.update(**_run_summary(lm))
    if rank_zero_only.rank == 0:
        if lm is not None:
            write_trajectory(run_dir / TRAJECTORY_FILE, lm.mixer.weight_names, lm.trajectory)
            if lm.last_task_questions is not None:
                write_task_questions(run_dir / TASK_QUESTIONS_FILE, lm.last_task_questions)
                record.files = {**record.files, "task_questions": TASK_QUESTIONS_FILE}
        if record.status == "completed":
            _write_mixture_file(run_dir, record)
        write_record(run_dir, record)
    if lm is not None:
        finish_wandb(loggers, lm.last_metrics or {}, lm.data.domain_labels(), record.mixer_label)


def _diverged_step(lm: MixtureLM) -> int | None:
    """The step from which a run whose final losses are not finite diverged: its first
    training step with a non-finite loss, or the last step when only the evaluation was not
    finite; None for a run whose final losses are finite."""
    final = lm.last_metrics or {}
    losses = [final.get(TARGET_LOSS, math.nan), final.get(GENERIC_LOSS, math.nan)]
    if all(math.isfinite(loss) for loss in losses):
        return None
    step = lm.first_nonfinite_step
    return lm.global_step if step is None else step


def _write_mixture_file(run_dir: Path, record: RunRecord) -> None:
    """What `mixer=static mixer.path=<this run>` reuses, with all the compute spent on it."""
    mixtures = {"final": record.final_mixture, "time_averaged": record.time_averaged_mixture}
    flops = record.train_flops + record.mixer_flops + record.upstream_flops
    write_mixture_file(run_dir / MIXTURE_FILE, mixtures, flops)


def _named(names: list[str], values) -> dict[str, float]:
    return {name: float(v) for name, v in zip(names, values, strict=True)}


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
    return (record["metrics_final"] or {}).get(TARGET_LOSS, math.nan)


if __name__ == "__main__":
    run_app(main)
