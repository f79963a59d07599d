"""DoReMi's update rule and weighted loss against hand computations, its agreement across
data-parallel ranks, and inside real runs with a reference run trained first: the weights it
records, its cost (mixer and upstream FLOPs), the hand-off of its averaged weights, an exact
resume, and clear errors for a wrong reference."""

import math

import numpy as np
import pytest
import torch

from domains.synthetic import SyntheticDataConfig, generate
from experiments.checkpoints import load_checkpoint
from experiments.results import read_results
from experiments.train import train
from mixers import build_mixer
from mixers.base import TrainingBatch
from mixers.doremi import DoReMiConfig, excess_loss_sums
from tests.conftest import FAST, compose_config, run_train_cli
from tests.mixer_runs import run, trajectory

pytestmark = pytest.mark.usefixtures("one_thread")

# The reference model is smaller than the proxy (SMALL: 2 layers of 64): its own config is used.
REFERENCE = ("model.n_layer=1", "model.d_model=32")


def view(k: int, vocab_size: int = 64):
    data = generate(
        SyntheticDataConfig(num_domains=k, vocab_size=vocab_size, sequences_per_domain=8),
        seq_len=8,
    )
    return data.mixer_view()


def mixer_of(k: int = 3, **options):
    return build_mixer(DoReMiConfig(reference="unused", **options), view(k))


def batch_of(proxy, reference, domains, step=0, **extra) -> TrainingBatch:
    proxy = torch.tensor(proxy, dtype=torch.float32)
    return TrainingBatch(
        step=step,
        tokens=torch.zeros(proxy.shape[0], proxy.shape[1] + 1, dtype=torch.long),
        domains=torch.tensor(domains),
        token_losses=proxy,
        reference_losses=lambda: torch.tensor(reference, dtype=torch.float32),
        **extra,
    )


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max())
    return e / e.sum()


def test_excess_is_clipped_per_token_then_averaged_per_domain():
    proxy = [[3.0, 1.0, 2.0], [1.0, 2.0, 2.0], [4.0, 4.0, 4.0]]
    reference = [[1.0, 2.0, 1.5], [4.0, 1.0, 2.0], [1.0, 1.0, 1.0]]
    stats = excess_loss_sums(
        torch.tensor(proxy), torch.tensor(reference), torch.tensor([0, 0, 2]), 3
    )
    # Domain 0's token excesses 2, -1, 0.5, -3, 1, 0: clipped 2 + 0 + 0.5 + 0 + 1 + 0 = 3.5 over
    # 6 tokens (averaging first would give -0.5 / 6, clipped to 0). Domain 1 has no tokens.
    np.testing.assert_allclose(stats.numpy(), [[3.5, 0.0, 9.0], [6.0, 0.0, 3.0]])


def test_update_follows_the_rule_by_hand():
    eta, eps = 0.5, 0.1
    mixer = mixer_of(3, eta=eta, smoothing=eps)
    alpha = np.full(3, 1 / 3)

    def step(alpha, scores):
        return (1 - eps) * softmax(np.log(alpha) + eta * np.asarray(scores)) + eps / 3

    # Step 0: domains 0 and 2; domain 1 not seen yet takes the mean of the seen scores.
    mixer.training_loss(
        batch_of([[3.0, 1.0], [2.0, 2.0]], [[1.0, 2.0], [1.0, 1.5]], [0, 2])
    )  # s_0 = (2 + 0) / 2 = 1, s_2 = (1 + 0.5) / 2 = 0.75
    alpha = step(alpha, [1.0, 0.875, 0.75])
    np.testing.assert_allclose(mixer.weights, alpha, rtol=1e-12)
    # Step 1: only domain 1 (s_1 = 2); 0 and 2 keep their last scores.
    mixer.training_loss(batch_of([[3.0, 4.0]], [[1.0, 2.0]], [1], step=1))
    alpha = step(alpha, [1.0, 2.0, 0.75])
    np.testing.assert_allclose(mixer.weights, alpha, rtol=1e-12)
    # Step 2: domains 0 and 1 learned (no excess: clipped at 0); domain 2 absent keeps 0.75.
    mixer.training_loss(batch_of([[1.0, 1.0], [0.5, 1.5]], [[2.0, 1.0], [3.0, 1.5]], [0, 1]))
    alpha = step(alpha, [0.0, 0.0, 0.75])
    np.testing.assert_allclose(mixer.weights, alpha, rtol=1e-12)
    np.testing.assert_array_equal(mixer.seen, [True, True, True])
    # The time average is over the weights each step trained with.
    assert mixer.time_averaged_weights().sum() == pytest.approx(1.0)


