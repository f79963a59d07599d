"""Parity of ODM's weight update (mixers/odm.py) with the authors' public code.

The figures in tests/parity/odm.json come from running, standalone and verbatim, the reference
classes of alon-albalak/online-data-mixing at commit edbfdadb62b0388120b6198b1743067a7cd990dc,
megatron/data/data_sampling_utils.py: SmoothedMeanWeightUpdater.group_update (update_method
"smoothed_mean", which the repository's README names as the paper's implementation), driven through
DynamicDataSamplingWeight.group_update as megatron/training.py calls it after each mixed-minibatch
step, group_update(iteration, dataset_names=<sampled domains>, rewards=<their mean losses>), with
warm-up 0 and update frequency 1. K = 5 domains, 13 successive steps, one or more domains present
in each (fixed masks and losses from a numpy seed, stored in the JSON). eps_t = 1/K, hence uniform
weights, until t > K ln K = 8.05, so the first 8 steps build the reward state and the last 5 move
the weights. Their `iteration` (1-based) is our step + 1, which is also our t (observations so far).

Deliberate difference, documented in mixers/odm.py: a domain's first observation sets our reward to
R_i = exp(L_i), where theirs smooths it from 0 to (1 - a) exp(L_i). Hence three checks:
- their default smoothing a = 0.9, with the single intervention that their estimate of a domain is
  set to exp(first loss) just before its first update: ours must give the same weights;
- their code untouched at a = 0.9: ours must hold R_i = R_i(theirs) + a^n_i exp(first loss of i)
  (n_i: observations of i so far), and give different weights;
- their code untouched at a = 0: the difference vanishes and ours must give the same weights.
Not covered: the warm-up (theirs discards warm-up losses and first updates at iteration warmup + 1;
ours accumulates rewards through the warm-up), and how per-domain losses are averaged.
"""

import json
from pathlib import Path

import numpy as np
import pytest

from domains.synthetic import SyntheticDataConfig, generate
from mixers import build_mixer
from mixers.odm import ODMConfig

FIXTURE = json.loads((Path(__file__).parent / "parity" / "odm.json").read_text())


def ours(smoothing: float) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Our weights and rewards after each step of the fixture's input."""
    k = FIXTURE["num_domains"]
    data = generate(SyntheticDataConfig(num_domains=k, sequences_per_domain=8), seq_len=8)
    mixer = build_mixer(ODMConfig(smoothing=smoothing, warmup_steps=0), data.mixer_view())
    weights, rewards = [], []
    for step, (losses, present) in enumerate(
        zip(FIXTURE["losses"], FIXTURE["present"], strict=True)
    ):
        mixer.observe_training_losses(step, np.array(losses), np.array(present, dtype=bool))
        weights.append(mixer.weights.copy())
        rewards.append(np.array(mixer.state_dict()["rewards"]))
    return weights, rewards


def test_fixture_moves_the_weights():
    """The comparison is meaningful: weights leave uniform once eps_t < 1/K (t >= 9)."""
    expected = np.array(
        FIXTURE["runs"]["smoothing_0.9_first_observation_sets_reward"]["expected_weights"]
    )
    assert len(expected) == 13
    np.testing.assert_allclose(expected[:8], 0.2, atol=1e-12, rtol=0)
    assert np.abs(expected[8:] - 0.2).max() > 1e-2


@pytest.mark.parametrize(
    "run", ["smoothing_0.9_first_observation_sets_reward", "smoothing_0.0_verbatim"]
)
def test_weights_match_the_reference(run):
    ref = FIXTURE["runs"][run]
    weights, rewards = ours(ref["smoothing"])
    np.testing.assert_allclose(weights, ref["expected_weights"], atol=1e-6, rtol=0)
    np.testing.assert_allclose(rewards, ref["expected_rewards"], rtol=1e-9)


def test_first_observation_is_the_documented_difference():
    """Against their untouched code at a = 0.9: R(ours) = R(theirs) + a^n exp(first loss)."""
    ref = FIXTURE["runs"]["smoothing_0.9_verbatim"]
    a = ref["smoothing"]
    present = np.array(FIXTURE["present"], dtype=bool)
    losses = np.array(FIXTURE["losses"])
    weights, rewards = ours(a)
    first = np.exp(losses[present.argmax(axis=0), np.arange(present.shape[1])])
    for t, (r_ours, r_theirs) in enumerate(zip(rewards, ref["expected_rewards"], strict=True)):
        n = present[: t + 1].sum(axis=0)
        offset = np.where(n > 0, a**n * first, 0.0)
        np.testing.assert_allclose(r_ours, np.array(r_theirs) + offset, rtol=1e-9)
    assert np.abs(np.array(weights[8:]) - np.array(ref["expected_weights"][8:])).max() > 1e-3
