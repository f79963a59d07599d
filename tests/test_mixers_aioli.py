"""Aioli: the unmixing, normalisation, EMA and mixture against hand computations; its LearnParams
state machine on scripted losses; the fixed-set losses of the update context; and inside real
runs, its LearnParams steps as training steps, its evaluation FLOPs and an exact resume from the
middle of LearnParams."""

import math
import shutil
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from domains.synthetic import SyntheticDataConfig, generate
from experiments.results import read_results
from mixers import build_mixer
from mixers.aioli import AioliConfig, aioli_mixture, normalized, unmixed
from models.batches import MixtureBatches
from models.gpt import GPT, GPTConfig, sequence_loss
from tests.conftest import FAST, ROOT, run_train_cli
from tests.mixer_runs import run, trajectory

pytestmark = pytest.mark.usefixtures("one_thread")


def view(k: int, seed: int = 0):
    data = generate(SyntheticDataConfig(num_domains=k, sequences_per_domain=8), seq_len=8)
    return data.mixer_view(seed=seed)


def test_unmixing_undoes_the_smoothed_one_hot_mixtures_by_hand():
    # k = 3, ohf = 0.625: W = c I + r 11^T with r = 0.375 / 2 = 0.1875 and c = 0.625 - r, whose
    # inverse (Sherman-Morrison) is (I - r / (c + 3 r) 11^T) / c.
    drops = np.array([[0.30, 0.12, -0.06], [0.05, 0.20, 0.01]])
    r, c = 0.1875, 0.4375
    inverse = (np.eye(3) - r / (c + 3 * r) * np.ones((3, 3))) / c
    effects = unmixed(drops, 0.625)
    np.testing.assert_allclose(effects, np.array([inverse @ row for row in drops]), rtol=1e-12)
    # Each row: the drops the smoothed mixtures would cause, mixed back.
    smoothed = np.array([[0.625, r, r], [r, 0.625, r], [r, r, 0.625]])
    np.testing.assert_allclose(effects @ smoothed.T, drops, atol=1e-15)
    # one_hot_factor = 1: nothing to undo.
    np.testing.assert_allclose(unmixed(drops, 1.0), drops)


def test_shift_normalise_and_mixture_by_hand():
    effects = np.array([[0.4, -0.2, 0.1], [0.0, 0.3, -0.1]])
    # Shift by the minimum -0.2: [[0.6, 0, 0.3], [0.2, 0.5, 0.1]], sum 1.7.
    expected = np.array([[0.6, 0.0, 0.3], [0.2, 0.5, 0.1]]) / 1.7
    np.testing.assert_allclose(normalized(effects), expected, rtol=1e-12)
    # No negative entry: no shift, only the division by the sum.
    np.testing.assert_allclose(normalized(np.array([[1.0, 3.0]])), [[0.25, 0.75]])
    # Nothing moved: uniform rather than 0 / 0.
    np.testing.assert_array_equal(normalized(np.zeros((1, 4))), np.full((1, 4), 0.25))
    # p ∝ exp(eta 1^T A): column sums 0.8/1.7, 0.5/1.7, 0.4/1.7.
    p = aioli_mixture(expected, 0.2)
    unnormalised = [math.exp(0.2 * s / 1.7) for s in (0.8, 0.5, 0.4)]
    np.testing.assert_allclose(p, np.array(unnormalised) / sum(unnormalised), rtol=1e-12)


def test_config_ranges_and_the_learn_params_length():
    with pytest.raises(ValueError, match="gamma"):
        AioliConfig(gamma=1.0)
    with pytest.raises(ValueError, match="one_hot_factor"):
        AioliConfig(one_hot_factor=0.0)
    with pytest.raises(ValueError, match="lp_steps"):
        AioliConfig(lp_steps=0)
    with pytest.raises(ValueError, match="exceed 1/k"):
        build_mixer(AioliConfig(one_hot_factor=0.25), view(4))
    # The defaults (for k = 3) at k = 16: LearnParams alone takes 4 x 16 x 4 = 256 steps.
    with pytest.raises(ValueError, match=r"= 256 steps, not fewer than mixer\.update_every=250"):
        build_mixer(AioliConfig(), view(16))
    build_mixer(AioliConfig(), view(15))  # 240 steps of 250
    # conf/mixer/aioli_k16.yaml, the demo's (experiment=peers): 1 x 16 x 2 = 32 steps of 73.
    options = OmegaConf.load(ROOT / "conf" / "mixer" / "aioli_k16.yaml")
    options.pop("defaults")
    mixer = build_mixer(AioliConfig(**OmegaConf.to_container(options)), view(16))
    assert mixer.cfg.lp_rounds * 16 * mixer.cfg.lp_steps == 32 < mixer.cfg.update_every == 73


