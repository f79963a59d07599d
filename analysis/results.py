"""Runs as a table: one row per run, from run directories or from a W&B project.

A row holds the run's status, mixer, seed, setting, headline numbers and its flattened config
(columns `config.<dotted key>`). Failed, unfinished and unreadable runs are rows too (with
`status` and `error`), so the leaderboard can list them. The per-step history of a local run
(loss curves, weight trajectory) is read from its metrics.csv / weights.csv on demand.

Runs are compared per *setting* (data source, domain count, token budget, tokens per domain,
model, plus any other outcome-relevant config key that differs between the runs loaded) and per
mixer *variant*: the mixer name plus the options it was given that differ from the defaults of
`mixer=<name>`, e.g. `uniform[weights=natural]`.
"""

from __future__ import annotations

import json
import logging
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from domains.store import read_manifest
from experiments.results import (
    METRICS_FILE,
    RESULTS_FILE,
    TRAJECTORY_FILE,
    RunRecord,
    read_record,
)
from models.metric_keys import (
    COARSE_LOSS,
    DOMAIN_LOSS,
    GENERIC_LOSS,
    TARGET_LOSS,
    TASK_SCORES,  # `val/<task>/<score>` in a run's metrics, `<task>/<score>` in the runs table
    VAL_TOKENS,
)

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]  # the repository
CONF_DIR = ROOT / "conf"
# The sweep the notebooks open by default: what `make demo` writes.
DEMO_SWEEP = "multirun/demo"
# The variant every other mixer is measured against.
BASELINE = "uniform"

# Setting column -> the config key it comes from.
SETTING_KEYS = {
    "source": "data.source",
    "num_domains": "data.num_domains",
    "train_tokens": "train.tokens",
    "tokens_per_domain": "data.tokens_per_domain",
    "model": "model.name",
}
# Config keys that never make two runs different settings: the seed and mixer (compared within a
# setting), naming, logging, paths, resuming and how often things are evaluated or saved.
NOT_SETTING_PREFIXES = (
    "seed",
    "name",
    "registration.",
    "mixer.",
    "logger.",
    "paths.",
    "train.resume",
    "train.eval_every",
    "train.log_every",
    "train.checkpoint_every",
)


def flatten(config: dict, prefix: str = "") -> dict[str, object]:
    """Nested config -> {dotted key: value}; lists become JSON strings (hashable, comparable)."""
    flat = {}
    for key, value in config.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = json.dumps(value) if isinstance(value, list) else value
    return flat


def _metric(metrics: dict | None, key: str) -> float:
    value = (metrics or {}).get(key)
    return float(value) if value is not None else math.nan


def _ratio(numerator: object, denominator: object) -> float:
    """numerator / denominator, NaN when either is missing or the denominator is not positive."""
    if numerator is None or denominator is None or not denominator > 0:
        return math.nan
    return float(numerator) / float(denominator)


def task_scores(metrics: dict | None) -> dict[str, float]:
    """{"<task>/<score>": value} for every task score in a run's metrics."""
    scores = {}
    for key, value in (metrics or {}).items():
        parts = key.split("/")
        if len(parts) == 3 and parts[0] == "val" and parts[2] in TASK_SCORES:
            scores[f"{parts[1]}/{parts[2]}"] = float(value)
    return scores


def task_columns(runs: pd.DataFrame) -> list[str]:
    """The runs table's task-score columns (`<task>/<score>`), sorted."""
    return sorted(c for c in runs.columns if c.count("/") == 1 and c.split("/")[1] in TASK_SCORES)


def worst_domain(metrics: dict | None) -> tuple[str | None, float]:
    """The generic domain (or coarse cluster, for runs evaluated per cluster) with the highest
    held-out loss (`val/domain/<name>`, `val/coarse/<name>`) and that loss; (None, NaN) when the
    metrics hold neither."""
    losses = {
        key.removeprefix(prefix): float(value)
        for key, value in (metrics or {}).items()
        for prefix in (DOMAIN_LOSS, COARSE_LOSS)
        if key.startswith(prefix) and value is not None
    }
    if not losses:
        return None, math.nan
    name = max(losses, key=losses.get)
    return name, losses[name]


