"""The machine-readable record of a run: `results.json` (one definition, `RunRecord`, written by
experiments/train.py and read by analysis/) and the weight trajectory.

`results.json` is written when a run starts (status "running"), and rewritten when it ends as
"completed", "diverged" (final losses not finite), "preempted" or "failed" (with the error),
always atomically, so a reader never sees half a file and a killed run still shows up as
unfinished.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

SCHEMA_VERSION = 2
RESULTS_FILE = "results.json"
TRAJECTORY_FILE = "weights.csv"
METRICS_FILE = "metrics.csv"
# Each multiple-choice question's scores at the final validation (runs with a task only).
TASK_QUESTIONS_FILE = "task_questions.csv"

NAN = math.nan


@dataclass
class RunRecord:
    """Everything results.json holds. Fields a run has not reached yet (or an older record does
    not have) keep their defaults: NaN for numbers, None or empty for the rest."""

    status: str = "unknown"  # running, completed, diverged, preempted or failed
    # {"type", "message", "traceback"} of a failed run; what a diverged run's losses did.
    error: dict | str | None = None
    # A diverged run (final losses not finite): its first training step with a non-finite loss.
    diverged_step: int | None = None
    run_dir: str | None = None
    mixer: str = "?"
    # The mixer and the options it was given that differ from `mixer=<name>`'s defaults, e.g.
    # `dga[beta=0.5]` (experiments/config.py `mixer_label`): how analysis names a variant.
    mixer_label: str | None = None
    seed: int | None = None
    config: dict = field(default_factory=dict)  # the resolved Hydra config
    schema_version: int = SCHEMA_VERSION
    wall_clock_s: float = NAN
    steps: int | float = NAN
    max_steps: int | float = NAN
    tokens_trained: int | float = NAN
    probe_tokens: int | float = NAN
    # Cost in FLOPs (models/batches.py): the mixer's extra passes, the training steps, and what
    # was spent before this run to produce what its mixer uses (a reference model, a swarm, a
    # proxy run: `Mixer.upstream_flops`).
    mixer_flops: int | float = NAN
    train_flops: int | float = NAN
    upstream_flops: int | float = NAN
    train_seconds: float = NAN
    mixer_seconds: float = NAN
    metrics_initial: dict | None = None
    metrics_final: dict | None = None
    final_weights: dict | None = None
    time_averaged_weights: dict | None = None
    # The weights before any update, the largest time-averaged weight, and whether the run
    # collapsed onto a component it did not start on (mixers/collapse.py); None when unknown.
    initial_weights: dict | None = None
    time_averaged_max_weight: float = NAN
    collapsed: bool | None = None
    final_domain_weights: dict | None = None
    # The mixture over the domains that a fresh model should sample to reuse the mixer's choice
    # (also in the run's mixture file, mixers/mixture_file.py).
    final_mixture: dict | None = None
    time_averaged_mixture: dict | None = None
    domain_epochs: dict | None = None
    ranks: dict | None = None
    domain_tokens: dict | None = None
    domain_labels: dict | None = None
    model: dict | None = None
    data: dict | None = None
    files: dict = field(
        default_factory=lambda: {"trajectory": TRAJECTORY_FILE, "metrics": METRICS_FILE}
    )
    torch_version: str | None = None

    @classmethod
    def from_dict(cls, content: dict) -> RunRecord:
        """A record from the contents of a results.json (keys it does not know are ignored:
        a newer writer's extra fields do not make the file unreadable)."""
        if not isinstance(content, dict):
            raise ValueError(f"a results record is a JSON object, got {type(content).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        record = cls(**{key: value for key, value in content.items() if key in names})
        if not isinstance(record.config, dict):
            raise ValueError(f"the record's config is not a mapping: {record.config!r}")
        return record

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def update(self, **values) -> None:
        for key, value in values.items():
            if not hasattr(self, key):
                raise AttributeError(f"RunRecord has no field {key!r}")
            setattr(self, key, value)


def write_json_atomic(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(payload, f, indent=2, allow_nan=True)
        f.write("\n")
    os.replace(tmp, path)


def write_record(run_dir: Path, record: RunRecord) -> None:
    write_json_atomic(Path(run_dir) / RESULTS_FILE, record.to_dict())


def read_record(run_dir: Path) -> RunRecord:
    with open(Path(run_dir) / RESULTS_FILE) as f:
        return RunRecord.from_dict(json.load(f))


def write_trajectory(path: Path, names: list[str], rows: list[tuple[int, list[float]]]) -> None:
    """One row per weight update: the step and the mixer's weight on each component."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["step", *names])
        for step, weights in rows:
            writer.writerow([step, *(f"{w:.8g}" for w in weights)])


def write_task_questions(path: Path, questions: dict[str, list[float]]) -> None:
    """One row per question, in the task's order: its index and each of its scores."""
    names = list(questions)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["question", *names])
        for q, scores in enumerate(zip(*questions.values(), strict=True)):
            writer.writerow([q, *(f"{value:.8g}" for value in scores)])


def read_results(run_dir: Path) -> dict:
    """The record as a plain dict, every field present (for code that indexes it by key)."""
    return read_record(run_dir).to_dict()
