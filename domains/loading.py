"""Builds the `DomainData` a run trains on from its data config."""

from __future__ import annotations

from pathlib import Path

from domains.data import DataConfig, DomainData
from domains.preparation import load_text_data
from domains.schemas import DATA_SCHEMAS, TextDataConfig
from domains.synthetic import generate


def load_data(cfg: DataConfig, seq_len: int, cache_dir: Path) -> DomainData:
    """The configured domains, with `tokens_per_domain` applied (so one preparation serves a whole
    sweep over the cap). Prepared artifacts of text sources live under ``cache_dir``."""
    if cfg.source == "synthetic":
        data = generate(cfg, seq_len)
    elif DATA_SCHEMAS.get(cfg.source) is TextDataConfig:
        data = load_text_data(cfg, seq_len, cache_dir)  # prepares the artifacts when missing
    else:
        raise ValueError(f"unknown data source {cfg.source!r}; available: {list(DATA_SCHEMAS)}")
    if data.seq_len != seq_len:
        raise ValueError(f"data was prepared for context {data.seq_len}, the model uses {seq_len}")
    return data.capped(cfg.tokens_per_domain)
