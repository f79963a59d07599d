"""Stopping cleanly when the cluster says so, so that a requeued job continues exactly.

SLURM warns a job before its time limit or a preemption with a signal (`--signal`): submitit
sends SIGUSR2 `signal_delay_s` seconds ahead, a plain `sbatch --signal=USR1@120` sends SIGUSR1,
and preemption and `scancel` send SIGTERM. `SaveOnSignal` catches these, lets the current
training step finish, saves `checkpoints/last.ckpt` at that step boundary (exactly where a
periodic checkpoint would be taken, so the resumed run is bit-exact) and stops training. The run
records itself as `preempted`, and then:

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
    def __init__(self, checkpoint: Path):
        self.checkpoint = checkpoint
        self.caught: int | None = None
        self._previous: dict[int, object] = {}

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # After Lightning's own handlers are in place: ours replace them for these signals.
        for signum in SIGNALS:
            self._previous[signum] = signal.signal(signum, self._catch)

    def _catch(self, signum: int, frame) -> None:
        self.caught = self.caught or signum

    def on_train_batch_end(self, trainer: L.Trainer, *args) -> None:
        # Every rank stops at the same step if any of them was signalled.
        if trainer.strategy.reduce_boolean_decision(self.caught is not None, all=False):
            trainer.save_checkpoint(self.checkpoint, weights_only=False)
            trainer.should_stop = True

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    @property
    def preempted(self) -> bool:
        return self.caught is not None

    def hand_on(self) -> None:
        """After the run is recorded: give the signal to the handler it replaced when that one
        is a program's own (submitit's requeue), else exit with EXIT_PREEMPTED."""
        previous = self._previous.get(self.caught)
        if callable(previous) and getattr(previous, "__module__", "").startswith("submitit"):
            previous(self.caught, None)
        raise SystemExit(EXIT_PREEMPTED)
