"""What each mixer costs on top of training, and whether the harness adds anything beyond the
probe compute itself.

A mixer's overhead is the time of its update, amortised over `update_every` steps, relative to a
training step at the same settings: overhead = t_update / (T * t_step). Both are measured on the
LightningModule's own code path (`MixtureLM.update_mixer`: the update context + `mixer.update`, and a training step of
the same module), interleaved. The probe-compute floor of DGA is (k*b + b_s) / (T*B) training-step
equivalents; overhead / floor near 1 means the harness adds nothing but the probe passes.
An end-to-end check runs whole Lightning fits of uniform and DGA and compares time per token.

    python -m benchmarks.mixer_overhead [--repeats 3] [--quick]
"""

from __future__ import annotations

import argparse
import threading
import time

import psutil
import torch

from benchmarks.common import median, print_table, write_results
from benchmarks.throughput import BATCH, CONTEXT, WARMUP, fit_tokens_per_second
from domains.synthetic import SyntheticDataConfig, generate
from experiments.quiet import quiet_lightning
from mixers import MIXERS, build_mixer
from mixers.base import TrainingBatch
from models.gpt import GPTConfig, token_losses
from models.lm import MixtureLM
from models.train_config import TrainConfig


class PeakRSS:
    """Peak resident memory above the starting point while the block runs (sampled every 2 ms)."""

    def __enter__(self):
        self._process = psutil.Process()
        self.start = self.peak = self._process.memory_info().rss
        self._running = True
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def _poll(self):
        while self._running:
            self.peak = max(self.peak, self._process.memory_info().rss)
            time.sleep(0.002)

    def __exit__(self, *exc):
        self._running = False
        self._thread.join()
        self.peak = max(self.peak, self._process.memory_info().rss)

    @property
    def extra_mb(self) -> float:
        return (self.peak - self.start) / 2**20


def module_for(data, mixer_name: str, **mixer_options) -> MixtureLM:
    torch.manual_seed(0)
    mixer_cfg = MIXERS[mixer_name].config(**mixer_options)
    lm = MixtureLM(
        GPTConfig(vocab_size=data.vocab_size, context_length=CONTEXT),
        TrainConfig(batch_size=BATCH),
        data,
        build_mixer(mixer_cfg, data.mixer_view()),
        seed=0,
        max_steps=1000,
    )
    lm.setup("fit")
    return lm


def time_step(lm: MixtureLM, optimizer: torch.optim.Optimizer) -> float:
    """One training step of the module (draw, forward, per-domain loss, backward, AdamW)."""
    start = time.perf_counter()
    tokens, domains = lm.batches.train(
        lm.mixer.domain_weights(), stratified=lm.mixer.stratified_batches
    )
    batch = TrainingBatch(
        step=0, tokens=tokens, domains=domains, token_losses=token_losses(lm.model, tokens)
    )
    loss = lm.mixer.training_loss(batch)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return time.perf_counter() - start


def time_update(lm: MixtureLM) -> tuple[float, float]:
    """Seconds and peak extra memory (MiB) of one mixer update."""
    batch = lm.batches.train(lm.mixer.domain_weights(), stratified=lm.mixer.stratified_batches)
    with PeakRSS() as memory:
        start = time.perf_counter()
        lm.update_mixer(0, lambda: batch)
        seconds = time.perf_counter() - start
    return seconds, memory.extra_mb


def measure(data, mixer_name: str, repeats: int, **options) -> dict:
    lm = module_for(data, mixer_name, **options)
    optimizer = torch.optim.AdamW(lm.model.parameters(), lr=1e-4)
    time_step(lm, optimizer)  # warm-up
    time_update(lm)
    steps, updates, memory = [], [], []
    for _ in range(repeats):  # interleaved: step, update, step, update, ...
        steps.append(time_step(lm, optimizer))
        seconds, extra = time_update(lm)
        updates.append(seconds)
        memory.append(extra)
    return {"t_step": median(steps), "t_update": median(updates), "peak_extra_mb": max(memory)}


