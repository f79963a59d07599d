"""Training throughput of the harness against a minimal plain-PyTorch loop doing the same work,
and the harness's fixed cost per step.

Same model, batch (16 sequences of 128 tokens), data (synthetic domains, drawn by the same
sampler), optimizer and schedule (the LightningModule's own), gradient clipping. The harness runs
as users run it (Lightning loop, per-token losses through the mixer, logging to CSV every 10
steps, the rich progress bar, the checkpoint and preemption callbacks) minus validation and the
checkpoints' writing. Steady state only: the first steps are not timed.

Two model sizes: the tiny GPT (4 layers, d=128), where the ratio harness / plain is what a CPU
user sees, and a near-zero one (1 layer, d=32), whose own step is so short that harness ms/step -
plain ms/step exposes the harness's fixed cost per step: what remains of it on a GPU, where every
model's step is short. Each pair runs 4 x --repeats interleaved rounds (plain and harness back
to back, the order reversed every other round), since on this shared machine a round's speed
varies by up to a third: the ratio is the median over rounds of each round's harness / plain,
and the fixed cost the median of the rounds' differences in ms/step (also given as their mean
with its standard error, and as the difference of the medians). Each run's headline figures are kept in the results file beside the last runs' (the
targets are judged over consecutive runs). Last, the same Trainer set-up around a 4-parameter module
against the same plain loop: Lightning's own per-step cost, part of the fixed cost that no change
inside the harness's step can remove.

    python -m benchmarks.throughput [--steps 40] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import tempfile
import time

import numpy as np
import torch

from benchmarks.common import (
    RESULTS_DIR,
    interleaved,
    machine_info,
    median,
    peak_matmul_flops,
    print_table,
    write_results,
)
from benchmarks.harness_loop import (
    FLOOR_STEPS,
    WARMUP,
    SteadyStateTimer,
    floor_ms_per_step,
    harness_trainer,
    redraw_ms,
)
from domains.sampler import MixtureSampler
from domains.synthetic import SyntheticDataConfig, generate
from experiments.progress import REDRAWS_PER_SECOND
from experiments.quiet import quiet_lightning
from mixers import MIXERS, build_mixer
from models.gpt import GPTConfig, sequence_loss
from models.lm import MixtureLM
from models.train_config import TrainConfig

BATCH, CONTEXT = 16, 128
# Model sizes (GPTConfig fields) and the steps timed at each: the near-zero model's steps are
# short, so more of them.
SIZES = {
    "tiny": ({"n_layer": 4, "n_head": 4, "d_model": 128}, 1),
    "near_zero": ({"n_layer": 1, "n_head": 1, "d_model": 32}, 5),
}
# Rounds per --repeats at each size: a round's speed varies by up to a third on this shared
# machine, and the ratio and the fixed cost compare two such timings.
ROUNDS_PER_REPEAT = 4
RECENT_RUNS = 5  # headline figures kept in the results file, this run's last


def make_module(
    data,
    steps: int,
    mixer_name: str = "uniform",
    size: str = "tiny",
    compile: bool = False,
    **mixer_options,
) -> MixtureLM:
    torch.manual_seed(0)
    model_cfg = GPTConfig(vocab_size=data.vocab_size, context_length=CONTEXT, **SIZES[size][0])
    train_cfg = TrainConfig(
        batch_size=BATCH, eval_every=10**9, checkpoint_every=10**9, compile=compile
    )
    mixer = build_mixer(MIXERS[mixer_name].config(**mixer_options), data.mixer_view())
    return MixtureLM(model_cfg, train_cfg, data, mixer, 0, steps)


def plain_loop(data, steps: int, size: str = "tiny") -> float:
    """Tokens/s of a bare loop over the same model, optimizer, schedule and sampler."""
    lm = make_module(data, steps, size=size)
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


def fit_tokens_per_second(
    data,
    steps: int,
    mixer_name: str = "uniform",
    size: str = "tiny",
    precision: str = "32-true",
    compile: bool = False,
    **mixer_options,
) -> float:
    """Tokens/s of the LightningModule with the given mixer under a Lightning Trainer with the
    callbacks experiments/train.py gives it (steady state: a compilation happens before)."""
    timer = SteadyStateTimer()
    with tempfile.TemporaryDirectory() as log_dir:
        trainer = harness_trainer(log_dir, steps, timer, precision)
        trainer.fit(make_module(data, steps, mixer_name, size, compile, **mixer_options))
    return (steps - WARMUP) * BATCH * CONTEXT / timer.seconds


def ms_per_step(tokens_per_s: float) -> float:
    return 1000 * BATCH * CONTEXT / tokens_per_s


def recent_runs(headline: dict) -> list[dict]:
    """This run's headline figures after those of the last runs that wrote the results file."""
    path = RESULTS_DIR / "throughput.json"
    earlier = json.loads(path.read_text()).get("recent_runs", []) if path.exists() else []
    return [*earlier, headline][-RECENT_RUNS:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    quiet_lightning()

    data = generate(SyntheticDataConfig(sequences_per_domain=128), seq_len=CONTEXT)
    peak = peak_matmul_flops()
    sizes, rows = {}, []
    for size, (_, more) in SIZES.items():
        steps = args.steps * more
        rounds = args.repeats * ROUNDS_PER_REPEAT
        samples = interleaved(
            {
                "plain": lambda steps=steps, size=size: plain_loop(data, steps, size),
                "harness": lambda steps=steps, size=size: fit_tokens_per_second(
                    data, steps, size=size
                ),
            },
            rounds,
        )
        flops_per_token = make_module(data, steps, size=size).model.flops_per_token()
        plain, ours = median(samples["plain"]), median(samples["harness"])
        pairs = list(zip(samples["harness"], samples["plain"], strict=True))
        differences = [ms_per_step(h) - ms_per_step(p) for h, p in pairs]
        ratios = [h / p for h, p in pairs]
        sizes[size] = {
            "model": SIZES[size][0],
            "steps": steps,
            "flops_per_token": flops_per_token,
            "tokens_per_s": samples,
            "median_tokens_per_s": {"plain": plain, "harness": ours},
            "ms_per_step": {"plain": ms_per_step(plain), "harness": ms_per_step(ours)},
            # Like the ratio, the median of the rounds' own differences.
            "fixed_cost_ms_per_step": median(differences),
            "paired_difference_ms_per_step": {
                "difference_of_medians": ms_per_step(ours) - ms_per_step(plain),
                "mean": statistics.mean(differences),
                "standard_error": statistics.stdev(differences) / math.sqrt(len(differences)),
                "rounds": len(differences),
            },
            # Harness / plain of each round's pair (the two ran back to back), median over
            # rounds: robust to the machine's drift between rounds, which the ratio of the two
            # medians is not.
            "harness_over_plain": median(ratios),
            "ratio_per_round": {
                "quartiles": statistics.quantiles(ratios, n=4),
                "ratio_of_medians": ours / plain,
            },
            "mfu": {
                "plain": plain * flops_per_token / peak,
                "harness": ours * flops_per_token / peak,
            },
        }
        rows += [
            [size, name, median(values), ms_per_step(median(values))]
            for name, values in samples.items()
        ]
    floor = interleaved(
        {"plain": lambda: floor_ms_per_step(False), "harness": lambda: floor_ms_per_step(True)},
        args.repeats,
    )
    lightning_floor = {
        "steps": FLOOR_STEPS,
        "ms_per_step": floor,
        "median_ms_per_step": {name: median(v) for name, v in floor.items()},
        "cost_ms_per_step": median(floor["harness"]) - median(floor["plain"]),
    }
    # The speed options, at tiny: torch.compile of the training step's model, bf16 autocast.
    options = interleaved(
        {
            "fp32": lambda: fit_tokens_per_second(data, args.steps),
            "train.compile=true": lambda: fit_tokens_per_second(data, args.steps, compile=True),
            "trainer.precision=bf16-mixed": lambda: fit_tokens_per_second(
                data, args.steps, precision="bf16-mixed"
            ),
        },
        args.repeats,
    )
    speedups = {name: median(v) / median(options["fp32"]) for name, v in options.items()}
    rows += [
        ["tiny", f"harness, {name}", median(v), ms_per_step(median(v))]
        for name, v in options.items()
        if name != "fp32"
    ]
    print_table("Training throughput (median)", ["model", "loop", "tokens/s", "ms/step"], rows)
    for name, speedup in speedups.items():
        print(f"{name}: {speedup:.2f}x the fp32 harness")
    tiny, near_zero = sizes["tiny"], sizes["near_zero"]
    redraw = redraw_ms()
    print(f"harness / plain at tiny = {tiny['harness_over_plain']:.3f}  (target >= 0.97)")
    print(
        f"progress bar: one redraw {redraw:.2f} ms, {redraw * REDRAWS_PER_SECOND / 10:.1f} % of a "
        f"core at {REDRAWS_PER_SECOND}/s ({redraw * 100 / 10:.1f} % at Lightning's default 100/s)"
    )
    paired = near_zero["paired_difference_ms_per_step"]
    print(
        f"fixed cost at near-zero = {near_zero['fixed_cost_ms_per_step']:.2f} ms/step  "
        f"(target <= 1); per round {paired['mean']:.2f} +- {paired['standard_error']:.2f} (se) "
        f"over {paired['rounds']} rounds; Lightning's own loop "
        f"{lightning_floor['cost_ms_per_step']:.2f} ms/step of it"
    )
    headline = {
        "date": machine_info()["date"],
        "cpu": machine_info()["cpu"],
        "harness_over_plain": tiny["harness_over_plain"],
        "fixed_cost_ms_per_step": near_zero["fixed_cost_ms_per_step"],
    }
    path = write_results(
        "throughput",
        {
            "settings": {
                "batch": BATCH,
                "context": CONTEXT,
                "warmup_steps": WARMUP,
                "repeats": args.repeats,
            },
            "matmul_peak_flops": peak,
            "sizes": sizes,
            "lightning_floor": lightning_floor,
            "options_at_tiny": {
                "tokens_per_s": options,
                "median_tokens_per_s": {name: median(v) for name, v in options.items()},
                "speedup": speedups,
            },
            "progress_bar_redraw_ms": redraw,
            "redraws_per_second": REDRAWS_PER_SECOND,
            # The headline figures (README, benchmarks.summary).
            "harness_over_plain": tiny["harness_over_plain"],
            "fixed_cost_ms_per_step": near_zero["fixed_cost_ms_per_step"],
            "recent_runs": recent_runs(headline),
        },
    )
    print(f"written: {path}")


if __name__ == "__main__":
    main()
