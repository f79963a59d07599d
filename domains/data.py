"""The in-memory contract between data preparation and training.

Every data source (synthetic Markov domains, token shards prepared from real text) produces a
`DomainData`: k generic domains, each with training and held-out token sequences, plus the
specialist (target) set split into the `train` part a mixer may look at and the held-out `eval`
part that is the benchmark's score.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np


@dataclass
class DataConfig:
    """Fields every data source has; each source's schema extends this."""

    source: str = "synthetic"
    num_domains: int = 8
    # Cap on each domain's training tokens, applied at load time (None: no cap).
    tokens_per_domain: int | None = None
    # Seeds the data itself; the run's `seed` varies training on the same data.
    seed: int = 0
    # Two-level domains: this many coarse clusters over the `num_domains` fine ones (0: flat).
    # DGA-DR's default bases are one per coarse cluster.
    coarse_domains: int = 0


class TokenSequences:
    """Fixed-length training sequences over a flat token array (a numpy array or a memmap).

    Sequence j is ``tokens[j * L : j * L + L + 1]``: L inputs plus the one-token-shifted targets,
    so consecutive sequences share one boundary token and nothing else.
    """

    def __init__(self, tokens: np.ndarray, seq_len: int):
        if tokens.ndim != 1:
            raise ValueError(f"token array must be 1-D, got shape {tokens.shape}")
        self.tokens = tokens
        self.seq_len = seq_len

    def __len__(self) -> int:
        return max(0, (len(self.tokens) - 1) // self.seq_len)

    @property
    def num_tokens(self) -> int:
        """Tokens the model is trained to predict (L per sequence)."""
        return len(self) * self.seq_len

    def __getitem__(self, index: np.ndarray | list[int]) -> np.ndarray:
        """Rows for the given sequence indices, as an int64 array of shape [len(index), L + 1]."""
        index = np.asarray(index, dtype=np.int64)
        if index.size and (index.min() < 0 or index.max() >= len(self)):
            raise IndexError(f"sequence index out of range [0, {len(self)})")
        offsets = index[:, None] * self.seq_len + np.arange(self.seq_len + 1)
        return np.asarray(self.tokens[offsets], dtype=np.int64)

    def truncated(self, max_tokens: int | None) -> TokenSequences:
        """The first sequences holding at most ``max_tokens`` training tokens (a per-domain cap)."""
        if max_tokens is None:
            return self
        n = min(len(self), max_tokens // self.seq_len)
        return TokenSequences(
            self.tokens[: n * self.seq_len + 1] if n else self.tokens[:0], self.seq_len
        )


@dataclass
class MultipleChoiceTask:
    """A downstream task scored beside the specialist loss (models/scoring.py), tokenised with the
    run's vocabulary: question i is `prompts[i]`, its choices `choices[i]` (token arrays of the
    continuations that follow the prompt), their lengths in UTF-8 bytes `choice_bytes[i]`, and
    the index of the correct one `answers[i]`."""

    name: str
    prompts: list[np.ndarray]
    choices: list[list[np.ndarray]]
    choice_bytes: list[list[int]]
    answers: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.prompts)
        if not (len(self.choices) == len(self.choice_bytes) == len(self.answers) == n) or not n:
            raise ValueError(f"task {self.name!r} needs questions, each with choices and an answer")
        for i, (choices, answer) in enumerate(zip(self.choices, self.answers, strict=True)):
            if not 0 <= answer < len(choices) or any(len(c) == 0 for c in choices):
                raise ValueError(f"question {i} of task {self.name!r} has a bad answer or choice")

    def __len__(self) -> int:
        return len(self.prompts)


@dataclass
class DomainData:
    """k generic domains and the specialist set, all tokenised with one vocabulary."""

    names: list[str]
    train: list[TokenSequences]
    heldout: list[TokenSequences]
    target_train: TokenSequences
    target_eval: TokenSequences
    vocab_size: int
    seq_len: int
    # Nearest generic domain of every specialist `train` sequence (what importance sampling counts).
    target_train_domain: np.ndarray
    # Coarse cluster of every domain when the domains come from a two-level clustering, else None.
    coarse_of: np.ndarray | None = None
    # Free-form description of where the data came from (written to results.json).
    meta: dict = field(default_factory=dict)
    # A short description of each domain for tables and plots (e.g. its dominant source and
    # distinctive words); None: the names say it all.
    labels: list[str] | None = None
    # The specialist's multiple-choice task (MMLU subjects), scored at every evaluation; None when
    # the specialist set is plain text.
    task: MultipleChoiceTask | None = None

    def __post_init__(self) -> None:
        k = len(self.names)
        if not (len(self.train) == len(self.heldout) == k):
            raise ValueError("names, train and heldout must have one entry per domain")
        for name, seqs in zip(self.names, self.train, strict=True):
            if len(seqs) == 0:
                raise ValueError(f"domain {name!r} has no training sequences")
        if len(self.target_train) == 0 or len(self.target_eval) == 0:
            raise ValueError("the specialist set needs both train and eval sequences")
        if len(self.target_train_domain) != len(self.target_train):
            raise ValueError("target_train_domain needs one domain index per specialist sequence")
        if self.coarse_of is not None and len(self.coarse_of) != k:
            raise ValueError("coarse_of needs one coarse cluster per domain")
        if self.labels is not None and len(self.labels) != k:
            raise ValueError("labels needs one description per domain")

    @property
    def num_domains(self) -> int:
        return len(self.names)

    def domain_labels(self) -> dict[str, str]:
        """{domain name: short description}."""
        return dict(zip(self.names, self.labels or self.names, strict=True))

    def token_counts(self) -> np.ndarray:
        """Training tokens per domain (after any cap)."""
        return np.array([seqs.num_tokens for seqs in self.train], dtype=np.int64)

    def mixer_view(self, seed: int = 0) -> MixerView:
        """What a mixer may see of this data: no token arrays, and above all not the held-out
        specialist `eval` split (the benchmark's score); specialist `train` sequences reach a
        mixer only through its update context. `seed`: the run's seed (`MixerView.seed`)."""
        return MixerView(
            names=list(self.names),
            domain_tokens=self.token_counts(),
            target_train_domain=self.target_train_domain.copy(),
            coarse_of=None if self.coarse_of is None else self.coarse_of.copy(),
            vocab_size=self.vocab_size,
            seed=seed,
        )

    def capped(self, tokens_per_domain: int | None) -> DomainData:
        """The same data with every domain's training split cut to ``tokens_per_domain`` tokens."""
        if tokens_per_domain is None:
            return self
        if tokens_per_domain < self.seq_len:
            raise ValueError(
                f"tokens_per_domain={tokens_per_domain} is below one sequence ({self.seq_len} tokens)"
            )
        return replace(
            self,
            train=[seqs.truncated(tokens_per_domain) for seqs in self.train],
            meta={**self.meta, "tokens_per_domain": tokens_per_domain},
        )


@dataclass(frozen=True)
class MixerView:
    """The facts about the domains a mixer builds its weights from (see `DomainData`)."""

    names: list[str]
    # Training tokens per domain (after any cap).
    domain_tokens: np.ndarray
    target_train_domain: np.ndarray
    coarse_of: np.ndarray | None = None
    # The tokenizer's vocabulary size (DoReMi's initial excess-loss score is its log).
    vocab_size: int | None = None
    # The run's seed, for a mixer that draws at random (Aioli's domain order): it seeds the
    # mixer's own generator, which the mixer keeps in its state so that a resumed run continues it.
    seed: int = 0

    @property
    def num_domains(self) -> int:
        return len(self.names)

    def token_counts(self) -> np.ndarray:
        return self.domain_tokens
