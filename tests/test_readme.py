"""The README and docs/ stay true to the repository.

- Each row of the README's mixer table is the catalogue's row of its config (`python -m mixers`,
  mixers/catalogue.py), except multi-stage methods whose config is an experiment
  (`conf/experiment/*.yaml`); the catalogue itself covers every `conf/mixer/*.yaml`.
- Every path named in the layout (the README's Layout block, docs/layout.md) exists, every
  top-level folder is in the README's Layout, and every module file of the code folders is in
  docs/layout.md, except the mixer modules, which the registry lists.
- Every relative link in README.md and docs/*.md points to an existing file.
- docs/performance.md's figures are the output of `python -m benchmarks.summary`, and its table
  of machines is what benchmarks/results/*.json record.
- The README's first screen keeps its shape: the two commands, then the leaderboard and the
  mixer table; the findings summary is at most 10 lines.
"""

from __future__ import annotations

import contextlib
import fnmatch
import io
import json
import re
from pathlib import Path

import pytest

from mixers import MIXERS
from mixers.catalogue import rows

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
LAYOUT = DOCS / "layout.md"
PERFORMANCE = DOCS / "performance.md"
CODE_FOLDERS = ("mixers", "models", "domains", "experiments", "analysis", "benchmarks")
SUMMARY_BEGIN = "<!-- BEGIN benchmarks.summary -->"
SUMMARY_END = "<!-- END benchmarks.summary -->"

LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
CODE_SPAN = re.compile(r"`([^`]+)`")
FILE_SUFFIXES = {".py", ".md", ".yaml", ".toml", ".txt", ".ipynb", ".csv", ".json", ".png"}


def _section(text: str, heading: str) -> str:
    """The body of the `## heading` section of a markdown text."""
    match = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert match, f"no '## {heading}' section"
    return match.group(1)


def _without_code_blocks(text: str) -> str:
    return re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)


