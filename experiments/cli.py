"""How the command-line apps (`python -m experiments.train`, `experiments.prepare`) end on a
user's mistake: one line on stderr naming the problem, by its full option (`mixer.alignment`,
`data.specialist.paths`), with a hint, and exit status 1, instead of Hydra's header and a
traceback. With HYDRA_FULL_ERROR=1 errors are raised as Hydra raises them, traceback included.

A mistake on the command line (an unknown option, a misspelt key, a value of the wrong type) is
found while Hydra composes the config; one in the composed config (a token budget below one
step, a pattern that matches no file) when the job starts. Exceptions of other types are bugs,
not mistakes: their traceback is printed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import logging
import os
import re
import sys
from collections.abc import Callable, Iterator
from typing import NoReturn

from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException, MissingConfigException
from hydra.types import RunMode
from omegaconf.errors import OmegaConfBaseException

log = logging.getLogger(__name__)

FULL_ERROR = "HYDRA_FULL_ERROR"
# Whether the user asked for tracebacks (read at import: `run_app` sets the variable for Hydra).
TRACEBACK_WANTED = os.environ.get(FULL_ERROR) == "1"
# What the config checks, the schemas, the sources and Hydra raise on a user's mistake.
USER_ERRORS = (ValueError, OSError, RuntimeError, HydraException, OmegaConfBaseException)
TRACEBACK_HINT = "(HYDRA_FULL_ERROR=1 shows the traceback)"
SPECIALIST_PRESET = (
    "data/specialist={choice}: the specialist presets (conf/data/specialist/) are parts of the "
    "demo corpus and go with data=demo; for your own files give the specialist set's files, "
    "'data.specialist.paths=[task/*.jsonl]' (filtered with '++data.specialist.where={{field: "
    "value}}'), or MMLU questions, data.specialist.source=mmlu data.specialist.subject=<subject>"
)


def run_app(app: Callable[[], object]) -> None:
    """Run a `@hydra.main` app from the command line: a mistake ends in one line (see above)."""
    if TRACEBACK_WANTED:
        app()
        return
    os.environ[FULL_ERROR] = "1"  # Hydra raises what it would print, and it is reported here
    try:
        app()
    except USER_ERRORS as error:
        _exit(error)
    finally:
        del os.environ[FULL_ERROR]


@contextlib.contextmanager
def reported_errors() -> Iterator[None]:
    """Around a job's body. In a single run a user's mistake ends the process with its line
    (raised, it would get Hydra's header first); in a sweep the line is logged and the error
    raised, so that Hydra runs the other jobs and reports the failure at the end."""
    try:
        yield
    except USER_ERRORS as error:
        if TRACEBACK_WANTED:
            raise
        if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
            log.error("%s", describe(error))
            raise
        _exit(error)


def _exit(error: BaseException) -> NoReturn:
    print(f"error: {describe(error)} {TRACEBACK_HINT}", file=sys.stderr)
    raise SystemExit(1)


def describe(error: BaseException) -> str:
    """The error in one line, naming the option it is about, with a hint where one helps."""
    if isinstance(error, MissingConfigException) and error.options is not None:
        group, _, choice = (error.missing_cfg_file or "").rpartition("/")
        close = difflib.get_close_matches(choice, error.options, n=1)
        hint = f" (did you mean {group}={close[0]}?)" if close else ""
        return f"{group}={choice}: no such option{hint}; available: {', '.join(error.options)}"
    preset = re.search(
        r"Could not override 'data/specialist'.*\+data/specialist=(\S+)", str(error), re.S
    )
    if preset:
        return SPECIALIST_PRESET.format(choice=preset.group(1))
    cause = error.__cause__ if isinstance(error, HydraException) else error
    if isinstance(cause, OmegaConfBaseException) and cause.full_key:
        return f"{cause.full_key}: {str(cause.msg).splitlines()[0]}{_close_key(cause)}"
    return " ".join(str(error).split())


def _close_key(error: OmegaConfBaseException) -> str:
    """` (did you mean mixer.weights?)` for a misspelt key of a structured config."""
    schema, key = error.object_type, error.key
    if not (dataclasses.is_dataclass(schema) and isinstance(key, str)):
        return ""
    close = difflib.get_close_matches(key, [f.name for f in dataclasses.fields(schema)], n=1)
    if not close or close[0] == key:
        return ""
    parent = error.full_key.rpartition(".")[0]
    return f" (did you mean {parent + '.' if parent else ''}{close[0]}?)"
