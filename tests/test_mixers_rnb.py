"""R&B's Balance step (mixers/rnb.py): the update against a hand computation of the paper's rule,
its edge cases and options, and inside real runs: no pass beyond the training step's, the
weights and cost it records, and an exact resume from the middle of a round."""

import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from domains.synthetic import SyntheticDataConfig, generate
from experiments.config import check_config
from experiments.results import read_results
from mixers import build_mixer
from mixers.rnb import RnBConfig
from models.batches import MixtureBatches
from models.gpt import GPT, GPTConfig, sequence_loss
from tests.conftest import FAST, compose_config, run_train_cli
from tests.mixer_runs import run, trajectory

pytestmark = pytest.mark.usefixtures("one_thread")

K, VOCAB, LENGTH, D_MODEL = 3, 32, 8, 16


def setting():
    data = generate(
        SyntheticDataConfig(num_domains=K, vocab_size=VOCAB, sequences_per_domain=8),
        seq_len=LENGTH,
    )
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=VOCAB, context_length=LENGTH, n_layer=1, d_model=D_MODEL))
    return data, model


def batch_of(data, domains):
    """A fixed training batch: the next unused sequence of each listed domain."""
    used = dict.fromkeys(range(K), 0)
    rows = []
    for d in domains:
        rows.append(data.train[d][[used[d]]][0])
        used[d] += 1
    return torch.from_numpy(np.stack(rows)), torch.tensor(domains)


def drive(mixer, model, data, batches, first_step=0):
    """Steps `first_step`, ... with the given batches, through the context a run builds."""
    counter = MixtureBatches(data, 0, 6, model.flops_per_token())
    formed = []
    for step, batch in enumerate(batches, start=first_step):
        ctx = counter.update_context(
            step, 1e-3, 1e-3, model, lambda b=batch: b, lambda t: t, step_gradient_allowed=True
        )
        assert mixer.should_update(step)
        mixer.update(ctx)
        formed.append(mixer.step_gradient())
    return formed, counter.mixer_flops


def head_gradients_by_hand(model, tokens, domains):
    """Each domain's gradient of the output projection of the batch's loss (the mean over the
    batch of each sequence's mean token loss), as Appendix E.1 of the paper takes it: for
    s = a W^T, dl/dW = sum over the domain's tokens of dl/ds a^T, in float64."""
    inputs = {}
    hook = model.lm_head.register_forward_hook(lambda m, i, o: inputs.update(a=i[0]))
    with torch.no_grad():
        logits = model(tokens[:, :-1]).double()
    hook.remove()
    a = inputs["a"].double()
    targets = F.one_hot(tokens[:, 1:], VOCAB).double()
    ds = (logits.softmax(-1) - targets) / (tokens.shape[0] * LENGTH)
    grads = np.zeros((K, VOCAB, D_MODEL))
    for i in range(K):
        rows = domains == i
        grads[i] = torch.einsum("btv,btd->vd", ds[rows], a[rows]).numpy()
    return grads, np.bincount(domains.numpy(), minlength=K)


def weights_by_hand(model, rounds_batches, lam, normalize, target):
    """p = softmax(lam G p' / ||G p'||), G_ij = <g_i, g_j> / (|S_i| |S_j|) over one round."""
    sums, counts = np.zeros((K, VOCAB * D_MODEL)), np.zeros(K)
    for tokens, domains in rounds_batches:
        grads, n = head_gradients_by_hand(model, tokens, domains)
        sums += grads.reshape(K, -1)
        counts += n
    means = sums / np.maximum(counts, 1)[:, None]
    gram = means @ means.T
    scores = gram @ target
    if normalize:
        scores /= np.sqrt((scores**2).sum())
    weights = np.exp(lam * scores)
    return weights / weights.sum()


