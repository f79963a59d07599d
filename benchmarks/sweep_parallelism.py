"""Runs per hour of a sweep: one run at a time with every core, or one run per core at once.

Sequential: Hydra's basic launcher, each run with `cores` torch threads. Parallel: the joblib
launcher (`hydra/launcher=parallel`, conf/hydra/launcher/parallel.yaml) with `cores` jobs, each
started with one torch thread. Each measurement is a whole `python -m experiments.train -m` of
`--runs` small runs on synthetic data in a fresh directory, from launch to exit (start-up,
validation and checkpoints included, as a findings sweep pays them); the two are interleaved
`--repeats` times, since the machine is shared, and compared by their medians. Results are kept
per run length (`--tokens`): a measurement at one length leaves the others' in the file.

    python -m benchmarks.sweep_parallelism [--runs 4] [--tokens 65536] [--repeats 2]
    python -m benchmarks.sweep_parallelism --runs 2 --tokens 1000000   # findings-length runs
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from benchmarks.common import RESULTS_DIR, interleaved, median, print_table, write_results

ROOT = Path(__file__).resolve().parents[1]


def sweep_seconds(parallel: bool, runs: int, tokens: int, cores: int) -> float:
    """Wall-clock seconds of one sweep of `runs` seeds."""
    with tempfile.TemporaryDirectory() as folder:
        command = [
            *(sys.executable, "-m", "experiments.train", "-m"),
            "data=synthetic",
            "logger=csv",
            f"train.tokens={tokens}",
            f"seed={','.join(map(str, range(runs)))}",
            f"hydra.sweep.dir={folder}",
        ]
        env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
        if parallel:  # joblib starts each of its `cores` workers with cores // n_jobs = 1 thread
            command += ["hydra/launcher=parallel", f"hydra.launcher.n_jobs={cores}"]
        else:
            env["OMP_NUM_THREADS"] = str(cores)
        started = time.perf_counter()
        subprocess.run(command, cwd=ROOT, env=env, check=True, capture_output=True)
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=4)
    parser.add_argument("--tokens", type=int, default=65_536)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    cores = os.cpu_count() or 1

    samples = interleaved(
        {
            "sequential": lambda: sweep_seconds(False, args.runs, args.tokens, cores),
            "parallel": lambda: sweep_seconds(True, args.runs, args.tokens, cores),
        },
        args.repeats,
    )
    per_hour = {name: args.runs * 3600 / median(seconds) for name, seconds in samples.items()}
    rows = [[name, median(samples[name]), per_hour[name]] for name in samples]
    print_table(
        f"A sweep of {args.runs} runs of {args.tokens:,} tokens ({cores} cores, median)",
        ["launcher", "seconds", "runs/hour"],
        rows,
    )
    print(
        f"parallel / sequential runs per hour = {per_hour['parallel'] / per_hour['sequential']:.2f}"
    )
    previous = RESULTS_DIR / "sweep_parallelism.json"
    lengths = json.loads(previous.read_text())["lengths"] if previous.exists() else {}
    lengths[str(args.tokens)] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "settings": {"runs": args.runs, "tokens": args.tokens, "cores": cores},
        "seconds": samples,
        "runs_per_hour": per_hour,
        "parallel_over_sequential": per_hour["parallel"] / per_hour["sequential"],
    }
    path = write_results(
        "sweep_parallelism", {"lengths": dict(sorted(lengths.items(), key=lambda kv: int(kv[0])))}
    )
    print(f"written: {path}")


if __name__ == "__main__":
    main()
