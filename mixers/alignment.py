"""Gradient alignment: inner products <grad L_i, g> between the gradients of several losses and
one reference gradient g (the specialist gradient g_s, or for DoGE's universal mode the sum of
the domain gradients), without ever holding more than one extra parameter-sized gradient.

Two estimators, selected by a mixer's `alignment` option:

- `backward` (exact, the reference): one backward pass per loss, its gradient dotted with g and
  dropped before the next one is formed (`streamed_alignment`).
- `finite_difference`: a_i ~= (L_i(theta + eps*g) - L_i(theta - eps*g)) / (2*eps), two no-grad
  forward passes over all probe sequences batched together; the parameters are restored exactly
  (copied back, not un-perturbed) afterwards.

Gradients come from `torch.autograd.grad`, so the optimizer's `.grad` buffers are never touched.
Across data-parallel ranks the reference gradient and the scores are averaged with the context's
`all_reduce_mean`, so every rank computes the same weights.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from enum import StrEnum

import torch
from torch import nn

from mixers.base import UpdateContext


class Alignment(StrEnum):
    """The alignment estimators (a mixer's `alignment` option)."""

    backward = "backward"
    finite_difference = "finite_difference"


SequenceLoss = Callable[[torch.Tensor], torch.Tensor]
Gradient = list[torch.Tensor]


def trainable_parameters(model: nn.Module) -> list[nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


def clipped(grads: Gradient, max_norm: float | None) -> Gradient:
    """The gradient rescaled to norm `max_norm` if it is longer (None: unchanged)."""
    if max_norm is None:
        return grads
    scale = torch.clamp(max_norm / (norm(grads) + 1e-12), max=1.0)
    return [g * scale.to(g.dtype) for g in grads]


def gradient(
    loss: torch.Tensor, params: list[nn.Parameter], max_norm: float | None = None
) -> Gradient:
    """d loss / d params (zeros for parameters the loss does not depend on), clipped."""
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    grads = [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads, strict=True)]
    return clipped(grads, max_norm)


def inner(a: Gradient, b: Gradient) -> torch.Tensor:
    """<a, b> over all parameters, accumulated in float64."""
    return sum(torch.dot(x.reshape(-1), y.reshape(-1)).double() for x, y in zip(a, b, strict=True))


def norm(a: Gradient) -> torch.Tensor:
    return inner(a, a).sqrt()


def averaged_over_ranks(
    grads: Gradient, all_reduce_mean: Callable[[torch.Tensor], torch.Tensor]
) -> Gradient:
    """The gradient averaged over data-parallel ranks (one collective on the flattened vector)."""
    flat = all_reduce_mean(torch.cat([g.reshape(-1) for g in grads]))
    chunks = flat.split([g.numel() for g in grads])
    return [chunk.view_as(g) for chunk, g in zip(chunks, grads, strict=True)]


def reference_gradient(
    loss: torch.Tensor,
    params: list[nn.Parameter],
    all_reduce_mean: Callable[[torch.Tensor], torch.Tensor],
    max_norm: float | None = None,
) -> Gradient:
    """The gradient of `loss` averaged over ranks and then clipped, so that it is identical on
    every rank: the g that alignment scores are taken against."""
    return clipped(averaged_over_ranks(gradient(loss, params), all_reduce_mean), max_norm)


def specialist_gradient(ctx: UpdateContext, n: int, max_norm: float | None = None) -> Gradient:
    """g_s: the reference gradient of the mean loss on `n` specialist `train` sequences."""
    loss = ctx.sequence_loss(ctx.specialist(n)).mean()
    return reference_gradient(loss, trainable_parameters(ctx.model), ctx.all_reduce_mean, max_norm)


def streamed_alignment(
    losses: Iterable[torch.Tensor],
    params: list[nn.Parameter],
    reference: Gradient,
    max_norm: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """<grad loss_i, reference> and ||grad loss_i||^2 for each loss, one gradient at a time.

    Pass `losses` as a generator that builds each loss when asked, so that only one graph and
    one gradient exist at a time.
    """
    dots, squared_norms = [], []
    for loss in losses:
        g = gradient(loss, params, max_norm)
        dots.append(inner(g, reference))
        squared_norms.append(inner(g, g))
        del g
    return torch.stack(dots), torch.stack(squared_norms)


def backward_scores(
    model: nn.Module,
    sequence_loss: SequenceLoss,
    batches: list[torch.Tensor],
    reference: Gradient,
    max_norm: float | None = None,
) -> torch.Tensor:
    """Exact <grad L_i, reference> for the mean loss L_i of each batch."""
    losses = (sequence_loss(batch).mean() for batch in batches)
    dots, _ = streamed_alignment(losses, trainable_parameters(model), reference, max_norm)
    return dots


@torch.no_grad()
def finite_difference_scores(
    model: nn.Module,
    sequence_loss: SequenceLoss,
    batches: list[torch.Tensor],
    reference: Gradient,
    step: float,
) -> torch.Tensor:
    """Central differences of each batch's mean loss along the reference gradient.

    The perturbation is theta +/- eps * reference with eps = step * ||theta|| / ||reference||: a
    move of `step` relative to the parameters' norm, whatever the gradient's scale. Float32 loss
    round-off (small steps) and the third-order error (large ones) balance near step = 1e-4 on
    the tiny GPTs tested (relative error ~1e-4).
    Both passes see the same random state (dropout masks), and the parameters are restored
    exactly afterwards, even if a forward pass fails.
    """
    params = trainable_parameters(model)
    eps = step * float(norm(params)) / max(float(norm(reference)), 1e-30)
    tokens = torch.cat(batches)
    sizes = [len(batch) for batch in batches]
    devices = [p.device for p in params if p.device.type == "cuda"][:1]
    saved = [p.detach().clone() for p in params]
    losses = []
    try:
        for sign in (1.0, -1.0):
            for p, p0, g in zip(params, saved, reference, strict=True):
                p.copy_(p0 + (sign * eps) * g)
            with torch.random.fork_rng(devices=devices):
                losses.append(sequence_loss(tokens).double())
    finally:
        for p, p0 in zip(params, saved, strict=True):
            p.copy_(p0)
    plus, minus = (torch.stack([part.mean() for part in x.split(sizes)]) for x in losses)
    return (plus - minus) / (2 * eps)


# Trainer precisions whose parameters are not kept in 32 bits: finite-difference alignment moves
# the parameters by a relative 1e-4, which such parameters cannot represent.
LOW_PRECISION_PARAMETERS = ("bf16-true", "16-true", "transformer-engine")


def check_precision(method: Alignment, precision: str) -> None:
    """Config validation: finite differences need parameters kept in 32 bits."""
    if method == Alignment.finite_difference and precision in LOW_PRECISION_PARAMETERS:
        raise ValueError(
            f"mixer.alignment=finite_difference needs 32-bit parameters, and trainer.precision="
            f"{precision} keeps them in 16 bits: use a *-mixed precision (the mixer's passes "
            "then run in fp32) or mixer.alignment=backward"
        )


def check_method(method: Alignment, max_norm: float | None) -> None:
    """Config validation: the estimator can honour the clipping asked for."""
    if method == Alignment.finite_difference and max_norm is not None:
        raise ValueError(
            "mixer.grad_clip clips each probe gradient, which finite_difference never forms; "
            "use alignment=backward or grad_clip=null"
        )


def alignment_scores(
    method: Alignment,
    model: nn.Module,
    sequence_loss: SequenceLoss,
    batches: list[torch.Tensor],
    reference: Gradient,
    all_reduce_mean: Callable[[torch.Tensor], torch.Tensor],
    max_norm: float | None = None,
    fd_step: float = 1e-4,
) -> torch.Tensor:
    """<grad L_i, reference> for each probe batch by the chosen estimator, averaged over ranks."""
    check_method(method, max_norm)
    if method == Alignment.backward:
        scores = backward_scores(model, sequence_loss, batches, reference, max_norm)
    else:
        scores = finite_difference_scores(model, sequence_loss, batches, reference, fd_step)
    return all_reduce_mean(scores)
