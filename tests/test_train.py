"""The training app end to end, as a user runs it."""

import copy
import csv
import json
import shutil
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
from hydra.errors import ConfigCompositionException
from lightning.pytorch.plugins import MixedPrecision
from omegaconf.errors import ConfigKeyError, ValidationError

from domains.synthetic import SyntheticDataConfig, generate
from experiments.config import mixer_label
from experiments.prepare import run as run_prepare
from experiments.relabel import main as relabel_main
from experiments.results import read_results
from experiments.train import train
from mixers import build_mixer
from mixers.uniform import UniformConfig
from models.gpt import GPTConfig
from models.lm import MixtureLM
from models.train_config import TrainConfig
from tests.conftest import CONF_DIR, FAST, compose_config, run_train_cli


@pytest.mark.slow
def test_cli_run_writes_results_metrics_and_wandb_files(tmp_path):
    run_dir = tmp_path / "run"
    overrides = [o for o in FAST if o != "logger=csv"]
    proc = run_train_cli(*overrides, "logger=wandb", f"hydra.run.dir={run_dir}")
    assert proc.returncode == 0, proc.stderr[-3000:]

    results = read_results(run_dir)
    assert results["status"] == "completed" and results["error"] is None
    assert results["mixer"] == results["mixer_label"] == "uniform" and results["seed"] == 0
    # What `mixer=static mixer.path=<this run>` reuses, with the compute spent producing it.
    mixture = json.loads((run_dir / "mixture.json").read_text())
    assert mixture["mixtures"]["final"] == results["final_mixture"]
    assert (
        mixture["flops"]
        == results["train_flops"] + results["mixer_flops"]
        == 32 * 8 * 32 * (results["model"]["flops_per_token"])
    )
    assert results["config"]["train"]["tokens"] == 8192
    # 8192 tokens / (8 sequences x 32 tokens) = 32 steps, all of them trained.
    assert results["steps"] == results["max_steps"] == 32
    assert results["tokens_trained"] == 32 * 8 * 32
    assert results["probe_tokens"] == 0
    assert results["wall_clock_s"] > results["train_seconds"] > 0
    initial, final = results["metrics_initial"], results["metrics_final"]
    assert final["val/target_loss"] < initial["val/target_loss"]
    assert set(final) == {f"val/domain/domain_{i:02d}" for i in range(8)} | {
        "val/generic_loss",
        "val/target_loss",
    }
    assert sum(results["final_weights"].values()) == pytest.approx(1.0)
    assert sum(results["domain_epochs"].values()) == pytest.approx(32 * 8 / 32)  # 256 seqs/32 each

    trajectory = (run_dir / results["files"]["trajectory"]).read_text().splitlines()
    assert trajectory[0] == "step," + ",".join(f"domain_{i:02d}" for i in range(8))
    metrics = (run_dir / "metrics.csv").read_text()
    assert "val/target_loss" in metrics.splitlines()[0]
    offline_runs = list((run_dir / "wandb").glob("offline-run-*/*.wandb"))
    assert len(offline_runs) == 1 and offline_runs[0].stat().st_size > 0
    # W&B says nothing on the console (no banner, sparklines or run summary)...
    assert "wandb" not in proc.stdout + proc.stderr
    # ... and without a terminal, each evaluation prints one plain line.
    evaluations = [line for line in proc.stdout.splitlines() if line.startswith("step ")]
    assert evaluations[0] == f"step 0/32: 0 tokens, target loss {initial['val/target_loss']:.4f}"
    assert (
        evaluations[-1] == f"step 32/32: 8,192 tokens, target loss {final['val/target_loss']:.4f}"
    )
    assert len(evaluations) == 1 + 32 // 4


