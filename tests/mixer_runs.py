"""Small training runs and models of the mixer tests: a run as the CLI makes it (`run`), its
weight trajectory (`trajectory`), and a DGA LightningModule as a run builds it (`dga_lm`)."""

import csv

import torch

from domains.synthetic import SyntheticDataConfig, generate
from experiments.train import train
from mixers import build_mixer
from mixers.dga import DGAConfig
from models.gpt import GPTConfig
from models.lm import MixtureLM
from models.train_config import TrainConfig
from tests.conftest import FAST, compose_config

# FAST with a smaller GPT: 8192 tokens / (8 sequences x 32 tokens) = 32 steps.
SMALL = (*FAST, "model.n_layer=2", "model.d_model=64", "train.resume=null")


def run(tmp_path, name, *overrides):
    run_dir = tmp_path / name
    return train(compose_config(*SMALL, *overrides), run_dir), run_dir


def trajectory(run_dir):
    with open(run_dir / "weights.csv", newline="") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def dga_lm(alignment: str) -> MixtureLM:
    """A LightningModule as a run builds it (seed 0), with DGA using `alignment`."""
    data = generate(SyntheticDataConfig(num_domains=4, sequences_per_domain=16), seq_len=32)
    # Unclipped, so that both estimators compute the same inner products.
    mixer = build_mixer(DGAConfig(alignment=alignment, grad_clip=None), data.mixer_view())
    torch.manual_seed(0)
    model_cfg = GPTConfig(vocab_size=data.vocab_size, context_length=32, n_layer=2, d_model=64)
    lm = MixtureLM(model_cfg, TrainConfig(), data, mixer, seed=0, max_steps=10)
    lm.setup("fit")
    return lm
