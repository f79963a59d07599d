"""Multi-stage experiments (experiments/pipeline.py): RegMix with its swarm oracle, the DoReMi
chain and single-stage methods, run as a user runs them on tiny synthetic settings."""

import json
import math
import subprocess

import numpy as np
import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from experiments.pipeline import (
    PIPELINES,
    SUMMARY_FILE,
    Stages,
    _quoted,
    _swarm_mixtures,
    check_pipeline,
    run_pipeline,
)
from experiments.regmix import RegMixConfig
from experiments.results import read_results
from tests.conftest import FAST, ROOT, compose_config, run_train_cli

PIPELINE_EXPERIMENTS = sorted(
    p.stem
    for p in (ROOT / "conf" / "experiment").glob("*.yaml")
    if compose_config(f"experiment={p.stem}").get("pipeline") is not None
)
# FAST on four domains, 16 training steps; the proxy runs (swarm, reference, proxy) 8 steps.
TINY = (
    *(o for o in FAST if not o.startswith("train.tokens=")),
    "data=synthetic",
    "data.num_domains=4",
    "train.tokens=4096",
    "pipeline.proxy_tokens=2048",
)


def run_pipeline_cli(*args: str) -> subprocess.CompletedProcess:
    return run_train_cli(*args, module="experiments.pipeline")


def _flops(record: dict) -> int:
    return record["train_flops"] + record["mixer_flops"] + record["upstream_flops"]


@pytest.mark.slow
def test_regmix_trains_swarm_fits_proposes_and_retrains_the_oracle(tmp_path):
    proc = run_pipeline_cli(
        "experiment=regmix",
        *TINY,
        "pipeline.regmix.swarm_runs=12",
        "pipeline.regmix.min_leaf_runs=1",
        "pipeline.regmix.proposal_samples=2000",
        "pipeline.regmix.top_k=20",
        f"hydra.run.dir={tmp_path}",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((tmp_path / SUMMARY_FILE).read_text())
    swarm = [read_results(tmp_path / "swarm" / str(i)) for i in range(12)]
    sampled = json.loads((tmp_path / "swarm" / "swarm.json").read_text())
    names = sampled["domains"]
    assert names == [f"domain_{i:02d}" for i in range(4)]
    assert summary["prior"] == dict.fromkeys(names, 0.25)  # synthetic domains are equal-sized

    # The swarm: one static run per sampled mixture, at the proxy budget.
    for record, mixture in zip(swarm, sampled["mixtures"], strict=True):
        assert record["status"] == "completed" and record["tokens_trained"] == 2048
        trained = [record["final_mixture"][name] for name in names]
        assert trained == pytest.approx(np.array(mixture) / sum(mixture))
    losses = [r["metrics_final"]["val/target_loss"] for r in swarm]
    assert summary["swarm"]["runs"] == 12 and summary["swarm"]["target_losses"] == losses
    swarm_flops = sum(r["train_flops"] + r["mixer_flops"] for r in swarm)
    assert summary["swarm"]["flops"] == swarm_flops > 0
    # Rho on the 3 held-out runs (a quarter of 12): finite, the regressor did split.
    rho = summary["swarm"]["spearman_rho"]
    assert summary["swarm"]["heldout_runs"] == 3 and math.isfinite(rho) and -1 <= rho <= 1

    # The final run trains the proposal at full budget and carries the swarm's compute.
    final = read_results(tmp_path / "final")
    assert sum(summary["proposal"].values()) == pytest.approx(1.0)
    assert final["final_mixture"] == pytest.approx(summary["proposal"])
    assert final["tokens_trained"] == 4096
    assert final["upstream_flops"] == swarm_flops
    assert summary["final"]["target_loss"] == final["metrics_final"]["val/target_loss"]

    # The oracle: the swarm's lowest-loss mixture, retrained at full budget.
    oracle = read_results(tmp_path / "oracle")
    best = int(np.argmin(losses))
    assert summary["oracle"]["swarm_run"] == str(tmp_path / "swarm" / str(best))
    assert oracle["final_mixture"] == pytest.approx(swarm[best]["final_mixture"])
    assert oracle["tokens_trained"] == 4096 and oracle["upstream_flops"] == swarm_flops
    # Tables name each run after its method and stage.
    assert {r["mixer_label"] for r in swarm} == {"regmix_swarm"}
    assert (final["mixer_label"], oracle["mixer_label"]) == ("regmix", "swarm_oracle")


@pytest.mark.slow
def test_doremi_chain_hands_reference_to_proxy_to_final(tmp_path):
    proc = run_pipeline_cli("experiment=doremi", *TINY, f"hydra.run.dir={tmp_path}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    reference, proxy, final = (read_results(tmp_path / s) for s in ("reference", "proxy", "final"))
    assert reference["mixer"] == "uniform" and reference["tokens_trained"] == 2048
    assert proxy["mixer"] == "doremi" and proxy["config"]["mixer"]["reference"] == str(
        tmp_path / "reference"
    )
    assert final["config"]["mixer"]["which"] == "time_averaged"
    labels = [r["mixer_label"] for r in (reference, proxy, final)]
    assert labels == ["doremi_reference", "doremi_proxy", "doremi"]
    assert final["final_mixture"] == pytest.approx(proxy["time_averaged_mixture"])
    assert final["tokens_trained"] == 4096
    # The chain's cost: the final run carries the proxy's and, through it, the reference's.
    assert proxy["upstream_flops"] == _flops(reference) > 0
    assert final["upstream_flops"] == _flops(proxy)
    summary = json.loads((tmp_path / SUMMARY_FILE).read_text())
    assert summary["final"]["run_dir"] == str(tmp_path / "final")


@pytest.mark.slow
def test_a_single_stage_method_of_the_peers_sweep_trains_its_mixer(tmp_path):
    task = ["experiment=peers", *TINY, "pipeline.method=importance"]
    cfg = compose_config(*task)
    check_pipeline(cfg, task)
    # The pipeline's launcher reaches its stages: here the joblib one (a worker process).
    launcher = ["hydra/launcher=parallel", "hydra.launcher.n_jobs=1"]
    summary = run_pipeline(cfg, Stages.from_overrides(tmp_path, task, launcher))
    final = read_results(tmp_path / "final")
    assert final["mixer"] == "importance" and final["config"]["pipeline"] is None
    assert summary["final"]["target_loss"] == final["metrics_final"]["val/target_loss"]
    assert {p.name for p in tmp_path.iterdir() if p.is_dir()} == {"final"}  # one stage
    assert "JoblibLauncher" in (tmp_path / "multirun.yaml").read_text()


@pytest.mark.slow
@pytest.mark.parametrize("name", PIPELINE_EXPERIMENTS)
def test_pipeline_experiments_name_real_methods(name):
    assert {"doremi", "peers", "regmix"} <= set(PIPELINE_EXPERIMENTS)
    cfg = compose_config(f"experiment={name}", with_hydra=True)
    assert cfg.name == name
    methods = [cfg.pipeline.method]
    if name == "peers":
        methods = str(cfg.hydra.sweeper.params["pipeline.method"]).split(",")
        assert {"regmix", "doremi"} < set(methods)
    for method in methods:
        assert method in PIPELINES or (ROOT / "conf" / "mixer" / f"{method}.yaml").exists()
        check_pipeline(compose_config(f"experiment={name}", f"pipeline.method={method}"), [])


def test_training_refuses_a_pipeline_config(tmp_path):
    from experiments.train import train

    with pytest.raises(ValueError, match=r"experiments\.pipeline"):
        train(compose_config("experiment=regmix", *TINY), tmp_path)
    assert not (tmp_path / "results.json").exists()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["experiment=demo"], "no pipeline is configured"),
        (["experiment=regmix", "pipeline.method=dgaa"], "neither a pipeline"),
        (["experiment=regmix", "mixer=dga"], "static mixtures only"),
        (["experiment=regmix", "mixer=dga", "mixer.eta=0.5"], "static mixtures only"),
        (["experiment=peers", "pipeline.method=dga", "mixer=importance"], "trains mixer=dga"),
        (["experiment=regmix", "pipeline.proxy_tokens=10"], "less than one training step"),
        (["experiment=regmix", "pipeline.regmix.top_k=0"], "top_k must be positive"),
    ],
)
def test_pipeline_mistakes_fail_before_anything_runs(overrides, message):
    with pytest.raises(ValueError, match=message):
        check_pipeline(compose_config(*overrides), overrides)