@pytest.mark.parametrize("normalize", [True, False])
def test_update_follows_the_papers_rule_by_hand(normalize):
    data, model = setting()
    lam = 2.0 if normalize else 100.0  # unnormalised, G p' is of the gradients' scale (~0.01)
    mixer = build_mixer(RnBConfig(update_every=2, lam=lam, normalize=normalize), data.mixer_view())
    target = np.bincount(data.target_train_domain, minlength=K) / len(data.target_train_domain)
    first = [batch_of(data, [0, 0, 1, 2, 2, 2]), batch_of(data, [1, 1, 1, 0, 1, 1])]
    second = [batch_of(data, [2, 2, 0, 0, 0, 1]), batch_of(data, [2, 0, 2, 0, 2, 0])]
    # Steps 0, 1 collect (domain 2 absent at step 1); step 2 balances over them, then collects.
    formed, flops = drive(mixer, model, data, [*first, second[0]])
    expected = weights_by_hand(model, first, lam, normalize, target)
    assert np.abs(expected - 1 / K).max() > 0.01  # the weights moved
    np.testing.assert_allclose(mixer.weights, expected, rtol=1e-5)

    # Each step's gradient is the gradient of the whole batch's mean loss: the training step's.
    for (tokens, _), step in zip([*first, second[0]], formed, strict=True):
        params = [p for p in model.parameters() if p.requires_grad]
        loss = sequence_loss(model, tokens).mean()
        reference = torch.autograd.grad(loss, params)
        assert all(a is b for a, b in zip(step.parameters, params, strict=True))
        assert step.loss.item() == pytest.approx(loss.item(), rel=1e-6)
        for g, r in zip(step.gradients, reference, strict=True):
            torch.testing.assert_close(g, r, rtol=1e-4, atol=1e-7)

    # The next round is its own: G from steps 2, 3 only, and the weights replaced.
    drive(mixer, model, data, [second[1], first[0]], first_step=3)
    np.testing.assert_allclose(
        mixer.weights, weights_by_hand(model, second, lam, normalize, target), rtol=1e-5
    )

    # Cost: per step 2 x V x d per domain present + B x L x d; per round k V d + 2 k^2 V d.
    size = VOCAB * D_MODEL
    per_step = 6 * LENGTH * D_MODEL
    present = 3 + 2 + 3
    assert flops == 2 * size * present + 3 * per_step + K * size + 2 * K * K * size


def test_target_and_non_finite_gradients():
    data, model = setting()
    uniform = build_mixer(RnBConfig(update_every=1, lam=2.0, target="uniform"), data.mixer_view())
    batch = batch_of(data, [0, 1, 1, 2, 2, 2])
    drive(uniform, model, data, [batch, batch])
    np.testing.assert_allclose(
        uniform.weights, weights_by_hand(model, [batch], 2.0, True, np.full(K, 1 / K)), rtol=1e-5
    )

    mixer = build_mixer(RnBConfig(update_every=1), data.mixer_view())
    with torch.no_grad():
        model.lm_head.weight[0, 0] = float("nan")
    with pytest.warns(UserWarning, match="update skipped"):
        drive(mixer, model, data, [batch, batch])
    np.testing.assert_array_equal(mixer.weights, np.full(K, 1 / K))
    # The accumulators were reset: a later round is clean again.
    assert mixer.state_dict()["counts"] == [1, 2, 3]


def test_options_out_of_range_fail_with_the_option_named():
    with pytest.raises(ValueError, match=r"mixer\.update_every"):
        RnBConfig(update_every=0)
    for lam in (0.0, -1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match=r"mixer\.lam"):
            RnBConfig(lam=lam)
    with pytest.raises(Exception, match="target"):
        compose_config("mixer=rnb", "mixer.target=specialists")
    with pytest.raises(ValueError, match=r"trainer\.precision=16-mixed"):
        check_config(compose_config("mixer=rnb", "trainer.precision=16-mixed"))
    check_config(compose_config("mixer=rnb", "trainer.precision=bf16-mixed"))


@pytest.fixture
def passes(monkeypatch):
    """Tokens through every forward pass with gradient, and back through its backward pass."""
    counts = {"calls": 0, "forward": 0, "backward": 0}
    forward = GPT.forward

    def counted(self, idx):
        logits = forward(self, idx)
        if torch.is_grad_enabled():
            counts["calls"] += 1
            counts["forward"] += idx.numel()
            logits.register_hook(
                lambda g: counts.update(backward=counts["backward"] + g.shape[0] * g.shape[1])
            )
        return logits

    monkeypatch.setattr(GPT, "forward", counted)
    return counts


