import numpy as np
import pytest
from scipy import stats

from domains.sampler import MixtureSampler


def test_domain_frequencies_follow_the_weights():
    sampler = MixtureSampler([50, 80, 120, 40], seed=0)
    weights = np.array([0.1, 0.2, 0.3, 0.4])
    domains = np.concatenate([sampler.draw(weights, 64)[0] for _ in range(100)])
    observed = np.bincount(domains, minlength=4)
    # Chi-square goodness of fit: a sampler that ignored the weights would fail at any sane level.
    assert stats.chisquare(observed, weights * observed.sum()).pvalue > 1e-3
    uniform = np.full(4, 0.25) * observed.sum()
    assert stats.chisquare(observed, uniform).pvalue < 1e-6


def test_a_weight_change_takes_effect_at_the_next_batch():
    sampler = MixtureSampler([10, 10, 10], seed=1)
    first, _ = sampler.draw(np.array([1.0, 0.0, 0.0]), 16)
    second, _ = sampler.draw(np.array([0.0, 0.0, 1.0]), 16)
    assert (first == 0).all()
    assert (second == 2).all()


def test_each_pass_visits_every_sequence_once_then_reshuffles():
    sampler = MixtureSampler([7], seed=2)
    one_hot = np.array([1.0])
    first_pass = np.concatenate([sampler.draw(one_hot, 1)[1] for _ in range(7)])
    assert sorted(first_pass) == list(range(7))
    assert sampler.epochs()[0] == pytest.approx(1.0)
    second_pass = np.concatenate([sampler.draw(one_hot, 1)[1] for _ in range(7)])
    assert sorted(second_pass) == list(range(7))
    assert not np.array_equal(first_pass, second_pass)  # reshuffled (7! orders; seed fixed)
    sampler.draw(one_hot, 3)
    assert sampler.epochs()[0] == pytest.approx(2 + 3 / 7)


def test_a_batch_larger_than_a_domain_wraps_into_the_next_pass():
    sampler = MixtureSampler([5, 5], seed=3)
    domains, indices = sampler.draw(np.array([1.0, 0.0]), 12)
    assert (domains == 0).all()
    assert sorted(indices[:5]) == list(range(5)) and sorted(indices[5:10]) == list(range(5))
    assert sampler.epochs()[0] == pytest.approx(12 / 5)


def test_draws_are_grouped_by_domain_and_seeded():
    weights = np.array([0.5, 0.5])
    a = MixtureSampler([20, 20], seed=4).draw(weights, 10)
    b = MixtureSampler([20, 20], seed=4).draw(weights, 10)
    c = MixtureSampler([20, 20], seed=5).draw(weights, 10)
    assert (np.diff(a[0]) >= 0).all()
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not (np.array_equal(a[0], c[0]) and np.array_equal(a[1], c[1]))


def test_state_round_trip_continues_the_same_stream():
    weights = np.array([0.3, 0.7])
    original = MixtureSampler([9, 13], seed=6)
    for _ in range(5):
        original.draw(weights, 4)
    restored = MixtureSampler([9, 13], seed=0)
    restored.load_state_dict(original.state_dict())
    for _ in range(5):
        a, b = original.draw(weights, 4), restored.draw(weights, 4)
        assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert np.allclose(original.epochs(), restored.epochs())


@pytest.mark.parametrize(
    "weights", [[0.5, np.nan], [-0.1, 1.1], [0.0, 0.0], [1.0]], ids=["nan", "neg", "zero", "len"]
)
def test_bad_weights_are_rejected(weights):
    with pytest.raises(ValueError, match="weights"):
        MixtureSampler([3, 3], seed=0).draw(np.array(weights), 2)


def test_empty_domain_is_rejected():
    with pytest.raises(ValueError, match=r"\[1\] have no sequences"):
        MixtureSampler([3, 0], seed=0)
