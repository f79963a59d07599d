"""Synthetic domains with a known right answer.

Each of the k domains is its own random first-order Markov source over a shared vocabulary: every
token has `branching` likely successors, chosen and weighted at random per domain. The specialist
set is drawn from a known mixture of some of those sources (`target_domains`), one source per
sequence, so a good mixer should move its weight onto exactly those domains, and importance
sampling finds them exactly. Generation is vectorised numpy: a few hundred thousand tokens take
well under a second.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from domains.data import DataConfig, DomainData, TokenSequences


@dataclass
class SyntheticDataConfig(DataConfig):
    source: str = "synthetic"
    vocab_size: int = 256
    branching: int = 4
    sequences_per_domain: int = 256
    heldout_sequences_per_domain: int = 32
    target_domains: list[int] = field(default_factory=lambda: [0, 1])
    # Share of each target domain in the specialist set (None: equal shares).
    target_mix: list[float] | None = None
    target_train_sequences: int = 32
    target_eval_sequences: int = 64
    # Consecutive, near-equal groups of domains form the coarse clusters.
    coarse_domains: int = 0


class MarkovSource:
    """A sparse random bigram source: `branching` successors per token, Dirichlet(1) weighted."""

    def __init__(self, vocab_size: int, branching: int, rng: np.random.Generator):
        self.successors = np.stack(
            [rng.choice(vocab_size, size=branching, replace=False) for _ in range(vocab_size)]
        )
        self.cdf = np.cumsum(rng.dirichlet(np.ones(branching), size=vocab_size), axis=1)
        self.vocab_size = vocab_size

    def sample(
        self, num_tokens: int, rng: np.random.Generator, chains: int = 64, start: int | None = None
    ) -> np.ndarray:
        """A flat stream of ``num_tokens`` tokens made of ``chains`` chains generated in parallel,
        each from a random first token (or ``start``)."""
        length = -(-num_tokens // chains)
        out = np.empty((chains, length), dtype=np.int64)
        current = rng.integers(self.vocab_size, size=chains) if start is None else np.full(1, start)
        for t in range(length):
            out[:, t] = current
            u = rng.random(chains)
            choice = np.minimum((self.cdf[current] < u[:, None]).sum(axis=1), self.cdf.shape[1] - 1)
            current = self.successors[current, choice]
        return out.reshape(-1)[:num_tokens]


def _sequences(stream: np.ndarray, seq_len: int) -> TokenSequences:
    return TokenSequences(stream.astype(np.uint16 if stream.max() < 2**16 else np.uint32), seq_len)


def generate(cfg: SyntheticDataConfig, seq_len: int) -> DomainData:
    k = cfg.num_domains
    targets = list(cfg.target_domains)
    if k < 1:
        raise ValueError("data.num_domains must be at least 1")
    if not targets or any(not 0 <= t < k for t in targets):
        raise ValueError(f"data.target_domains={targets} must be non-empty indices in [0, {k})")
    mix = np.ones(len(targets)) if cfg.target_mix is None else np.asarray(cfg.target_mix, float)
    if mix.shape != (len(targets),) or (mix < 0).any() or mix.sum() <= 0:
        raise ValueError("data.target_mix needs one non-negative share per target domain")
    mix = mix / mix.sum()
    if not 0 <= cfg.coarse_domains <= k:
        raise ValueError(
            f"data.coarse_domains={cfg.coarse_domains} must be in [0, data.num_domains={k}]"
        )

    rng = np.random.default_rng(cfg.seed)
    sources = [MarkovSource(cfg.vocab_size, cfg.branching, rng) for _ in range(k)]

    def stream(source: MarkovSource, num_sequences: int) -> np.ndarray:
        return source.sample(num_sequences * seq_len + 1, rng)

    train = [_sequences(stream(s, cfg.sequences_per_domain), seq_len) for s in sources]
    heldout = [_sequences(stream(s, cfg.heldout_sequences_per_domain), seq_len) for s in sources]

    def specialist(n: int) -> tuple[TokenSequences, np.ndarray]:
        # One source per sequence, drawn from the target mixture. Sequences share their boundary
        # token (TokenSequences' layout), so each chain starts from the previous one's last token
        # and every target token of sequence j comes from sequence j's own source.
        origin = np.asarray(targets)[rng.choice(len(targets), size=n, p=mix)]
        flat = [rng.integers(cfg.vocab_size, size=1)]
        for d in origin:
            flat.append(sources[d].sample(seq_len + 1, rng, chains=1, start=int(flat[-1][-1]))[1:])
        return _sequences(np.concatenate(flat), seq_len), origin

    target_train, target_train_domain = specialist(cfg.target_train_sequences)
    target_eval, _ = specialist(cfg.target_eval_sequences)
    coarse_of = np.arange(k) * cfg.coarse_domains // k if cfg.coarse_domains else None
    return DomainData(
        names=[f"domain_{i:02d}" for i in range(k)],
        train=train,
        heldout=heldout,
        target_train=target_train,
        target_eval=target_eval,
        vocab_size=cfg.vocab_size,
        seq_len=seq_len,
        target_train_domain=target_train_domain,
        coarse_of=coarse_of,
        meta={"source": "synthetic", "target_domains": targets, "target_mix": mix.tolist()},
        labels=[
            f"Markov source {i}" + (" (in the specialist mix)" if i in targets else "")
            for i in range(k)
        ],
    )
