"""Data-parallel scaling on this machine: training tokens/s of one process against DDP.

One process with every core as torch threads, against `trainer=ddp` (conf/trainer/ddp.yaml: one
process per core over gloo, Lightning giving each cores / processes threads). Each measurement
is a whole `python -m experiments.train` run on synthetic data, uniform mixer, the same tokens
in all; its speed is the run's own record: training tokens (all ranks) / seconds spent in
training steps (validation, start-up and checkpoints excluded). The two are interleaved
`--repeats` times, since the machine is shared, and compared by their medians.

On GPUs the same comparison is `trainer=gpu` against `trainer=gpu_ddp trainer.devices=<n>`
(`--gpus n`): tokens/s per device, and the scaling efficiency tokens/s(n) / (n * tokens/s(1)).

    python -m benchmarks.ddp_scaling [--tokens 262144] [--repeats 3] [--gpus 0]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.common import interleaved, median, print_table, write_results

ROOT = Path(__file__).resolve().parents[1]


def tokens_per_second(overrides: list[str], tokens: int) -> float:
    with tempfile.TemporaryDirectory() as folder:
        command = [
            *(sys.executable, "-m", "experiments.train"),
            "data=synthetic",
            "logger=csv",
            f"train.tokens={tokens}",
            f"train.eval_every={10**9}",
            f"hydra.run.dir={folder}",
            *overrides,
        ]
        env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
        subprocess.run(command, cwd=ROOT, env=env, check=True, capture_output=True)
        record = json.loads((Path(folder) / "results.json").read_text())
    return record["tokens_trained"] / record["train_seconds"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=262_144)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--gpus", type=int, default=0, help="0: CPU processes, one per core")
    args = parser.parse_args()
    if args.gpus:
        processes = args.gpus
        single, parallel = ["trainer=gpu"], ["trainer=gpu_ddp", f"trainer.devices={args.gpus}"]
    else:
        processes = os.cpu_count() or 1
        single, parallel = [], ["trainer=ddp", f"trainer.devices={processes}"]

    samples = interleaved(
        {
            "one process": lambda: tokens_per_second(single, args.tokens),
            f"ddp, {processes} processes": lambda: tokens_per_second(parallel, args.tokens),
        },
        args.repeats,
    )
    one, ddp = (median(v) for v in samples.values())
    print_table(
        f"Training tokens/s, {args.tokens:,} tokens (median of {args.repeats})",
        ["run", "tokens/s"],
        [[name, median(v)] for name, v in samples.items()],
    )
    print(
        f"ddp / one process = {ddp / one:.2f}; efficiency per process {ddp / one / processes:.2f}"
    )
    path = write_results(
        "ddp_scaling_gpu" if args.gpus else "ddp_scaling",
        {
            "settings": {"tokens": args.tokens, "processes": processes, "gpus": args.gpus},
            "tokens_per_s": samples,
            "median_tokens_per_s": {"one": one, "ddp": ddp},
            "ddp_over_one": ddp / one,
            "efficiency_per_process": ddp / one / processes,
        },
    )
    print(f"written: {path}")


if __name__ == "__main__":
    main()
