"""The names of a run's metrics: what models/lm.py logs (metrics.csv, W&B) and keeps in the run
record (`metrics_initial`, `metrics_final`), and what experiments/ and analysis/ read back.

Also which way is better for each score of a multiple-choice task (models/scoring.py).
"""

from __future__ import annotations

# Validation (models/evaluation.py).
TARGET_LOSS = "val/target_loss"  # held-out loss on the specialist set's `eval` split
GENERIC_LOSS = "val/generic_loss"  # mean of the groups' held-out losses below
DOMAIN_LOSS = "val/domain/"  # + domain name: held-out loss on one generic domain
# + coarse cluster name: held-out loss on a coarse cluster's domains (runs over more domains than
# are evaluated one by one: models/evaluation.py, EvalGroups)
COARSE_LOSS = "val/coarse/"
VAL_TOKENS = "val/tokens"  # training tokens seen at the evaluation

# Training, every `log_every_n_steps` steps.
TRAIN_LOSS = "train/loss"
TRAIN_TOKENS = "train/tokens"
PROBE_TOKENS = "train/probe_tokens"
LEARNING_RATE = "train/lr"

# The mixer, at each change of weights: `mixer/<key>` for each value its update logs, the
# weights' entropy and (up to MAX_LOGGED_DOMAINS) each weight.
MIXER = "mixer/"
WEIGHT_ENTROPY = "mixer/weight_entropy"
WEIGHT = "mixer/weight/"  # + the weight's name

# Scores of a multiple-choice task scored beside the specialist loss (MMLU subjects,
# models/scoring.py), `val/<task>/<score>` in a run's metrics, and which way is better: +1 when
# higher is, -1 when lower is (bits per byte).
TASK_SCORES = {"acc": +1, "acc_per_token": +1, "correct_prob": +1, "bpb": -1}
# A loss: lower is better.
LOSS_DIRECTION = -1


def task_score(task: str, score: str) -> str:
    """The metric key of a task's score: `val/<task>/<score>`."""
    return f"val/{task}/{score}"
