"""Keep a run's output to what its user can act on.

Lightning prints an advertisement for its cloud logger, the accelerators it did not find, a
warning that the CSV logger will replace metrics.csv in the run directory (train.py carries the
rows over on resume, see `_carry_over_metrics`), a deprecation warning from its own pytree
code and, under manual optimization, advice on checkpoints taken before the optimizer step.
None of these is the user's concern; real warnings stay.
"""

from __future__ import annotations

import logging
import warnings

NOISE = (
    "💡 Tip:",  # litlogger / litmodels advertisements
    "GPU available:",
    "TPU available:",
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
