"""Prepared text domains on disk, and loading them back as a `DomainData`.

An artifact folder holds:
- `shards/generic.train.bin`, `shards/generic.heldout.bin`, `shards/specialist.train.bin`,
  `shards/specialist.eval.bin`: flat uint16 (uint32 for vocabularies over 65,536) token arrays,
  read as memmaps. A generic shard holds every domain's section one after another (the
  manifest's `train_start`/`train_tokens` and `heldout_start`/`heldout_tokens` per domain): one
  file per split however many domains there are (the paper's 262,144 would otherwise be half a
  million files). A section is read in `TokenSequences`' layout (sequence j = tokens[j*L :
  j*L+L+1]). Each chunk's tokens are followed by EOS: chunks of one document may land in
  different domains, so within a section every chunk is a text of its own.
- `chunks.parquet`, the index: one row per chunk with its document id, domain (-1 for the
  specialist set), split, and where its tokens start in its shard and how many there are.
- `specialist_train_domain.npy`: the nearest domain of every specialist `train` sequence.
- `task.npz`, when the specialist set is a multiple-choice task (MMLU subjects): its questions'
  prompts and choices as token arrays, the choices' UTF-8 byte counts and the answers.
- `clustering.npz` (centroids, to assign new text), `tokenizer.json`, and `manifest.json`:
  sources, sizes, token counts and SHA-256 of every shard, the domains' descriptions, and the
  config that built it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from domains.cache import file_sha256
from domains.data import DomainData, MultipleChoiceTask, TokenSequences

MANIFEST_FILE = "manifest.json"
INDEX_FILE = "chunks.parquet"
CLUSTERING_FILE = "clustering.npz"
TARGET_DOMAIN_FILE = "specialist_train_domain.npy"
TASK_FILE = "task.npz"
SHARD_DIR = "shards"
# Set to 1 to check every shard against its manifest's SHA-256 when it is loaded.
VERIFY_ENV = "MIXBENCH_VERIFY_SHARDS"
GENERIC_SHARDS = {"train": "generic.train", "heldout": "generic.heldout"}
SPECIALIST_SHARDS = {"train": "specialist.train", "eval": "specialist.eval"}
INDEX_SCHEMA = pa.schema(
    [
        ("doc_id", pa.string()),
        ("domain", pa.int64()),
        ("split", pa.string()),
        ("start", pa.int64()),
        ("length", pa.int64()),
    ]
)


class ShardWriter:
    """Appends sections of packed chunks to the shards of an artifact folder and collects the
    index rows; `close` seals the shards (their manifest entries) and writes the index: the rows
    of `index_parts` (parquet files of INDEX_SCHEMA, written by other processes) first."""

    def __init__(self, folder: Path, eos: int, dtype: np.dtype, index_parts: tuple[Path, ...] = ()):
        self.folder, self.eos, self.dtype, self.index_parts = folder, eos, dtype, index_parts
        self.shards: dict[str, dict] = {}  # the manifest's entries
        self._files: dict[str, BinaryIO] = {}
        self.index: dict[str, list] = {
            k: [] for k in ("doc_id", "domain", "split", "start", "length")
        }

    def add(
        self, name: str, doc_ids: list[str], chunks: list[np.ndarray], split: str, domain: int
    ) -> tuple[int, np.ndarray]:
        """Appends a section holding ``chunks`` (token arrays) to shard ``name``; returns where
        the section starts in the shard and its tokens."""
        if name not in self._files:
            path = shard_path(self.folder, name)
            path.parent.mkdir(parents=True, exist_ok=True)
            self._files[name] = path.open("wb")
            self.shards[name] = {"tokens": 0, "dtype": self.dtype.name}
        tokens, starts = pack(chunks, self.eos, self.dtype)
        section = self.shards[name]["tokens"]
        tokens.tofile(self._files[name])
        self.shards[name]["tokens"] += len(tokens)
        self.index["doc_id"] += doc_ids
        self.index["domain"] += [domain] * len(chunks)
        self.index["split"] += [split] * len(chunks)
        self.index["start"] += (section + starts).tolist()
        self.index["length"] += [len(c) for c in chunks]
        return section, tokens

    def close(self) -> None:
        for name, file in self._files.items():
            file.close()
            self.shards[name]["sha256"] = file_sha256(shard_path(self.folder, name))
        with pq.ParquetWriter(self.folder / INDEX_FILE, INDEX_SCHEMA) as index:
            for part in self.index_parts:
                for batch in pq.ParquetFile(part).iter_batches():
                    index.write_batch(batch)
            index.write_table(pa.table(self.index, schema=INDEX_SCHEMA))


def pack(chunks: list[np.ndarray], eos: int, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    """The chunks' tokens one after another, each followed by EOS; and where each chunk starts."""
    lengths = np.array([len(c) + 1 for c in chunks], dtype=np.int64)
    starts = np.cumsum(lengths) - lengths
    tokens = np.full(int(lengths.sum()), eos, dtype=dtype)
    for start, chunk in zip(starts, chunks, strict=True):
        tokens[start : start + len(chunk)] = chunk
    return tokens, starts


def shard_path(folder: Path, name: str) -> Path:
    return folder / SHARD_DIR / f"{name}.bin"


