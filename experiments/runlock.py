"""One process at a time per run directory.

Two launches of one sweep into one directory (a command run twice, a requeued job beside its
still-running first start) would otherwise both train each run, both writing its checkpoints
and metric log. A run holds an exclusive `flock` on `<run dir>/train.lock` while it trains; the
kernel releases it when the process ends, however it ends, so a killed run never leaves a stale
lock. A launch that finds the lock taken skips the run.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO

LOCK_FILE = "train.lock"


def lock_run_dir(run_dir: Path) -> IO | None:
    """The open lock file of `run_dir`, held until it is closed; None when another process
    holds it (`lock_holder` says which)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = open(run_dir / LOCK_FILE, "a+")  # noqa: SIM115 (held open beyond this function)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        return None
    lock.truncate(0)
    lock.write(f"{os.getpid()}\n")
    lock.flush()
    return lock


def lock_holder(run_dir: Path) -> str:
    """The process id written by the process holding the lock ("?" if unknown)."""
    try:
        return (run_dir / LOCK_FILE).read_text().strip() or "?"
    except OSError:
        return "?"
