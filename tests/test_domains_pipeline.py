"""The real-text pipeline end to end on a small corpus (real MiniLM embeddings, a few hundred
short chunks): artifacts, determinism, the cap, leakage (also of duplicated text), bad input,
loading and training."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from collections import Counter, defaultdict
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console
from tokenizers import Tokenizer

from domains.chunking import chunk_text
from domains.loading import load_data
from domains.preparation import prepare
from domains.store import (
    GENERIC_SHARDS,
    MANIFEST_FILE,
    SPECIALIST_SHARDS,
    read_index,
    read_manifest,
    shard_path,
)
from experiments.prepare import run as run_prepare
from experiments.train import train
from tests.conftest import compose_config
from tests.text_corpus import (
    SENTENCES,
    SEQ_LEN,
    SHORT_TRAINING,
    data_config,
    marker,
    normal,
    overrides,
    write_corpus,
)

# Real MiniLM embeddings and a prepared corpus shared by the module: more than a few seconds.
pytestmark = pytest.mark.slow

COPIES = (
    lambda text: text,
    str.upper,
    lambda text: text.replace(" ", "  \t").replace("\n", "\n\n"),
)


def write_duplicated_corpus(path: Path) -> list[dict]:
    """`write_corpus`, plus a copy under another id of every specialist (astronomy) document and
    of every third other one: exact, in capitals, or with other spacing (so cut elsewhere)."""
    rows = write_corpus(path)
    originals = [r for r in rows if r["topic"] == "astronomy" or int(r["id"][-3:]) % 3 == 0]
    rows += [
        {**row, "id": row["id"] + "-copy", "text": COPIES[i % len(COPIES)](row["text"])}
        for i, row in enumerate(originals)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return rows


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("domains")
    corpus, cache = root / "corpus.jsonl", root / "cache"
    rows = write_corpus(corpus)
    cfg = data_config(corpus, cache)
    return {"root": root, "corpus": corpus, "cache": cache, "rows": rows, "cfg": cfg}


@pytest.fixture(scope="module")
def prepared(setup) -> Path:
    return prepare(setup["cfg"], SEQ_LEN, setup["cache"])


def sha256s(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` but the (empty) lock files, by content."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.suffix != ".lock"
    }


def tokens_of(folder: Path, name: str, manifest: dict) -> np.ndarray:
    return np.fromfile(shard_path(folder, name), dtype=manifest["shards"][name]["dtype"])


def indexed_chunks(folder: Path) -> list[tuple[str, int, str, str]]:
    """Every chunk of the index: (document id, domain, split, `normal` text decoded from its
    shard)."""
    manifest, index = read_manifest(folder), read_index(folder)
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    shards = {}
    rows = []
    for doc, domain, split, start, length in zip(
        *(index[c] for c in ("doc_id", "domain", "split", "start", "length")), strict=True
    ):
        shard = (
            GENERIC_SHARDS[split]
            if domain >= 0
            else SPECIALIST_SHARDS[split.removeprefix("specialist_")]
        )
        tokens = shards.setdefault(shard, tokens_of(folder, shard, manifest))
        text = tokenizer.decode(tokens[start : start + length].tolist())
        rows.append((doc, int(domain), split, normal(text)))
    return rows


def test_shard_token_counts_match_the_manifest_and_the_index(prepared):
    manifest, index = read_manifest(prepared), read_index(prepared)
    assert len(manifest["domains"]) == 4
    assert set(manifest["shards"]) == {*GENERIC_SHARDS.values(), *SPECIALIST_SHARDS.values()}
    eos = manifest["eos_id"]
    for name, entry in manifest["shards"].items():
        tokens = tokens_of(prepared, name, manifest)
        assert len(tokens) == entry["tokens"] > 0
        assert hashlib.sha256(tokens.tobytes()).hexdigest() == entry["sha256"]
    # Sections: every domain's chunks in each generic shard, then the specialist's own shards.
    sections = [
        (d, split, entry[f"{split}_start"], entry[f"{split}_tokens"], GENERIC_SHARDS[split])
        for d, entry in enumerate(manifest["domains"])
        for split in GENERIC_SHARDS
    ] + [(-1, f"specialist_{part}", 0, None, name) for part, name in SPECIALIST_SHARDS.items()]
    for domain, split, start, size, shard in sections:
        tokens = tokens_of(prepared, shard, manifest)
        rows = (index["domain"] == domain) & (index["split"] == split)
        starts, lengths = index["start"][rows], index["length"][rows]
        # Chunks tile the section: each one's tokens, then EOS, then the next chunk.
        np.testing.assert_array_equal(
            starts, start + np.concatenate([[0], np.cumsum(lengths + 1)[:-1]])
        )
        assert (lengths + 1).sum() == (size if size is not None else len(tokens))
        assert (tokens[starts + lengths] == eos).all() and (tokens[starts] != eos).all()
    for split, shard in GENERIC_SHARDS.items():  # the sections tile their shard, in domain order
        entries = manifest["domains"]
        starts = [entry[f"{split}_start"] for entry in entries]
        sizes = [entry[f"{split}_tokens"] for entry in entries]
        assert starts == np.concatenate([[0], np.cumsum(sizes)[:-1]]).tolist()
        assert sum(sizes) == manifest["shards"][shard]["tokens"]
    for domain, entry in enumerate(manifest["domains"]):
        assert entry["chunks"] == int((index["domain"] == domain).sum())


def test_every_chunk_lands_in_exactly_one_domain(setup, prepared):
    manifest, index = read_manifest(prepared), read_index(prepared)
    specialist_docs = set(index["doc_id"][index["domain"] < 0])
    specialist_texts = {text for _, domain, _, text in indexed_chunks(prepared) if domain < 0}
    max_chars = manifest["generic"]["chunk_chars"]
    # Every chunk of the other documents but those with a specialist chunk's text.
    expected = Counter(
        row["id"]
        for row in setup["rows"]
        if row["id"] not in specialist_docs
        for piece in chunk_text(row["text"], max_chars, max_chars // 4)
        if normal(piece) not in specialist_texts
    )
    generic = index["domain"] >= 0
    assert Counter(index["doc_id"][generic].tolist()) == expected
    assert set(index["domain"][generic].tolist()) == {0, 1, 2, 3}
    assert set(index["split"][generic].tolist()) == {"train", "heldout"}


def test_rebuilding_with_the_same_seed_gives_identical_artifacts(setup, prepared):
    before = sha256s(prepared)
    moved = prepared.with_name(prepared.name + "-previous")
    prepared.rename(moved)
    try:
        assert prepare(setup["cfg"], SEQ_LEN, setup["cache"]) == prepared
        after = sha256s(prepared)
    finally:
        shutil.rmtree(prepared)
        moved.rename(prepared)
    del before[MANIFEST_FILE], after[MANIFEST_FILE]  # it records times
    assert after == before


def test_the_specialist_set_never_leaks_into_generic_shards(setup, prepared):
    manifest, index = read_manifest(prepared), read_index(prepared)
    tokenizer = Tokenizer.from_file(str(prepared / "tokenizer.json"))
    specialist = index["domain"] < 0
    train_docs = set(index["doc_id"][index["split"] == "specialist_train"])
    eval_docs = set(index["doc_id"][index["split"] == "specialist_eval"])
    assert train_docs and eval_docs and not train_docs & eval_docs
    assert all(doc.startswith("astronomy/") for doc in train_docs | eval_docs)
    assert not set(index["doc_id"][~specialist]) & (train_docs | eval_docs)
    generic_text = "".join(
        tokenizer.decode(tokens_of(prepared, shard, manifest).tolist())
        for shard in GENERIC_SHARDS.values()
    )

    def doc_marker(doc_id: str) -> str:
        topic, number = doc_id.split("/")
        return marker(topic, int(number))

    assert not [doc for doc in train_docs | eval_docs if doc_marker(doc) in generic_text]
    assert all(doc_marker(doc) in generic_text for doc in index["doc_id"][~specialist])


@pytest.fixture(scope="module")
def duplicated(tmp_path_factory) -> Path:
    """Domains prepared from `write_duplicated_corpus`."""
    root = tmp_path_factory.mktemp("duplicated")
    corpus, cache = root / "corpus.jsonl", root / "cache"
    write_duplicated_corpus(corpus)
    return prepare(data_config(corpus, cache), SEQ_LEN, cache)


def test_duplicated_specialist_text_is_on_one_side_only(duplicated):
    texts = defaultdict(set)  # specialist_train, specialist_eval or generic -> chunk texts
    for _, domain, split, text in indexed_chunks(duplicated):
        texts[split if domain < 0 else "generic"].add(text)
    # Copies with other spacing are cut elsewhere: compare their documents' markers too.
    markers = {part: set(re.findall(r"ref q\d+z", " ".join(texts[part]))) for part in texts}
    for content in (texts, markers):
        train, evaluation = content["specialist_train"], content["specialist_eval"]
        assert train and evaluation and content["generic"]
        assert not train & evaluation
        assert not (train | evaluation) & content["generic"]


def test_heldout_documents_and_texts_are_not_in_training(duplicated):
    """Documents are held out whole, in every domain; a document is in both splits only by a
    chunk whose text a whole held-out document has (shared text goes where its copies go)."""
    chunks = [c for c in indexed_chunks(duplicated) if c[1] >= 0]
    splits_of, split = defaultdict(set), defaultdict(list)  # (domain, split) -> (doc, text)s
    for doc, domain, part, text in chunks:
        splits_of[doc].add(part)
        split[domain, part].append((doc, text))
    texts = {part: {text for *_, p, text in chunks if p == part} for part in ("train", "heldout")}
    assert not texts["train"] & texts["heldout"]  # in any domains (copies in capitals may differ)
    heldout_whole = {text for doc, _, _, text in chunks if splits_of[doc] == {"heldout"}}
    for d, entry in enumerate(read_manifest(duplicated)["domains"]):
        train, heldout = split[d, "train"], split[d, "heldout"]
        in_both = {doc for doc, _ in train} & {doc for doc, _ in heldout}
        assert all(text in heldout_whole for doc, text in heldout if doc in in_both)
        assert len(heldout) >= 0.1 * entry["chunks"]
        assert min(entry["train_tokens"], entry["heldout_tokens"]) > SEQ_LEN


def test_loads_into_domain_data_and_the_cap_is_honoured(setup, prepared):
    cfg = setup["cfg"]
    full = load_data(cfg, SEQ_LEN, setup["cache"])
    folders = sorted((setup["cache"] / "domains").iterdir())
    assert full.num_domains == 4 and full.seq_len == SEQ_LEN
    assert full.vocab_size == read_manifest(prepared)["vocab_size"] <= 320
    assert len(full.target_train_domain) == len(full.target_train) > 0
    # The specialist set (astronomy) is nearest to the astronomy domain.
    astronomy = next(
        d
        for d, entry in enumerate(read_manifest(prepared)["domains"])
        if entry["top_origins"][0][0] == "astronomy"
    )
    assert np.bincount(full.target_train_domain, minlength=4).argmax() == astronomy

    cap = 3 * SEQ_LEN + 5
    capped = load_data(replace(cfg, tokens_per_domain=cap), SEQ_LEN, setup["cache"])
    assert sorted((setup["cache"] / "domains").iterdir()) == folders  # the cap reuses the artifacts
    assert capped.token_counts().tolist() == [3 * SEQ_LEN] * 4
    assert full.token_counts().min() > cap
    assert [len(h) for h in capped.heldout] == [len(h) for h in full.heldout]


def test_a_sweep_over_k_embeds_once_and_shares_the_tokenizer(setup, prepared):
    embeddings = sorted((setup["cache"] / "embeddings").iterdir())
    other = prepare(
        data_config(setup["corpus"], setup["cache"], "data.num_domains=3"), SEQ_LEN, setup["cache"]
    )
    assert other != prepared and len(read_manifest(other)["domains"]) == 3
    assert sorted((setup["cache"] / "embeddings").iterdir()) == embeddings
    assert (other / "tokenizer.json").read_bytes() == (prepared / "tokenizer.json").read_bytes()


def test_two_level_domains_record_their_coarse_cluster(setup, prepared):
    cfg = data_config(setup["corpus"], setup["cache"], "data.coarse_domains=2")
    data = load_data(cfg, SEQ_LEN, setup["cache"])
    assert data.coarse_of is not None and len(data.coarse_of) == data.num_domains == 4
    assert sorted(set(data.coarse_of.tolist())) == [0, 1]


BAD_INPUTS = {
    "missing files": (
        ["data.paths=['{root}/nowhere/*.jsonl']"],
        FileNotFoundError,
        r"no file matches .* \(from data\.paths\)",
    ),
    "no specialist files": (
        ["data.specialist.paths=[]"],
        ValueError,
        r"data\.specialist\.paths is empty",
    ),
    "empty source": (["data.paths=['{root}/empty.txt']"], ValueError, "yielded no documents"),
    "missing text field": (["data.text_field=body"], ValueError, "no field 'body'"),
    "k above chunks": (["data.num_domains=5000"], ValueError, "larger than the number of chunks"),
    "empty specialist": (
        ["++data.specialist.where={topic: poetry}"],
        ValueError,
        "specialist set has no documents",
    ),
    "unreadable parquet": (
        ["data.paths=['{root}/broken.parquet']"],
        ValueError,
        "cannot read parquet",
    ),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_errors_clearly_and_keeps_existing_artifacts(setup, prepared, case):
    root = setup["root"]
    (root / "empty.txt").write_text("  \n")
    (root / "broken.parquet").write_bytes(b"PAR1 this is not parquet")
    extra, error, message = BAD_INPUTS[case]
    before = sha256s(setup["cache"] / "domains")
    with pytest.raises(error, match=message):
        cfg = data_config(
            setup["corpus"], setup["cache"], *(e.replace("{root}", str(root)) for e in extra)
        )
        prepare(cfg, SEQ_LEN, setup["cache"])
    assert sha256s(setup["cache"] / "domains") == before
    assert not [p for p in (setup["cache"] / "domains").iterdir() if p.name.endswith(".tmp")]


# A short training run on the prepared domains: a 2-layer model, 8 steps.
def test_training_runs_on_prepared_domains(setup, prepared, tmp_path):
    cfg = compose_config(*overrides(setup["corpus"], setup["cache"]), *SHORT_TRAINING)
    record = train(cfg, tmp_path)
    assert record["status"] == "completed"
    assert record["data"]["artifacts"] == str(prepared)
    assert set(record["domain_tokens"]) == {d["name"] for d in read_manifest(prepared)["domains"]}
    assert np.isfinite(record["metrics_final"]["val/target_loss"])
    assert record["metrics_final"]["val/target_loss"] < record["metrics_initial"]["val/target_loss"]


def test_prepare_prints_what_each_domain_holds(setup, prepared):
    console = Console(record=True, width=250)
    assert (
        run_prepare(compose_config(*overrides(setup["corpus"], setup["cache"])), console)
        == prepared
    )
    out = console.export_text()
    for domain in read_manifest(prepared)["domains"]:
        assert domain["name"] in out
    assert all(topic in out for topic in SENTENCES)  # the clusters' top origins
    assert f"artifacts: {prepared}" in out


def test_hashed_ngram_embeddings_are_fixed_and_cluster_the_topics(setup, tmp_path):
    """`data.embedding.model=hashed-ngrams`: no model, the same vectors from any embedder (so
    specialist text assigned later lands in the same space), texts sharing words closer than
    texts that share none, and a preparation whose domains follow the corpus's topics."""
    from domains.embed import Embedder, EmbeddingConfig

    config = EmbeddingConfig(model="hashed-ngrams")
    texts = [*SENTENCES["football"][:2], SENTENCES["code"][0]]
    first = Embedder(config, tmp_path).encode(texts)
    assert np.array_equal(first, Embedder(config, tmp_path / "other").encode(texts))
    assert first.shape == (3, 256) and np.allclose(np.linalg.norm(first, axis=1), 1)
    football = first[0] @ first[1]  # "...the second half" / "...in extra time": share "the", "in"
    assert football > first[0] @ first[2] + 0.1

    cfg = data_config(setup["corpus"], setup["cache"], "data.embedding.model=hashed-ngrams")
    folder = prepare(cfg, SEQ_LEN, setup["cache"])
    origins = [d["top_origins"][0][0] for d in read_manifest(folder)["domains"]]
    assert len(set(origins)) >= 3  # the 4 domains are not one topic split four ways
