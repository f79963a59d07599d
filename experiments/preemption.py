"""Stopping cleanly when the cluster says so, so that a requeued job continues exactly.

SLURM warns a job before its time limit or a preemption with a signal (`--signal`): submitit
sends SIGUSR2 `signal_delay_s` seconds ahead, a plain `sbatch --signal=USR1@120` sends SIGUSR1,
and preemption and `scancel` send SIGTERM. `SaveOnSignal` catches these, lets the current
training step finish, saves `checkpoints/last.ckpt` at that step boundary (exactly where a
periodic checkpoint would be taken, so the resumed run is bit-exact) and stops training. The
signals are caught from the start of the run: one that comes before training (while data loads,
during the first validation) stops the run before its first step, and one during a save or a
validation stops it at the next step boundary. The run records itself as `preempted`, and then:

- under submitit (hydra-submitit-launcher), the signal is handed on to submitit's own handler,
  which requeues the job with the same arguments; the re-run resumes from the checkpoint
  (`train.resume=auto`);
- otherwise the process exits with `EXIT_PREEMPTED` (75, EX_TEMPFAIL: "try again"), for a
  wrapper script or `sbatch --requeue` to run the same command again.
"""

from __future__ import annotations

import signal
from pathlib import Path

import lightning as L

SIGNALS = (signal.SIGUSR1, signal.SIGUSR2, signal.SIGTERM)
EXIT_PREEMPTED = 75


class SaveOnSignal(L.Callback):
    """Catches the signals from `install()` (the start of the run) until `restore()` (once the
    run is recorded): a signal at any moment, before training, during a validation or a save,
    stops the run at the next step boundary, or before its first step."""

    def __init__(self, checkpoint: Path):
        self.checkpoint = checkpoint
        self.caught: int | None = None
        # Stopped because some rank was signalled (in a multi-process run, maybe not this one).
        self.stopped = False
        self._previous: dict[int, object] = {}

    def install(self) -> None:
        """Catch the signals from now on; the handlers they had are kept for `hand_on` and
        `restore`. Installed again where Lightning puts its own SIGTERM handler in place (at
        every `fit` and `validate`): that one raises SIGTERMException, a SystemExit."""
        for signum in SIGNALS:
            previous = signal.signal(signum, self._catch)
            self._previous.setdefault(signum, previous)

    def restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def _catch(self, signum: int, frame) -> None:
        self.caught = self.caught or signum

    def _signalled(self, trainer: L.Trainer) -> bool:
        """Whether any rank was signalled (every rank gets the same answer)."""
        return trainer.strategy.reduce_boolean_decision(self.caught is not None, all=False)

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.install()

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.install()
        # Signalled before training (loading data, validating, restoring): no step is taken,
        # and what the run resumes from is what it started from.
        if self._signalled(trainer):
            self.stopped = trainer.should_stop = True

    def on_train_batch_end(self, trainer: L.Trainer, *args) -> None:
        # Every rank stops at the same step if any of them was signalled.
        if self._signalled(trainer):
            trainer.save_checkpoint(self.checkpoint, weights_only=False)
            self.stopped = trainer.should_stop = True

    @property
    def preempted(self) -> bool:
        return self.caught is not None or self.stopped

    def hand_on(self) -> None:
        """After the run is recorded: give the signal to the handler it replaced when that one
        is a program's own (submitit's requeue), else exit with EXIT_PREEMPTED."""
        previous = self._previous.get(self.caught)
        if callable(previous) and getattr(previous, "__module__", "").startswith("submitit"):
            previous(self.caught, None)
        raise SystemExit(EXIT_PREEMPTED)
