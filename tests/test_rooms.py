"""Each mixer keeps to its own room: experiments/ reaches mixers only through the registry and the
interface, every mixer module declares its own `SPEC`, and what experiments/ used to do by a
mixer's name (a config check, an upstream run) it now does through the mixer's hooks."""

from __future__ import annotations

import ast
import dataclasses
import importlib
import pkgutil

import pytest
from omegaconf import OmegaConf

import mixers
from experiments.config import check_config
from mixers import MIXERS, MixerSpec, UpstreamStage, catalogue, mixer_spec
from mixers.base import Mixer
from tests.conftest import ROOT, compose_config

# What experiments/ may import from mixers/: the package (the registry, `build_mixer` and the
# generic helpers it re-exports: the mixture file, collapse) and the interface.
ALLOWED = {"mixers", "mixers.base"}


def _imported_modules(path) -> set[str]:
    """Every module a source file imports, `from package import module` included."""
    modules = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules.add(node.module)
            modules.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", getattr(node.func, "id", None)) == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            modules.add(str(node.args[0].value))
    return modules


MIXER_MODULES = {f"mixers.{info.name}" for info in pkgutil.iter_modules(mixers.__path__)}


@pytest.mark.parametrize(
    "path", sorted((ROOT / "experiments").glob("*.py")), ids=lambda path: path.name
)
def test_experiments_import_no_mixer_module_by_name(path):
    # `from mixers import build_mixer` reads as `mixers.build_mixer`: only modules count.
    named = (_imported_modules(path) & MIXER_MODULES) - ALLOWED
    assert not named, (
        f"{path.relative_to(ROOT)} imports {sorted(named)}: reach a mixer through the registry "
        "(`mixers.MIXERS`, `mixers.build_mixer`) and its hooks (mixers/base.py), and a generic "
        "helper through the `mixers` package"
    )


def test_every_mixer_module_declares_its_spec_and_the_registry_has_them_all():
    declared = {}
    for module_name in sorted(MIXER_MODULES):
        spec = getattr(importlib.import_module(module_name), "SPEC", None)
        if spec is not None:
            declared[spec.name] = spec
    assert declared == MIXERS
    for name, spec in MIXERS.items():
        assert isinstance(spec, MixerSpec) and spec.name == name
        assert issubclass(spec.mixer, Mixer)
        assert {f.name: f.default for f in dataclasses.fields(spec.config)}["name"] == name
    with pytest.raises(dataclasses.FrozenInstanceError):
        MIXERS["uniform"].name = "other"
    with pytest.raises(ValueError, match="unknown mixer 'nope'; available"):
        mixer_spec("nope")


def test_the_catalogue_lists_every_mixer_config_from_the_mixer_s_own_spec(tmp_path):
    """Method knowledge stays in the room: a mixer's row (family, reference, cost) is its SPEC's,
    a preset's reference the options its yaml sets, and a new config needs no other listing."""
    listed = catalogue.rows()
    assert set(listed) == {p.stem for p in (ROOT / "conf" / "mixer").glob("*.yaml")}
    for name, spec in MIXERS.items():
        assert spec.family and spec.reference and spec.cost, f"{name}: SPEC lacks its docs"
        cells = [cell.strip() for cell in listed[name].strip("|").split("|")]
        assert cells[:4] == [f"`{name}`", spec.family, spec.reference, spec.cost]
    preset = tmp_path / "dga_fast.yaml"
    preset.write_text("defaults:\n  - /schema/mixer/dga@_here_\n  - _self_\n\nbeta: 0.25\n")
    assert catalogue.row(preset) == (
        f"| `dga_fast` | {MIXERS['dga'].family} | `dga` with beta = 0.25 | as `dga` "
        "| [conf/mixer/dga_fast.yaml](conf/mixer/dga_fast.yaml) |"
    )
    (tmp_path / "nameless.yaml").write_text("beta: 0.25\n")
    with pytest.raises(ValueError, match=r"nameless\.yaml: its defaults list names no"):
        catalogue.row(tmp_path / "nameless.yaml")


@pytest.mark.slow
def test_every_mixer_option_starts_from_a_registered_schema():
    for option in sorted((ROOT / "conf" / "mixer").glob("*.yaml")):
        cfg = compose_config(f"mixer={option.stem}")
        assert cfg.mixer.name in MIXERS, option.name


@pytest.mark.parametrize(
    ("good", "bad", "message"),
    [
        (
            ("mixer=static", "mixer.weights=[1,1,1,1,1,1,1,1]"),
            ("mixer=static", "mixer.weights=[1,1,1]"),
            "3 weights for data.num_domains=8",
        ),
        (
            ("mixer=dga_dr", "mixer.alignment=finite_difference", "mixer.grad_clip=null"),
            (
                "mixer=dga_dr",
                "mixer.alignment=finite_difference",
                "mixer.grad_clip=null",
                "trainer.precision=bf16-true",
            ),
            "32-bit parameters",
        ),
    ],
    ids=["static", "dga_dr"],
)
def test_the_mixers_own_checks_run_with_the_config_check(good, bad, message):
    check_config(compose_config(*good))
    with pytest.raises(ValueError, match=message):
        check_config(compose_config(*bad))


def test_doremi_asks_for_its_reference_run_only_without_one():
    spec = MIXERS["doremi"]
    options = OmegaConf.to_object(
        compose_config("mixer=doremi", "mixer.reference_weights=natural").mixer
    )
    assert options.reference is None
    stage = spec.mixer.upstream_stage(options)
    assert isinstance(stage, UpstreamStage)
    assert (stage.directory, stage.option) == ("reference", "reference")
    assert (stage.mixer.name, stage.mixer.weights, stage.mixer.label) == (
        "uniform",
        "natural",
        "doremi_reference",
    )
    given = dataclasses.replace(options, reference="runs/reference")
    assert spec.mixer.upstream_stage(given) is None
    uniform = OmegaConf.to_object(compose_config("mixer=uniform").mixer)
    assert MIXERS["uniform"].mixer.upstream_stage(uniform) is None
