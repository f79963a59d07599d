"""MixMin (Thudi et al. 2025, "MixMin: Finding Data Mixtures via Convex Minimization", ICML 2025,
arXiv 2502.10510): one cheap proxy model per domain, then the mixture whose mixture of the
proxies' predictive distributions best fits the target data, a convex problem over the simplex
solved by exponentiated-gradient (entropic mirror) descent; the final model trains on that static
mixture.

The paper's argument: for cross-entropy (and squared error) with a model class large enough to hold
the Bayes-optimal model, the model trained on the mixture sum_i w_i P_i of the sources is
sum_i w_i f_i, f_i the Bayes-optimal model of source i, when the sources share their input
distribution; for generative modelling there is no input, so f_i is source i's distribution over
whole sequences. The bi-level data-mixing problem then reduces to the convex

    w* = argmin_{w in simplex} -mean_x log(sum_i w_i p_i(x)) / |x|

over target examples x, the p_i given by cheap proxies trained on each source alone. The authors'
code (github.com/Anvith-Thudi/MixMin, LLM_DataMixing/mixmin_gen.py and logprobs.py, read at
commit 7212abe) does exactly this for language modelling: p_i(x) is the proxy's probability of a
whole target example (the sum of its token log-probabilities), each example's log-mixture is
divided by its length, and from uniform weights it takes

    g = grad of the objective at w;   w <- w exp(-lr g) / sum_j w_j exp(-lr g_j)

with lr = 1, for at most 100 steps, stopping early when max |g| < 1e-4 (checked after the step),
fitting on a random 80 % of the task's examples and reporting on the rest. The paper reports its
proxies at about 1 % of the final training's compute (its abstract: under 0.2 % more compute for
a pythia-410M model trained on 8.2B tokens); its proxy recipe beyond that is not in the code.
tests/test_parity_mixmin.py holds this module's solver to their code, run outside this project
(tests/parity/mixmin.json).

Here, with the option or choice behind each point:

- The proxies (`upstream_stages`): one run of this harness per domain, this run's config (its
  model, optimizer, schedule, data and seed) on that domain alone (a static one-hot mixture),
  for `proxy_fraction` of this run's `train.tokens` in all, split evenly and rounded to whole
  steps (at least one step each: on a small budget the proxies' share is then larger; the run
  records what they cost). Default 0.01, the paper's 1 %. They are `shared` upstream stages:
  trained once in <paths.cache_dir>/upstream/ for every run of the same data, seed, model and
  training options, and reused (experiments/upstream.py); `mixer.proxies` may instead name proxy
  runs trained elsewhere, one per domain in domain order, each with its scores (below). A
  proxy validates on one held-out sequence per domain (and the specialist `eval` split): only
  its model is used, and at k = 64 its two full validations took 25 of its 27 seconds.
- The target data: the specialist `train` split, all of it (`target_fraction` 1; the authors'
  80/20 split kept 20 % to report, which the specialist `eval` split does here, never seen by the
  mixer). `target_fraction` < 1 fits on that fraction, drawn with the run's seed.
- The scores: each proxy's log-probability of every target token of the split
  (`SPECIALIST_SCORES_FILE`, written by experiments.train once the proxy is trained, from the
  proxy's final model, in fp32).
- `level=sequence` (default): p_i(x) is the proxy's probability of a whole specialist sequence
  (its L target tokens), each log-mixture divided by L, as the authors' code and the paper's
  argument have it (the mixture of sequence distributions, whose next-token conditionals weigh
  each proxy by its posterior given the context). `level=token` mixes the proxies' next-token
  distributions token by token instead, -mean_t log(sum_i w_i p_i(t)): a different objective
  (it ignores the context's evidence about the source), offered for comparison.
- The solver: the authors' step, in log space (`mixers/simplex.py`, the same weights without
  overflow), from uniform weights. Its step size `lr` multiplies the gradient of the objective as
  written above (per token). Default None: the examples' length (L at the sequence level, 1 at
  the token level), i.e. a step of 1 on the mean log-likelihood per example, which is 1-smooth
  relative to the entropy (EM's regime), so the solver converges whatever L is. The authors'
  lr = 1 at the sequence level is a step of 1/L of that: with their 100 steps and examples of
  tens to thousands of tokens it stops far from the minimum on long examples (here L is 128 to
  1024; in the parity fixture, on examples of 20k to 50k tokens their 100 steps leave every
  weight within 2e-3 of uniform, 0.39 from the minimiser). So by default it runs to convergence: `stop=gap` ends when the Frank-Wolfe gap
  g.w - min_i g_i (an upper bound on the objective's distance to its minimum, in nats per token)
  is at most `tol` (1e-6), within `steps` (10000); `stop=gradient` is the authors' rule (max |g| <
  tol). `mixer=mixmin_authors` runs their settings: lr 1, 100 steps, stop=gradient, tol 1e-4.
- Target tokens that every proxy gives probability zero carry no information about w (the
  objective is infinite for every w); such examples are dropped, with a warning. Non-finite
  scores otherwise are an error naming the proxy.

Cost: the proxies' training (their runs' FLOPs, from their mixture files) and scoring (a forward
pass of each proxy over the split), recorded as this run's `upstream_flops` whether the proxies
were trained for this run or reused; the solver's arithmetic (k x examples per step, on the CPU)
is not counted. The final run is an ordinary static run: no mixer FLOPs or probe tokens.
One process: with several, give `mixer.proxies` (as for DoReMi's reference).
"""