def domain_labels(runs: pd.DataFrame) -> dict[str, str]:
    """{domain name: description} as recorded by the first of `runs` that has them (runs of one
    setting share their domains), plus the coarse clusters' (`coarse_labels`); {} when none
    has."""
    labels = next((d for d in runs["domain_labels"] if isinstance(d, dict)), {})
    artifacts = next((a for a in runs.get("data_artifacts", []) if isinstance(a, str)), None)
    return {**labels, **coarse_labels(artifacts)}


def coarse_labels(artifacts: str | None) -> dict[str, str]:
    """{`coarse_<c>`: where its domains come from}, e.g. `bbc/sport + bbc/tech (4 domains)`:
    the two origins most of its domains mainly come from. A run records its domains' labels but
    not which coarse cluster each belongs to (the names DGA-DR's bases and the per-cluster
    losses go by), so they come from the manifest of the prepared data it trained on; {} when
    that is not on this machine (or the data has one level)."""
    try:
        domains = read_manifest(Path(artifacts))["domains"]
    except (TypeError, OSError, ValueError, KeyError):  # no path, no file, not a manifest
        return {}
    clusters: dict[int, list[dict]] = {}
    for domain in domains:
        if domain.get("coarse") is not None:
            clusters.setdefault(domain["coarse"], []).append(domain)
    labels = {}
    for cluster, members in sorted(clusters.items()):
        origins = Counter(d["top_origins"][0][0] for d in members if d.get("top_origins"))
        count = f"{len(members)} domain" + ("" if len(members) == 1 else "s")
        main = " + ".join(origin for origin, _ in origins.most_common(2))
        labels[f"coarse_{cluster}"] = f"{main} ({count})" if main else count
    return labels


def domain_caption(name: str, labels: dict | None, parts: int = 2) -> str:
    """A domain's name and the start of its description, e.g. `domain_07 bbc/tech: phone,
    mobile` for the label "bbc/tech: phone, mobile, users" (its first `parts` comma-separated
    pieces); just the name when it has no label other than itself."""
    label = (labels or {}).get(name)
    if not isinstance(label, str) or label in ("", name):
        return name
    return f"{name} {', '.join(label.split(', ')[:parts])}"