def test_the_wandb_summary_names_each_domain_with_its_label():
    from experiments.loggers import wandb_summary as _wandb_summary

    metrics = {"val/target_loss": 4.0, "val/domain/domain_00": 5.0, "val/domain/domain_01": 6.0}
    labels = {"domain_00": "bbc/tech: mobile, phone", "domain_01": "domain_01"}
    assert _wandb_summary(metrics, labels) == {
        "final/val/target_loss": 4.0,
        "final/val/domain/domain_00 (bbc/tech: mobile, phone)": 5.0,
        "final/val/domain/domain_01": 6.0,  # no label beyond its name (synthetic data)
    }


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("trian.tokens=5", "trian"),
        ("mixer.wieghts=natural", "wieghts"),
        ("model.n_layers=2", "n_layers"),
    ],
)
def test_a_misspelt_key_fails_naming_it(override, key):
    with pytest.raises((ConfigCompositionException, ConfigKeyError)) as error:
        compose_config(override)
    assert key in str(error.value) + str(error.value.__cause__)


def test_a_wrong_type_fails_naming_the_key():
    with pytest.raises((ConfigCompositionException, ValidationError)) as error:
        compose_config("train.tokens=lots")
    message = str(error.value) + str(error.value.__cause__)
    assert "train.tokens" in message and "lots" in message


@pytest.mark.slow
def test_an_unknown_mixer_lists_the_available_ones():
    proc = run_train_cli("mixer=no_such_mixer")
    assert proc.returncode == 1
    # One line, without Hydra's report, and without the mixers' schemas among the choices.
    assert proc.stderr.startswith("error: mixer=no_such_mixer: no such option")
    assert proc.stderr.count("\n") == 1 and "uniform" in proc.stderr
    assert "_schema" not in proc.stderr and "dga_dr," in proc.stderr


def run_in_process(main, *args: str) -> tuple[int, str]:
    """`python -m <main's module> <args>` in this process: its exit status and stderr."""
    import contextlib
    import io

    from experiments.cli import run_app

    argv = ["app", "--config-path", str(CONF_DIR), "hydra/job_logging=none", *args]
    stderr = io.StringIO()
    with (
        pytest.MonkeyPatch.context() as patch,
        contextlib.redirect_stderr(stderr),
        pytest.raises(SystemExit) as exit,
    ):
        patch.setattr("sys.argv", argv)
        run_app(main)
    return exit.value.code, stderr.getvalue()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["mixer=dgaa"], "mixer=dgaa: no such option (did you mean mixer=dga?); available: aioli,"),
        (["train.tokens=-5"], "train.tokens=-5 is less than one training step"),
        (
            ["mixer=dga", "mixer.alignment=backwrd"],
            "mixer.alignment: Invalid value 'backwrd', expected one of [backward, finite_diff",
        ),
        (["mixer.wieghts=natural"], "(did you mean mixer.weights?)"),
        (["data=files", "data.paths=[{tmp}/missing/*.jsonl]"], "(from data.paths)"),
        (["data=files"], "data.paths is empty: data.source=files reads"),
        (["data=files", "data.paths=[{tmp}/a.txt]"], "data.specialist.paths is empty"),
        (["data=files", "data/specialist=stdlib"], "'data.specialist.paths=[task/*.jsonl]'"),
    ],
    ids=[
        "unknown-option",
        "negative-budget",
        "bad-value",
        "misspelt-key",
        "misspelt-path",
        "no-paths",
        "no-specialist-paths",
        "demo-preset-with-files",
    ],
)
def test_a_users_mistake_ends_in_one_line_naming_it(args, message, tmp_path):
    """What the user reads: one line naming the option and what to do, exit status 1, no
    traceback; data is never prepared (the cache stays empty)."""
    from experiments.train import main

    (tmp_path / "a.txt").write_text("a document")
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    status, stderr = run_in_process(main, *args, f"hydra.run.dir={tmp_path}/run")
    assert status == 1
    assert stderr.startswith("error: ") and stderr.count("\n") == 1, stderr
    assert message in stderr and "HYDRA_FULL_ERROR=1" in stderr
    assert "Traceback" not in stderr and "+data/specialist" not in stderr


