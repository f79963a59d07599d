"""The parts of the real-text pipeline on their own: chunking, sources, clustering, tokenizer,
artifact cache and shards, held-out split. No embedding model here (see
test_domains_pipeline.py)."""

from __future__ import annotations

import json
import multiprocessing
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from domains.cache import build_once, stable_hash, texts_digest
from domains.chunking import chunk_text
from domains.cluster import Clustering, fit_clustering, merge_small_domains
from domains.data import TokenSequences
from domains.embed import Embedder, EmbeddingConfig
from domains.schemas import TextDataConfig
from domains.sources import Document, SourceConfig, read_documents, read_part, source_files
from domains.steps import Chunk, content_key
from domains.store import pack
from domains.text import _heldout_mask
from domains.tokenizer import EOS, encode, eos_id, train_tokenizer

# --- chunking ---------------------------------------------------------------------------------


def test_chunks_respect_the_limit_and_keep_words_whole():
    words = [f"word{i}" for i in range(400)]
    text = " ".join(words[:200]) + "\n\n" + "\n".join(words[200:])
    chunks = chunk_text(text, max_chars=100, min_chars=1)
    assert all(len(c) <= 100 for c in chunks)
    assert " ".join(" ".join(chunks).split()) == " ".join(words)  # nothing lost, nothing split


def test_chunks_prefer_paragraph_breaks():
    text = "a" * 60 + "\n\n" + "b b b " * 10
    assert chunk_text(text, max_chars=100, min_chars=1)[0] == "a" * 60


def test_near_empty_chunks_are_dropped():
    text = "x" * 90 + "\n" + "tiny"
    assert chunk_text(text, max_chars=92, min_chars=10) == ["x" * 90]


def test_a_word_longer_than_a_chunk_is_cut():
    assert chunk_text("y" * 250, max_chars=100, min_chars=1) == ["y" * 100, "y" * 100, "y" * 50]


# --- sources ----------------------------------------------------------------------------------


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def files(*patterns: str, **options) -> SourceConfig:
    return SourceConfig(source="files", paths=list(patterns), **options)


def test_files_source_reads_txt_jsonl_and_parquet(tmp_path):
    (tmp_path / "a.txt").write_text("plain text document")
    write_jsonl(tmp_path / "b.jsonl", [{"body": "first", "lang": "en"}, {"body": "second"}])
    pq.write_table(
        pa.table({"body": ["third", None], "lang": ["fr", "fr"]}), tmp_path / "c.parquet"
    )
    docs = list(read_documents(files(str(tmp_path / "*"), text_field="body"), tmp_path))
    assert [d.text for d in docs] == ["plain text document", "first", "second", "third"]
    assert docs[1].id == f"{tmp_path / 'b.jsonl'}:1" and docs[1].fields == {"lang": "en"}
    assert docs[3].id == f"{tmp_path / 'c.parquet'}:0"


def test_a_documents_origin_is_its_source_field_else_its_file(tmp_path):
    """What domain descriptions count as a chunk's origin: a user's files name it in a `source`
    field, or by the file; the demo corpus by its ids' folders."""
    write_jsonl(
        tmp_path / "debian.jsonl",
        [{"text": "a", "source": "debian-wiki"}, {"text": "b", "id": "lists/3"}],
    )
    (tmp_path / "notes.txt").write_text("c")
    pq.write_table(pa.table({"text": ["d"], "source": ["pypi"]}), tmp_path / "pypi.parquet")
    docs = list(read_documents(files(str(tmp_path / "*"), id_field=None), tmp_path))
    assert [d.origin for d in docs] == ["debian-wiki", "debian.jsonl", "notes.txt", "pypi"]
    assert Document("bbc/tech/064", "text", {"topic": "tech"}).origin == "bbc/tech"


