"""ODM's bandit update against a hand computation, its warm-up, and inside real runs: the weights
it records, an exact resume with its state, and what it optimises on the synthetic task."""

import math

import numpy as np
import pytest

from domains.synthetic import SyntheticDataConfig, generate
from experiments.results import read_results
from mixers import build_mixer
from mixers.odm import ODMConfig, exploration
from tests.mixer_runs import run, trajectory

pytestmark = pytest.mark.usefixtures("one_thread")


def view(k: int):
    return generate(
        SyntheticDataConfig(num_domains=k, sequences_per_domain=8), seq_len=8
    ).mixer_view()


def test_exploration_rate():
    assert exploration(3, 1) == pytest.approx(1 / 3)  # sqrt(ln 3 / 3) = 0.61 > 1/3
    assert exploration(3, 15) == pytest.approx(math.sqrt(math.log(3) / 45))


def test_update_follows_the_smoothed_mean_rule_by_hand():
    mixer = build_mixer(ODMConfig(smoothing=0.9, warmup_steps=0), view(3))
    steps = [
        ([1.0, 2.0, 0.0], [True, True, False]),
        ([1.5, 0.0, 0.5], [True, False, True]),
        ([1.2, 1.8, 0.7], [True, True, True]),
    ]
    for step, (losses, present) in enumerate(steps):
        mixer.observe_training_losses(step, np.array(losses), np.array(present))
    # By hand: first observations set R_i = exp(L_i), later ones smooth with a = 0.9.
    r0 = 0.9 * (0.9 * math.e + 0.1 * math.exp(1.5)) + 0.1 * math.exp(1.2)
    r1 = 0.9 * math.exp(2.0) + 0.1 * math.exp(1.8)
    r2 = 0.9 * math.exp(0.5) + 0.1 * math.exp(0.7)
    rewards = np.array([r0, r1, r2])
    eps = min(1 / 3, math.sqrt(math.log(3) / (3 * 3)))  # t = 3 observed steps
    np.testing.assert_allclose(mixer.weights, (1 - 3 * eps) * rewards / rewards.sum() + eps)


def test_weights_stay_uniform_through_the_warm_up():
    mixer = build_mixer(ODMConfig(warmup_steps=5, smoothing=0.0), view(4))
    losses = np.array([1.0, 2.0, 3.0, 4.0])
    for step in range(4):  # steps 0..4 train on uniform
        mixer.observe_training_losses(step, losses, np.ones(4, dtype=bool))
        np.testing.assert_array_equal(mixer.weights, np.full(4, 0.25))
    # Updates from the observation of step 4 on; exploration keeps them uniform while
    # eps_t = 1/K, i.e. until t > K ln K = 5.5.
    for step in range(4, 10):
        mixer.observe_training_losses(step, losses, np.ones(4, dtype=bool))
    eps = exploration(4, 10)
    rewards = np.exp(losses)
    np.testing.assert_allclose(mixer.weights, (1 - 4 * eps) * rewards / rewards.sum() + eps)
    assert np.argmax(mixer.weights) == 3  # the hardest domain gains
    with pytest.raises(ValueError, match="smoothing"):
        ODMConfig(smoothing=1.0)


@pytest.mark.slow
def test_odm_in_a_run_records_its_weights_and_resumes_exactly(tmp_path):
    overrides = ("mixer=odm", "mixer.warmup_steps=4", "train.checkpoint_every=12")
    whole, whole_dir = run(tmp_path, "whole", *overrides)
    assert whole["status"] == "completed" and whole["mixer_flops"] == 0
    rows = trajectory(whole_dir)
    # Uniform until exploration drops below 1/K, at the t-th observation with t > K ln K (here
    # 8 ln 8 = 16.6), i.e. after step 16; each row holds the weights in force from its step on.
    first = math.ceil(8 * math.log(8))
    assert [row["step"] for row in rows] == [0, *range(first, 33)]

    # Resume from the step-24 checkpoint of a copy of the run (kept as previous.ckpt when the
    # completed run saved its final state): same weights, bit for bit.
    resumed_dir = tmp_path / "resumed"
    (resumed_dir / "checkpoints").mkdir(parents=True)
    (resumed_dir / "checkpoints/last.ckpt").write_bytes(
        (whole_dir / "checkpoints/previous.ckpt").read_bytes()
    )
    resumed, _ = run(tmp_path, "resumed", *overrides, "train.resume=auto")
    assert resumed["final_weights"] == whole["final_weights"]
    assert read_results(resumed_dir)["steps"] == 32


def test_odm_weights_keep_the_exploration_floor(tmp_path):
    """Whatever the losses, every domain keeps at least eps_t of the weight."""
    results, _ = run(tmp_path, "odm", "mixer=odm", "mixer.warmup_steps=4")
    weights = results["final_weights"]
    assert sum(weights.values()) == pytest.approx(1.0)
    assert min(weights.values()) >= exploration(8, 32) - 1e-12