class ScriptedModel:
    """Losses that fall, at each training step, by true_effects @ (the step's mixture) / lp_steps:
    LearnParams should recover true_effects exactly."""

    def __init__(self, true_effects: np.ndarray, lp_steps: int):
        self.true_effects = true_effects
        self.lp_steps = lp_steps
        self.losses = np.full(true_effects.shape[0], 5.0)
        self.measured = 0

    def context(self, step: int) -> SimpleNamespace:
        def losses(n: int) -> np.ndarray:
            self.measured += 1
            return self.losses.copy()

        return SimpleNamespace(
            step=step,
            model=torch.nn.Linear(1, 1),
            heldout_losses=losses,
            specialist_train_loss=lambda n: float(losses(n)[0]),
            all_reduce_mean=lambda tensor: tensor,
        )

    def train_step(self, weights: np.ndarray) -> None:
        self.losses = self.losses - self.true_effects @ weights / self.lp_steps


def drive(mixer, model: ScriptedModel, steps: range) -> list[np.ndarray]:
    """The mixture of every step, updating as a training step does (before the batch)."""
    mixtures = []
    for step in steps:
        if mixer.should_update(step):
            mixer.update(model.context(step))
        mixtures.append(mixer.weights)
        model.train_step(mixer.weights)
    return mixtures


def hand_mixture(effects: np.ndarray, eta: float) -> np.ndarray:
    shifted = effects - min(effects.min(), 0.0)
    scores = np.exp(eta * shifted.sum(axis=0) / shifted.sum())
    return scores / scores.sum()


def test_learn_params_sets_each_domains_mixture_then_the_learned_one():
    k, lp_rounds, lp_steps, round_steps = 3, 2, 2, 16  # LearnParams: 2 x 3 x 2 = 12 steps
    cfg = AioliConfig(
        update_every=round_steps,
        lp_rounds=lp_rounds,
        lp_steps=lp_steps,
        eta=2.0,
        gamma=0.25,
        eval_set="heldout",
    )
    mixer = build_mixer(cfg, view(k))
    true_effects = np.array([[0.3, 0.05, -0.02], [0.0, 0.2, 0.01], [0.1, -0.1, 0.4]])
    model = ScriptedModel(true_effects, lp_steps)
    first = drive(mixer, model, range(round_steps))

    # One measurement before the first block and after each of the 6 blocks.
    assert model.measured == 1 + lp_rounds * k
    off = (1 - 0.625) / 2
    blocks = [first[b * lp_steps] for b in range(lp_rounds * k)]
    domains = []
    for b, mixture in enumerate(blocks):
        j = int(np.argmax(mixture))
        domains.append(j)
        expected = np.full(k, off)
        expected[j] = 0.625
        np.testing.assert_allclose(mixture, expected, rtol=1e-12)
        np.testing.assert_array_equal(first[b * lp_steps + 1], mixture)  # held for lp_steps
    # Every pass visits every domain once.
    assert sorted(domains[:k]) == sorted(domains[k:]) == list(range(k))
    # The rest of the round trains on p, from the effects recovered exactly.
    p = hand_mixture(true_effects, 2.0)
    for mixture in first[lp_rounds * k * lp_steps :]:
        np.testing.assert_allclose(mixture, p, rtol=1e-9)

    # Second round: new effects, smoothed with the first round's: (1 - gamma) new + gamma old.
    model.true_effects = np.array([[0.1, 0.0, 0.0], [0.0, 0.3, 0.0], [0.0, 0.0, 0.05]])
    second = drive(mixer, model, range(round_steps, 2 * round_steps))
    old = true_effects - true_effects.min()
    new = model.true_effects
    ema = 0.75 * new / new.sum() + 0.25 * old / old.sum()
    scores = np.exp(2.0 * ema.sum(axis=0))
    np.testing.assert_allclose(second[-1], scores / scores.sum(), rtol=1e-9)
    assert model.measured == 2 * (1 + lp_rounds * k)


