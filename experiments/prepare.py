"""Prepare real-text domains: `python -m experiments.prepare data=demo data.num_domains=16`.

Runs the pipeline of domains/text.py (or, with `data.streaming.enabled=true`, its streaming form
on datatrove, domains/streaming.py, locally or on SLURM) on `data` at the model's context length
(unless that exact preparation is already in the cache: `paths.cache_dir`), then prints what each
domain is (size,
distinctive words, where its chunks come from) and where the artifacts are. `experiments.train`
prepares automatically too; this is for doing it ahead of time and looking at the result.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.table import Table

from domains.preparation import prepare
from domains.store import read_manifest
from experiments.cli import reported_errors, run_app
from experiments.config import check_config, register_configs
from experiments.progress import readable_progress

log = logging.getLogger(__name__)
register_configs()


LOG_WIDTH = 200
# Domains shown in the summary table (the paper's counts run to thousands; the manifest has all).
MAX_ROWS = 64
MAX_MERGES_SHOWN = 10


def summary_table(manifest: dict) -> Table:
    """One row per domain (the first MAX_ROWS): size, specialist `train` sequences nearest to
    it, and what it is."""
    hierarchical = manifest["domains"][0]["coarse"] is not None
    k = len(manifest["domains"])
    title = f"{k} domains" + (
        f" (the first {MAX_ROWS}: all in manifest.json)" if k > MAX_ROWS else ""
    )
    table = Table(title=title, show_lines=False)
    columns = ["domain", *(["coarse"] if hierarchical else []), "chunks", "train tok"]
    columns += ["held-out tok", "specialist", "top origins", "top words"]
    for column in columns:
        table.add_column(column, overflow="fold")
    nearest = manifest["specialist"]["train_sequences_per_domain"]
    for domain, specialist in list(zip(manifest["domains"], nearest, strict=True))[:MAX_ROWS]:
        origins = ", ".join(f"{o} {share:.0%}" for o, share in domain["top_origins"])
        table.add_row(
            domain["name"],
            *([str(domain["coarse"])] if hierarchical else []),
            str(domain["chunks"]),
            f"{domain['train_tokens']:,}",
            f"{domain['heldout_tokens']:,}",
            str(specialist),
            origins,
            " ".join(domain["top_words"]),
        )
    return table


def print_summary(folder: Path, console: Console | None = None) -> None:
    # In a log file (not a terminal) rich would wrap the table at 80 columns.
    console = console or Console(width=None if sys.stdout.isatty() else LOG_WIDTH)
    manifest = read_manifest(folder)
    generic, specialist = manifest["generic"], manifest["specialist"]
    console.print(summary_table(manifest))
    console.print(
        f"generic: {generic['documents']:,} documents -> {generic['chunks']:,} chunks of <= "
        f"{generic['chunk_chars']} characters ({generic['removed_as_specialist']} documents "
        f"removed as specialist); vocabulary {manifest['vocab_size']}, context {manifest['seq_len']}"
    )
    console.print(
        f"specialist: {specialist['documents']} documents -> train {specialist['train_tokens']:,} "
        f"tokens, eval {specialist['eval_tokens']:,} tokens"
    )
    merges = manifest["merges"]
    for merge in merges[:MAX_MERGES_SHOWN]:
        console.print(f"small cluster: {merge}")
    if len(merges) > MAX_MERGES_SHOWN:
        console.print(f"... and {len(merges) - MAX_MERGES_SHOWN} more small clusters merged")
    timings = ", ".join(f"{stage} {s:.1f} s" for stage, s in manifest["timings_s"].items())
    console.print(f"preparation time: {timings}")
    console.print(f"artifacts: {folder}")


def run(cfg: DictConfig, console: Console | None = None) -> Path | None:
    """Prepares `cfg.data` (a composed config) and prints the summary; returns the artifacts."""
    check_config(cfg)  # the whole config: a mistake in it should not cost a preparation first
    data = OmegaConf.to_object(cfg.data)
    if data.source == "synthetic":
        print("data=synthetic is generated when training starts: there is nothing to prepare")
        return None
    folder = prepare(data, cfg.model.context_length, Path(cfg.paths.cache_dir).expanduser())
    if folder is None:
        print(
            "submitted to SLURM (data.streaming.executor=slurm): run this again to see the domains"
        )
        return None
    print_summary(folder, console)
    return folder


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> None:
    with reported_errors(), readable_progress():
        run(cfg)


if __name__ == "__main__":
    run_app(main)
