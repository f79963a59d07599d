"""Evaluation: what a validation pass scores, and the metrics it reports (models/metric_keys.py).

Every held-out sequence of each evaluation group (capped per group) and every sequence of the
specialist `eval` split is scored by its mean token loss; a group's loss is the mean over its
sequences, the generic loss the mean over the groups, the target loss the specialist split's.
A specialist set of multiple-choice questions (MMLU) is scored too (models/scoring.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from domains.data import DomainData, MultipleChoiceTask
from models.gpt import sequence_loss
from models.metric_keys import COARSE_LOSS, DOMAIN_LOSS, GENERIC_LOSS, TARGET_LOSS, task_score

# Per-domain validation losses are logged as metrics up to this many domains; beyond it they are
# kept only in results.json (thousands of metric keys make W&B and the CSV log unusable). Beyond
# it, domains from a two-level clustering are evaluated per coarse cluster instead (EvalGroups).
MAX_LOGGED_DOMAINS = 128


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
                DOMAIN_LOSS, list(data.names), [np.array([d]) for d in range(data.num_domains)]
            )
        clusters, cluster_of = np.unique(data.coarse_of, return_inverse=True)
        rng = np.random.default_rng(0)  # the same sequences for every run on these domains
        return cls(
            COARSE_LOSS,
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

    def logged(self, metrics: dict[str, float]) -> dict[str, float]:
        """The metrics sent to the loggers: each group's loss only up to MAX_LOGGED_DOMAINS
        groups (all of them stay in the run's results)."""
        return {
            key: value
            for key, value in metrics.items()
            if len(self.names) <= MAX_LOGGED_DOMAINS or not key.startswith(self.prefix)
        }


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


class Evaluation:
    """One validation pass: the summed losses and counts of each group's sequences (and of the
    specialist split's, last), on the device; every rank evaluates every sequence."""

    def __init__(self, groups: EvalGroups, device):
        self.groups = groups
        n = len(groups.names) + 1
        self.sums = torch.zeros(n, dtype=torch.float64, device=device)
        self.counts = torch.zeros(n, dtype=torch.float64, device=device)

    def add(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> None:
        """A batch of EvalSequences: its labels and sequences."""
        labels, tokens = batch
        losses = sequence_loss(model, tokens).double()
        self.sums.index_add_(0, labels, losses)
        self.counts.index_add_(0, labels, torch.ones_like(losses))

    def metrics(self) -> dict[str, float]:
        """Each group's loss, the generic loss (their mean) and the target loss."""
        means = (self.sums / self.counts).tolist()
        groups = self.groups
        k = len(groups.names)
        metrics = {groups.prefix + name: means[g] for g, name in enumerate(groups.names)}
        metrics[GENERIC_LOSS] = float(np.mean(means[:k]))
        metrics[TARGET_LOSS] = means[k]
        return metrics


def task_metrics(task: MultipleChoiceTask, questions: dict[str, np.ndarray]) -> dict[str, float]:
    """The scores of the specialist's multiple-choice questions, `val/<task>/<score>`: the means
    of their per-question scores (models/scoring.py `question_scores`)."""
    return {task_score(task.name, name): float(values.mean()) for name, values in questions.items()}
