"""RegMix's math (experiments/regmix.py): swarm sampling rules against hand computations, the
regressor on the RegMix authors' released swarm, and the proposal."""

import math

import numpy as np
import pandas as pd
import pytest

from experiments.regmix import (
    RegMixConfig,
    dirichlet_strengths,
    draw_candidates,
    fit_regressor,
    heldout_spearman,
    natural_prior,
    propose,
    sample_swarm,
    snap_to_grid,
    spearman,
    tempered,
    unique_rows,
    within_usage_bound,
)
from tests.conftest import ROOT

FIXTURE = ROOT.parent / "shared" / "fixtures" / "regmix" / "data"


def test_prior_is_token_shares_and_temperature_flattens_it():
    assert natural_prior(np.array([100, 300])) == pytest.approx([0.25, 0.75])
    # [0.64, 0.36] ** 0.5 = [0.8, 0.6], renormalised by 1.4.
    assert tempered(np.array([0.64, 0.36]), 0.5) == pytest.approx([0.8 / 1.4, 0.6 / 1.4])
    with pytest.raises(ValueError, match="positive sum"):
        natural_prior(np.array([0, 0]))


def test_strengths_are_the_references_logspace_from_0_1_to_5():
    strengths = dirichlet_strengths(RegMixConfig())
    # The reference: np.logspace(log10(0.1), log10(5), 15), i.e. 0.1 ... 5 with ratio 50^(1/14).
    assert len(strengths) == 15
    assert strengths[0] == pytest.approx(0.1) and strengths[-1] == pytest.approx(5.0)
    assert strengths[1:] / strengths[:-1] == pytest.approx([50 ** (1 / 14)] * 14)


def test_usage_bound_rejects_a_domain_above_max_usage_times_its_prior():
    prior = np.array([0.05, 0.95])  # bounds: 15 x 0.05 = 0.75, and min(15 x 0.95, 1) = 1
    mixtures = np.array([[0.8, 0.2], [0.75, 0.25], [0.7, 0.3], [0.0, 1.0]])
    assert within_usage_bound(mixtures, prior, 15).tolist() == [False, True, True, True]


def test_grid_drops_small_weights_renormalises_and_rounds():
    # 0.00015 < 2e-4 is dropped; 0.33 / 0.99985 = 0.330050 -> 1650 x 2e-4 = 0.33;
    # 0.66985 / 0.99985 = 0.669950 -> 3350 x 2e-4 = 0.67.
    snapped = snap_to_grid(np.array([[0.00015, 0.33, 0.66985]]), 2e-4)
    assert snapped[0] == pytest.approx([0.0, 0.33, 0.67], abs=1e-12)


def test_duplicates_are_removed():
    rows = np.array([[0.5, 0.5], [0.3, 0.7], [0.5, 0.5], [0.3, 0.7 + 1e-7]])
    assert unique_rows(rows).tolist() == [[0.3, 0.7], [0.5, 0.5]]


def test_swarm_obeys_the_rules_and_is_reproducible():
    prior = np.array([0.02, 0.08, 0.3, 0.6])
    cfg = RegMixConfig(swarm_runs=40)
    swarm = sample_swarm(prior, cfg, np.random.default_rng(0))
    assert swarm.shape == (40, 4)
    assert len(unique_rows(swarm)) == 40
    steps = swarm / cfg.grid
    assert steps == pytest.approx(np.round(steps), abs=1e-6)  # on the 2e-4 grid
    assert swarm.sum(axis=1) == pytest.approx(np.ones(40), abs=4 * cfg.grid / 2)
    # Within 15 x prior (0.3 for the first domain), up to the rounding.
    assert (swarm <= np.minimum(15 * prior, 1) + cfg.grid).all()
    assert (sample_swarm(prior, cfg, np.random.default_rng(0)) == swarm).all()


