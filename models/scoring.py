"""Scoring a multiple-choice task the way the small-scale literature does.

Models this size answer multiple-choice questions at chance, so accuracy alone says little. As in
OLMES and DataDecide, each answer is scored by its log-likelihood as a continuation of the
question's prompt, and from those log-likelihoods come:

- `acc`: accuracy when the choice with the highest log-likelihood per UTF-8 byte is picked;
- `acc_per_token`: the same, normalised per token instead;
- `correct_prob`: the probability mass on the correct answer, softmax over the choices'
  log-likelihoods (a smooth version of accuracy);
- `bpb`: bits per byte of the correct answer, -log2 p(answer | prompt) / bytes (lower is better).

Each is the mean over questions (`score`); `question_scores` gives every question's, which a run
keeps (task_questions.csv) so that an interval can resample the questions as well as the seeds
(analysis/task_intervals.py). Which way is better for each: models/metric_keys.py, TASK_SCORES.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from domains.data import MultipleChoiceTask
from models.gpt import token_losses
from models.metric_keys import TASK_SCORES

METRICS = tuple(TASK_SCORES)


def _sequences(task: MultipleChoiceTask, context_length: int):
    """Every (prompt + choice) as one token sequence of at most context_length + 1 tokens (the
    prompt loses its first tokens if need be), with how many of its last tokens are the choice."""
    for prompt, choices in zip(task.prompts, task.choices, strict=True):
        for choice in choices:
            tokens = np.concatenate([prompt, choice])[-(context_length + 1) :]
            yield tokens, min(len(choice), len(tokens) - 1)


@torch.no_grad()
def choice_log_likelihoods(
    model: nn.Module, task: MultipleChoiceTask, context_length: int, batch_size: int, device=None
) -> tuple[np.ndarray, np.ndarray]:
    """The log-likelihood (nats) of every choice after its prompt, and its length in tokens; both
    flat over questions then choices. Sequences are batched by length (less padding)."""
    sequences = list(_sequences(task, context_length))
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i][0]))
    log_likelihoods = np.zeros(len(sequences))
    was_training = model.training
    model.eval()
    for start in range(0, len(order), batch_size):
        batch = order[start : start + batch_size]
        width = max(len(sequences[i][0]) for i in batch)
        tokens = torch.zeros(len(batch), width, dtype=torch.long)
        mask = torch.zeros(len(batch), width - 1, dtype=torch.float64)
        for row, i in enumerate(batch):
            ids, answer_tokens = sequences[i]
            tokens[row, : len(ids)] = torch.from_numpy(ids.astype(np.int64))
            # The loss at position t is that of token t + 1: the choice's tokens are the last
            # `answer_tokens` of this row's real tokens.
            mask[row, len(ids) - 1 - answer_tokens : len(ids) - 1] = 1
        losses = token_losses(model, tokens.to(device)).double().cpu()
        log_likelihoods[batch] = -(losses * mask).sum(dim=1).numpy()
    model.train(was_training)
    return log_likelihoods, np.array([length for _, length in sequences])


def question_scores(
    model: nn.Module, task: MultipleChoiceTask, context_length: int, batch_size: int, device=None
) -> dict[str, np.ndarray]:
    """Each of the task's `METRICS` for `model`, question by question (arrays in task order)."""
    log_likelihoods, lengths = choice_log_likelihoods(
        model, task, context_length, batch_size, device
    )
    byte_counts = np.array([b for question in task.choice_bytes for b in question], dtype=float)
    ends = np.cumsum([len(choices) for choices in task.choices])
    scores = {name: np.zeros(len(task)) for name in METRICS}
    for q, (end, choices, answer) in enumerate(zip(ends, task.choices, task.answers, strict=True)):
        own = slice(end - len(choices), end)
        ll, size = log_likelihoods[own], byte_counts[own]
        scores["acc"][q] = float(np.argmax(ll / size) == answer)
        scores["acc_per_token"][q] = float(np.argmax(ll / lengths[own]) == answer)
        shifted = np.exp(ll - ll.max())
        scores["correct_prob"][q] = shifted[answer] / shifted.sum()
        scores["bpb"][q] = -ll[answer] / (math.log(2) * size[answer])
    return scores


def score(
    model: nn.Module, task: MultipleChoiceTask, context_length: int, batch_size: int, device=None
) -> dict[str, float]:
    """The task's `METRICS` for `model`: the means over its questions."""
    questions = question_scores(model, task, context_length, batch_size, device)
    return {name: float(values.mean()) for name, values in questions.items()}
