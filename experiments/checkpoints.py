"""Checkpoints that survive a kill mid-save, and the choice of which one a run resumes from.

A checkpoint is written to a temporary file in the same folder and renamed over `last.ckpt`; the
checkpoint it replaces is kept as `previous.ckpt`. A kill during a save therefore leaves the old
`last.ckpt` (or, between the two renames, `previous.ckpt`) intact, and a `last.ckpt` truncated
by anything else is skipped with a warning in favour of `previous.ckpt`.

Checkpoints are read with `torch.load(weights_only=True)`: the run's own state is stored in
plain Python types (models/lm.py), and a file that is not a mixbench checkpoint is refused.
"""

from __future__ import annotations

import errno
import os
import tempfile
import warnings
import zipfile
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
            if _intact(path):  # an unreadable last.ckpt must not replace a good fallback
                os.replace(path, path.with_name(PREVIOUS))
            elif path.exists():
                warnings.warn(
                    f"{path} is unreadable; replacing it, keeping {PREVIOUS}", stacklevel=2
                )
            os.replace(tmp, path)
        except BaseException as error:
            Path(tmp).unlink(missing_ok=True)
            if _no_space(error):  # torch words it as "enforce fail at inline_container.cc..."
                raise OSError(
                    errno.ENOSPC, f"No space left on device: could not save checkpoint {path}"
                ) from None
            raise

    def load_checkpoint(self, path, map_location=None, weights_only=None) -> dict[str, Any]:
        return load_checkpoint(Path(path))


def _intact(path: Path) -> bool:
    """Whether `path` is a whole checkpoint file: a zip archive (torch's format) with its
    directory at the end, which a truncated file lacks. Reads the directory, not the tensors."""
    try:
        with zipfile.ZipFile(path) as archive:
            return any(name.endswith("/data.pkl") for name in archive.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


def _no_space(error: BaseException | None) -> bool:
    """Whether `error`, or an error it was raised from, says that the disk is full."""
    while error is not None:
        if isinstance(error, OSError) and error.errno == errno.ENOSPC:
            return True
        if "No space left on device" in str(error):
            return True
        error = error.__cause__ or error.__context__
    return False


def load_checkpoint(path: Path, mmap: bool = False) -> dict[str, Any]:
    """A mixbench checkpoint's contents (CPU tensors; with `mmap`, mapped from the file rather
    than read), or UnusableCheckpoint saying why not."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as error:  # truncated zip, not a torch file, unsafe pickle...
        raise UnusableCheckpoint(
            f"{path} is unreadable ({type(error).__name__}: {error})"
        ) from None
    if not isinstance(checkpoint, dict) or "mixbench" not in checkpoint:
        raise UnusableCheckpoint(f"{path} is not a mixbench checkpoint (no run state in it)")
    return checkpoint


def check_resume_file(path: Path, mmap: bool = True) -> dict[str, Any]:
    """The checkpoint `train.resume` names, or an error saying why it cannot be resumed from
    (checked with the config, before any data is prepared: mapped, not read, by default)."""
    if not path.is_file():
        raise FileNotFoundError(f"train.resume: no checkpoint at {path}")
    try:
        return load_checkpoint(path, mmap=mmap)
    except UnusableCheckpoint as error:
        raise UnusableCheckpoint(f"train.resume: {error}") from None


def resume_checkpoint(resume: str | None, run_dir: Path) -> Resumable | None:
    """The checkpoint a run continues from: None (start fresh), `auto` (the run directory's
    last checkpoint, else the previous one, with a warning), or a given file. It is read once
    here, to check it and to learn its step."""
    if resume is None:
        return None
    if resume != "auto":
        path = Path(resume)
        return Resumable(path, check_resume_file(path)["global_step"])
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
