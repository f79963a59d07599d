"""The weight-update math and the static weight sources, without training (fast)."""

import json

import numpy as np
import pytest

from domains.data import MixerView
from domains.synthetic import SyntheticDataConfig, generate
from mixers import build_mixer
from mixers.dga_dr import DGADRConfig, DGADRMixer
from mixers.importance import ImportanceConfig
from mixers.mixture_file import MIXTURE_FILE, write_mixture_file
from mixers.simplex import exponentiated_step, mirror_update, with_floor
from mixers.static import StaticConfig


def synthetic(**overrides):
    """What a mixer sees of small synthetic domains."""
    cfg = SyntheticDataConfig(sequences_per_domain=8, heldout_sequences_per_domain=2, **overrides)
    return generate(cfg, seq_len=8).mixer_view()


def test_positive_score_gains_weight_negative_loses():
    weights = np.full(3, 1 / 3)
    new = exponentiated_step(weights, np.array([1.0, 0.0, -1.0]), eta=0.5)
    assert new[0] > weights[0] and new[2] < weights[2]
    # softmax(log alpha + eta a): the log-ratio of two weights moves by eta * (a_i - a_j).
    assert np.log(new[0] / new[2]) == pytest.approx(1.0)
    assert new.sum() == pytest.approx(1.0)


def test_huge_scores_stay_on_the_simplex():
    new = exponentiated_step(np.full(4, 0.25), np.array([1e6, 3e5, -1e6, 0.0]), eta=10.0)
    assert np.isfinite(new).all() and new.sum() == pytest.approx(1.0)
    assert new[0] == pytest.approx(1.0)


def test_ema_takes_the_beta_share_of_the_new_weights():
    weights, scores = np.array([0.5, 0.3, 0.2]), np.array([2.0, -1.0, 0.5])
    plain = exponentiated_step(weights, scores, eta=0.7)
    full, _ = mirror_update(weights, scores, eta=0.7, beta=1.0)
    np.testing.assert_allclose(full, plain)
    smoothed, _ = mirror_update(weights, scores, eta=0.7, beta=0.25)
    np.testing.assert_allclose(smoothed - weights, 0.25 * (plain - weights), atol=1e-15)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_scores_skip_the_update(bad):
    weights = np.array([0.6, 0.4])
    with pytest.warns(UserWarning, match="non-finite"):
        new, applied = mirror_update(weights, np.array([1.0, bad]), eta=1.0)
    assert not applied and new is weights


def test_an_overflowing_step_is_skipped_not_applied():
    weights = np.array([0.6, 0.4])
    with pytest.warns(UserWarning, match="non-finite weights"):
        new, applied = mirror_update(weights, np.array([1e300, 0.0]), eta=1e300)
    assert not applied and new is weights


def test_floor_raises_small_weights_and_keeps_the_sum():
    floored = with_floor(np.array([0.97, 0.02, 0.01, 0.0]), 0.05)
    np.testing.assert_allclose(floored, [0.85, 0.05, 0.05, 0.05])
    assert with_floor(np.array([0.5, 0.5]), 0.0).tolist() == [0.5, 0.5]


def test_floor_that_leaves_no_room_is_rejected():
    data = synthetic(num_domains=4)
    with pytest.raises(ValueError, match="min_weight"):
        build_mixer(DGADRConfig(min_weight=0.3, bases="identity"), data)


def test_importance_puts_its_weight_exactly_on_the_specialist_domains():
    data = synthetic(target_domains=[0, 1], target_train_sequences=40)
    weights = build_mixer(ImportanceConfig(), data).weights
    counts = np.bincount(data.target_train_domain, minlength=8)
    np.testing.assert_array_equal(weights, counts / counts.sum())
    assert weights[2:].sum() == 0 and weights[:2].min() > 0


