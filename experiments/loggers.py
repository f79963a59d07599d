"""A run's loggers: metrics.csv in the run directory, always, and W&B, optionally.

A resumed run keeps its metric history (`carry_over_metrics`) and logs to the same W&B run as its
earlier starts (`wandb_run_id`); at the end, the W&B run's summary holds the final metrics, each
domain's named with its description (`finish_wandb`).
"""

from __future__ import annotations

import csv
import os
import secrets
from pathlib import Path

from lightning.pytorch.loggers import CSVLogger, Logger, WandbLogger
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from experiments.checkpoints import Resumable
from experiments.quiet import wandb_settings
from experiments.results import METRICS_FILE


def run_loggers(
    cfg: DictConfig, run_dir: Path, domain_labels: dict[str, str], resumable: Resumable | None
) -> list[Logger]:
    """The CSV logger (with the metric history of a resumed run) and, if asked for, W&B's."""
    # Every row goes to disk as it is logged: a killed run keeps its metric history.
    csv_logger = CSVLogger(save_dir=str(run_dir), name="", version="", flush_logs_every_n_steps=1)
    if resumable is not None:
        carry_over_metrics(csv_logger, resumable.step)
    loggers: list[Logger] = [csv_logger]
    if cfg.logger.wandb and cfg.logger.mode != "disabled":
        loggers.append(wandb_logger(cfg, run_dir, domain_labels))
    return loggers


def finish_wandb(
    loggers: list[Logger],
    metrics: dict[str, float],
    domain_labels: dict[str, str],
    mixer_label: str | None,
) -> None:
    """The W&B run's summary (the final `metrics` and the mixer's label), and its end."""
    for logger in loggers:
        if isinstance(logger, WandbLogger):
            summary = wandb_summary(metrics, domain_labels)
            logger.experiment.summary.update({**summary, "mixer_label": mixer_label})
            logger.experiment.finish()


def wandb_logger(cfg: DictConfig, run_dir: Path, domain_labels: dict[str, str]) -> WandbLogger:
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
        id=wandb_run_id(run_dir),
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


def wandb_run_id(run_dir: Path) -> str:
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


def wandb_summary(metrics: dict[str, float], domain_labels: dict[str, str]) -> dict[str, float]:
    """The final metrics for the W&B run summary, a domain's loss named with its description
    (`final/val/domain/domain_03 (bbc/tech: mobile, phone, users)`)."""
    summary = {}
    for key, value in metrics.items():
        name = key.rsplit("/", 1)[-1]
        label = domain_labels.get(name, name)
        summary[f"final/{key}" + (f" ({label})" if label != name else "")] = value
    return summary


def carry_over_metrics(csv_logger: CSVLogger, resumed_step: int) -> None:
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
