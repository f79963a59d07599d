import itertools

import numpy as np
import pytest

from domains.data import TokenSequences
from domains.synthetic import SyntheticDataConfig, generate


def test_sequences_share_one_boundary_token():
    seqs = TokenSequences(np.arange(11), seq_len=3)
    assert len(seqs) == 3
    assert seqs[[0, 2]].tolist() == [[0, 1, 2, 3], [6, 7, 8, 9]]
    assert seqs.num_tokens == 9
    with pytest.raises(IndexError):
        seqs[[3]]


def test_truncation_caps_training_tokens():
    seqs = TokenSequences(np.arange(101), seq_len=10)
    assert len(seqs.truncated(35)) == 3
    assert seqs.truncated(35).num_tokens == 30
    assert seqs.truncated(None) is seqs


def test_cap_below_one_sequence_is_an_error():
    data = generate(SyntheticDataConfig(num_domains=2, sequences_per_domain=8), seq_len=16)
    with pytest.raises(ValueError, match="below one sequence"):
        data.capped(10)
    assert data.capped(40).token_counts().tolist() == [32, 32]


def _log_likelihood(source, tokens: np.ndarray) -> float:
    """Log-probability of a token row under a synthetic Markov source."""
    probs = np.diff(source.cdf, prepend=0.0, axis=1)
    total = 0.0
    for a, b in itertools.pairwise(tokens):
        hit = np.flatnonzero(source.successors[a] == b)
        total += np.log(probs[a, hit[0]]) if hit.size else -np.inf
    return total


def test_specialist_sequences_come_from_the_target_sources():
    from domains import synthetic

    cfg = SyntheticDataConfig(num_domains=4, target_domains=[1, 3], target_train_sequences=12)
    data = generate(cfg, seq_len=16)
    # Rebuild the sources exactly as generate() does, to score each specialist sequence.
    rng = np.random.default_rng(cfg.seed)
    sources = [synthetic.MarkovSource(cfg.vocab_size, cfg.branching, rng) for _ in range(4)]
    assert set(data.target_train_domain.tolist()) <= {1, 3}
    for row, origin in zip(data.target_train[np.arange(12)], data.target_train_domain, strict=True):
        scores = [_log_likelihood(s, row) for s in sources]
        assert int(np.argmax(scores)) == origin
        assert np.isfinite(scores[origin])


def test_generation_is_seeded():
    a = generate(SyntheticDataConfig(seed=3), seq_len=16)
    b = generate(SyntheticDataConfig(seed=3), seq_len=16)
    c = generate(SyntheticDataConfig(seed=4), seq_len=16)
    assert np.array_equal(a.train[0].tokens, b.train[0].tokens)
    assert not np.array_equal(a.train[0].tokens, c.train[0].tokens)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [("target_domains", [0, 9], "target_domains"), ("target_mix", [1.0], "target_mix")],
)
def test_bad_synthetic_config_is_explained(field, value, message):
    cfg = SyntheticDataConfig(num_domains=4)
    setattr(cfg, field, value)
    with pytest.raises(ValueError, match=message):
        generate(cfg, seq_len=16)
