"""Content-keyed artifacts on disk, built at most once even by concurrent processes.

An artifact is a directory named by a hash of everything that affects its content. It is built in
a private temporary directory next to its final place and renamed into place only when complete
(an atomic rename on one file system), under an exclusive lock, so a reader never sees half an
artifact, two processes preparing the same key do not both build it, and a failed build leaves
nothing behind and nothing else changed.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path


def stable_hash(payload: object, length: int = 16) -> str:
    """A short hex digest of a JSON-serialisable value, independent of dict order."""
    text = json.dumps(payload, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def build_once(final: Path, build: Callable[[Path], None]) -> tuple[Path, bool]:
    """``final`` after making sure it exists: if missing, ``build(tmp_dir)`` fills a fresh
    temporary directory that then becomes ``final``. Returns (final, whether this call built it).
    """
    if final.is_dir():
        return final, False
    final.parent.mkdir(parents=True, exist_ok=True)
    with open(final.parent / f".{final.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if final.is_dir():  # another process built it while we waited
            return final, False
        tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.", suffix=".tmp"))
        try:
            build(tmp)
            tmp.rename(final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return final, True


def texts_digest(texts: Iterable[str]) -> str:
    """A digest of a sequence of texts (order and boundaries included)."""
    digest = hashlib.sha256()
    for text in texts:
        data = text.encode("utf-8", errors="surrogatepass")
        digest.update(len(data).to_bytes(8, "little") + data)
    return digest.hexdigest()
