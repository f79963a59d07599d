"""Plot functions on hand-made runs: which figures are drawn, from which numbers, in which colours.
(The figures of a real sweep are checked in test_analysis_sweep.py.)"""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
from matplotlib.colors import to_hex
from matplotlib.container import BarContainer

from analysis.plot_style import PALETTE, mixer_colours, mixer_linestyles
from analysis.plots import (
    plot_gains,
    plot_overhead,
    plot_scaling,
    plot_weight_trajectories,
    write_plots,
)
from analysis.results import load_runs
from tests.run_records import FLOPS_PER_TOKEN, write_run


def _errorbar_lines(ax):
    """{legend label: (x, y)} of the error-bar lines of an axes."""
    handles, labels = ax.get_legend_handles_labels()
    return {
        label: tuple(np.asarray(v).tolist() for v in handle.lines[0].get_data())
        for handle, label in zip(handles, labels, strict=True)
    }


def _error_bars(ax) -> dict[str, list[float]]:
    """{legend label: the x of every error bar drawn} of the error-bar lines of an axes (a bar
    is a non-empty segment; its caps are drawn only where the bar is)."""
    handles, labels = ax.get_legend_handles_labels()
    bars = {}
    for handle, label in zip(handles, labels, strict=True):
        _, caps, (segments,) = handle.lines
        drawn = [s for s in segments.get_segments() if len(s) and np.isfinite(s).all()]
        for cap in caps:
            assert np.isfinite(cap.get_xydata()).all(axis=1).sum() == len(drawn)
        bars[label] = [float(s[0, 0]) for s in drawn]
    return bars


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
    # An error bar where two seeds ran (k=4), none from the single run at k=8.
    assert len(_error_bars(by_k.axes[0])["dga (1-2 seeds)"]) == 1
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
    assert _errorbar_lines(by_cap.axes[0])["dga (1 seed)"] == ([2048.0, 4096.0], [2.5, 2.0])
    assert _error_bars(by_cap.axes[0]) == {"dga (1 seed)": [], "uniform (1 seed)": []}
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


def _bar_widths(ax) -> dict[str, float]:
    labels = [t.get_text() for t in ax.get_yticklabels()]
    return dict(zip(labels, [bar.get_width() for bar in ax.patches], strict=True))


def test_overhead_is_flops_and_the_time_share_within_each_run(tmp_path):
    write_run(tmp_path, "u", train_seconds=10.0)
    write_run(
        tmp_path,
        "d",
        mixer="dga",
        train_seconds=30.0,  # slower, but that is no cost measure across runs
        mixer_seconds=6.0,
        mixer_flops=0.5 * 1000 * FLOPS_PER_TOKEN,
        probe_tokens=250,
    )
    fig = plot_overhead(load_runs([tmp_path]))
    compute_ax, time_ax, probe_ax = fig.axes[:3]
    assert [ax.get_title() for ax in (compute_ax, time_ax, probe_ax)] == [
        "Extra compute",
        "Time in mixer updates (within each run)",
        "Extra data read",
    ]
    assert _bar_widths(compute_ax) == pytest.approx({"dga": 50.0, "uniform": 0.0})
    assert _bar_widths(time_ax) == pytest.approx({"dga": 20.0, "uniform": 0.0})
    assert _bar_widths(probe_ax) == pytest.approx({"dga": 25.0, "uniform": 0.0})
    assert [to_hex(bar.get_facecolor()) for bar in compute_ax.patches] == [
        PALETTE["dga"],
        PALETTE["uniform"],
    ]
    labels = " ".join(ax.get_xlabel() + ax.get_title() for ax in fig.axes).lower()
    assert "vs uniform" not in labels and "per 1,000 tokens" not in labels


def _overhead_error_bars(ax) -> int:
    """The error bars drawn on an overhead panel (finite segments of its bar container)."""
    (bars,) = [c for c in ax.containers if isinstance(c, BarContainer)]
    if bars.errorbar is None:
        return 0
    (segments,) = bars.errorbar.lines[2]
    return sum(len(s) > 0 and np.isfinite(s).all() for s in segments.get_segments())


