"""Streaming preparation of a large corpus (`data.streaming.enabled=true`), on datatrove.

The in-memory pipeline (domains/text.py) holds every chunk's text, embedding and tokens at once;
this one holds one batch per worker and the k-means sample, so its peak memory does not grow
with the corpus. It writes the same artifact (domains/store.py), so training is unchanged.

Why datatrove: it is the pipeline engine of LLM pretraining data; its executors run the same
steps as local processes or as SLURM job arrays chained by dependencies, record each finished
task (a re-run after a crash runs only the unfinished ones) and keep per-task logs and stats.
The stages, each a datatrove executor (`1` = one task, `N` = `data.streaming.tasks` tasks):
1. sample (1): the specialist split (as in domains/text.py) and the tokenizer, trained on the
   first `tokenizer_sample` generic chunks;
2. encode (N): task r reads its contiguous block of the source (files, or a Hugging Face
   dataset's data files or rows: domains/sources.py, `read_part`), drops specialist
   content, chunks, and for every batch of `batch_chunks` chunks embeds and tokenizes them and
   appends them to its own files (embeddings as float16, tokens, one index row per chunk);
3. cluster (1): k-means (faiss, flat or two-level) on at most `kmeans_sample` embeddings taken
   at an even stride over the whole corpus;
4. assign (N): every chunk of task r to its domain, in batches, and the task's tokens and
   chunks per (split, domain);
5. plan (1): the domains too small over the whole corpus merged into neighbours, each domain's
   section in the generic shards, and where each task's chunks start in every section;
6. copy (N): task r's chunks into their sections (one write per run of a domain's chunks), and
   its rows of the index;
7. finish (1): the specialist shards, the index, the manifest.
Held-out documents are chosen by a seeded hash of their content (whole documents, as in
domains/text.py, but without its per-domain guarantees, which need every chunk in memory).
The artifact does not depend on the number of tasks: the blocks of files are contiguous, so
concatenating the tasks' outputs gives the corpus order.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import pickle
import shutil
import sys
import time
from pathlib import Path

import multiprocess
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from datatrove.executor import LocalPipelineExecutor, SlurmPipelineExecutor
from datatrove.pipeline.base import PipelineStep
from tokenizers import Tokenizer

from domains.cache import build_once, file_sha256
from domains.chunking import chunk_text
from domains.cluster import Clustering, check_clustering, fit_clustering, merge_small_domains
from domains.embed import Embedder
from domains.sources import provenance, read_part
from domains.store import (
    CLUSTERING_FILE,
    GENERIC_SHARDS,
    INDEX_SCHEMA,
    SPECIALIST_SHARDS,
    TARGET_DOMAIN_FILE,
    ShardWriter,
    pack,
    read_manifest,
    shard_path,
    write_manifest,
    write_task,
)
from domains.text import (
    artifact_manifest,
    content_key,
    multiple_choice_task,
    specialist_domains,
    specialist_split,
)
from domains.tokenizer import TOKENIZER_FILE, eos_id, token_dtype, train_tokenizer

log = logging.getLogger(__name__)

# Chunks a copy task places and writes at a time: the more, the fewer writes (one per run of a
# domain's chunks in the batch), at about 300 bytes of memory each.
COPY_BATCH = 32_768


def held_out(doc_key: str, seed: int, fraction: float) -> bool:
    """Whether the document with this content key is held out: a seeded hash below `fraction`."""
    digest = hashlib.sha1(f"{seed}:{doc_key}".encode()).digest()
    return int.from_bytes(digest[:8], "little") / 2**64 < fraction


class _Stage(PipelineStep):
    """A stage of the preparation: the config and its work folder (picklable for datatrove)."""

    type = "mixbench"

    def __init__(self, cfg, seq_len: int, cache_dir: Path, work: Path):
        super().__init__()
        self.cfg, self.seq_len, self.cache_dir, self.work = cfg, seq_len, cache_dir, work

    @property
    def max_chars(self) -> int:
        return round(self.seq_len * self.cfg.chars_per_token)

    @property
    def min_chars(self) -> int:
        return math.ceil(self.cfg.min_chunk_fraction * self.max_chars)

    def sampled(self) -> dict:
        """What the sample stage found: the specialist split and the content it used."""
        with open(self.work / "sample" / "specialist.pkl", "rb") as f:
            return pickle.load(f)

    def tokenizer(self) -> Tokenizer:
        return Tokenizer.from_file(str(self.work / "sample" / TOKENIZER_FILE))

    @property
    def artifact(self) -> Path:
        """Where the artifact is assembled: in the work folder, so that what the finished tasks
        of an interrupted preparation wrote is still there when it runs again."""
        return self.work / "artifact"


class SampleStage(_Stage):
    name = "sample: specialist split and tokenizer"

    def run(self, data, rank: int = 0, world_size: int = 1):
        out = self.work / "sample"
        out.mkdir(parents=True, exist_ok=True)
        specialist, used, scored = specialist_split(
            self.cfg, self.cache_dir, self.max_chars, self.min_chars
        )
        texts = []
        for doc in read_part(self.cfg, 0, 1):
            texts += chunk_text(doc.text, self.max_chars, self.min_chars)
            if len(texts) >= self.cfg.streaming.tokenizer_sample:
                break
        tokenizer = train_tokenizer(
            texts[: self.cfg.streaming.tokenizer_sample], self.cfg.vocab_size
        )
        tokenizer.save(str(out / TOKENIZER_FILE))
        with open(out / "specialist.pkl", "wb") as f:
            pickle.dump({"specialist": specialist, "used": used, "scored": scored}, f)
        return data


class EncodeStage(_Stage):
    name = "encode: chunk, embed, tokenize"

    def run(self, data, rank: int = 0, world_size: int = 1):
        out = self.work / "encode" / f"{rank:05d}"
        shutil.rmtree(out, ignore_errors=True)  # a retried task starts over
        out.mkdir(parents=True)
        used = self.sampled()["used"]
        tokenizer, embedder = self.tokenizer(), Embedder(self.cfg.embedding, self.cache_dir)
        eos, dtype = eos_id(tokenizer), token_dtype(tokenizer.get_vocab_size())
        stats = dict.fromkeys(("documents_read", "documents", "chunks", "characters"), 0)
        stats["chunks_removed_as_specialist"] = 0
        batch: list[tuple[str, str, bool]] = []  # (doc id, text, held out)
        schema = pa.schema(
            [("doc_id", pa.string()), ("length", pa.int64()), ("heldout", pa.bool_())]
        )
        with (
            open(out / "embeddings.f16", "wb") as embeddings,
            open(out / "tokens.bin", "wb") as tokens,
            pq.ParquetWriter(out / "chunks.parquet", schema) as index,
        ):

            def flush() -> None:
                texts = [text for _, text, _ in batch]
                embedder.encode(texts, progress=False).astype(np.float16).tofile(embeddings)
                ids = [np.asarray(e.ids, dtype=dtype) for e in tokenizer.encode_batch(texts)]
                pack(ids, eos, dtype)[0].tofile(tokens)
                index.write_table(
                    pa.table(
                        {
                            "doc_id": [doc for doc, _, _ in batch],
                            "length": [len(i) for i in ids],
                            "heldout": [held for _, _, held in batch],
                        },
                        schema=schema,
                    )
                )
                self.stat_update("chunks", value=len(batch))
                batch.clear()

            for doc in read_part(self.cfg, rank, world_size):
                stats["documents_read"] += 1
                doc_key = content_key(doc.text)
                if doc_key in used:
                    continue
                stats["documents"] += 1
                held = held_out(doc_key, self.cfg.seed, self.cfg.heldout_fraction)
                for piece in chunk_text(doc.text, self.max_chars, self.min_chars):
                    if content_key(piece) in used:
                        stats["chunks_removed_as_specialist"] += 1
                        continue
                    batch.append((doc.id, piece, held))
                    stats["chunks"] += 1
                    stats["characters"] += len(piece)
                    if len(batch) == self.cfg.streaming.batch_chunks:
                        flush()
            if batch:
                flush()
        (out / "stats.json").write_text(json.dumps(stats))
        return data


def _task_dirs(work: Path) -> list[Path]:
    return sorted((work / "encode").iterdir())


def _rows(path: Path, dtype, width: int, start: int, count: int) -> np.ndarray:
    """Rows [start, start + count) of a flat binary file of `width`-wide rows, read (not
    memory-mapped: mapped pages of a file the size of the corpus would count in the process's
    resident memory)."""
    itemsize = np.dtype(dtype).itemsize
    flat = np.fromfile(path, dtype=dtype, count=count * width, offset=start * width * itemsize)
    return flat.reshape(-1, width)


def _embedding_blocks(task: Path, dim: int, block: int):
    """(first row, rows) of a task's embeddings, `block` rows at a time, as float32."""
    path = task / "embeddings.f16"
    n = path.stat().st_size // (2 * dim)
    for start in range(0, n, block):
        yield start, _rows(path, np.float16, dim, start, min(block, n - start)).astype(np.float32)


