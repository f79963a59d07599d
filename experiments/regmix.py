"""RegMix (Liu et al. 2024, "Data Mixture as Regression"; reference: sail-sg/regmix): the method's
math, as pure functions of numpy arrays and a seeded `numpy.random.Generator`.

1. A swarm of small static runs on Dirichlet-sampled mixtures (`sample_swarm`). The prior is the
   domains' natural token shares (`natural_prior`). Each candidate is drawn from
   Dirichlet(strength x prior^temperature, renormalised), the strength picked uniformly among
   `strengths` values spaced geometrically from `min_strength` to `max_strength` (the
   reference's `np.logspace(log10(0.1), log10(5), 15)`: 0.1 ... 5, not 10^0.1 ... 10^5).
   A candidate putting more than `max_usage` x prior_i (the untempered prior) on a domain is
   rejected (it would repeat that domain too often in the large run); weights below `grid` are
   dropped, and the rest renormalised and rounded to multiples of `grid` (`snap_to_grid`).
   Duplicates are removed and `runs` mixtures are drawn from the `candidates_per_run` x `runs`
   candidates.
2. A LightGBM regressor from mixture to the runs' specialist loss (`fit_regressor`), its quality
   measured as Spearman's rho on held-out swarm runs (`heldout_spearman`).
3. The proposal (`propose`): the mean of the `top_k` of `proposal_samples` Dirichlet(prior)
   mixtures with the lowest predicted loss.

Not a mixer: an offline method whose runs are static mixtures. The pipeline that trains the swarm
and the final run is experiments/pipeline.py (`pipeline.method=regmix`), its options
`pipeline.regmix.*`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.stats import spearmanr


@dataclass
class RegMixConfig:
    """RegMix's options (`pipeline.regmix.*`); defaults are the reference's."""

    swarm_runs: int = 64
    # Swarm sampling.
    temperature: float = 0.5
    min_strength: float = 0.1
    max_strength: float = 5.0
    strengths: int = 15
    max_usage: float = 15.0
    grid: float = 2e-4
    candidates_per_run: int = 100
    # Regression: LightGBM with early stopping on `validation_fraction` of the runs it is fitted
    # on; rho is measured on `heldout_fraction` of the swarm, never seen by that fit.
    learning_rate: float = 0.01
    rounds: int = 1000
    early_stopping_rounds: int = 3
    validation_fraction: float = 0.2
    heldout_fraction: float = 0.25
    # LightGBM's min_data_in_leaf (its default 20): lower it only for tiny swarms (tests).
    min_leaf_runs: int = 20
    # Proposal.
    proposal_samples: int = 100_000
    top_k: int = 128

    def __post_init__(self) -> None:
        positive = ("swarm_runs", "max_strength", "strengths", "candidates_per_run")
        positive += ("learning_rate", "rounds", "early_stopping_rounds", "min_leaf_runs")
        positive += ("proposal_samples", "top_k", "grid", "temperature", "min_strength")
        for key in positive:
            if not getattr(self, key) > 0:
                raise ValueError(
                    f"pipeline.regmix.{key} must be positive, got {getattr(self, key)}"
                )
        if self.min_strength > self.max_strength:
            raise ValueError("pipeline.regmix.min_strength must not exceed max_strength")
        if self.max_usage < 1:
            raise ValueError(
                f"pipeline.regmix.max_usage={self.max_usage} would reject the prior itself "
                "(no domain may take less than its natural share everywhere): use >= 1"
            )
        for key in ("validation_fraction", "heldout_fraction"):
            if not 0 < getattr(self, key) < 1:
                raise ValueError(
                    f"pipeline.regmix.{key} must be in (0, 1), got {getattr(self, key)}"
                )
        if self.top_k > self.proposal_samples:
            raise ValueError("pipeline.regmix.top_k cannot exceed proposal_samples")
        if self.swarm_runs < 4:
            raise ValueError(
                f"pipeline.regmix.swarm_runs={self.swarm_runs}: at least 4 runs are needed to "
                "fit, stop early and measure rho on held-out runs"
            )


def natural_prior(token_counts: np.ndarray) -> np.ndarray:
    """The domains' shares of the training tokens."""
    counts = np.asarray(token_counts, dtype=np.float64)
    if counts.ndim != 1 or (counts < 0).any() or counts.sum() <= 0:
        raise ValueError(f"token counts must be non-negative with a positive sum, got {counts}")
    return counts / counts.sum()


