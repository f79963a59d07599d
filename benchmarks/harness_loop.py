"""The harness's Trainer as experiments/train.py sets it up, timed from its steady state, and the
floor under its step: that Trainer around a model with no work in it (Lightning's own per-step
cost, which no change inside the harness's step can remove), the same loop in plain PyTorch, and
the cost of one redraw of the progress bar in a terminal. Used by benchmarks/throughput.py."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.callbacks.progress.rich_progress import (
    BatchesProcessedColumn,
    CustomBarColumn,
    CustomProgress,
    CustomTimeColumn,
    ProcessingSpeedColumn,
    RichProgressBarTheme,
)
from lightning.pytorch.loggers import CSVLogger
from rich.console import Console
from rich.progress import TextColumn

from experiments.preemption import SaveOnSignal
from experiments.profiler import NoProfiler
from experiments.progress import ProgressBar
from models.lm import StepCounter

WARMUP = 5  # steps not timed
FLOOR_STEPS = 1500  # the no-work model's steps are short: many of them


class SteadyStateTimer(L.Callback):
    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if trainer.global_step == WARMUP:
            self.start = time.perf_counter()

    def on_train_end(self, trainer, module):
        self.seconds = time.perf_counter() - self.start


def harness_trainer(log_dir: str, steps: int, timer: L.Callback, precision: str = "32-true"):
    """A Trainer set up as experiments/train.py sets it up, minus validation and checkpoint
    writing, with `timer` among its callbacks."""
    return L.Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=steps,
        logger=CSVLogger(log_dir, name="", version=""),
        profiler=NoProfiler(),
        callbacks=[
            timer,
            SaveOnSignal(Path(log_dir) / "last.ckpt"),
            ModelCheckpoint(dirpath=log_dir, every_n_train_steps=10**9, save_top_k=0),
            ProgressBar(),
        ],
        precision=precision,
        log_every_n_steps=10,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        enable_model_summary=False,
    )


class _FourParameters(L.LightningModule):
    """A model with no work in it, trained under the harness's Trainer: what is left of a step
    is the loop's own cost (with the train loss logged every 10 steps, as the harness logs)."""

    def __init__(self):
        super().__init__()
        self.automatic_optimization = False
        self.weight = torch.nn.Parameter(torch.ones(4))

    def train_dataloader(self):
        return torch.utils.data.DataLoader(StepCounter(), batch_size=None)

    def configure_optimizers(self):
        optimizer = torch.optim.SGD(self.parameters(), lr=0.1)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }

    def training_step(self, batch, batch_idx):
        # The step as MixtureLM takes it (manual optimization, gradients clipped).
        loss = (2 * self.weight).sum()
        optimizer = self.optimizers()
        optimizer.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        optimizer.step()
        self.lr_schedulers().step()
        return loss

    def on_before_optimizer_step(self, optimizer):
        self.clip_gradients(optimizer, 1.0, "norm")

    def on_train_batch_end(self, outputs, batch, batch_idx):
        if self.global_step % self.trainer.log_every_n_steps == 0:
            self.log("train/loss", outputs["loss"], prog_bar=True)


def floor_ms_per_step(lightning: bool, steps: int = FLOOR_STEPS) -> float:
    """ms per step of the 4-parameter model: in the harness's Trainer, or in a plain loop."""
    if lightning:
        timer = SteadyStateTimer()
        with tempfile.TemporaryDirectory() as log_dir:
            harness_trainer(log_dir, steps, timer).fit(_FourParameters())
        return 1000 * timer.seconds / (steps - WARMUP)
    weight = torch.nn.Parameter(torch.ones(4))
    optimizer = torch.optim.SGD([weight], lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    for step in range(steps):
        if step == WARMUP:
            start = time.perf_counter()
        loss = (2 * weight).sum()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([weight], 1.0)
        optimizer.step()
        scheduler.step()
    return 1000 * (time.perf_counter() - start) / (steps - WARMUP)


def redraw_ms(redraws: int = 500) -> float:
    """Milliseconds of one redraw of the progress bar's columns in a terminal (rich renders to a
    terminal from a thread, `refresh_rate` times a second, while training runs; to a file or a
    pipe, as in the timings above, it does not redraw at all)."""
    theme = RichProgressBarTheme()
    columns = [
        TextColumn("[progress.description]{task.description}"),
        CustomBarColumn(),
        BatchesProcessedColumn(style=theme.batch_progress),
        CustomTimeColumn(style=theme.time),
        ProcessingSpeedColumn(style=theme.processing_speed),
        TextColumn("train/loss: 3.210 v_num: 0"),
    ]
    with open(os.devnull, "w") as sink:
        console = Console(file=sink, force_terminal=True, width=120)
        bar = CustomProgress(*columns, auto_refresh=False, console=console, redirect_stdout=False)
        with bar:
            task = bar.add_task("Training", total=redraws)
            start = time.perf_counter()
            for i in range(redraws):
                bar.update(task, completed=i)
                bar.refresh()
            seconds = time.perf_counter() - start
    return 1000 * seconds / redraws