def test_source_errors_name_the_full_option(tmp_path):
    specialist = files(str(tmp_path / "missing/*.jsonl"))
    with pytest.raises(FileNotFoundError, match=r"\(from data\.specialist\.paths\)"):
        source_files(specialist, "data.specialist")
    with pytest.raises(ValueError, match=r"^data\.specialist\.paths is empty"):
        source_files(files(), "data.specialist")


def test_filters_pick_documents_by_id_and_field(tmp_path):
    rows = [{"id": f"{t}/{i}", "topic": t, "text": f"{t} {i}"} for t in "abc" for i in range(3)]
    path = str(write_jsonl(tmp_path / "d.jsonl", rows))

    def ids(**filters) -> list[str]:
        return [d.id for d in read_documents(files(path, id_field="id", **filters), tmp_path)]

    assert ids(where={"topic": "b"}) == ["b/0", "b/1", "b/2"]
    assert ids(where={"topic": ["a", "c"]}, exclude=["*/1"]) == ["a/0", "a/2", "c/0", "c/2"]
    assert ids(include=["c/*"], max_documents=2) == ["c/0", "c/1"]


@pytest.mark.parametrize(
    ("setup", "options", "error", "message"),
    [
        (lambda d: None, {}, FileNotFoundError, "no file matches"),
        (lambda d: (d / "x.csv").write_text("a,b"), {}, ValueError, "unsupported file type"),
        (lambda d: write_jsonl(d / "x.jsonl", [{"body": "t"}]), {}, ValueError, "no field 'text'"),
        (lambda d: (d / "x.jsonl").write_text("{not json\n"), {}, ValueError, "not valid JSON"),
        (
            lambda d: (d / "x.parquet").write_bytes(b"garbage" * 20),
            {},
            ValueError,
            "cannot read parquet",
        ),
        (
            lambda d: pq.write_table(pa.table({"body": ["t"]}), d / "x.parquet"),
            {},
            ValueError,
            "no column 'text'",
        ),
        (
            lambda d: write_jsonl(d / "x.jsonl", [{"text": "t"}]),
            {"where": {"topic": "a"}},
            ValueError,
            "field 'topic'",
        ),
    ],
    ids=[
        "missing",
        "suffix",
        "jsonl-field",
        "bad-json",
        "bad-parquet",
        "parquet-field",
        "where-field",
    ],
)
def test_bad_files_raise_clear_errors(tmp_path, setup, options, error, message):
    setup(tmp_path)
    with pytest.raises(error, match=message):
        list(read_documents(files(str(tmp_path / "x.*"), **options), tmp_path))


def test_hf_source_reads_a_local_dataset_through_datasets(tmp_path):
    data = tmp_path / "dataset"
    data.mkdir()
    write_jsonl(data / "train.jsonl", [{"text": "alpha"}, {"text": "beta"}])
    cfg = SourceConfig(source="hf", name=str(data), split="train")
    docs = list(read_documents(cfg, tmp_path))
    assert [d.text for d in docs] == ["alpha", "beta"]
    assert docs[0].id == f"{data}/train/0/0"  # streamed: data file 0, row 0


def test_a_source_read_in_parts_is_the_whole_source_in_order(tmp_path):
    data = tmp_path / "dataset"
    data.mkdir()
    write_jsonl(data / "a.jsonl", [{"text": "alpha"}, {"text": "beta"}])
    write_jsonl(data / "b.jsonl", [{"text": "gamma"}])
    write_jsonl(data / "c.jsonl", [{"text": "delta"}, {"text": "epsilon"}])
    for cfg in (
        SourceConfig(source="hf", name=str(data), split="train"),
        SourceConfig(source="files", paths=[str(data / "*.jsonl")]),
    ):
        whole = [d.text for d in read_documents(cfg, tmp_path)]
        assert whole == ["alpha", "beta", "gamma", "delta", "epsilon"]
        for parts in (1, 2, 3, 5):  # 5 parts of 3 files: two read nothing
            docs = [d for part in range(parts) for d in read_part(cfg, part, parts)]
            assert [d.text for d in docs] == whole, (cfg.source, parts)
    ids = [d.id for d in read_part(SourceConfig(source="hf", name=str(data)), 1, 2)]
    assert ids == [f"{data}/train/1/0", f"{data}/train/2/0", f"{data}/train/2/1"]


