"""Domains from real text: raw documents -> k domains and a specialist set, as token shards.

The pipeline (as in the DGA/CRISP line of work):
1. read the specialist set's documents and split them, by content, into `train` (the few
   examples a mixer may see) and `eval` (the held-out score); documents and chunks with the same
   content (`content_key`: text compared up to case, spacing and Unicode form) are then removed
   from the generic pool, so the specialist set never leaks into training;
2. cut the generic documents into chunks of about one training sequence (domains/chunking.py);
3. train a byte-level BPE tokenizer on the generic chunks (domains/tokenizer.py);
4. embed the chunks with a sentence-transformer (domains/embed.py) and cluster the embeddings
   with k-means, flat or two-level (domains/cluster.py): each cluster is a domain;
5. tokenize, hold out whole documents (by content) for a share of every domain's chunks, and
   write per-domain token shards, the index and a manifest (domains/store.py); the nearest
   domain of each specialist `train` sequence is found by embedding its text and assigning it
   with the same centroids.

domains/preparation.py decides when to build (and where the artifact lives). Embeddings and the
tokenizer are cached by content, so a sweep over the number of domains embeds once.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
import unicodedata
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple

import numpy as np
from tqdm import tqdm

from domains import mmlu
from domains.cache import texts_digest
from domains.chunking import chunk_text
from domains.cluster import Clustering, check_clustering, fit_clustering
from domains.data import DataConfig, MultipleChoiceTask, TokenSequences
from domains.describe import describe_domains
from domains.embed import Embedder, EmbeddingConfig
from domains.sources import Document, SourceConfig, provenance, read_documents
from domains.store import (
    CLUSTERING_FILE,
    GENERIC_SHARDS,
    SPECIALIST_SHARDS,
    TARGET_DOMAIN_FILE,
    ShardWriter,
    write_manifest,
    write_task,
)
from domains.tokenizer import TOKENIZER_FILE, cached_tokenizer, encode, eos_id, token_dtype

log = logging.getLogger(__name__)

FORMAT = 3  # bump when the artifact layout or the pipeline's output changes
SPECIALIST_STREAM, HELDOUT_STREAM = 1, 2  # independent random streams from data.seed


EXECUTORS = ("local", "slurm")


@dataclass
class StreamingConfig:
    """Bounded-memory preparation of a large corpus on datatrove (domains/streaming.py)."""

    enabled: bool = False
    # Tasks the corpus's files are split into (each a contiguous block of them), and how many
    # run at once on this machine (`executor: local`) or as a SLURM job array (`slurm`).
    tasks: int = 4
    workers: int = 2
    executor: str = "local"
    slurm_partition: str | None = None
    slurm_time: str = "12:00:00"
    # A failed task is run again (only the unfinished tasks) up to this many times (local).
    retries: int = 1
    # Chunks embedded and tokenized at once by a worker.
    batch_chunks: int = 1024
    # Generic chunks the tokenizer is trained on (the first ones read), and embeddings k-means
    # is fitted on (an even stride over the corpus).
    tokenizer_sample: int = 20_000
    kmeans_sample: int = 200_000

    def __post_init__(self) -> None:
        if self.executor not in EXECUTORS:
            raise ValueError(
                f"data.streaming.executor={self.executor!r}: use one of {list(EXECUTORS)}"
            )
        if min(self.tasks, self.workers, self.batch_chunks, self.tokenizer_sample) < 1:
            raise ValueError("data.streaming: tasks, workers, batch_chunks, samples must be >= 1")


# Fields that decide how the work runs, not what it produces: outside the artifact's key.
EXECUTION_FIELDS = ("tasks", "workers", "executor", "slurm_partition", "slurm_time", "retries")


@dataclass
class SpecialistConfig(SourceConfig):
    """The specialist (target) set: a source with filters, split by content into `train_chunks`
    chunks a mixer may see (the scarce-data scenario) and `eval_chunks` held-out chunks."""

    train_chunks: int = 32
    eval_chunks: int = 128

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.source == "mmlu":  # a misspelt subject fails at composition, listing the valid
            mmlu.check_subjects(self.subject)


@dataclass
class TextDataConfig(SourceConfig, DataConfig):
    """Domains from real text. The source fields (SourceConfig) describe the generic pool;
    `specialist` describes the specialist set."""

    source: str = "demo"
    num_domains: int = 16
    # Two-level clustering: this many coarse clusters (0: flat), and `num_domains` fine domains
    # split between them `equal`ly or in `proportional` to their sizes.
    coarse_domains: int = 0
    fine_allocation: str = "equal"
    # Clusters with fewer chunks are merged into a neighbour (reported in the manifest).
    min_domain_chunks: int = 16
    # Share of every domain's chunks held out, in whole documents (at least one sequence's worth).
    heldout_fraction: float = 0.1
    # Chunks are `context_length * chars_per_token` characters; shorter than
    # `min_chunk_fraction` of that and they are dropped as near-empty.
    chars_per_token: float = 4.0
    min_chunk_fraction: float = 0.25
    vocab_size: int = 4096
    kmeans_iterations: int = 20
    kmeans_restarts: int = 3
    embedding: EmbeddingConfig = field(default_factory=EmbeddingConfig)
    specialist: SpecialistConfig = field(default_factory=SpecialistConfig)
    # Large corpora: bounded-memory preparation on datatrove, locally or on SLURM
    # (domains/streaming.py).
    streaming: StreamingConfig = field(default_factory=StreamingConfig)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.source == "mmlu":
            raise ValueError(
                "MMLU is a specialist set, not a generic pool: use data.specialist.source=mmlu "
                "with data.specialist.subject=<subject>"
            )
        if self.streaming.enabled and (
            self.source not in ("files", "hf") or self.max_documents is not None
        ):
            raise ValueError(
                "data.streaming.enabled=true reads a corpus of files (data.source=files) or a "
                "Hugging Face dataset (data.source=hf), in full: no data.max_documents"
            )


class Chunk(NamedTuple):
    doc_id: str
    text: str
    doc_key: str  # its document's `content_key`: copies of the document under other ids share it
    origin: str = ""  # its document's origin (`Document.origin`), counted in domain descriptions


class _Timer:
    def __init__(self):
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, stage: str):
        started = time.perf_counter()
        yield
        self.seconds[stage] = round(self.seconds.get(stage, 0.0) + time.perf_counter() - started, 2)


def build_in_memory(
    cfg: TextDataConfig, seq_len: int, cache_dir: Path, key: str, out: Path
) -> None:
    timer = _Timer()
    max_chars = round(seq_len * cfg.chars_per_token)
    min_chars = math.ceil(cfg.min_chunk_fraction * max_chars)
    with timer("read"):
        specialist, used, scored = specialist_split(cfg, cache_dir, max_chars, min_chars)
        chunks, generic_stats = _generic_chunks(cfg, cache_dir, max_chars, min_chars, used)
    check_clustering(
        len(chunks), cfg.num_domains, cfg.coarse_domains, cfg.fine_allocation, cfg.min_domain_chunks
    )
    texts = [c.text for c in chunks]

    with timer("tokenizer"):
        tokenizer = cached_tokenizer(texts, texts_digest(texts), cfg.vocab_size, cache_dir)
        tokenizer.save(str(out / TOKENIZER_FILE))
    embedder = Embedder(cfg.embedding, cache_dir)
    with timer("embed"):
        embeddings = embedder.encode_cached(texts)
    with timer("cluster"):
        clustering = fit_clustering(
            embeddings,
            cfg.num_domains,
            coarse_domains=cfg.coarse_domains,
            fine_allocation=cfg.fine_allocation,
            min_size=cfg.min_domain_chunks,
            seed=cfg.seed,
            niter=cfg.kmeans_iterations,
            restarts=cfg.kmeans_restarts,
        )
        domains = clustering.assign(embeddings)
        clustering.save(out / CLUSTERING_FILE)
    for merge in clustering.merges:
        log.warning("small cluster (min_domain_chunks=%d): %s", cfg.min_domain_chunks, merge)
    with timer("tokenize"):
        ids = encode(tokenizer, texts)
        specialist_ids = {
            part: encode(tokenizer, [c.text for c in specialist[part]]) for part in specialist
        }
        if scored:
            write_task(out, multiple_choice_task(scored, tokenizer))

    with timer("write"):
        writer = ShardWriter(out, eos_id(tokenizer), token_dtype(tokenizer.get_vocab_size()))
        names = domain_names(clustering.num_domains)
        heldout = _heldout_mask(domains, ids, chunks, names, cfg, seq_len)
        sections = [{} for _ in names]  # each domain's start and tokens in each generic shard
        for d in tqdm(range(len(names)), desc="writing shards", unit="domain"):
            for split, held in (("train", False), ("heldout", True)):
                members = np.flatnonzero((domains == d) & (heldout == held))
                doc_ids = [chunks[i].doc_id for i in members]
                start, tokens = writer.add(
                    GENERIC_SHARDS[split], doc_ids, [ids[i] for i in members], split, d
                )
                sections[d] |= {f"{split}_start": start, f"{split}_tokens": len(tokens)}
        specialist_tokens = {
            part: writer.add(
                SPECIALIST_SHARDS[part],
                [c.doc_id for c in specialist[part]],
                specialist_ids[part],
                f"specialist_{part}",
                -1,
            )[1]
            for part in specialist
        }
        writer.close()
    with timer("assign_specialist"):
        target_domain = specialist_domains(
            specialist_tokens["train"], seq_len, tokenizer, embedder, clustering
        )
        np.save(out / TARGET_DOMAIN_FILE, target_domain)

    described = describe_domains(
        texts, [c.doc_id for c in chunks], [c.origin for c in chunks], domains, len(names)
    )
    manifest = artifact_manifest(
        key=key,
        cfg=cfg,
        cache_dir=cache_dir,
        seq_len=seq_len,
        tokenizer=tokenizer,
        generic={**generic_stats, "chunks": len(chunks), "chunk_chars": max_chars},
        specialist=specialist,
        scored=scored,
        target_domain=target_domain,
        clustering=clustering,
        domains=[
            {"chunks": int((domains == d).sum()), **sections[d], **described[d]}
            for d in range(len(names))
        ],
        shards=writer.shards,
        timings=timer.seconds,
    )
    write_manifest(out, manifest)


def artifact_manifest(
    *,
    key: str,
    cfg: TextDataConfig,
    cache_dir: Path,
    seq_len: int,
    tokenizer,
    generic: dict,
    specialist: dict[str, list[Chunk]],
    scored: list[mmlu.Question],
    target_domain: np.ndarray,
    clustering: Clustering,
    domains: list[dict],
    shards: dict,
    timings: dict,
) -> dict:
    """The manifest of an artifact (domains/store.py), in-memory or streaming: `generic` the
    generic corpus's statistics, `domains` each domain's chunks, sections and description."""
    k = clustering.num_domains
    coarse_of = clustering.coarse_of()
    return {
        "format": FORMAT,
        "key": key,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "seq_len": seq_len,
        "vocab_size": tokenizer.get_vocab_size(),
        "eos_id": eos_id(tokenizer),
        "config": asdict(cfg),
        "generic": generic,
        "specialist": {
            "documents": len({c.doc_id for part in specialist.values() for c in part}),
            "train_chunks": len(specialist["train"]),
            "eval_chunks": len(specialist["eval"]),
            "scored_questions": len(scored),
            "train_tokens": shards[SPECIALIST_SHARDS["train"]]["tokens"],
            "eval_tokens": shards[SPECIALIST_SHARDS["eval"]]["tokens"],
            "train_sequences_per_domain": np.bincount(target_domain, minlength=k).tolist(),
            "provenance": provenance(cfg.specialist, cache_dir),
        },
        "domains": [
            {"name": name, "coarse": None if coarse_of is None else int(coarse_of[d]), **entry}
            for d, (name, entry) in enumerate(zip(domain_names(k), domains, strict=True))
        ],
        "merges": clustering.merges,
        "shards": shards,
        "timings_s": timings,
    }


def domain_names(k: int) -> list[str]:
    width = len(str(k - 1))
    return [f"domain_{d:0{width}d}" for d in range(k)]


def content_key(text: str) -> str:
    """What identifies a text's content: a hash of its NFKC form, lowercased, with whitespace runs
    collapsed, so copies that differ only in case, spacing or Unicode form count as one text."""
    normal = " ".join(unicodedata.normalize("NFKC", text).lower().split())
    return hashlib.sha1(normal.encode("utf-8", errors="surrogatepass")).hexdigest()


def _read(source: SourceConfig, cache_dir: Path, what: str) -> list[Document]:
    return list(tqdm(read_documents(source, cache_dir), desc=f"reading {what}", unit="doc"))


def specialist_split(
    cfg: TextDataConfig, cache_dir: Path, max_chars: int, min_chars: int
) -> tuple[dict[str, list[Chunk]], set[str], list[mmlu.Question]]:
    """Specialist `train` and `eval` chunks, from documents in a seeded random order, the
    content keys of every document and chunk used (to remove from the generic pool), and the
    questions to score (MMLU: `_mmlu_split`; none for a text source).

    The split is by content, not by id: corpora repeat documents under other ids (the demo's BBC
    slices do), and documents share text. So a document whose content is already used is skipped,
    and so is a chunk whose content is: no text is in both `train` and `eval`."""
    spec = cfg.specialist
    docs = _read(spec, cache_dir, "specialist documents")
    if not docs:
        raise ValueError(
            f"the specialist set has no documents: source {spec.source!r} with filters "
            f"include={spec.include}, exclude={spec.exclude}, where={spec.where} matched nothing"
        )
    if spec.source == "mmlu":
        return _mmlu_split(docs, max_chars)
    wanted = {"train": spec.train_chunks, "eval": spec.eval_chunks}
    split = {"train": [], "eval": []}
    used: set[str] = set()
    for i in np.random.default_rng([cfg.seed, SPECIALIST_STREAM]).permutation(len(docs)):
        part = "train" if len(split["train"]) < wanted["train"] else "eval"
        if len(split[part]) >= wanted[part]:
            break
        doc, doc_key = docs[i], content_key(docs[i].text)
        if doc_key in used:
            continue
        pieces: dict[str, str] = {}  # content key -> the first chunk with that content
        for piece in chunk_text(doc.text, max_chars, min_chars):
            pieces.setdefault(content_key(piece), piece)
        new = [key for key in pieces if key not in used][: wanted[part] - len(split[part])]
        split[part] += [Chunk(doc.id, pieces[key], doc_key) for key in new]
        if new:
            used.update([doc_key, *new])
    if any(len(split[p]) < wanted[p] for p in split):
        raise ValueError(
            f"the specialist set has {len(split['train']) + len(split['eval'])} chunks in "
            f"{len(docs)} documents, fewer than train_chunks + eval_chunks = "
            f"{wanted['train'] + wanted['eval']}"
        )
    return split, used, []


def _mmlu_split(
    docs: list[Document], max_chars: int
) -> tuple[dict[str, list[Chunk]], set[str], list[mmlu.Question]]:
    """MMLU's own split: every `dev` question (with its answer) is specialist `train` text, and
    every `test` question is `eval` text and a scored question, unless its prompt is also a
    `dev` prompt (compared by content): then it is dropped, so no question is on both sides.
    A question is one chunk (more if longer than a chunk; none is too short to keep)."""
    questions = {
        part: [d.fields["question"] for d in docs if d.fields["split"] == split]
        for part, split in mmlu.SPLITS.items()
    }
    seen = {content_key(q.prompt) for q in questions["train"]}
    questions["eval"] = [q for q in questions["eval"] if content_key(q.prompt) not in seen]
    split = {
        part: [
            Chunk(q.id, piece, content_key(q.text))
            for q in part_questions
            for piece in chunk_text(q.text, max_chars, min_chars=1)
        ]
        for part, part_questions in questions.items()
    }
    used = {
        k for chunks in split.values() for c in chunks for k in (c.doc_key, content_key(c.text))
    }
    return split, used, questions["eval"]


def multiple_choice_task(questions: list[mmlu.Question], tokenizer) -> MultipleChoiceTask:
    """The questions tokenised as the model is scored on them: the prompt, and each choice as a
    continuation encoded on its own (a leading space, as after "Answer:")."""
    continuations = [[q.continuation(c) for c in range(len(q.choices))] for q in questions]
    flat = encode(tokenizer, [text for texts in continuations for text in texts])
    ends = np.cumsum([len(texts) for texts in continuations])
    return MultipleChoiceTask(
        name="mmlu",
        prompts=encode(tokenizer, [q.prompt for q in questions]),
        choices=[
            flat[end - len(texts) : end] for end, texts in zip(ends, continuations, strict=True)
        ],
        choice_bytes=[[len(t.encode("utf-8")) for t in texts] for texts in continuations],
        answers=np.array([q.answer for q in questions]),
    )


def _generic_chunks(
    cfg: TextDataConfig, cache_dir: Path, max_chars: int, min_chars: int, exclude: set[str]
) -> tuple[list[Chunk], dict]:
    """The generic pool's chunks, less the documents and chunks whose content key is in
    `exclude` (the specialist set's), and statistics for the manifest."""
    docs = _read(cfg, cache_dir, "generic documents")
    if not docs:
        raise ValueError(
            f"the generic source {cfg.source!r} yielded no documents (paths={cfg.paths}, "
            f"name={cfg.name}, include={cfg.include}, exclude={cfg.exclude}, where={cfg.where})"
        )
    keyed = [(doc, content_key(doc.text)) for doc in docs]
    kept = [(doc, key) for doc, key in keyed if key not in exclude]
    pieces = [
        Chunk(doc.id, piece, key, doc.origin)
        for doc, key in tqdm(kept, desc="chunking", unit="doc")
        for piece in chunk_text(doc.text, max_chars, min_chars)
    ]
    chunks = [c for c in pieces if content_key(c.text) not in exclude]
    if not chunks:
        raise ValueError(
            f"the generic source has no chunk of at least {min_chars} characters "
            f"({len(kept)} documents)"
        )
    stats = {
        "documents_read": len(docs),
        "documents": len(kept),
        "removed_as_specialist": len(docs) - len(kept),
        "chunks_removed_as_specialist": len(pieces) - len(chunks),
        "characters": sum(len(c.text) for c in chunks),
    }
    return chunks, {**stats, "provenance": provenance(cfg, cache_dir)}


def _heldout_mask(
    domains: np.ndarray,
    ids: list[np.ndarray],
    chunks: list[Chunk],
    names: list[str],
    cfg: TextDataConfig,
    seq_len: int,
) -> np.ndarray:
    """Which chunks are held out: whole documents, so that no document and no text is in both a
    domain's training and held-out split (chunks of one document are alike, and would flatter the
    held-out loss).

    The units held out are the documents grouped by content (`Chunk.doc_key`: copies under other
    ids are one unit). A unit takes its documents' chunks in every domain, and every chunk with
    the same text as one of them (text shared between documents, such as boilerplate). Units are
    taken in a seeded random order while a domain they reach has less than `heldout_fraction` of
    its chunks or a sequence's worth of tokens held out, unless that would leave a domain without
    a training sequence."""
    k = len(names)
    lengths = np.array([len(t) + 1 for t in ids])  # + EOS
    with_text = defaultdict(list)  # content key -> the chunks with that content
    texts_of = defaultdict(set)  # document content key -> its chunks' content keys
    for i, chunk in enumerate(chunks):
        key = content_key(chunk.text)
        with_text[key].append(i)
        texts_of[chunk.doc_key].add(key)
    units = [
        np.array(sorted({i for key in keys for i in with_text[key]})) for keys in texts_of.values()
    ]

    count = np.bincount(domains, minlength=k)
    wanted = np.ceil(cfg.heldout_fraction * count)
    tokens = np.bincount(domains, lengths, minlength=k)
    held_chunks, held_tokens = np.zeros(k), np.zeros(k)
    heldout = np.zeros(len(chunks), dtype=bool)
    for u in np.random.default_rng([cfg.seed, HELDOUT_STREAM]).permutation(len(units)):
        short = (held_chunks < wanted) | (held_tokens <= seq_len)
        if not short.any():
            break
        new = units[u][~heldout[units[u]]]
        more_chunks = np.bincount(domains[new], minlength=k)
        more_tokens = np.bincount(domains[new], lengths[new], minlength=k)
        reached = more_chunks > 0
        if short[reached].any() and (tokens - held_tokens - more_tokens > seq_len)[reached].all():
            heldout[new] = True
            held_chunks += more_chunks
            held_tokens += more_tokens
    short = np.flatnonzero((held_chunks < wanted) | (held_tokens <= seq_len))
    if short.size:
        d = short[0]
        documents = len({chunks[i].doc_key for i in np.flatnonzero(domains == d)})
        raise ValueError(
            f"{names[d]} has {count[d]} chunks from {documents} distinct documents: too few to "
            f"hold out whole documents for heldout_fraction={cfg.heldout_fraction} of its chunks "
            f"and one sequence of {seq_len} tokens while keeping a training sequence; raise "
            "min_domain_chunks or lower num_domains (larger domains), or lower heldout_fraction"
        )
    return heldout


def specialist_domains(
    tokens: np.ndarray, seq_len: int, tokenizer, embedder: Embedder, clustering
) -> np.ndarray:
    """The nearest domain of every specialist `train` sequence, from the embedding of its text."""
    sequences = TokenSequences(tokens, seq_len)
    if len(sequences) == 0:
        raise ValueError(
            f"the specialist train split has {len(tokens)} tokens, less than one sequence "
            f"({seq_len + 1}); raise specialist.train_chunks"
        )
    rows = sequences[np.arange(len(sequences))]
    texts = tokenizer.decode_batch(rows[:, :seq_len].tolist(), skip_special_tokens=True)
    return clustering.assign(embedder.encode_cached(texts))