def test_importance_smoothing_gives_every_domain_weight():
    data = synthetic(target_domains=[3], target_train_sequences=6)
    weights = build_mixer(ImportanceConfig(smoothing=1.0), data).weights
    np.testing.assert_allclose(weights, np.where(np.arange(8) == 3, 7, 1) / 14)
    with pytest.raises(ValueError, match="smoothing"):
        ImportanceConfig(smoothing=-1.0)


def test_setting_the_weights_they_already_hold_changes_no_bit():
    """A skipped update hands the mixer back its own weights: renormalising them again would
    move them by a rounding step, differently on different CPUs."""
    data = synthetic(num_domains=7)
    mixer = build_mixer(StaticConfig(weights=[1.0] * 7), data)
    rng = np.random.default_rng(0)
    moved = 0
    for _ in range(50):
        mixer.weights = rng.dirichlet(np.ones(7))
        held = mixer.weights
        moved += not np.array_equal(held / held.sum(), held)  # renormalising would move them
        mixer.weights = held
        assert mixer.weights.tobytes() == held.tobytes()
    assert moved > 0  # the case the guard is for occurred


def test_static_weights_from_a_list_are_normalised():
    data = synthetic(num_domains=3)
    mixer = build_mixer(StaticConfig(weights=[2.0, 1.0, 1.0]), data)
    np.testing.assert_allclose(mixer.weights, [0.5, 0.25, 0.25])


def test_static_weights_from_a_name_mapping_file(tmp_path):
    data = synthetic(num_domains=3)
    path = tmp_path / "w.json"
    path.write_text(json.dumps({"domain_02": 3.0, "domain_00": 1.0, "domain_01": 0.0}))
    mixer = build_mixer(StaticConfig(path=str(path)), data)
    np.testing.assert_allclose(mixer.weights, [0.25, 0.0, 0.75])


def _mixture_file(run_dir, flops=123):
    run_dir.mkdir()
    names = [f"domain_{i:02d}" for i in range(3)]
    mixtures = {
        "final": dict(zip(names, [0.2, 0.3, 0.5], strict=True)),
        "time_averaged": dict(zip(names, [0.6, 0.3, 0.1], strict=True)),
    }
    write_mixture_file(run_dir / MIXTURE_FILE, mixtures, flops)
    return run_dir


@pytest.mark.parametrize(
    ("which", "expected"), [("final", [0.2, 0.3, 0.5]), ("time_averaged", [0.6, 0.3, 0.1])]
)
def test_static_weights_from_another_run(tmp_path, which, expected):
    run_dir = _mixture_file(tmp_path / "proxy", flops=123)
    mixer = build_mixer(StaticConfig(path=str(run_dir), which=which), synthetic(num_domains=3))
    np.testing.assert_allclose(mixer.weights, expected)
    assert mixer.upstream_flops == 123  # the compute spent producing the mixture it reuses
    plain = tmp_path / "w.json"
    plain.write_text(json.dumps([1, 1, 2]))
    assert build_mixer(StaticConfig(path=str(plain)), synthetic(num_domains=3)).upstream_flops == 0


@pytest.mark.parametrize(
    ("cfg", "message"),
    [
        (StaticConfig(weights=[1.0, 2.0]), "2 weights for 3 domains"),
        (StaticConfig(path="/nonexistent/w.json"), "no such file"),
    ],
)
def test_static_bad_input_is_named(cfg, message):
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        build_mixer(cfg, synthetic(num_domains=3))


def test_static_weights_are_checked_with_the_config():
    for weights in ([1.0, -1.0, 1.0], [1.0, float("nan"), 1.0], [0.0, 0.0, 0.0]):
        with pytest.raises(ValueError, match="finite, >= 0 and not all zero"):
            StaticConfig(weights=weights)


def test_static_needs_exactly_one_source():
    with pytest.raises(ValueError, match="exactly one of"):
        StaticConfig()
    with pytest.raises(ValueError, match="exactly one of"):
        StaticConfig(weights=[1.0], path="w.json")


