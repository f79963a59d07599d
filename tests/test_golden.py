"""Golden runs: a short synthetic run of every mixer, its validation losses and final weights
pinned in tests/golden/<mixer>.json, so that any change of behaviour shows up in review.

A deliberate change re-pins them: `MIXBENCH_UPDATE_GOLDEN=1 make test` (or this file alone)
rewrites the files, and the diff shows what moved. The tolerance absorbs float differences
between CPUs, not changes of method.
"""

import csv
import json
import os
from pathlib import Path

import pytest

from experiments.train import train
from tests.conftest import FAST, compose_config

pytestmark = pytest.mark.usefixtures("one_thread")

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("MIXBENCH_UPDATE_GOLDEN") == "1"
# FAST with a smaller GPT: 32 steps, validation every 8.
RUN = (*FAST, "model.n_layer=1", "model.d_model=32", "train.eval_every=8", "train.resume=null")
MIXERS = {
    "uniform": ("mixer=uniform",),
    "importance": ("mixer=importance",),
    "static": ("mixer=static", "mixer.weights=[4,3,2,1,1,1,1,1]"),
    "doge": ("mixer=doge", "mixer.update_every=4"),
    "dga": ("mixer=dga", "mixer.update_every=4"),
    # The earlier default rule: its golden values are those `dga` had before the bounded default.
    "dga_unbounded": ("mixer=dga_unbounded", "mixer.update_every=4", "mixer.eta=5"),
    "dga_fd": (
        "mixer=dga",
        "mixer.update_every=4",
        "mixer.alignment=finite_difference",
        "mixer.grad_clip=null",
    ),
    "dga_dr": ("mixer=dga_dr", "mixer.update_every=4"),
    "odm": ("mixer=odm", "mixer.warmup_steps=4"),
    "doremi": ("mixer=doremi",),
    # Its proxies (one step each at 1 % of the tokens) are trained first, in the test's cache.
    "mixmin": ("mixer=mixmin",),
    "aioli": (
        "mixer=aioli",
        "mixer.update_every=16",
        "mixer.eta=5",
        "mixer.lp_rounds=1",
        "mixer.lp_steps=1",
        "mixer.eval_sequences=4",
    ),
    "rnb": ("mixer=rnb", "mixer.update_every=8"),
}


def validation_losses(run_dir: Path) -> dict[str, float]:
    with open(run_dir / "metrics.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["val/target_loss"]]
    return {r["step"]: float(r["val/target_loss"]) for r in rows}


# Mixers that need a reference run get one trained first, in the test: a uniform run of RUN
# (deterministic, so the golden values stay pinned), passed as mixer.reference.
NEEDS_REFERENCE = {"doremi"}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(MIXERS))
def test_golden_run(name, tmp_path):
    overrides = MIXERS[name]
    if name in NEEDS_REFERENCE:
        train(compose_config(*RUN, "mixer=uniform"), tmp_path / "reference")
        overrides = (*overrides, f"mixer.reference={tmp_path / 'reference'}")
    run_dir = tmp_path / "run"
    results = train(compose_config(*RUN, *overrides), run_dir)
    observed = {
        "target_loss_by_step": validation_losses(run_dir),
        "generic_loss": results["metrics_final"]["val/generic_loss"],
        "final_weights": results["final_weights"],
        "mixer_flops": results["mixer_flops"],
    }
    path = GOLDEN / f"{name}.json"
    if UPDATE:
        path.write_text(json.dumps(observed, indent=1, sort_keys=True) + "\n")
    golden = json.loads(path.read_text())
    assert observed["mixer_flops"] == golden["mixer_flops"]
    assert observed["target_loss_by_step"].keys() == golden["target_loss_by_step"].keys()
    assert observed["target_loss_by_step"] == pytest.approx(golden["target_loss_by_step"], rel=1e-3)
    assert observed["generic_loss"] == pytest.approx(golden["generic_loss"], rel=1e-3)
    assert observed["final_weights"] == pytest.approx(golden["final_weights"], abs=1e-3)