from __future__ import annotations

import logging
import math
import re
import warnings
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from domains.data import MixerView
from mixers.base import SPECIALIST_SCORES_FILE, Mixer, MixerConfig, MixerSpec, UpstreamStage
from mixers.mixture_file import Which, read_weights
from mixers.simplex import exponentiated_step
from mixers.static import StaticConfig

if TYPE_CHECKING:
    from collections.abc import Callable

    from omegaconf import DictConfig

log = logging.getLogger(__name__)


class Level(StrEnum):
    sequence = "sequence"  # mixtures of whole-sequence probabilities (the authors')
    token = "token"  # mixtures of next-token distributions, token by token


class Stop(StrEnum):
    gap = "gap"  # Frank-Wolfe gap <= tol
    gradient = "gradient"  # max |gradient| < tol (the authors')


@dataclass
class MixMinConfig(MixerConfig):
    name: str = "mixmin"
    # The proxy runs, one per domain in the data's domain order, each trained on its domain
    # alone and holding SPECIALIST_SCORES_FILE. None: experiments.train trains them first (in the
    # cache, shared by the runs of the same data, seed, model and training options).
    proxies: list[str] | None = None
    # The proxies' training tokens, all of them together, as a fraction of train.tokens.
    proxy_fraction: float = 0.01
    level: Level = Level.sequence
    # Step size on the per-token objective; None: the examples' length (a step of 1 on the mean
    # log-likelihood per example).
    lr: float | None = None
    # At most this many steps.
    steps: int = 10_000
    stop: Stop = Stop.gap
    tol: float = 1e-6
    # The fraction of the specialist `train` sequences fitted on (drawn with the run's seed).
    target_fraction: float = 1.0

    def __post_init__(self) -> None:
        if self.update_every != 0:
            raise ValueError(
                "mixer.update_every does not apply to mixmin: its mixture is static, chosen "
                "before training"
            )
        if not (math.isfinite(self.proxy_fraction) and self.proxy_fraction > 0):
            raise ValueError(f"mixer.proxy_fraction must be > 0, got {self.proxy_fraction}")
        if self.lr is not None and not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"mixer.lr must be > 0 (or null), got {self.lr}")
        if self.steps < 1:
            raise ValueError(f"mixer.steps must be >= 1, got {self.steps}")
        if not (math.isfinite(self.tol) and self.tol >= 0):
            raise ValueError(f"mixer.tol must be >= 0, got {self.tol}")
        if not 0 < self.target_fraction <= 1:
            raise ValueError(f"mixer.target_fraction must be in (0, 1], got {self.target_fraction}")
        if self.proxies is not None and len(self.proxies) == 0:
            raise ValueError("mixer.proxies must name one proxy run per domain, got none")


# --- the convex step ------------------------------------------------------------------------


@dataclass(frozen=True)
class Solution:
    """What the solver ends with."""

    weights: np.ndarray
    # The objective at `weights` (nats per token), and at the uniform start.
    objective: float
    initial_objective: float
    # Steps taken, and the Frank-Wolfe gap at `weights` (>= objective - its minimum).
    steps: int
    gap: float
    # Examples dropped because every proxy gives them probability zero.
    dropped: int = 0