def hub_offline(monkeypatch, offline: bool) -> None:
    """What HF_HUB_OFFLINE=1/0 does, after the hub libraries have read it at import."""
    import datasets
    from huggingface_hub import constants

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", offline)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", offline)


def test_hf_source_fails_fast_offline(tmp_path, monkeypatch):
    hub_offline(monkeypatch, True)
    started = time.time()
    with pytest.raises(RuntimeError, match="HF_HUB_OFFLINE is set"):
        list(read_documents(SourceConfig(source="hf", name="no-one/no-such-set"), tmp_path))
    assert time.time() - started < 10


def test_hf_source_fails_fast_when_the_hub_is_unreachable(tmp_path, monkeypatch):
    from huggingface_hub import constants

    hub_offline(monkeypatch, False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    started = time.time()
    with pytest.raises(ConnectionError, match="unreachable"):
        list(read_documents(SourceConfig(source="hf", name="no-one/no-such-set"), tmp_path))
    assert time.time() - started < 10


def test_unknown_source_is_named(tmp_path):
    with pytest.raises(ValueError, match="unknown text source 'ftp'"):
        list(read_documents(SourceConfig(source="ftp"), tmp_path))


# --- clustering -------------------------------------------------------------------------------


def blobs(sizes: list[int], dim: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors in tight groups around random directions, and each one's group."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(len(sizes), dim))
    group = np.repeat(np.arange(len(sizes)), sizes)
    x = centers[group] + 0.05 * rng.normal(size=(len(group), dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), group


def test_clustering_is_deterministic_for_a_seed():
    x, _ = blobs([40] * 6)
    a = fit_clustering(x, 6, seed=3)
    b = fit_clustering(x, 6, seed=3)
    np.testing.assert_array_equal(a.fine_centroids, b.fine_centroids)
    np.testing.assert_array_equal(a.assign(x), b.assign(x))


def test_every_point_lands_in_exactly_one_nonempty_domain_matching_the_groups():
    x, group = blobs([30, 50, 40, 60])
    domains = fit_clustering(x, 4, seed=0).assign(x)
    assert domains.shape == (len(x),)
    assert sorted(np.unique(domains)) == [0, 1, 2, 3]
    # Well separated groups are recovered exactly (up to renaming).
    assert len({(g, d) for g, d in zip(group, domains, strict=True)}) == 4


def test_small_clusters_are_merged_and_reported():
    x, _ = blobs([60, 60, 3])
    clustering = fit_clustering(x, 3, min_size=10, seed=0)
    domains = clustering.assign(x)
    assert clustering.num_domains == 2
    assert np.bincount(domains).min() >= 10
    assert [m["level"] for m in clustering.merges] == ["fine"]
    assert clustering.merges[0]["chunks"] == 3 and clustering.merges[0]["into"] in (0, 1)


def test_two_level_clustering_nests_fine_domains_in_coarse_clusters():
    x, _ = blobs([40] * 8)
    equal = fit_clustering(x, 8, coarse_domains=2, min_size=1, seed=0)
    coarse_of = equal.coarse_of()
    assert equal.num_domains == 8 and np.bincount(coarse_of).tolist() == [4, 4]
    domains = equal.assign(x)
    np.testing.assert_array_equal(coarse_of[domains], equal.groups(x))
    proportional = fit_clustering(x, 7, coarse_domains=2, fine_allocation="proportional", seed=0)
    assert proportional.num_domains == 7


@pytest.mark.parametrize(
    ("k", "options", "message"),
    [
        (500, {}, "larger than the number of chunks"),
        (6, {"coarse_domains": 4}, "multiple of coarse_domains"),
        (6, {"coarse_domains": 2, "fine_allocation": "random"}, "fine_allocation"),
        (6, {"min_size": 0}, "at least 1 chunk"),
    ],
)
def test_impossible_clusterings_are_refused(k, options, message):
    x, _ = blobs([40] * 4)
    with pytest.raises(ValueError, match=message):
        fit_clustering(x, k, **options)


def test_saved_clustering_assigns_new_points_the_same_way(tmp_path):
    x, _ = blobs([40] * 6)
    clustering = fit_clustering(x, 6, coarse_domains=2, seed=0)
    clustering.save(tmp_path / "c.npz")
    loaded = Clustering.load(tmp_path / "c.npz")
    new, _ = blobs([5] * 6, seed=1)
    np.testing.assert_array_equal(loaded.assign(new), clustering.assign(new))
    np.testing.assert_array_equal(loaded.coarse_of(), clustering.coarse_of())


# --- tokenizer --------------------------------------------------------------------------------

TEXTS = ["The quick brown fox jumps over the lazy dog."] * 20 + ["def f(x):\n    return x + 1"] * 20


def test_tokenizer_round_trips_any_text():
    tokenizer = train_tokenizer(TEXTS, vocab_size=300)
    assert tokenizer.get_vocab_size() <= 300 and tokenizer.token_to_id(EOS) == eos_id(tokenizer)
    unseen = "Ça coûte 5 € — naïve façade 🙂\n\tindent"
    (ids,) = encode(tokenizer, [unseen])
    assert ids.dtype == np.uint16
    assert tokenizer.decode(ids.tolist()) == unseen


def test_tokenizer_training_is_deterministic():
    a, b = train_tokenizer(TEXTS, 300), train_tokenizer(TEXTS, 300)
    assert a.get_vocab() == b.get_vocab()


def test_tokenizer_needs_room_for_the_bytes():
    with pytest.raises(ValueError, match="vocab_size=100"):
        train_tokenizer(TEXTS, 100)


# --- cache and shards -------------------------------------------------------------------------


def test_stable_hash_ignores_key_order_and_digest_sees_boundaries():
    assert stable_hash({"a": 1, "b": [2]}) == stable_hash({"b": [2], "a": 1})
    assert stable_hash({"a": 1}) != stable_hash({"a": 2})
    assert texts_digest(["ab", "c"]) != texts_digest(["a", "bc"])


def _slow_build(final: str, queue) -> None:
    def build(out: Path) -> None:
        time.sleep(1.0)
        (out / "value.txt").write_text("done")

    _, built = build_once(Path(final), build)
    queue.put(built)


def test_concurrent_builds_of_one_key_build_once(tmp_path):
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    final = tmp_path / "artifact"
    workers = [context.Process(target=_slow_build, args=(str(final), queue)) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert sorted(queue.get(timeout=5) for _ in workers) == [False, True]
    assert (final / "value.txt").read_text() == "done"
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_a_failed_build_leaves_nothing_behind(tmp_path):
    def build(out: Path) -> None:
        (out / "partial").write_text("x")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        build_once(tmp_path / "artifact", build)
    assert [p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")] == []


def test_packed_chunks_follow_the_token_sequences_layout():
    chunks = [np.array([5, 6, 7]), np.array([8]), np.array([9, 10])]
    tokens, starts = pack(chunks, eos=0, dtype=np.dtype(np.uint16))
    assert tokens.tolist() == [5, 6, 7, 0, 8, 0, 9, 10, 0]
    assert starts.tolist() == [0, 4, 6]
    sequences = TokenSequences(tokens, seq_len=4)
    assert sequences[[0, 1]].tolist() == [[5, 6, 7, 0, 8], [8, 0, 9, 10, 0]]


# --- held-out split ---------------------------------------------------------------------------


def documents(texts: dict[str, list[str]]) -> list[Chunk]:
    return [
        Chunk(doc, t, content_key("\n".join(parts))) for doc, parts in texts.items() for t in parts
    ]


def heldout_of(chunks: list[Chunk], domains: list[int], fraction: float, seed: int) -> np.ndarray:
    names = [f"domain_{d}" for d in range(max(domains) + 1)]
    ids = [np.zeros(9, dtype=np.uint16)] * len(chunks)  # 10 tokens with EOS
    cfg = TextDataConfig(heldout_fraction=fraction, seed=seed)
    return _heldout_mask(np.array(domains), ids, chunks, names, cfg, seq_len=8)


def test_heldout_units_are_whole_documents_by_content():
    texts = {f"doc{i}": [f"doc{i} part {j}" for j in range(3)] for i in range(8)}
    texts["doc0 copy"] = [t.upper() for t in texts["doc0"]]  # the same content, another id
    texts["doc1"][2] = "shared boilerplate"
    texts["doc2"][2] = "Shared   boilerplate"
    chunks = documents(texts)
    for seed in range(8):
        heldout = heldout_of(chunks, [0] * len(chunks), fraction=0.3, seed=seed)
        by_doc, by_text = {}, {}
        for chunk, held in zip(chunks, heldout, strict=True):
            by_doc.setdefault(chunk.doc_id, set()).add(held)
            by_text.setdefault(content_key(chunk.text), set()).add(held)
        assert all(len(splits) == 1 for splits in by_text.values())
        assert by_doc["doc0"] == by_doc["doc0 copy"]
        # Only documents sharing a chunk with a held-out document are split.
        split = [doc for doc, splits in by_doc.items() if len(splits) > 1]
        assert split in ([], ["doc1"], ["doc2"])
        assert heldout.sum() >= 0.3 * len(chunks)


def test_a_domain_of_too_few_documents_is_named():
    chunks = documents({"a": ["a1", "a2", "a3"], "b": ["b1", "b2", "b3"], "c": ["c1", "c2"]})
    with pytest.raises(ValueError, match="domain_1 has 2 chunks from 1 distinct documents"):
        heldout_of(chunks, [0] * 6 + [1] * 2, fraction=0.1, seed=0)


def test_embeddings_stay_float32_on_a_cpu(tmp_path):
    assert Embedder(EmbeddingConfig(device="cpu"), tmp_path).precision == "float32"
    assert Embedder(EmbeddingConfig(model="hashed-ngrams"), tmp_path).precision == "float32"


def test_domains_too_small_over_the_whole_corpus_merge_into_their_nearest_neighbour():
    # Two coarse clusters: domains 0, 1, 2 in cluster 0 and 3, 4 in cluster 1; domain 1 points
    # the way of domain 2, not 0; domain 4 has chunks but no training sequence.
    e = np.eye(4, dtype=np.float32)
    clustering = Clustering(
        fine_centroids=np.stack([e[0], (e[1] + 3 * e[2]) / np.sqrt(10), e[2], e[3], e[1]]),
        fine_group=np.array([0, 0, 0, 1, 1]),
        fine_domain=np.arange(5),
        coarse_centroids=np.stack([e[0], e[3]]),
        coarse_group=np.array([0, 1]),
    )
    chunks = np.array([20, 3, 20, 20, 30])
    train_tokens = np.array([900, 200, 900, 900, 100])
    merged, remap, merges = merge_small_domains(clustering, chunks, train_tokens, 16, seq_len=128)
    assert remap.tolist() == [0, 1, 1, 2, 2]  # 1 into 2, 4 into 3, then renumbered
    assert merged.num_domains == 3 and merged.coarse_of().tolist() == [0, 0, 1]
    assert [(m["domain"], m["into"]) for m in merges] == [(1, 1), (4, 2)]
    # New text lands in the merged domains: near old domain 1 (now 1), near old 3 (now 2).
    assert merged.assign(np.stack([e[1], e[3]])).tolist() == [1, 2]