def test_overhead_draws_no_error_bar_from_a_single_run(tmp_path):
    write_run(tmp_path, "u", train_seconds=10.0)
    write_run(tmp_path, "d", mixer="dga", mixer_flops=0.5 * 1000 * FLOPS_PER_TOKEN)
    fig = plot_overhead(load_runs([tmp_path]))
    assert [_overhead_error_bars(ax) for ax in fig.axes[:3]] == [0, 0, 0]
    # A second dga seed with other costs: dga's bars get an error bar, uniform's still none.
    write_run(tmp_path, "d1", mixer="dga", seed=1, mixer_flops=0.3 * 1000 * FLOPS_PER_TOKEN)
    compute_ax = plot_overhead(load_runs([tmp_path])).axes[0]
    assert _overhead_error_bars(compute_ax) == 1


def test_overhead_of_runs_without_flops_is_not_available(tmp_path):
    write_run(tmp_path, "d", mixer="dga", legacy=True)
    compute_ax = plot_overhead(load_runs([tmp_path])).axes[0]
    assert _bar_widths(compute_ax) == {"dga": 0.0}
    assert [t.get_text() for t in compute_ax.texts] == ["n/a"]


def test_gain_panel_shows_paired_intervals_or_says_there_is_none(tmp_path):
    for seed, (uniform, dga) in enumerate([(3.0, 2.90), (3.1, 2.98), (3.2, 3.06)]):
        write_run(tmp_path, f"u{seed}", seed=seed, target=uniform)
        write_run(tmp_path, f"d{seed}", mixer="dga", seed=seed, target=dga)
    write_run(tmp_path, "i", mixer="importance", target=3.05)
    fig = plot_gains(load_runs([tmp_path]))
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["dga", "importance"]
    # dga: uniform - dga = 0.10, 0.12, 0.14 -> 0.12 ± 4.302653 * 0.02 / √3.
    half = 4.302653 * 0.02 / np.sqrt(3)
    (segment,) = ax.collections[0].get_segments()
    assert segment[:, 0] == pytest.approx([0.12 - half, 0.12 + half], abs=1e-6)
    assert [t.get_text() for t in ax.texts] == [
        "+0.1200 [+0.0703, +0.1697] *",
        "1 seed: no interval",
    ]
    assert len(ax.collections) == 1  # importance: a point, no error bar


def test_gain_panel_needs_a_uniform_run(tmp_path, caplog):
    write_run(tmp_path, "d", mixer="dga")
    with caplog.at_level(logging.INFO):
        assert plot_gains(load_runs([tmp_path])) is None
    assert "no mixer shares a seed with a uniform run" in caplog.text


def test_weight_legend_names_domains_by_their_labels(tmp_path):
    labels = {
        "domain_00": "bbc/sport: match, team, win",
        "domain_01": "bbc/tech: phone, mobile, users",
    }
    run = write_run(
        tmp_path, "d", mixer="dga", mixer_options={"update_every": 10}, domain_labels=labels
    )
    # One update, at step 0: the trajectory holds one row, yet the mixer is an online one.
    (run / "weights.csv").write_text("step,domain_00,domain_01\n0,0.3,0.7\n")
    fig = plot_weight_trajectories(load_runs([tmp_path]))
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert legend == ["bbc/sport: match, team", "bbc/tech: phone, mobile"]
    assert fig.axes[0].get_title() == "dga (1 seed)"


TOPICS = ("sport", "tech", "business", "politics")
LABELS = {f"domain_{i:02d}": f"bbc/{TOPICS[i // 4]}: word{i}, other" for i in range(16)}


def _online_run(root, name, mixer, seed, components, artifacts=None):
    """A run of a mixer over the 16 LABELS domains whose weights over `components` change at
    steps 0, 5 and 10 (and whose data, with `artifacts`, is that folder's)."""
    run = write_run(root, name, mixer=mixer, seed=seed, num_domains=16, domain_labels=LABELS)
    if artifacts is not None:
        record = json.loads((run / "results.json").read_text())
        record["data"] = {"artifacts": str(artifacts)}
        (run / "results.json").write_text(json.dumps(record))
    rng = np.random.default_rng(seed)
    rows = [
        f"{5 * i}," + ",".join(map(str, w))
        for i, w in enumerate(rng.dirichlet(np.ones(len(components)), size=3))
    ]
    (run / "weights.csv").write_text("\n".join(["step," + ",".join(components), *rows]) + "\n")


