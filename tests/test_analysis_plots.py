"""Plot functions on hand-made runs: which figures are drawn, from which numbers, in which colours.
(The figures of a real sweep are checked in test_analysis_sweep.py.)"""

from __future__ import annotations

import logging

import numpy as np
import pytest
from matplotlib.colors import to_hex

from analysis.plots import (
    PALETTE,
    mixer_colours,
    plot_overhead,
    plot_scaling,
    plot_weight_trajectories,
    write_plots,
)
from analysis.results import load_runs
from tests.test_analysis_results import write_run


def _errorbar_lines(ax):
    """{legend label: (x, y)} of the error-bar lines of an axes."""
    handles, labels = ax.get_legend_handles_labels()
    return {
        label: tuple(np.asarray(v).tolist() for v in handle.lines[0].get_data())
        for handle, label in zip(handles, labels, strict=True)
    }


def test_loss_against_domain_count_and_cap_with_error_bars(tmp_path):
    for k, cap, seed, target in [
        (4, 2048, 0, 3.0),
        (4, 2048, 1, 3.2),
        (8, 2048, 0, 2.5),
        (8, 4096, 0, 2.0),
    ]:
        write_run(tmp_path, f"k{k}c{cap}s{seed}", num_domains=k, tokens_per_domain=cap, seed=seed)
        write_run(
            tmp_path,
            f"dga_k{k}c{cap}s{seed}",
            mixer="dga",
            num_domains=k,
            tokens_per_domain=cap,
            seed=seed,
            target=target,
        )
    runs = load_runs([tmp_path])

    by_k = plot_scaling(runs, "num_domains")
    # Only the 2048-token cap has runs at both k, so one panel.
    assert len([ax for ax in by_k.axes if ax.get_visible()]) == 1
    lines = _errorbar_lines(by_k.axes[0])
    assert lines["dga (1-2 seeds)"] == ([4.0, 8.0], [pytest.approx(3.1), pytest.approx(2.5)])
    assert by_k.axes[0].get_xlabel() == "number of domains k"
    # Each mixer is drawn a few points beside its x (so error bars do not overlap), no further.
    ax = by_k.axes[0]
    shifts = []
    for handle in ax.get_legend_handles_labels()[0]:
        points = np.column_stack(handle.lines[0].get_data())
        shift = handle.lines[0].get_transform().transform(points) - ax.transData.transform(points)
        assert np.allclose(shift[:, 1], 0) and np.allclose(shift[:, 0], shift[0, 0])
        shifts.append(shift[0, 0] * 72 / by_k.dpi)  # pixels -> points
    assert shifts == pytest.approx([-2.5, 2.5])

    by_cap = plot_scaling(runs, "tokens_per_domain")
    assert len([ax for ax in by_cap.axes if ax.get_visible()]) == 1  # only k=8 varies the cap
    assert _errorbar_lines(by_cap.axes[0])["dga (1 seeds)"] == ([2048.0, 4096.0], [2.5, 2.0])
    assert by_cap.axes[0].get_title() == ""  # a single panel: its setting is in the suptitle
    assert "k=8" in by_cap.get_suptitle()


def test_an_axis_the_sweep_does_not_vary_is_skipped_with_a_message(tmp_path, caplog):
    write_run(tmp_path, "a", tokens=1000)
    write_run(tmp_path, "b", tokens=2000)
    runs = load_runs([tmp_path])
    with caplog.at_level(logging.INFO):
        assert plot_scaling(runs, "num_domains") is None
        assert plot_weight_trajectories(runs) is None
    assert "the runs do not vary num_domains" in caplog.text
    assert "no run of an online mixer" in caplog.text
    assert plot_scaling(runs, "train_tokens") is not None
    with pytest.raises(ValueError, match="axis must be one of"):
        plot_scaling(runs, "lr")
    written = write_plots(runs, tmp_path / "plots")
    assert sorted(p.name for p in written) == ["loss_vs_train_tokens.png", "overhead.png"]


def test_a_mixer_keeps_its_colour_and_variants_get_shades():
    colours = mixer_colours(["uniform", "dga", "uniform[weights=natural]", "newmixer"])
    assert colours["dga"] == PALETTE["dga"] and colours["uniform"] == PALETTE["uniform"]
    assert colours["uniform[weights=natural]"] not in (PALETTE["uniform"], *PALETTE.values())
    assert mixer_colours(["newmixer"])["newmixer"] == colours["newmixer"]  # stable across sets
    assert len(set(colours.values())) == 4


def test_overhead_bars_use_the_mixer_colours_and_relative_time(tmp_path):
    write_run(tmp_path, "u", train_seconds=10.0)
    write_run(tmp_path, "d", mixer="dga", train_seconds=15.0, probe_tokens=250)
    fig = plot_overhead(load_runs([tmp_path]))
    probe_ax, time_ax = fig.axes[:2]
    labels = [t.get_text() for t in probe_ax.get_yticklabels()]
    assert labels == ["dga", "uniform"]
    assert [bar.get_width() for bar in probe_ax.patches] == pytest.approx([25.0, 0.0])
    assert [bar.get_width() for bar in time_ax.patches] == pytest.approx([50.0, 0.0])
    assert [to_hex(bar.get_facecolor()) for bar in time_ax.patches] == [
        PALETTE["dga"],
        PALETTE["uniform"],
    ]


def test_overhead_without_uniform_shows_absolute_time(tmp_path):
    write_run(tmp_path, "d", mixer="dga", train_seconds=4.0, tokens=2000)
    fig = plot_overhead(load_runs([tmp_path]))
    time_ax = fig.axes[1]
    assert time_ax.get_xlabel() == "time in training steps per 1,000 tokens (s)"
    assert [bar.get_width() for bar in time_ax.patches] == pytest.approx([2.0])
