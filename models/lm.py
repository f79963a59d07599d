"""The LightningModule: a GPT trained on a mixture of domains decided by a mixer.

Why batches are drawn inside `training_step` rather than by a DataLoader: the mixture weights can
change at any step, and Lightning fetches one batch ahead. Drawing here (from `MixtureBatches`,
models/batches.py) means a mixer's update takes effect on the very batch of its step, and the
sampler state in a checkpoint matches the steps actually taken, so a resumed run continues
exactly. The train DataLoader only yields step numbers.

Evaluation is in models/evaluation.py, the weights' history in models/weight_history.py, the
optimizer in models/optimizer.py and the per-process checkpoint state in
models/checkpoint_state.py; metric names in models/metric_keys.py.
"""

from __future__ import annotations

import functools
import itertools
import time

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset

from domains.data import DomainData
from mixers.base import Mixer, StepGradient, TrainingBatch
from mixers.collapse import weight_entropy
from models import metric_keys as keys
from models.batches import MixtureBatches, ReferenceModel
from models.checkpoint_state import (
    count_steps_as_manual,
    gather_objects,
    load_rank_state,
    rank_state,
)
from models.evaluation import (
    MAX_LOGGED_DOMAINS,
    EvalGroups,
    EvalSequences,
    Evaluation,
    task_metrics,
)
from models.gpt import GPT, GPTConfig, token_losses
from models.optimizer import optimizer_and_schedule
from models.scoring import question_scores
from models.train_config import TrainConfig
from models.weight_history import WeightHistory


class StepCounter(IterableDataset):
    """The train DataLoader's items: step numbers, endlessly (batches are drawn in the step)."""

    def __iter__(self):
        return itertools.count()


