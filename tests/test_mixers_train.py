"""The mixers inside real training runs (`experiments.train.train`, as the CLI runs it): the
known answer on synthetic data, the weight trajectory and logs, checkpoint round trips, and the
hand-off of a DoGE proxy's time-averaged weights to a fresh model through `static`."""

import numpy as np
import pytest

from experiments.results import read_results
from mixers.dga import DGAMixer
from models.batches import MixtureBatches
from tests.mixer_runs import run, trajectory

pytestmark = pytest.mark.usefixtures("one_thread")

ON_TARGET = ("domain_00", "domain_01")  # the synthetic specialist set mixes domains 0 and 1


def on_target(weights: dict) -> float:
    return sum(weights[name] for name in ON_TARGET)


@pytest.mark.slow
def test_dga_moves_the_weight_onto_the_specialists_domains(tmp_path):
    # This small GPT's gradients are smaller than the default model's: a larger eta.
    overrides = ("mixer=dga", "mixer.update_every=4", "mixer.eta=5", "mixer.probe_batch=8")
    results, run_dir = run(tmp_path, "dga", *overrides)
    assert results["status"] == "completed" and results["steps"] == 32
    assert on_target(results["final_weights"]) > 0.8
    rows = trajectory(run_dir)
    # One row per update (steps 0, 4, ..., 28): the weights in force from that step on.
    assert [row["step"] for row in rows] == list(range(0, 32, 4))
    assert on_target(rows[-1]) == pytest.approx(on_target(results["final_weights"]))
    for row in rows:
        assert sum(v for k, v in row.items() if k != "step") == pytest.approx(1.0)
    # Probe cost: 8 updates x (8 domains x 8 + 16 specialist sequences) x 32 tokens, each
    # sequence one forward and one backward pass: the training FLOPs of as many tokens.
    assert results["probe_tokens"] == 8 * (8 * 8 + 16) * 32
    flops_per_token = results["model"]["flops_per_token"]
    assert results["mixer_flops"] == results["probe_tokens"] * flops_per_token
    assert results["train_flops"] == results["tokens_trained"] * flops_per_token
    assert 0 < results["mixer_seconds"] < results["train_seconds"]
    header = (run_dir / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {f"mixer/alignment/domain_{i:02d}" for i in range(8)} <= set(header)
    assert {f"mixer/weight/domain_{i:02d}" for i in range(8)} <= set(header)


@pytest.mark.slow
def test_doge_target_mode_moves_the_weight_onto_the_specialists_domains_and_hands_it_on(
    tmp_path,
):
    # Four domains (two sequences of each per batch of 8) and mu = 0.001: the original's 0.01 is
    # tuned for 10^4 steps with a domain batch each; this run has 32 steps.
    proxy, proxy_dir = run(
        tmp_path, "doge", "data.num_domains=4", "mixer=doge", "mixer.mode=target", "mixer.mu=0.001"
    )
    assert on_target(proxy["final_weights"]) > 0.8
    assert on_target(proxy["time_averaged_weights"]) > 0.6
    assert proxy["final_domain_weights"]["domain_03"] == pytest.approx(1 / 4)  # uniform batches
    # ...but what a fresh model should reuse is alpha, not the sampling distribution.
    assert proxy["final_mixture"] == proxy["final_weights"]
    assert len(trajectory(proxy_dir)) == 32  # updated every step
    # Each step: one forward and backward over the batch (8 sequences, stratified: 2 of each
    # domain), in per-domain parts whose gradients form the step (training FLOPs, no pass of the
    # step's own), and over 16 specialist sequences, beyond training.
    flops_per_token = proxy["model"]["flops_per_token"]
    assert proxy["mixer_flops"] == 32 * 16 * 32 * flops_per_token
    assert proxy["train_flops"] == 32 * 8 * 32 * flops_per_token

    fresh, _ = run(
        tmp_path,
        "fresh",
        "data.num_domains=4",
        "mixer=static",
        f"mixer.path={proxy_dir}",
        "mixer.which=time_averaged",
    )
    assert fresh["final_weights"] == pytest.approx(proxy["time_averaged_weights"], rel=1e-12)
    assert fresh["probe_tokens"] == fresh["mixer_flops"] == 0
    # The proxy's whole compute is the fresh run's upstream cost.
    assert fresh["upstream_flops"] == proxy["train_flops"] + proxy["mixer_flops"]

    final, _ = run(
        tmp_path, "final", "data.num_domains=4", "mixer=static", f"mixer.path={proxy_dir}"
    )
    assert final["final_weights"] == pytest.approx(proxy["final_weights"], rel=1e-12)


@pytest.mark.slow
@pytest.mark.parametrize(
    "overrides",
    [
        ("mixer=importance",),
        ("mixer=dga_dr", "mixer.update_every=8"),
        ("mixer=doge", "mixer.update_every=8"),
    ],
    ids=["importance", "dga_dr", "doge-universal"],
)
def test_every_mixer_trains_and_records_its_weights(tmp_path, overrides):
    results, run_dir = run(tmp_path, "run", *overrides)
    assert results["status"] == "completed" and results["steps"] == 32
    final = np.array(list(results["final_weights"].values()))
    domain = np.array(list(results["final_domain_weights"].values()))
    for weights in (final, domain):
        assert np.isfinite(weights).all() and (weights >= 0).all()
        assert weights.sum() == pytest.approx(1.0)
    rows = trajectory(run_dir)
    assert list(rows[0])[1:] == list(results["final_weights"])
    online = results["mixer"] != "importance"
    assert len(rows) == (32 // 8 if online else 1)
    # DoGE's universal updates pass over the training batch only, and form those steps from
    # those passes: training FLOPs, none of the mixer's own.
    assert (results["mixer_flops"] > 0) == (online and results["mixer"] != "doge")
    if results["mixer"] == "dga_dr":
        assert list(results["final_weights"]) == [f"coarse_{c}" for c in range(4)]
        # 4 updates x (4 bases x 4 + 16 specialist sequences) x 32 tokens, whatever K.
        assert results["probe_tokens"] == 4 * (4 * 4 + 16) * 32


@pytest.mark.slow
def test_every_batch_is_drawn_with_the_weights_recorded_for_its_step(tmp_path, monkeypatch):
    """weights.csv and the time average hold the weights each batch was drawn with: an update
    at step s takes effect on step s's own batch."""
    drawn = []
    train = MixtureBatches.train

    def recording(self, weights, *args, **kwargs):
        drawn.append(np.array(weights))
        return train(self, weights, *args, **kwargs)

    monkeypatch.setattr(MixtureBatches, "train", recording)
    overrides = ("mixer=dga", "mixer.update_every=4", "mixer.eta=5", "mixer.probe_batch=8")
    results, run_dir = run(tmp_path, "dga", *overrides)
    rows = trajectory(run_dir)
    in_force = {int(row.pop("step")): np.array(list(row.values())) for row in rows}
    for step, weights in enumerate(drawn):
        recorded = in_force[max(s for s in in_force if s <= step)]
        np.testing.assert_allclose(weights, recorded, rtol=1e-7)
    averaged = np.array(list(results["time_averaged_weights"].values()))
    np.testing.assert_allclose(averaged, np.mean(drawn, axis=0), rtol=1e-9)


@pytest.mark.slow
def test_a_resumed_run_ends_with_the_weights_of_the_uninterrupted_one(tmp_path, monkeypatch):
    overrides = ("mixer=dga", "mixer.update_every=2", "mixer.beta=0.5", "train.checkpoint_every=4")
    uninterrupted, _ = run(tmp_path, "whole", *overrides)

    update = DGAMixer.update

    def crash_at_step_10(self, ctx):
        if ctx.step == 10:
            raise RuntimeError("simulated crash")
        return update(self, ctx)

    monkeypatch.setattr(DGAMixer, "update", crash_at_step_10)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run(tmp_path, "resumed", *overrides)
    run_dir = tmp_path / "resumed"
    assert read_results(run_dir)["status"] == "failed"
    monkeypatch.setattr(DGAMixer, "update", update)

    # Continues from the step-8 checkpoint: steps 8 and 9 are replayed, the updates at 8, 10...
    resumed, _ = run(tmp_path, "resumed", *overrides, "train.resume=auto")
    assert resumed["status"] == "completed" and resumed["steps"] == 32
    assert resumed["final_weights"] == uninterrupted["final_weights"]
    assert resumed["time_averaged_weights"] == pytest.approx(uninterrupted["time_averaged_weights"])
    assert resumed["probe_tokens"] == uninterrupted["probe_tokens"]
    assert trajectory(run_dir) == trajectory(tmp_path / "whole")
    assert resumed["metrics_final"] == pytest.approx(uninterrupted["metrics_final"])