def synthetic(k: int, coarse: int = 0):
    cfg = SyntheticDataConfig(
        num_domains=k,
        sequences_per_domain=8,
        heldout_sequences_per_domain=1,
        target_train_sequences=32,
        target_eval_sequences=4,
        coarse_domains=coarse,
    )
    return generate(cfg, seq_len=CONTEXT)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="small grid, for a smoke check (written to mixer_overhead_quick.json)",
    )
    args = parser.parse_args()
    quiet_lightning()
    ks = [4, 16] if args.quick else [4, 16, 64]
    fine_ks = [64, 256] if args.quick else [64, 1024, 4096]
    b, b_s = 4, 16
    rows, records = [], []

    def record(label: str, m: dict, update_every: int, floor: float | None) -> None:
        overhead = m["t_update"] / (update_every * m["t_step"])
        ratio = overhead / floor if floor else None
        records.append(
            {
                "mixer": label,
                "update_every": update_every,
                **m,
                "overhead": overhead,
                "probe_floor": floor,
                "overhead_over_floor": ratio,
            }
        )
        rows.append(
            [
                label,
                update_every,
                overhead,
                floor if floor else "-",
                ratio if ratio else "-",
                m["peak_extra_mb"],
            ]
        )

    for k in ks:
        data = synthetic(k)
        for method in ("backward", "finite_difference"):
            m = measure(
                data, "dga", args.repeats, alignment=method, probe_batch=b, specialist_batch=b_s
            )
            for update_every in (10, 100):
                floor = (k * b + b_s) / (update_every * BATCH)
                record(f"dga k={k} {method}", m, update_every, floor)
        if k == 16:
            m = measure(data, "doge", args.repeats, update_every=1)
            record("doge k=16", m, 1, None)
            for name in ("importance", "uniform"):
                lm = module_for(data, name)
                optimizer = torch.optim.AdamW(lm.model.parameters(), lr=1e-4)
                t_step = median([time_step(lm, optimizer) for _ in range(args.repeats + 1)])
                rows.append([name, "-", 0.0, "-", "-", 0.0])
                records.append({"mixer": name, "t_step": t_step, "overhead": 0.0})
    p = 16
    for fine in fine_ks:
        data = synthetic(fine, coarse=p)
        m = measure(data, "dga_dr", args.repeats, probe_batch=b, specialist_batch=b_s)
        record(f"dga_dr p={p} K={fine}", m, 10, (p * b + b_s) / (10 * BATCH))

    print_table(
        "Mixer overhead (extra time per training token, relative to a training step)",
        ["mixer", "T", "overhead", "probe floor", "overhead/floor", "peak extra MiB"],
        rows,
    )

    # End to end: whole Lightning fits, time in training steps per token, interleaved.
    data = synthetic(16)
    fits = {"uniform": [], "dga": []}
    for _ in range(2 if args.quick else args.repeats):
        for name in fits:
            # Timed steps 5..44 hold exactly 4 updates (at 10, 20, 30, 40): 1 per 10 steps.
            fits[name].append(fit_tokens_per_second(data, WARMUP + 40, name, update_every=10))
    end_to_end = median(fits["uniform"]) / median(fits["dga"]) - 1
    floor = (16 * b + b_s) / (10 * BATCH)
    print(
        f"end to end (Lightning fit, k=16, T=10, backward): overhead {end_to_end:.3f}, "
        f"floor {floor:.3f}, ratio {end_to_end / floor:.3f}"
    )
    path = write_results(
        # A smoke check's small grid never replaces the full results the README quotes.
        "mixer_overhead_quick" if args.quick else "mixer_overhead",
        {
            "settings": {
                "model": "tiny",
                "batch": BATCH,
                "context": CONTEXT,
                "probe_batch": b,
                "specialist_batch": b_s,
                "repeats": args.repeats,
                "quick": args.quick,
            },
            "results": records,
            "end_to_end": {
                "tokens_per_s": fits,
                "overhead": end_to_end,
                "probe_floor": floor,
                "overhead_over_floor": end_to_end / floor,
            },
        },
    )
    print(f"written: {path}")


if __name__ == "__main__":
    main()
