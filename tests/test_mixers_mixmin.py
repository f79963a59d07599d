"""MixMin's convex step against hand computations and a general solver, its edge cases and option
checks, its proxies as upstream stages, and a real run: proxies trained first (one per domain,
shared through the cache and reused by the next run of the same data and seed), the recorded
weights equal to the convex step's output on their scores, and their cost as upstream FLOPs."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf
from scipy.optimize import minimize

from domains.synthetic import SyntheticDataConfig, generate
from experiments.checkpoints import load_checkpoint
from experiments.results import read_results
from experiments.upstream import plan
from mixers import MIXTURE_FILE, build_mixer, write_mixture_file
from mixers.base import SPECIALIST_SCORES_FILE, UpstreamStage
from mixers.mixmin import Level, MixMinConfig, MixMinMixer, Stop, examples, proxy_tokens, solve
from mixers.static import StaticConfig
from tests.conftest import compose_config
from tests.mixer_runs import SMALL, run

pytestmark = pytest.mark.usefixtures("one_thread")


def view(k: int):
    config = SyntheticDataConfig(num_domains=k, sequences_per_domain=8, target_domains=[0])
    return generate(config, seq_len=8).mixer_view()


def proxy_run(path, i: int, k: int, log_probs, train_flops=1000, scoring_flops=10, on=None):
    """A proxy run directory as experiments.train leaves it: the mixture file of a run on
    domain `on` (i by default) alone, and the scores of the specialist `train` split."""
    path.mkdir(parents=True)
    on = i if on is None else on
    final = {f"domain_{j:02d}": float(j == on) for j in range(k)}
    write_mixture_file(path / MIXTURE_FILE, {"final": final}, train_flops)
    np.savez(
        path / SPECIALIST_SCORES_FILE,
        log_probs=np.asarray(log_probs, dtype=np.float64),
        flops=np.int64(scoring_flops),
    )
    return str(path)


def mixer_of(tmp_path, scores, **options):
    """The mixer on proxies whose scores ([n, L] log-probabilities each) are given."""
    k = len(scores)
    proxies = [proxy_run(tmp_path / f"proxy_{i}", i, k, s) for i, s in enumerate(scores)]
    return build_mixer(MixMinConfig(proxies=proxies, **options), view(k))


def mixture_objective(weights, probs) -> float:
    """-mean_x log(sum_i w_i p_i(x)), probs [k, n] the examples' probabilities."""
    return -np.mean(np.log(np.asarray(weights) @ probs))


# --- the convex step by hand ----------------------------------------------------------------


@pytest.mark.parametrize("level", ["sequence", "token"])
def test_two_domains_reach_the_minimum_solved_by_hand(tmp_path, level):
    # Two target tokens: p_1 = (0.6, 0.1), p_2 = (0.2, 0.4). With w = (a, 1 - a) the loss is
    # -(log(0.2 + 0.4 a) + log(0.4 - 0.3 a)) / 2, whose derivative vanishes at
    # 0.4 / (0.2 + 0.4 a) = 0.3 / (0.4 - 0.3 a): a = (0.16 - 0.06) / 0.24.
    a = (0.4 * 0.4 - 0.3 * 0.2) / (2 * 0.4 * 0.3)
    assert a == pytest.approx(5 / 12)
    p1, p2 = np.log([0.6, 0.1]), np.log([0.2, 0.4])
    # Two sequences of one token, or one sequence of two tokens mixed token by token: the same.
    shape = (2, 1) if level == "sequence" else (1, 2)
    mixer = mixer_of(tmp_path, [p1.reshape(shape), p2.reshape(shape)], level=level)
    np.testing.assert_allclose(mixer.weights, [a, 1 - a], atol=1e-5)
    assert mixer.solution.gap <= 1e-6
    best = -(math.log(0.2 + 0.4 * a) + math.log(0.4 - 0.3 * a)) / 2
    assert mixer.solution.objective == pytest.approx(best, abs=1e-9)
    assert mixer.solution.initial_objective == pytest.approx(-(math.log(0.4) + math.log(0.25)) / 2)
    # Its cost: the proxies' training and scoring FLOPs, from their files.
    assert mixer.upstream_flops == 2 * (1000 + 10)
    assert mixer.domain_weights().tolist() == mixer.weights.tolist()


