"""How the suite is laid out: no test module imports another test module. What tests share lives
in tests/conftest.py (fixtures) or in a helper module that pytest does not collect (not named
test_*), so that running one test file never runs, or depends on, another."""

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def is_test_module(name: str) -> bool:
    """Whether a module's last dotted part names a test module (pytest's `python_files`)."""
    last = name.rsplit(".", 1)[-1]
    return last.startswith("test_") or last.endswith("_test")


def imported_test_modules(source: str) -> list[tuple[int, str]]:
    """(line, module) of every test module `source` imports, at module level or inside a
    function: `import tests.test_x`, `from tests.test_x import y`, `from tests import test_x`,
    `from test_x import y`, `from .test_x import y`, `from . import test_x`."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if is_test_module(a.name)]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if module and is_test_module(module):
                found.append((node.lineno, module))
            elif module in ("", "tests"):  # from tests import test_x, from . import test_x
                found += [(node.lineno, a.name) for a in node.names if is_test_module(a.name)]
    return found


def test_the_check_finds_every_form_of_import():
    source = "\n".join(
        [
            "import tests.test_a",
            "import test_b as b",
            "from tests.test_c import x",
            "from tests import test_d, helpers",
            "from .test_e import y",
            "from . import test_f",
            "def f():",
            "    from tests.test_g import z",
            "import tests.conftest, testing, tests.run_records",
            "from tests.mixer_runs import run",
        ]
    )
    modules = [module for _, module in imported_test_modules(source)]
    assert modules == [
        "tests.test_a",
        "test_b",
        "tests.test_c",
        "test_d",
        "test_e",
        "test_f",
        "tests.test_g",
    ]


def test_no_module_of_the_suite_imports_a_test_module():
    files = sorted(TESTS.rglob("*.py"))
    assert any(path.name == "test_tiers.py" for path in files)
    offenders = [
        f"{path.relative_to(TESTS.parent)}:{line}: imports {module}"
        for path in files
        for line, module in imported_test_modules(path.read_text())
    ]
    assert not offenders, (
        "a test module imports another: move what they share into tests/conftest.py (fixtures) "
        "or a helper module not named test_*\n" + "\n".join(offenders)
    )
