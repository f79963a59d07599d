"""Plots, CLIs and notebooks on a real tiny sweep: uniform and DGA, two seeds, two token budgets,
trained once per module by `python -m experiments.train -m`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nbformat
import numpy as np
import pytest
from matplotlib.colors import to_hex
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from analysis.leaderboard import aggregate
from analysis.plot_style import PALETTE
from analysis.plots import (
    FIGURES,
    plot_gains,
    plot_loss_curves,
    plot_overhead,
    plot_scaling,
    plot_weight_trajectories,
)
from analysis.plots import main as plots_main
from analysis.report import write_report
from analysis.results import load_runs
from tests.conftest import FAST, ROOT

pytestmark = pytest.mark.slow

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
BUDGETS = (1024, 2048)  # 8 and 16 steps of 4 x 32 tokens; DGA updates every 10 steps
NOTEBOOKS = ("compare_mixers.ipynb", "sweep_trends.ipynb")


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    ours = ("train.tokens=", "train.eval_every=", "train.batch_size=")
    overrides = [o for o in FAST if not o.startswith(ours)]
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "experiments.train",
            "-m",
            "mixer=uniform,dga",
            "seed=0,1",
            f"train.tokens={','.join(map(str, BUDGETS))}",
            "train.eval_every=4",
            "train.batch_size=4",
            "model.n_layer=1",
            "model.d_model=32",
            "model.n_head=2",
            *overrides,
            f"hydra.sweep.dir={root}",
            "hydra.sweep.subdir=${hydra.job.num}",  # the default (all overrides) is too long
        ],
        cwd=ROOT,
        # One thread: these tiny models gain nothing from more, and lose a lot on a busy machine.
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root


@pytest.fixture(scope="module")
def runs(sweep):
    return load_runs([sweep])


def test_the_sweep_loads_as_eight_completed_runs(runs):
    assert len(runs) == 8 and set(runs["status"]) == {"completed"}
    assert sorted(runs["mixer_label"].unique()) == ["dga", "uniform"]
    assert sorted(runs["train_tokens"].unique()) == list(BUDGETS)


def test_write_report_writes_every_figure_the_sweep_supports(sweep, tmp_path, caplog):
    with caplog.at_level("INFO"):
        paths = write_report([sweep], tmp_path)
    names = sorted(p.name for p in paths)
    assert names == sorted(
        [
            "leaderboard.md",
            "leaderboard.csv",
            "leaderboard.html",
            "loss_curves.png",
            "weight_trajectories.png",
            "loss_vs_train_tokens.png",
            "gain_vs_uniform.png",
            "overhead.png",
        ]
    )
    for path in paths:
        if path.suffix == ".png":
            assert path.parent == tmp_path / "plots"
            data = path.read_bytes()
            assert data.startswith(PNG_SIGNATURE) and len(data) > 10_000
    # The sweep varies neither the domain count nor the tokens per domain.
    assert "the runs do not vary num_domains" in caplog.text
    assert "the runs do not vary tokens_per_domain" in caplog.text
    assert set(FIGURES) - set(names) == {"loss_vs_num_domains.png", "loss_vs_tokens_per_domain.png"}


def test_loss_curves_end_at_the_mean_final_loss_in_the_mixer_colour(runs):
    fig = plot_loss_curves(runs)
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in panels] == [f"{b:,} training tokens" for b in BUDGETS]
    for ax, budget in zip(panels, BUDGETS, strict=True):
        lines = {line.get_label(): line for line in ax.get_lines()}
        assert set(lines) == {"dga (2 seeds)", "uniform (2 seeds)"}
        for mixer in ("dga", "uniform"):
            line = lines[f"{mixer} (2 seeds)"]
            final = runs[(runs["mixer_label"] == mixer) & (runs["train_tokens"] == budget)]
            assert line.get_xdata()[-1] == final["tokens_trained"].iloc[0] == budget
            assert line.get_ydata()[-1] == pytest.approx(final["target_loss"].mean(), abs=1e-5)
            assert to_hex(line.get_color()) == PALETTE[mixer]


def test_weight_trajectory_shows_only_the_online_mixer_and_sums_to_one(runs):
    fig = plot_weight_trajectories(runs)
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title().split("\n")[0] for ax in panels] == ["dga (2 seeds)"] * 2
    top = panels[0].collections[-1]  # the last stacked layer's upper edge is the total
    upper = top.get_paths()[0].vertices[:, 1]
    assert upper.max() == pytest.approx(1.0)
    labels = [text.get_text() for text in panels[0].get_legend().get_texts()]
    assert labels[0] == "other (2)" and len(labels) == 7  # top of the stack first; 6 of 8 named
    assert to_hex(panels[0].title.get_color()) == PALETTE["dga"]
    # At the larger budget DGA updated at steps 0 and 10 (1,280 tokens): the areas step there.
    edges = panels[1].collections[-1].get_paths()[0].vertices[:, 0]
    assert {0.0, 1280.0, 2048.0} <= set(np.round(edges))


def test_final_loss_against_budget_has_one_point_per_budget(runs):
    fig = plot_scaling(runs, "train_tokens")
    ax = fig.axes[0]
    for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
        mixer = label.split(" ")[0]
        x, y = handle.lines[0].get_data()
        expected = runs[runs["mixer_label"] == mixer].groupby("train_tokens")["target_loss"].mean()
        assert np.asarray(x).tolist() == list(BUDGETS)
        assert np.asarray(y) == pytest.approx(expected.to_numpy())


def test_dga_spends_compute_and_probe_tokens_and_uniform_none(runs):
    fig = plot_overhead(runs)
    for ax in fig.axes[:3]:
        widths = dict(
            zip(
                [t.get_text() for t in ax.get_yticklabels()],
                [bar.get_width() for bar in ax.patches],
                strict=True,
            )
        )
        assert widths["uniform"] == 0 and widths["dga"] > 0, ax.get_title()


def test_leaderboard_of_the_sweep_pairs_seeds_and_counts_flops(runs):
    board = aggregate(runs)
    dga = board[board["mixer_label"] == "dga"].set_index("train_tokens")
    done = runs[runs["mixer_label"] == "dga"]
    share = (done["mixer_flops"] / done["train_flops"]).groupby(done["train_tokens"]).mean()
    assert dga["compute_overhead"].to_dict() == pytest.approx(share.to_dict())
    assert (dga["compute_overhead"] > 0).all()
    assert (dga["mixer_time_share"].between(0, 1, inclusive="neither")).all()
    # Two seeds: a paired gain, no interval, and nothing that separates the two mixers.
    assert (dga["paired_seeds"] == 2).all() and dga["gain_ci_low"].isna().all()
    assert board["rank"].eq(1).all() and board["rank_tied"].all()
    assert (board["worst_domain_loss"] >= board["generic_loss_mean"]).all()
    gains = plot_gains(runs)
    texts = {t.get_text() for ax in gains.axes for t in ax.texts}
    assert texts == {"2 seeds: no interval"}


def test_plots_cli_writes_into_the_out_directory(sweep, tmp_path, caplog):
    with caplog.at_level("INFO"):
        assert plots_main([str(sweep), "--out", str(tmp_path)]) == 0
    assert "skipped, the runs do not vary num_domains" in caplog.text
    assert len(list((tmp_path / "plots").glob("*.png"))) == 5
    assert not (tmp_path / "leaderboard.md").exists()


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebooks_are_stored_without_outputs(name, monkeypatch):
    notebook = nbformat.read(ROOT / "analysis" / name, as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)
    assert "MIXBENCH_SWEEP" in code[0].source and "parameters" in code[0].metadata["tags"]
    # By default they open what `make demo` writes, found from the repository root.
    monkeypatch.delenv("MIXBENCH_SWEEP", raising=False)
    parameters = {}
    exec(code[0].source, parameters)
    assert parameters["SWEEP"] == "multirun/demo"
    assert "sweep_path(SWEEP)" in code[1].source


def _execute(notebook, sweep: str) -> None:
    """Run `notebook` in analysis/ (where Jupyter starts its kernel) on `sweep`."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MIXBENCH_SWEEP", sweep)
        NotebookClient(
            notebook,
            timeout=120,
            kernel_name="python3",
            resources={"metadata": {"path": str(ROOT / "analysis")}},
        ).execute()


