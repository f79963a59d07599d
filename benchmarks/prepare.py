"""Speed of data preparation on the demo corpus: embedding (chunks/s), k-means (flat k = 16 and
64, two-level 16 x 64) and tokenization (MB/s), each on the real pipeline functions; and how
closely the domains of the cheap embedding options agree with MiniLM's (adjusted Rand index of
the k = 16 clusterings of the whole corpus: 1 = the same partition, 0 = chance).

    python -m benchmarks.prepare [--embed-chunks 512] [--repeats 3]

The k-means timings need embeddings of the whole corpus: they come from the preparation cache
when `make demo` (or `experiments.prepare data=demo`) has run, else they are computed first
(minutes on a CPU) and cached for next time.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from sklearn.metrics import adjusted_rand_score

from benchmarks.common import interleaved, median, print_table, write_results
from domains.chunking import chunk_text
from domains.cluster import fit_clustering
from domains.embed import HASHED, Embedder, EmbeddingConfig
from domains.schemas import TextDataConfig
from domains.sources import read_documents
from domains.tokenizer import encode, train_tokenizer

CONTEXT = 128


def demo_chunks(cache_dir: Path) -> list[str]:
    """The demo corpus's chunks, cut as `experiments.prepare data=demo` cuts them."""
    cfg = TextDataConfig()
    max_chars = round(CONTEXT * cfg.chars_per_token)
    min_chars = round(cfg.min_chunk_fraction * max_chars)
    return [
        piece
        for doc in read_documents(cfg, cache_dir)
        for piece in chunk_text(doc.text, max_chars, min_chars)
    ]


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--embed-chunks", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    cache_dir = Path(os.environ.get("MIXBENCH_CACHE", "~/.cache/mixbench")).expanduser()
    texts = demo_chunks(cache_dir)
    megabytes = sum(len(t.encode()) for t in texts) / 1e6
    rows, results = [], {"corpus": {"chunks": len(texts), "megabytes": megabytes}}

    # Embedding: the default (whole 128-token chunk), the demo preset (first 64 wordpieces) and
    # hashed word n-grams (no model).
    sample = texts[: args.embed_chunks]
    embedders = {
        f"max_tokens={n}": Embedder(EmbeddingConfig(max_tokens=n), cache_dir) for n in (128, 64)
    }
    embedders[HASHED] = Embedder(EmbeddingConfig(model=HASHED), cache_dir)
    for embedder in embedders.values():
        embedder.encode(sample[:64])  # load the model and warm up
    seconds = interleaved(
        {name: (lambda e=e: timed(lambda: e.encode(sample))) for name, e in embedders.items()},
        args.repeats,
    )
    results["embedding_chunks_per_s"] = {n: len(sample) / median(s) for n, s in seconds.items()}
    rows += [[f"embed ({n})", "chunks/s", len(sample) / median(s)] for n, s in seconds.items()]

    # k-means on the whole corpus's embeddings (as the demo preset embeds them).
    embeddings = embedders["max_tokens=64"].encode_cached(texts)
    clusterings = {
        "k=16": dict(num_domains=16),
        "k=64": dict(num_domains=64),
        "16x64 two-level": dict(num_domains=16 * 64, coarse_domains=16),
    }
    kmeans = {}
    for name, options in clusterings.items():
        kmeans[name] = median(
            [
                timed(lambda o=options: fit_clustering(embeddings, **o, seed=0))
                for _ in range(args.repeats)
            ]
        )
        rows.append([f"k-means {name}", "s", kmeans[name]])
    results["kmeans_seconds"] = kmeans

    # Agreement of the k = 16 domains with those of MiniLM on whole chunks.
    domains = {
        name: fit_clustering(embedder.encode_cached(texts), 16, seed=0).assign(
            embedder.encode_cached(texts)
        )
        for name, embedder in embedders.items()
    }
    reference = domains["max_tokens=128"]
    results["agreement_with_minilm_ari"] = {
        name: adjusted_rand_score(reference, found)
        for name, found in domains.items()
        if name != "max_tokens=128"
    }
    rows += [
        [f"agreement ({name})", "ARI vs MiniLM", ari]
        for name, ari in results["agreement_with_minilm_ari"].items()
    ]

    # Tokenizer: BPE training and encoding of the whole generic pool.
    train_s = median([timed(lambda: train_tokenizer(texts, 4096)) for _ in range(args.repeats)])
    tokenizer = train_tokenizer(texts, 4096)
    encode_s = median([timed(lambda: encode(tokenizer, texts)) for _ in range(args.repeats)])
    results["tokenizer"] = {
        "train_mb_per_s": megabytes / train_s,
        "encode_mb_per_s": megabytes / encode_s,
    }
    rows += [
        ["BPE training", "MB/s", megabytes / train_s],
        ["tokenization", "MB/s", megabytes / encode_s],
    ]

    print_table(
        f"Preparation speed ({len(texts)} chunks, {megabytes:.1f} MB)",
        ["stage", "unit", "median"],
        rows,
    )
    print(f"written: {write_results('prepare', {'settings': vars(args), **results})}")


if __name__ == "__main__":
    main()
