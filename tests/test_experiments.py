"""Sweeps, multi-process training and the experiment configs."""

import math

import pytest

from experiments.results import read_results
from experiments.sweep import parts
from tests.conftest import FAST, ROOT, compose_config, run_train_cli


@pytest.mark.slow
def test_a_failed_run_does_not_stop_the_sweep_and_is_recorded(tmp_path):
    # k=1 cannot hold the specialist's domains {0, 1}: the first run fails, the second must run.
    proc = run_train_cli("-m", *FAST, "data.num_domains=1,4", f"hydra.sweep.dir={tmp_path}")
    assert proc.returncode != 0  # the sweep as a whole reports the failure
    # ... in a line naming the problem, not a traceback.
    assert "Traceback" not in proc.stderr
    assert "error: data.target_domains" in proc.stderr.splitlines()[-1]

    runs = {
        (r := read_results(path.parent))["config"]["data"]["num_domains"]: r
        for path in tmp_path.glob("*/results.json")
    }
    assert sorted(runs) == [1, 4]
    failed = runs[1]
    assert failed["status"] == "failed"
    assert "target_domains" in failed["error"]["message"]
    completed = runs[4]
    assert completed["status"] == "completed"
    assert (
        completed["metrics_final"]["val/target_loss"]
        < completed["metrics_initial"]["val/target_loss"]
    )


