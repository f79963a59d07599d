"""Streaming preparation on datatrove (domains/streaming.py) on a small corpus split into files:
the artifact it writes, independence from the number of tasks, bad input and the SLURM path."""

from __future__ import annotations

import itertools
import json
import os
from pathlib import Path

import numpy as np
import pytest
from tokenizers import Tokenizer

from domains.preparation import prepare
from domains.store import GENERIC_SHARDS, load_domain_data, read_index, read_manifest, shard_path
from domains.streaming_write import CopyStage, FinishStage, _write_runs
from tests.text_corpus import SEQ_LEN, data_config, marker, normal, write_corpus

FILES = 4


def split_corpus(folder: Path) -> list[dict]:
    """`write_corpus`'s documents in FILES jsonl files (the corpus order kept)."""
    folder.mkdir(parents=True)
    rows = write_corpus(folder / "all.jsonl")
    (folder / "all.jsonl").unlink()
    for i in range(FILES):
        part = rows[i * len(rows) // FILES : (i + 1) * len(rows) // FILES]
        (folder / f"part{i}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in part))
    return rows


def streaming_config(corpus: Path, cache: Path, tasks: int, *extra: str):
    return data_config(
        corpus / "*.jsonl",
        cache,
        "data.embedding.model=hashed-ngrams",
        "data.streaming.enabled=true",
        f"data.streaming.tasks={tasks}",
        "data.streaming.workers=2",
        "data.streaming.batch_chunks=16",
        *extra,
    )


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("streaming")
    rows = split_corpus(root / "corpus")
    return root, rows


@pytest.fixture(scope="module")
def prepared(corpus):
    root, _ = corpus
    return prepare(streaming_config(root / "corpus", root / "cache3", 3), SEQ_LEN, root / "cache3")


@pytest.mark.slow
def test_the_streaming_artifact_holds_every_generic_chunk_once(corpus, prepared):
    _, rows = corpus
    manifest, index = read_manifest(prepared), read_index(prepared)
    tokenizer = Tokenizer.from_file(str(prepared / "tokenizer.json"))
    generic = index["domain"] >= 0
    assert generic.sum() == manifest["generic"]["chunks"] > 0
    assert manifest["generic"]["documents"] == sum(r["topic"] != "astronomy" for r in rows) + (
        sum(r["topic"] == "astronomy" for r in rows) - manifest["specialist"]["documents"]
    )
    # Whole documents are held out, and the work folder is gone.
    train_docs = set(index["doc_id"][generic & (index["split"] == "train")])
    heldout_docs = set(index["doc_id"][generic & (index["split"] == "heldout")])
    assert train_docs and heldout_docs and not train_docs & heldout_docs
    assert not list(prepared.parent.glob(".*.work"))
    # Every chunk decodes from where the index says, inside its domain's section.
    shards = {
        split: np.fromfile(shard_path(prepared, name), dtype=manifest["shards"][name]["dtype"])
        for split, name in GENERIC_SHARDS.items()
    }
    for domain, split, start, length in zip(
        index["domain"][generic],
        index["split"][generic],
        index["start"][generic],
        index["length"][generic],
        strict=True,
    ):
        entry = manifest["domains"][domain]
        assert entry[f"{split}_start"] <= start < entry[f"{split}_start"] + entry[f"{split}_tokens"]
        assert shards[split][start + length] == manifest["eos_id"]
        assert tokenizer.decode(shards[split][start : start + length].tolist())
    # The specialist's documents are nowhere in the generic shards.
    generic_text = normal("".join(tokenizer.decode(s.tolist()) for s in shards.values()))
    specialist_docs = set(index["doc_id"][index["domain"] < 0])
    assert specialist_docs
    assert not [
        d for d in specialist_docs if normal(marker("astronomy", int(d[-3:]))) in generic_text
    ]
    data = load_domain_data(prepared)
    assert data.num_domains == len(manifest["domains"])
    assert sum(s.num_tokens for s in data.train) > 0


def generic_chunks(folder: Path) -> list[tuple[str, str, str]]:
    """(document id, text) of every generic chunk in the index, sorted."""
    manifest, index = read_manifest(folder), read_index(folder)
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    rows = []
    for split, name in GENERIC_SHARDS.items():
        tokens = np.fromfile(shard_path(folder, name), dtype=manifest["shards"][name]["dtype"])
        mine = (index["domain"] >= 0) & (index["split"] == split)
        for doc, start, length in zip(
            index["doc_id"][mine], index["start"][mine], index["length"][mine], strict=True
        ):
            rows.append((doc, tokenizer.decode(tokens[start : start + length].tolist())))
    return sorted(rows)


@pytest.mark.slow
def test_it_keeps_the_same_chunks_as_the_in_memory_pipeline(corpus, prepared):
    """The same specialist split, chunks and (on a corpus under `tokenizer_sample` chunks) the
    same tokenizer as domains/text.py; only the clustering sample and held-out rule differ."""
    root, _ = corpus
    cfg = streaming_config(root / "corpus", root / "memory", 3, "data.streaming.enabled=false")
    in_memory = prepare(cfg, SEQ_LEN, root / "memory")
    assert generic_chunks(in_memory) == generic_chunks(prepared)
    assert read_index(in_memory)["doc_id"][read_index(in_memory)["domain"] < 0].tolist() == (
        read_index(prepared)["doc_id"][read_index(prepared)["domain"] < 0].tolist()
    )


@pytest.mark.slow
def test_the_artifact_does_not_depend_on_the_number_of_tasks(corpus, prepared):
    root, _ = corpus
    # 6 tasks for 4 files: two tasks read nothing.
    one = prepare(streaming_config(root / "corpus", root / "cache6", 6), SEQ_LEN, root / "cache6")
    assert one.name == prepared.name  # tasks and workers are not part of the key
    for name, entry in read_manifest(prepared)["shards"].items():
        assert read_manifest(one)["shards"][name]["sha256"] == entry["sha256"], name


@pytest.mark.slow
def test_a_hugging_face_dataset_is_read_in_parts_like_files(corpus, prepared):
    """data.source=hf on a local folder of the same four files (a streamed dataset of four data
    files), in 3 tasks: the same chunks and shards as reading them as files."""
    root, _ = corpus
    cache = root / "hf"
    hf = ("data.source=hf", f"data.name={root / 'corpus'}", "data.split=train")
    folder = prepare(streaming_config(root / "corpus", cache, 3, *hf), SEQ_LEN, cache)
    assert generic_chunks(folder) == generic_chunks(prepared)
    for name, entry in read_manifest(prepared)["shards"].items():
        assert read_manifest(folder)["shards"][name]["sha256"] == entry["sha256"], name


@pytest.mark.slow
def test_a_malformed_line_names_its_file_and_line_and_loses_nothing(tmp_path):
    split_corpus(tmp_path / "corpus")
    bad = tmp_path / "corpus" / "part3.jsonl"
    bad.write_text(bad.read_text() + "{not json\n")
    cfg = streaming_config(
        tmp_path / "corpus",
        tmp_path / "cache",
        4,
        "data.streaming.retries=0",
        "data.streaming.tokenizer_sample=40",  # read from the first files only
        f"data.specialist.paths=['{tmp_path / 'corpus' / 'part2.jsonl'}']",  # the astronomy file
    )
    with pytest.raises(ValueError, match=r"part3\.jsonl:11 is not valid JSON"):
        prepare(cfg, SEQ_LEN, tmp_path / "cache")
    domains = tmp_path / "cache" / "domains"
    assert not [p for p in domains.iterdir() if not p.name.startswith(".")]  # no artifact
    # The tasks that finished stay finished (a re-run with the same sources skips them).
    (work,) = domains.glob(".*.work")
    done = sorted(p.name for p in (work / "logs" / "EncodeStage" / "completions").iterdir())
    assert "00003" not in done and len(done) >= 1


def test_slurm_submits_the_stages_as_chained_jobs(tmp_path, monkeypatch):
    """No cluster here: a stand-in `sbatch` on PATH records what datatrove submits."""
    split_corpus(tmp_path / "corpus")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls.txt"
    sbatch = bin_dir / "sbatch"
    sbatch.write_text(
        f'#!/bin/sh\necho "$@" >> {calls}\nn=$(wc -l < {calls})\necho "Submitted batch job $((100 + n))"\n'
    )
    sbatch.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    cfg = streaming_config(
        tmp_path / "corpus",
        tmp_path / "cache",
        8,
        "data.streaming.executor=slurm",
        "data.streaming.slurm_partition=cpu",
    )
    assert prepare(cfg, SEQ_LEN, tmp_path / "cache") is None
    # sbatch calls, job id 101, 102...: each stage's job (and a job merging its stats).
    submitted = calls.read_text().splitlines()
    stages = [(100 + n, args) for n, args in enumerate(submitted, 1) if "RUN_OFFSET" in args]
    assert len(stages) == 7  # sample, encode, cluster, assign, plan, copy, finish
    for (previous, _), (_, args) in itertools.pairwise(stages):
        assert f"--dependency=afterok:{previous}" in args  # each waits for the one before
    (work,) = (tmp_path / "cache" / "domains").glob(".*.work")
    for stage in ("EncodeStage", "AssignStage", "CopyStage"):
        script = (work / "logs" / stage / "launch_script.slurm").read_text()
        assert "#SBATCH --array=0-7" in script and "#SBATCH --partition=cpu" in script


@pytest.mark.slow
def test_an_interrupted_preparation_resumes_where_it_stopped(corpus, prepared, monkeypatch):
    """The last stage fails once; run again, the preparation skips every finished task (the
    copy tasks' output is kept in the work folder) and writes the same artifact. One worker:
    the tasks run in this process, where the calls are counted."""
    root, _ = corpus
    cache = root / "resumed"
    extra = ("data.streaming.retries=0", "data.streaming.workers=1")
    cfg = streaming_config(root / "corpus", cache, 3, *extra)
    copies = []
    copy = CopyStage._copy
    monkeypatch.setattr(
        CopyStage, "_copy", lambda self, task, *a: copies.append(task) or copy(self, task, *a)
    )
    with monkeypatch.context() as patched:

        def crash(self, data, rank=0, world_size=1):
            raise OSError("disk full")

        patched.setattr(FinishStage, "run", crash)
        with pytest.raises(OSError, match="disk full"):
            prepare(cfg, SEQ_LEN, cache)
    assert len(copies) == 3
    folder = prepare(cfg, SEQ_LEN, cache)
    assert len(copies) == 3  # not copied again
    assert not list((cache / "domains").glob(".*.work"))
    for name, entry in read_manifest(prepared)["shards"].items():
        assert read_manifest(folder)["shards"][name]["sha256"] == entry["sha256"], name


def test_chunks_are_written_one_run_at_a_time(tmp_path, monkeypatch):
    """Chunks 0 and 2 lie one after the other at tokens 10..16, chunk 1 alone at 3..5: two
    writes, each chunk's tokens where `dest` says."""
    tokens = np.arange(100, 109, dtype=np.uint16)  # chunk 0: 100-102, 1: 103-105, 2: 106-108
    source, span, dest = np.array([0, 3, 6]), np.array([3, 3, 3]), np.array([10, 3, 13])
    path = tmp_path / "shard.bin"
    path.write_bytes(bytes(2 * 20))
    writes = []
    real_pwrite = os.pwrite
    monkeypatch.setattr(os, "pwrite", lambda *a: writes.append(a[2]) or real_pwrite(*a))
    target = os.open(path, os.O_WRONLY)
    _write_runs(target, tokens, source, span, dest)
    os.close(target)
    expected = np.zeros(20, dtype=np.uint16)
    expected[3:6], expected[10:13], expected[13:16] = (
        [103, 104, 105],
        [100, 101, 102],
        [106, 107, 108],
    )
    assert np.fromfile(path, dtype=np.uint16).tolist() == expected.tolist()
    assert writes == [3 * 2, 10 * 2]


@pytest.mark.slow
def test_domains_too_small_over_the_whole_corpus_are_merged(corpus):
    """k-means sees a sample (here 30 chunks), so a domain may turn out small over the corpus."""
    root, _ = corpus
    cache = root / "small_sample"
    extra = ("data.num_domains=8", "data.min_domain_chunks=8", "data.streaming.kmeans_sample=30")
    folder = prepare(streaming_config(root / "corpus", cache, 2, *extra), SEQ_LEN, cache)
    manifest = read_manifest(folder)
    late = [m for m in manifest["merges"] if m["level"] == "fine, full corpus"]
    assert late and all(m["chunks"] < 8 for m in late)
    assert len(manifest["domains"]) == 8 - len(late)
    for entry in manifest["domains"]:
        assert entry["chunks"] >= 8 and entry["train_tokens"] > SEQ_LEN
    data = load_domain_data(folder)  # every domain has a training sequence
    index = read_index(folder)
    assert sorted(set(index["domain"][index["domain"] >= 0])) == list(range(data.num_domains))