def run_row(record: RunRecord, run_dir: str | None) -> dict:
    """One row of the runs table from a run's record."""
    flat = flatten(record.config)
    mixer_options = record.config.get("mixer") or {"name": record.mixer}
    error = record.error
    epochs = record.domain_epochs or {}
    domain_tokens = record.domain_tokens or {}
    worst, worst_loss = worst_domain(record.metrics_final)
    row = {
        "run_dir": run_dir,
        "status": record.status,
        "error": f"{error.get('type')}: {error.get('message')}"
        if isinstance(error, dict)
        else error,
        "mixer": mixer_options.get("name", "?"),
        # Labelled by the run itself (experiments/config.py); a record without one: its name.
        "mixer_label": record.mixer_label or mixer_options.get("name", "?"),
        "seed": record.seed if record.seed is not None else record.config.get("seed"),
        **{column: flat.get(key) for column, key in SETTING_KEYS.items()},
        "target_loss": _metric(record.metrics_final, TARGET_LOSS),
        "generic_loss": _metric(record.metrics_final, GENERIC_LOSS),
        "worst_domain_loss": worst_loss,
        "worst_domain": worst,
        "target_loss_initial": _metric(record.metrics_initial, TARGET_LOSS),
        "steps": record.steps,
        "tokens_trained": record.tokens_trained,
        "probe_tokens": record.probe_tokens,
        "wall_clock_s": record.wall_clock_s,
        "train_seconds": record.train_seconds,
        # Cost: FLOPs of the mixer's extra passes, of the training steps and of what the run
        # reused (a reference model, a swarm; NaN where not recorded), and seconds inside mixer
        # updates (a part of train_seconds). The overhead is all compute beyond training.
        "mixer_flops": record.mixer_flops,
        "train_flops": record.train_flops,
        "upstream_flops": record.upstream_flops,
        "mixer_seconds": record.mixer_seconds,
        "compute_overhead": _ratio(
            record.mixer_flops + np.nan_to_num(record.upstream_flops), record.train_flops
        ),
        "mixer_time_share": _ratio(record.mixer_seconds, record.train_seconds),
        # The domains the run trained on: `num_domains` less the clusters merged for being small.
        "domains": len(domain_tokens) if domain_tokens else math.nan,
        "max_domain_epochs": max(epochs.values()) if epochs else math.nan,
        "most_repeated_domain": max(epochs, key=epochs.get) if epochs else None,
        "mean_domain_tokens": np.mean(list(domain_tokens.values())) if domain_tokens else math.nan,
        # Collapse (mixers/collapse.py): None where the record predates the flag.
        "time_averaged_max_weight": record.time_averaged_max_weight,
        "collapsed": record.collapsed,
        "final_weights": record.final_weights,
        "time_averaged_weights": record.time_averaged_weights,
        "domain_epochs": epochs or None,
        "domain_labels": record.domain_labels or None,
        # The prepared data's folder, whose manifest says which coarse cluster holds a domain.
        "data_artifacts": (record.data or {}).get("artifacts"),
        "metrics_final": record.metrics_final,
        "files": record.files,
        **task_scores(record.metrics_final),
    }
    row.update({f"config.{key}": value for key, value in flat.items()})
    return row


def find_run_dirs(paths: list[str | Path]) -> list[Path]:
    """Every directory under `paths` (searched recursively) that holds a results.json."""
    found = set()
    for path in map(Path, paths):
        if not path.exists():
            raise FileNotFoundError(f"no such run or sweep directory: {path}")
        if path.is_file():
            raise NotADirectoryError(f"expected a run or sweep directory, got the file {path}")
        found.update(p.parent for p in path.rglob(RESULTS_FILE))
    return sorted(found)


def sweep_path(sweep: str | Path, root: Path = ROOT) -> Path:
    """The sweep directory a notebook analyses: an absolute path as it is, a relative one from
    the repository `root` (where `make demo` writes multirun/demo; a notebook runs in
    analysis/), else from the current directory. FileNotFoundError, saying what to do, when it
    is in neither."""
    sweep = Path(sweep).expanduser()
    for candidate in (root / sweep, sweep):  # root / an absolute path: that path
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(
        f"no sweep at {root / sweep}: run `make demo` first (it writes {DEMO_SWEEP}), or set "
        "MIXBENCH_SWEEP to a sweep or run directory"
    )


def load_runs(paths: list[str | Path]) -> pd.DataFrame:
    """One row per run found under `paths`; an unreadable results.json becomes a row with
    status "unreadable" (and a logged warning) instead of stopping the whole collection."""
    run_dirs = find_run_dirs(paths)
    if not run_dirs:
        raise FileNotFoundError(
            f"no {RESULTS_FILE} under {', '.join(map(str, paths))}: "
            "point at a run directory or a sweep of them"
        )
    rows = []
    for run_dir in run_dirs:
        try:
            rows.append(run_row(read_record(run_dir), str(run_dir)))
        # Not JSON (JSONDecodeError is a ValueError), or JSON of the wrong shape.
        except (OSError, ValueError, TypeError, AttributeError, KeyError) as error:
            log.warning("unreadable %s (listed as such): %s", run_dir / RESULTS_FILE, error)
            message = f"{type(error).__name__}: {error}"
            rows.append(run_row(RunRecord(status="unreadable", error=message), str(run_dir)))
    return pd.DataFrame(rows)


