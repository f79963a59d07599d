"""Multi-stage experiments: `python -m experiments.pipeline experiment=regmix [overrides]`.

A pipeline experiment sets `pipeline.method` (schema: experiments/config.py `PipelineConfig`):

- `regmix` (experiments/regmix.py): a swarm of static runs on sampled mixtures (swarm/<i>), a
  LightGBM regression from mixture to specialist loss, the final run on its proposal (final/) and
  the swarm oracle, the swarm's best mixture retrained at full budget (oracle/);
- `doremi`: the DoReMi chain, a uniform reference run (reference/), the DoReMi proxy that reweights
  against it (proxy/: `mixer=doremi mixer.reference=<reference>`) and the final run on the proxy's
  time-averaged weights (final/: `mixer=static mixer.path=<proxy> mixer.which=time_averaged`);
- any mixer's name: one stage, the run with that mixer (final/), so that a sweep over
  `pipeline.method` compares single-stage mixers and pipelines alike (`experiment=peers`).

Every stage is a `python -m experiments.train -m` subprocess writing under the pipeline's
directory (its Hydra run directory: `multirun/<name>` in the pipeline experiments). The swarm is
one multirun, so `hydra/launcher=parallel` (or `slurm`) trains it in parallel. Stages get the
pipeline's own overrides (the data, model, budget, seed...) and its launcher overrides, but not
`pipeline.*`, and the mixer's (`mixer=`, `mixer.*`) only where a stage trains the method's own
mixer. Stages are re-launched on every run of the pipeline and experiments.train skips the runs
already completed, so re-running the same command resumes the pipeline where it stopped.

A stage whose mixer reuses another stage's output records the compute that produced it as its
`upstream_flops` (the mixture files of mixers/mixture_file.py; a reference run's FLOPs for
DoReMi): so RegMix's final and oracle runs carry the whole swarm's training FLOPs. The pipeline writes
`pipeline.json` (`SUMMARY_FILE`): the stages' run directories and results and, for RegMix, the
swarm (size, FLOPs, losses), the regressor's held-out Spearman rho, the proposal and the oracle.
"""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import hydra
import numpy as np
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf

from domains.loading import load_data
from experiments.config import CONF_DIR, check_config, register_configs
from experiments.regmix import (
    RegMixConfig,
    fit_regressor,
    heldout_spearman,
    natural_prior,
    propose,
    sample_swarm,
)
from experiments.results import RESULTS_FILE, read_record, write_json_atomic
from mixers import write_mixture_file
from models.metric_keys import TARGET_LOSS

log = logging.getLogger(__name__)
register_configs()

SUMMARY_FILE = "pipeline.json"
SWARM_FILE = "swarm.json"


def _quoted(value: object) -> str:
    """A Hydra override value that stays one string whatever it holds (`=`, `,`, spaces). In a
    quoted value a quote is escaped by a backslash, and so are the backslashes just before a
    quote or the closing quote; other backslashes stand for themselves."""

    def escape(match: re.Match) -> str:
        return match.group(1) * 2 + ("\\'" if match.group(2) else "")

    return "'" + re.sub(r"(\\*)('|$)", escape, str(value)) + "'"


@dataclass
class Stages:
    """Launches a pipeline's training stages in directories under `root`."""

    root: Path
    common: list[str]  # overrides every stage gets
    mixer: list[str]  # the pipeline's mixer options (`mixer.*`), for the method's own mixer
    launcher: list[str]  # `hydra/launcher=...`, `hydra.launcher.*`

    @classmethod
    def from_overrides(cls, root: Path, task: Sequence[str], hydra_overrides: Sequence[str]):
        """Sorts the pipeline's command-line overrides (Hydra's `overrides.task` and
        `overrides.hydra`) into what its stages get."""
        common, mixer = [], []
        for override in OverridesParser.create().parse_overrides(list(task)):
            key = override.key_or_group
            if key == "pipeline" or key.startswith("pipeline."):
                continue
            if key == "mixer":
                continue  # each stage names its mixer (checked by `check_pipeline`)
            (mixer if key.startswith("mixer.") else common).append(override.input_line)
        launcher = [
            line
            for line in hydra_overrides
            if line.startswith(("hydra/launcher=", "hydra.launcher."))
        ]
        return cls(Path(root), common, mixer, launcher)

    def train(
        self, stage: str, overrides: Sequence[str], sweep: tuple[str, list[str]] | None = None
    ) -> list[Path]:
        """Train a stage: one run in <root>/<stage>, or with `sweep` = (key, values) one run per
        value in <root>/<stage>/<i>, as one multirun. Returns the run directories, all of them
        completed (an error names those that are not)."""
        if sweep is None:
            layout = [f"hydra.sweep.dir={_quoted(self.root)}", f"hydra.sweep.subdir={stage}"]
            run_dirs = [self.root / stage]
        else:
            key, values = sweep
            layout = [
                f"hydra.sweep.dir={_quoted(self.root / stage)}",
                "hydra.sweep.subdir=${hydra.job.num}",
                f"{key}={','.join(_quoted(value) for value in values)}",
            ]
            run_dirs = [self.root / stage / str(i) for i in range(len(values))]
        command = [
            *(sys.executable, "-m", "experiments.train", "-m"),
            *self.common,
            *overrides,
            "pipeline=null",  # a stage is a training run
            "hydra.sweeper.params=null",  # the experiment's own sweep is the pipeline's
            *layout,
            *self.launcher,
        ]
        log.info("stage %s: %d run(s) in %s", stage, len(run_dirs), self.root / stage)
        returncode = subprocess.run(command).returncode
        unfinished = [d for d in run_dirs if _status(d) != "completed"]
        if returncode != 0 or unfinished:
            raise RuntimeError(
                f"stage {stage!r}: {len(unfinished)} of {len(run_dirs)} runs did not complete "
                f"(e.g. {[str(d) for d in unfinished[:3]]}; see their {RESULTS_FILE}); "
                "re-running the pipeline resumes it"
            )
        return run_dirs


