"""Every random stream of the benchmark, and the one rule that derives a stream from a seed.

A stream is named by integer keys: the seed it comes from, a stream constant below, and any
further keys (a rank, a coarse cluster...). numpy's SeedSequence mixes the keys, so two streams
whose keys differ are independent however close their numbers, with one caveat: numpy pads the
keys with zeros to four words, so keys [s, 1] and [s, 1, 0] name the same sequence. The values
below were fixed before that was noticed and are kept (changing one changes every result made
with it); a new stream gets a number of its own.

Streams of a run's `seed` (models/batches.py), one per process: `derive_seed(seed, STREAM, rank)`
- `TRAIN_STREAM`: the training batches' sampler (domains/sampler.py);
- `PROBE_STREAM`: the sampler of a mixer's probe batches;
- `SPECIALIST_DRAW_STREAM`: a mixer's draws from the specialist `train` split.

Streams of the data's `data.seed` (domains/text.py, domains/cluster.py):
- `SPECIALIST_SPLIT_STREAM`: the order the specialist set's documents are taken into its
  `train` and `eval` splits (`stream_rng(data.seed, SPECIALIST_SPLIT_STREAM)`);
- `HELDOUT_STREAM`: the order whole documents are held out of the domains (`stream_rng`);
- `COARSE_KMEANS_STREAM`: k-means of the coarse clusters (`derive_seed(..., bits=31)`: faiss
  takes a C int);
- `FINE_KMEANS_STREAM`: k-means inside coarse cluster g, keys (data.seed, stream, g), 31 bits.
  Its keys for g = 0 are the specialist split's (the caveat above), used one as a faiss seed
  and one as a generator.

Elsewhere: a sampler's order of domain d in its pass e is `stream_rng(sampler seed, d, e)`
(domains/sampler.py), and the streaming preparation holds out a document by a seeded hash of its
content (domains/streaming_encode.py, `held_out`), not by a stream.
"""

from __future__ import annotations

import numpy as np

# A run's streams: derive_seed(seed, stream, rank).
TRAIN_STREAM = 0
PROBE_STREAM = 1
SPECIALIST_DRAW_STREAM = 2

# The data's streams (data.seed).
SPECIALIST_SPLIT_STREAM = 1
HELDOUT_STREAM = 2
COARSE_KMEANS_STREAM = 0
FINE_KMEANS_STREAM = 1


def derive_seed(*keys: int, bits: int = 63) -> int:
    """An integer seed of `bits` bits for the stream named by `keys`, from the first 64-bit word
    of their SeedSequence: its top 63 bits (a sampler's or generator's seed) or its low 31 (a
    faiss seed). The two widths take different bits of the word, as they always have, so runs
    and prepared domains reproduce."""
    word = int(np.random.SeedSequence(list(keys)).generate_state(1, np.uint64)[0])
    if bits == 63:
        return word >> 1
    if bits == 31:
        return word % 2**31
    raise ValueError(f"derive_seed makes 63- or 31-bit seeds, not {bits}-bit ones")


def stream_rng(*keys: int) -> np.random.Generator:
    """A generator over the stream named by `keys` (seeded with their SeedSequence)."""
    return np.random.default_rng(list(keys))
