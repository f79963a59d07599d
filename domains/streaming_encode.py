"""The stages of the streaming preparation (domains/streaming.py) that read the corpus: sample
(the specialist split and the tokenizer), encode (chunks embedded and tokenized, per task),
cluster (k-means on a sample of the embeddings) and assign (every chunk to its domain); and
`Stage`, what every stage is.
"""

from __future__ import annotations

import hashlib
import json
import math
import pickle
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from datatrove.pipeline.base import PipelineStep
from tokenizers import Tokenizer

from domains.chunking import chunk_text
from domains.cluster import Clustering, check_clustering, fit_clustering
from domains.embed import Embedder
from domains.sources import read_part
from domains.steps import content_key, specialist_split
from domains.store import CLUSTERING_FILE, pack
from domains.tokenizer import TOKENIZER_FILE, eos_id, token_dtype, train_tokenizer


def held_out(doc_key: str, seed: int, fraction: float) -> bool:
    """Whether the document with this content key is held out: a seeded hash below `fraction`."""
    digest = hashlib.sha1(f"{seed}:{doc_key}".encode()).digest()
    return int.from_bytes(digest[:8], "little") / 2**64 < fraction


class Stage(PipelineStep):
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


class SampleStage(Stage):
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


class EncodeStage(Stage):
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


def task_dirs(work: Path) -> list[Path]:
    return sorted((work / "encode").iterdir())


def read_rows(path: Path, dtype, width: int, start: int, count: int) -> np.ndarray:
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
        yield (
            start,
            read_rows(path, np.float16, dim, start, min(block, n - start)).astype(np.float32),
        )


def _embedding_count(task: Path, dim: int) -> int:
    return (task / "embeddings.f16").stat().st_size // (2 * dim)


class ClusterStage(Stage):
    name = "cluster: k-means on a sample"

    def run(self, data, rank: int = 0, world_size: int = 1):
        cfg = self.cfg
        dim = Embedder(cfg.embedding, self.cache_dir).encode(["dimension"], progress=False).shape[1]
        tasks = task_dirs(self.work)
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


class AssignStage(Stage):
    name = "assign: every chunk to its domain"

    def run(self, data, rank: int = 0, world_size: int = 1):
        clustering = Clustering.load(self.work / "cluster" / CLUSTERING_FILE)
        dim = json.loads((self.work / "cluster" / "dim.json").read_text())["dim"]
        k = clustering.num_domains
        for task in task_dirs(self.work)[rank::world_size]:
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
