"""The stages of the streaming preparation (domains/streaming.py) that write the artifact: plan
(small domains merged, every section placed), copy (each task's chunks into the generic shards)
and finish (the specialist shards, the index, the manifest).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from domains.cache import file_sha256
from domains.cluster import Clustering, merge_small_domains
from domains.embed import Embedder
from domains.sources import provenance
from domains.steps import artifact_manifest, multiple_choice_task, specialist_domains
from domains.store import (
    CLUSTERING_FILE,
    GENERIC_SHARDS,
    INDEX_SCHEMA,
    SPECIALIST_SHARDS,
    TARGET_DOMAIN_FILE,
    ShardWriter,
    shard_path,
    write_manifest,
    write_task,
)
from domains.streaming_encode import Stage, read_rows, task_dirs
from domains.tokenizer import TOKENIZER_FILE, eos_id, token_dtype

# Chunks a copy task places and writes at a time: the more, the fewer writes (one per run of a
# domain's chunks in the batch), at about 300 bytes of memory each.
COPY_BATCH = 32_768


class PlanStage(Stage):
    """Where every task's chunks go. The domains too small over the whole corpus (k-means saw a
    sample) are merged into neighbours first; then each (split, domain) section's start in its
    shard, and each task's first place in every section (a running sum over the tasks in
    corpus order, so a domain's chunks keep the corpus order). The shards are created at their
    final size, for the copy tasks to write into."""

    name = "plan: merge small domains, place the sections"

    def run(self, data, rank: int = 0, world_size: int = 1):
        tasks = task_dirs(self.work)
        clustering = Clustering.load(self.work / "cluster" / CLUSTERING_FILE)
        clustering.merges = json.loads((self.work / "cluster" / "merges.json").read_text())
        tokens, chunks = 0, 0
        for task in tasks:
            with np.load(task / "counts.npz") as counts:
                tokens, chunks = tokens + counts["tokens"], chunks + counts["chunks"]
        clustering, remap, _ = merge_small_domains(
            clustering, chunks, tokens[0], self.cfg.min_domain_chunks, self.seq_len
        )
        k = clustering.num_domains

        def merged(counts: np.ndarray) -> np.ndarray:
            return np.stack([np.bincount(remap, row, k) for row in np.atleast_2d(counts)])

        tokens, chunks = merged(tokens).astype(np.int64), merged(chunks)[0].astype(np.int64)
        starts = np.cumsum(tokens, axis=1) - tokens
        cursor = starts.copy()
        for task in tasks:
            np.save(task / "cursor.npy", cursor)
            cursor += merged(np.load(task / "counts.npz")["tokens"]).astype(np.int64)
        out = self.work / "plan"
        out.mkdir(exist_ok=True)
        clustering.save(out / CLUSTERING_FILE)
        (out / "merges.json").write_text(json.dumps(clustering.merges))
        np.savez(out / "plan.npz", remap=remap, tokens=tokens, chunks=chunks, starts=starts)
        itemsize = token_dtype(self.tokenizer().get_vocab_size()).itemsize
        (self.artifact / "shards").mkdir(parents=True, exist_ok=True)
        for split, name in enumerate(GENERIC_SHARDS.values()):
            with open(shard_path(self.artifact, name), "wb") as f:
                f.truncate(int(tokens[split].sum()) * itemsize)
        return data


class CopyStage(Stage):
    """Each task's chunks into their sections of the generic shards (written with pwrite, read
    with reads: memory-mapped, the shards' pages would count in the process's resident memory,
    which would then grow with the corpus), and the task's rows of the index."""

    name = "copy: chunks into the shards"

    def run(self, data, rank: int = 0, world_size: int = 1):
        remap = np.load(self.work / "plan" / "plan.npz")["remap"]
        dtype = token_dtype(self.tokenizer().get_vocab_size())
        shards = [shard_path(self.artifact, name) for name in GENERIC_SHARDS.values()]
        targets = [os.open(shard, os.O_WRONLY) for shard in shards]
        try:
            for task in task_dirs(self.work)[rank::world_size]:
                self._copy(task, remap, dtype, targets)
        finally:
            for target in targets:
                os.close(target)
        return data

    def _copy(self, task: Path, remap: np.ndarray, dtype: np.dtype, targets: list[int]) -> None:
        cursor = np.load(task / "cursor.npy")
        domains = remap[np.load(task / "domains.npy")]
        at = read = 0  # chunks and tokens of the task done
        columns = ["doc_id", "length", "heldout"]
        batches = pq.ParquetFile(task / "chunks.parquet").iter_batches(COPY_BATCH, columns=columns)
        with pq.ParquetWriter(task / "index.parquet", INDEX_SCHEMA) as index:
            for batch in batches:
                lengths = batch.column("length").to_numpy()
                held = batch.column("heldout").to_numpy(zero_copy_only=False)
                mine = domains[at : at + batch.num_rows]
                span = lengths + 1
                tokens = read_rows(task / "tokens.bin", dtype, 1, read, int(span.sum()))[:, 0]
                source = np.cumsum(span) - span
                dest = np.empty(len(span), dtype=np.int64)
                for split in (0, 1):
                    rows = np.flatnonzero(held == split)
                    dest[rows] = _place(cursor[split], mine[rows], span[rows])
                    _write_runs(targets[split], tokens, source[rows], span[rows], dest[rows])
                index.write_table(
                    pa.table(
                        {
                            "doc_id": batch.column("doc_id"),
                            "domain": mine.astype(np.int64),
                            "split": np.where(held, "heldout", "train"),
                            "start": dest,
                            "length": lengths,
                        },
                        schema=INDEX_SCHEMA,
                    )
                )
                at, read = at + batch.num_rows, read + int(span.sum())


