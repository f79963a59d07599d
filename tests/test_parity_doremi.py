"""Parity of DoReMi's weight update (mixers/doremi.py) with the authors' public code.

The figures in tests/parity/doremi.json come from running, standalone and verbatim, the authors'
DoReMiTrainer.update_domain_weights (with its write_weights and read_weights) of
sangmichaelxie/doremi at commit 7cde52d1848737aa967ecbdb9e643cf334de160d, doremi/trainer.py, with
the model buffers as doremi/train.py registers them (uniform weights, every domain's initial score
log(len(tokenizer)), update counter 1), one process, no gradient accumulation, and their default
reweight_eta = 1 and reweight_eps = 1e-4 (doremi/training_args.py). k = 5 domains, 4 successive
updates per scenario, each from fixed per-token proxy and reference losses of 8 sequences x 6
tokens and the sequences' domains (numpy seed, stored in the JSON):
- present_first: every domain in update 0, domain 2 absent from update 2;
- absent_first: domain 4 absent from update 0 (before it is ever seen), domain 1 from update 2.

Our side: the pure functions (`excess_loss_sums`, `doremi_step`) and the mixer driven through
`training_loss` (which calls `observe_excess`), both must give their weights within 1e-6.

Deliberate differences, all documented in mixers/doremi.py and checked here explicitly:
- `expected` is their code run in float64 (buffers in float64, their two `.float()` casts made
  `.double()`); their code untouched in float32 (`expected_float32_verbatim`) is also checked,
  within the same 1e-6;
- their token mask is all ones: our batches hold no padding, so `excess_loss_sums` has no mask;
- a domain never seen yet: theirs scores it log V, as our `unseen_score=log_vocab` does; our
  default `mean_seen` gives it the mean score of the domains seen so far, which for absent_first
  equals their code with domain 4's initial score set to that mean (`expected_mean_seen`), and is
  far from their log V trajectory;
- the time average: theirs also counts the initial weights once, (w0 + ... + wT) / (T + 1); ours
  averages the weights each step trained with, (w1 + ... + wT) / T;
- across data-parallel ranks they gather every token to rank 0, we average the per-domain sums and
  counts over ranks: the same per-domain means (checked on a two-rank split).
Not covered: the alpha-weighted training loss and gradient accumulation.
"""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from domains.data import MixerView
from mixers import build_mixer
from mixers.base import TrainingBatch
from mixers.doremi import DoReMiConfig, doremi_step, excess_loss_sums

FIXTURE = json.loads((Path(__file__).parent / "parity" / "doremi.json").read_text())
K = FIXTURE["k"]
SCENARIOS = sorted(FIXTURE["scenarios"])


def close(actual, expected) -> None:
    np.testing.assert_allclose(np.asarray(actual), np.asarray(expected), atol=1e-6, rtol=0)


