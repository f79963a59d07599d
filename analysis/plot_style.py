"""The colour and linestyle of every mixer variant, the same in every figure (the plots, the
findings report).

A mixer has a fixed colour (`PALETTE`); a mixer not listed gets a spare one, and its variants
(`uniform[weights=natural]`) get lighter or darker shades of its colour. Past DISTINCT_COLOURS
lines in a figure, linestyles cycle too.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable

import numpy as np
from matplotlib.colors import to_hex, to_rgb

# A fixed colour per mixer name (matplotlib's qualitative tab10, then two more); names not listed
# get one of SPARE (Dark2) not yet taken in the figure, starting from a hash of the name.
PALETTE = {
    "uniform": "#555555",
    "importance": "#ff7f0e",
    "doge": "#2ca02c",
    "dga": "#1f77b4",
    "dga_dr": "#9467bd",
    "static": "#8c564b",
    "doremi": "#d62728",
    "aioli": "#e377c2",
    "odm": "#bcbd22",
    "regmix": "#17becf",
    "importance_smoothed": "#e6ab02",
    "dga_unbounded": "#000080",
}
SPARE = ("#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#a6761d")
# Variants of one mixer: its colour, then lighter / darker shades (negative: towards black).
SHADES = (0.0, 0.45, -0.4, 0.7, -0.65)
# Past this many lines in a figure, linestyles cycle too.
DISTINCT_COLOURS = 10
LINESTYLES = ("-", "--", ":", "-.")


def base_name(label: str) -> str:
    return label.split("[", 1)[0]


def _shade(colour: str, amount: float) -> str:
    rgb = np.array(to_rgb(colour))
    towards = np.ones(3) if amount > 0 else np.zeros(3)
    return to_hex(rgb + abs(amount) * (towards - rgb))


def _spare_colour(name: str, taken: set[str]) -> str:
    """The first colour of SPARE not in `taken`, from a position set by a hash of `name` (so a
    new mixer keeps its colour from figure to figure unless another one took it first)."""
    start = zlib.crc32(name.encode()) % len(SPARE)
    ring = SPARE[start:] + SPARE[:start]
    return next((colour for colour in ring if colour not in taken), ring[0])


def mixer_colours(labels: Iterable[str]) -> dict[str, str]:
    """Colour per mixer variant: the mixer's palette colour for its default variant, shades of it
    for the others (in sorted order), so every figure built from the same runs agrees."""
    colours = {}
    labels = sorted(set(labels))
    names = sorted({base_name(label) for label in labels})
    taken = {PALETTE[name] for name in names if name in PALETTE}
    for name in names:
        colour = PALETTE.get(name) or _spare_colour(name, taken)
        taken.add(colour)
        variants = [label for label in labels if base_name(label) == name and label != name]
        colours[name] = colour
        for i, label in enumerate(variants, start=1):
            colours[label] = _shade(colour, SHADES[i % len(SHADES)])
    return colours


def mixer_linestyles(labels: Iterable[str]) -> dict[str, str]:
    """Linestyle per mixer variant: solid for the first DISTINCT_COLOURS (in sorted order), then
    dashed, dotted..., so that many lines stay apart where colours run short."""
    return {
        label: LINESTYLES[(i // DISTINCT_COLOURS) % len(LINESTYLES)]
        for i, label in enumerate(sorted(set(labels)))
    }