def read_index(folder: Path) -> dict[str, np.ndarray]:
    table = pq.read_table(folder / INDEX_FILE)
    return {name: table.column(name).to_numpy() for name in table.column_names}


def write_manifest(folder: Path, manifest: dict) -> None:
    (folder / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")


def read_manifest(folder: Path) -> dict:
    path = folder / MANIFEST_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no prepared domains at {folder} ({MANIFEST_FILE} is missing)")
    return json.loads(path.read_text())


def load_shard(folder: Path, name: str, manifest: dict, verify: bool = False) -> np.ndarray:
    """A shard as a read-only memmap, checked against the manifest's token count, and with
    `verify` against its SHA-256 (which reads the whole shard)."""
    entry = manifest["shards"][name]
    path = shard_path(folder, name)
    dtype = np.dtype(entry["dtype"])
    size = path.stat().st_size if path.is_file() else -1
    if size != entry["tokens"] * dtype.itemsize:
        raise ValueError(
            f"{path} holds {max(size, 0)} bytes, the manifest says {entry['tokens']} tokens of "
            f"{dtype.name}: the artifact is damaged; delete {folder} to prepare it again"
        )
    if verify and "sha256" in entry and file_sha256(path) != entry["sha256"]:
        raise ValueError(
            f"{path} does not match the SHA-256 in its manifest: the artifact is damaged; "
            f"delete {folder} to prepare it again"
        )
    if entry["tokens"] == 0:
        return np.zeros(0, dtype=dtype)
    return np.memmap(path, dtype=dtype, mode="r")


def write_task(folder: Path, task: MultipleChoiceTask) -> None:
    """The task as flat arrays (lengths say where each prompt and choice ends)."""
    choices = [c for question in task.choices for c in question]
    np.savez(
        folder / TASK_FILE,
        name=np.array(task.name),
        prompt_tokens=np.concatenate(task.prompts),
        prompt_lengths=np.array([len(p) for p in task.prompts]),
        choice_tokens=np.concatenate(choices),
        choice_lengths=np.array([len(c) for c in choices]),
        choice_counts=np.array([len(question) for question in task.choices]),
        choice_bytes=np.array([b for question in task.choice_bytes for b in question]),
        answers=np.asarray(task.answers),
    )


def read_task(folder: Path) -> MultipleChoiceTask | None:
    path = folder / TASK_FILE
    if not path.is_file():
        return None
    with np.load(path) as f:
        prompts = np.split(f["prompt_tokens"], np.cumsum(f["prompt_lengths"])[:-1])
        choices = np.split(f["choice_tokens"], np.cumsum(f["choice_lengths"])[:-1])
        ends = np.cumsum(f["choice_counts"])
        starts = ends - f["choice_counts"]
        return MultipleChoiceTask(
            name=str(f["name"]),
            prompts=prompts,
            choices=[choices[a:b] for a, b in zip(starts, ends, strict=True)],
            choice_bytes=[
                f["choice_bytes"][a:b].tolist() for a, b in zip(starts, ends, strict=True)
            ],
            answers=f["answers"].copy(),
        )


def domain_label(domain: dict) -> str:
    """E.g. `bbc/tech: mobile, phone, users` from a manifest's domain entry: where most of its
    chunks come from and its three most distinctive words."""
    origins = domain.get("top_origins") or []
    words = ", ".join(domain.get("top_words", [])[:3])
    return f"{origins[0][0]}: {words}" if origins else words or domain["name"]


def load_domain_data(folder: Path, verify: bool | None = None) -> DomainData:
    """The prepared domains in `folder`. Every shard's size is checked against the manifest;
    its SHA-256 too with `verify` (default: when the environment sets
    MIXBENCH_VERIFY_SHARDS=1), which reads every shard in full."""
    if verify is None:
        verify = os.environ.get(VERIFY_ENV, "0") not in ("", "0")
    manifest = read_manifest(folder)
    seq_len = manifest["seq_len"]

    def load(name: str) -> np.ndarray:
        return load_shard(folder, name, manifest, verify)

    generic = {split: load(name) for split, name in GENERIC_SHARDS.items()}

    def section(domain: dict, split: str) -> TokenSequences:
        start = domain[f"{split}_start"]
        return TokenSequences(generic[split][start : start + domain[f"{split}_tokens"]], seq_len)

    domains = manifest["domains"]
    coarse = [d["coarse"] for d in domains]
    return DomainData(
        names=[d["name"] for d in domains],
        train=[section(d, "train") for d in domains],
        heldout=[section(d, "heldout") for d in domains],
        target_train=TokenSequences(load(SPECIALIST_SHARDS["train"]), seq_len),
        target_eval=TokenSequences(load(SPECIALIST_SHARDS["eval"]), seq_len),
        vocab_size=manifest["vocab_size"],
        seq_len=seq_len,
        target_train_domain=np.load(folder / TARGET_DOMAIN_FILE),
        coarse_of=None if coarse[0] is None else np.asarray(coarse, dtype=np.int64),
        labels=[domain_label(d) for d in domains],
        task=read_task(folder),
        meta={
            "source": manifest["config"]["source"],
            "artifacts": str(folder),
            "key": manifest["key"],
            "chunks": manifest["generic"]["chunks"],
            "merged_clusters": len(manifest["merges"]),
        },
    )