def test_a_proxy_better_everywhere_takes_all_the_weight(tmp_path):
    rng = np.random.default_rng(0)
    others = np.log(rng.uniform(0.05, 0.5, size=(2, 6, 4)))
    best = np.log(np.exp(others).max(axis=0) * 1.5)  # higher than both, on every token
    mixer = mixer_of(tmp_path, [others[0], best, others[1]])
    np.testing.assert_allclose(mixer.weights, [0, 1, 0], atol=1e-4)
    probs = np.exp(np.stack([others[0], best, others[1]]).sum(axis=2))
    assert mixer.solution.objective == pytest.approx(
        mixture_objective([0, 1, 0], probs) / 4, abs=1e-6
    )


def test_examples_only_one_proxy_can_explain_get_their_share(tmp_path):
    # Each sequence has probability zero under all proxies but one: the maximum-likelihood
    # mixture is the share of sequences each proxy explains, 3 : 1 : 2, whatever the values.
    zero = -np.inf
    explained_by = [0, 0, 0, 1, 2, 2]
    scores = np.full((3, 6, 2), zero)
    for x, i in enumerate(explained_by):
        scores[i, x] = np.log([0.3 + 0.1 * x, 0.2])
    mixer = mixer_of(tmp_path, list(scores))
    np.testing.assert_allclose(mixer.weights, [3 / 6, 1 / 6, 2 / 6], atol=1e-5)


def test_examples_no_proxy_can_explain_are_dropped_with_a_warning():
    log_probs = np.log([[0.5, 0.2, 0.1], [0.1, 0.4, 0.3]])
    log_probs[:, 2] = -np.inf
    with pytest.warns(UserWarning, match="1 of 3 examples have probability zero"):
        dropped = solve(log_probs)
    kept = solve(log_probs[:, :2])
    assert dropped.dropped == 1
    np.testing.assert_array_equal(dropped.weights, kept.weights)
    with pytest.raises(ValueError, match="every proxy gives every example probability zero"):
        solve(np.full((2, 3), -np.inf))
    with pytest.raises(ValueError, match="NaN or \\+inf"):
        solve(np.array([[np.nan, -1.0], [-1.0, -1.0]]))


def test_one_domain_gets_all_the_weight(tmp_path):
    mixer = mixer_of(tmp_path, [np.log(np.full((4, 3), 0.2))])
    assert mixer.weights.tolist() == [1.0]
    assert mixer.solution.steps == 0  # the gap is zero from the start


# --- against a general solver -------------------------------------------------------------------


def slsqp(log_probs: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The minimiser by scipy's SLSQP over the simplex (the objective in plain numpy)."""
    k = log_probs.shape[0]
    top = log_probs.max(axis=0)
    probs = np.exp(log_probs - top)  # rescaled per example: a constant shift of the loss

    def loss(w):
        return -np.mean((np.log(np.maximum(w @ probs, 1e-300)) + top) / lengths)

    result = minimize(
        loss,
        np.full(k, 1 / k),
        method="SLSQP",
        bounds=[(0, 1)] * k,
        constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1}],
        options={"ftol": 1e-15, "maxiter": 1000},
    )
    assert result.success, result.message
    return result.x


@pytest.mark.parametrize("level", list(Level))
def test_the_convex_step_agrees_with_slsqp(level):
    rng = np.random.default_rng(3)
    k, n, length = 4, 24, 3
    # Each sequence comes from one of the domains; that domain's proxy fits it a little better.
    token_log_probs = np.log(rng.uniform(0.05, 0.4, size=(k, n, length)))
    source = rng.choice(k, size=n, p=[0.4, 0.3, 0.2, 0.1])
    token_log_probs[source, np.arange(n)] += 0.5
    log_probs, lengths = examples(token_log_probs, level)
    ours = solve(log_probs, lengths)
    theirs = slsqp(log_probs, lengths)
    assert ours.gap <= 1e-6
    np.testing.assert_allclose(ours.weights, theirs, atol=1e-4)
    top = log_probs.max(axis=0)
    shifted = log_probs - top
    their_objective = -np.mean((np.log(theirs @ np.exp(shifted)) + top) / lengths)
    assert ours.objective == pytest.approx(their_objective, abs=1e-6)