@pytest.mark.slow
def test_rnb_runs_with_no_pass_beyond_the_training_step(tmp_path, passes):
    uniform, _ = run(tmp_path, "uniform", "mixer=uniform")
    by_uniform = dict(passes)
    passes.update(calls=0, forward=0, backward=0)
    results, run_dir = run(tmp_path, "rnb", "mixer=rnb", "mixer.update_every=8")
    assert results["status"] == "completed" and results["steps"] == 32
    # The same tokens forward and backward as the uniform run's training steps: 32 batches of
    # 8 x 32, split by domain (one pass per domain present) but nothing more.
    assert passes["forward"] == passes["backward"] == by_uniform["forward"] == 32 * 8 * 32
    assert by_uniform["backward"] == by_uniform["forward"] and by_uniform["calls"] == 32
    assert 32 < passes["calls"] <= 32 * 8
    assert results["train_flops"] == uniform["train_flops"]
    assert results["probe_tokens"] == 0
    # Its own arithmetic: per step 2 V d per domain present (V = 256, d = 64) and B L d; a
    # round (at steps 8, 16, 24) k V d + 2 k^2 V d with k = 8: 0.2 % of the training FLOPs at
    # this small batch (256 tokens a step).
    size = 256 * 64
    expected = 2 * size * passes["calls"] + 32 * 8 * 32 * 64 + 3 * (8 * size + 2 * 64 * size)
    assert results["mixer_flops"] == expected
    assert results["mixer_flops"] / results["train_flops"] < 3e-3

    rows = trajectory(run_dir)
    assert [row["step"] for row in rows] == list(range(32))  # updated (collected) every step
    weights = np.array([[v for k, v in row.items() if k != "step"] for row in rows])
    np.testing.assert_allclose(weights.sum(axis=1), 1.0)
    np.testing.assert_array_equal(weights[:8], 1 / 8)
    moves = [s for s in range(1, 32) if not np.array_equal(weights[s], weights[s - 1])]
    assert moves == [8, 16, 24]
    assert list(results["final_weights"].values()) == pytest.approx(weights[-1].tolist())
    assert results["final_mixture"] == results["final_weights"]
    time_averaged = list(results["time_averaged_weights"].values())
    assert time_averaged == pytest.approx(weights.mean(axis=0).tolist())
    # The specialist set mixes domains 0 and 1: they gain (uniform holds 2/8 on them).
    assert results["final_weights"]["domain_00"] + results["final_weights"]["domain_01"] > 0.25
    header = (run_dir / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {f"mixer/score/domain_{i:02d}" for i in range(8)} <= set(header)


def test_rnb_resumes_exactly_from_the_middle_of_a_round(tmp_path):
    overrides = ("mixer=rnb", "mixer.update_every=6", "train.checkpoint_every=14")
    whole, whole_dir = run(tmp_path, "whole", *overrides)
    # The step-28 checkpoint (last.ckpt is the final one, at step 32): four steps into the
    # round of steps 24-29, whose accumulated gradients the resumed run completes and balances.
    checkpoint = whole_dir / "checkpoints/previous.ckpt"
    saved = torch.load(checkpoint, weights_only=True)
    assert saved["global_step"] == 28
    assert sum(saved["mixbench"]["mixer"]["counts"]) == 4 * 8
    resumed_dir = tmp_path / "resumed"
    (resumed_dir / "checkpoints").mkdir(parents=True)
    shutil.copy(checkpoint, resumed_dir / "checkpoints/last.ckpt")
    resumed, _ = run(tmp_path, "resumed", *overrides, "train.resume=auto")
    assert read_results(resumed_dir)["steps"] == 32
    assert resumed["final_weights"] == whole["final_weights"]
    assert resumed["final_weights"] != read_results(whole_dir)["initial_weights"]
    assert resumed["metrics_final"] == whole["metrics_final"]
    assert resumed["mixer_flops"] == whole["mixer_flops"]
    assert trajectory(resumed_dir) == trajectory(whole_dir)


@pytest.mark.slow
def test_rnb_ranks_agree_under_ddp(tmp_path):
    """Two processes, each balancing from the sums of both ranks' batches: the same weights."""
    proc = run_train_cli(
        *FAST,
        "trainer=ddp",
        "mixer=rnb",
        "data.num_domains=4",
        "mixer.update_every=4",
        f"hydra.run.dir={tmp_path}",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = read_results(tmp_path)
    # 8192 tokens over 2 ranks x 8 sequences x 32 tokens = 16 steps: rounds end at 4, 8, 12.
    assert results["steps"] == 16 and results["tokens_trained"] == 8192
    rank0, rank1 = results["ranks"]["weights"]
    assert rank0 == rank1 and max(rank0) > 0.25 + 1e-3
    assert results["probe_tokens"] == 0 and results["mixer_flops"] > 0
