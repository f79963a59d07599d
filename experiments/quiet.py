"""Keep a run's output to what its user can act on.

Lightning prints an advertisement for its cloud logger, the accelerators it did not find, a
warning that the CSV logger will replace metrics.csv in the run directory (train.py carries the
rows over on resume, see `_carry_over_metrics`), a deprecation warning from its own pytree
code and, under manual optimization, advice on checkpoints taken before the optimizer step.
None of these is the user's concern; real warnings stay.

W&B, unless `logger.quiet=false`, prints nothing on the console: not its banners, its warnings
about arguments Lightning passes, nor its history sparklines and run summary at the end (the run's
W&B files, console log included, are still written under the run directory).
"""

from __future__ import annotations

import logging
import warnings

NOISE = (
    "💡 Tip:",  # litlogger / litmodels advertisements
    "GPU available:",
    "TPU available:",
    "`Trainer.fit` stopped: `max_steps=",  # every run stops there: its step budget
)


class _DropNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(NOISE)


def quiet_lightning() -> None:
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropNoise) for f in logger.filters):
            logger.addFilter(_DropNoise())
    warnings.filterwarnings("ignore", r"Experiment logs directory .* exists and is not empty")
    warnings.filterwarnings("ignore", r".*isinstance\(treespec, LeafSpec\)` is deprecated")
    # The module takes its own optimizer step (manual optimization), and a checkpoint holds the
    # state after it, with the step count after it: what a resumed run continues from.
    warnings.filterwarnings("ignore", "Using ModelCheckpoint with manual optimization")
    # The train DataLoader only yields step numbers (see models/lm.py), so worker processes and
    # Lightning's "few workers" advice do not apply.
    warnings.filterwarnings("ignore", ".*does not have many workers.*")


def wandb_settings(quiet: bool):
    """The settings of a W&B run: silent on the console when `quiet`. W&B is set up silent first,
    as its warnings about the arguments Lightning passes come before the run's own settings."""
    if not quiet:
        return None
    import wandb

    settings = wandb.Settings(silent=True)
    wandb.setup(settings=settings)
    return settings
