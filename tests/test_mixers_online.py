"""The online mixers' updates (DGA, DGA-DR, DoGE), driven through the `UpdateContext` a
training step hands them, on synthetic domains and a small GPT (no Trainer: fast)."""

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist

from domains.data import DomainData
from domains.synthetic import SyntheticDataConfig, generate
from mixers import build_mixer
from mixers.alignment import gradient, trainable_parameters
from mixers.base import TrainingBatch, UpdateContext
from mixers.collapse import collapsed, weight_entropy
from mixers.dga import DGAConfig
from mixers.dga_dr import DGADRConfig
from mixers.doge import DoGEConfig, scaled_scores
from models.batches import MixtureBatches
from models.gpt import GPT, GPTConfig, sequence_loss, token_losses

SEQ_LEN = 16


pytestmark = pytest.mark.usefixtures("one_thread")


def synthetic(num_domains: int = 4, **overrides) -> DomainData:
    cfg = SyntheticDataConfig(
        num_domains=num_domains,
        vocab_size=64,
        sequences_per_domain=16,
        heldout_sequences_per_domain=2,
        target_train_sequences=16,
        **overrides,
    )
    return generate(cfg, seq_len=SEQ_LEN)


def small_gpt(data: DomainData, seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    cfg = GPTConfig(vocab_size=data.vocab_size, context_length=SEQ_LEN, n_layer=1, d_model=32)
    return GPT(cfg)


@dataclass
class Counter:
    """What an update consumed: probe and specialist sequences, forward passes."""

    probe_sequences: int = 0
    specialist_sequences: int = 0
    forward_passes: int = 0
    probe_distributions: list = field(default_factory=list)


def context(
    model: GPT,
    data: DomainData,
    seed: int = 0,
    lr: float = 1e-3,
    train_batch: int = 16,
    counter: Counter | None = None,
    loss_scale: float = 1.0,
    stratified: bool = False,
    peak_lr: float | None = None,
    forms_step: bool = False,
    batches: MixtureBatches | None = None,
) -> UpdateContext:
    """The context a training step builds at an update (`MixtureBatches.update_context`, one
    process), its draws and passes tallied in `counter`, and its losses scaled by `loss_scale`
    (to inject non-finite values); `forms_step`: the step takes a gradient the mixer forms."""
    counter = counter or Counter()
    batches = batches or MixtureBatches(data, seed, train_batch, model.flops_per_token())
    drawn = []

    def training_batch():
        if not drawn:
            drawn.append(
                batches.train(np.full(data.num_domains, 1 / data.num_domains), None, stratified)
            )
        return drawn[0]

    ctx = batches.update_context(
        0, lr, peak_lr or lr, model, training_batch, lambda t: t, step_gradient_allowed=forms_step
    )

    def probe(dist, n):
        counter.probe_sequences += n
        counter.probe_distributions.append(np.asarray(dist))
        return ctx.probe(dist, n)

    def specialist(n):
        counter.specialist_sequences += n
        return ctx.specialist(n)

    def loss(tokens):
        counter.forward_passes += 1
        return ctx.sequence_loss(tokens) * loss_scale

    def training_loss(tokens):
        counter.forward_passes += 1
        return ctx.training_sequence_loss(tokens) * loss_scale

    return replace(
        ctx,
        probe=probe,
        specialist=specialist,
        sequence_loss=loss,
        training_sequence_loss=training_loss if forms_step else None,
    )


def scores_of(logs: dict, names: list[str]) -> np.ndarray:
    return np.array([logs[f"alignment/{name}"] for name in names])


def test_positive_alignment_means_a_step_on_the_domain_lowers_the_specialist_loss():
    """The sign: a_i = <g_i, g_s> > 0 is a domain whose gradient step also lowers the specialist
    loss, and DGA upweights exactly the domains scoring above the weighted average."""
    data = synthetic(target_domains=[0])
    model = small_gpt(data)
    mixer = build_mixer(DGAConfig(eta=1.0, probe_batch=8, grad_clip=None), data.mixer_view())
    counter = Counter()
    logs = mixer.update(context(model, data, counter=counter))
    scores = scores_of(logs, mixer.weight_names)
    assert np.argmax(scores) == 0 and scores[0] > 0

    # Re-draw the same probe batch of domain 0 and the same specialist batch (same seeds).
    replay = context(model, data)
    specialist = replay.specialist(16)
    probe_0 = replay.probe(np.eye(4)[0], 8)
    params = trainable_parameters(model)
    g_0 = gradient(sequence_loss(model, probe_0).mean(), params)
    before = sequence_loss(model, specialist).mean().item()
    with torch.no_grad():
        for p, g in zip(params, g_0, strict=True):
            p -= 1e-2 * g  # a small SGD step on domain 0 alone
    after = sequence_loss(model, specialist).mean().item()
    assert (before - after) / 1e-2 == pytest.approx(scores[0], rel=0.1)

    gained = mixer.weights > 0.25
    assert gained[0] and (gained == (scores > mixer.weights @ scores)).all()


def test_beta_one_is_plain_dga_and_smaller_beta_moves_less():
    data = synthetic()
    model = small_gpt(data)
    moves = {}
    for beta in (1.0, 0.5, 0.1):
        mixer = build_mixer(DGAConfig(eta=5.0, beta=beta), data.mixer_view())
        logs = mixer.update(context(model, data))
        scores = scores_of(logs, mixer.weight_names)
        plain = np.exp(5.0 * scores) / np.exp(5.0 * scores).sum()  # softmax(log(1/k) + eta a)
        np.testing.assert_allclose(mixer.weights, 0.25 + beta * (plain - 0.25), rtol=1e-12)
        moves[beta] = np.abs(mixer.weights - 0.25).sum()
    assert moves[1.0] > moves[0.5] > moves[0.1] > 0


def test_lr_schedule_scales_eta_by_the_schedules_share_of_the_peak():
    """eta_schedule=lr: eta * lr_t / lr_peak, so at the peak the step is eta itself (the
    default eta=1 moves the weights) and at half the peak it is half."""
    data = synthetic()
    model = small_gpt(data)
    view = data.mixer_view()
    for share in (1.0, 0.5):
        constant = build_mixer(DGAConfig(eta=0.8 * share), view)
        constant.update(context(model, data, lr=3e-3))
        scaled = build_mixer(DGAConfig(eta=0.8, eta_schedule="lr"), view)
        scaled.update(context(model, data, lr=3e-3 * share, peak_lr=3e-3))
        np.testing.assert_allclose(scaled.weights, constant.weights, rtol=1e-10)
    assert np.abs(scaled.weights - 0.25).max() > 1e-3


def spiked_context(model: GPT, data: DomainData, seed: int, domain: int, spike: float):
    """An update context whose probe batch of `domain` is specialist text with its loss
    multiplied by `spike`: one large positive alignment, as observed in the findings (~1e4
    where it is otherwise ~1)."""
    ctx = context(model, data, seed=seed)
    spiked = []

    def probe(dist, n):
        if dist[domain] != 1:
            return ctx.probe(dist, n)
        spiked.append(ctx.specialist(n))
        return spiked[-1]

    def loss(tokens):
        scale = spike if any(tokens is batch for batch in spiked) else 1.0
        return ctx.sequence_loss(tokens) * scale

    return replace(ctx, probe=probe, sequence_loss=loss)


@pytest.mark.parametrize("rule", ["unbounded", "bounded"])
def test_one_alignment_spike_collapses_the_unbounded_rule_not_the_bounded_default(rule):
    """mixer=dga_unbounded (raw dot products, constant eta = 1) puts all weight on a domain after
    a single spike and, a weight at 0 never returning, keeps it there: the run is flagged
    collapsed. The bounded default (clipped gradients) moves any log-weight ratio by at most
    2 eta whatever the spike, and recovers."""
    data = synthetic(num_domains=4)
    model = small_gpt(data)
    unbounded = dict(eta=1.0, eta_schedule="constant", grad_clip=None)
    cfg = DGAConfig(**(unbounded if rule == "unbounded" else {}))
    mixer = build_mixer(cfg, data.mixer_view())
    initial = mixer.weights
    logs = mixer.update(spiked_context(model, data, seed=0, domain=3, spike=1e4))
    after_spike = mixer.weights
    mixer.observe_step()
    for seed in range(1, 10):  # ordinary updates afterwards
        mixer.update(context(model, data, seed=seed))
        mixer.observe_step()
    averaged = mixer.time_averaged_weights()
    if rule == "unbounded":
        assert logs["max_abs_alignment"] > 10
        assert mixer.weights[3] > 0.999 and averaged[3] > 0.99
        assert collapsed(initial, averaged) and weight_entropy(mixer.weights) < 0.01
    else:
        assert logs["max_abs_alignment"] <= 1.0 + 1e-9  # both gradients clipped to norm 1
        assert np.ptp(np.log(after_spike)) <= 2 * cfg.eta + 1e-9
        assert mixer.weights.max() < 0.9 and not collapsed(initial, averaged)


def test_collapse_is_judged_against_the_starting_weights():
    uniform = np.full(4, 0.25)
    assert collapsed(uniform, np.array([0.02, 0.02, 0.02, 0.94]))
    assert not collapsed(uniform, np.array([0.1, 0.1, 0.1, 0.7]))
    # A static mixer that chose one domain itself (importance sampling) did not collapse.
    assert not collapsed(np.array([0.0, 0.0, 0.0, 1.0]), np.array([0.0, 0.0, 0.0, 1.0]))
    assert weight_entropy(uniform) == pytest.approx(np.log(4))
    assert weight_entropy(np.array([0.0, 1.0, 0.0, 0.0])) == 0.0


def test_dga_dr_with_identity_bases_is_dga():
    data = synthetic()
    model = small_gpt(data)
    dga = build_mixer(DGAConfig(eta=2.0, beta=0.5), data.mixer_view())
    dr = build_mixer(DGADRConfig(eta=2.0, beta=0.5, bases="identity"), data.mixer_view())
    for seed in range(2):  # two successive updates
        logs_dga = dga.update(context(model, data, seed=seed))
        logs_dr = dr.update(context(model, data, seed=seed))
        assert logs_dr == logs_dga
    assert dr.weight_names == dga.weight_names
    np.testing.assert_array_equal(dr.weights, dga.weights)
    np.testing.assert_array_equal(dr.domain_weights(), dga.domain_weights())


@pytest.mark.parametrize("alignment", ["backward", "finite_difference"])
def test_dga_dr_cost_does_not_grow_with_the_number_of_domains(alignment):
    counts = {}
    for k in (8, 32):
        # Four coarse clusters whatever K: p = 4 bases.
        data = synthetic(num_domains=k, coarse_domains=4, target_domains=[0, 1])
        counter = Counter()
        clip = None if alignment == "finite_difference" else 1.0
        cfg = DGADRConfig(alignment=alignment, probe_batch=3, grad_clip=clip)
        mixer = build_mixer(cfg, data.mixer_view())
        mixer.update(context(small_gpt(data), data, counter=counter))
        assert len(mixer.weights) == 4
        counts[k] = (counter.probe_sequences, counter.specialist_sequences, counter.forward_passes)
    assert counts[8] == counts[32]
    assert counts[8][:2] == (4 * 3, 16)
    # Plain DGA over the same 32 domains needs one probe batch per domain.
    counter = Counter()
    build_mixer(DGAConfig(probe_batch=3), data.mixer_view()).update(
        context(small_gpt(data), data, counter=counter)
    )
    assert counter.probe_sequences == 32 * 3


def test_dga_dr_probes_each_basis_and_upweights_the_specialists_cluster():
    data = synthetic(num_domains=8, coarse_domains=4, target_domains=[0, 1])
    model = small_gpt(data)
    counter = Counter()
    mixer = build_mixer(DGADRConfig(eta=2.0, probe_batch=16), data.mixer_view())
    mixer.update(context(model, data, counter=counter))
    np.testing.assert_array_equal(np.stack(counter.probe_distributions), mixer.bases.toarray())
    assert np.argmax(mixer.weights) == 0  # the basis of cluster {0, 1}
    assert mixer.domain_weights()[:2].sum() > 0.25


@pytest.mark.parametrize(
    "cfg",
    [
        DGAConfig(),
        DGAConfig(alignment="finite_difference", grad_clip=None),
        DGADRConfig(bases="multiscale"),
        DoGEConfig(mode="universal"),
        DoGEConfig(mode="target"),
    ],
    ids=["dga", "dga-fd", "dga_dr", "doge-universal", "doge-target"],
)
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_gradients_leave_the_weights_unchanged(cfg, bad):
    data = synthetic()
    model = small_gpt(data)
    mixer = build_mixer(cfg, data.mixer_view())
    mixer.update(context(model, data))  # move the weights off uniform first
    before = mixer.weights
    params = [p.detach().clone() for p in model.parameters()]
    with pytest.warns(UserWarning, match="update skipped"):
        logs = mixer.update(context(model, data, seed=1, loss_scale=bad))
    assert logs["update_skipped"] == 1.0
    np.testing.assert_array_equal(mixer.weights, before)
    assert all(torch.equal(p, p0) for p, p0 in zip(model.parameters(), params, strict=True))
    logs = mixer.update(context(model, data, seed=2))  # and the next finite update proceeds
    assert logs["update_skipped"] == 0.0 and np.isfinite(mixer.weights).all()


def flat_gradient(model: GPT, tokens: torch.Tensor) -> torch.Tensor:
    grads = gradient(sequence_loss(model, tokens).mean(), trainable_parameters(model))
    return torch.cat([g.reshape(-1) for g in grads])


@pytest.mark.parametrize("forms_step", [False, True], ids=["own-backward", "forms-step"])
@pytest.mark.parametrize("mode", ["universal", "target"])
@pytest.mark.parametrize("clip", [None, 0.05])
def test_doge_scores_follow_their_definition(mode, clip, forms_step):
    """universal: W_i = <g_i, sum_{j != i} g_j>; target: W_i = <g_i, g_s>; g_i from the domain-i
    part of the training batch, each g clipped to `grad_clip` first; a domain absent from an
    unstratified batch scores 0. The same whether or not the update forms the step."""
    data = synthetic()
    model = small_gpt(data)
    counter = Counter()
    ctx = context(model, data, train_batch=3, counter=counter, forms_step=forms_step)
    mixer = build_mixer(DoGEConfig(mode=mode, grad_clip=clip, stratified=False), data.mixer_view())
    logs = mixer.update(ctx)
    batch, domains = ctx.training_batch()
    present = torch.unique(domains).tolist()
    assert len(present) < 4  # the test covers an absent domain

    def clipped(g):
        return g if clip is None else g * min(1.0, clip / g.norm().item())

    grads = {i: clipped(flat_gradient(model, batch[domains == i])) for i in present}
    if clip is not None:  # the clip bites: every raw domain gradient is longer than it
        assert all(g.norm().item() == pytest.approx(clip, rel=1e-5) for g in grads.values())
    if mode == "target":
        reference = clipped(flat_gradient(model, context(model, data).specialist(16)))
        assert counter.specialist_sequences == 16
    else:
        assert counter.specialist_sequences == 0
    for i in range(4):
        if i not in present:
            expected = 0.0
        elif mode == "target":
            expected = torch.dot(grads[i], reference).item()
        else:
            expected = torch.dot(grads[i], sum(grads.values()) - grads[i]).item()
        assert logs[f"alignment/domain_{i:02d}"] == pytest.approx(expected, rel=1e-4, abs=1e-9)
    assert counter.probe_sequences == 0
    # Sampling stays uniform; the weights act through the loss.
    np.testing.assert_array_equal(mixer.domain_weights(), np.full(4, 0.25))


def test_doge_batches_are_stratified_by_default():
    """Every training batch holds every domain, so every domain is scored at every update
    (at k = 16 and batch 16, random batches leave about 35 % of the domains out)."""
    data = synthetic(num_domains=16)
    mixer = build_mixer(DoGEConfig(), data.mixer_view())
    assert mixer.stratified_batches
    ctx = context(small_gpt(data), data, train_batch=16, stratified=mixer.stratified_batches)
    logs = mixer.update(ctx)
    _, domains = ctx.training_batch()
    assert sorted(domains.tolist()) == list(range(16))
    assert all(logs[f"alignment/domain_{i:02d}"] != 0 for i in range(16))
    with pytest.raises(ValueError, match="at least 16"):
        context(small_gpt(data), data, train_batch=8, stratified=True).training_batch()


def test_doge_scaling_and_clipping():
    scaled = scaled_scores(np.array([-3.0, 0.0, 1.0, 40.0]), lr=0.1, mean_norm=2.0, score_max=5.0)
    np.testing.assert_allclose(scaled, [0.0, 0.0, 0.05, 0.5])


def test_doge_update_is_the_scaled_score_over_mu():
    data = synthetic()
    model = small_gpt(data)
    mixer = build_mixer(
        DoGEConfig(mode="target", mu=0.01, score_max=0.1, grad_clip=None), data.mixer_view()
    )
    lr = 0.02
    logs = mixer.update(context(model, data, lr=lr, stratified=True))
    scores = scores_of(logs, mixer.weight_names)
    scaled = scaled_scores(scores, lr, logs["mean_grad_norm"], 0.1)
    assert scaled.max() == pytest.approx(0.1 * lr)  # the clip bites
    # log alpha <- log alpha + W / mu, from uniform.
    np.testing.assert_allclose(
        np.log(mixer.weights / mixer.weights[0]), (scaled - scaled[0]) / 0.01
    )


@pytest.mark.parametrize("reweighted", ["clipped", "unclipped"])
def test_doge_trains_on_the_alpha_weighted_loss(reweighted):
    """The reported loss is sum_i alpha_i L_i renormalised over the domains present; its
    gradient, on a step without an update (no clip factors), is sum_i alpha_i grad L_i
    (`clipped`: not renormalised, as the reference) or that over sum_present alpha
    (`unclipped`)."""
    data = synthetic()
    mixer = build_mixer(DoGEConfig(reweighted_gradient=reweighted), data.mixer_view())
    mixer.weights = np.array([0.4, 0.3, 0.2, 0.1])
    losses = torch.tensor([1.0, 3.0, 2.0, 4.0, 8.0])
    domains = torch.tensor([0, 0, 1, 3, 3])  # domain 2 absent from this batch
    expected = (0.4 * 2.0 + 0.3 * 2.0 + 0.1 * 6.0) / 0.8
    # Each sequence's two token losses average to the sequence losses above.
    tokens = torch.stack([losses - 0.5, losses + 0.5], dim=1).requires_grad_()
    batch = TrainingBatch(step=0, tokens=torch.zeros(5, 3), domains=domains, token_losses=tokens)
    loss = mixer.training_loss(batch)
    assert loss.item() == pytest.approx(expected)
    loss.backward()
    # d loss / d sequence loss = w_i / n_i for the sequence's domain i; per token, half of it.
    w = np.array([0.4, 0.3, 0.2, 0.1]) / (0.8 if reweighted == "unclipped" else 1.0)
    per_sequence = np.array([w[0] / 2, w[0] / 2, w[1], w[3] / 2, w[3] / 2])
    np.testing.assert_allclose(tokens.grad.numpy(), np.stack([per_sequence / 2] * 2, 1), rtol=1e-6)


def _flat(grads) -> torch.Tensor:
    return torch.cat([g.reshape(-1) for g in grads])


@pytest.mark.parametrize("reweighted", ["clipped", "unclipped"])
@pytest.mark.parametrize("mode", ["universal", "target"])
def test_doge_formed_step_is_the_gradient_of_its_training_loss(mode, reweighted):
    """The step gradient the update forms from its domain gradients (`step_gradient`) is the
    gradient of `training_loss` on the same batch and the same weights, with the same reported
    loss, clip biting on every domain; and it is sum_i alpha_i clip(g_i) by default."""
    data = synthetic()
    model = small_gpt(data)
    formed_mixer, own_mixer = (
        build_mixer(DoGEConfig(mode=mode, grad_clip=0.05, reweighted_gradient=reweighted), view)
        for view in (data.mixer_view(), data.mixer_view())
    )
    ctx = context(model, data, train_batch=8, stratified=True, lr=0.02, forms_step=True)
    formed_mixer.update(ctx)
    formed = formed_mixer.step_gradient()
    assert formed is not None and formed_mixer.step_gradient() is None
    assert formed.parameters == trainable_parameters(model)
    assert all(g.shape == p.shape for g, p in zip(formed.gradients, formed.parameters, strict=True))

    own = context(model, data, train_batch=8, stratified=True, lr=0.02)  # same seed, same draws
    own_mixer.update(own)
    assert own_mixer.step_gradient() is None  # not offered: the step runs its own backward
    np.testing.assert_allclose(own_mixer.weights, formed_mixer.weights, rtol=1e-10)
    tokens, domains = own.training_batch()
    assert torch.equal(tokens, ctx.training_batch()[0])
    batch = TrainingBatch(
        step=0, tokens=tokens, domains=domains, token_losses=token_losses(model, tokens)
    )
    model.zero_grad()
    loss = own_mixer.training_loss(batch)
    loss.backward()
    expected = _flat(p.grad for p in trainable_parameters(model))
    torch.testing.assert_close(_flat(formed.gradients), expected, rtol=1e-4, atol=1e-7)
    assert formed.loss.item() == pytest.approx(loss.item(), rel=1e-5)

    alpha = formed_mixer.weights
    grads = [flat_gradient(model, tokens[domains == i]) for i in range(4)]
    assert min(g.norm().item() for g in grads) > 0.05  # the clip bites on every domain
    if reweighted == "clipped":
        reference = sum(float(a) * g * 0.05 / g.norm() for a, g in zip(alpha, grads, strict=True))
    else:
        reference = sum(float(a) * g for a, g in zip(alpha, grads, strict=True))
    torch.testing.assert_close(_flat(formed.gradients), reference.float(), rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("mode", ["universal", "target"])
@pytest.mark.parametrize("forms_step", [False, True], ids=["own-backward", "forms-step"])
def test_doge_update_flops(mode, forms_step):
    """The update's passes over the training batch are the mixer's FLOPs only when the step
    runs its own forward and backward; when they form the step they are its training FLOPs
    (counted by the batch's tokens), and only the specialist batch's passes are the mixer's."""
    data = synthetic()
    model = small_gpt(data)
    batches = MixtureBatches(data, 0, 8, model.flops_per_token())
    mixer = build_mixer(DoGEConfig(mode=mode), data.mixer_view())
    ctx = context(model, data, stratified=True, forms_step=forms_step, batches=batches)
    mixer.update(ctx)
    assert batches.tokens_seen == 8 * SEQ_LEN  # the step's batch, trained on either way
    passed = (16 if mode == "target" else 0) + (0 if forms_step else 8)
    assert batches.mixer_flops == passed * SEQ_LEN * model.flops_per_token()
    assert (mixer.step_gradient() is not None) == forms_step


def _update_on_rank(rank: int, world: int, tmp: Path) -> None:
    """One data-parallel rank: its own probe, specialist and training batches (seeded by rank;
    the two training batches hold domains {0, 2, 3} and {0, 1, 3}), measurements averaged over
    ranks with a real gloo all-reduce."""
    dist.init_process_group(
        "gloo", init_method=f"file://{tmp / 'rendezvous'}", rank=rank, world_size=world
    )
    torch.set_num_threads(1)

    def all_reduce_mean(tensor):
        tensor = tensor.clone()
        dist.all_reduce(tensor)
        return tensor / world

    data = synthetic()
    model = small_gpt(data)
    weights, steps = [], []
    for cfg in (DoGEConfig(mode="target"), DoGEConfig(mode="universal"), DGAConfig(eta=5.0)):
        mixer = build_mixer(cfg, data.mixer_view())
        forms_step = cfg.name == "doge"
        ctx = context(model, data, seed=rank, train_batch=4, lr=0.02, forms_step=forms_step)
        mixer.update(replace(ctx, all_reduce_mean=all_reduce_mean))
        weights.append(mixer.weights)
        if forms_step:  # DoGE's step gradient, averaged over ranks
            steps.append(_flat(mixer.step_gradient().gradients).detach().numpy())
    np.save(tmp / f"rank{rank}.npy", np.stack(weights))
    np.save(tmp / f"rank{rank}_steps.npy", np.stack(steps))
    dist.destroy_process_group()


@pytest.mark.slow
def test_ranks_that_draw_different_batches_end_with_identical_weights(tmp_path):
    torch.multiprocessing.spawn(_update_on_rank, args=(2, tmp_path), nprocs=2)
    rank0, rank1 = np.load(tmp_path / "rank0.npy"), np.load(tmp_path / "rank1.npy")
    np.testing.assert_array_equal(rank0, rank1)
    assert np.abs(rank0 - 0.25).max(axis=1).min() > 1e-3  # every mixer moved its weights
    # DoGE's step gradients, formed from each rank's own batch, are averaged: identical.
    steps0, steps1 = (np.load(tmp_path / f"rank{r}_steps.npy") for r in (0, 1))
    np.testing.assert_array_equal(steps0, steps1)
    assert np.abs(steps0).max() > 0