def test_preparation_reports_a_mistake_in_one_line_and_full_error_raises_it(tmp_path, monkeypatch):
    from experiments import cli
    from experiments.prepare import main

    status, stderr = run_in_process(main, "data=files", f"hydra.run.dir={tmp_path}")
    assert status == 1 and stderr.startswith("error: data.paths is empty")
    # HYDRA_FULL_ERROR=1: the error itself, with its traceback, as Hydra raises it.
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    monkeypatch.setattr(cli, "TRACEBACK_WANTED", True)
    monkeypatch.setattr("sys.argv", ["app", "--config-path", str(CONF_DIR), "data=files"])
    with pytest.raises(ValueError, match=r"data\.paths is empty"):
        cli.run_app(main)


def test_a_failing_run_records_the_error(tmp_path):
    cfg = compose_config(*FAST, "data.target_domains=[0,99]")
    with pytest.raises(ValueError, match="target_domains"):
        train(cfg, tmp_path)
    results = read_results(tmp_path)
    assert results["status"] == "failed"
    assert results["error"]["type"] == "ValueError"
    assert "target_domains" in results["error"]["message"]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("options", "saved_by_automatic_optimization"),
    [
        (["trainer.precision=32-true"], False),
        (["trainer.precision=bf16-mixed"], False),
        (["train.compile=true", "model.n_layer=1"], False),
        (["trainer.precision=32-true"], True),
    ],
    ids=["fp32", "bf16-mixed", "compiled", "from-automatic-optimization"],
)
def test_resumed_run_matches_the_uninterrupted_one(
    tmp_path, options, saved_by_automatic_optimization
):
    """A run continued from a mid-run checkpoint ends exactly where the uninterrupted run does:
    in full precision, under bf16 autocast on the CPU (`trainer.precision=bf16-mixed`), with
    the model compiled for the training step (`train.compile=true`; one layer: less to compile),
    and from a checkpoint saved when the module still used Lightning's automatic optimization
    (which counted the steps in another part of the loop state)."""
    overrides = (
        *FAST,
        "train.checkpoint_every=20",
        "mixer.weights=natural",
        "seed=3",
        *options,
    )
    full = train(compose_config(*overrides), tmp_path / "full")

    # The full run saved at step 20 and, completed, its final state at 32 (last.ckpt; the
    # step-20 one is kept as previous.ckpt): continue a copy of the step-20 one, with the metric
    # log the run had written (rows after step 20 are re-made).
    resumed_dir = tmp_path / "resumed"
    (resumed_dir / "checkpoints").mkdir(parents=True)
    shutil.copy(tmp_path / "full/checkpoints/previous.ckpt", resumed_dir / "checkpoints/last.ckpt")
    shutil.copy(tmp_path / "full/metrics.csv", resumed_dir / "metrics.csv")
    if saved_by_automatic_optimization:
        checkpoint = torch.load(resumed_dir / "checkpoints/last.ckpt", weights_only=True)
        loop = checkpoint["loops"]["fit_loop"]
        manual = loop["epoch_loop.manual_optimization.optim_step_progress"]
        automatic = loop["epoch_loop.automatic_optimization.optim_progress"]["optimizer"]
        assert manual["total"]["completed"] == 20
        automatic["step"] = copy.deepcopy(manual)
        for progress in manual.values():
            progress.update(ready=0, completed=0)
        torch.save(checkpoint, resumed_dir / "checkpoints/last.ckpt")
    resumed = train(compose_config(*overrides), resumed_dir)

    assert resumed["steps"] == full["steps"] == 32
    assert resumed["tokens_trained"] == full["tokens_trained"]
    assert resumed["metrics_initial"] == full["metrics_initial"]  # carried in the checkpoint
    assert resumed["domain_epochs"] == full["domain_epochs"]  # same sequences drawn
    assert resumed["metrics_final"] == pytest.approx(full["metrics_final"], rel=1e-6)

    # The metric history survives the resume: same validation points, none of them twice.
    def validation_rows(run_dir):
        with open(run_dir / "metrics.csv", newline="") as f:
            rows = [r for r in csv.DictReader(f) if r["val/target_loss"]]
        return [(int(r["step"]), round(float(r["val/target_loss"]), 5)) for r in rows]

    assert validation_rows(resumed_dir) == validation_rows(tmp_path / "full")