@pytest.mark.slow
def test_a_parallel_sweeps_runs_print_none_of_lightnings_noise(tmp_path):
    """The joblib launcher's workers get the training function by value (the module runs as
    __main__), so the output filters must be set inside each run too."""
    launcher = ["hydra/launcher=parallel", "hydra.launcher.n_jobs=2"]
    proc = run_train_cli("-m", *FAST, *launcher, "seed=0,1", f"hydra.sweep.dir={tmp_path}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    # Runs named by what varies (the seed), not by the options every run shares (FAST's).
    assert sorted(p.parent.name for p in tmp_path.glob("*/results.json")) == ["seed=0", "seed=1"]
    output = proc.stdout + proc.stderr
    for noise in (
        "💡 Tip",
        "GPU available",
        "exists and is not empty",
        "LeafSpec",
        "Using ModelCheckpoint with manual optimization",
    ):
        assert noise not in output, noise


@pytest.mark.slow
def test_ddp_ranks_keep_identical_weights_and_draw_different_data(tmp_path):
    proc = run_train_cli(
        *FAST,
        "trainer=ddp",
        "mixer=dga",
        "mixer.update_every=4",
        f"hydra.run.dir={tmp_path}",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = read_results(tmp_path)
    assert results["status"] == "completed"
    # 8192 tokens over 2 ranks x 8 sequences x 32 tokens = 16 steps.
    assert results["steps"] == 16 and results["tokens_trained"] == 8192
    rank0, rank1 = results["ranks"]["weights"]
    assert rank0 == rank1  # bit-identical on both ranks after every update
    assert rank0 != pytest.approx([1 / 8] * 8, abs=1e-3)  # and the mixer did move them
    epochs0, epochs1 = results["ranks"]["domain_epochs"]
    assert epochs0 != epochs1  # each rank drew its own sequences
    assert sum(results["domain_epochs"].values()) == pytest.approx(sum(epochs0) + sum(epochs1))


def test_sweep_directory_names_stay_short_and_distinct():
    from experiments.config import shorten_dirname

    short = "mixer=dga,seed=1"
    assert shorten_dirname(short) == short
    long_a = ",".join(f"train.option_{i}={i}" for i in range(30))
    long_b = long_a.replace("=29", "=30")
    assert len(shorten_dirname(long_a)) == 120
    assert shorten_dirname(long_a) != shorten_dirname(long_b)
    assert "/" not in shorten_dirname("mixer.path=outputs/runs/x")


def test_sweep_runs_are_named_by_what_varies_and_keep_their_names(tmp_path, monkeypatch):
    """A user's corpus sweep (`data=files 'data.paths=[...]' ... seed=0,1,2`) names its runs by
    the mixer (and its options), the seed and the swept options; the same names come back when
    the sweep is re-run or extended, and a run made under the earlier rule (every override in
    the name) keeps its directory."""
    from omegaconf import OmegaConf

    from experiments.config import SWEPT_KEYS, SweptKeys, run_dirname

    def swept_by(command_line: list[str], params: dict) -> None:
        master = OmegaConf.create(
            {"hydra": {"overrides": {"task": command_line}, "sweeper": {"params": params}}}
        )
        SweptKeys().on_multirun_start(master)

    root = OmegaConf.create(
        {
            "hydra": {
                "sweep": {"dir": str(tmp_path)},
                "job": {"config": {"override_dirname": {"exclude_keys": ["experiment"]}}},
            }
        }
    )
    shared = ["experiment=x", "data=files", "data.paths=[/home/me/corpus/*.jsonl]"]
    job = [*shared, "data.num_domains=16", "mixer=dga", "mixer.eta=3", "seed=1"]
    monkeypatch.setenv(SWEPT_KEYS, "[]")  # restored after the test
    swept_by([*shared, "data.num_domains=16", "mixer=dga", "mixer.eta=3"], {"seed": "0,1,2"})
    assert run_dirname(job, root) == "mixer.eta=3,mixer=dga,seed=1"
    swept_by([*shared, "data.num_domains=16", "mixer=dga", "mixer.eta=3", "seed=1,3"], {})
    assert run_dirname(job, root) == "mixer.eta=3,mixer=dga,seed=1"  # re-run, extended
    swept_by([*shared, "data.num_domains=16,64", "mixer=dga", "mixer.eta=3"], {"seed": "0,1"})
    assert run_dirname(job, root) == "data.num_domains=16,mixer.eta=3,mixer=dga,seed=1"

    earlier = "data.num_domains=16,data.paths=[_home_me_corpus_*.jsonl],data=files,mixer.eta=3,"
    (tmp_path / f"{earlier}mixer=dga,seed=1").mkdir()
    assert run_dirname(job, root) == f"{earlier}mixer=dga,seed=1"


def swept_mixers(name: str) -> list[list[str]]:
    """The mixers of each of an experiment's sweeps: a part's own where it names them, the
    sweeper's otherwise (experiments/sweep.py)."""
    params = compose_config(f"experiment={name}", with_hydra=True).hydra.sweeper.params
    swept = str(params.mixer).split(",") if "mixer" in params else []
    named = [[o.split("=", 1)[1] for o in part if o.startswith("mixer=")] for part in parts(name)]
    return [own[0].split(",") if own else swept for own in named]


# The training sweeps; the experiments that set `pipeline` are tests/test_pipeline.py's.
EXPERIMENTS = sorted(
    p.stem
    for p in (ROOT / "conf" / "experiment").glob("*.yaml")
    if compose_config(f"experiment={p.stem}").get("pipeline") is None
)


@pytest.mark.slow
@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_sweeps_name_real_options(name):
    from omegaconf import OmegaConf

    cfg = compose_config(f"experiment={name}", with_hydra=True)
    assert cfg.name == name  # the sweep's directory and W&B group
    params = cfg.hydra.sweeper.params
    per_part = swept_mixers(name)
    mixers = [mixer for part in per_part for mixer in part]
    assert mixers and set(mixers) <= {p.stem for p in (ROOT / "conf" / "mixer").glob("*.yaml")}
    # A part's own overrides (e.g. its mixer's training tokens) name keys its mixers have (a
    # config group it sets, `data/specialist`, is composed job by job in tests/test_sweep.py).
    for part, part_mixers in zip(parts(name), per_part, strict=True):
        for key in (o.split("=", 1)[0] for o in part if not o.startswith("mixer=")):
            if "/" in key:
                continue
            for mixer in part_mixers:
                composed = compose_config(f"experiment={name}", f"mixer={mixer}")
                assert OmegaConf.select(composed, key, default="missing") != "missing", key
    # Every other swept key exists in the config of every mixer it is swept with; a swept
    # config group (`data/specialist`) composes with each of its options.
    for key in params:
        if "/" in key:
            for option in str(params[key]).split(","):
                compose_config(f"experiment={name}", f"{key}={option}")
        elif key not in ("mixer", "seed"):
            for mixer in mixers:
                composed = compose_config(f"experiment={name}", f"mixer={mixer}", with_hydra=True)
                assert OmegaConf.select(composed, key, default="missing") != "missing", key


@pytest.mark.slow
@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_runs_a_debug_variant_on_synthetic_data(name, tmp_path):
    from experiments.train import train

    # The sweep's last mixer (the online ones come last), a few steps, on synthetic domains.
    mixer = swept_mixers(name)[-1][-1]
    cfg = compose_config(f"experiment={name}", "data=synthetic", f"mixer={mixer}", *FAST)
    results = train(cfg, tmp_path)
    assert results["status"] == "completed"
    assert results["steps"] == results["max_steps"] == 32
    assert len(results["domain_tokens"]) == cfg.data.num_domains
    assert all(math.isfinite(v) for v in results["metrics_final"].values())


def test_slurm_launcher_config_composes():
    cfg = compose_config("hydra/launcher=slurm", "trainer=gpu", with_hydra=True)
    assert "submitit" in cfg.hydra.launcher._target_.lower()
    assert cfg.hydra.launcher.gpus_per_node == 1
    assert cfg.trainer.precision == "bf16-mixed"