def test_weight_trajectories_are_a_readable_grid_with_labelled_legends_below(tmp_path):
    """Three online mixers (the demo's dga, doge and dga_dr over 4 coarse clusters): a grid of
    at most 3 panels a row, not one long strip (3 panels used to make 2145 x 506 pixels); each
    legend below its own panel, naming components by their labels, coarse clusters included
    (from the prepared data's manifest)."""
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    manifest = [
        {"name": name, "coarse": i // 4, "top_origins": [[f"bbc/{TOPICS[i // 4]}", 0.9]]}
        for i, name in enumerate(LABELS)
    ]
    (artifacts / "manifest.json").write_text(json.dumps({"domains": manifest}))
    coarse = [f"coarse_{c}" for c in range(4)]
    for seed in (0, 1):
        _online_run(tmp_path, f"dga{seed}", "dga", seed, list(LABELS), artifacts)
        _online_run(tmp_path, f"doge{seed}", "doge", seed, list(LABELS), artifacts)
    _online_run(tmp_path, "dga_dr", "dga_dr", 0, coarse, artifacts)
    fig = plot_weight_trajectories(load_runs([tmp_path]))
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert len(panels) == 3
    width, height = fig.get_size_inches() * fig.dpi
    assert 0.5 <= width / height <= 2.0, (width, height)
    fig.canvas.draw()
    rows = {round(ax.get_position().y0, 3) for ax in panels}
    assert len(rows) == 2  # two panels on the first row, one on the second
    for ax in panels:
        legend = ax.get_legend().get_window_extent()
        assert legend.y1 <= ax.get_window_extent().y0  # below its panel...
        assert fig.bbox.contains(legend.x0, legend.y0) and fig.bbox.contains(legend.x1, legend.y1)
        for other in panels:  # ... and clear of the others
            assert other is ax or not legend.overlaps(other.get_window_extent())
    titles = {ax.get_title(): ax for ax in panels}
    assert set(titles) == {"dga (2 seeds)", "doge (2 seeds)", "dga_dr (1 seed)"}
    legend = [t.get_text() for t in titles["dga_dr (1 seed)"].get_legend().get_texts()]
    assert sorted(legend) == [f"bbc/{topic} (4 domains)" for topic in sorted(TOPICS)]
    dga = [t.get_text() for t in titles["dga (2 seeds)"].get_legend().get_texts()]
    assert dga[0] == "other (10)" and all(text.startswith("bbc/") for text in dga[1:])
    assert not any("domain_" in text or "coarse_" in text for text in dga + legend)


def test_many_components_keep_distinct_colours_or_hatches(tmp_path):
    # Two panels of 6 domains each, 12 in all: past tab10's 10 colours, hatching.
    domains = list(LABELS)
    _online_run(tmp_path, "dga", "dga", 0, domains[:6])
    _online_run(tmp_path, "doge", "doge", 0, domains[6:12])
    fig = plot_weight_trajectories(load_runs([tmp_path]))
    styles = {}
    for ax in fig.axes:
        if ax.get_visible():
            for area, text in zip(ax.collections, ax.get_legend().get_texts()[::-1], strict=True):
                styles[text.get_text()] = (to_hex(area.get_facecolor()[0]), area.get_hatch())
    named = {k: v for k, v in styles.items() if not k.startswith("other")}
    assert len(named) == 12 and len(set(named.values())) == 12
    assert {hatch for _, hatch in named.values()} == {"", "///"}


def test_mixers_get_distinct_colours_and_past_ten_lines_linestyles_too(tmp_path):
    mixers = [*PALETTE, "newmixer", "othermixer"]
    colours = mixer_colours(mixers)
    assert len(set(colours.values())) == len(mixers)
    styles = mixer_linestyles(mixers)
    assert list(styles.values()).count("-") == 10
    assert len({(colours[m], styles[m]) for m in mixers}) == len(mixers)
    for mixer in mixers:
        for tokens in (1000, 2000):
            write_run(tmp_path, f"{mixer}{tokens}", mixer=mixer, tokens=tokens)
    ax = plot_scaling(load_runs([tmp_path]), "train_tokens").axes[0]
    handles, labels = ax.get_legend_handles_labels()
    drawn = {(to_hex(h.lines[0].get_color()), h.lines[0].get_linestyle()) for h in handles}
    assert len(drawn) == len(labels) == len(mixers)
