"""The training progress bar: Lightning's rich bar, without its per-step costs."""

from __future__ import annotations

from lightning.pytorch.callbacks import RichProgressBar

REDRAWS_PER_SECOND = 10


class ProgressBar(RichProgressBar):
    """Lightning's rich progress bar, labelled `Training` (a run is one endless epoch cut at a
    step count, which Lightning's own label showed as "Epoch 0/-2"), with two costs per step
    removed:

    - it redraws `REDRAWS_PER_SECOND` times a second, not Lightning's default 100 (in a terminal,
      rich redraws from a thread that competes with training for the interpreter);
    - during training it reads the logged metrics only on the steps they are logged (every
      `log_every_n_steps`): reading them calls `.item()` on each, which on a GPU waits for every
      queued kernel, a host sync per step.
    """

    def __init__(self):
        super().__init__(refresh_rate=REDRAWS_PER_SECOND)

    def _get_train_description(self, current_epoch: int) -> str:
        return f"{'Training':{len(self.validation_description)}}"

    def _update_metrics(self, trainer, pl_module) -> None:
        every = trainer.log_every_n_steps
        if trainer.training and every and trainer.global_step % every:
            return
        super()._update_metrics(trainer, pl_module)