class FinishStage(Stage):
    """The specialist shards, the index (the copy tasks' parts, in corpus order, then the
    specialist rows), the specialist set's nearest domains and the manifest. A SLURM job then
    renames the artifact to `final`, where it is looked for (locally, build_once does)."""

    name = "finish: specialist shards, index, manifest"

    def __init__(self, cfg, seq_len, cache_dir, work, key: str, final: Path | None = None):
        super().__init__(cfg, seq_len, cache_dir, work)
        self.key, self.final = key, final

    def run(self, data, rank: int = 0, world_size: int = 1):
        out, cfg, tasks = self.artifact, self.cfg, task_dirs(self.work)
        tokenizer = self.tokenizer()
        tokenizer.save(str(out / TOKENIZER_FILE))
        clustering = Clustering.load(self.work / "plan" / CLUSTERING_FILE)
        clustering.merges = json.loads((self.work / "plan" / "merges.json").read_text())
        clustering.save(out / CLUSTERING_FILE)
        plan = np.load(self.work / "plan" / "plan.npz")
        dtype = token_dtype(tokenizer.get_vocab_size())
        writer = ShardWriter(
            out, eos_id(tokenizer), dtype, index_parts=tuple(t / "index.parquet" for t in tasks)
        )
        sample = self.sampled()
        specialist_tokens = {
            part: writer.add(
                name,
                [c.doc_id for c in sample["specialist"][part]],
                [
                    np.asarray(e.ids)
                    for e in tokenizer.encode_batch([c.text for c in sample["specialist"][part]])
                ],
                f"specialist_{part}",
                -1,
            )[1]
            for part, name in SPECIALIST_SHARDS.items()
        }
        writer.close()
        shards = {
            name: {
                "tokens": shard_path(out, name).stat().st_size // dtype.itemsize,
                "dtype": dtype.name,
                "sha256": file_sha256(shard_path(out, name)),
            }
            for name in GENERIC_SHARDS.values()
        }
        if sample["scored"]:
            write_task(out, multiple_choice_task(sample["scored"], tokenizer))
        target_domain = specialist_domains(
            specialist_tokens["train"],
            self.seq_len,
            tokenizer,
            Embedder(cfg.embedding, self.cache_dir),
            clustering,
        )
        np.save(out / TARGET_DOMAIN_FILE, target_domain)
        stats = [json.loads((task / "stats.json").read_text()) for task in tasks]
        generic = {key: sum(s[key] for s in stats) for key in stats[0]}
        generic["removed_as_specialist"] = generic["documents_read"] - generic["documents"]
        tokens, starts = plan["tokens"], plan["starts"]
        manifest = artifact_manifest(
            key=self.key,
            cfg=cfg,
            cache_dir=self.cache_dir,
            seq_len=self.seq_len,
            tokenizer=tokenizer,
            generic={
                **generic,
                "chunk_chars": self.max_chars,
                "provenance": provenance(cfg, self.cache_dir),
            },
            specialist=sample["specialist"],
            scored=sample["scored"],
            target_domain=target_domain,
            clustering=clustering,
            domains=[
                {
                    "chunks": int(plan["chunks"][d]),
                    "train_start": int(starts[0, d]),
                    "train_tokens": int(tokens[0, d]),
                    "heldout_start": int(starts[1, d]),
                    "heldout_tokens": int(tokens[1, d]),
                    "top_origins": [],
                    "top_words": [],
                }
                for d in range(clustering.num_domains)
            ],
            shards={**shards, **writer.shards},
            timings={},
        )
        write_manifest(out, manifest)
        if self.final is not None:  # a SLURM job: put the artifact in place, as build_once does
            out.rename(self.final)
        return data


def _place(cursor: np.ndarray, domains: np.ndarray, span: np.ndarray) -> np.ndarray:
    """Where each chunk (`span` tokens with its EOS) goes: the next free place of its domain's
    section, in order; advances the domains' `cursor`s."""
    order = np.argsort(domains, kind="stable")
    d, size = domains[order], span[order]
    before = np.cumsum(size) - size
    first = np.flatnonzero(np.r_[True, d[1:] != d[:-1]]) if len(d) else np.zeros(0, np.int64)
    group_first = np.repeat(first, np.diff(np.r_[first, len(d)]))
    dest = np.empty(len(d), dtype=np.int64)
    dest[order] = cursor[d] + before - before[group_first]
    np.add.at(cursor, d, size)
    return dest


def _write_runs(
    target: int, tokens: np.ndarray, source: np.ndarray, span: np.ndarray, dest: np.ndarray
) -> None:
    """Writes each chunk (tokens[source : source + span]) at token `dest` of the file `target`:
    one pwrite per run of chunks that lie one after another there."""
    if not len(dest):
        return
    order = np.argsort(dest)
    source, span, dest = source[order], span[order], dest[order]
    before = np.cumsum(span) - span  # where each chunk is in `gathered`
    gathered = tokens[np.repeat(source - before, span) + np.arange(int(span.sum()))]
    breaks = np.flatnonzero(dest[1:] != dest[:-1] + span[:-1]) + 1
    for first, last in zip(np.r_[0, breaks], np.r_[breaks, len(dest)] - 1, strict=True):
        run = gathered[before[first] : before[last] + span[last]]
        os.pwrite(target, run.tobytes(), int(dest[first]) * tokens.itemsize)