def tempered(prior: np.ndarray, temperature: float) -> np.ndarray:
    """prior^temperature, renormalised (temperature < 1 flattens a skewed prior)."""
    powered = np.asarray(prior, dtype=np.float64) ** temperature
    return powered / powered.sum()


def dirichlet_strengths(cfg: RegMixConfig) -> np.ndarray:
    """The concentrations a swarm mixture's Dirichlet is scaled by, geometrically spaced."""
    return np.geomspace(cfg.min_strength, cfg.max_strength, cfg.strengths)


def within_usage_bound(mixtures: np.ndarray, prior: np.ndarray, max_usage: float) -> np.ndarray:
    """Which rows put at most min(max_usage x prior_i, 1) on every domain i."""
    bound = np.minimum(max_usage * np.asarray(prior), 1.0)
    return (np.asarray(mixtures) <= bound).all(axis=1)


def snap_to_grid(mixtures: np.ndarray, grid: float) -> np.ndarray:
    """Drop weights below `grid`, renormalise, round to multiples of `grid` (rows then sum to 1
    within k x grid / 2; the static mixer renormalises)."""
    kept = np.where(mixtures < grid, 0.0, mixtures)
    kept = kept / kept.sum(axis=1, keepdims=True)
    return np.round(kept / grid) * grid


def unique_rows(mixtures: np.ndarray, tolerance: float = 1e-5) -> np.ndarray:
    """The distinct rows (L1 distance above `tolerance`), in lexicographic order."""
    if len(mixtures) == 0:
        return mixtures
    ordered = mixtures[np.lexsort(mixtures.T[::-1])]
    distinct = np.abs(np.diff(ordered, axis=0)).sum(axis=1) > tolerance
    return ordered[np.concatenate([[True], distinct])]


def draw_candidates(
    prior: np.ndarray, cfg: RegMixConfig, rng: np.random.Generator, n: int
) -> np.ndarray:
    """n raw candidate mixtures [n, k]: each from Dirichlet(s x prior^temperature, renormalised),
    s one of `dirichlet_strengths` at random."""
    alpha = tempered(prior, cfg.temperature)
    strengths = rng.choice(dirichlet_strengths(cfg), size=n)
    # Only domains with tokens can be sampled (a zero concentration is not a Dirichlet).
    support = alpha > 0
    draws = np.zeros((n, len(alpha)))
    for strength in np.unique(strengths):
        rows = strengths == strength
        draws[np.ix_(rows, support)] = rng.dirichlet(alpha[support] * strength, size=rows.sum())
    return draws


def sample_swarm(prior: np.ndarray, cfg: RegMixConfig, rng: np.random.Generator) -> np.ndarray:
    """`cfg.swarm_runs` distinct mixtures [runs, k] for the swarm (see the module docstring)."""
    prior = np.asarray(prior, dtype=np.float64)
    draws = draw_candidates(prior, cfg, rng, cfg.swarm_runs * cfg.candidates_per_run)
    draws = draws[np.isfinite(draws).all(axis=1) & within_usage_bound(draws, prior, cfg.max_usage)]
    mixtures = unique_rows(snap_to_grid(draws, cfg.grid))
    if len(mixtures) < cfg.swarm_runs:
        raise ValueError(
            f"only {len(mixtures)} distinct mixtures passed the usage bound and grid for "
            f"{cfg.swarm_runs} swarm runs: raise pipeline.regmix.candidates_per_run or "
            "max_usage, or lower swarm_runs"
        )
    return mixtures[rng.choice(len(mixtures), size=cfg.swarm_runs, replace=False)]