class MixtureLM(L.LightningModule):
    def __init__(
        self,
        model_cfg: GPTConfig,
        train_cfg: TrainConfig,
        data: DomainData,
        mixer: Mixer,
        seed: int,
        max_steps: int,
        reference: ReferenceModel | None = None,
    ):
        super().__init__()
        # The step is taken in `training_step` (manual optimization): Lightning's automatic loop
        # (a closure, and hooks around backward and the optimizer) costs about 0.3 ms a step on a
        # CPU, a fixed cost that a fast step cannot hide.
        self.automatic_optimization = False
        self.model = GPT(model_cfg)
        # Not a submodule (a plain holder): never trained, checkpointed or wrapped by DDP; a
        # resumed run loads it again from its run directory.
        self.reference = reference
        self.train_cfg = train_cfg
        self.data = data
        self.mixer = mixer
        # The weights the mixer starts from, and each change since.
        self.weight_history = WeightHistory(mixer.weights)
        self.seed = seed
        self.max_steps = max_steps
        self.batches: MixtureBatches | None = None  # built in setup, once the rank is known
        self.eval_groups = EvalGroups.of(data)
        # What the training step runs: the model, or its compiled form (`TrainConfig.compile`),
        # kept out of the module tree (same parameters; not checkpointed twice).
        object.__setattr__(
            self, "training_model", torch.compile(self.model) if train_cfg.compile else self.model
        )
        # Seconds spent in training steps (mixer updates included, validation not), and in
        # mixer updates alone: their ratio is a mixer's wall-clock overhead within this run
        # (for a mixer that forms the step's gradient in its update, DoGE, the update holds the
        # step's own forward and backward passes too).
        self.train_seconds = 0.0
        self.mixer_seconds = 0.0
        self.initial_metrics: dict[str, float] | None = None
        self.last_metrics: dict[str, float] | None = None
        # The last validation's score of each multiple-choice question (None without a task).
        self.last_task_questions: dict[str, np.ndarray] | None = None
        self.last_validated_step = -1
        # The step of the last checkpoint saved (-1: none yet in this process).
        self.saved_step = -1
        # The first training step whose loss was not finite (see first_nonfinite_step).
        self._nonfinite_step: int | None = None
        self._finite: torch.Tensor | None = None
        # Per-rank final mixer weights and domain epochs, [world_size, n] (see on_train_end).
        self.rank_weights: np.ndarray | None = None
        self.rank_epochs: np.ndarray | None = None

    @property
    def initial_weights(self) -> np.ndarray:
        """The weights the mixer started from (`WeightHistory.initial`)."""
        return self.weight_history.initial

    @property
    def trajectory(self) -> list[tuple[int, list[float]]]:
        """(step, weights in force from that step on) (`WeightHistory.trajectory`)."""
        return self.weight_history.trajectory

    # --- set-up -------------------------------------------------------------------------------

    def setup(self, stage: str) -> None:
        if self.batches is not None:
            return
        self.batches = MixtureBatches(
            self.data,
            self.seed,
            self.train_cfg.batch_size,
            self.model.flops_per_token(),
            rank=self.global_rank,
            world_size=self.world_size,
            reference=self.reference,
        )

    def configure_optimizers(self):
        return optimizer_and_schedule(self.model, self.train_cfg, self.max_steps)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(StepCounter(), batch_size=None)

    def val_dataloader(self) -> DataLoader:
        # Every rank evaluates every sequence: exact metrics, no padding duplicates.
        dataset = EvalSequences(
            self.data, self.eval_groups, self.train_cfg.eval_sequences_per_domain
        )
        return DataLoader(dataset, batch_size=self.train_cfg.batch_size, shuffle=False)

    # --- batches ------------------------------------------------------------------------------

    @property
    def world_size(self) -> int:
        return self.trainer.world_size if self._trainer is not None else 1

    def _all_reduce_mean(self, tensor: torch.Tensor) -> torch.Tensor:
        if self._trainer is None:  # outside a Trainer (benchmarks): one process
            return tensor
        return self.trainer.strategy.reduce(tensor, reduce_op="mean")

    def update_mixer(self, step: int, training_batch) -> dict[str, float]:
        """One mixer update, timed, with its passes in full precision: under mixed precision
        (Lightning runs `training_step` in autocast) finite-difference alignment drowns in bf16
        round-off, so autocast is off for every mixer pass."""
        started = time.perf_counter()
        lr = self.optimizers().param_groups[0]["lr"] if self._trainer else self.train_cfg.lr
        ctx = self.batches.update_context(
            step,
            lr,
            self.train_cfg.lr,
            self.model,
            training_batch,
            self._all_reduce_mean,
            self.device,
            step_gradient_allowed=self._takes_step_gradient(),
        )
        with torch.autocast(self.device.type, enabled=False):
            logs = self.mixer.update(ctx)
        self.mixer_seconds += time.perf_counter() - started
        return logs

    def _takes_step_gradient(self) -> bool:
        """Whether a step can take its gradient from the mixer (`Mixer.step_gradient`): not
        under fp16 loss scaling, whose scaler expects the gradient of the scaled loss."""
        if self._trainer is None:  # outside a Trainer (benchmarks): full precision
            return True
        return getattr(self.trainer.precision_plugin, "scaler", None) is None

    # --- training -----------------------------------------------------------------------------

    def on_train_batch_start(self, batch: int, batch_idx: int) -> None:
        self._step_started = time.perf_counter()

    def on_train_batch_end(self, outputs, batch: int, batch_idx: int) -> None:
        self.train_seconds += time.perf_counter() - self._step_started
        # Only every `log_every_n_steps` and on a step a signal stops at (called after the
        # callbacks' hook, so SaveOnSignal's stop is already known). The loss goes through
        # `self.log` for the progress bar only.
        every = self.trainer.log_every_n_steps
        if every and (self.global_step % every == 0 or self.trainer.should_stop):
            self.log(keys.TRAIN_LOSS, outputs["loss"], prog_bar=True, logger=False)
            metrics = {
                keys.TRAIN_LOSS: float(outputs["loss"]),
                keys.TRAIN_TOKENS: float(self.batches.tokens_seen),
                keys.PROBE_TOKENS: float(self.batches.probe_tokens),
                keys.LEARNING_RATE: self.optimizers().param_groups[0]["lr"],
            }
            self._write_metrics(metrics, self.global_step - 1)  # the step just taken

    def _write_metrics(self, metrics: dict[str, float], step: int) -> None:
        """Python floats straight to the loggers, at `step` (the step's index, as Lightning's
        `step` column counts). `self.log` would route each value through Lightning's result
        collection, built to reduce tensors over steps and ranks, at about 0.3 ms a value on a
        CPU: a fixed cost per step that a fast step cannot hide. Loggers write on rank 0 only."""
        for logger in self.loggers:
            logger.log_metrics(metrics, step)

    def training_step(self, _step: int, batch_idx: int) -> torch.Tensor:
        loss, formed = self.mixture_loss()
        optimizer = self.optimizers()
        optimizer.zero_grad(set_to_none=True)
        if formed is None:
            self.manual_backward(loss)
        else:  # the mixer's update already took this gradient on the step's batch
            for p, grad in zip(formed.parameters, formed.gradients, strict=True):
                p.grad = grad
        optimizer.step()  # clips the gradients first: on_before_optimizer_step
        self.lr_schedulers().step()
        self._count_finite(loss)
        return loss

    def on_train_start(self) -> None:
        # Finite losses are counted on the device: reading every step's loss would make each
        # step wait for it (on a GPU).
        self._first_step = self.global_step
        self._finite = torch.ones((), dtype=torch.bool, device=self.device)
        self._finite_steps = torch.zeros((), dtype=torch.int64, device=self.device)

    def _count_finite(self, loss: torch.Tensor) -> None:
        if self._finite is not None:
            self._finite &= torch.isfinite(loss.detach())
            self._finite_steps += self._finite

    @property
    def first_nonfinite_step(self) -> int | None:
        """The first training step whose loss was NaN or infinite (None: every loss was finite)."""
        if self._nonfinite_step is None and self._finite is not None and not self._finite:
            self._nonfinite_step = self._first_step + int(self._finite_steps)
        return self._nonfinite_step

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Gradients are clipped here, inside `optimizer.step()`: under fp16 mixed precision the
        loss scaler unscales them just before this hook, and clipping scaled gradients would
        clip at a threshold thousands of times too low."""
        self.clip_gradients(optimizer, self.train_cfg.grad_clip, "norm")

    def mixture_loss(self) -> tuple[torch.Tensor, StepGradient | None]:
        """This step's training loss: the mixer updated if due, a batch drawn with its weights,
        and the loss the mixer makes of it; or, if the update formed the step's gradient
        (`Mixer.step_gradient`), the loss it reports and that gradient, with no pass here."""
        step = self.global_step

        @functools.cache  # drawn once per step, with the weights in force when first asked for
        def training_batch() -> tuple[torch.Tensor, torch.Tensor]:
            weights, stratified = self.mixer.domain_weights(), self.mixer.stratified_batches
            return self.batches.train(weights, self.device, stratified)

        updated = self.mixer.should_update(step)
        if updated:
            self._log_weights(self.update_mixer(step, training_batch))
        if updated or not self.weight_history.trajectory:
            self.weight_history.record(step, self.mixer.weights)
        tokens, domains = training_batch()
        formed = self.mixer.step_gradient() if updated else None
        if formed is not None:
            self.mixer.observe_step()
            return formed.loss, formed
        batch = TrainingBatch(
            step=step,
            tokens=tokens,
            domains=domains,
            token_losses=token_losses(self.training_model, tokens),
            reference_losses=self._reference_losses(tokens),
            all_reduce_mean=self._all_reduce_mean,
        )
        before = self.mixer.weights
        loss = self.mixer.training_loss(batch)
        moved = not np.array_equal(before, self.mixer.weights)
        if moved:  # on this step's own batch (DoReMi): in force from this step on
            self.weight_history.replace(step, self.mixer.weights)
        if moved or batch.logs:
            self._log_weights(batch.logs)
        self.mixer.observe_step()
        if self.mixer.observes_training_losses:
            self._show_training_losses(step, batch.sequence_losses.detach(), domains)
        return loss, None

    def _reference_losses(self, tokens: torch.Tensor):
        """The reference model's per-token losses of `tokens`, computed (and counted) once, on
        first call; None without a reference model."""
        if self.batches.reference is None:
            return None
        return functools.cache(lambda: self.batches.reference_losses(tokens))

    def _show_training_losses(self, step: int, losses: torch.Tensor, domains: torch.Tensor) -> None:
        """Each domain's mean training loss this step, over all ranks, to the mixer; a change of
        weights is recorded as in force from the next step."""
        k = self.data.num_domains
        totals = torch.zeros(2, k, dtype=torch.float64, device=losses.device)
        totals[0].index_add_(0, domains, losses.double())
        totals[1].index_add_(0, domains, torch.ones_like(losses, dtype=torch.float64))
        sums, counts = self._all_reduce_mean(totals).cpu().numpy()
        present = counts > 0
        means = np.divide(sums, counts, out=np.zeros(k), where=present)
        before = self.mixer.weights
        self.mixer.observe_training_losses(step, means, present)
        if not np.array_equal(before, self.mixer.weights):
            self.weight_history.record(step + 1, self.mixer.weights)

    def _log_weights(self, update_logs: dict[str, float]) -> None:
        metrics = {keys.MIXER + key: float(value) for key, value in update_logs.items()}
        metrics[keys.WEIGHT_ENTROPY] = weight_entropy(self.mixer.weights)
        if len(self.mixer.weight_names) <= MAX_LOGGED_DOMAINS:
            weights = zip(self.mixer.weight_names, self.mixer.weights, strict=True)
            metrics.update({keys.WEIGHT + name: float(w) for name, w in weights})
        if metrics:
            self._write_metrics(metrics, self.global_step)

    def on_train_end(self) -> None:
        """Gather every rank's final weights (they must agree) and epochs (ranks draw different
        sequences, so the data actually repeated is the sum over ranks)."""

        def gather(values: np.ndarray) -> np.ndarray:
            gathered = self.trainer.strategy.all_gather(torch.from_numpy(values).to(self.device))
            return gathered.reshape(-1, len(values)).cpu().numpy()

        self.rank_weights = gather(self.mixer.weights)
        self.rank_epochs = gather(self.batches.train_sampler.epochs())

    # --- validation ---------------------------------------------------------------------------

    def on_validation_epoch_start(self) -> None:
        self._evaluation = Evaluation(self.eval_groups, self.device)

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._evaluation.add(self.model, batch)

    def on_validation_epoch_end(self) -> None:
        metrics = self._evaluation.metrics()
        task = self.data.task
        if task is not None:  # the specialist's multiple-choice questions (MMLU), every rank
            context, batch_size = self.model.cfg.context_length, self.train_cfg.batch_size
            questions = question_scores(self.model, task, context, batch_size, self.device)
            metrics.update(task_metrics(task, questions))
            self.last_task_questions = questions
        self.last_metrics = metrics
        self.last_validated_step = self.global_step
        logged = self.eval_groups.logged(metrics)
        logged[keys.VAL_TOKENS] = float(self.batches.tokens_seen if self.batches else 0)
        # Every rank computed the same values over all eval sequences: the sync is a formality.
        self.log_dict(logged, sync_dist=True)

    # --- checkpoints --------------------------------------------------------------------------

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """The run's own state, in plain Python types and tensors (loadable with
        weights_only=True). Called on every rank; rank 0 writes the file, so each rank's own
        random state (its samplers draw different sequences) is gathered into it."""
        checkpoint["mixbench"] = {
            "mixer": self.mixer.state_dict(),
            "ranks": gather_objects(rank_state(self.batches, self.device), self.world_size),
            "train_seconds": self.train_seconds,
            "mixer_seconds": self.mixer_seconds,
            "trajectory": self.weight_history.state_dict(),
            "initial_metrics": self.initial_metrics,
            "nonfinite_step": self.first_nonfinite_step,
        }
        self.saved_step = self.global_step

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        count_steps_as_manual(checkpoint)
        state = checkpoint["mixbench"]
        self.setup("fit")
        self.mixer.load_state_dict(state["mixer"])
        # Loaded before the module is moved to its device: the device it will train on.
        device = self.trainer.strategy.root_device if self._trainer else self.device
        load_rank_state(state["ranks"], self.global_rank, self.world_size, self.batches, device)
        self.train_seconds = state["train_seconds"]
        self.mixer_seconds = state["mixer_seconds"]
        self.weight_history.load_state_dict(state["trajectory"])
        self.initial_metrics = state["initial_metrics"]
        self._nonfinite_step = state["nonfinite_step"]