def _ignored(path: str) -> bool:
    """Whether .gitignore ignores `path` (its simple patterns: names and `name/`)."""
    patterns = [
        line.strip().rstrip("/")
        for line in (ROOT / ".gitignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    parts = Path(path.rstrip("/")).parts
    return any(
        fnmatch.fnmatch(part, pattern) or fnmatch.fnmatch(path.rstrip("/"), pattern)
        for pattern in patterns
        for part in parts
    )


def _mixer_rows() -> list[tuple[str, str]]:
    """(row, config path) of every row of the README's mixer table."""
    rows = []
    for line in _section(README.read_text(), "Mixers").splitlines():
        if not line.startswith("|") or line.startswith("|---"):
            continue
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if cells[0] == "mixer":  # the header
            continue
        links = LINK.findall(cells[-1])
        assert len(links) == 1, f"mixer row without one config link: {line}"
        rows.append((line, links[0]))
    return rows


def test_every_mixer_row_is_its_config_s_catalogue_row():
    catalogue = rows()
    assert _mixer_rows(), "the README has no mixer table"
    for line, config in _mixer_rows():
        assert (ROOT / config).is_file(), f"{line}: {config} does not exist"
        if config.startswith("conf/mixer/"):
            assert line == catalogue[Path(config).stem], (
                f"the README's row of {config} differs from `python -m mixers`'s; paste its row"
            )
        else:  # a multi-stage method, run as an experiment, marked as such
            assert config.startswith("conf/experiment/"), line
            assert "experiment=" in line.split("|")[1], f"mark {line} as an experiment"


def _layout_folders() -> list[str]:
    block = re.search(r"```\n(.*?)```", _section(README.read_text(), "Layout"), re.S)
    assert block, "the README's Layout has no block"
    return [line.split()[0] for line in block.group(1).splitlines() if line.strip()]


def test_the_readme_layout_names_every_top_level_folder_and_only_existing_ones():
    listed = _layout_folders()
    for folder in listed:
        assert (ROOT / folder).is_dir(), f"the README's Layout names {folder}, which is not there"
    top_level = {
        f"{path.name}/"
        for path in ROOT.iterdir()
        if path.is_dir() and not path.name.startswith(".") and not _ignored(path.name)
    }
    assert top_level <= set(listed), (
        f"not in the README's Layout: {sorted(top_level - set(listed))}"
    )


def _named_paths(text: str) -> set[str]:
    """Paths named in code spans: with a folder or a file suffix, no placeholder or spaces."""
    paths = set()
    for span in CODE_SPAN.findall(text):
        if any(c in span for c in " <>*=[]{}$") or span.startswith("-"):
            continue
        if "/" in span or Path(span).suffix in FILE_SUFFIXES or span == "Makefile":
            paths.add(span)
    return paths


def test_every_path_in_the_layout_exists():
    missing = [
        path
        for path in sorted(_named_paths(LAYOUT.read_text()))
        if not _ignored(path) and not (ROOT / path).exists()
    ]
    assert not missing, f"docs/layout.md names paths that do not exist: {missing}"


def test_every_module_file_is_in_the_layout():
    named = _named_paths(LAYOUT.read_text())
    mixer_modules = {spec.mixer.__module__ for spec in MIXERS.values()}
    modules = sorted(
        path.relative_to(ROOT).as_posix()
        for folder in CODE_FOLDERS
        for path in (ROOT / folder).rglob("*.py")
        if "__pycache__" not in path.parts
        and ".".join(path.relative_to(ROOT).with_suffix("").parts) not in mixer_modules
    )
    assert modules, "no module files found"
    missing = [module for module in modules if module not in named]
    assert not missing, f"add a line to docs/layout.md for: {missing}"


@pytest.mark.parametrize(
    "page", [README, *sorted(DOCS.glob("*.md"))], ids=lambda p: p.relative_to(ROOT).as_posix()
)
def test_relative_links_point_to_existing_files(page: Path):
    broken = []
    for target in LINK.findall(_without_code_blocks(page.read_text())):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue  # a URL or an anchor on the same page
        path = target.split("#", 1)[0]
        if not (page.parent / path).exists():
            broken.append(target)
    assert not broken, f"{page.name}: broken links {broken}"


def test_performance_figures_are_the_rendering_of_the_results():
    summary = pytest.importorskip("benchmarks.summary")
    text = PERFORMANCE.read_text()
    assert SUMMARY_BEGIN in text and SUMMARY_END in text
    shown = text.split(SUMMARY_BEGIN, 1)[1].split(SUMMARY_END, 1)[0]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        summary.main()
    assert shown.strip() == out.getvalue().strip(), (
        "docs/performance.md's figures differ from `python -m benchmarks.summary`: paste its "
        "output between the markers"
    )


def test_performance_names_the_machine_of_every_results_file():
    text = PERFORMANCE.read_text()
    for path in sorted((ROOT / "benchmarks" / "results").glob("*.json")):
        if _ignored(path.relative_to(ROOT).as_posix()):
            continue
        machine = json.loads(path.read_text())["machine"]
        row = (
            f"| `{path.relative_to(ROOT).as_posix()}` | {machine['cpu']} | {machine['cores']} | "
            f"{machine['date'][:10]} |"
        )
        assert row in text, f"docs/performance.md's table of machines needs: {row}"


def test_the_first_screen_holds_the_commands_the_leaderboard_and_the_mixer_table():
    lines = README.read_text().splitlines()

    def line_of(prefix: str) -> int:
        return next(i for i, line in enumerate(lines) if line.startswith(prefix))

    assert line_of("make demo") < line_of("make test") < line_of("## What `make demo` prints")
    assert (
        line_of("## What `make demo` prints") < line_of("## Mixers") < line_of("| `uniform`") < 60
    )


def test_the_findings_summary_is_short_and_links_the_report():
    findings = _section(README.read_text(), "Findings")
    assert len([line for line in findings.splitlines() if line.strip()]) <= 10
    assert "(docs/findings.md)" in findings and "(docs/methods.md)" in findings
