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
2. encode (N): task r reads its contiguous block of the source's files, drops specialist
   content, chunks, and for every batch of `batch_chunks` chunks embeds and tokenizes them and
   appends them to its own files (embeddings as float16, tokens, one index row per chunk);
3. cluster (1): k-means (faiss, flat or two-level) on at most `kmeans_sample` embeddings taken
   at an even stride over the whole corpus;
4. assign (N): every chunk of task r to its domain, in batches;
5. write (1): the per-domain sections of the generic shards, by one counting pass and one copy
   pass into memmaps, the specialist shards, the index and the manifest.
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
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

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
from domains.sources import provenance, read_files, source_files
from domains.store import (
    CLUSTERING_FILE,
    GENERIC_SHARDS,
    INDEX_FILE,
    SPECIALIST_SHARDS,
    TARGET_DOMAIN_FILE,
    pack,
    read_manifest,
    shard_path,
    write_manifest,
    write_task,
)
from domains.text import (
    FORMAT,
    content_key,
    domain_names,
    multiple_choice_task,
    specialist_domains,
    specialist_split,
)
from domains.tokenizer import TOKENIZER_FILE, eos_id, token_dtype, train_tokenizer

log = logging.getLogger(__name__)


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

    def task_files(self, rank: int, world_size: int) -> list[Path]:
        files = source_files(self.cfg)
        return files[rank * len(files) // world_size : (rank + 1) * len(files) // world_size]


class SampleStage(_Stage):
    name = "sample: specialist split and tokenizer"

    def run(self, data, rank: int = 0, world_size: int = 1):
        out = self.work / "sample"
        out.mkdir(parents=True, exist_ok=True)
        specialist, used, scored = specialist_split(
            self.cfg, self.cache_dir, self.max_chars, self.min_chars
        )
        texts = []
        for doc in read_files(self.cfg, source_files(self.cfg)):
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

            for doc in read_files(self.cfg, self.task_files(rank, world_size)):
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
        for task in _task_dirs(self.work)[rank::world_size]:
            blocks = _embedding_blocks(task, dim, self.cfg.streaming.batch_chunks)
            domains = [np.zeros(0, dtype=np.int32)]
            domains += [clustering.assign(rows).astype(np.int32) for _, rows in blocks]
            np.save(task / "domains.npy", np.concatenate(domains))
        return data


class WriteStage(_Stage):
    name = "write: shards, index, manifest"

    def __init__(
        self, cfg, seq_len, cache_dir, work, out: Path, key: str, final: Path | None = None
    ):
        super().__init__(cfg, seq_len, cache_dir, work)
        self.out, self.key, self.final = out, key, final

    def run(self, data, rank: int = 0, world_size: int = 1):
        out, cfg = self.out, self.cfg
        (out / "shards").mkdir(parents=True, exist_ok=True)
        tokenizer = self.tokenizer()
        tokenizer.save(str(out / TOKENIZER_FILE))
        clustering = Clustering.load(self.work / "cluster" / CLUSTERING_FILE)
        clustering.merges = json.loads((self.work / "cluster" / "merges.json").read_text())
        k, dtype = clustering.num_domains, token_dtype(tokenizer.get_vocab_size())
        tasks = _task_dirs(self.work)

        # Counting pass: tokens (with EOS) and chunks of every (split, domain); then the domains
        # too small over the whole corpus (k-means saw a sample) are merged into neighbours.
        sizes, chunks = np.zeros((2, k), dtype=np.int64), np.zeros(k, dtype=np.int64)
        for _, lengths, held, domains in _chunk_batches(tasks, self.cfg.streaming.batch_chunks):
            np.add.at(sizes, (held.astype(int), domains), lengths + 1)
            chunks += np.bincount(domains, minlength=k)
        clustering, remap, _ = merge_small_domains(
            clustering, chunks, sizes[0], cfg.min_domain_chunks, self.seq_len
        )
        k = clustering.num_domains
        sizes = np.stack([np.bincount(remap, weights=row, minlength=k) for row in sizes])
        sizes, chunks = sizes.astype(np.int64), np.bincount(remap, chunks, k).astype(np.int64)
        clustering.save(out / CLUSTERING_FILE)
        starts = np.cumsum(sizes, axis=1) - sizes
        # Copy pass: each batch's chunks to the next free place of their (split, domain) section.
        # Written with pwrite, read with reads: memory-mapped, the shards' pages would count in
        # this process's resident memory, which would then grow with the corpus.
        cursor = starts.copy()
        shards = {}
        targets = []
        for split, name in enumerate(GENERIC_SHARDS.values()):
            with open(shard_path(out, name), "wb") as f:
                f.truncate(int(sizes[split].sum()) * dtype.itemsize)
            targets.append(os.open(shard_path(out, name), os.O_WRONLY))
        rows = pa.schema(
            [
                ("doc_id", pa.string()),
                ("domain", pa.int64()),
                ("split", pa.string()),
                ("start", pa.int64()),
                ("length", pa.int64()),
            ]
        )
        with pq.ParquetWriter(out / INDEX_FILE, rows) as index:
            read = dict.fromkeys(tasks, 0)  # tokens of each task's file copied so far
            for task, lengths, held, old_domains, doc_ids in _chunk_batches(
                tasks, self.cfg.streaming.batch_chunks, with_ids=True
            ):
                domains = remap[old_domains]
                span = lengths + 1
                tokens = _rows(task / "tokens.bin", dtype, 1, read[task], int(span.sum()))[:, 0]
                read[task] += int(span.sum())
                source = np.cumsum(span) - span
                dest = np.empty(len(span), dtype=np.int64)
                for split in (0, 1):
                    mine = np.flatnonzero(held == split)
                    dest[mine] = _place(cursor[split], domains[mine], span[mine])
                    for i in mine.tolist():
                        chunk = tokens[source[i] : source[i] + span[i]]
                        os.pwrite(targets[split], chunk.tobytes(), int(dest[i]) * dtype.itemsize)
                index.write_table(
                    pa.table(
                        {
                            "doc_id": doc_ids,
                            "domain": domains.astype(np.int64),
                            "split": np.where(held, "heldout", "train"),
                            "start": dest,
                            "length": lengths,
                        },
                        schema=rows,
                    )
                )
            for target in targets:
                os.close(target)
            sample = self.sampled()
            specialist_tokens = {}
            for part, name in SPECIALIST_SHARDS.items():
                chunks_ = sample["specialist"][part]
                ids = [np.asarray(e.ids) for e in tokenizer.encode_batch([c.text for c in chunks_])]
                packed, at = pack(ids, eos_id(tokenizer), dtype)
                packed.tofile(shard_path(out, name))
                specialist_tokens[part] = packed
                index.write_table(
                    pa.table(
                        {
                            "doc_id": [c.doc_id for c in chunks_],
                            "domain": np.full(len(ids), -1),
                            "split": [f"specialist_{part}"] * len(ids),
                            "start": at,
                            "length": [len(i) for i in ids],
                        },
                        schema=rows,
                    )
                )
        for name in [*GENERIC_SHARDS.values(), *SPECIALIST_SHARDS.values()]:
            path = shard_path(out, name)
            if not path.exists():
                path.touch()
            shards[name] = {
                "tokens": path.stat().st_size // dtype.itemsize,
                "dtype": dtype.name,
                "sha256": file_sha256(path),
            }
        if sample["scored"]:
            write_task(out, multiple_choice_task(sample["scored"], tokenizer))
        embedder = Embedder(cfg.embedding, self.cache_dir)
        target_domain = specialist_domains(
            specialist_tokens["train"], self.seq_len, tokenizer, embedder, clustering
        )
        np.save(out / TARGET_DOMAIN_FILE, target_domain)
        stats = [json.loads((task / "stats.json").read_text()) for task in tasks]
        generic = {key: sum(s[key] for s in stats) for key in stats[0]}
        generic["removed_as_specialist"] = generic["documents_read"] - generic["documents"]
        coarse_of = clustering.coarse_of()
        names = domain_names(k)
        write_manifest(
            out,
            {
                "format": FORMAT,
                "key": self.key,
                "created": datetime.now(UTC).isoformat(timespec="seconds"),
                "seq_len": self.seq_len,
                "vocab_size": tokenizer.get_vocab_size(),
                "eos_id": eos_id(tokenizer),
                "config": asdict(cfg),
                "generic": {
                    **generic,
                    "chunk_chars": self.max_chars,
                    "provenance": provenance(cfg, self.cache_dir),
                },
                "specialist": {
                    "documents": len({c.doc_id for p in sample["specialist"].values() for c in p}),
                    "train_chunks": len(sample["specialist"]["train"]),
                    "eval_chunks": len(sample["specialist"]["eval"]),
                    "scored_questions": len(sample["scored"]),
                    "train_tokens": shards[SPECIALIST_SHARDS["train"]]["tokens"],
                    "eval_tokens": shards[SPECIALIST_SHARDS["eval"]]["tokens"],
                    "train_sequences_per_domain": np.bincount(target_domain, minlength=k).tolist(),
                    "provenance": provenance(cfg.specialist, self.cache_dir),
                },
                "domains": [
                    {
                        "name": name,
                        "coarse": None if coarse_of is None else int(coarse_of[d]),
                        "chunks": int(chunks[d]),
                        "train_start": int(starts[0, d]),
                        "train_tokens": int(sizes[0, d]),
                        "heldout_start": int(starts[1, d]),
                        "heldout_tokens": int(sizes[1, d]),
                        "top_origins": [],
                        "top_words": [],
                    }
                    for d, name in enumerate(names)
                ],
                "merges": clustering.merges,
                "shards": shards,
                "timings_s": {},
            },
        )
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


def _chunk_batches(tasks: list[Path], size: int, with_ids: bool = False):
    """(task, token lengths, held out, domains[, doc ids]) of every batch of chunks, in corpus
    order; a batch never spans two tasks."""
    for task in tasks:
        domains = np.load(task / "domains.npy", mmap_mode="r")
        at = 0
        columns = ["length", "heldout", *(["doc_id"] if with_ids else [])]
        for batch in pq.ParquetFile(task / "chunks.parquet").iter_batches(size, columns=columns):
            n = batch.num_rows
            row = [
                task,
                batch.column("length").to_numpy(),
                batch.column("heldout").to_numpy(zero_copy_only=False),
                np.asarray(domains[at : at + n]),
            ]
            if with_ids:
                row.append(batch.column("doc_id").to_pylist())
            at += n
            yield tuple(row)


def prepare_streaming(cfg, seq_len: int, cache_dir: Path, key: str, folder: Path) -> Path | None:
    """Builds the artifact `folder` with the stages above: here (`executor: local`, returns the
    folder) or as chained SLURM jobs (`slurm`: returns None at once; the last job renames its
    output into `folder`). Finished tasks of an interrupted preparation are not run again."""
    s = cfg.streaming
    work = folder.with_name(f".{folder.name}.work")
    stages = [
        (SampleStage, 1),
        (EncodeStage, s.tasks),
        (ClusterStage, 1),
        (AssignStage, s.tasks),
    ]
    if s.executor == "slurm":
        last = None
        for stage, tasks in stages:
            last = _slurm(cfg, [stage(cfg, seq_len, cache_dir, work)], tasks, work, last)
        write = WriteStage(cfg, seq_len, cache_dir, work, work / "artifact", key, final=folder)
        _slurm(cfg, [write], 1, work, last).run()
        return None

    def build(out: Path) -> None:
        timings = {}
        for stage, tasks in stages:
            started = time.perf_counter()
            executor = LocalPipelineExecutor(
                [stage(cfg, seq_len, cache_dir, work)],
                tasks=tasks,
                workers=min(s.workers, tasks),
                logging_dir=str(work / "logs" / stage.__name__),
            )
            for attempt in range(s.retries + 1):
                try:
                    executor.run()
                    break
                except Exception as error:
                    if attempt == s.retries:
                        raise
                    log.warning("a %s task failed (%s); running it again", stage.__name__, error)
            timings[stage.__name__] = round(time.perf_counter() - started, 2)
        started = time.perf_counter()
        WriteStage(cfg, seq_len, cache_dir, work, out, key).run(None)
        timings[WriteStage.__name__] = round(time.perf_counter() - started, 2)
        manifest = read_manifest(out)
        write_manifest(out, {**manifest, "timings_s": timings})

    folder, built = build_once(folder, build)
    if built:
        shutil.rmtree(work, ignore_errors=True)
    return folder


def _slurm(cfg, pipeline: list, tasks: int, work: Path, depends) -> SlurmPipelineExecutor:
    s = cfg.streaming
    name = type(pipeline[0]).__name__
    return SlurmPipelineExecutor(
        pipeline,
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