def test_the_authors_step_rule_and_stopping():
    # One step from uniform by hand: g_i = -mean_x p_i(x) / p_w(x) / |x|,
    # w <- w exp(-lr g) / sum; with stop=gradient the step is taken, then max |g| < tol stops.
    log_probs = np.log([[0.5, 0.1], [0.2, 0.3]])
    lengths = np.array([2.0, 4.0])
    probs = np.exp(log_probs)
    mix = probs.mean(axis=0)
    g = -(probs / mix / lengths).mean(axis=1)
    by_hand = 0.5 * np.exp(-0.7 * g) / (0.5 * np.exp(-0.7 * g)).sum()
    one = solve(log_probs, lengths, lr=0.7, steps=1, stop=Stop.gradient, tol=0)
    np.testing.assert_allclose(one.weights, by_hand, rtol=1e-12)
    assert one.steps == 1
    stopped = solve(log_probs, lengths, lr=0.7, steps=50, stop=Stop.gradient, tol=1.0)
    assert stopped.steps == 1 and np.array_equal(stopped.weights, one.weights)
    # The default step size is the mean length: a step of 1 on the per-example log-likelihood.
    default = solve(log_probs, lengths, steps=1, stop=Stop.gradient, tol=0)
    np.testing.assert_allclose(
        default.weights, solve(log_probs, lengths, lr=3.0, steps=1, tol=0).weights, rtol=1e-12
    )


# --- options, proxies and their checks ---------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"update_every": 4}, "mixer.update_every does not apply"),
        ({"proxy_fraction": 0.0}, "mixer.proxy_fraction must be > 0"),
        ({"proxy_fraction": math.inf}, "mixer.proxy_fraction must be > 0"),
        ({"lr": -1.0}, "mixer.lr must be > 0"),
        ({"steps": 0}, "mixer.steps must be >= 1"),
        ({"tol": -1e-3}, "mixer.tol must be >= 0"),
        ({"target_fraction": 0.0}, "mixer.target_fraction must be in \\(0, 1\\]"),
        ({"target_fraction": 1.5}, "mixer.target_fraction must be in \\(0, 1\\]"),
        ({"proxies": []}, "mixer.proxies must name one proxy run per domain"),
    ],
)
def test_options_out_of_range_are_refused(options, message):
    with pytest.raises(ValueError, match=message):
        MixMinConfig(**options)


def test_config_choices_fail_at_composition():
    cfg = compose_config("mixer=mixmin")
    assert OmegaConf.to_object(cfg.mixer) == MixMinConfig()
    with pytest.raises(Exception, match="sequenc"):
        compose_config("mixer=mixmin", "mixer.level=sequenc")
    authors = OmegaConf.to_object(compose_config("mixer=mixmin_authors").mixer)
    assert (authors.lr, authors.steps, authors.stop, authors.tol) == (1.0, 100, Stop.gradient, 1e-4)


def test_wrong_proxies_fail_clearly(tmp_path):
    scores = np.log(np.full((2, 3), 0.5))
    with pytest.raises(ValueError, match="mixmin needs its proxy runs"):
        build_mixer(MixMinConfig(), view(2))
    one = proxy_run(tmp_path / "one", 0, 2, scores)
    with pytest.raises(ValueError, match="names 1 runs for 2 domains"):
        build_mixer(MixMinConfig(proxies=[one]), view(2))
    wrong = proxy_run(tmp_path / "wrong", 1, 2, scores, on=0)
    with pytest.raises(ValueError, match=r"proxies\[1\].*not trained on domain_01 alone"):
        build_mixer(MixMinConfig(proxies=[one, wrong]), view(2))
    unscored = proxy_run(tmp_path / "unscored", 1, 2, scores)
    (tmp_path / "unscored" / SPECIALIST_SCORES_FILE).unlink()
    with pytest.raises(FileNotFoundError, match=r"holds no specialist_scores\.npz"):
        build_mixer(MixMinConfig(proxies=[one, unscored]), view(2))
    other = proxy_run(tmp_path / "other", 1, 2, np.log(np.full((4, 3), 0.5)))
    with pytest.raises(ValueError, match="scored different specialist sets"):
        build_mixer(MixMinConfig(proxies=[one, other]), view(2))
    broken = proxy_run(tmp_path / "broken", 1, 2, np.full((2, 3), np.nan))
    with pytest.raises(ValueError, match="proxy domain_01 has NaN"):
        build_mixer(MixMinConfig(proxies=[one, broken]), view(2))


