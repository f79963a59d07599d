"""The LightningModule: a GPT trained on a mixture of domains decided by a mixer.

Why batches are drawn inside `training_step` rather than by a DataLoader: the mixture weights can
change at any step, and Lightning fetches one batch ahead. Drawing here means a mixer's update
takes effect at the very next batch and the sampler state in a checkpoint matches the steps
actually taken, so a resumed run continues exactly. The train DataLoader only yields step numbers.
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset

from domains.data import DomainData
from domains.sampler import MixtureSampler
from mixers.base import Mixer, UpdateContext
from models.gpt import GPT, GPTConfig, sequence_loss

# Per-domain validation losses are logged as metrics up to this many domains; beyond it they are
# kept only in results.json (thousands of metric keys make W&B and the CSV log unusable).
MAX_LOGGED_DOMAINS = 128


@dataclass
class TrainConfig:
    # Training-token budget (global, all processes); steps = tokens / (batch_size * L * world).
    tokens: int = 200_000
    batch_size: int = 16
    lr: float = 3e-3
    min_lr_ratio: float = 0.1
    warmup_fraction: float = 0.05
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0
    eval_every: int = 50
    eval_sequences_per_domain: int = 32
    log_every: int = 10
    checkpoint_every: int = 100
    # "auto": continue from the run directory's last checkpoint if there is one (and skip a run
    # that already completed there); None: always start fresh; else a checkpoint path.
    resume: str | None = "auto"


def derive_seed(*keys: int) -> int:
    """An independent 63-bit seed for each purpose (train sampler, probes...) from the run seed."""
    return int(np.random.SeedSequence(list(keys)).generate_state(2, np.uint64)[0] >> np.uint64(1))


class _StepCounter(IterableDataset):
    def __iter__(self):
        return itertools.count()


class EvalSequences(Dataset):
    """Held-out sequences of every domain (capped per domain) and the specialist `eval` split,
    each labelled with its source: domain index, or k for the specialist set."""

    def __init__(self, data: DomainData, per_domain: int):
        self.sources = [*data.heldout, data.target_eval]
        self.items = [
            (label, j)
            for label, seqs in enumerate(self.sources)
            for j in range(len(seqs) if label == data.num_domains else min(per_domain, len(seqs)))
        ]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[int, torch.Tensor]:
        label, j = self.items[i]
        return label, torch.from_numpy(self.sources[label][[j]][0])


class MixtureLM(L.LightningModule):
    def __init__(
        self,
        model_cfg: GPTConfig,
        train_cfg: TrainConfig,
        data: DomainData,
        mixer: Mixer,
        seed: int,
        max_steps: int,
    ):
        super().__init__()
        self.model = GPT(model_cfg)
        self.train_cfg = train_cfg
        self.data = data
        self.mixer = mixer
        self.seed = seed
        self.max_steps = max_steps
        self.tokens_seen = 0
        self.probe_tokens = 0
        # Seconds spent in training steps (mixer updates included, validation not): the fair
        # basis for comparing mixers' overhead, and carried across resumes.
        self.train_seconds = 0.0
        self.trajectory: list[tuple[int, list[float]]] = []
        self.initial_metrics: dict[str, float] | None = None
        self.last_metrics: dict[str, float] | None = None
        self.last_validated_step = -1
        self.train_sampler: MixtureSampler | None = None
        # Per-rank final mixer weights and domain epochs, [world_size, n] (see on_train_end).
        self.rank_weights: np.ndarray | None = None
        self.rank_epochs: np.ndarray | None = None

    # --- set-up -------------------------------------------------------------------------------

    def setup(self, stage: str) -> None:
        if self.train_sampler is not None:
            return
        # Each rank draws its own sequences; mixer decisions are synchronised by the mixer.
        sizes = [len(s) for s in self.data.train]
        rank = self.global_rank
        self.train_sampler = MixtureSampler(sizes, derive_seed(self.seed, 0, rank))
        self.probe_sampler = MixtureSampler(sizes, derive_seed(self.seed, 1, rank))
        self.specialist_rng = np.random.default_rng(derive_seed(self.seed, 2, rank))

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
        return DataLoader(_StepCounter(), batch_size=None)

    def val_dataloader(self) -> DataLoader:
        # Every rank evaluates every sequence: exact metrics, no padding duplicates.
        dataset = EvalSequences(self.data, self.train_cfg.eval_sequences_per_domain)
        return DataLoader(dataset, batch_size=self.train_cfg.batch_size, shuffle=False)

    # --- batches ------------------------------------------------------------------------------

    @property
    def world_size(self) -> int:
        return self.trainer.world_size if self._trainer is not None else 1

    def _tokens(self, domains: np.ndarray, indices: np.ndarray) -> torch.Tensor:
        rows = np.empty((len(domains), self.data.seq_len + 1), dtype=np.int64)
        for d in np.unique(domains):
            mask = domains == d
            rows[mask] = self.data.train[d][indices[mask]]
        return torch.from_numpy(rows).to(self.device)

    def _probe(self, dist: np.ndarray, n: int) -> torch.Tensor:
        domains, indices = self.probe_sampler.draw(dist, n)
        self.probe_tokens += n * self.data.seq_len * self.world_size
        return self._tokens(domains, indices)

    def _specialist(self, n: int) -> torch.Tensor:
        size = len(self.data.target_train)
        index = self.specialist_rng.choice(size, size=n, replace=n > size)
        self.probe_tokens += n * self.data.seq_len * self.world_size
        return torch.from_numpy(self.data.target_train[index]).to(self.device)

    def _all_reduce_mean(self, tensor: torch.Tensor) -> torch.Tensor:
        if self._trainer is None:  # outside a Trainer (benchmarks): one process
            return tensor
        return self.trainer.strategy.reduce(tensor, reduce_op="mean")

    def update_context(
        self, step: int, tokens: torch.Tensor, domains: torch.Tensor
    ) -> UpdateContext:
        """What the mixer sees at an update, given the training batch about to be trained on."""
        lr = self.optimizers().param_groups[0]["lr"] if self._trainer else self.train_cfg.lr
        return UpdateContext(
            step=step,
            lr=lr,
            model=self.model,
            sequence_loss=lambda t: sequence_loss(self.model, t),
            train_batch=tokens,
            train_domains=domains,
            probe=self._probe,
            specialist=self._specialist,
            all_reduce_mean=self._all_reduce_mean,
        )

    # --- training -----------------------------------------------------------------------------

    def on_train_batch_start(self, batch: int, batch_idx: int) -> None:
        self._step_started = time.perf_counter()

    def on_train_batch_end(self, outputs, batch: int, batch_idx: int) -> None:
        self.train_seconds += time.perf_counter() - self._step_started

    def training_step(self, _step: int, batch_idx: int) -> torch.Tensor:
        step = self.global_step
        domain_ids, indices = self.train_sampler.draw(
            self.mixer.domain_weights(), self.train_cfg.batch_size
        )
        tokens = self._tokens(domain_ids, indices)
        domains = torch.from_numpy(domain_ids).to(self.device)
        if not self.trajectory:
            self.trajectory.append((step, self.mixer.weights.tolist()))
        if self.mixer.should_update(step):
            ctx = self.update_context(step, tokens, domains)
            update_logs = self.mixer.update(ctx)
            self.trajectory.append((step, self.mixer.weights.tolist()))
            self._log_weights(update_logs)

        losses = sequence_loss(self.model, tokens)
        loss = self.mixer.training_loss(losses, domains)
        self.mixer.observe_step()
        self.tokens_seen += tokens.shape[0] * self.data.seq_len * self.world_size
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/tokens", float(self.tokens_seen), reduce_fx="max")
        self.log("train/probe_tokens", float(self.probe_tokens), reduce_fx="max")
        self.log("train/lr", self.optimizers().param_groups[0]["lr"])
        return loss

    def _log_weights(self, update_logs: dict[str, float]) -> None:
        metrics = {f"mixer/{key}": float(value) for key, value in update_logs.items()}
        if len(self.mixer.weight_names) <= MAX_LOGGED_DOMAINS:
            weights = zip(self.mixer.weight_names, self.mixer.weights, strict=True)
            metrics.update({f"mixer/weight/{name}": float(w) for name, w in weights})
        if metrics:
            self.log_dict(metrics)

    def on_train_end(self) -> None:
        """Gather every rank's final weights (they must agree) and epochs (ranks draw different
        sequences, so the data actually repeated is the sum over ranks)."""

        def gather(values: np.ndarray) -> np.ndarray:
            gathered = self.trainer.strategy.all_gather(torch.from_numpy(values).to(self.device))
            return gathered.reshape(-1, len(values)).cpu().numpy()

        self.rank_weights = gather(self.mixer.weights)
        self.rank_epochs = gather(self.train_sampler.epochs())

    # --- validation ---------------------------------------------------------------------------

    def on_validation_epoch_start(self) -> None:
        n = self.data.num_domains + 1
        self._val_sum = torch.zeros(n, dtype=torch.float64, device=self.device)
        self._val_count = torch.zeros(n, dtype=torch.float64, device=self.device)

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        labels, tokens = batch
        losses = sequence_loss(self.model, tokens).double()
        self._val_sum.index_add_(0, labels, losses)
        self._val_count.index_add_(0, labels, torch.ones_like(losses))

    def on_validation_epoch_end(self) -> None:
        means = (self._val_sum / self._val_count).tolist()
        k = self.data.num_domains
        metrics = {f"val/domain/{name}": means[d] for d, name in enumerate(self.data.names)}
        metrics["val/generic_loss"] = float(np.mean(means[:k]))
        metrics["val/target_loss"] = means[k]
        self.last_metrics = metrics
        self.last_validated_step = self.global_step
        logged = {
            key: value
            for key, value in metrics.items()
            if k <= MAX_LOGGED_DOMAINS or not key.startswith("val/domain/")
        }
        logged["val/tokens"] = float(self.tokens_seen)
        # Every rank computed the same values over all eval sequences: the sync is a formality.
        self.log_dict(logged, sync_dist=True)

    # --- checkpoints --------------------------------------------------------------------------

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["mixbench"] = {
            "mixer": self.mixer.state_dict(),
            "train_sampler": self.train_sampler.state_dict(),
            "probe_sampler": self.probe_sampler.state_dict(),
            "specialist_rng": self.specialist_rng.bit_generator.state,
            "tokens_seen": self.tokens_seen,
            "probe_tokens": self.probe_tokens,
            "train_seconds": self.train_seconds,
            "trajectory": self.trajectory,
            "initial_metrics": self.initial_metrics,
        }

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        state = checkpoint["mixbench"]
        self.setup("fit")
        self.mixer.load_state_dict(state["mixer"])
        self.train_sampler.load_state_dict(state["train_sampler"])
        self.probe_sampler.load_state_dict(state["probe_sampler"])
        self.specialist_rng.bit_generator.state = state["specialist_rng"]
        self.tokens_seen = state["tokens_seen"]
        self.probe_tokens = state["probe_tokens"]
        self.train_seconds = state["train_seconds"]
        self.trajectory = [(step, list(w)) for step, w in state["trajectory"]]
        self.initial_metrics = state["initial_metrics"]