# A fitted regressor as the pipeline uses it: mixtures [n, k] -> predicted losses [n].
Predictor = Callable[[np.ndarray], np.ndarray]


def _lightgbm(cfg: RegMixConfig, seed: int, rounds: int):
    # Imported here, not at the top: every training run imports this module's schema (through
    # experiments.config), and lightgbm takes seconds to import.
    import lightgbm

    return lightgbm.LGBMRegressor(
        objective="regression",
        learning_rate=cfg.learning_rate,
        n_estimators=rounds,
        min_child_samples=cfg.min_leaf_runs,
        random_state=seed,
        # A swarm is hundreds of rows: threads only add overhead, and OpenMP's spinning threads
        # stall badly on a busy machine (a 512-run fit: 0.8 s on one thread, 45 s on two).
        n_jobs=1,
        verbosity=-1,
    )


def fit_regressor(
    mixtures: np.ndarray, losses: np.ndarray, cfg: RegMixConfig, seed: int
) -> Predictor:
    """LightGBM from mixture to loss. The number of boosting rounds is chosen by early stopping
    on a random `validation_fraction` of the runs (at most `cfg.rounds`), then the model is
    refitted on all of them with that many rounds."""
    import lightgbm

    mixtures, losses = np.asarray(mixtures, dtype=np.float64), np.asarray(losses, np.float64)
    fit, validation = _split(len(losses), cfg.validation_fraction, np.random.default_rng(seed))
    probe = _lightgbm(cfg, seed, cfg.rounds).fit(
        mixtures[fit],
        losses[fit],
        eval_X=(mixtures[validation],),
        eval_y=(losses[validation],),
        callbacks=[lightgbm.early_stopping(cfg.early_stopping_rounds, verbose=False)],
    )
    rounds = probe.best_iteration_ or cfg.rounds
    return _lightgbm(cfg, seed, rounds).fit(mixtures, losses).predict


def _split(n: int, fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Indices of a random split of n items: the rest, and `fraction` of them (at least one)."""
    if n < 2:
        raise ValueError(f"cannot split {n} runs into a fitted and a held-out part")
    held = max(1, min(n - 1, round(n * fraction)))
    order = rng.permutation(n)
    return np.sort(order[held:]), np.sort(order[:held])


def spearman(predicted: np.ndarray, actual: np.ndarray) -> float:
    """Spearman's rank correlation; NaN when either side is constant (e.g. a regressor that could
    not split a tiny swarm predicts one value)."""
    predicted, actual = np.asarray(predicted), np.asarray(actual)
    if len(actual) < 2 or np.ptp(predicted) == 0 or np.ptp(actual) == 0:
        return float("nan")
    return float(spearmanr(predicted, actual).statistic)


def heldout_spearman(
    mixtures: np.ndarray, losses: np.ndarray, cfg: RegMixConfig, seed: int
) -> tuple[float, int]:
    """Spearman's rho between predicted and actual loss on a random `heldout_fraction` of the
    runs, the regressor fitted on the others; and how many runs were held out."""
    mixtures, losses = np.asarray(mixtures, dtype=np.float64), np.asarray(losses, np.float64)
    fit, heldout = _split(len(losses), cfg.heldout_fraction, np.random.default_rng(seed))
    predict = fit_regressor(mixtures[fit], losses[fit], cfg, seed)
    return spearman(predict(mixtures[heldout]), losses[heldout]), len(heldout)


def propose(
    predict: Predictor, prior: np.ndarray, cfg: RegMixConfig, rng: np.random.Generator
) -> np.ndarray:
    """The mean of the `top_k` of `proposal_samples` Dirichlet(prior) mixtures with the lowest
    predicted loss."""
    prior = np.asarray(prior, dtype=np.float64)
    support = prior > 0
    samples = np.zeros((cfg.proposal_samples, len(prior)))
    samples[:, support] = rng.dirichlet(prior[support], size=cfg.proposal_samples)
    best = np.argsort(predict(samples), kind="stable")[: cfg.top_k]
    return samples[best].mean(axis=0)