def _status(run_dir: Path) -> str:
    if not (run_dir / RESULTS_FILE).is_file():
        return "missing"
    return read_record(run_dir).status


def check_pipeline(cfg: DictConfig, task_overrides: Sequence[str]) -> None:
    """Everything checkable before any data is prepared or any stage is launched."""
    if cfg.get("pipeline") is None:
        raise ValueError(
            "no pipeline is configured: give a pipeline experiment (experiment=regmix, doremi "
            "or peers), or one that sets pipeline.method"
        )
    check_config(cfg)
    pipeline = OmegaConf.to_object(cfg.pipeline)  # runs RegMixConfig's range checks
    method = pipeline.method
    # A mixer is any option of the `mixer` config group (`dga_ema`, `aioli_k16` included).
    mixers = sorted(path.stem for path in (CONF_DIR / "mixer").glob("*.yaml"))
    if method not in PIPELINES and method not in mixers:
        raise ValueError(
            f"pipeline.method={method} is neither a pipeline {sorted(PIPELINES)} nor a mixer "
            f"{mixers}"
        )
    own_mixer = PIPELINES[method][1] if method in PIPELINES else method
    if own_mixer is not None and own_mixer not in mixers:
        raise ValueError(f"pipeline.method={method} trains mixer={own_mixer}, which is missing")
    for override in OverridesParser.create().parse_overrides(list(task_overrides)):
        key = override.key_or_group
        if key == "mixer" and override.value() != own_mixer:
            raise ValueError(
                f"pipeline.method={method} trains "
                + (f"mixer={own_mixer}" if own_mixer else "static mixtures only")
                + f": drop {override.input_line}"
            )
        if key.startswith("mixer.") and own_mixer is None:
            raise ValueError(
                f"pipeline.method={method} trains static mixtures only: drop {override.input_line}"
            )
    one_step = cfg.train.batch_size * cfg.model.context_length
    if pipeline.proxy_tokens is not None and pipeline.proxy_tokens < one_step:
        raise ValueError(
            f"pipeline.proxy_tokens={pipeline.proxy_tokens} is less than one training step "
            f"({one_step} tokens)"
        )


def _proxy_tokens(cfg: DictConfig) -> list[str]:
    tokens = cfg.pipeline.proxy_tokens
    return [] if tokens is None else [f"train.tokens={tokens}"]


def _run_summary(run_dir: Path) -> dict:
    """A completed stage run's headline numbers."""
    record = read_record(run_dir)
    return {
        "run_dir": str(run_dir),
        "mixer_label": record.mixer_label or record.mixer,
        "target_loss": record.metrics_final[TARGET_LOSS],
        "train_flops": record.train_flops,
        "mixer_flops": record.mixer_flops,
        "upstream_flops": record.upstream_flops,
    }


def single_stage(cfg: DictConfig, stages: Stages) -> dict:
    (final,) = stages.train("final", [f"mixer={cfg.pipeline.method}", *stages.mixer])
    return {"final": _run_summary(final)}


def doremi_chain(cfg: DictConfig, stages: Stages) -> dict:
    tokens = _proxy_tokens(cfg)
    (reference,) = stages.train(
        "reference", ["mixer=uniform", "mixer.label=doremi_reference", *tokens]
    )
    (proxy,) = stages.train(
        "proxy",
        [
            "mixer=doremi",
            "mixer.label=doremi_proxy",
            *stages.mixer,
            f"mixer.reference={_quoted(reference)}",
            *tokens,
        ],
    )
    (final,) = stages.train(
        "final",
        [
            "mixer=static",
            "mixer.label=doremi",
            f"mixer.path={_quoted(proxy)}",
            "mixer.which=time_averaged",
        ],
    )
    return {
        "reference": _run_summary(reference),
        "proxy": _run_summary(proxy),
        "final": _run_summary(final),
    }


