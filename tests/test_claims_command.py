"""`make claims` on a corpus the test writes: the registered design runs on the user's own files
and `python -m analysis.findings --runs` writes the same kind of report for them."""

import json
import random
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOPICS = {
    "astronomy": "The telescope saw a comet near the bright star at night.",
    "cooking": "Stir the onions in butter until the sauce turns brown.",
    "law": "The court held that the contract bound both parties to pay.",
    "sailing": "The crew trimmed the sail as the wind rose off the bay.",
}


def write_corpus(path: Path) -> None:
    """40 documents per topic, each 60-100 words drawn from its topic's sentence."""
    rng = random.Random(0)
    rows = [
        {
            "id": f"{topic}/{i}",
            "topic": topic,
            "source": topic,
            "text": " ".join(rng.choices(sentence.split(), k=rng.randint(60, 100))),
        }
        for topic, sentence in TOPICS.items()
        for i in range(40)
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


@pytest.mark.slow
def test_make_claims_runs_the_registered_design_on_a_users_corpus(tmp_path):
    corpus, runs = tmp_path / "corpus.jsonl", tmp_path / "claims"
    write_corpus(corpus)
    overrides = [
        f"data.paths=['{corpus}']",
        f"data.specialist.paths=['{corpus}']",
        "++data.specialist.where={topic: astronomy}",
        "data.specialist.train_chunks=4",
        "data.specialist.eval_chunks=8",
        "data.num_domains=4",
        "data.coarse_domains=2",
        "data.min_domain_chunks=4",
        "data.vocab_size=320",
        "train.tokens=4096",
        "train.batch_size=8",
        "train.eval_every=8",
        "model.context_length=32",
        # Narrowed from the registered 5 seeds and 5 mixers to keep the test short: the report
        # must then say the verdicts are pending.
        "mixer=uniform,dga",
        "seed=0,1,2",
    ]
    result = subprocess.run(
        [
            "make",
            "--no-print-directory",
            "-o",
            "setup",
            "claims",
            "DATA=files",
            "CLAIMS=claim_token_limited",
            f"CLAIMS_DIR={runs}",
            "ARGS=" + " ".join(f'"{o}"' for o in overrides),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = (runs / "findings.md").read_text()
    assert "## Registered: `experiment=claim_token_limited`" in report
    assert "data.source=files" in report and str(corpus) in report
    assert "| dga > uniform | 3 |" in report
    assert "pending (3 of 5 seeds)" in report
    assert "| importance > uniform | 0 | – |" in report
    assert "changed after runs existed" not in report