def test_target_fraction_fits_a_seeded_subset(tmp_path):
    rng = np.random.default_rng(1)
    scores = [np.log(rng.uniform(0.1, 0.9, size=(10, 2))) for _ in range(3)]
    half = mixer_of(tmp_path / "a", scores, target_fraction=0.5)
    chosen = np.sort(np.random.default_rng(0).choice(10, size=5, replace=False))
    subset = np.stack(scores)[:, chosen].sum(axis=2)
    np.testing.assert_allclose(half.weights, solve(subset, np.full(5, 2.0)).weights, rtol=1e-12)
    whole = mixer_of(tmp_path / "b", scores)
    assert not np.allclose(half.weights, whole.weights)


def test_the_proxies_are_one_shared_upstream_stage_per_domain():
    cfg = compose_config("mixer=mixmin", "train.tokens=1_000_000", "data.num_domains=4")
    options = OmegaConf.to_object(cfg.mixer)
    stages = MixMinMixer.upstream_stages(options, cfg, lambda: view(4))
    # 1 % of 10^6 tokens over 4 proxies: 2500 tokens each, one step of 16 x 128 (rounded).
    assert proxy_tokens(1_000_000, 0.01, 4, 2048) == 2048
    assert proxy_tokens(1_000_000, 0.1, 4, 2048) == 12 * 2048
    assert proxy_tokens(1000, 0.01, 4, 2048) == 2048  # at least one step
    for i, stage in enumerate(stages):
        assert isinstance(stage, UpstreamStage)
        assert stage.mixer == StaticConfig(
            weights=[float(j == i) for j in range(4)], label=f"mixmin_proxy[domain_{i:02d}]"
        )
        assert (stage.option, stage.listed, stage.shared, stage.specialist_scores) == (
            "proxies",
            True,
            True,
            True,
        )
        assert stage.tokens == 2048 and stage.directory == f"mixmin_proxy_domain_{i:02d}"
    assert len(stages) == 4
    given = MixMinConfig(proxies=["a", "b", "c", "d"])
    assert MixMinMixer.upstream_stages(given, cfg, lambda: pytest.fail("data loaded")) == []


def test_proxy_runs_are_keyed_by_what_decides_them(tmp_path):
    """The proxies' directories (planned before anything is trained) depend on the data, seed,
    model, training options and proxy budget, not on the run's name, loggers or directory."""
    base = ("mixer=mixmin", "data.num_domains=4")
    first = plan(compose_config(*base), tmp_path / "a")
    proxies = first.cfg.mixer.proxies
    assert len(proxies) == 4 and len(set(proxies)) == 4
    cache = Path(first.cfg.paths.cache_dir).expanduser() / "upstream"
    assert all(Path(path).parent == cache for path in proxies)
    assert [p.stage.tokens for p in first.stages] == [2048] * 4  # one step: 1 % of 200k / 4
    assert first.label_options() == {
        key: value
        for key, value in OmegaConf.to_container(first.cfg.mixer).items()
        if key != "proxies"
    }
    for stage in first.stages:
        assert stage.cfg.name == "upstream" and stage.cfg.logger.wandb is False
        assert stage.cfg.train.resume == "auto" and stage.cfg.train.tokens == 2048
        assert stage.cfg.mixer.name == "static"
    same = plan(compose_config(*base, "name=other", "logger=csv", "train.resume=null"), tmp_path)
    assert same.cfg.mixer.proxies == proxies
    for other in (("seed=1",), ("model.n_layer=2",), ("mixer.proxy_fraction=0.5",)):
        moved = plan(compose_config(*base, *other), tmp_path / "a").cfg.mixer.proxies
        assert set(moved).isdisjoint(proxies), other
    # Given proxies: no stage, nothing loaded.
    given = plan(compose_config(*base, f"mixer.proxies=[{','.join(proxies)}]"), tmp_path / "a")
    assert given.stages == [] and given.cfg.mixer.proxies == proxies


# --- a real run --------------------------------------------------------------------------------


def proxy_scores(proxies: list[str]) -> tuple[np.ndarray, int]:
    """The proxies' token log-probabilities [k, n, L] and scoring FLOPs, from their files."""
    log_probs, flops = [], 0
    for path in proxies:
        with np.load(f"{path}/{SPECIALIST_SCORES_FILE}") as scores:
            log_probs.append(scores["log_probs"])
            flops += int(scores["flops"])
    return np.stack(log_probs), flops


