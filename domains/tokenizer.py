"""A byte-level BPE tokenizer trained on the generic pool (named so as not to shadow the stdlib's
`tokenize`). Byte-level means any text, code or accented letters included, encodes without an
unknown token. Chunks are separated by `EOS` in the token shards."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from tqdm import tqdm

from domains.cache import build_once, stable_hash

EOS = "<|endoftext|>"
TOKENIZER_FILE = "tokenizer.json"
MIN_VOCAB = 257  # the 256 bytes and EOS


def train_tokenizer(texts: Sequence[str], vocab_size: int) -> Tokenizer:
    if vocab_size < MIN_VOCAB:
        raise ValueError(f"vocab_size={vocab_size} is below {MIN_VOCAB} (256 bytes and EOS)")
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(
        tqdm(texts, desc="training tokenizer", unit="chunk"), trainer, length=len(texts)
    )
    return tokenizer


def cached_tokenizer(
    texts: Sequence[str], texts_digest: str, vocab_size: int, cache_dir: Path
) -> Tokenizer:
    """The tokenizer trained on ``texts``, kept under ``cache_dir`` by content (``texts_digest``),
    so preparations that differ only in clustering share one vocabulary."""
    key = stable_hash({"vocab_size": vocab_size, "texts": texts_digest})

    def build(out: Path) -> None:
        train_tokenizer(texts, vocab_size).save(str(out / TOKENIZER_FILE))

    folder, _ = build_once(cache_dir / "tokenizers" / key, build)
    return Tokenizer.from_file(str(folder / TOKENIZER_FILE))


def eos_id(tokenizer: Tokenizer) -> int:
    return tokenizer.token_to_id(EOS)


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16 if vocab_size <= 2**16 else np.uint32)


def encode(tokenizer: Tokenizer, texts: Sequence[str], batch_size: int = 1024) -> list[np.ndarray]:
    """Token ids of each text (without EOS), in batches with a progress bar."""
    dtype = token_dtype(tokenizer.get_vocab_size())
    ids = []
    for start in tqdm(range(0, len(texts), batch_size), desc="tokenizing", unit="batch"):
        batch = tokenizer.encode_batch(list(texts[start : start + batch_size]))
        ids.extend(np.asarray(e.ids, dtype=dtype) for e in batch)
    return ids
