"""The steps both preparations take (in memory, domains/text.py; streaming, domains/streaming.py).

What identifies a text's content (`content_key`), the specialist set's split into `train` and
`eval` by content (and MMLU's own split and scored questions), the nearest domain of each
specialist `train` sequence, and the artifact's manifest (domains/store.py writes it).
"""

from __future__ import annotations

import hashlib
import unicodedata
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple

import numpy as np
from tqdm import tqdm

from domains import mmlu
from domains.chunking import chunk_text
from domains.cluster import Clustering
from domains.data import MultipleChoiceTask, TokenSequences
from domains.embed import Embedder
from domains.schemas import TextDataConfig
from domains.seeds import SPECIALIST_SPLIT_STREAM, stream_rng
from domains.sources import Document, SourceConfig, provenance, read_documents
from domains.store import SPECIALIST_SHARDS
from domains.tokenizer import encode, eos_id

FORMAT = 3  # bump when the artifact layout or the pipeline's output changes


class Chunk(NamedTuple):
    doc_id: str
    text: str
    doc_key: str  # its document's `content_key`: copies of the document under other ids share it
    origin: str = ""  # its document's origin (`Document.origin`), counted in domain descriptions


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


def read_all(source: SourceConfig, cache_dir: Path, what: str) -> list[Document]:
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
    docs = read_all(spec, cache_dir, "specialist documents")
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
    for i in stream_rng(cfg.seed, SPECIALIST_SPLIT_STREAM).permutation(len(docs)):
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