def completed(runs: pd.DataFrame) -> pd.DataFrame:
    """The completed runs that have a final specialist loss."""
    return runs[(runs["status"] == "completed") & runs["target_loss"].notna()]


def setting_columns(runs: pd.DataFrame) -> list[str]:
    """The columns that define a setting: `SETTING_KEYS`, then any other config key (as
    `config.<key>`) whose value differs between the completed runs, so that e.g. a learning-rate
    sweep is not mistaken for seeds of one setting."""
    done = completed(runs)
    base_keys = {f"config.{key}" for key in SETTING_KEYS.values()}
    extra = [
        column
        for column in done.columns
        if column.startswith("config.")
        and column not in base_keys
        and not column.removeprefix("config.").startswith(NOT_SETTING_PREFIXES)
        and done[column].nunique(dropna=False) > 1
    ]
    return [*SETTING_KEYS, *extra]


def _read_csv(path: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path)
    except FileNotFoundError:
        return pd.DataFrame()
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        log.warning("skipping unreadable %s: %s", path, error)
        return pd.DataFrame()


def load_metrics(run_dir: str | Path, filename: str = METRICS_FILE) -> pd.DataFrame:
    """A run's metrics.csv as logged (train and validation metrics on separate rows); empty if
    the run has none."""
    return _read_csv(Path(run_dir) / filename)


def validation_curve(run_dir: str | Path, filename: str = METRICS_FILE) -> pd.DataFrame:
    """The validation rows of a run's metrics, indexed by training tokens (`val/tokens`)."""
    metrics = load_metrics(run_dir, filename)
    if TARGET_LOSS not in metrics:
        return pd.DataFrame()
    val = metrics[metrics[TARGET_LOSS].notna()]
    columns = [c for c in val.columns if c.startswith("val/") and c != VAL_TOKENS]
    return val.set_index(VAL_TOKENS)[["step", *columns]].rename_axis("tokens")


def load_trajectory(run_dir: str | Path, filename: str = TRAJECTORY_FILE) -> pd.DataFrame:
    """A run's weight trajectory: one row per weight update, indexed by step, one column per
    weight name; empty if the run has none."""
    trajectory = _read_csv(Path(run_dir) / filename)
    return trajectory.set_index("step") if "step" in trajectory else trajectory


def _describe(key: str, value: object) -> str | None:
    """One part of a setting's title (None for a config key this setting does not have)."""
    if key == "tokens_per_domain":
        return "uncapped domains" if pd.isna(value) else f"≤{int(value):,} tokens per domain"
    if key.startswith("config."):
        return None if pd.isna(value) else f"{key.removeprefix('config.')}={value}"
    if pd.isna(value):
        return f"{key}=?"
    if key == "num_domains":
        return f"k={int(value)}"
    if key == "train_tokens":
        return f"{int(value):,} training tokens"
    if key == "model":
        return f"model {value}"
    return str(value)  # the data source


def setting_title(setting: dict, keys: list[str] | None = None) -> str:
    """E.g. `synthetic · k=8 · 20,000 training tokens · uncapped domains · model tiny`, from a
    {setting column: value} mapping (only `keys` of it when given)."""
    parts = (_describe(k, setting[k]) for k in (setting if keys is None else keys))
    return " · ".join(part for part in parts if part is not None)


def mean_weights(runs: pd.DataFrame, which: str = "time_averaged_weights") -> pd.DataFrame:
    """Mixture weights (`final_weights` or `time_averaged_weights`) averaged over seeds: one row
    per (setting, mixer variant), one column per weight name."""
    if which not in ("final_weights", "time_averaged_weights"):
        raise ValueError(f"which must be final_weights or time_averaged_weights, got {which!r}")
    done = completed(runs)
    weights = pd.DataFrame(done[which].tolist(), index=done.index)
    keys = [*setting_columns(runs), "mixer_label"]
    return weights.groupby([done[k] for k in keys], dropna=False).mean()
