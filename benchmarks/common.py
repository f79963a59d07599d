"""Shared measurement helpers: machine facts, interleaved timing, result files.

This machine is shared and noisy, so every comparison is made in one process with the variants
interleaved (A B, B A, A B ...), and reported as medians and ratios, never as one absolute time.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def machine_info() -> dict:
    cpu = platform.processor()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [
            line.split(":", 1)[1].strip()
            for line in cpuinfo.read_text().splitlines()
            if line.startswith("model name")
        ]
        cpu = names[0] if names else cpu
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def interleaved(variants: dict[str, Callable[[], float]], repeats: int) -> dict[str, list[float]]:
    """Call each variant in turn, `repeats` rounds, the order reversed every other round (A B,
    B A, A B...): on a machine whose speed drifts, no variant always runs first. Each call
    returns its own measurement; samples are listed in round order."""
    samples: dict[str, list[float]] = {name: [] for name in variants}
    order = list(variants)
    for round_ in range(repeats):
        for name in order if round_ % 2 == 0 else reversed(order):
            samples[name].append(variants[name]())
    return samples


def median(values: list[float]) -> float:
    return statistics.median(values)


def peak_matmul_flops(size: int = 1024, repeats: int = 5) -> float:
    """Achieved fp32 FLOP/s of a large matrix product: the practical ceiling MFU is quoted against
    (a CPU has no single advertised peak that the whole stack could reach)."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return 2 * size**3 / median(times)


def write_results(name: str, payload: dict) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps({"machine": machine_info(), **payload}, indent=2) + "\n")
    return path


def print_table(title: str, columns: list[str], rows: list[list]) -> None:
    table = Table(title=title)
    for column in columns:
        table.add_column(column, justify="right" if column != columns[0] else "left", no_wrap=True)
    for row in rows:
        table.add_row(*(f"{v:.3g}" if isinstance(v, float) else str(v) for v in row))
    Console(width=160).print(table)