def _swarm_mixtures(
    folder: Path, names: list[str], prior: np.ndarray, options: RegMixConfig, seed: int
) -> np.ndarray:
    """The swarm's mixtures, sampled (and kept in <folder>/swarm.json) on the first run; a re-run
    checks that it would sample the same swarm, so that its runs are the ones already trained."""
    mixtures = sample_swarm(prior, options, np.random.default_rng(seed))
    sampled = {"domains": names, "mixtures": mixtures.tolist()}
    path = folder / SWARM_FILE
    if path.exists() and json.loads(path.read_text()) != sampled:
        raise RuntimeError(
            f"{folder} holds another swarm (other domains, seed or pipeline.regmix options): "
            "give this pipeline another directory (e.g. another `name=`) or delete it"
        )
    write_json_atomic(path, sampled)
    return mixtures


def regmix(cfg: DictConfig, stages: Stages) -> dict:
    options: RegMixConfig = OmegaConf.to_object(cfg.pipeline.regmix)
    data = load_data(
        OmegaConf.to_object(cfg.data),
        seq_len=cfg.model.context_length,
        cache_dir=Path(cfg.paths.cache_dir).expanduser(),
    )
    names, prior = list(data.names), natural_prior(data.token_counts())
    folder = stages.root / "swarm"
    mixtures = _swarm_mixtures(folder, names, prior, options, cfg.seed)
    files = []
    for i, mixture in enumerate(mixtures):
        files.append(folder / "mixtures" / f"swarm-{i:04d}.json")
        files[-1].parent.mkdir(parents=True, exist_ok=True)
        write_mixture_file(files[-1], {"final": dict(zip(names, mixture.tolist(), strict=True))}, 0)
    swarm_dirs = stages.train(
        "swarm",
        ["mixer=static", "mixer.label=regmix_swarm", *_proxy_tokens(cfg)],
        sweep=("mixer.path", files),
    )

    records = [read_record(run_dir) for run_dir in swarm_dirs]
    # The mixtures as trained (the static mixer renormalises the grid-rounded ones).
    trained = np.array([[r.final_mixture[name] for name in names] for r in records])
    losses = np.array([r.metrics_final[TARGET_LOSS] for r in records])
    swarm_flops = int(sum(r.train_flops + r.mixer_flops for r in records))
    rho, heldout = heldout_spearman(trained, losses, options, cfg.seed)
    predict = fit_regressor(trained, losses, options, cfg.seed)
    proposal = propose(predict, prior, options, np.random.default_rng(cfg.seed))
    best = int(np.argmin(losses))
    summary = {
        "prior": dict(zip(names, prior.tolist(), strict=True)),
        "swarm": {
            "runs": len(records),
            "run_dirs": [str(d) for d in swarm_dirs],
            "target_losses": losses.tolist(),
            "flops": swarm_flops,
            "spearman_rho": rho,
            "heldout_runs": heldout,
        },
        "proposal": dict(zip(names, proposal.tolist(), strict=True)),
        "predicted_loss": float(predict(proposal[None])[0]),
        "oracle": {"swarm_run": str(swarm_dirs[best]), "swarm_loss": float(losses[best])},
        "oracle_mixture": records[best].final_mixture,
    }
    log.info("RegMix: %d swarm runs, held-out Spearman rho %.3f", len(records), rho)
    _write_summary(cfg, stages.root, summary)  # before the final runs: rho is known now

    proposal_file = stages.root / "regmix.json"
    write_mixture_file(proposal_file, {"final": summary["proposal"]}, swarm_flops)
    (final,) = stages.train(
        "final", ["mixer=static", "mixer.label=regmix", f"mixer.path={_quoted(proposal_file)}"]
    )
    summary["final"] = _run_summary(final)
    if cfg.pipeline.oracle:
        oracle_file = stages.root / "swarm_oracle.json"
        write_mixture_file(oracle_file, {"final": summary["oracle_mixture"]}, swarm_flops)
        (oracle,) = stages.train(
            "oracle",
            ["mixer=static", "mixer.label=swarm_oracle", f"mixer.path={_quoted(oracle_file)}"],
        )
        summary["oracle"].update(_run_summary(oracle))
    return summary


# The multi-stage methods: name -> (their stages, the mixer they train with the pipeline's mixer
# overrides, if any). Any other `pipeline.method` is a mixer, trained in one stage.
PIPELINES = {"regmix": (regmix, None), "doremi": (doremi_chain, "doremi")}


def _write_summary(cfg: DictConfig, root: Path, summary: dict) -> dict:
    summary = {"method": cfg.pipeline.method, "name": cfg.name, "seed": cfg.seed, **summary}
    write_json_atomic(root / SUMMARY_FILE, summary)
    return summary


def run_pipeline(cfg: DictConfig, stages: Stages) -> dict:
    """Runs the configured pipeline's stages; returns its summary (also in pipeline.json)."""
    method = cfg.pipeline.method
    run = PIPELINES[method][0] if method in PIPELINES else single_stage
    return _write_summary(cfg, stages.root, run(cfg, stages))


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float:
    hydra_cfg = HydraConfig.get()
    task = list(hydra_cfg.overrides.task)
    check_pipeline(cfg, task)
    root = Path(hydra_cfg.runtime.output_dir)
    summary = run_pipeline(cfg, Stages.from_overrides(root, task, hydra_cfg.overrides.hydra))
    log.info("summary: %s", root / SUMMARY_FILE)
    return summary["final"]["target_loss"]


if __name__ == "__main__":
    main()