def test_the_specialist_set_gives_one_row_and_the_order_follows_the_seed():
    cfg = AioliConfig(update_every=8, lp_rounds=1, lp_steps=1, eta=1.0)
    true_effects = np.array([[0.2, -0.1, 0.05, 0.0]])
    mixtures = drive(build_mixer(cfg, view(4)), ScriptedModel(true_effects, 1), range(8))
    np.testing.assert_allclose(mixtures[-1], hand_mixture(true_effects, 1.0), rtol=1e-9)

    def order(seed: int) -> list[int]:
        mixer = build_mixer(cfg, view(4, seed))
        steps = drive(mixer, ScriptedModel(true_effects, 1), range(4))
        return [int(np.argmax(w)) for w in steps]

    assert order(0) == order(0) and sorted(order(0)) == [0, 1, 2, 3]
    assert len({tuple(order(seed)) for seed in range(6)}) > 1


def test_a_reloaded_mixer_continues_learn_params_exactly():
    cfg = AioliConfig(update_every=16, lp_rounds=2, lp_steps=2, eval_set="heldout")
    true_effects = np.array([[0.3, 0.05, -0.02], [0.0, 0.2, 0.01], [0.1, -0.1, 0.4]])
    whole = build_mixer(cfg, view(3))
    expected = drive(whole, ScriptedModel(true_effects, 2), range(40))

    model = ScriptedModel(true_effects, 2)
    stopped = build_mixer(cfg, view(3))
    drive(stopped, model, range(21))  # step 21: inside the second round's LearnParams
    resumed = build_mixer(cfg, view(3))
    resumed.load_state_dict(stopped.state_dict())
    continued = drive(resumed, model, range(21, 40))
    for a, b in zip(expected[21:], continued, strict=True):
        np.testing.assert_array_equal(a, b)


def test_fixed_set_losses_of_the_update_context():
    data = generate(
        SyntheticDataConfig(
            num_domains=3, vocab_size=64, sequences_per_domain=16, heldout_sequences_per_domain=6
        ),
        seq_len=16,
    )
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=64, context_length=16, n_layer=1, d_model=32, dropout=0.5))
    model.train()
    batches = MixtureBatches(data, 0, 4, model.flops_per_token())
    ctx = batches.update_context(0, 1e-3, 1e-3, model, None, lambda t: t)

    heldout = ctx.heldout_losses(3)
    assert model.training  # left as it was
    # 3 of 6 held-out sequences spread evenly: 0, 2, 4; eval mode (no dropout), no gradient.
    model.eval()
    with torch.no_grad():
        by_hand = [
            sequence_loss(model, torch.from_numpy(seqs[[0, 2, 4]])).mean().item()
            for seqs in data.heldout
        ]
    np.testing.assert_allclose(heldout, by_hand, rtol=1e-6)
    np.testing.assert_array_equal(ctx.heldout_losses(3), heldout)  # the same sequences again
    # All 32 specialist `train` sequences (n above the split's size), in batches of 4.
    with torch.no_grad():
        specialist = sequence_loss(model, torch.from_numpy(data.target_train[np.arange(32)]))
    assert ctx.specialist_train_loss(100) == pytest.approx(specialist.mean().item(), rel=1e-6)

    # Forward FLOPs (a third of the training FLOPs per token) and probe tokens:
    # 2 x 3 domains x 3 sequences + 32 specialist sequences, of 16 tokens.
    tokens = (2 * 3 * 3 + 32) * 16
    assert batches.probe_tokens == tokens
    assert batches.mixer_flops == tokens * model.flops_per_token() // 3
    assert batches.tokens_seen == 0


# A real run of 32 steps over 4 domains: rounds of 12 steps, each opened by LearnParams (one pass,
# 2 steps per domain: 8 steps) measured on 8 specialist `train` sequences.
AIOLI = (
    "mixer=aioli",
    "data.num_domains=4",
    "mixer.update_every=12",
    "mixer.lp_rounds=1",
    "mixer.lp_steps=2",
    "mixer.eval_sequences=8",
)


