"""The LightningModule: a GPT trained on a mixture of domains decided by a mixer.

Why batches are drawn inside `training_step` rather than by a DataLoader: the mixture weights can
change at any step, and Lightning fetches one batch ahead. Drawing here (from `MixtureBatches`,
models/batches.py) means a mixer's update takes effect on the very batch of its step, and the
sampler state in a checkpoint matches the steps actually taken, so a resumed run continues
exactly. The train DataLoader only yields step numbers.
"""

from __future__ import annotations

import functools
import itertools
import math
import time
from dataclasses import dataclass

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset

from domains.data import DomainData
from mixers.base import Mixer, StepGradient, TrainingBatch
from mixers.collapse import weight_entropy
from models.batches import MixtureBatches, ReferenceModel
from models.gpt import GPT, GPTConfig, sequence_loss, token_losses
from models.scoring import score
from models.train_config import TrainConfig

# Per-domain validation losses are logged as metrics up to this many domains; beyond it they are
# kept only in results.json (thousands of metric keys make W&B and the CSV log unusable). Beyond
# it, domains from a two-level clustering are evaluated per coarse cluster instead (EvalGroups).
MAX_LOGGED_DOMAINS = 128


class StepCounter(IterableDataset):
    """The train DataLoader's items: step numbers, endlessly (batches are drawn in the step)."""

    def __iter__(self):
        return itertools.count()


@dataclass
class EvalGroups:
    """What validation reports a held-out loss for: each domain (`val/domain/<name>`), or, past
    MAX_LOGGED_DOMAINS domains from a two-level clustering, each coarse cluster
    (`val/coarse/<name>`): at the paper's 64 x 4,096 domains, 32 held-out sequences per domain
    would be 8 million sequences per evaluation. A group's sequences are spread over its domains
    (one from each domain in a fixed random order, then a second from each...)."""

    prefix: str
    names: list[str]
    domains: list[np.ndarray]

    @classmethod
    def of(cls, data: DomainData) -> EvalGroups:
        if data.num_domains <= MAX_LOGGED_DOMAINS or data.coarse_of is None:
            return cls(
                "val/domain/", list(data.names), [np.array([d]) for d in range(data.num_domains)]
            )
        clusters, cluster_of = np.unique(data.coarse_of, return_inverse=True)
        rng = np.random.default_rng(0)  # the same sequences for every run on these domains
        return cls(
            "val/coarse/",
            [f"coarse_{c}" for c in clusters],
            [rng.permutation(np.flatnonzero(cluster_of == c)) for c in range(len(clusters))],
        )

    def sequences(self, data: DomainData, per_group: int) -> list[list[tuple[int, int]]]:
        """(domain, held-out sequence) pairs of each group: at most `per_group`."""
        chosen = []
        for domains in self.domains:
            pairs, j = [], 0
            sizes = [len(data.heldout[d]) for d in domains]
            while len(pairs) < per_group and j < max(sizes):
                layer = [(int(d), j) for d, n in zip(domains, sizes, strict=True) if j < n]
                pairs += layer[: per_group - len(pairs)]
                j += 1
            chosen.append(pairs)
        return chosen


