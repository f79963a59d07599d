"""DGA with distribution reweighting: DGA over p basis distributions P_1..P_p over K domains.

Training draws basis j ~ alpha, then domain i ~ P_j (so the domain distribution is sum_j alpha_j
P_j), and an update needs p probe gradients, one per basis, whatever K is.

Bases (`mixer.bases`; the paper's exact construction is not public, these are the project's):
- `coarse` (default): one basis per coarse cluster of the two-level clustering
  (`MixerView.coarse_of`): the specialist's fine-level importance histogram restricted to the
  cluster and renormalised, or the natural (token-count) distribution inside the cluster where
  the specialist has no example;
- `multiscale`: importance histograms at the fine and (when there is a hierarchy) coarse levels,
  the coarse one spread naturally inside each cluster, plus the natural generic distribution;
- `identity`: one basis per domain, i.e. plain DGA (a check, and p = K).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from domains.data import MixerView
from mixers.dga import DGAConfig, DGAMixer
from mixers.importance import specialist_histogram


class Bases(StrEnum):
    coarse = "coarse"
    multiscale = "multiscale"
    identity = "identity"


@dataclass
class DGADRConfig(DGAConfig):
    name: str = "dga_dr"
    bases: Bases = Bases.coarse


def _normalized_rows(rows: np.ndarray) -> np.ndarray:
    return rows / rows.sum(axis=1, keepdims=True)


def coarse_bases(data: MixerView) -> tuple[list[str], np.ndarray]:
    if data.coarse_of is None:
        raise ValueError(
            "mixer.bases=coarse needs domains from a two-level clustering: "
            "set data.coarse_domains > 0, or use mixer.bases=multiscale"
        )
    clusters, cluster_of = np.unique(data.coarse_of, return_inverse=True)
    inside = np.arange(len(clusters))[:, None] == cluster_of[None, :]  # [p, K]
    specialist = inside * specialist_histogram(data)
    natural = inside * data.token_counts()
    has_specialist = specialist.sum(axis=1, keepdims=True) > 0
    bases = _normalized_rows(np.where(has_specialist, specialist, natural))
    return [f"coarse_{c}" for c in clusters], bases


def multiscale_bases(data: MixerView) -> tuple[list[str], np.ndarray]:
    fine = specialist_histogram(data)
    natural = data.token_counts() / data.token_counts().sum()
    names, rows = ["is_fine"], [fine]
    if data.coarse_of is not None:
        _, cluster_of = np.unique(data.coarse_of, return_inverse=True)
        share = np.bincount(cluster_of, weights=fine)  # specialist share of each cluster
        natural_share = np.bincount(cluster_of, weights=natural)
        names.append("is_coarse")
        rows.append(share[cluster_of] * natural / natural_share[cluster_of])
    names.append("natural")
    rows.append(natural)
    return names, _normalized_rows(np.stack(rows))


def identity_bases(data: MixerView) -> tuple[list[str], np.ndarray]:
    return list(data.names), np.eye(data.num_domains)


BASES = {
    Bases.coarse: coarse_bases,
    Bases.multiscale: multiscale_bases,
    Bases.identity: identity_bases,
}


class DGADRMixer(DGAMixer):
    def components(self, data: MixerView) -> list[str]:
        # bases: [p, K], one distribution over the domains per row.
        names, self.bases = BASES[self.cfg.bases](data)
        return names

    def probe_distribution(self, j: int) -> np.ndarray:
        return self.bases[j]

    def mixture(self, weights: np.ndarray) -> np.ndarray:
        """sum_j alpha_j P_j: basis j ~ alpha then domain ~ P_j, in one distribution (linear in
        alpha, so the time-averaged mixture is that of the time-averaged alpha)."""
        return weights @ self.bases
