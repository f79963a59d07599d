"""The catalogue of mixers: one row per config in conf/mixer/, each a registered mixer or a preset
of one (`python -m mixers` prints it). A mixer's family, reference and cost come from its module's
`SPEC`; a preset's reference is the options it sets, read from its yaml. The README's mixer table
is rows of this catalogue (tests/test_readme.py checks each), so a new mixer needs nothing outside
its module, its yaml and its tests to be listed.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

CONF_DIR = Path(__file__).resolve().parents[1] / "conf" / "mixer"
SCHEMA_PREFIX = "/schema/mixer/"
HEADER = [
    "| mixer | family | reference | extra cost (beyond the training steps) | config |",
    "|---|---|---|---|---|",
]


def _schema_of(preset: dict, path: Path) -> str:
    """The mixer a conf/mixer yaml configures: the schema its defaults list starts from."""
    for entry in preset.get("defaults", []):
        if isinstance(entry, str) and entry.startswith(SCHEMA_PREFIX):
            return entry.removeprefix(SCHEMA_PREFIX).split("@", 1)[0]
    raise ValueError(f"{path}: its defaults list names no {SCHEMA_PREFIX}<mixer> schema")


def _value(value: object) -> str:
    return "null" if value is None else str(value)


def row(path: Path) -> str:
    """The catalogue row of one conf/mixer yaml."""
    from mixers import mixer_spec  # the registry imports every module here, this one too

    preset = OmegaConf.to_container(OmegaConf.load(path))
    spec = mixer_spec(_schema_of(preset, path))
    options = {k: v for k, v in preset.items() if k not in ("defaults", "name", "label")}
    if path.stem == spec.name and not options:
        reference, cost = spec.reference, spec.cost
    else:
        settings = ", ".join(f"{k} = {_value(v)}" for k, v in options.items())
        reference = f"`{spec.name}` with {settings}" if settings else f"`{spec.name}`"
        cost = f"as `{spec.name}`"
    link = f"[conf/mixer/{path.name}](conf/mixer/{path.name})"
    return f"| `{path.stem}` | {spec.family} | {reference} | {cost} | {link} |"


def rows(conf_dir: Path = CONF_DIR) -> dict[str, str]:
    """Config name -> its catalogue row, for every conf/mixer/*.yaml, in name order."""
    return {path.stem: row(path) for path in sorted(conf_dir.glob("*.yaml"))}


def table(conf_dir: Path = CONF_DIR) -> list[str]:
    return [*HEADER, *rows(conf_dir).values()]
