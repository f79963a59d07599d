"""`python -m experiments.sweep <experiment> [overrides...]`: every sweep of an experiment's
design, one after the other, into one sweep directory.

Most designs are one Hydra multirun (`python -m experiments.train -m experiment=<name>`). A
design at equal total compute gives each mixer its own training tokens, which one multirun
cannot pair with the mixer, so its registration lists `parts`: each a set of overrides (e.g.
`mixer=dga train.tokens=666_000`) run as its own multirun on top of the experiment's sweeper
params. The command line's overrides apply to every part; where one sets a key a part sets too
(e.g. `mixer=dga` to run a single mixer), the command line's wins, and a part left with a mixer
the command line did not ask for is skipped. A re-run skips completed runs, as every multirun
does (experiments/record_check.py).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from omegaconf import OmegaConf

CONF_DIR = Path(__file__).resolve().parents[1] / "conf" / "experiment"


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def parts(experiment: str, conf_dir: Path = CONF_DIR) -> list[list[str]]:
    """The experiment's parts, each a list of overrides ([[]]: one sweep as the config is)."""
    path = conf_dir / f"{experiment}.yaml"
    if not path.exists():
        names = ", ".join(sorted(p.stem for p in conf_dir.glob("*.yaml")))
        raise ValueError(f"no experiment {experiment!r} in {conf_dir}; available: {names}")
    listed = OmegaConf.select(OmegaConf.load(path), "registration.parts") or []
    return [str(part).split() for part in listed] or [[]]


def commands(experiment: str, overrides: list[str], conf_dir: Path = CONF_DIR) -> list[list[str]]:
    """The multirun command of each part, the command line's overrides winning over the part's."""
    given = {_key(o): o for o in overrides}
    wanted = _mixers(given["mixer"]) if "mixer" in given else None
    runs = []
    for part in parts(experiment, conf_dir):
        own = {_key(o): o for o in part}
        if wanted is not None and "mixer" in own:
            # The part's mixers that the command line asks for, at the part's settings.
            mixers = [m for m in _mixers(own["mixer"]) if m in wanted]
            if not mixers:
                continue
            own["mixer"] = f"mixer={','.join(mixers)}"
            merged = [*own.values(), *(o for k, o in given.items() if k != "mixer")]
        else:
            merged = [*(o for k, o in own.items() if k not in given), *given.values()]
        runs.append(
            [sys.executable, "-m", "experiments.train", "-m", f"experiment={experiment}", *merged]
        )
    return runs


def _mixers(override: str) -> list[str]:
    return override.split("=", 1)[1].split(",")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0].startswith("-"):
        print(__doc__.strip().splitlines()[0], file=sys.stderr)
        return 2
    try:
        planned = commands(args[0], args[1:])
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    for i, command in enumerate(planned, 1):
        print(f"part {i} of {len(planned)}: {' '.join(command[2:])}", flush=True)
        result = subprocess.run(command, check=False)
        if result.returncode:
            return result.returncode
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
