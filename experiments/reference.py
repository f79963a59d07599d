"""The reference model of a mixer that `needs_reference` (DoReMi): another run of this harness,
named by its run directory (`mixer.reference=<run dir>`).

The run must have completed on the same domains as this one. Its model is rebuilt from its own
config (`config.model` in its results.json: it may differ in size from the trained model) and
loaded from its final checkpoint (`checkpoints/last.ckpt`, the GPT's weights under the `model.`
prefix of the Lightning `state_dict`, read with `weights_only=True`). The compute that produced
it (its `train_flops + mixer_flops + upstream_flops`) becomes this run's `upstream_flops`.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

from experiments.checkpoints import LAST, UnusableCheckpoint, load_checkpoint
from experiments.results import RESULTS_FILE
from models.batches import ReferenceModel
from models.gpt import GPT, GPTConfig

# Data options that may differ between the reference and this run without changing the domains'
# content (a cap on the training tokens of each domain).
DATA_KEYS_ALLOWED_TO_DIFFER = ("tokens_per_domain",)


def _flops(value) -> int:
    """A FLOP count from a results.json (0 when absent, null or NaN)."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return 0
    return int(value)


def reference_record(path: str | Path) -> tuple[Path, dict]:
    """The reference run's directory and results, checked to be a completed run with a final
    checkpoint (what can be checked before any data is loaded)."""
    run_dir = Path(path).expanduser()
    if not run_dir.is_dir():
        raise FileNotFoundError(f"mixer.reference: no run directory at {run_dir}")
    results_path = run_dir / RESULTS_FILE
    if not results_path.is_file():
        raise FileNotFoundError(
            f"mixer.reference: {run_dir} is not a run directory (it has no {RESULTS_FILE})"
        )
    try:
        results = json.loads(results_path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"mixer.reference: {results_path} is not valid JSON ({error})") from None
    if not isinstance(results, dict) or results.get("status") != "completed":
        status = results.get("status") if isinstance(results, dict) else None
        raise ValueError(
            f"mixer.reference: the run in {run_dir} has not completed (status {status!r}); "
            "train the reference run to the end first"
        )
    if not (run_dir / "checkpoints" / LAST).is_file():
        raise FileNotFoundError(
            f"mixer.reference: {run_dir} has no checkpoints/{LAST} holding the reference "
            "model's weights"
        )
    return run_dir, results


def check_domains(results: dict, names: list[str], run_dir: Path) -> None:
    """The reference run's domains (the keys of its `domain_labels` and `final_mixture`) must
    be this run's (in any order: the reference model does not depend on it)."""
    for key in ("domain_labels", "final_mixture"):
        theirs = list(results.get(key) or {})
        unknown = sorted(set(theirs) - set(names))
        missing = [name for name in names if name not in theirs]
        if unknown or missing or len(theirs) != len(names):
            raise ValueError(
                f"mixer.reference: the run in {run_dir} was trained on other domains than this "
                f"run's {len(names)} ({key} in its {RESULTS_FILE} names {len(theirs)}: "
                f"unknown here {unknown[:5]}, missing there {missing[:5]}). The reference must "
                "be trained on the same domains."
            )


def _warn_if_other_data(results: dict, data_config: dict | None, run_dir: Path) -> None:
    theirs = (results.get("config") or {}).get("data")
    if data_config is None or not isinstance(theirs, dict):
        return
    differ = sorted(
        key
        for key in set(theirs) | set(data_config)
        if key not in DATA_KEYS_ALLOWED_TO_DIFFER and theirs.get(key) != data_config.get(key)
    )
    if differ:
        warnings.warn(
            f"mixer.reference: the run in {run_dir} was trained with other data options "
            f"({', '.join(f'data.{key}' for key in differ)}): its domains have the same names "
            "but may not hold the same text",
            stacklevel=3,
        )


def load_reference(
    path: str | Path,
    names: list[str],
    vocab_size: int,
    seq_len: int,
    data_config: dict | None = None,
) -> ReferenceModel:
    """The reference model of the run in `path`, checked against this run's domain `names`,
    vocabulary and sequence length (and, with a warning, its data options `data_config`)."""
    run_dir, results = reference_record(path)
    check_domains(results, names, run_dir)
    _warn_if_other_data(results, data_config, run_dir)
    model_options = dict((results.get("config") or {}).get("model") or {})
    model_options["vocab_size"] = vocab_size
    try:
        model_cfg = GPTConfig(**model_options)
    except TypeError as error:
        raise ValueError(
            f"mixer.reference: the model config in {run_dir / RESULTS_FILE} is not a GPT "
            f"config ({error})"
        ) from None
    if model_cfg.context_length < seq_len:
        raise ValueError(
            f"mixer.reference: the reference model's context ({model_cfg.context_length} "
            f"tokens) is shorter than this run's sequences ({seq_len})"
        )
    checkpoint_path = run_dir / "checkpoints" / LAST
    try:
        checkpoint = load_checkpoint(checkpoint_path)
    except UnusableCheckpoint as error:
        raise UnusableCheckpoint(f"mixer.reference: {error}") from None
    steps = results.get("steps")
    if steps is not None and checkpoint.get("global_step") != steps:
        raise ValueError(
            f"mixer.reference: {checkpoint_path} is from step {checkpoint.get('global_step')}, "
            f"but the run trained {steps} steps: it does not hold the final model (runs made "
            "before completed runs saved their final checkpoint); re-run the reference"
        )
    prefix = "model."
    state = {
        key[len(prefix) :]: tensor
        for key, tensor in checkpoint["state_dict"].items()
        if key.startswith(prefix)
    }
    model = GPT(model_cfg)
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        raise ValueError(
            f"mixer.reference: the weights in {checkpoint_path} do not fit the reference's "
            f"model config with this data's vocabulary of {vocab_size} tokens: {error}"
        ) from None
    model.eval()
    model.requires_grad_(False)
    upstream = sum(
        _flops(results.get(key)) for key in ("train_flops", "mixer_flops", "upstream_flops")
    )
    return ReferenceModel(
        model=model,
        flops_per_token=model.flops_per_token(),
        upstream_flops=upstream,
        source=str(run_dir),
    )