@pytest.mark.slow
def test_rerunning_a_completed_run_skips_it_and_guards_its_directory(tmp_path):
    cfg = compose_config(*FAST)
    first = train(cfg, tmp_path)
    again = train(cfg, tmp_path)
    assert again == json.loads((tmp_path / "results.json").read_text()) == first
    with pytest.raises(RuntimeError, match="different config"):
        train(compose_config(*FAST, "seed=1"), tmp_path)
    # A record from before an option existed (`train.compile` here) is the same run when the
    # option holds its default, and a different one when it does not.
    record = json.loads((tmp_path / "results.json").read_text())
    del record["config"]["train"]["compile"]
    (tmp_path / "results.json").write_text(json.dumps(record))
    assert train(cfg, tmp_path)["status"] == "completed"
    with pytest.raises(RuntimeError, match="different config"):
        train(compose_config(*FAST, "train.compile=true"), tmp_path)


@pytest.mark.parametrize(
    ("overrides", "valid"),
    [
        (("mixer=dga", "mixer.alignment=backwrd"), "backward, finite_difference"),
        (("mixer=dga", "mixer.eta_schedule=cosine"), "constant, lr"),
        (("mixer=dga", "mixer.normalize=l2"), "none, max_abs"),
        (("mixer=dga_dr", "mixer.bases=fine"), "coarse, multiscale, identity"),
        (("mixer=doge", "mixer.mode=univ"), "universal, target"),
        (("mixer=doge", "mixer.reweighted_gradient=clip"), "clipped, unclipped"),
        (("mixer=uniform", "mixer.weights=natrual"), "uniform, natural"),
        (("mixer=static", "mixer.which=last"), "final, time_averaged"),
    ],
)
def test_a_wrong_choice_fails_at_composition_listing_the_valid_ones(overrides, valid):
    with pytest.raises((ConfigCompositionException, ValidationError)) as error:
        compose_config(*overrides)
    assert valid in str(error.value) + str(error.value.__cause__)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (("mixer=dga", "mixer.eta=-1"), "eta > 0"),
        (("mixer=doge", "mixer.grad_clip=0"), "grad_clip"),
        (("mixer=static",), "exactly one of"),
        (("train.tokens=0",), "less than one training step"),
        (("train.tokens=255",), "less than one training step"),  # 8 x 32 tokens a step
        (
            (
                "mixer=dga",
                "mixer.alignment=finite_difference",
                "mixer.grad_clip=null",
                "trainer.precision=bf16-true",
            ),
            "32-bit parameters",
        ),
        (("+trainer.gradient_clip_val=1.0",), "train.grad_clip"),
        (("+trainer.accumulate_grad_batches=4",), "accumulate_grad_batches is not supported"),
    ],
)
def test_config_mistakes_fail_before_any_data_is_prepared(overrides, message, monkeypatch):
    """`data=demo` would embed the corpus for minutes before a mixer is built: the config is
    checked first, by training and by preparation alike."""

    def no_data(*args, **kwargs):
        raise AssertionError("data was loaded or prepared before the config was checked")

    monkeypatch.setattr("experiments.train.load_data", no_data)
    monkeypatch.setattr("experiments.prepare.prepare", no_data)
    cfg = compose_config(
        "data=demo", "logger=csv", "train.batch_size=8", "model.context_length=32", *overrides
    )
    with pytest.raises(ValueError, match=message):
        train(cfg, Path(cfg.paths.cache_dir) / "unused")
    with pytest.raises(ValueError, match=message):
        run_prepare(cfg)