def _embedding_count(task: Path, dim: int) -> int:
    return (task / "embeddings.f16").stat().st_size // (2 * dim)


class ClusterStage(_Stage):
    name = "cluster: k-means on a sample"

    def run(self, data, rank: int = 0, world_size: int = 1):
        cfg = self.cfg
        dim = Embedder(cfg.embedding, self.cache_dir).encode(["dimension"], progress=False).shape[1]
        tasks = _task_dirs(self.work)
        total = sum(_embedding_count(task, dim) for task in tasks)
        check_clustering(
            total, cfg.num_domains, cfg.coarse_domains, cfg.fine_allocation, cfg.min_domain_chunks
        )
        stride = max(1, math.ceil(total / cfg.streaming.kmeans_sample))
        sample, at = [np.zeros((0, dim), dtype=np.float32)], 0  # at: the corpus row of a block
        for task in tasks:  # every stride-th chunk of the corpus, in corpus order
            for start, rows in _embedding_blocks(task, dim, cfg.streaming.batch_chunks * stride):
                sample.append(rows[(-(at + start)) % stride :: stride].copy())  # not a view
            at += _embedding_count(task, dim)
        sample = np.concatenate(sample)
        sample /= np.maximum(np.linalg.norm(sample, axis=1, keepdims=True), 1e-12)
        # Small clusters are judged on the sample: min_domain_chunks scaled down with it.
        clustering = fit_clustering(
            sample,
            cfg.num_domains,
            coarse_domains=cfg.coarse_domains,
            fine_allocation=cfg.fine_allocation,
            min_size=max(1, cfg.min_domain_chunks // stride),
            seed=cfg.seed,
            niter=cfg.kmeans_iterations,
            restarts=cfg.kmeans_restarts,
        )
        (self.work / "cluster").mkdir(exist_ok=True)
        clustering.save(self.work / "cluster" / CLUSTERING_FILE)
        (self.work / "cluster" / "merges.json").write_text(json.dumps(clustering.merges))
        (self.work / "cluster" / "dim.json").write_text(json.dumps({"dim": dim}))
        return data


class AssignStage(_Stage):
    name = "assign: every chunk to its domain"

    def run(self, data, rank: int = 0, world_size: int = 1):
        clustering = Clustering.load(self.work / "cluster" / CLUSTERING_FILE)
        dim = json.loads((self.work / "cluster" / "dim.json").read_text())["dim"]
        k = clustering.num_domains
        for task in _task_dirs(self.work)[rank::world_size]:
            blocks = _embedding_blocks(task, dim, self.cfg.streaming.batch_chunks)
            domains = [np.zeros(0, dtype=np.int32)]
            domains += [clustering.assign(rows).astype(np.int32) for _, rows in blocks]
            domains = np.concatenate(domains)
            np.save(task / "domains.npy", domains)
            # What the plan stage needs: tokens (with EOS) per (split, domain), chunks per domain.
            chunks = pq.read_table(task / "chunks.parquet", columns=["length", "heldout"])
            held = chunks.column("heldout").to_numpy().astype(np.int64)
            tokens = np.zeros((2, k), dtype=np.int64)
            np.add.at(tokens, (held, domains), chunks.column("length").to_numpy() + 1)
            np.savez(task / "counts.npz", tokens=tokens, chunks=np.bincount(domains, minlength=k))
        return data


class PlanStage(_Stage):
    """Where every task's chunks go. The domains too small over the whole corpus (k-means saw a
    sample) are merged into neighbours first; then each (split, domain) section's start in its
    shard, and each task's first place in every section (a running sum over the tasks in
    corpus order, so a domain's chunks keep the corpus order). The shards are created at their
    final size, for the copy tasks to write into."""

    name = "plan: merge small domains, place the sections"

    def run(self, data, rank: int = 0, world_size: int = 1):
        tasks = _task_dirs(self.work)
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


class CopyStage(_Stage):
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
            for task in _task_dirs(self.work)[rank::world_size]:
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
                tokens = _rows(task / "tokens.bin", dtype, 1, read, int(span.sum()))[:, 0]
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


class FinishStage(_Stage):
    """The specialist shards, the index (the copy tasks' parts, in corpus order, then the
    specialist rows), the specialist set's nearest domains and the manifest. A SLURM job then
    renames the artifact to `final`, where it is looked for (locally, build_once does)."""

    name = "finish: specialist shards, index, manifest"

    def __init__(self, cfg, seq_len, cache_dir, work, key: str, final: Path | None = None):
        super().__init__(cfg, seq_len, cache_dir, work)
        self.key, self.final = key, final

    def run(self, data, rank: int = 0, world_size: int = 1):
        out, cfg, tasks = self.artifact, self.cfg, _task_dirs(self.work)
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


def prepare_streaming(cfg, seq_len: int, cache_dir: Path, key: str, folder: Path) -> Path | None:
    """Builds the artifact `folder` with the stages above: here (`executor: local`, returns the
    folder) or as chained SLURM jobs (`slurm`: returns None at once; the last job renames its
    output into `folder`). Finished tasks of an interrupted preparation are not run again."""
    s = cfg.streaming
    work = folder.with_name(f".{folder.name}.work")
    stages = [
        (SampleStage(cfg, seq_len, cache_dir, work), 1),
        (EncodeStage(cfg, seq_len, cache_dir, work), s.tasks),
        (ClusterStage(cfg, seq_len, cache_dir, work), 1),
        (AssignStage(cfg, seq_len, cache_dir, work), s.tasks),
        (PlanStage(cfg, seq_len, cache_dir, work), 1),
        (CopyStage(cfg, seq_len, cache_dir, work), s.tasks),
    ]
    if s.executor == "slurm":
        stages.append((FinishStage(cfg, seq_len, cache_dir, work, key, final=folder), 1))
        last = None
        for stage, tasks in stages:
            last = _slurm(cfg, stage, tasks, work, last)
        last.run()  # submits the chain, each job depending on the previous one
        return None
    stages.append((FinishStage(cfg, seq_len, cache_dir, work, key), 1))
    _preload_workers()

    def build(out: Path) -> None:
        timings = {}
        for stage, tasks in stages:
            started = time.perf_counter()
            executor = LocalPipelineExecutor(
                [stage],
                tasks=tasks,
                workers=min(s.workers, tasks),
                logging_dir=str(work / "logs" / type(stage).__name__),
            )
            for attempt in range(s.retries + 1):
                try:
                    executor.run()
                    break
                except Exception as error:
                    if attempt == s.retries:
                        raise
                    log.warning("a %s task failed (%s); running it again", stage.name, error)
            timings[type(stage).__name__] = round(time.perf_counter() - started, 2)
        artifact = work / "artifact"
        write_manifest(artifact, {**read_manifest(artifact), "timings_s": timings})
        artifact.replace(out)  # out: build_once's empty folder, renamed into place after this

    folder, built = build_once(folder, build)
    if built:
        shutil.rmtree(work, ignore_errors=True)
    return folder


def _preload_workers() -> None:
    """datatrove's local workers start from a fork server, and each imports the main module
    again (`experiments.prepare`: torch, Lightning... about 10 s per worker and stage, measured).
    Imported once in the fork server, before it starts, they start in a fraction of a second.
    Without effect once the fork server runs (a second preparation in one process)."""
    main = getattr(sys.modules["__main__"], "__spec__", None)
    modules = [__name__, *([main.name] if main is not None else [])]
    multiprocess.get_context("forkserver").set_forkserver_preload(modules)


def _slurm(cfg, stage: _Stage, tasks: int, work: Path, depends) -> SlurmPipelineExecutor:
    s = cfg.streaming
    name = type(stage).__name__
    return SlurmPipelineExecutor(
        [stage],
        tasks=tasks,
        time=s.slurm_time,
        partition=s.slurm_partition,
        workers=s.workers,
        job_name=f"mixbench-{name}",
        logging_dir=str(work / "logs" / name),
        depends=depends,
        cpus_per_task=2,
        mem_per_cpu_gb=4,
        venv_path=_venv(),
    )


def _venv() -> str | None:
    """The virtual environment's activate script, for the SLURM jobs to run in it."""
    activate = Path(sys.prefix) / "bin" / "activate"
    return str(activate) if activate.is_file() else None
