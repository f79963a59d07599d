"""Checkpoints that survive a kill mid-save, and the choice of which one a run resumes from.

A checkpoint is written to a temporary file in the same folder and renamed over `last.ckpt`; the
checkpoint it replaces is kept as `previous.ckpt`. A kill during a save therefore leaves the old
`last.ckpt` (or, between the two renames, `previous.ckpt`) intact, and a `last.ckpt` truncated
by anything else is skipped with a warning in favour of `previous.ckpt`.

Checkpoints are read with `torch.load(weights_only=True)`: the run's own state is stored in
plain Python types (models/lm.py), and a file that is not a mixbench checkpoint is refused.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path
from typing import Any, NamedTuple

import torch
from lightning.fabric.plugins import TorchCheckpointIO

LAST, PREVIOUS = "last.ckpt", "previous.ckpt"


class UnusableCheckpoint(ValueError):
    """A file that cannot be read as a mixbench checkpoint."""


class Resumable(NamedTuple):
    """A checkpoint found readable, and the training step it was saved at."""

    path: Path
    step: int


class KeepPreviousCheckpointIO(TorchCheckpointIO):
    """Atomic saves that keep the replaced file as `previous.ckpt`; loads with weights_only."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options=None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            if path.exists():
                os.replace(path, path.with_name(PREVIOUS))
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def load_checkpoint(self, path, map_location=None, weights_only=None) -> dict[str, Any]:
        return load_checkpoint(Path(path))


def load_checkpoint(path: Path) -> dict[str, Any]:
    """A mixbench checkpoint's contents (CPU tensors), or UnusableCheckpoint saying why not."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # truncated zip, not a torch file, unsafe pickle...
        raise UnusableCheckpoint(
            f"{path} is unreadable ({type(error).__name__}: {error})"
        ) from None
    if not isinstance(checkpoint, dict) or "mixbench" not in checkpoint:
        raise UnusableCheckpoint(f"{path} is not a mixbench checkpoint (no run state in it)")
    return checkpoint


def resume_checkpoint(resume: str | None, run_dir: Path) -> Resumable | None:
    """The checkpoint a run continues from: None (start fresh), `auto` (the run directory's
    last checkpoint, else the previous one, with a warning), or a given file. It is read once
    here, to check it and to learn its step."""
    if resume is None:
        return None
    if resume != "auto":
        path = Path(resume)
        if not path.is_file():
            raise FileNotFoundError(f"train.resume: no checkpoint at {path}")
        try:
            return Resumable(path, load_checkpoint(path)["global_step"])
        except UnusableCheckpoint as error:
            raise UnusableCheckpoint(f"train.resume: {error}") from None
    folder = run_dir / "checkpoints"
    candidates = [folder / name for name in (LAST, PREVIOUS) if (folder / name).exists()]
    problems = []
    for path in candidates:
        try:
            step = load_checkpoint(path)["global_step"]
        except UnusableCheckpoint as error:
            problems.append(str(error))
            continue
        if problems:
            warnings.warn(f"{problems[0]}; resuming from {path} instead", stacklevel=2)
        return Resumable(path, step)
    if problems:
        raise UnusableCheckpoint(
            f"no usable checkpoint in {folder}: {'; '.join(problems)}. Delete that folder to "
            "start the run over, or pass train.resume=null"
        )
    return None