@pytest.mark.slow
def test_mixmin_trains_its_proxies_first_and_records_their_cost(tmp_path):
    # Four domains; the specialist set mixes domains 0 and 1. SMALL: 32 steps of 8 x 32 tokens;
    # proxy_fraction 1: 8192 tokens over 4 proxies, 8 steps each.
    overrides = ("data.num_domains=4", "mixer=mixmin", "mixer.proxy_fraction=1")
    overrides = (*overrides, "train.checkpoint_every=16")
    results, run_dir = run(tmp_path, "mixmin", *overrides)
    assert results["status"] == "completed" and results["steps"] == 32
    # The proxies' cache paths are not in the label (they differ from seed to seed).
    assert results["mixer_label"] == "mixmin[proxy_fraction=1]"
    proxies = results["config"]["mixer"]["proxies"]
    assert len(proxies) == 4
    records = [read_results(path) for path in proxies]
    for i, proxy in enumerate(records):
        assert proxy["status"] == "completed" and proxy["steps"] == 8
        assert proxy["tokens_trained"] == 8 * 8 * 32
        assert proxy["final_mixture"] == {f"domain_{j:02d}": float(j == i) for j in range(4)}
        assert proxy["config"]["data"] == results["config"]["data"]
        assert proxy["config"]["seed"] == results["config"]["seed"]
        # Used for its model only: it validates on one held-out sequence per domain.
        assert proxy["config"]["train"]["eval_sequences_per_domain"] == 1
    # The recorded weights are the convex step's on the proxies' scores (the whole specialist
    # train split: 32 sequences of 32 tokens), a static mixture.
    token_log_probs, scoring_flops = proxy_scores(proxies)
    assert token_log_probs.shape == (4, 32, 32)
    expected = solve(*examples(token_log_probs, Level.sequence)).weights
    names = [f"domain_{j:02d}" for j in range(4)]
    assert list(results["final_weights"].values()) == pytest.approx(expected, abs=1e-12)
    assert results["final_weights"] == results["initial_weights"]
    assert results["time_averaged_weights"] == pytest.approx(results["final_weights"], abs=1e-12)
    assert list(results["final_weights"]) == names
    assert results["final_weights"]["domain_00"] + results["final_weights"]["domain_01"] > 0.9
    # Cost: the proxies' training and one forward pass of each over the split, upstream.
    flops_per_token = results["model"]["flops_per_token"]
    assert scoring_flops == 4 * round(flops_per_token / 3 * 32 * 32)
    proxy_training = sum(p["train_flops"] + p["mixer_flops"] + p["upstream_flops"] for p in records)
    assert proxy_training == 4 * 8 * 8 * 32 * flops_per_token
    assert results["upstream_flops"] == proxy_training + scoring_flops
    assert results["mixer_flops"] == results["probe_tokens"] == 0
    mixture = json.loads((run_dir / MIXTURE_FILE).read_text())
    assert mixture["flops"] == results["train_flops"] + results["upstream_flops"]

    # Another run of the same data and seed reuses the proxies (not trained again) and records
    # the same cost and weights; it resumes exactly from its mid-run checkpoint.
    stamps = [(Path(p) / "checkpoints" / "last.ckpt").stat().st_mtime_ns for p in proxies]
    resumed_dir = tmp_path / "resumed"
    (resumed_dir / "checkpoints").mkdir(parents=True)
    step_16 = (run_dir / "checkpoints" / "previous.ckpt").read_bytes()
    assert load_checkpoint(run_dir / "checkpoints" / "previous.ckpt")["global_step"] == 16
    (resumed_dir / "checkpoints" / "last.ckpt").write_bytes(step_16)
    resumed, _ = run(tmp_path, "resumed", *overrides, "train.resume=auto")
    assert resumed["config"]["mixer"]["proxies"] == proxies
    assert [(Path(p) / "checkpoints" / "last.ckpt").stat().st_mtime_ns for p in proxies] == stamps
    assert resumed["steps"] == 32
    assert resumed["final_weights"] == results["final_weights"]
    assert resumed["metrics_final"] == results["metrics_final"]
    assert resumed["upstream_flops"] == results["upstream_flops"]
    # Another seed has proxies of its own.
    other = plan(compose_config(*SMALL, *overrides, "seed=1"), tmp_path / "seed1")
    assert set(other.cfg.mixer.proxies).isdisjoint(proxies)