def test_aioli_in_a_run_trains_learn_params_steps_and_counts_its_measurements(tmp_path):
    results, run_dir = run(tmp_path, "aioli", *AIOLI)
    assert results["status"] == "completed" and results["steps"] == 32
    # Every step, LearnParams included, is a training step of 8 sequences of 32 tokens.
    assert results["tokens_trained"] == 32 * 8 * 32
    rows = trajectory(run_dir)
    # Boundaries of LearnParams: offsets 0, 2, 4, 6 (blocks) and 8 (p) of rounds at 0, 12, 24;
    # the last round is cut at step 32, inside its LearnParams.
    boundaries = [0, 2, 4, 6, 8, 12, 14, 16, 18, 20, 24, 26, 28, 30]
    assert [int(row["step"]) for row in rows] == boundaries
    names = [f"domain_{i:02d}" for i in range(4)]
    weights = {int(row["step"]): np.array([row[n] for n in names]) for row in rows}
    for start in (0, 12, 24):
        blocks = [weights[start + offset] for offset in (0, 2, 4, 6) if start + offset < 32]
        for mixture in blocks:
            assert sorted(mixture) == pytest.approx([0.125, 0.125, 0.125, 0.625])
        assert sorted(np.argmax(w) for w in blocks) == [0, 1, 2, 3]
    # The time average covers every step, those on LearnParams mixtures included (weights.csv
    # holds 8 significant digits).
    per_step = [weights[max(s for s in weights if s <= step)] for step in range(32)]
    averaged = np.array(list(results["time_averaged_weights"].values()))
    np.testing.assert_allclose(averaged, np.mean(per_step, axis=0), rtol=1e-7)
    # 14 measurements of 8 sequences of 32 tokens, one forward pass each.
    assert results["probe_tokens"] == 14 * 8 * 32
    assert results["mixer_flops"] == 14 * 8 * 32 * results["model"]["flops_per_token"] // 3
    header = (run_dir / "metrics.csv").read_text().splitlines()[0].split(",")
    assert "mixer/learn_params_loss" in header


@pytest.mark.slow
def test_aioli_resumes_exactly_from_inside_learn_params(tmp_path):
    overrides = (*AIOLI, "train.checkpoint_every=17")
    whole, whole_dir = run(tmp_path, "whole", *overrides)

    # The step-17 checkpoint (last.ckpt is the final one, at step 32): in the second round's
    # LearnParams, half-way through its third block. The resumed run finishes that LearnParams
    # (drops so far, block start, order, A_ema of the first round) and draws the third round's
    # order (generator state).
    checkpoint = whole_dir / "checkpoints/previous.ckpt"
    saved = torch.load(checkpoint, weights_only=True)
    assert saved["global_step"] == 17
    state = saved["mixbench"]["mixer"]
    assert len(state["order"]) == 4 and state["smoothed"] is not None
    resumed_dir = tmp_path / "resumed"
    (resumed_dir / "checkpoints").mkdir(parents=True)
    shutil.copy(checkpoint, resumed_dir / "checkpoints/last.ckpt")
    resumed, _ = run(tmp_path, "resumed", *overrides, "train.resume=auto")
    assert read_results(resumed_dir)["steps"] == 32
    assert resumed["final_weights"] == whole["final_weights"]
    assert resumed["metrics_final"] == whole["metrics_final"]
    assert resumed["mixer_flops"] == whole["mixer_flops"]
    assert resumed["probe_tokens"] == whole["probe_tokens"]
    assert trajectory(resumed_dir) == trajectory(whole_dir)


@pytest.mark.slow
def test_aioli_ranks_agree_under_ddp(tmp_path):
    """Two processes: the same domain order and mixtures on both ranks, the measurements of
    both counted."""
    proc = run_train_cli(
        *FAST,
        "trainer=ddp",
        "mixer=aioli",
        "data.num_domains=4",
        "mixer.update_every=8",
        "mixer.lp_rounds=1",
        "mixer.lp_steps=1",
        "mixer.eval_sequences=8",
        f"hydra.run.dir={tmp_path}",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = read_results(tmp_path)
    # 8192 tokens over 2 ranks x 8 sequences x 32 tokens = 16 steps: two rounds, each with
    # LearnParams over steps 0-3 and p from step 4.
    assert results["steps"] == 16 and results["tokens_trained"] == 8192
    rank0, rank1 = results["ranks"]["weights"]
    assert rank0 == rank1 and max(rank0) < 0.625  # the same p on both ranks
    # 2 rounds x 5 measurements of 8 sequences of 32 tokens, on each of the 2 ranks.
    assert results["probe_tokens"] == 2 * 5 * 8 * 32 * 2
    assert (
        results["mixer_flops"] == results["probe_tokens"] * results["model"]["flops_per_token"] // 3
    )
