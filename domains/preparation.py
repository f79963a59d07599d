"""Prepared domains for a text config: the cached artifact, built when missing, in memory
(domains/text.py) or, for large corpora, streaming on datatrove (domains/streaming.py).

Artifacts live under `<cache_dir>/domains/`, in a folder named by a hash of everything that
affects them (config, context length, source fingerprints) except `tokens_per_domain`, which is
applied at load time, so a sweep over that cap reuses one preparation, and how a streaming
preparation runs (tasks, workers, executor), which does not change what it writes.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path

from domains.cache import build_once, stable_hash
from domains.data import DomainData
from domains.schemas import EXECUTION_FIELDS, TextDataConfig
from domains.sources import ORIGIN_FIELD, fingerprint
from domains.steps import FORMAT
from domains.store import load_domain_data
from domains.streaming import prepare_streaming
from domains.text import build_in_memory

log = logging.getLogger(__name__)


def load_text_data(cfg: TextDataConfig, seq_len: int, cache_dir: Path) -> DomainData:
    """The prepared domains (preparing them first when missing), without the cap applied."""
    folder = prepare(cfg, seq_len, cache_dir)
    if folder is None:
        raise RuntimeError(
            "the domains are being prepared by SLURM jobs (data.streaming.executor=slurm): "
            "run again once they have finished"
        )
    return load_domain_data(folder)


def prepare(cfg: TextDataConfig, seq_len: int, cache_dir: Path) -> Path | None:
    """The artifact folder for this config and context length, built if missing (None: its
    preparation was submitted to SLURM, data.streaming.executor=slurm)."""
    _check_config(cfg, seq_len)
    key = artifact_key(cfg, seq_len, cache_dir)
    folder = cache_dir / "domains" / f"{cfg.source}-k{cfg.num_domains}-L{seq_len}-{key}"
    if folder.is_dir():
        return folder
    log.info("Preparing %s domains into %s", cfg.source, folder)
    if cfg.streaming.enabled:
        return prepare_streaming(cfg, seq_len, cache_dir, key, folder)
    folder, _ = build_once(folder, lambda out: build_in_memory(cfg, seq_len, cache_dir, key, out))
    return folder


def artifact_key(cfg: TextDataConfig, seq_len: int, cache_dir: Path) -> str:
    config = asdict(cfg)
    del config["tokens_per_domain"]  # applied at load time
    for name in EXECUTION_FIELDS:  # how the preparation runs, not what it produces
        del config["streaming"][name]
    key = {
        "format": FORMAT,
        "seq_len": seq_len,
        "config": config,
        "generic": fingerprint(cfg, "data"),
        "specialist": fingerprint(cfg.specialist, "data.specialist"),
    }
    if cfg.source != "demo" and not cfg.streaming.enabled:
        # Domains described by their documents' `source` field or file (before: by the folder of
        # their ids), a change a cached preparation must not hide (embeddings and tokenizer are
        # cached apart: little is redone). The demo corpus's descriptions did not change, nor
        # did a streaming preparation's (it describes none).
        key["origins"] = ORIGIN_FIELD
    return stable_hash(key)


def _check_config(cfg: TextDataConfig, seq_len: int) -> None:
    spec = cfg.specialist
    problems = {
        "context_length must be at least 1": seq_len < 1,
        "heldout_fraction must be in (0, 1)": not 0 < cfg.heldout_fraction < 1,
        "chars_per_token must be positive": cfg.chars_per_token <= 0,
        "min_chunk_fraction must be in [0, 1)": not 0 <= cfg.min_chunk_fraction < 1,
        "specialist.train_chunks and eval_chunks must be >= 1": min(
            spec.train_chunks, spec.eval_chunks
        )
        < 1,
    }
    wrong = [problem for problem, failed in problems.items() if failed]
    if wrong:
        raise ValueError("bad data config: " + "; ".join(wrong))
