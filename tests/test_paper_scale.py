"""The paper's domain count, 64 coarse x 4,096 fine = 262,144 domains: a short real training run
with DGA-DR (sparse bases, p = 64 probes per update), drawing from a mixture over every domain,
and evaluated per coarse cluster."""

import warnings

import lightning as L
import numpy as np
import pytest

from domains.data import DomainData, TokenSequences
from mixers import build_mixer
from mixers.dga_dr import DGADRConfig
from models.evaluation import EvalGroups
from models.gpt import GPTConfig
from models.lm import MixtureLM
from models.train_config import TrainConfig

pytestmark = pytest.mark.usefixtures("one_thread")

COARSE, FINE, SEQ_LEN, VOCAB = 64, 4096, 8, 32
K = COARSE * FINE


def sections(tokens: np.ndarray, sequences: int) -> list[TokenSequences]:
    """K consecutive sections of `tokens`, `sequences` sequences each (the store's layout)."""
    size = sequences * SEQ_LEN + 1
    return [TokenSequences(tokens[d * size : (d + 1) * size], SEQ_LEN) for d in range(K)]


@pytest.fixture(scope="module")
def paper_scale() -> DomainData:
    rng = np.random.default_rng(0)
    train = rng.integers(0, VOCAB, size=K * (2 * SEQ_LEN + 1), dtype=np.uint16)
    heldout = rng.integers(0, VOCAB, size=K * (SEQ_LEN + 1), dtype=np.uint16)
    specialist = rng.integers(0, VOCAB, size=(16 + 8) * SEQ_LEN + 2, dtype=np.uint16)
    return DomainData(
        names=[f"domain_{d:06d}" for d in range(K)],
        train=sections(train, 2),
        heldout=sections(heldout, 1),
        target_train=TokenSequences(specialist[: 16 * SEQ_LEN + 1], SEQ_LEN),
        target_eval=TokenSequences(specialist[16 * SEQ_LEN + 1 :], SEQ_LEN),
        vocab_size=VOCAB,
        seq_len=SEQ_LEN,
        # The specialist's nearest domains all lie in coarse cluster 5.
        target_train_domain=5 * FINE + rng.integers(0, FINE, size=16),
        coarse_of=np.repeat(np.arange(COARSE), FINE),
    )


@pytest.mark.slow
def test_evaluation_groups_are_the_coarse_clusters_spread_over_their_domains(paper_scale):
    groups = EvalGroups.of(paper_scale)
    assert groups.prefix == "val/coarse/" and len(groups.names) == COARSE
    chosen = groups.sequences(paper_scale, 3)
    for c, pairs in enumerate(chosen):
        domains = [d for d, _ in pairs]
        assert len(set(domains)) == 3  # three different domains, each its first sequence
        assert all(d // FINE == c and j == 0 for d, j in pairs)


@pytest.mark.slow
def test_a_short_dga_dr_run_over_262144_domains(paper_scale):
    steps = 4
    mixer = build_mixer(
        DGADRConfig(update_every=2, probe_batch=2, specialist_batch=4, eta=5.0),
        paper_scale.mixer_view(),
    )
    # Each basis lives inside its coarse cluster; cluster 5's only on its specialist domains.
    specialist_domains = len(np.unique(paper_scale.target_train_domain))
    assert mixer.bases.nnz == K - FINE + specialist_domains
    lm = MixtureLM(
        GPTConfig(vocab_size=VOCAB, context_length=SEQ_LEN, n_layer=1, n_head=1, d_model=16),
        TrainConfig(batch_size=8, eval_every=2, eval_sequences_per_domain=2),
        paper_scale,
        mixer,
        seed=0,
        max_steps=steps,
    )
    trainer = L.Trainer(
        accelerator="cpu",
        max_steps=steps,
        val_check_interval=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*does not have many workers.*")
        trainer.fit(lm)
    assert trainer.global_step == steps
    # 2 updates x (64 bases x 2 + 4 specialist sequences): the probe cost does not grow with K.
    assert lm.batches.probe_tokens == 2 * (COARSE * 2 + 4) * SEQ_LEN
    assert [step for step, _ in lm.trajectory] == [0, 2]
    assert not np.allclose(mixer.weights, 1 / COARSE)
    mixture = mixer.domain_weights()
    assert mixture.shape == (K,) and mixture.sum() == pytest.approx(1.0)
    metrics = lm.last_metrics
    coarse = {key for key in metrics if key.startswith("val/coarse/")}
    assert len(coarse) == COARSE and not any(key.startswith("val/domain/") for key in metrics)
    assert np.isfinite([metrics[key] for key in coarse]).all()
    assert metrics["val/generic_loss"] == pytest.approx(np.mean([metrics[k] for k in coarse]))
    assert lm.batches.train_sampler.epochs().sum() * 2 == pytest.approx(steps * 8)
