"""What only a GPU can show: bf16 training that resumes, exact alignment under CUDA autocast,
pinned-memory batches and DDP over NCCL. Skipped where there is no GPU (every CPU machine);
run them where one is: `pytest tests/test_gpu.py`."""

import numpy as np
import pytest
import torch

from domains.synthetic import SyntheticDataConfig, generate
from experiments.results import read_results
from experiments.train import train
from models.batches import MixtureBatches
from tests.conftest import FAST, compose_config, run_train_cli
from tests.mixer_runs import dga_lm

GPUS = torch.cuda.device_count()
pytestmark = pytest.mark.skipif(GPUS == 0, reason="needs a CUDA GPU")


def test_bf16_training_completes_and_resumes(tmp_path):
    overrides = (*FAST, "trainer=gpu", "mixer=dga", "train.checkpoint_every=16")
    whole = train(compose_config(*overrides), tmp_path / "whole")
    assert whole["status"] == "completed"
    resumed_dir = tmp_path / "resumed"
    (resumed_dir / "checkpoints").mkdir(parents=True)
    (resumed_dir / "checkpoints/last.ckpt").write_bytes(
        (tmp_path / "whole/checkpoints/previous.ckpt").read_bytes()
    )
    resumed = train(compose_config(*overrides), resumed_dir)
    assert resumed["steps"] == whole["steps"]
    assert resumed["final_weights"] == pytest.approx(whole["final_weights"], rel=1e-3)


def test_finite_difference_stays_exact_under_cuda_bf16_autocast():
    exact_lm, fd_lm = dga_lm("backward").cuda(), dga_lm("finite_difference").cuda()

    def scores(logs):
        return np.array([logs[f"alignment/domain_{i:02d}"] for i in range(4)])

    exact = scores(exact_lm.update_mixer(0, training_batch=None))
    with torch.autocast("cuda", dtype=torch.bfloat16):
        estimated = scores(fd_lm.update_mixer(0, training_batch=None))
    assert np.linalg.norm(estimated - exact) / np.linalg.norm(exact) < 1e-2


def test_batches_reach_the_gpu_through_pinned_memory():
    data = generate(SyntheticDataConfig(num_domains=4, sequences_per_domain=16), seq_len=32)
    batches = MixtureBatches(data, seed=0, batch_size=8, flops_per_token=1)
    tokens, domains = batches.train(np.full(4, 0.25), "cuda")
    assert tokens.is_cuda and domains.is_cuda and tokens.shape == (8, 33)
    assert batches.specialist(4, "cuda").is_cuda


@pytest.mark.skipif(GPUS < 2, reason="needs two GPUs")
def test_ddp_over_nccl_keeps_identical_weights(tmp_path):
    overrides = (*FAST, "trainer=gpu_ddp", "trainer.devices=2", "mixer=dga")
    proc = run_train_cli(*overrides, f"hydra.run.dir={tmp_path}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    ranks = np.array(read_results(tmp_path)["ranks"]["weights"])
    np.testing.assert_array_equal(ranks[0], ranks[1])


def test_embedding_on_a_gpu_runs_in_float16_and_keeps_the_directions(tmp_path):
    from dataclasses import replace

    from domains.embed import Embedder, EmbeddingConfig

    texts = ["The striker scored twice.", "def parse(line): return line.split(',')"] * 8
    half = Embedder(EmbeddingConfig(device="cuda"), tmp_path)
    full = Embedder(replace(half.cfg, half_on_gpu=False), tmp_path)
    assert (half.precision, full.precision) == ("float16", "float32")
    a, b = half.encode(texts, progress=False), full.encode(texts, progress=False)
    assert a.dtype == np.float32 and np.min((a * b).sum(axis=1)) > 0.999
