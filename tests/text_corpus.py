"""A small corpus of four topics (the specialist set: astronomy), and the configs that prepare
domains from it, for the real-text pipeline tests."""

import json
import random
import unicodedata
from pathlib import Path

from omegaconf import OmegaConf

from domains.schemas import TextDataConfig
from tests.conftest import compose_config

SENTENCES = {
    "cooking": [
        "Stir the onions in butter until they turn golden.",
        "Add a pinch of salt and let the sauce simmer.",
        "Knead the dough and leave it to rise overnight.",
        "Roast the chicken with garlic, lemon and thyme.",
        "Whisk the eggs with sugar before folding in the flour.",
    ],
    "football": [
        "The striker scored twice in the second half.",
        "The goalkeeper saved a penalty in extra time.",
        "Fans sang in the stadium as the match kicked off.",
        "The coach changed tactics after the red card.",
        "A late header sent the team into the cup final.",
    ],
    "astronomy": [
        "The telescope observed a distant spiral galaxy.",
        "Jupiter's moons orbit the giant planet in days.",
        "A supernova briefly outshone its whole galaxy.",
        "Astronomers measured the redshift of the quasar.",
        "Neutron stars spin hundreds of times per second.",
    ],
    "code": [
        "def parse(line): return line.strip().split(',')",
        "for key, value in sorted(items.items()): print(key, value)",
        "class Stack: def push(self, x): self.items.append(x)",
        "try: value = int(text) except ValueError: value = None",
        "with open(path) as f: lines = f.readlines()",
    ],
}
DOCS_PER_TOPIC = 10
SEQ_LEN = 32


def marker(topic: str, i: int) -> str:
    """A string found in exactly one document (to detect leaks)."""
    return f"Ref Q{list(SENTENCES).index(topic)}{i:03d}Z"


def write_corpus(path: Path) -> list[dict]:
    """Documents of a marker and sentences drawn from their topic's five: the same two sentences
    in a row recur, so documents share chunks."""
    rng = random.Random(0)
    rows = []
    for topic, sentences in SENTENCES.items():
        for i in range(DOCS_PER_TOPIC):
            body = [rng.choice(sentences) for _ in range(rng.randint(6, 10))]
            text = "\n".join([marker(topic, i), *body])
            rows.append({"id": f"{topic}/{i:03d}", "topic": topic, "source": topic, "text": text})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return rows


def normal(text: str) -> str:
    """Text up to case, spacing and Unicode form: what counts as the same content."""
    return " ".join(unicodedata.normalize("NFKC", text).lower().split())


def overrides(corpus: Path, cache: Path, *extra: str) -> list[str]:
    return [
        "data=files",
        f"data.paths=['{corpus}']",
        "data.id_field=id",
        f"data.specialist.paths=['{corpus}']",
        "data.specialist.id_field=id",
        "++data.specialist.where={topic: astronomy}",
        "data.specialist.train_chunks=4",
        "data.specialist.eval_chunks=8",
        "data.num_domains=4",
        "data.min_domain_chunks=4",
        "data.vocab_size=320",
        f"model.context_length={SEQ_LEN}",
        f"paths.cache_dir={cache}",
        *extra,
    ]


def data_config(corpus: Path, cache: Path, *extra: str) -> TextDataConfig:
    return OmegaConf.to_object(compose_config(*overrides(corpus, cache, *extra)).data)


SHORT_TRAINING = (
    "model.n_layer=2",
    "model.d_model=64",
    "train.tokens=2048",
    "train.batch_size=8",
    "train.eval_every=4",
    "train.eval_sequences_per_domain=4",
    "logger=csv",
)