@pytest.mark.slow
def test_a_truncated_last_checkpoint_falls_back_to_the_previous_one(tmp_path):
    """A kill during a save used to leave a truncated last.ckpt, and the re-run failed with a
    zip-archive error. Saves are atomic and keep the previous checkpoint; an unreadable last one
    is skipped with a warning and the run continues exactly from the previous one."""
    overrides = (*FAST, "train.checkpoint_every=10", "seed=5")
    full = train(compose_config(*overrides), tmp_path / "full")
    saved = sorted(p.name for p in (tmp_path / "full/checkpoints").iterdir())
    assert saved == ["last.ckpt", "previous.ckpt"]

    resumed_dir = tmp_path / "resumed"
    shutil.copytree(tmp_path / "full/checkpoints", resumed_dir / "checkpoints")
    last = resumed_dir / "checkpoints/last.ckpt"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    with pytest.warns(UserWarning, match="unreadable.*resuming from .*previous.ckpt"):
        resumed = train(compose_config(*overrides), resumed_dir)
    assert resumed["status"] == "completed" and resumed["steps"] == 32
    assert resumed["metrics_final"] == pytest.approx(full["metrics_final"], rel=1e-6)


def test_resume_reads_only_mixbench_checkpoints_and_safely(tmp_path):
    not_a_checkpoint = tmp_path / "notes.txt"
    not_a_checkpoint.write_text("hello")
    with pytest.raises(ValueError, match="unreadable"):
        train(compose_config(*FAST, f"train.resume={not_a_checkpoint}"), tmp_path / "a")
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(ValueError, match="not a mixbench checkpoint"):
        train(compose_config(*FAST, f"train.resume={foreign}"), tmp_path / "b")
    unsafe = tmp_path / "unsafe.ckpt"
    torch.save({"mixbench": Path("/")}, unsafe)  # an arbitrary object: weights_only refuses it
    with pytest.raises(ValueError, match="unreadable"):
        train(compose_config(*FAST, f"train.resume={unsafe}"), tmp_path / "c")


def test_mixer_label_names_only_options_that_differ_from_the_mixer_defaults():
    assert mixer_label({"name": "uniform", "update_every": 0, "weights": "uniform"}) == "uniform"
    assert (
        mixer_label({"name": "uniform", "update_every": 0, "weights": "natural"})
        == "uniform[weights=natural]"
    )
    assert mixer_label({"name": "uniform", "update_every": 5}) == "uniform[update_every=5]"
    # A mixer this checkout does not know keeps its bare name.
    assert mixer_label({"name": "mystery", "alpha": 1}) == "mystery"
    # conf/mixer/dga_ema.yaml is dga with beta 0.5: labelled against dga's defaults.
    assert mixer_label({"name": "dga", "beta": 0.5}) == "dga[beta=0.5]"


def test_relabel_labels_records_written_before_runs_labelled_themselves(tmp_path):
    old = {"status": "completed", "mixer": "dga", "config": {"mixer": {"name": "dga", "beta": 0.5}}}
    labelled = {**old, "mixer_label": "kept"}
    running = {**old, "status": "running"}
    for name, record in (("old", old), ("labelled", labelled), ("running", running)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "results.json").write_text(json.dumps(record))
    assert relabel_main([str(tmp_path)]) == 0
    assert read_results(tmp_path / "old")["mixer_label"] == "dga[beta=0.5]"
    assert read_results(tmp_path / "labelled")["mixer_label"] == "kept"
    assert read_results(tmp_path / "running")["mixer_label"] is None  # its run writes its own


