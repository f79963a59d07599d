"""Label the runs recorded before runs labelled their mixer variant themselves.

    python -m experiments.relabel multirun/stability [more dirs...]

Analysis names a variant by its record's `mixer_label` (e.g. `dga[beta=0.5]`) and falls back to
the bare mixer name for a record without one, which would merge variants of one mixer. This
writes the label into every such results.json under the given directories (atomically), from
the run's own mixer config and this checkout's mixer defaults.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from experiments.config import mixer_label
from experiments.results import RESULTS_FILE, read_record, write_record


def relabel(run_dir: Path) -> str | None:
    """The label written into `run_dir`'s record, or None when it already had one."""
    record = read_record(run_dir)
    if record.mixer_label or record.status == "running":  # a running run writes its own
        return None
    record.mixer_label = mixer_label(record.config.get("mixer") or {"name": record.mixer})
    write_record(run_dir, record)
    return record.mixer_label


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.relabel", description=__doc__)
    parser.add_argument("dirs", nargs="+", type=Path, help="sweep or run directories")
    args = parser.parse_args(argv)
    for folder in args.dirs:
        for path in sorted(folder.rglob(RESULTS_FILE)):
            label = relabel(path.parent)
            if label is not None:
                print(f"{path.parent}: {label}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
