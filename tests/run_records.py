"""Hand-made run directories, as experiments.train writes them, for the analysis tests."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import numpy as np

from experiments.config import mixer_label

FLOPS_PER_TOKEN = 1e6


def write_run(
    root: Path,
    name: str,
    *,
    mixer: str = "uniform",
    seed: int = 0,
    target: float | None = 3.0,
    generic: float = 4.0,
    tokens: int = 1000,
    num_domains: int = 2,
    tokens_per_domain: int | None = None,
    status: str = "completed",
    probe_tokens: int = 0,
    train_seconds: float = 10.0,
    mixer_seconds: float = 0.0,
    mixer_flops: float = 0.0,
    domain_losses: dict | None = None,
    domain_labels: dict | None = None,
    legacy: bool = False,
    epochs: dict | None = None,
    weights: dict | None = None,
    mixer_options: dict | None = None,
    lr: float = 3e-3,
    task_metrics: dict | None = None,
) -> Path:
    """A run directory whose results.json looks like one experiments.train writes: training
    costs FLOPS_PER_TOKEN per token; the held-out domain losses (`domain_losses`, by default
    spread evenly from generic - 0.1 to generic + 0.1, so the last domain is the worst) average
    to `generic`. A `legacy` run has none of the keys added later: mixer and training FLOPs,
    mixer seconds, per-domain losses and domain labels."""
    run_dir = root / name
    run_dir.mkdir(parents=True)
    domains = [f"domain_{i:02d}" for i in range(num_domains)]
    weights = weights or {d: 1 / num_domains for d in domains}
    if domain_losses is None:
        spread = np.linspace(-0.1, 0.1, num_domains) if num_domains > 1 else [0.0]
        domain_losses = {d: generic + float(x) for d, x in zip(domains, spread, strict=True)}
    domain_metrics = {} if legacy else {f"val/domain/{d}": v for d, v in domain_losses.items()}
    record = {
        "schema_version": 1,
        "status": status,
        "error": {"type": "RuntimeError", "message": "boom", "traceback": "..."}
        if status == "failed"
        else None,
        "run_dir": str(run_dir),
        "mixer": mixer,
        "seed": seed,
        "config": {
            "seed": seed,
            "name": "default",
            "data": {
                "source": "synthetic",
                "num_domains": num_domains,
                "tokens_per_domain": tokens_per_domain,
                "seed": 0,
                "target_domains": [0, 1],
            },
            "model": {"name": "tiny", "n_layer": 4},
            "mixer": {"name": mixer, **(mixer_options or {})},
            "train": {"tokens": tokens, "lr": lr, "eval_every": 50, "resume": "auto"},
            "logger": {"wandb": False},
            "paths": {"cache_dir": "~/.cache/mixbench"},
        },
    }
    if not legacy:  # a run labels its mixer variant (a legacy record goes by the name)
        record["mixer_label"] = mixer_label({"name": mixer, **(mixer_options or {})})
    if status != "running":
        record |= {
            "wall_clock_s": train_seconds + 5,
            "steps": 10,
            "tokens_trained": tokens,
            "probe_tokens": probe_tokens,
            "train_seconds": train_seconds,
            "metrics_initial": {"val/target_loss": 5.5, "val/generic_loss": 5.5},
            "metrics_final": {}
            if target is None
            else {
                "val/target_loss": target,
                "val/generic_loss": generic,
                **domain_metrics,
                **(task_metrics or {}),
            },
            "final_weights": weights,
            "time_averaged_weights": weights,
            "domain_epochs": epochs or dict.fromkeys(domains, 0.5),
            "domain_tokens": dict.fromkeys(domains, tokens_per_domain or 4096),
            "files": {"trajectory": "weights.csv", "metrics": "metrics.csv"},
        }
        if not legacy:
            record |= {
                "mixer_flops": mixer_flops,
                "train_flops": tokens * FLOPS_PER_TOKEN,
                "mixer_seconds": mixer_seconds,
            }
            if domain_labels is not None:
                record["domain_labels"] = domain_labels
    (run_dir / "results.json").write_text(json.dumps(record))
    return run_dir


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
