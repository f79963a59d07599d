"""Progress on the console: in a terminal, Lightning's rich bar without its per-step costs; in a
log file (output redirected), plain lines: one per evaluation of a training run, and progress
bars (tqdm's, e.g. the embedding step's) written as a line now and then instead of being redrawn
in place, which a log file would keep as one huge line of carriage returns."""

from __future__ import annotations

import contextlib
import math
import re
import sys
import time
from collections.abc import Iterator
from typing import TextIO

from lightning.pytorch.callbacks import ProgressBar as LightningProgressBar
from lightning.pytorch.callbacks import RichProgressBar

from models.metric_keys import TARGET_LOSS, VAL_TOKENS

REDRAWS_PER_SECOND = 10
# In a log file, a progress bar is written when it starts, then at most this often, and when done.
LOG_EVERY_S = 30.0


def interactive() -> bool:
    """Whether the output is a terminal, where a bar can be redrawn in place."""
    return sys.stdout.isatty()


def progress_bar() -> LightningProgressBar:
    """The training run's progress: the rich bar in a terminal, else a line per evaluation."""
    return ProgressBar() if interactive() else EvaluationLines()


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


class EvaluationLines(LightningProgressBar):
    """Progress for a log file: after each evaluation, one line with the step, the tokens trained
    and the target loss, e.g. `step 400/1000: 1,638,400 tokens, target loss 4.8123`."""

    def __init__(self):
        super().__init__()
        self.enabled = True

    def disable(self) -> None:
        self.enabled = False

    def enable(self) -> None:
        self.enabled = True

    def on_validation_end(self, trainer, pl_module) -> None:
        metrics = trainer.callback_metrics
        if not self.enabled or TARGET_LOSS not in metrics:
            return
        tokens = int(metrics[VAL_TOKENS]) if VAL_TOKENS in metrics else 0
        print(
            f"step {trainer.global_step}/{trainer.max_steps}: {tokens:,} tokens, "
            f"target loss {float(metrics[TARGET_LOSS]):.4f}",
            flush=True,
        )


@contextlib.contextmanager
def readable_progress(every_s: float = LOG_EVERY_S) -> Iterator[None]:
    """While stderr is not a terminal, progress bars written to it become plain lines (see
    `PlainLines`); in a terminal, nothing changes."""
    if sys.stderr.isatty():
        yield
        return
    stream = PlainLines(sys.stderr, every_s)
    try:
        with contextlib.redirect_stderr(stream):
            yield
    finally:
        stream.close()


class PlainLines:
    """A text stream for a log file. A line redrawn in place (each state after a carriage return,
    as tqdm draws its bars) is written as a line of its own when first drawn, then at most every
    `every_s` seconds, and in its final state; other text passes through unchanged."""

    def __init__(self, stream: TextIO, every_s: float):
        self.stream, self.every_s = stream, every_s
        self.line = ""  # the current line, not yet written
        self.redrawn = False  # whether the current line was drawn over an earlier state
        self.written = -math.inf  # when a redrawn state was last written

    def write(self, text: str) -> int:
        for part in re.split(r"([\r\n])", text):
            if part == "\n":
                if self.line.strip() or not self.redrawn:
                    self.stream.write(self.line + "\n")
                self.line, self.redrawn = "", False
            elif part == "\r":
                if self.line.strip() and time.monotonic() - self.written >= self.every_s:
                    self.stream.write(self.line.rstrip() + "\n")
                    self.written = time.monotonic()
                self.line, self.redrawn = "", True
            else:
                self.line += part
        return len(text)

    def flush(self) -> None:
        self.stream.flush()

    def isatty(self) -> bool:
        return False

    def close(self) -> None:
        """Writes what is left of the current line (the stream itself stays open)."""
        if self.line.strip():
            self.stream.write(self.line.rstrip() + "\n")
        self.line = ""
        self.stream.flush()

    def __getattr__(self, name: str):
        return getattr(self.stream, name)