def _log_mixture(log_probs: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """[n] log(sum_i w_i p_i(x)) from log p_i(x) [k, n], stably (a zero weight drops out)."""
    with np.errstate(divide="ignore"):
        z = log_probs + np.log(weights)[:, None]
    top = z.max(axis=0)
    return top + np.log(np.exp(z - top).sum(axis=0))


def objective(log_probs: np.ndarray, lengths: np.ndarray, weights: np.ndarray) -> float:
    """-mean_x log(sum_i w_i p_i(x)) / |x|: the MixMin objective, in nats per token."""
    return float(-(_log_mixture(log_probs, weights) / lengths).mean())


def gradient(log_probs: np.ndarray, lengths: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """[k] the objective's gradient: -mean_x p_i(x) / (sum_j w_j p_j(x)) / |x|."""
    ratios = np.exp(log_probs - _log_mixture(log_probs, weights))
    return -(ratios / lengths).mean(axis=1)


def solve(
    log_probs: np.ndarray,
    lengths: np.ndarray | None = None,
    lr: float | None = None,
    steps: int = 10_000,
    stop: Stop = Stop.gap,
    tol: float = 1e-6,
) -> Solution:
    """The MixMin weights for log_probs [k, n] (log p_i(x) of each example x) and each example's
    length [n] (1 when None): exponentiated-gradient descent from uniform weights, the authors'
    step (lr None: the mean length), stopped by `stop` at `tol` or after `steps` steps."""
    log_probs = np.asarray(log_probs, dtype=np.float64)
    if log_probs.ndim != 2 or 0 in log_probs.shape:
        raise ValueError(f"log_probs must be [proxies, examples], got shape {log_probs.shape}")
    k, n = log_probs.shape
    lengths = np.ones(n) if lengths is None else np.asarray(lengths, dtype=np.float64)
    if lengths.shape != (n,) or not (lengths > 0).all():
        raise ValueError(f"lengths must be {n} positive numbers")
    if np.isnan(log_probs).any() or np.isposinf(log_probs).any():
        raise ValueError("log-probabilities must not be NaN or +inf")
    impossible = np.isneginf(log_probs).all(axis=0)
    if impossible.all():
        raise ValueError("every proxy gives every example probability zero")
    if impossible.any():
        warnings.warn(
            f"mixmin: {impossible.sum()} of {n} examples have probability zero under every "
            "proxy (an infinite loss whatever the weights); dropped",
            stacklevel=2,
        )
        log_probs, lengths = log_probs[:, ~impossible], lengths[~impossible]
    if lr is None:
        lr = float(lengths.mean())
    weights = np.full(k, 1.0 / k)
    start = objective(log_probs, lengths, weights)
    taken = 0
    while taken < steps:
        grad = gradient(log_probs, lengths, weights)
        if stop == Stop.gap and grad @ weights - grad.min() <= tol:
            break  # checked before the step: converged weights are not moved
        weights = exponentiated_step(weights, -grad, lr)
        taken += 1
        if stop == Stop.gradient and np.abs(grad).max() < tol:
            break  # the authors' rule: checked after the step
    grad = gradient(log_probs, lengths, weights)
    return Solution(
        weights=weights,
        objective=objective(log_probs, lengths, weights),
        initial_objective=start,
        steps=taken,
        gap=float(grad @ weights - grad.min()),
        dropped=int(impossible.sum()),
    )


def examples(token_log_probs: np.ndarray, level: Level) -> tuple[np.ndarray, np.ndarray]:
    """From the proxies' token log-probabilities [k, n, L], the solver's examples: log_probs
    [k, examples] and lengths: n whole sequences of L tokens, or n x L single tokens."""
    k, n, length = token_log_probs.shape
    if level == Level.sequence:
        return token_log_probs.sum(axis=2), np.full(n, float(length))
    return token_log_probs.reshape(k, n * length), np.ones(n * length)


def proxy_tokens(tokens: int, fraction: float, num_domains: int, step_tokens: int) -> int:
    """Each proxy's training tokens: `fraction` of `tokens` split evenly over the domains,
    rounded to whole steps of `step_tokens`, at least one."""
    return max(1, round(fraction * tokens / num_domains / step_tokens)) * step_tokens


# --- the mixer --------------------------------------------------------------------------------


class MixMinMixer(Mixer):
    @classmethod
    def upstream_stages(
        cls, cfg: MixMinConfig, run: DictConfig, data: Callable[[], MixerView]
    ) -> list[UpstreamStage]:
        """Without `mixer.proxies`: one proxy run per domain, on that domain alone, for
        `proxy_fraction` of this run's tokens in all, shared through the cache and scored on the
        specialist `train` split."""
        if cfg.proxies is not None:
            return []
        view = data()
        k = view.num_domains
        tokens = proxy_tokens(
            run.train.tokens,
            cfg.proxy_fraction,
            k,
            run.train.batch_size * run.model.context_length,
        )
        stages = []
        for i, name in enumerate(view.names):
            one_hot = [0.0] * k
            one_hot[i] = 1.0
            stages.append(
                UpstreamStage(
                    what=f"the proxy of {name} ({i + 1} of {k})",
                    mixer=StaticConfig(weights=one_hot, label=f"mixmin_proxy[{name}]"),
                    directory="mixmin_proxy_" + re.sub(r"[^A-Za-z0-9_.-]", "_", name),
                    option="proxies",
                    listed=True,
                    tokens=tokens,
                    eval_sequences_per_domain=1,
                    shared=True,
                    specialist_scores=True,
                )
            )
        return stages

    def __init__(self, cfg: MixMinConfig, data: MixerView):
        super().__init__(cfg, data)
        if cfg.proxies is None:
            raise ValueError(
                "mixmin needs its proxy runs: train through experiments.train, which trains "
                "them first, or give mixer.proxies (one run per domain, in domain order)"
            )
        k = data.num_domains
        if len(cfg.proxies) != k:
            raise ValueError(f"mixer.proxies names {len(cfg.proxies)} runs for {k} domains")
        scores, flops = [], 0
        for i, path in enumerate(cfg.proxies):
            token_log_probs, cost = self._proxy(i, Path(path).expanduser())
            scores.append(token_log_probs)
            flops += cost
        if len({s.shape for s in scores}) != 1:
            raise ValueError(
                f"mixer.proxies: the proxies scored different specialist sets "
                f"({sorted({s.shape for s in scores})})"
            )
        token_log_probs = np.stack(scores)
        n = token_log_probs.shape[1]
        if cfg.target_fraction < 1:
            count = max(1, round(cfg.target_fraction * n))
            chosen = np.sort(np.random.default_rng(data.seed).choice(n, size=count, replace=False))
            token_log_probs = token_log_probs[:, chosen]
        log_probs, lengths = examples(token_log_probs, cfg.level)
        self.solution = solve(log_probs, lengths, cfg.lr, cfg.steps, cfg.stop, cfg.tol)
        self.weights = self.solution.weights
        self.upstream_flops = flops
        log.info(
            "mixmin: objective %.6f -> %.6f nats/token in %d steps (gap %.2e): %s",
            self.solution.initial_objective,
            self.solution.objective,
            self.solution.steps,
            self.solution.gap,
            dict(zip(self.domain_names, np.round(self.weights, 4).tolist(), strict=True)),
        )

    def _proxy(self, i: int, path: Path) -> tuple[np.ndarray, int]:
        """Proxy i's token log-probabilities [n, L] and its cost (training and scoring FLOPs),
        checked to be a run on domain i alone."""
        name = self.domain_names[i]
        weights, train_flops = read_weights(path, Which.final, self.domain_names)
        weights = np.asarray(weights, dtype=np.float64)
        if weights[i] <= 0 or np.delete(weights, i).any():
            raise ValueError(
                f"mixer.proxies[{i}]: {path} was not trained on {name} alone (its mixture: "
                f"{dict(zip(self.domain_names, weights.tolist(), strict=True))})"
            )
        scores_path = path / SPECIALIST_SCORES_FILE
        if not scores_path.is_file():
            raise FileNotFoundError(
                f"mixer.proxies[{i}]: {path} holds no {SPECIALIST_SCORES_FILE} (experiments.train "
                "writes it when it trains mixmin's proxies)"
            )
        with np.load(scores_path) as scores:
            log_probs = np.asarray(scores["log_probs"], dtype=np.float64)
            scoring_flops = int(scores["flops"])
        if log_probs.ndim != 2:
            raise ValueError(f"{scores_path}: log_probs must be [sequences, tokens]")
        if np.isnan(log_probs).any() or np.isposinf(log_probs).any():
            raise ValueError(f"{scores_path}: proxy {name} has NaN or +inf log-probabilities")
        return log_probs, train_flops + scoring_flops


SPEC = MixerSpec(
    "mixmin",
    MixMinMixer,
    MixMinConfig,
    family="offline: per-domain proxies + convex fit",
    reference="Thudi et al. 2025",
    cost="one proxy run per domain, `proxy_fraction` = 1 % of the tokens in all, + their forward pass over the specialist `train` split (`upstream_flops`; proxies shared by the runs of a data and seed)",
)
