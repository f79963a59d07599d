"""Mixture sampling: which sequences make up each training batch.

Each sequence's domain is drawn from the mixture weights passed in at that call (so a mixer's
update takes effect at the very next batch); the sequence is then the next unseen one of that
domain in a per-domain random order. When a domain runs out it is reshuffled and a new pass
begins, and the number of passes (epochs) each domain has seen is counted: under a limited token
budget this is what shows a method repeating its favourite domains.

A domain's order in pass e is a permutation seeded by (seed, domain, e), so the checkpointed state
is a few counters and the generator state, however many domains and sequences there are.
"""

from __future__ import annotations

import numpy as np

from domains.seeds import stream_rng


def check_weights(weights: np.ndarray, n: int) -> np.ndarray:
    """`weights` as float64, checked to be a mixture over `n` components: that many, finite,
    >= 0 and not all zero (not normalised). Mixers check their weights with it too."""
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (n,):
        raise ValueError(f"expected {n} weights, got shape {w.shape}")
    if not np.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
        raise ValueError(f"mixture weights must be finite, >= 0 and not all zero: {w}")
    return w


class MixtureSampler:
    def __init__(self, sizes: list[int] | np.ndarray, seed: int):
        self.sizes = np.asarray(sizes, dtype=np.int64)
        if self.sizes.ndim != 1 or len(self.sizes) == 0:
            raise ValueError("the sampler needs at least one domain")
        if (self.sizes <= 0).any():
            empty = np.flatnonzero(self.sizes <= 0).tolist()
            raise ValueError(f"domains {empty} have no sequences to sample")
        self.seed = seed
        self._rng = np.random.default_rng(seed)
        self._cursor = np.zeros(len(self.sizes), dtype=np.int64)  # position in the current pass
        self._passes = np.zeros(len(self.sizes), dtype=np.int64)  # completed passes
        self._orders: dict[int, np.ndarray] = {}  # cache of the current pass's permutation

    @property
    def num_domains(self) -> int:
        return len(self.sizes)

    def draw(self, weights: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Domains and sequence indices of ``n`` sequences, grouped by domain.

        ``weights`` is the mixture over domains; it is renormalised so float round-off in a
        mixer's update cannot make numpy reject it, but it must be finite, >= 0 and not all zero.
        """
        probs = self._check_weights(weights)
        return self._sequences(np.sort(self._rng.choice(self.num_domains, size=n, p=probs)))

    def draw_stratified(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Like `draw`, but every domain holds n // k of the sequences and the remaining n mod k
        go to distinct domains drawn at random: each batch holds every domain (DoGE scores the
        per-domain gradients of the training batch, so it needs them all)."""
        k = self.num_domains
        if n < k:
            raise ValueError(
                f"a stratified batch of {n} sequences cannot hold all {k} domains: "
                f"raise train.batch_size to at least {k}"
            )
        counts = np.full(k, n // k)
        counts[self._rng.choice(k, size=n % k, replace=False)] += 1
        return self._sequences(np.repeat(np.arange(k), counts))

    def _sequences(self, domains: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Sequence indices for sorted ``domains``: the next unseen ones of each domain."""
        n = len(domains)
        indices = np.empty(n, dtype=np.int64)
        present, counts = np.unique(domains, return_counts=True)
        start = 0
        for domain, count in zip(present.tolist(), counts.tolist(), strict=True):
            indices[start : start + count] = self._next(domain, count)
            start += count
        return domains, indices

    def epochs(self) -> np.ndarray:
        """Passes over each domain so far, fractional (1.5 = every sequence seen once, half twice)."""
        return self._passes + self._cursor / self.sizes

    def _check_weights(self, weights: np.ndarray) -> np.ndarray:
        w = check_weights(weights, self.num_domains)
        return w / w.sum()

    def _order(self, domain: int) -> np.ndarray:
        order = self._orders.get(domain)
        if order is None:
            rng = stream_rng(self.seed, domain, int(self._passes[domain]))
            order = self._orders[domain] = rng.permutation(int(self.sizes[domain]))
        return order

    def _next(self, domain: int, count: int) -> np.ndarray:
        taken = []
        while count > 0:
            cursor = int(self._cursor[domain])
            size = int(self.sizes[domain])
            take = min(count, size - cursor)
            taken.append(self._order(domain)[cursor : cursor + take])
            count -= take
            if cursor + take == size:  # pass complete: reshuffle
                self._passes[domain] += 1
                self._cursor[domain] = 0
                self._orders.pop(domain, None)
            else:
                self._cursor[domain] = cursor + take
        return np.concatenate(taken)

    def state_dict(self) -> dict:
        return {
            "seed": self.seed,
            "sizes": self.sizes.tolist(),
            "rng": self._rng.bit_generator.state,
            "cursor": self._cursor.tolist(),
            "passes": self._passes.tolist(),
        }

    def load_state_dict(self, state: dict) -> None:
        if state["sizes"] != self.sizes.tolist():
            raise ValueError("checkpointed sampler was built for different domains (sizes differ)")
        self.seed = state["seed"]
        self._rng.bit_generator.state = state["rng"]
        self._cursor = np.asarray(state["cursor"], dtype=np.int64)
        self._passes = np.asarray(state["passes"], dtype=np.int64)
        self._orders.clear()