def test_static_rejects_an_unfinished_run_and_foreign_names(tmp_path):
    data = synthetic(num_domains=3)
    unfinished = tmp_path / "a"
    unfinished.mkdir()  # a run that did not complete wrote no mixture file
    with pytest.raises(FileNotFoundError, match=r"holds no mixture\.json"):
        build_mixer(StaticConfig(path=str(unfinished)), data)
    with pytest.raises(ValueError, match="has no 'time_averaged' mixture"):
        path = tmp_path / "final_only.json"
        write_mixture_file(path, {"final": {f"domain_{i:02d}": 1.0 for i in range(3)}}, 0)
        build_mixer(StaticConfig(path=str(path), which="time_averaged"), data)
    bad = tmp_path / "names.json"
    bad.write_text(json.dumps({"domain_00": 1.0, "wiki": 1.0}))
    with pytest.raises(ValueError, match=r"unknown: \['wiki'\]"):
        build_mixer(StaticConfig(path=str(bad)), data)


def test_coarse_bases_follow_the_specialist_inside_each_cluster():
    # Clusters {0,1}, {2,3}, {4,5}, {6,7}; the specialist comes from domains 0 and 1 only.
    data = synthetic(coarse_domains=4, target_domains=[0, 1], target_train_sequences=30)
    mixer = DGADRMixer(DGADRConfig(), data)
    assert mixer.weight_names == ["coarse_0", "coarse_1", "coarse_2", "coarse_3"]
    bases = mixer.bases.toarray()
    counts = np.bincount(data.target_train_domain, minlength=8)
    np.testing.assert_allclose(bases[0, :2], counts[:2] / counts[:2].sum())
    # No specialist example elsewhere: the natural (here equal) distribution inside the cluster.
    np.testing.assert_allclose(bases[1], [0, 0, 0.5, 0.5, 0, 0, 0, 0])
    np.testing.assert_allclose(bases.sum(axis=1), 1.0)
    # Training draws basis ~ alpha then domain ~ basis.
    np.testing.assert_allclose(mixer.domain_weights(), bases.mean(axis=0))


def test_multiscale_bases():
    data = synthetic(coarse_domains=2, target_domains=[1], target_train_sequences=5)
    mixer = DGADRMixer(DGADRConfig(bases="multiscale"), data)
    assert mixer.weight_names == ["is_fine", "is_coarse", "natural"]
    fine, coarse, natural = mixer.bases.toarray()
    assert fine.tolist() == [0, 1, 0, 0, 0, 0, 0, 0]
    np.testing.assert_allclose(coarse, [0.25] * 4 + [0] * 4)
    np.testing.assert_allclose(natural, 1 / 8)


def test_coarse_bases_at_the_papers_scale_are_sparse():
    # 64 coarse x 4,096 fine domains; the specialist falls in the first cluster only.
    p, per = 64, 4096
    k = p * per
    rng = np.random.default_rng(0)
    view = MixerView(
        names=[f"d{i}" for i in range(k)],
        domain_tokens=rng.integers(128, 1024, size=k),
        target_train_domain=rng.integers(0, per, size=32),
        coarse_of=np.repeat(np.arange(p), per),
    )
    mixer = DGADRMixer(DGADRConfig(), view)
    assert mixer.bases.shape == (p, k)
    assert mixer.bases.nnz <= k  # one value per domain at most, not p * K
    np.testing.assert_allclose(mixer.bases.sum(axis=1), 1.0)
    mixture = mixer.domain_weights()
    assert mixture.shape == (k,)
    np.testing.assert_allclose(mixture.sum(), 1.0)
    # Cluster 1 holds no specialist example: its basis is its natural distribution.
    inside = slice(per, 2 * per)
    natural = view.domain_tokens[inside] / view.domain_tokens[inside].sum()
    np.testing.assert_allclose(mixer.probe_distribution(1)[inside], natural)
    np.testing.assert_allclose(mixture[inside], natural / p)


def test_coarse_bases_need_a_hierarchy():
    with pytest.raises(ValueError, match="coarse_domains"):
        DGADRMixer(DGADRConfig(), synthetic(coarse_domains=0))
