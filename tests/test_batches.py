"""MixtureBatches, the one source of every sequence a run reads: the splits each draw comes
from, and the alignment scores of a real update checked against gradients computed
independently from the very rows it drew."""

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from domains.synthetic import SyntheticDataConfig, generate
from mixers import build_mixer
from mixers.dga import DGAConfig
from models.batches import MixtureBatches
from models.gpt import GPT, GPTConfig

pytestmark = pytest.mark.usefixtures("one_thread")

SEQ_LEN = 16


@pytest.fixture(scope="module")
def data():
    cfg = SyntheticDataConfig(num_domains=4, vocab_size=64, sequences_per_domain=16)
    return generate(cfg, seq_len=SEQ_LEN)


def row_set(rows) -> set[bytes]:
    return {np.asarray(row).tobytes() for row in rows}


def all_rows(sequences) -> set[bytes]:
    return row_set(sequences[np.arange(len(sequences))])


def test_specialist_draws_come_from_the_train_split_never_the_eval_split(data):
    batches = MixtureBatches(data, seed=0, batch_size=8, flops_per_token=1)
    drawn = row_set(batches.specialist(64).numpy())
    assert drawn <= all_rows(data.target_train)
    assert not drawn & all_rows(data.target_eval)
    assert batches.probe_tokens == 64 * SEQ_LEN


def test_probe_draws_come_from_the_named_domains_training_split(data):
    batches = MixtureBatches(data, seed=0, batch_size=8, flops_per_token=1)
    for d in range(4):
        drawn = row_set(batches.probe(np.eye(4)[d], 8).numpy())
        assert drawn <= all_rows(data.train[d])
        assert not drawn & all_rows(data.heldout[d])


def test_a_mixer_sees_no_eval_split(data):
    view = data.mixer_view()
    assert not any(hasattr(view, name) for name in ("target_eval", "target_train", "heldout"))
    np.testing.assert_array_equal(view.token_counts(), data.token_counts())


def flat_gradient(model: GPT, rows: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy of equal-length rows, differentiated by plain autograd."""
    logits = model(rows[:, :-1])
    loss = F.cross_entropy(logits.flatten(0, 1), rows[:, 1:].flatten())
    return torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, list(model.parameters()))])


def test_dga_update_scores_match_gradients_of_the_rows_it_drew(data):
    """a_i = <g_i, g_s> with g_s from specialist `train` rows and g_i from domain i's rows:
    recomputed on a copy of the model from the captured rows, and the FLOPs it was charged."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=64, context_length=SEQ_LEN, n_layer=1, d_model=32))
    batches = MixtureBatches(data, 0, 8, model.flops_per_token())
    ctx = batches.update_context(0, 1e-3, 1e-3, model, None, lambda t: t)
    captured = {"specialist": [], "probe": []}
    specialist, probe = ctx.specialist, ctx.probe

    def capture_specialist(n):
        captured["specialist"].append(specialist(n))
        return captured["specialist"][-1]

    def capture_probe(dist, n):
        captured["probe"].append(probe(dist, n))
        return captured["probe"][-1]

    ctx.specialist, ctx.probe = capture_specialist, capture_probe
    cfg = DGAConfig(probe_batch=4, specialist_batch=8, grad_clip=None)  # raw gradients
    mixer = build_mixer(cfg, data.mixer_view())
    logs = mixer.update(ctx)

    (rows_s,) = captured["specialist"]
    assert row_set(rows_s.numpy()) <= all_rows(data.target_train)
    independent = copy.deepcopy(model)
    g_s = flat_gradient(independent, rows_s)
    assert g_s.norm() > 0
    for d, rows in enumerate(captured["probe"]):
        expected = torch.dot(flat_gradient(independent, rows), g_s).item()
        assert logs[f"alignment/domain_{d:02d}"] == pytest.approx(expected, rel=1e-4)
    # (4 probe batches of 4 + 8 specialist sequences) x 16 tokens, forward and backward each.
    assert batches.mixer_flops == (4 * 4 + 8) * SEQ_LEN * model.flops_per_token()
