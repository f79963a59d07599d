"""The schemas of the data configs: every `data.source` and the config it is checked against.

Real-text sources (domains/sources.py: the demo corpus, files, a Hugging Face dataset) share
`TextDataConfig`, with the specialist set (`SpecialistConfig`) and the streaming preparation's
settings (`StreamingConfig`) inside it; synthetic data has its own (domains/synthetic.py).
`DATA_SCHEMAS` is the one list of data sources: experiments/config.py registers each schema
(`data=<source>` starts from `/schema/data/<source>`) and domains/loading.py dispatches on it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from domains import mmlu
from domains.data import DataConfig
from domains.embed import EmbeddingConfig
from domains.sources import GENERIC_SOURCES, SourceConfig
from domains.synthetic import SyntheticDataConfig

EXECUTORS = ("local", "slurm")


@dataclass
class StreamingConfig:
    """Bounded-memory preparation of a large corpus on datatrove (domains/streaming.py)."""

    enabled: bool = False
    # Tasks the corpus's files are split into (each a contiguous block of them), and how many
    # run at once on this machine (`executor: local`) or as a SLURM job array (`slurm`).
    tasks: int = 4
    workers: int = 2
    executor: str = "local"
    slurm_partition: str | None = None
    slurm_time: str = "12:00:00"
    # A failed task is run again (only the unfinished tasks) up to this many times (local).
    retries: int = 1
    # Chunks embedded and tokenized at once by a worker.
    batch_chunks: int = 1024
    # Generic chunks the tokenizer is trained on (the first ones read), and embeddings k-means
    # is fitted on (an even stride over the corpus).
    tokenizer_sample: int = 20_000
    kmeans_sample: int = 200_000

    def __post_init__(self) -> None:
        if self.executor not in EXECUTORS:
            raise ValueError(
                f"data.streaming.executor={self.executor!r}: use one of {list(EXECUTORS)}"
            )
        if min(self.tasks, self.workers, self.batch_chunks, self.tokenizer_sample) < 1:
            raise ValueError("data.streaming: tasks, workers, batch_chunks, samples must be >= 1")


# Fields that decide how the work runs, not what it produces: outside the artifact's key.
EXECUTION_FIELDS = ("tasks", "workers", "executor", "slurm_partition", "slurm_time", "retries")


@dataclass
class SpecialistConfig(SourceConfig):
    """The specialist (target) set: a source with filters, split by content into `train_chunks`
    chunks a mixer may see (the scarce-data scenario) and `eval_chunks` held-out chunks."""

    train_chunks: int = 32
    eval_chunks: int = 128

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.source == "mmlu":  # a misspelt subject fails at composition, listing the valid
            mmlu.check_subjects(self.subject)


@dataclass
class TextDataConfig(SourceConfig, DataConfig):
    """Domains from real text. The source fields (SourceConfig) describe the generic pool;
    `specialist` describes the specialist set."""

    source: str = "demo"
    num_domains: int = 16
    # Two-level clustering: this many coarse clusters (0: flat), and `num_domains` fine domains
    # split between them `equal`ly or in `proportional` to their sizes.
    coarse_domains: int = 0
    fine_allocation: str = "equal"
    # Clusters with fewer chunks are merged into a neighbour (reported in the manifest).
    min_domain_chunks: int = 16
    # Share of every domain's chunks held out, in whole documents (at least one sequence's worth).
    heldout_fraction: float = 0.1
    # Chunks are `context_length * chars_per_token` characters; shorter than
    # `min_chunk_fraction` of that and they are dropped as near-empty.
    chars_per_token: float = 4.0
    min_chunk_fraction: float = 0.25
    vocab_size: int = 4096
    kmeans_iterations: int = 20
    kmeans_restarts: int = 3
    embedding: EmbeddingConfig = field(default_factory=EmbeddingConfig)
    specialist: SpecialistConfig = field(default_factory=SpecialistConfig)
    # Large corpora: bounded-memory preparation on datatrove, locally or on SLURM
    # (domains/streaming.py).
    streaming: StreamingConfig = field(default_factory=StreamingConfig)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.source == "mmlu":
            raise ValueError(
                "MMLU is a specialist set, not a generic pool: use data.specialist.source=mmlu "
                "with data.specialist.subject=<subject>"
            )
        if self.streaming.enabled and (
            self.source not in ("files", "hf") or self.max_documents is not None
        ):
            raise ValueError(
                "data.streaming.enabled=true reads a corpus of files (data.source=files) or a "
                "Hugging Face dataset (data.source=hf), in full: no data.max_documents"
            )


# Every `data.source` and its schema: synthetic data, and each generic text source.
DATA_SCHEMAS = {
    "synthetic": SyntheticDataConfig,
    **dict.fromkeys(GENERIC_SOURCES, TextDataConfig),
}
