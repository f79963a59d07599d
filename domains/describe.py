"""Short descriptions of domains so a person can see what each cluster is: its most distinctive
words, the origins its chunks come from (`Document.origin`: a document's `source` field, its
file's name, or its id's folder, e.g. `bbc/tech`), and the documents contributing most chunks."""

from __future__ import annotations

import math
import re
from collections import Counter

import numpy as np

WORD = re.compile(r"[^\W\d_]{3,}")
TOP = 5
MIN_COUNT = 5  # rarer words are too noisy to describe a domain


def describe_domains(
    texts: list[str],
    doc_ids: list[str],
    chunk_origins: list[str],
    domains: np.ndarray,
    num_domains: int,
) -> list[dict]:
    words = [Counter() for _ in range(num_domains)]
    origins = [Counter() for _ in range(num_domains)]
    documents = [Counter() for _ in range(num_domains)]
    for text, doc_id, origin, domain in zip(
        texts, doc_ids, chunk_origins, domains.tolist(), strict=True
    ):
        words[domain].update(w.lower() for w in WORD.findall(text))
        origins[domain][origin] += 1
        documents[domain][doc_id] += 1
    overall = Counter()
    for counts in words:
        overall.update(counts)
    total = sum(overall.values()) or 1
    described = []
    for d in range(num_domains):
        chunks = sum(origins[d].values()) or 1
        described.append(
            {
                "top_words": _distinctive(words[d], overall, total),
                "top_origins": [[o, round(n / chunks, 3)] for o, n in origins[d].most_common(3)],
                "top_documents": [doc for doc, _ in documents[d].most_common(3)],
            }
        )
    return described


def _distinctive(counts: Counter, overall: Counter, total: int) -> list[str]:
    """Words over-represented here, scored p * log(p / q)^2 (p: share here, q: share in all
    text): squaring the log-ratio favours specific words over merely frequent ones like "the"."""
    size = sum(counts.values())
    if size == 0:
        return []

    def score(word: str) -> float:
        p, q = counts[word] / size, overall[word] / total
        return p * math.log(p / q) ** 2 if p > q else 0.0

    frequent = [w for w, n in counts.items() if n >= MIN_COUNT] or list(counts)
    return sorted(frequent, key=lambda w: (-score(w), w))[:TOP]