def test_the_reference_implementations_initial_score_is_log_vocab():
    mixer = mixer_of(3, eta=1.0, smoothing=0.0, unseen_score="log_vocab")
    mixer.training_loss(batch_of([[3.0, 1.0]], [[1.0, 2.0]], [0]))  # s_0 = 1
    expected = softmax(np.log(np.full(3, 1 / 3)) + np.array([1.0, math.log(64), math.log(64)]))
    np.testing.assert_allclose(mixer.weights, expected, rtol=1e-12)


def test_the_proxy_trains_on_the_alpha_weighted_loss_with_the_new_weights():
    mixer = mixer_of(3, eta=1.0, smoothing=1e-4)
    proxy = torch.tensor([[2.0, 4.0], [1.0, 1.0], [5.0, 3.0]], requires_grad=True)
    reference = [[1.0, 1.0], [1.0, 1.0], [1.0, 1.0]]
    calls = []

    def reference_losses():
        calls.append(1)
        return torch.tensor(reference)

    batch = TrainingBatch(
        step=0,
        tokens=torch.zeros(3, 3, dtype=torch.long),
        domains=torch.tensor([0, 0, 2]),
        token_losses=proxy,
        reference_losses=reference_losses,
    )
    loss = mixer.training_loss(batch)
    alpha = mixer.weights  # already updated on this batch
    assert not np.allclose(alpha, 1 / 3)
    # Domain means: 0 -> (3 + 1) / 2 = 2, 2 -> 4; domain 1 absent: renormalised over 0 and 2.
    expected = (alpha[0] * 2.0 + alpha[2] * 4.0) / (alpha[0] + alpha[2])
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    loss.backward()  # differentiable through the proxy's token losses
    assert proxy.grad is not None and proxy.grad[2].sum() > 0
    assert len(calls) == 1  # one reference pass per step
    assert batch.logs["excess/domain_02"] == pytest.approx(3.0)


def test_config_mistakes_are_refused():
    with pytest.raises(ValueError, match="eta"):
        DoReMiConfig(reference="x", eta=0)
    with pytest.raises(ValueError, match="smoothing"):
        DoReMiConfig(reference="x", smoothing=1.0)
    with pytest.raises(ValueError, match="update_every"):
        DoReMiConfig(reference="x", update_every=4)
    with pytest.raises(RuntimeError, match="reference"):
        mixer_of().training_loss(
            TrainingBatch(
                step=0,
                tokens=torch.zeros(1, 3, dtype=torch.long),
                domains=torch.tensor([0]),
                token_losses=torch.ones(1, 2),
            )
        )


def test_ranks_pool_their_excess_sums_and_token_counts():
    """Two data-parallel ranks, each with its own part of a batch (rank 0: domains 0 and 2, rank
    1: domain 0), take the step of one process on the whole batch. The all-reduce is played by a
    function that averages with the other rank's statistics (a real one: the two-rank run
    below)."""
    parts = [
        ([[3.0, 1.0], [2.0, 2.0]], [[1.0, 2.0], [1.0, 1.5]], [0, 2]),
        ([[4.0, 4.0, 4.0, 4.0]], [[1.0, 1.0, 1.0, 1.0]], [0]),
    ]

    def stats(proxy, reference, domains):
        return excess_loss_sums(
            torch.tensor(proxy), torch.tensor(reference), torch.tensor(domains), 3
        )

    weights = []
    for rank, part in enumerate(parts):
        other = stats(*parts[1 - rank])
        mixer = mixer_of(3)
        mixer.training_loss(batch_of(*part, all_reduce_mean=lambda t, o=other: (t + o) / 2))
        weights.append(mixer.weights)
    np.testing.assert_array_equal(weights[0], weights[1])
    # Domain 0 over both ranks: excess 2, 0 (rank 0) and 3, 3, 3, 3 (rank 1): 14 / 6, not the
    # mean of the ranks' means (1 and 3). Domain 1, in neither part, takes the mean seen score.
    scores = np.array([14 / 6, (14 / 6 + 0.75) / 2, 0.75])
    expected = 0.9999 * softmax(np.log(np.full(3, 1 / 3)) + scores) + 1e-4 / 3
    np.testing.assert_allclose(weights[0], expected, rtol=1e-12)