def tensors(update: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return (
        torch.tensor(update["token_losses"], dtype=torch.float64),
        torch.tensor(update["reference_losses"], dtype=torch.float64),
        torch.tensor(update["domain_ids"]),
    )


def mixer_of(**options):
    view = MixerView(
        names=[f"d{i}" for i in range(K)],
        domain_tokens=np.full(K, 1000),
        target_train_domain=np.zeros(0, dtype=np.int64),
        vocab_size=FIXTURE["vocab_size"],
    )
    cfg = DoReMiConfig(
        reference="unused", eta=FIXTURE["eta"], smoothing=FIXTURE["smoothing"], **options
    )
    return build_mixer(cfg, view)


def drive(mixer, updates: list[dict]) -> tuple[list, list, list]:
    """Each update through `training_loss` (as a training step does), then `observe_step`: our
    weights, scores and time-averaged weights after each."""
    weights, scores, averages = [], [], []
    for step, update in enumerate(updates):
        proxy, reference, domains = tensors(update)
        batch = TrainingBatch(
            step=step,
            tokens=torch.zeros(proxy.shape[0], proxy.shape[1] + 1, dtype=torch.long),
            domains=domains,
            token_losses=proxy,
            reference_losses=lambda reference=reference: reference,
        )
        mixer.training_loss(batch)
        mixer.observe_step()
        assert batch.logs["update_skipped"] == 0.0
        weights.append(mixer.weights)
        scores.append(mixer.scores)
        averages.append(mixer.time_averaged_weights())
    return weights, scores, averages


def test_fixture_is_meaningful():
    """Their defaults are ours, the absent domains are absent, and the weights move."""
    assert (DoReMiConfig.eta, DoReMiConfig.smoothing) == (FIXTURE["eta"], FIXTURE["smoothing"])
    absent = {"present_first": [[], [], [2], []], "absent_first": [[4], [], [1], []]}
    for name in SCENARIOS:
        scenario = FIXTURE["scenarios"][name]
        assert len(scenario["updates"]) == 4
        for update, missing in zip(scenario["updates"], absent[name], strict=True):
            assert sorted(set(range(K)) - set(update["domain_ids"])) == missing
        np.testing.assert_array_equal(scenario["initial_weights"], np.full(K, 1 / K))
        assert np.abs(np.array(scenario["expected"]["weights"]) - 1 / K).max() > 0.1


@pytest.mark.parametrize("name", SCENARIOS)
def test_pure_functions_match(name):
    """excess_loss_sums -> per-domain scores (an absent domain keeps its last; log V before it is
    first seen) -> doremi_step reproduces their weights and scores."""
    scenario = FIXTURE["scenarios"][name]
    weights = np.array(scenario["initial_weights"])
    scores = np.full(K, math.log(FIXTURE["vocab_size"]))
    for update, expected_w, expected_s in zip(
        scenario["updates"],
        scenario["expected"]["weights"],
        scenario["expected"]["scores"],
        strict=True,
    ):
        sums, counts = excess_loss_sums(*tensors(update), K).numpy()
        present = counts > 0
        scores[present] = sums[present] / counts[present]
        weights, applied = doremi_step(weights, scores, FIXTURE["eta"], FIXTURE["smoothing"])
        assert applied
        close(scores, expected_s)
        close(weights, expected_w)


@pytest.mark.parametrize("name", SCENARIOS)
def test_mixer_with_log_vocab_matches(name):
    """The mixer with unseen_score=log_vocab (their initial score) gives their weights and scores
    after every update, against both their float64 run and their untouched float32 code."""
    scenario = FIXTURE["scenarios"][name]
    weights, scores, _ = drive(mixer_of(unseen_score="log_vocab"), scenario["updates"])
    close(weights, scenario["expected"]["weights"])
    close(weights, scenario["expected_float32_verbatim"]["weights"])
    close(scores, scenario["expected"]["scores"])


def test_mixer_default_matches_when_every_domain_is_in_the_first_batch():
    """With every domain in the first batch, our default (mean_seen) never uses an initial score:
    their weights, including the update where domain 2 is absent and keeps its last score."""
    scenario = FIXTURE["scenarios"]["present_first"]
    weights, scores, _ = drive(mixer_of(), scenario["updates"])
    close(weights, scenario["expected"]["weights"])
    close(scores, scenario["expected"]["scores"])
    # Domain 2's score at update 2 is the one from update 1.
    assert scores[2][2] == scores[1][2]


def test_mixer_default_differs_for_a_domain_absent_from_the_first_batch():
    """Documented difference: by default (mean_seen) a domain not seen yet scores the mean of the
    seen domains, not their log V. Ours equals their code with domain 4's initial score set to
    that mean, and is far from their log V trajectory (where domain 4 takes almost all weight)."""
    scenario = FIXTURE["scenarios"]["absent_first"]
    weights, scores, _ = drive(mixer_of(), scenario["updates"])
    close(weights, scenario["expected_mean_seen"]["weights"])
    close(scores, scenario["expected_mean_seen"]["scores"])
    assert scores[0][4] == pytest.approx(np.mean(scores[0][:4]), abs=1e-12)
    theirs = np.array(scenario["expected"]["weights"])
    assert theirs[:, 4].min() > 0.999
    assert np.abs(np.array(weights) - theirs).max() > 0.4


@pytest.mark.parametrize("name", SCENARIOS)
def test_time_average_differs_only_by_the_initial_weights(name):
    """Documented difference: their average counts the initial weights once, ours does not:
    theirs (T + 1) = ours T + w0 after T updates."""
    scenario = FIXTURE["scenarios"][name]
    _, _, averages = drive(mixer_of(unseen_score="log_vocab"), scenario["updates"])
    w0 = np.array(scenario["initial_weights"])
    for t, (ours, theirs) in enumerate(
        zip(averages, scenario["expected"]["avg_weights"], strict=True), start=1
    ):
        close((ours * t + w0) / (t + 1), theirs)


@pytest.mark.parametrize("name", SCENARIOS)
def test_two_ranks_average_to_their_gathered_update(name):
    """Each update's batch split over two ranks, their stats averaged (as all_reduce_mean does):
    the same weights as their update over the gathered batch."""
    scenario = FIXTURE["scenarios"][name]
    mixer = mixer_of(unseen_score="log_vocab")
    for update, expected in zip(scenario["updates"], scenario["expected"]["weights"], strict=True):
        proxy, reference, domains = tensors(update)
        halves = [slice(0, 3), slice(3, None)]  # unequal halves: 3 and 5 sequences
        stats = sum(excess_loss_sums(proxy[h], reference[h], domains[h], K) for h in halves) / 2
        sums, counts = stats.numpy()
        assert mixer.observe_excess(sums, counts)
        close(mixer.weights, expected)