def test_a_notebook_without_its_sweep_says_what_to_do():
    notebook = nbformat.read(ROOT / "analysis" / NOTEBOOKS[0], as_version=4)
    with pytest.raises(CellExecutionError) as error:
        _execute(notebook, "multirun/no-such-sweep")
    message = str(error.value)
    assert f"no sweep at {ROOT / 'multirun/no-such-sweep'}" in message
    assert "run `make demo` first" in message and "MIXBENCH_SWEEP" in message


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebooks_run_with_jupyter_nbconvert(name, sweep, tmp_path):
    """As a user runs them from the repository root: `jupyter nbconvert --to notebook
    --execute analysis/<name>` (MIXBENCH_SWEEP relative to the root, not to analysis/)."""
    jupyter = Path(sys.executable).parent / "jupyter"
    command = [jupyter, "nbconvert", "--to", "notebook", "--execute", f"analysis/{name}"]
    proc = subprocess.run(
        [*command, "--output-dir", str(tmp_path)],
        cwd=ROOT,
        env={**os.environ, "MIXBENCH_SWEEP": os.path.relpath(sweep, ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (executed,) = tmp_path.glob("*.ipynb")  # the notebook with its outputs
    notebook = nbformat.read(executed, as_version=4)
    outputs = [o for cell in notebook.cells for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    assert [o for o in outputs if "image/png" in o.get("data", {})]


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebooks_run_on_the_sweep(name, sweep):
    notebook = nbformat.read(ROOT / "analysis" / name, as_version=4)
    _execute(notebook, str(sweep))
    outputs = [o for cell in notebook.cells for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= (3 if name == "compare_mixers.ipynb" else 1)
    tables = "".join(o.get("data", {}).get("text/plain", "") for o in outputs)
    assert "dga" in tables and "uniform" in tables
    if name == "sweep_trends.ipynb":  # the gain and repetition tables list every budget
        assert all(str(b) in tables for b in BUDGETS)