class EvalSequences(Dataset):
    """Held-out sequences of every evaluation group (capped per group) and the specialist `eval`
    split, each labelled with its group's index, or the number of groups for the specialist set."""

    def __init__(self, data: DomainData, groups: EvalGroups, per_group: int):
        self.data = data
        target = len(groups.names)
        self.items = [
            (label, d, j)
            for label, pairs in enumerate(groups.sequences(data, per_group))
            for d, j in pairs
        ] + [(target, -1, j) for j in range(len(data.target_eval))]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[int, torch.Tensor]:
        label, domain, j = self.items[i]
        sequences = self.data.target_eval if domain < 0 else self.data.heldout[domain]
        return label, torch.from_numpy(sequences[[j]][0])


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
        # The weights the mixer starts from (before any update, also on a resumed run): what a
        # collapse is judged against (mixers/collapse.py).
        self.initial_weights = mixer.weights
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
        # (step, weights): the weights in force from that step on, recorded after each update.
        self.trajectory: list[tuple[int, list[float]]] = []
        self.initial_metrics: dict[str, float] | None = None
        self.last_metrics: dict[str, float] | None = None
        self.last_validated_step = -1
        # The step of the last checkpoint saved (-1: none yet in this process).
        self.saved_step = -1
        # The first training step whose loss was not finite (see first_nonfinite_step).
        self._nonfinite_step: int | None = None
        self._finite: torch.Tensor | None = None
        # Per-rank final mixer weights and domain epochs, [world_size, n] (see on_train_end).
        self.rank_weights: np.ndarray | None = None
        self.rank_epochs: np.ndarray | None = None

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
        cfg = self.train_cfg
        # Decoupled weight decay on the matrices of the blocks only: not on norms, biases or the
        # (tied) embeddings.
        decay, no_decay = [], []
        for name, p in self.model.named_parameters():
            is_embedding = name.startswith(("token_embedding", "position_embedding"))
            (decay if p.ndim >= 2 and not is_embedding else no_decay).append(p)
        optimizer = torch.optim.AdamW(
            [
                {"params": decay, "weight_decay": cfg.weight_decay},
                {"params": no_decay, "weight_decay": 0.0},
            ],
            lr=cfg.lr,
            betas=(cfg.beta1, cfg.beta2),
        )
        warmup = max(1, round(cfg.warmup_fraction * self.max_steps))

        def lr_factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            progress = min(1.0, (step - warmup) / max(1, self.max_steps - warmup))
            cosine = 0.5 * (1 + math.cos(math.pi * progress))
            return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * cosine

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }

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
            self.log("train/loss", outputs["loss"], prog_bar=True, logger=False)
            metrics = {
                "train/loss": float(outputs["loss"]),
                "train/tokens": float(self.batches.tokens_seen),
                "train/probe_tokens": float(self.batches.probe_tokens),
                "train/lr": self.optimizers().param_groups[0]["lr"],
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
        if updated or not self.trajectory:
            self.trajectory.append((step, self.mixer.weights.tolist()))
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
            if self.trajectory[-1][0] == step:
                self.trajectory.pop()
            self.trajectory.append((step, self.mixer.weights.tolist()))
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
            self.trajectory.append((step + 1, self.mixer.weights.tolist()))

    def _log_weights(self, update_logs: dict[str, float]) -> None:
        metrics = {f"mixer/{key}": float(value) for key, value in update_logs.items()}
        metrics["mixer/weight_entropy"] = weight_entropy(self.mixer.weights)
        if len(self.mixer.weight_names) <= MAX_LOGGED_DOMAINS:
            weights = zip(self.mixer.weight_names, self.mixer.weights, strict=True)
            metrics.update({f"mixer/weight/{name}": float(w) for name, w in weights})
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
        n = len(self.eval_groups.names) + 1
        self._val_sum = torch.zeros(n, dtype=torch.float64, device=self.device)
        self._val_count = torch.zeros(n, dtype=torch.float64, device=self.device)

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        labels, tokens = batch
        losses = sequence_loss(self.model, tokens).double()
        self._val_sum.index_add_(0, labels, losses)
        self._val_count.index_add_(0, labels, torch.ones_like(losses))

    def on_validation_epoch_end(self) -> None:
        means = (self._val_sum / self._val_count).tolist()
        groups = self.eval_groups
        k = len(groups.names)
        metrics = {groups.prefix + name: means[g] for g, name in enumerate(groups.names)}
        metrics["val/generic_loss"] = float(np.mean(means[:k]))
        metrics["val/target_loss"] = means[k]
        task = self.data.task
        if task is not None:  # the specialist's multiple-choice questions (MMLU), every rank
            scores = score(
                self.model,
                task,
                self.model.cfg.context_length,
                self.train_cfg.batch_size,
                self.device,
            )
            metrics.update({f"val/{task.name}/{name}": value for name, value in scores.items()})
        self.last_metrics = metrics
        self.last_validated_step = self.global_step
        logged = {
            key: value
            for key, value in metrics.items()
            if k <= MAX_LOGGED_DOMAINS or not key.startswith(groups.prefix)
        }
        logged["val/tokens"] = float(self.batches.tokens_seen if self.batches else 0)
        # Every rank computed the same values over all eval sequences: the sync is a formality.
        self.log_dict(logged, sync_dist=True)

    # --- checkpoints --------------------------------------------------------------------------

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """The run's own state, in plain Python types and tensors (loadable with
        weights_only=True). Called on every rank; rank 0 writes the file, so each rank's own
        random state (its samplers draw different sequences) is gathered into it."""
        checkpoint["mixbench"] = {
            "mixer": self.mixer.state_dict(),
            "ranks": self._gather_objects(self._rank_state()),
            "train_seconds": self.train_seconds,
            "mixer_seconds": self.mixer_seconds,
            "trajectory": [[step, weights] for step, weights in self.trajectory],
            "initial_metrics": self.initial_metrics,
            "nonfinite_step": self.first_nonfinite_step,
        }
        self.saved_step = self.global_step

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        _count_steps_as_manual(checkpoint)
        state = checkpoint["mixbench"]
        self.setup("fit")
        self.mixer.load_state_dict(state["mixer"])
        self._load_rank_state(state)
        self.train_seconds = state["train_seconds"]
        self.mixer_seconds = state["mixer_seconds"]
        self.trajectory = [(step, list(weights)) for step, weights in state["trajectory"]]
        self.initial_metrics = state["initial_metrics"]
        self._nonfinite_step = state.get("nonfinite_step")

    def _rank_state(self) -> dict:
        """What differs between ranks: the samplers' random state and torch's (dropout)."""
        state = {"batches": self.batches.state_dict(), "torch_rng": torch.get_rng_state()}
        if self.device.type == "cuda":
            state["cuda_rng"] = torch.cuda.get_rng_state(self.device)
        return state

    def _load_rank_state(self, state: dict) -> None:
        ranks = state.get("ranks")
        if ranks is None:  # saved before each rank's state was kept: rank 0's only
            self.batches.load_state_dict(state["batches"])
            return
        if len(ranks) != self.world_size:
            raise ValueError(
                f"the checkpoint was saved by {len(ranks)} processes and this run has "
                f"{self.world_size}: a resumed run continues exactly only with as many processes "
                "(trainer.devices x trainer.num_nodes) as it started with"
            )
        mine = ranks[self.global_rank]
        self.batches.load_state_dict(mine["batches"])
        torch.set_rng_state(mine["torch_rng"])
        # Loaded before the module is moved to its device: the device it will train on.
        device = self.trainer.strategy.root_device if self._trainer else self.device
        if device.type == "cuda" and "cuda_rng" in mine:
            torch.cuda.set_rng_state(mine["cuda_rng"], device)

    def _gather_objects(self, value: object) -> list:
        """`value` of every rank, in rank order (a list of one outside a multi-process run)."""
        if self.world_size == 1 or not torch.distributed.is_initialized():
            return [value]
        gathered = [None] * self.world_size
        torch.distributed.all_gather_object(gathered, value)
        return gathered


def _count_steps_as_manual(checkpoint: dict) -> None:
    """A checkpoint saved when the module used Lightning's automatic optimization counted its
    steps there; the step count a resume continues from is now the manual loop's. Called before
    Lightning restores the loops from the same dict."""
    loop = checkpoint.get("loops", {}).get("fit_loop", {})
    manual = loop.get("epoch_loop.manual_optimization.optim_step_progress")
    automatic = loop.get("epoch_loop.automatic_optimization.optim_progress")
    if manual is not None and automatic is not None and not manual["total"]["completed"]:
        loop["epoch_loop.manual_optimization.optim_step_progress"] = automatic["optimizer"]["step"]
