"""The machine-readable record of a run: `results.json` and the weight trajectory.

`results.json` is written when a run starts (status "running"), and rewritten when it ends as
"completed" or "failed" (with the error), always atomically, so a reader never sees half a file
and a killed run still shows up as unfinished.
"""

from __future__ import annotations

import csv
import json
import os
import tempfile
from pathlib import Path

SCHEMA_VERSION = 1
RESULTS_FILE = "results.json"
TRAJECTORY_FILE = "weights.csv"
METRICS_FILE = "metrics.csv"


def write_json_atomic(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(payload, f, indent=2, allow_nan=True)
        f.write("\n")
    os.replace(tmp, path)


def write_trajectory(path: Path, names: list[str], rows: list[tuple[int, list[float]]]) -> None:
    """One row per weight update: the step and the mixer's weight on each component."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["step", *names])
        for step, weights in rows:
            writer.writerow([step, *(f"{w:.8g}" for w in weights)])


def read_results(run_dir: Path) -> dict:
    with open(Path(run_dir) / RESULTS_FILE) as f:
        return json.load(f)