def test_candidates_have_the_tempered_mean_and_the_strengths_spread():
    # A candidate is Dirichlet(s x a), a the tempered prior and s one of the strengths at random:
    # E[w_i] = a_i and Var[w_i] = a_i (1 - a_i) mean_s 1 / (s + 1). (Strengths 10^0.1 ... 10^5
    # would make it about 9 times smaller.)
    prior = np.array([0.1, 0.2, 0.3, 0.4])
    cfg = RegMixConfig()
    draws = draw_candidates(prior, cfg, np.random.default_rng(1), 20_000)
    a = tempered(prior, 0.5)
    assert draws.mean(axis=0) == pytest.approx(a, abs=0.01)
    spread = np.mean(1 / (dirichlet_strengths(cfg) + 1))
    assert draws.var(axis=0) == pytest.approx(a * (1 - a) * spread, rel=0.05)


def test_swarm_too_large_for_the_grid_is_an_error():
    # Two domains on a 0.25 grid: at most 5 distinct mixtures.
    cfg = RegMixConfig(swarm_runs=8, grid=0.25)
    with pytest.raises(ValueError, match="distinct mixtures"):
        sample_swarm(np.array([0.5, 0.5]), cfg, np.random.default_rng(0))


def test_proposal_is_the_mean_of_the_top_k_lowest_predicted():
    prior = np.array([0.5, 0.3, 0.2, 0.0])
    cfg = RegMixConfig(proposal_samples=1000, top_k=10)
    # Predicted loss falls with the weight of domain 0: the top 10 are the 10 samples with the
    # most of domain 0.
    proposal = propose(lambda x: -x[:, 0], prior, cfg, np.random.default_rng(3))
    samples = np.random.default_rng(3).dirichlet(prior[:3], size=1000)
    expected = np.sort(samples[:, 0])[-10:].mean()
    assert proposal[0] == pytest.approx(expected)
    assert proposal[3] == 0.0  # a domain without tokens is never proposed
    assert proposal.sum() == pytest.approx(1.0)


def test_regressor_ranks_a_noisy_monotone_loss():
    rng = np.random.default_rng(0)
    mixtures = rng.dirichlet(np.ones(5), size=200)
    losses = 3.0 - mixtures[:, 0] + 0.02 * rng.standard_normal(200)
    rho, heldout = heldout_spearman(mixtures, losses, RegMixConfig(), seed=0)
    assert heldout == 50
    assert rho > 0.9


def test_spearman_is_nan_for_a_constant_prediction():
    assert math.isnan(spearman(np.ones(4), np.arange(4.0)))
    assert spearman(np.arange(4.0), np.array([1.0, 3.0, 2.0, 4.0])) == pytest.approx(0.8)


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ({"top_k": 10, "proposal_samples": 5}, "top_k"),
        ({"max_usage": 0.5}, "max_usage"),
        ({"heldout_fraction": 1.0}, "heldout_fraction"),
        ({"swarm_runs": 3}, "at least 4"),
        ({"min_strength": 6.0}, "min_strength"),
    ],
)
def test_options_out_of_range_are_refused(option, message):
    with pytest.raises(ValueError, match=message):
        RegMixConfig(**option)


def _released_swarm(mixtures: str, losses: str) -> tuple[np.ndarray, np.ndarray]:
    x = pd.read_csv(FIXTURE / mixtures).set_index("index")
    y = pd.read_csv(FIXTURE / losses).set_index("index").loc[x.index]
    return x.to_numpy(), y["metric/the_pile_pile_cc_val_loss"].to_numpy()


@pytest.mark.skipif(not FIXTURE.is_dir(), reason="shared/fixtures/regmix is not beside the repo")
def test_regressor_ranks_the_released_swarm_held_out_runs():
    """Fitted on the authors' 512 training runs (1M-parameter models), ranked on their 256
    held-out mixtures by Pile-CC loss. Measured: rho 0.990 on the 1M runs and 0.986 on the same
    mixtures trained at 60M (seeds 0-2; published: about 0.99; least squares on the same split:
    0.90). The bar 0.98 leaves room for LightGBM versions and fails a linear-quality fit."""
    mixtures, losses = _released_swarm("train_mixture_1m.csv", "train_pile_loss_1m.csv")
    predict = fit_regressor(mixtures, losses, RegMixConfig(), seed=0)
    for size, bar in (("1m", 0.98), ("60m", 0.97)):
        test_x, test_y = _released_swarm(f"test_mixture_{size}.csv", f"test_pile_loss_{size}.csv")
        assert spearman(predict(test_x), test_y) > bar, size
