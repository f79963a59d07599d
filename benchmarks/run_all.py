"""`make bench`: every benchmark, each in its own process, results in benchmarks/results/."""

from __future__ import annotations

import subprocess
import sys

BENCHMARKS = [
    "benchmarks.throughput",
    "benchmarks.mixer_overhead",
    "benchmarks.prepare",
    "benchmarks.sweep_parallelism",
    "benchmarks.ddp_scaling",
]


def main() -> int:
    failed = []
    for module in BENCHMARKS:
        print(f"\n=== {module}", flush=True)
        if subprocess.run([sys.executable, "-m", module]).returncode != 0:
            failed.append(module)
    print("\n=== summary (README tables)", flush=True)
    subprocess.run([sys.executable, "-m", "benchmarks.summary"])
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
