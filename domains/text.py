"""Domains from real text, built in memory: raw documents -> k domains and a specialist set, as
token shards. The config is `TextDataConfig` (domains/schemas.py); the steps shared with the
streaming preparation (domains/streaming.py) are in domains/steps.py.

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

import logging
import math
import time
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from tqdm import tqdm

from domains.cache import texts_digest
from domains.chunking import chunk_text
from domains.cluster import check_clustering, fit_clustering
from domains.describe import describe_domains
from domains.embed import Embedder
from domains.schemas import TextDataConfig
from domains.seeds import HELDOUT_STREAM, stream_rng
from domains.sources import provenance
from domains.steps import (
    Chunk,
    artifact_manifest,
    content_key,
    domain_names,
    multiple_choice_task,
    read_all,
    specialist_domains,
    specialist_split,
)
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


def _generic_chunks(
    cfg: TextDataConfig, cache_dir: Path, max_chars: int, min_chars: int, exclude: set[str]
) -> tuple[list[Chunk], dict]:
    """The generic pool's chunks, less the documents and chunks whose content key is in
    `exclude` (the specialist set's), and statistics for the manifest."""
    docs = read_all(cfg, cache_dir, "generic documents")
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
    for u in stream_rng(cfg.seed, HELDOUT_STREAM).permutation(len(units)):
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
