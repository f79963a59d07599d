"""What a checkpoint holds beyond Lightning's own state that differs between processes, and the
step count of a checkpoint saved under Lightning's automatic optimization (models/lm.py)."""

from __future__ import annotations

import torch

from models.batches import MixtureBatches


def rank_state(batches: MixtureBatches, device: torch.device) -> dict:
    """What differs between ranks: the samplers' random state and torch's (dropout)."""
    state = {"batches": batches.state_dict(), "torch_rng": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda_rng"] = torch.cuda.get_rng_state(device)
    return state


def load_rank_state(
    ranks: list[dict], rank: int, world_size: int, batches: MixtureBatches, device: torch.device
) -> None:
    """This rank's state from every rank's (`rank_state`), onto `device`: the one it will train
    on."""
    if len(ranks) != world_size:
        raise ValueError(
            f"the checkpoint was saved by {len(ranks)} processes and this run has "
            f"{world_size}: a resumed run continues exactly only with as many processes "
            "(trainer.devices x trainer.num_nodes) as it started with"
        )
    mine = ranks[rank]
    batches.load_state_dict(mine["batches"])
    torch.set_rng_state(mine["torch_rng"])
    if device.type == "cuda" and "cuda_rng" in mine:
        torch.cuda.set_rng_state(mine["cuda_rng"], device)


def gather_objects(value: object, world_size: int) -> list:
    """`value` of every rank, in rank order (a list of one outside a multi-process run)."""
    if world_size == 1 or not torch.distributed.is_initialized():
        return [value]
    gathered = [None] * world_size
    torch.distributed.all_gather_object(gathered, value)
    return gathered


def count_steps_as_manual(checkpoint: dict) -> None:
    """A checkpoint saved when the module used Lightning's automatic optimization counted its
    steps there; the step count a resume continues from is now the manual loop's. Called before
    Lightning restores the loops from the same dict."""
    loop = checkpoint.get("loops", {}).get("fit_loop", {})
    manual = loop.get("epoch_loop.manual_optimization.optim_step_progress")
    automatic = loop.get("epoch_loop.automatic_optimization.optim_progress")
    if manual is not None and automatic is not None and not manual["total"]["completed"]:
        loop["epoch_loop.manual_optimization.optim_step_progress"] = automatic["optimizer"]["step"]
