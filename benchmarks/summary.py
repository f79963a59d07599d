"""The README's performance tables, rendered from benchmarks/results/*.json (so the two agree).

python -m benchmarks.summary
"""

from __future__ import annotations

import json

from benchmarks.common import RESULTS_DIR


def _load(name: str) -> dict | None:
    path = RESULTS_DIR / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _fmt(value, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}g}"


def main() -> None:
    if throughput := _load("throughput"):
        machine = throughput["machine"]
        print(
            f"Machine: {machine['cpu']}, {machine['cores']} cores, torch {machine['torch']}, "
            f"{machine['torch_threads']} threads.\n"
        )
        print("| model | loop | tokens/s (median) | ms/step | MFU vs measured fp32 matmul peak |")
        print("|---|---|---:|---:|---:|")
        for size, r in throughput["sizes"].items():
            for name in ("plain", "harness"):
                print(
                    f"| {size} | {name} | {r['median_tokens_per_s'][name]:,.0f} | "
                    f"{r['ms_per_step'][name]:.2f} | {r['mfu'][name]:.1%} |"
                )
        tiny = throughput["sizes"]["tiny"]
        low, _, high = tiny["ratio_per_round"]["quartiles"]
        print(
            f"\nharness / plain at tiny = **{throughput['harness_over_plain']:.3f}** (target >= "
            f"0.97; median of {tiny['paired_difference_ms_per_step']['rounds']} rounds' ratios, "
            f"quartiles {low:.3f} and {high:.3f}); fixed cost per step at the near-zero model = "
            f"**{throughput['fixed_cost_ms_per_step']:.2f} ms** (target <= 1; median of the rounds' "
            "differences)"
        )
        if floor := throughput.get("lightning_floor"):
            paired = throughput["sizes"]["near_zero"]["paired_difference_ms_per_step"]
            print(
                f"(mean ± standard error {paired['mean']:.2f} ± {paired['standard_error']:.2f} ms "
                f"over {paired['rounds']} rounds). Of it, Lightning's own "
                f"loop with the harness's callbacks and logging, around a 4-parameter model: "
                f"**{floor['cost_ms_per_step']:.2f} ms** per step "
                f"({floor['median_ms_per_step']['harness']:.2f} against "
                f"{floor['median_ms_per_step']['plain']:.2f} ms in a plain loop)."
            )
        print("\n| run | harness / plain at tiny | fixed cost, ms per step |")
        print("|---|---:|---:|")
        for run in throughput["recent_runs"]:
            print(
                f"| {run['date']} | {run['harness_over_plain']:.3f} | "
                f"{run['fixed_cost_ms_per_step']:.2f} |"
            )
        print()
        if options := throughput.get("options_at_tiny"):
            print("| option (tiny, harness) | tokens/s (median) | speed-up over fp32 |")
            print("|---|---:|---:|")
            for name, tokens in options["median_tokens_per_s"].items():
                print(f"| {name} | {tokens:,.0f} | {options['speedup'][name]:.2f}x |")
            print()
        redraw, rate = throughput["progress_bar_redraw_ms"], throughput["redraws_per_second"]
        print(
            f"Progress bar in a terminal: one redraw takes {redraw:.2f} ms, {redraw * rate / 10:.1f} % "
            f"of a core at the harness's {rate} redraws/s ({redraw * 10:.1f} % at Lightning's default "
            "100/s).\n"
        )
    if overhead := _load("mixer_overhead"):
        print(
            "| mixer | T | overhead per training token | probe floor | overhead / floor | peak extra MiB |"
        )
        print("|---|---:|---:|---:|---:|---:|")
        for r in overhead["results"]:
            print(
                f"| {r['mixer']} | {r.get('update_every', '-')} | {_fmt(r['overhead'])} | "
                f"{_fmt(r.get('probe_floor'))} | {_fmt(r.get('overhead_over_floor'))} | "
                f"{_fmt(r.get('peak_extra_mb'), 2)} |"
            )
        e = overhead["end_to_end"]
        print(
            f"\nEnd to end (Lightning fits, dga k=16, T=10): overhead {e['overhead']:.3f}, "
            f"floor {e['probe_floor']:.3f}, ratio **{e['overhead_over_floor']:.3f}** (target <= 1.1)\n"
        )
    if prepare := _load("prepare"):
        c = prepare["corpus"]
        print(f"Demo corpus: {c['chunks']:,} chunks, {c['megabytes']:.1f} MB.\n")
        print("| stage | median |")
        print("|---|---:|")
        for name, rate in prepare["embedding_chunks_per_s"].items():
            print(f"| embedding, {name} | {rate:,.1f} chunks/s |")
        for name, ari in prepare.get("agreement_with_minilm_ari", {}).items():
            print(f"| k = 16 domains of {name} vs MiniLM (whole chunks) | ARI {ari:.3f} |")
        for name, seconds in prepare["kmeans_seconds"].items():
            print(f"| k-means {name} | {seconds:.2f} s |")
        t = prepare["tokenizer"]
        print(f"| BPE training | {t['train_mb_per_s']:.2f} MB/s |")
        print(f"| tokenization | {t['encode_mb_per_s']:.2f} MB/s |")
    if sweeps := _load("sweep_parallelism"):
        print("\n| sweep (runs x tokens) | sequential runs/hour | parallel runs/hour | ratio |")
        print("|---|---:|---:|---:|")
        for r in sweeps["lengths"].values():
            s, per_hour = r["settings"], r["runs_per_hour"]
            print(
                f"| {s['runs']} x {s['tokens']:,} | {per_hour['sequential']:.0f} | "
                f"{per_hour['parallel']:.0f} | {r['parallel_over_sequential']:.2f} |"
            )
        print()
    for name in ("ddp_scaling", "ddp_scaling_gpu"):
        if ddp := _load(name):
            s, rates = ddp["settings"], ddp["median_tokens_per_s"]
            print(
                f"DDP ({name}): one process {rates['one']:,.0f} tokens/s, {s['processes']} "
                f"processes {rates['ddp']:,.0f}: **{ddp['ddp_over_one']:.2f}x** (efficiency per "
                f"process {ddp['efficiency_per_process']:.2f}).\n"
            )
    if scale := _load("prepare_scale"):  # `make bench-scale`
        print(f"\nStreaming preparation, k = {scale['settings']['domains']} (make bench-scale):\n")
        print("| run | documents | chunks | workers | seconds | documents/s | peak RSS MB |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        for name, r in scale["runs"].items():
            print(
                f"| {name} | {r['documents']:,} | {r['chunks']:,} | {r['workers']} | "
                f"{r['seconds']:.0f} | {r['documents_per_s']:,.0f} | {r['peak_rss_mb']:,.0f} |"
            )
        hours = ", ".join(
            f"{n} workers {h} h" for n, h in scale["extrapolated_hours_1e8_documents"].items()
        )
        print(
            f"\npeak RSS at 1M / at 100k documents = **{scale['peak_rss_ratio']:.2f}** (target "
            f"<= {scale['targets']['peak_rss_ratio']}); speed-up from 1 to 2 workers = "
            f"**{scale['speedup_2_workers']:.2f}** (target >= {scale['targets']['speedup_2_workers']}"
            f"); 10^8 documents extrapolated: {hours}.\n"
        )


if __name__ == "__main__":
    main()
