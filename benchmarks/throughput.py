"""Training throughput of the harness against a minimal plain-PyTorch loop doing the same work.

Same model (tiny: 4 layers, d=128, context 128), batch (16 sequences), data (synthetic domains,
drawn by the same sampler), optimizer and schedule (the LightningModule's own), gradient clipping.
The harness runs as users run it (Lightning loop, per-sequence loss through the mixer, logging to
CSV) minus validation and checkpointing. Steady state only: the first steps are not timed.

    python -m benchmarks.throughput [--steps 40] [--repeats 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings

import lightning as L
import numpy as np
import torch
from lightning.pytorch.loggers import CSVLogger

from benchmarks.common import interleaved, median, peak_matmul_flops, print_table, write_results
from domains.sampler import MixtureSampler
from domains.synthetic import SyntheticDataConfig, generate
from mixers import MIXERS, build_mixer
from models.gpt import GPTConfig, sequence_loss
from models.lm import MixtureLM, TrainConfig

BATCH, CONTEXT, WARMUP = 16, 128, 5
warnings.filterwarnings("ignore", ".*does not have many workers.*")


def make_module(data, steps: int, mixer_name: str = "uniform", **mixer_options) -> MixtureLM:
    torch.manual_seed(0)
    model_cfg = GPTConfig(vocab_size=data.vocab_size, context_length=CONTEXT)
    train_cfg = TrainConfig(batch_size=BATCH, eval_every=10**9, checkpoint_every=10**9)
    mixer = build_mixer(MIXERS[mixer_name][1](**mixer_options), data.mixer_view())
    return MixtureLM(model_cfg, train_cfg, data, mixer, 0, steps)


def plain_loop(data, steps: int) -> float:
    """Tokens/s of a bare loop over the same model, optimizer, schedule and sampler."""
    lm = make_module(data, steps)
    model = lm.model
    optim_cfg = lm.configure_optimizers()
    optimizer, scheduler = optim_cfg["optimizer"], optim_cfg["lr_scheduler"]["scheduler"]
    sampler = MixtureSampler([len(s) for s in data.train], seed=0)
    weights = np.full(data.num_domains, 1 / data.num_domains)
    for step in range(steps):
        if step == WARMUP:
            start = time.perf_counter()
        domains, indices = sampler.draw(weights, BATCH)
        rows = np.concatenate([data.train[d][indices[domains == d]] for d in np.unique(domains)])
        loss = sequence_loss(model, torch.from_numpy(rows)).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
    return (steps - WARMUP) * BATCH * CONTEXT / (time.perf_counter() - start)


class _SteadyStateTimer(L.Callback):
    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if trainer.global_step == WARMUP:
            self.start = time.perf_counter()

    def on_train_end(self, trainer, module):
        self.seconds = time.perf_counter() - self.start


def fit_tokens_per_second(data, steps: int, mixer_name: str = "uniform", **mixer_options) -> float:
    """Tokens/s of the LightningModule with the given mixer under a Lightning Trainer."""
    timer = _SteadyStateTimer()
    with tempfile.TemporaryDirectory() as log_dir:
        trainer = L.Trainer(
            accelerator="cpu",
            devices=1,
            max_steps=steps,
            logger=CSVLogger(log_dir, name="", version=""),
            callbacks=[timer],
            gradient_clip_val=1.0,
            log_every_n_steps=10,
            limit_val_batches=0,
            num_sanity_val_steps=0,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
        )
        trainer.fit(make_module(data, steps, mixer_name, **mixer_options))
    return (steps - WARMUP) * BATCH * CONTEXT / timer.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    data = generate(SyntheticDataConfig(sequences_per_domain=128), seq_len=CONTEXT)
    flops_per_token = make_module(data, args.steps).model.flops_per_token()
    samples = interleaved(
        {
            "plain": lambda: plain_loop(data, args.steps),
            "harness": lambda: fit_tokens_per_second(data, args.steps),
        },
        args.repeats,
    )
    peak = peak_matmul_flops()
    plain, ours = median(samples["plain"]), median(samples["harness"])
    rows = [
        [name, median(values), median(values) * flops_per_token / peak]
        for name, values in samples.items()
    ]
    print_table("Training throughput (median)", ["loop", "tokens/s", "MFU vs matmul peak"], rows)
    print(f"harness / plain = {ours / plain:.3f}  (target >= 0.95)")
    path = write_results(
        "throughput",
        {
            "settings": {
                "model": "tiny",
                "batch": BATCH,
                "context": CONTEXT,
                "steps": args.steps,
                "warmup_steps": WARMUP,
                "repeats": args.repeats,
            },
            "flops_per_token": flops_per_token,
            "matmul_peak_flops": peak,
            "tokens_per_s": samples,
            "median_tokens_per_s": {"plain": plain, "harness": ours},
            "harness_over_plain": ours / plain,
            "mfu": {
                "plain": plain * flops_per_token / peak,
                "harness": ours * flops_per_token / peak,
            },
        },
    )
    print(f"written: {path}")


if __name__ == "__main__":
    main()