@pytest.mark.slow
def test_training_metrics_are_logged_and_read_only_on_logging_steps(tmp_path, monkeypatch):
    """The loggers write train/* every `train.log_every` steps, as before, and the progress bar
    reads the metrics (`.item()` on each: a host sync on a GPU) only on those steps."""
    from experiments import progress

    monkeypatch.setattr(progress, "interactive", lambda: True)  # the rich bar: a terminal's
    reads = []
    original = progress.RichProgressBar._update_metrics

    def counted(self, trainer, pl_module):
        if trainer.training:
            reads.append(trainer.global_step)
        original(self, trainer, pl_module)

    monkeypatch.setattr(progress.RichProgressBar, "_update_metrics", counted)
    record = train(compose_config(*FAST, "train.log_every=8"), tmp_path)
    assert record["steps"] == 32
    with open(tmp_path / "metrics.csv") as f:
        rows = [r for r in csv.DictReader(f) if r["train/loss"]]
    # Lightning's `step` column is the step count after the step: 8, 16, 24, 32 minus one.
    assert [int(r["step"]) for r in rows] == [7, 15, 23, 31]
    assert all(float(r["train/tokens"]) > 0 and float(r["train/lr"]) > 0 for r in rows)
    assert set(reads) == {8, 16, 24, 32}  # (and once more at the end of the epoch)


@pytest.mark.slow
def test_the_progress_bar_says_training_not_an_epoch_count(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("experiments.progress.interactive", lambda: True)
    train(compose_config(*FAST), tmp_path)
    shown = capsys.readouterr().out
    assert "Training" in shown and "Epoch" not in shown


def test_progress_bars_in_a_log_file_are_plain_lines(capsys):
    """Redrawn in place, a tqdm bar (the embedding step's) would be one huge line of carriage
    returns in a log file: there it is a line when it starts, now and then, and when done."""
    from tqdm import tqdm

    from experiments.progress import readable_progress

    print("before", file=sys.stderr)
    with readable_progress(every_s=3600):
        for _ in tqdm(range(1000), desc="embedding", mininterval=0):
            pass
        print("a warning", file=sys.stderr)
    lines = capsys.readouterr().err.split("\n")
    assert "\r" not in "".join(lines)
    assert lines[0] == "before" and lines[-2:] == ["a warning", ""]
    assert lines[1].startswith("embedding:   0%") and "0/1000" in lines[1]
    assert lines[2].startswith("embedding: 100%") and "1000/1000" in lines[2]
    assert len(lines) == 5


def test_gradients_are_clipped_after_the_fp16_loss_scaler_unscales_them():
    """The module takes its own optimizer step. Under fp16 mixed precision the gradients are
    scaled by the loss scale (2^16 here) until the scaler unscales them inside the step; clipped
    before that, they reached the optimizer at grad_clip / 2^16. The scaler runs on the CPU here
    (Lightning maps `16-mixed` to bf16 on a CPU, so the plugin is built by hand)."""
    data = generate(SyntheticDataConfig(num_domains=2, sequences_per_domain=16), seq_len=32)
    torch.manual_seed(0)
    model_cfg = GPTConfig(vocab_size=data.vocab_size, context_length=32, n_layer=1, d_model=32)
    mixer = build_mixer(UniformConfig(), data.mixer_view())
    lm = MixtureLM(model_cfg, TrainConfig(batch_size=4, grad_clip=1e-3), data, mixer, 0, 3)
    norms = []

    def record_norm(optimizer, args, kwargs):
        grads = [p.grad for group in optimizer.param_groups for p in group["params"]]
        norms.append(float(torch.nn.utils.get_total_norm([g for g in grads if g is not None])))

    class RecordNorms(L.Callback):
        def on_train_start(self, trainer, module):
            trainer.optimizers[0].register_step_pre_hook(record_norm)

    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**16)
    trainer = L.Trainer(
        accelerator="cpu",
        max_steps=3,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        plugins=[MixedPrecision("16-mixed", "cpu", scaler=scaler)],
        callbacks=[RecordNorms()],
    )
    trainer.fit(lm)
    assert norms == pytest.approx([1e-3] * 3, rel=1e-3)
