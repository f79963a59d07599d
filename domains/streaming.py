"""Streaming preparation of a large corpus (`data.streaming.enabled=true`), on datatrove.

The in-memory pipeline (domains/text.py) holds every chunk's text, embedding and tokens at once;
this one holds one batch per worker and the k-means sample, so its peak memory does not grow
with the corpus. It writes the same artifact (domains/store.py), so training is unchanged.

Why datatrove: it is the pipeline engine of LLM pretraining data; its executors run the same
steps as local processes or as SLURM job arrays chained by dependencies, record each finished
task (a re-run after a crash runs only the unfinished ones) and keep per-task logs and stats.
The stages, each a datatrove executor (`1` = one task, `N` = `data.streaming.tasks` tasks; 1-4
in domains/streaming_encode.py, 5-7 in domains/streaming_write.py):
1. sample (1): the specialist split (domains/steps.py, as in memory) and the tokenizer, trained
   on the first `tokenizer_sample` generic chunks;
2. encode (N): task r reads its contiguous block of the source (files, or a Hugging Face
   dataset's data files or rows: domains/sources.py, `read_part`), drops specialist
   content, chunks, and for every batch of `batch_chunks` chunks embeds and tokenizes them and
   appends them to its own files (embeddings as float16, tokens, one index row per chunk);
3. cluster (1): k-means (faiss, flat or two-level) on at most `kmeans_sample` embeddings taken
   at an even stride over the whole corpus;
4. assign (N): every chunk of task r to its domain, in batches, and the task's tokens and
   chunks per (split, domain);
5. plan (1): the domains too small over the whole corpus merged into neighbours, each domain's
   section in the generic shards, and where each task's chunks start in every section;
6. copy (N): task r's chunks into their sections (one write per run of a domain's chunks), and
   its rows of the index;
7. finish (1): the specialist shards, the index, the manifest.
Held-out documents are chosen by a seeded hash of their content (whole documents, as in
domains/text.py, but without its per-domain guarantees, which need every chunk in memory).
The artifact does not depend on the number of tasks: the blocks of files are contiguous, so
concatenating the tasks' outputs gives the corpus order.
"""

from __future__ import annotations

import logging
import shutil
import sys
import time
from pathlib import Path

import multiprocess
from datatrove.executor import LocalPipelineExecutor, SlurmPipelineExecutor

from domains.cache import build_once
from domains.store import read_manifest, write_manifest
from domains.streaming_encode import (
    AssignStage,
    ClusterStage,
    EncodeStage,
    SampleStage,
    Stage,
)
from domains.streaming_write import CopyStage, FinishStage, PlanStage

log = logging.getLogger(__name__)


def prepare_streaming(cfg, seq_len: int, cache_dir: Path, key: str, folder: Path) -> Path | None:
    """Builds the artifact `folder` with the stages above: here (`executor: local`, returns the
    folder) or as chained SLURM jobs (`slurm`: returns None at once; the last job renames its
    output into `folder`). Finished tasks of an interrupted preparation are not run again."""
    s = cfg.streaming
    work = folder.with_name(f".{folder.name}.work")
    stages = [
        (SampleStage(cfg, seq_len, cache_dir, work), 1),
        (EncodeStage(cfg, seq_len, cache_dir, work), s.tasks),
        (ClusterStage(cfg, seq_len, cache_dir, work), 1),
        (AssignStage(cfg, seq_len, cache_dir, work), s.tasks),
        (PlanStage(cfg, seq_len, cache_dir, work), 1),
        (CopyStage(cfg, seq_len, cache_dir, work), s.tasks),
    ]
    if s.executor == "slurm":
        stages.append((FinishStage(cfg, seq_len, cache_dir, work, key, final=folder), 1))
        last = None
        for stage, tasks in stages:
            last = _slurm(cfg, stage, tasks, work, last)
        last.run()  # submits the chain, each job depending on the previous one
        return None
    stages.append((FinishStage(cfg, seq_len, cache_dir, work, key), 1))
    _preload_workers()

    def build(out: Path) -> None:
        timings = {}
        for stage, tasks in stages:
            started = time.perf_counter()
            executor = LocalPipelineExecutor(
                [stage],
                tasks=tasks,
                workers=min(s.workers, tasks),
                logging_dir=str(work / "logs" / type(stage).__name__),
            )
            for attempt in range(s.retries + 1):
                try:
                    executor.run()
                    break
                except Exception as error:
                    if attempt == s.retries:
                        raise
                    log.warning("a %s task failed (%s); running it again", stage.name, error)
            timings[type(stage).__name__] = round(time.perf_counter() - started, 2)
        artifact = work / "artifact"
        write_manifest(artifact, {**read_manifest(artifact), "timings_s": timings})
        artifact.replace(out)  # out: build_once's empty folder, renamed into place after this

    folder, built = build_once(folder, build)
    if built:
        shutil.rmtree(work, ignore_errors=True)
    return folder


def _preload_workers() -> None:
    """datatrove's local workers start from a fork server, and each imports the main module
    again (`experiments.prepare`: torch, Lightning... about 10 s per worker and stage, measured).
    Imported once in the fork server, before it starts, they start in a fraction of a second.
    Without effect once the fork server runs (a second preparation in one process)."""
    main = getattr(sys.modules["__main__"], "__spec__", None)
    modules = [__name__, *([main.name] if main is not None else [])]
    multiprocess.get_context("forkserver").set_forkserver_preload(modules)


def _slurm(cfg, stage: Stage, tasks: int, work: Path, depends) -> SlurmPipelineExecutor:
    s = cfg.streaming
    name = type(stage).__name__
    return SlurmPipelineExecutor(
        [stage],
        tasks=tasks,
        time=s.slurm_time,
        partition=s.slurm_partition,
        workers=s.workers,
        job_name=f"mixbench-{name}",
        logging_dir=str(work / "logs" / name),
        depends=depends,
        cpus_per_task=2,
        mem_per_cpu_gb=4,
        venv_path=_venv(),
    )


def _venv() -> str | None:
    """The virtual environment's activate script, for the SLURM jobs to run in it."""
    activate = Path(sys.prefix) / "bin" / "activate"
    return str(activate) if activate.is_file() else None