# --- inside real runs ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    """A uniform run, smaller than the proxy, trained first (32 steps): the reference."""
    tmp_path = tmp_path_factory.mktemp("reference")
    results, run_dir = run(tmp_path, "reference", "mixer=uniform", *REFERENCE)
    return results, run_dir


@pytest.mark.slow
def test_a_completed_run_saves_its_final_model_as_the_last_checkpoint(reference_run):
    results, run_dir = reference_run
    assert load_checkpoint(run_dir / "checkpoints/last.ckpt")["global_step"] == results["steps"]


@pytest.mark.slow
def test_doremi_in_a_run_records_its_weights_and_its_cost(tmp_path, reference_run):
    reference, reference_dir = reference_run
    proxy, proxy_dir = run(tmp_path, "doremi", "mixer=doremi", f"mixer.reference={reference_dir}")
    assert proxy["status"] == "completed" and proxy["steps"] == 32
    assert proxy["probe_tokens"] == 0
    # One reference forward pass per training token, at the reference model's cost (a third of
    # its training FLOPs per token), which is not the proxy's.
    flops_per_token = reference["model"]["flops_per_token"]
    assert flops_per_token != proxy["model"]["flops_per_token"]
    assert proxy["mixer_flops"] == flops_per_token // 3 * proxy["tokens_trained"]
    assert proxy["upstream_flops"] == reference["train_flops"] + reference["mixer_flops"] > 0
    # Batches from the reference weights (uniform); alpha moved at every step, each row the
    # weights that step's loss was weighted with, and their mean is the time average.
    assert proxy["final_domain_weights"] == pytest.approx(
        {n: 1 / 8 for n in proxy["final_weights"]}
    )
    rows = trajectory(proxy_dir)
    assert [row.pop("step") for row in rows] == list(range(32))
    weights = np.array([list(row.values()) for row in rows])
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(weights[-1], list(proxy["final_weights"].values()), rtol=1e-6)
    averaged = np.array(list(proxy["time_averaged_weights"].values()))
    np.testing.assert_allclose(averaged, weights.mean(axis=0), rtol=1e-6)
    assert np.abs(averaged - 1 / 8).max() > 0.01
    header = (proxy_dir / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {f"mixer/excess/domain_{i:02d}" for i in range(8)} <= set(header)

    # DoReMi's output, the averaged alpha, handed to a fresh model; the cost of both earlier
    # stages is its upstream cost.
    fresh, _ = run(
        tmp_path, "fresh", "mixer=static", f"mixer.path={proxy_dir}", "mixer.which=time_averaged"
    )
    assert fresh["final_weights"] == pytest.approx(proxy["time_averaged_weights"], rel=1e-12)
    assert fresh["upstream_flops"] == (
        proxy["train_flops"] + proxy["mixer_flops"] + proxy["upstream_flops"]
    )


@pytest.mark.slow
def test_doremi_resumes_exactly(tmp_path, reference_run):
    _, reference_dir = reference_run
    overrides = ("mixer=doremi", f"mixer.reference={reference_dir}", "train.checkpoint_every=12")
    whole, whole_dir = run(tmp_path, "whole", *overrides)
    # Resume a copy from the step-24 checkpoint (the final one is last.ckpt): the reference is
    # loaded again from its directory, the mixer's state comes from the checkpoint.
    resumed_dir = tmp_path / "resumed"
    (resumed_dir / "checkpoints").mkdir(parents=True)
    step_24 = (whole_dir / "checkpoints/previous.ckpt").read_bytes()
    assert load_checkpoint(whole_dir / "checkpoints/previous.ckpt")["global_step"] == 24
    (resumed_dir / "checkpoints/last.ckpt").write_bytes(step_24)
    resumed, _ = run(tmp_path, "resumed", *overrides, "train.resume=auto")
    assert resumed["steps"] == 32
    assert resumed["final_weights"] == whole["final_weights"]
    assert resumed["time_averaged_weights"] == whole["time_averaged_weights"]
    assert resumed["metrics_final"] == whole["metrics_final"]
    assert resumed["mixer_flops"] == whole["mixer_flops"]
    assert trajectory(resumed_dir) == trajectory(whole_dir)
    model = load_checkpoint(resumed_dir / "checkpoints/last.ckpt")["state_dict"]
    for key, tensor in load_checkpoint(whole_dir / "checkpoints/last.ckpt")["state_dict"].items():
        assert torch.equal(model[key], tensor), key


@pytest.mark.slow
def test_a_wrong_reference_fails_clearly(tmp_path, reference_run, monkeypatch):
    _, reference_dir = reference_run
    missing = tmp_path / "no_such_run"

    def no_data(*args, **kwargs):
        raise AssertionError("data was loaded before the reference directory was checked")

    with monkeypatch.context() as patch:
        patch.setattr("experiments.train.load_data", no_data)
        with pytest.raises(FileNotFoundError, match="no run directory"):
            run(tmp_path, "missing", "mixer=doremi", f"mixer.reference={missing}")
        with pytest.raises(FileNotFoundError, match=r"no results\.json"):
            run(tmp_path, "empty", "mixer=doremi", f"mixer.reference={tmp_path}")
    # A reference trained on 4 domains for a run on 8.
    with pytest.raises(ValueError, match="other domains") as error:
        run(
            tmp_path,
            "other",
            "mixer=doremi",
            f"mixer.reference={reference_dir}",
            "data.num_domains=4",
        )
    assert "domain_04" in str(error.value)  # names what does not match
    # Same domain names, another vocabulary: a warning names the data option, then the weights
    # do not fit.
    with (
        pytest.warns(UserWarning, match=r"data\.vocab_size"),
        pytest.raises(ValueError, match="do not fit"),
    ):
        run(
            tmp_path,
            "vocab",
            "mixer=doremi",
            f"mixer.reference={reference_dir}",
            "data.vocab_size=128",
        )
    assert read_results(tmp_path / "vocab")["status"] == "failed"


@pytest.mark.slow
def test_doremi_from_the_command_line_over_two_ranks(tmp_path, reference_run):
    from tests.mixer_runs import SMALL

    reference, reference_dir = reference_run
    proc = run_train_cli(
        *SMALL,
        "trainer=ddp",
        "mixer=doremi",
        f"mixer.reference={reference_dir}",
        f"hydra.run.dir={tmp_path}",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = read_results(tmp_path)
    # 8192 tokens over 2 ranks x 8 sequences x 32 tokens = 16 steps, both ranks counted.
    assert results["steps"] == 16 and results["tokens_trained"] == 8192
    flops_per_token = reference["model"]["flops_per_token"]
    assert results["mixer_flops"] == flops_per_token // 3 * 8192
    rank0, rank1 = results["ranks"]["weights"]
    assert rank0 == rank1  # every rank took the same steps
    assert rank0 != pytest.approx([1 / 8] * 8, abs=1e-3)


@pytest.mark.slow
def test_without_a_reference_the_run_trains_one_first(tmp_path):
    """`mixer=doremi` alone: the same run on uniform weights is trained first, in
    <run dir>/reference, and its compute is this run's upstream cost; a re-run skips both."""
    cfg = compose_config("mixer=doremi", *FAST)
    proxy = train(cfg, tmp_path)
    reference = read_results(tmp_path / "reference")
    assert reference["status"] == proxy["status"] == "completed"
    assert reference["mixer"] == "uniform" and reference["mixer_label"] == "doremi_reference"
    assert proxy["config"]["mixer"]["reference"] == str(tmp_path / "reference")
    assert proxy["upstream_flops"] == reference["train_flops"] + reference["mixer_flops"]
    assert train(cfg, tmp_path) == proxy  # completed: skipped, reference included
