"""`python -m experiments.sweep`: a design's parts run as one multirun each, the command line's
overrides applied to every part and winning where they meet a part's."""

from __future__ import annotations

import itertools
import sys

import pytest

from experiments.config import check_config
from experiments.sweep import CONF_DIR, commands, main, parts
from tests.conftest import compose_config

TRAIN = [sys.executable, "-m", "experiments.train", "-m"]


def write_design(conf_dir, parts_listed: list[str] | None) -> None:
    body = "name: x\n"
    if parts_listed is not None:
        body += "registration:\n  parts:\n" + "".join(f'    - "{p}"\n' for p in parts_listed)
    (conf_dir / "x.yaml").write_text(body)


def test_a_design_without_parts_is_one_multirun(tmp_path):
    write_design(tmp_path, None)
    assert commands("x", ["seed=0,1"], tmp_path) == [[*TRAIN, "experiment=x", "seed=0,1"]]


def test_each_part_runs_with_the_command_line_s_overrides(tmp_path):
    write_design(tmp_path, ["mixer=uniform,importance", "mixer=dga train.tokens=666_000"])
    assert commands("x", ["data=files", "train.tokens=4096"], tmp_path) == [
        [*TRAIN, "experiment=x", "mixer=uniform,importance", "data=files", "train.tokens=4096"],
        [*TRAIN, "experiment=x", "mixer=dga", "data=files", "train.tokens=4096"],
    ]


def test_a_mixer_on_the_command_line_keeps_each_part_s_settings_for_it(tmp_path):
    write_design(
        tmp_path,
        ["mixer=uniform,importance", "mixer=dga train.tokens=666_000", "mixer=rnb train.tokens=9"],
    )
    assert commands("x", ["mixer=dga,uniform", "seed=0"], tmp_path) == [
        [*TRAIN, "experiment=x", "mixer=uniform", "seed=0"],
        [*TRAIN, "experiment=x", "mixer=dga", "train.tokens=666_000", "seed=0"],
    ]


def test_an_unknown_experiment_is_an_error_naming_the_known_ones(tmp_path, capsys):
    write_design(tmp_path, None)
    with pytest.raises(ValueError, match=r"no experiment 'y'.*available: x"):
        parts("y", tmp_path)
    assert main(["no_such_experiment"]) == 1
    assert "no experiment 'no_such_experiment'" in capsys.readouterr().err


@pytest.mark.parametrize(
    "experiment",
    sorted(p.stem for p in CONF_DIR.glob("*.yaml") if parts(p.stem) != [[]]),
)
def test_every_part_of_every_design_composes_and_passes_the_config_check(experiment):
    swept = compose_config(f"experiment={experiment}", with_hydra=True).hydra.sweeper.params
    for part in parts(experiment):
        # The multirun's jobs: each combination of the part's swept values (its mixers, or the
        # sweeper's where it names none; e.g. the specialist targets it sets).
        given = {key: values.split(",") for key, values in (o.split("=", 1) for o in part)}
        if "mixer" not in given:
            given["mixer"] = str(swept.mixer).split(",")
        for job in itertools.product(*([f"{k}={v}" for v in vs] for k, vs in given.items())):
            check_config(compose_config(f"experiment={experiment}", *job))
