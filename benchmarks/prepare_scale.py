"""Streaming preparation at scale (domains/streaming.py, `data.streaming.enabled=true`).

A corpus of --documents documents (default 1,000,000) built from the demo sources (passages of
their documents, each with two words swapped and a number appended, so no two are the same
text), in 64 jsonl files; the specialist set is BBC tech news, left out of that corpus. It is
prepared at k = 64 x 64 domains with 1 and then 2 workers, and the first --small documents
with 2 workers, each preparation as users run it (`python -m experiments.prepare ...`) in its
own process tree, whose processes' memory is sampled every 0.2 s. Recorded: peak RSS of every
process, documents/s, each stage's time, the speed-up from 1 to 2 workers, and the wall time
extrapolated to 10^8 documents on N workers from the measured rates.

Embedding: hashed n-grams (`data.embedding.model=hashed-ngrams`), the cheap CPU option
(benchmarks/prepare.py); k-means on 100,000 embeddings at both sizes (`--kmeans-sample`, below
the small corpus's chunk count), so that the memory compared is what grows with the corpus. The
corpus is written under the cache, never committed.

    python -m benchmarks.prepare_scale [--documents 1000000] [--small 100000]   (make bench-scale)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil

from benchmarks.common import print_table, write_results
from domains.schemas import TextDataConfig
from domains.sources import read_documents
from domains.store import read_manifest

FILES, TASKS, CONTEXT = 64, 8, 128
PARALLEL_STAGES = ("EncodeStage", "AssignStage", "CopyStage")
SERIAL_STAGES = ("PlanStage", "FinishStage")  # one task, work growing with the corpus
TARGETS = {"peak_rss_ratio": 1.2, "speedup_2_workers": 1.7}


def build_corpus(folder: Path, documents: int, cache_dir: Path) -> None:
    """`documents` perturbed passages of the demo corpus (BBC tech aside: the specialist set)."""
    rng = np.random.default_rng(0)
    passages, specialist = [], []
    for doc in read_documents(TextDataConfig(), cache_dir):
        if doc.fields.get("part") == "bbc" and doc.fields.get("topic") == "tech":
            specialist.append({"id": doc.id, "text": doc.text})
            continue
        passages += [p for p in doc.text.split("\n") if len(p) > 80]
    folder.mkdir(parents=True)
    (folder / "specialist.jsonl").write_text("".join(json.dumps(r) + "\n" for r in specialist))
    generic = folder / "generic"
    generic.mkdir()
    for f in range(FILES):
        with open(generic / f"part{f:02d}.jsonl", "w") as out:
            for i in range(f * documents // FILES, (f + 1) * documents // FILES):
                words = passages[rng.integers(len(passages))].split()
                a, b = rng.integers(len(words), size=2)
                words[a], words[b] = words[b], words[a]
                out.write(json.dumps({"id": str(i), "text": " ".join(words) + f" {i}"}) + "\n")


def prepare_command(
    corpus: Path, cache_dir: Path, workers: int, files: int, coarse: int, fine: int, sample: int
) -> list[str]:
    """The preparation as a user runs it; its Hydra log goes to the cache folder."""
    paths = [str(corpus / "generic" / f"part{f:02d}.jsonl") for f in range(files)]
    return [
        sys.executable,
        "-m",
        "experiments.prepare",
        "data=files",
        f"data.paths=[{','.join(paths)}]",
        "data.id_field=id",
        "data.specialist.source=files",
        f"data.specialist.paths=[{corpus / 'specialist.jsonl'}]",
        "data.specialist.id_field=id",
        f"data.num_domains={coarse * fine}",
        f"data.coarse_domains={coarse}",
        "data.embedding.model=hashed-ngrams",
        "data.streaming.enabled=true",
        f"data.streaming.tasks={TASKS}",
        f"data.streaming.workers={workers}",
        f"data.streaming.kmeans_sample={sample}",
        f"model.context_length={CONTEXT}",
        f"paths.cache_dir={cache_dir}",
        f"hydra.run.dir={cache_dir}",
        "hydra.output_subdir=null",
    ]


def measured_run(command: list[str], log: Path) -> dict:
    """Runs `command`, sampling the memory of its process tree; wall time and peak RSS (MB) of
    every process (the driver, the datatrove workers)."""
    # One thread per worker for torch and the tokenizer: a worker is a core.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "RAYON_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
    peaks: dict[int, float] = {}
    started = time.perf_counter()
    with open(log, "w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
        root = psutil.Process(process.pid)
        while process.poll() is None:
            try:
                for p in [root, *root.children(recursive=True)]:
                    peaks[p.pid] = max(peaks.get(p.pid, 0.0), p.memory_info().rss / 2**20)
            except psutil.NoSuchProcess:
                pass
            time.sleep(0.2)
    seconds = time.perf_counter() - started
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:3])} failed; see {log}")
    return {
        "seconds": round(seconds, 1),
        "peak_rss_mb": round(max(peaks.values()), 1),
        "peak_rss_mb_per_process": sorted((round(v, 1) for v in peaks.values()), reverse=True),
    }


def artifact(cache_dir: Path) -> Path:
    (folder,) = [p for p in (cache_dir / "domains").iterdir() if not p.name.startswith(".")]
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--documents", type=int, default=1_000_000)
    parser.add_argument("--small", type=int, default=100_000)
    parser.add_argument("--coarse", type=int, default=64)
    parser.add_argument("--fine", type=int, default=64, help="fine domains per coarse cluster")
    # Below the small corpus's chunks, so that both sizes fit k-means on the same number of
    # embeddings: what is compared is then the memory that grows with the corpus.
    parser.add_argument("--kmeans-sample", type=int, default=100_000)
    args = parser.parse_args()
    cache = Path(os.environ.get("MIXBENCH_CACHE", "~/.cache/mixbench")).expanduser()
    root = cache / "scale"
    shutil.rmtree(root, ignore_errors=True)
    corpus = root / "corpus"
    build_corpus(corpus, args.documents, cache)
    small_files = max(1, FILES * args.small // args.documents)
    runs = {
        "small_2_workers": (2, small_files, args.documents * small_files // FILES),
        "large_1_worker": (1, FILES, args.documents),
        "large_2_workers": (2, FILES, args.documents),
    }
    results = {}
    for name, (workers, files, documents) in runs.items():
        cache_dir = root / name
        print(f"{name}: {documents:,} documents, {workers} worker(s)", flush=True)
        run = measured_run(
            prepare_command(
                corpus, cache_dir, workers, files, args.coarse, args.fine, args.kmeans_sample
            ),
            root / f"{name}.log",
        )
        manifest = read_manifest(artifact(cache_dir))
        results[name] = {
            "documents": documents,
            "workers": workers,
            "chunks": manifest["generic"]["chunks"],
            "documents_per_s": round(documents / run["seconds"], 1),
            "stage_seconds": manifest["timings_s"],
            **run,
        }
        if name != "large_2_workers":  # kept: the training run in the README uses it
            shutil.rmtree(cache_dir)

    one, two = results["large_1_worker"], results["large_2_workers"]
    parallel = sum(one["stage_seconds"][s] for s in PARALLEL_STAGES)
    per_worker_rate = one["documents"] / parallel  # documents/s of one worker, parallel stages
    serial = sum(one["stage_seconds"][s] for s in SERIAL_STAGES)
    serial_rate = one["documents"] / serial  # documents/s of the one-task stages
    fixed = one["stage_seconds"]["SampleStage"] + one["stage_seconds"]["ClusterStage"]
    summary = {
        "peak_rss_ratio": round(two["peak_rss_mb"] / results["small_2_workers"]["peak_rss_mb"], 3),
        "speedup_2_workers": round(one["seconds"] / two["seconds"], 3),
        "extrapolated_hours_1e8_documents": {
            str(n): round((fixed + 1e8 / (n * per_worker_rate) + 1e8 / serial_rate) / 3600, 2)
            for n in (16, 64, 256)
        },
    }
    summary["targets"] = TARGETS
    summary["targets_met"] = (
        summary["peak_rss_ratio"] <= TARGETS["peak_rss_ratio"]
        and summary["speedup_2_workers"] >= TARGETS["speedup_2_workers"]
    )
    print_table(
        f"streaming preparation (k = {args.coarse} x {args.fine}, hashed n-grams)",
        ["run", "documents", "workers", "seconds", "documents/s", "peak RSS MB"],
        [
            [n, r["documents"], r["workers"], r["seconds"], r["documents_per_s"], r["peak_rss_mb"]]
            for n, r in results.items()
        ],
    )
    print(json.dumps(summary, indent=2))
    path = write_results(
        "prepare_scale",
        {
            "settings": {
                "domains": f"{args.coarse} x {args.fine}",
                "tasks": TASKS,
                "context": CONTEXT,
                "embedding": "hashed-ngrams",
                "kmeans_sample": args.kmeans_sample,
                "extrapolation": "sample + cluster (fixed) + encode, assign and copy over N "
                "workers at the measured one-worker rate + plan and finish (one process) at "
                "their measured rate",
            },
            "runs": results,
            **summary,
        },
    )
    print(f"results: {path}")


if __name__ == "__main__":
    main()