def test_stages_get_the_pipelines_overrides_but_its_own_and_the_mixers():
    stages = Stages.from_overrides(
        ROOT,
        [
            "experiment=doremi",
            "pipeline.regmix.swarm_runs=8",
            "mixer=doremi",
            "mixer.eta=0.5",
            "seed=1",
        ],
        ["hydra/launcher=parallel", "hydra.launcher.n_jobs=2", "hydra.run.dir=x", "hydra.mode=RUN"],
    )
    assert stages.common == ["experiment=doremi", "seed=1"]
    assert stages.mixer == ["mixer.eta=0.5"]
    assert stages.launcher == ["hydra/launcher=parallel", "hydra.launcher.n_jobs=2"]


@pytest.mark.parametrize(
    "value", ["multirun/peers/pipeline.method=regmix/final", "a,b 'c' \\d", "e\\'f\\"]
)
def test_quoted_paths_reach_the_stage_unchanged(value):
    (override,) = OverridesParser.create().parse_overrides([f"mixer.path={_quoted(value)}"])
    assert override.value() == value


def test_a_pipeline_directory_holding_another_swarm_is_refused(tmp_path):
    names, prior = ["a", "b", "c"], np.array([0.2, 0.3, 0.5])
    cfg = RegMixConfig(swarm_runs=4)
    first = _swarm_mixtures(tmp_path, names, prior, cfg, seed=0)
    assert (_swarm_mixtures(tmp_path, names, prior, cfg, seed=0) == first).all()  # a re-run
    with pytest.raises(RuntimeError, match="another swarm"):
        _swarm_mixtures(tmp_path, names, prior, cfg, seed=1)


def test_the_parallel_launcher_config_composes():
    cfg = compose_config("hydra/launcher=parallel", with_hydra=True)
    assert "joblib" in cfg.hydra.launcher._target_.lower()
    assert cfg.hydra.launcher.n_jobs == 2
    assert OmegaConf.select(cfg, "pipeline") is None
