"""The alignment estimators: exact streamed backward against finite differences."""

import numpy as np
import pytest
import torch

from domains.synthetic import SyntheticDataConfig, generate
from mixers.alignment import (
    alignment_scores,
    backward_scores,
    finite_difference_scores,
    gradient,
    inner,
    trainable_parameters,
)
from models.gpt import GPT, GPTConfig, sequence_loss
from tests.mixer_runs import dga_lm

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def setup():
    """A small GPT trained a few steps (so gradients are not all alike), probe batches of four
    domains and the specialist gradient g_s."""
    torch.manual_seed(0)
    data = generate(SyntheticDataConfig(num_domains=4, sequences_per_domain=16), seq_len=32)
    model = GPT(GPTConfig(vocab_size=data.vocab_size, context_length=32, n_layer=2, d_model=64))
    loss = lambda tokens: sequence_loss(model, tokens)  # noqa: E731
    batches = [torch.from_numpy(seqs[np.arange(4)]) for seqs in data.train]
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for step in range(10):
        optimizer.zero_grad()
        loss(torch.from_numpy(data.train[step % 4][np.arange(4, 12)])).mean().backward()
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    specialist = torch.from_numpy(data.target_train[np.arange(16)])
    g_s = gradient(loss(specialist).mean(), trainable_parameters(model))
    return model, loss, batches, g_s


def test_backward_scores_are_the_dot_products_of_full_gradients(setup):
    model, loss, batches, g_s = setup
    params = trainable_parameters(model)
    flat_s = torch.cat([g.reshape(-1) for g in g_s])
    expected = [
        torch.dot(torch.cat([g.reshape(-1) for g in gradient(loss(b).mean(), params)]), flat_s)
        for b in batches
    ]
    scores = backward_scores(model, loss, batches, g_s)
    np.testing.assert_allclose(scores.numpy(), torch.stack(expected).numpy(), rtol=1e-5)


def test_finite_difference_agrees_with_backward(setup):
    model, loss, batches, g_s = setup
    exact = backward_scores(model, loss, batches, g_s)
    approx = finite_difference_scores(model, loss, batches, g_s, step=1e-4)
    assert exact.abs().max() > 0.01  # a real signal, not two zeros agreeing
    assert (torch.linalg.norm(approx - exact) / torch.linalg.norm(exact)).item() < 1e-3


def test_finite_difference_restores_parameters_exactly_and_leaves_grads_alone(setup):
    model, loss, batches, g_s = setup
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    marker = [torch.full_like(p, 7.0) for p in model.parameters()]
    for p, m in zip(model.parameters(), marker, strict=True):
        p.grad = m.clone()
    try:
        for method in ("finite_difference", "backward"):
            alignment_scores(method, model, loss, batches, g_s, lambda t: t)
        for name, p in model.named_parameters():
            assert torch.equal(p, before[name]), name
        for p, m in zip(model.parameters(), marker, strict=True):
            assert torch.equal(p.grad, m)
    finally:
        model.zero_grad(set_to_none=True)


def test_parameters_are_restored_when_a_forward_pass_fails(setup):
    model, loss, batches, g_s = setup
    before = [p.detach().clone() for p in model.parameters()]
    calls = []

    def failing(tokens):
        calls.append(1)
        if len(calls) == 2:  # the minus pass, while the parameters are perturbed
            raise RuntimeError("out of memory")
        return loss(tokens)

    with pytest.raises(RuntimeError, match="out of memory"):
        finite_difference_scores(model, failing, batches, g_s, step=1e-2)
    for p, p0 in zip(model.parameters(), before, strict=True):
        assert torch.equal(p, p0)


def test_clipping_bounds_every_score(setup):
    model, loss, batches, g_s = setup
    small = [g * (1e-3 / inner(g_s, g_s).sqrt().float()) for g in g_s]  # ||g_s|| = 1e-3
    scores = alignment_scores("backward", model, loss, batches, small, lambda t: t, max_norm=1e-3)
    assert (scores.abs() <= 1e-6 * (1 + 1e-5)).all()
    unclipped = alignment_scores("backward", model, loss, batches, small, lambda t: t)
    assert unclipped.abs().max() > 1e-6


def test_scores_are_averaged_over_ranks(setup):
    model, loss, batches, g_s = setup
    local = backward_scores(model, loss, batches, g_s)
    # Stand-in for a 2-rank all-reduce where the other rank measured zeros.
    averaged = alignment_scores("backward", model, loss, batches, g_s, lambda t: t / 2)
    torch.testing.assert_close(averaged, local / 2)


def test_finite_difference_cannot_honour_gradient_clipping(setup):
    model, loss, batches, g_s = setup
    with pytest.raises(ValueError, match="grad_clip"):
        alignment_scores("finite_difference", model, loss, batches, g_s, lambda t: t, 1.0)


def test_finite_difference_stays_exact_under_bf16_autocast():
    """Lightning runs training_step under autocast with trainer=gpu (bf16-mixed); in bf16 the
    central difference of two losses 1e-4 apart is round-off (relative error ~0.7, sign flips).
    The mixer's passes run in fp32 whatever the autocast around them."""

    def scores(logs):
        return np.array([logs[f"alignment/domain_{i:02d}"] for i in range(4)])

    exact = scores(dga_lm("backward").update_mixer(0, training_batch=None))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        estimated = scores(dga_lm("finite_difference").update_mixer(0, training_batch=None))
    assert np.abs(exact).max() > 0.01
    assert np.linalg.norm(estimated - exact) / np.linalg.norm(exact) < 1e-2
