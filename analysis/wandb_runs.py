"""Runs from Weights & Biases, as rows of the same runs table as local run directories
(analysis/results.py): for a sweep whose run directories are elsewhere."""

from __future__ import annotations

import math
import os
import socket
import threading
from urllib.parse import urlparse

import pandas as pd

from analysis.results import run_row
from experiments.results import RunRecord
from models.metric_keys import PROBE_TOKENS, TRAIN_TOKENS


def _wandb_url() -> str:
    return os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")


def check_reachable(url: str, timeout: float = 3.0) -> None:
    """Raise ConnectionError, within `timeout` seconds, unless a TCP connection to the host of
    `url` opens (name resolution included, which a socket timeout alone does not bound)."""
    parsed = urlparse(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    outcome: list[BaseException | None] = []

    def connect() -> None:
        try:
            socket.create_connection((parsed.hostname, port), timeout=timeout).close()
            outcome.append(None)
        except OSError as error:
            outcome.append(error)

    thread = threading.Thread(target=connect, daemon=True)
    thread.start()
    thread.join(timeout)
    error = outcome[0] if outcome else TimeoutError(f"no answer within {timeout:g} s")
    if error is not None:
        raise ConnectionError(
            f"loading runs from W&B needs network access to {url} ({error}); this machine cannot "
            "reach it. Analyse the local run directories instead (they hold every result), or "
            "run this where W&B is reachable (offline runs upload with `wandb sync`)."
        )


_WANDB_STATUS = {"finished": "completed", "crashed": "failed", "failed": "failed"}


def wandb_record(config: dict, summary: dict, state: str) -> RunRecord:
    """A run's record from a W&B run's config, summary and state. Only what W&B holds is filled
    in: final metrics (logged as `final/<metric>`), the mixer's label, token counts and run
    time; per-domain epochs and time in training steps stay unknown."""
    final = {k.removeprefix("final/"): v for k, v in summary.items() if k.startswith("final/")}
    return RunRecord(
        status=_WANDB_STATUS.get(state, state),
        error=None if state != "crashed" else "crashed (see the W&B run logs)",
        mixer=(config.get("mixer") or {}).get("name", "?"),
        mixer_label=summary.get("mixer_label"),
        seed=config.get("seed"),
        config=config,
        metrics_final=final,
        tokens_trained=summary.get(TRAIN_TOKENS, math.nan),
        probe_tokens=summary.get(PROBE_TOKENS, math.nan),
        wall_clock_s=summary.get("_runtime", math.nan),
    )


def load_wandb_runs(
    project: str, entity: str | None = None, group: str | None = None, timeout: float = 3.0
) -> pd.DataFrame:
    """One row per run of a W&B project (optionally one group), through the public API; needs
    network access and a W&B login. Rows have `wandb_path` instead of a run directory."""
    check_reachable(_wandb_url(), timeout)
    import wandb

    api = wandb.Api(timeout=30)
    path = f"{entity}/{project}" if entity else project
    runs = api.runs(path, filters={"group": group} if group else None)
    rows = []
    for run in runs:
        row = run_row(wandb_record(dict(run.config), dict(run.summary), run.state), None)
        row["wandb_path"] = "/".join(run.path)
        rows.append(row)
    if not rows:
        raise LookupError(f"no runs in W&B project {path}" + (f", group {group}" if group else ""))
    return pd.DataFrame(rows)
